//! The durable outbox: one ordered queue per destination platform, in sled, plus a dead-letter
//! store, with operator inspection and replay.
//!
//! On-disk layout (same tree as everything else, see `store`):
//!
//! | key | value |
//! |---|---|
//! | `out/{dest} \x1f {priority} \x1f {seq:020}` | [`Entry`] waiting for delivery |
//! | `dlq/{dest} \x1f {seq:020}` | [`DeadLetter`]: the entry and the receiver's answer |
//!
//! `priority` is `0` for corrections and withdrawals and `1` for ordinary shares, so corrections
//! (GD Art. 31) and withdrawals (publication ledger) are delivered ahead of any backlog. `seq` comes from sled's persistent id generator: it only
//! grows, across restarts, so key order is enqueue order and shares of one subject leave in the
//! order they were accepted.
//!
//! Invariants: an entry is written in the same atomic batch that accepts its record (never
//! missing after a crash); it is removed only after the receiver acknowledged it or when it moves
//! to the dead letters; its idempotency key never changes (retries, restarts, replay), so a
//! receiver can drop duplicates.
//!
//! Never does: send anything (that is `delivery`).

pub mod ops;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::disclosure::Channel;
use crate::store::keys::{DeadLetterKey, Key, OutboxKey, Priority};
use crate::store::{to_bytes, Store, StoreError, SEP};

/// What kind of share an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Share,
    Correction,
    /// The platform must stop showing the record (publication ledger): ahead of ordinary shares.
    Withdrawal,
    /// A result the medical-insurance platform passes on to the subject (an objection's outcome).
    Notice,
    /// The record again because its marks changed (异议标注 set or removed): ahead of ordinary
    /// shares (LS Art. 23 "同时进行异议标注").
    Marking,
}

impl Kind {
    fn priority(self) -> Priority {
        match self {
            Kind::Correction | Kind::Withdrawal | Kind::Notice | Kind::Marking => Priority::Urgent,
            Kind::Share => Priority::Normal,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Kind::Share => "share",
            Kind::Correction => "correction",
            Kind::Withdrawal => "withdrawal",
            Kind::Notice => "notice",
            Kind::Marking => "marking",
        }
    }
}

/// One share waiting for its platform.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub idempotency_key: String,
    pub destination: String,
    pub channel: Channel,
    pub kind: Kind,
    pub agency: String,
    pub record_id: String,
    pub version: u32,
    pub rule: String,
    /// In Beijing time (the offset is kept as written).
    #[serde(with = "time::serde::rfc3339")]
    pub enqueued_at: time::OffsetDateTime,
    /// Seconds since the Unix epoch, for the oldest-pending-age metric.
    pub enqueued_unix: i64,
    /// Correction id when `kind` is correction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction_id: Option<String>,
    /// What the platform receives, verbatim, when it is stored with the entry (withdrawals,
    /// notices, entries written before format 3). A share of an archived version carries
    /// [`Entry::source`] instead and gets its payload at delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Box<serde_json::value::RawValue>>,
    /// Where a share's payload comes from: the archived version and the filter's decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ShareSource>,
}

/// A share's payload by reference (format 3): the archived version, the disclosure filter's
/// decision as it was made at enqueue time (re-applied verbatim, so a later change of rules never
/// reveals what was withheld), the marks and correction it carries, and the hash of what the
/// platform must receive. Delivery rebuilds the payload and sends it only if the hash matches.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShareSource {
    /// The version's archive key.
    pub version_key: String,
    /// Each field the filter masked or dropped, with the filter rule that did it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decision: Vec<(String, String)>,
    /// 异议标注 and other marks carried by the share (LS Art. 23), hashed with the payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marks: Option<Value>,
    /// The correction marker (GD Art. 31), added after hashing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<Value>,
    /// sha256 (first 16 bytes, hex) of the filtered, marked record.
    pub payload_hash: String,
}

impl Entry {
    /// What the platform receives: the stored payload, or JSON `null` for a share whose payload
    /// was not rebuilt (delivery rebuilds every one before sending: see `delivery::payload`).
    pub fn body(&self) -> &serde_json::value::RawValue {
        self.payload
            .as_deref()
            .unwrap_or(serde_json::value::RawValue::NULL)
    }
}

/// An entry the receiver refused for good, with its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub entry: Entry,
    pub status: u16,
    pub answer: String,
    #[serde(with = "time::serde::rfc3339")]
    pub dead_at: time::OffsetDateTime,
    /// The outbox key it came from (replay restores its priority).
    pub from_key: String,
}

/// The idempotency key of a share: stable for (destination, source record, version, channel, kind).
pub fn idempotency_key(
    destination: &str,
    agency: &str,
    record_id: &str,
    version: u32,
    channel: Channel,
    kind: Kind,
    extra: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        destination,
        agency,
        record_id,
        &version.to_string(),
        channel.code(),
        kind.code(),
        extra,
    ] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    hex::encode(&h.finalize()[..16])
}

pub fn queue_prefix(dest: &str) -> String {
    OutboxKey::queue_prefix(dest)
}

pub fn entry_key(dest: &str, kind: Kind, seq: u64) -> String {
    OutboxKey {
        destination: dest.into(),
        priority: kind.priority(),
        seq,
    }
    .encode()
}

pub fn dead_key(dest: &str, seq: u64) -> String {
    DeadLetterKey {
        destination: dest.into(),
        seq,
    }
    .encode()
}

/// The next sequence number (persistent, monotonic).
pub fn next_seq(store: &Store) -> Result<u64, StoreError> {
    store.next_id()
}

/// The (key, entry) pairs to write for a new entry.
pub fn enqueue_write(store: &Store, entry: &Entry) -> Result<(String, Vec<u8>), StoreError> {
    let seq = next_seq(store)?;
    Ok((
        entry_key(&entry.destination, entry.kind, seq),
        to_bytes(entry),
    ))
}

/// The first `limit` entries waiting for `dest`, corrections first, then in enqueue order.
pub fn pending(
    store: &Store,
    dest: &str,
    limit: usize,
) -> Result<Vec<(String, Entry)>, StoreError> {
    pending_except(store, dest, limit, &Default::default())
}

/// [`pending`] without the entries `skip` names (those in flight), which are passed over
/// undecoded: the first `limit` entries of the queue that are not in `skip`, in order.
pub fn pending_except(
    store: &Store,
    dest: &str,
    limit: usize,
    skip: &std::collections::HashSet<String>,
) -> Result<Vec<(String, Entry)>, StoreError> {
    let mut out = Vec::with_capacity(limit.min(1024));
    if limit == 0 {
        return Ok(out);
    }
    for item in store.scan_raw(queue_prefix(dest).as_bytes()) {
        let (k, v) = item?;
        let key = String::from_utf8_lossy(&k).into_owned();
        if skip.contains(&key) {
            continue;
        }
        let entry = crate::store::decode(&k, &v)?;
        out.push((key, entry));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// Depth and age of one destination's queue and dead letters.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Stats {
    pub destination: String,
    pub pending: usize,
    pub pending_corrections: usize,
    pub oldest_pending_unix: Option<i64>,
    pub dead_letters: usize,
}

pub fn stats(store: &Store, dest: &str) -> Result<Stats, StoreError> {
    let mut s = Stats {
        destination: dest.to_string(),
        ..Stats::default()
    };
    let corrections_prefix = OutboxKey::urgent_prefix(dest);
    for item in store.scan_raw(queue_prefix(dest).as_bytes()) {
        let (k, v) = item?;
        if s.pending == 0 {
            s.oldest_pending_unix = serde_json::from_slice::<Entry>(&v)
                .ok()
                .map(|e| e.enqueued_unix);
        }
        s.pending += 1;
        if k.starts_with(corrections_prefix.as_bytes()) {
            s.pending_corrections += 1;
        }
    }
    s.dead_letters = store.count_under(DeadLetterKey::prefix(dest).as_bytes())?;
    Ok(s)
}

/// Every entry (or dead letter) of one destination or all, for `outbox list`.
pub fn list(
    store: &Store,
    dest: Option<&str>,
    dead: bool,
    limit: usize,
) -> Result<Vec<Value>, StoreError> {
    let prefix = match (dest, dead) {
        (Some(d), false) => queue_prefix(d),
        (Some(d), true) => DeadLetterKey::prefix(d),
        (None, false) => "out/".into(),
        (None, true) => "dlq/".into(),
    };
    let mut out = Vec::new();
    for item in store.scan_raw(prefix.as_bytes()).take(limit) {
        let (k, v) = item?;
        let key = display_key(&String::from_utf8_lossy(&k));
        let value: Value = serde_json::from_slice(&v).unwrap_or(Value::Null);
        let entry = if dead {
            value.get("entry").cloned().unwrap_or(Value::Null)
        } else {
            value.clone()
        };
        let mut row = serde_json::json!({
            "key": key,
            "idempotency_key": entry["idempotency_key"],
            "destination": entry["destination"],
            "kind": entry["kind"],
            "channel": entry["channel"],
            "agency": entry["agency"],
            "record_id": entry["record_id"],
            "version": entry["version"],
            "enqueued_at": entry["enqueued_at"],
        });
        if dead {
            row["status"] = value["status"].clone();
            row["answer"] = value["answer"].clone();
        }
        out.push(row);
    }
    Ok(out)
}

/// The entry or dead letter with this display key or idempotency key.
pub fn show(store: &Store, key_or_idem: &str) -> Result<Option<Value>, StoreError> {
    let raw_key = key_or_idem
        .replace('/', "\u{1f}")
        .replacen('\u{1f}', "/", 1);
    if let Some(v) = store.get_raw(raw_key.as_bytes())? {
        return Ok(serde_json::from_slice(&v).ok());
    }
    for prefix in ["out/", "dlq/"] {
        for item in store.scan_raw(prefix.as_bytes()) {
            let (_, v) = item?;
            let value: Value = serde_json::from_slice(&v).unwrap_or(Value::Null);
            let idem = value
                .get("idempotency_key")
                .or_else(|| value.get("entry").and_then(|e| e.get("idempotency_key")));
            if idem.and_then(Value::as_str) == Some(key_or_idem) {
                return Ok(Some(value));
            }
        }
    }
    Ok(None)
}

/// Keys as operators type them: `out/provincial/1/00000000000000000042`.
pub fn display_key(key: &str) -> String {
    key.replace(SEP, "/")
}

/// What a replay does.
#[derive(Debug, Default)]
pub struct Replay {
    /// Entries to queue again; the writer gives them their sequence numbers when it stages them,
    /// so replayed shares take their place in commit order (also across nodes).
    pub enqueue: Vec<Entry>,
    /// Dead letters taken out of the dead-letter store (replayed or dropped).
    pub removes: Vec<String>,
    pub replayed: usize,
    /// Dead letters `keep` refused: a later share superseded them (dropped, not sent).
    pub superseded: usize,
}

/// Move every dead letter of `dest` (or all) back into the queue, keeping each idempotency key,
/// unless `keep` says it was superseded since (then it is dropped: a publication withdrawn or
/// replaced meanwhile must never reach the platform after what superseded it).
pub fn replay_writes(
    store: &Store,
    dest: Option<&str>,
    select: impl Fn(&Entry) -> bool,
    keep: impl Fn(&Entry) -> bool,
) -> Result<Replay, StoreError> {
    let prefix = match dest {
        Some(d) => DeadLetterKey::prefix(d),
        None => "dlq/".into(),
    };
    let mut replay = Replay::default();
    for item in store.scan_raw(prefix.as_bytes()) {
        let (k, v) = item?;
        let dead: DeadLetter = crate::store::decode(&k, &v)?;
        let key = String::from_utf8_lossy(&k).into_owned();
        if !select(&dead.entry) {
            continue;
        }
        if keep(&dead.entry) {
            replay.enqueue.push(dead.entry);
            replay.replayed += 1;
        } else {
            replay.superseded += 1;
        }
        replay.removes.push(key);
    }
    Ok(replay)
}
