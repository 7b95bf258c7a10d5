//! The durable outbox: one ordered queue per destination platform, in the store (whichever engine),
//! plus a dead-letter store, with operator inspection and replay.
//!
//! On-disk layout (same tree as everything else, see `store`):
//!
//! | key | value |
//! |---|---|
//! | `out/{dest} \x1f {priority} \x1f {seq:020}` | [`Entry`] waiting for delivery |
//! | `dlq/{dest} \x1f {seq:020}` | [`DeadLetter`]: the entry and the receiver's answer |
//!
//! `priority` is `0` for corrections, withdrawals, notices and markings and `1` for ordinary
//! shares, so corrections (GD Art. 31), withdrawals (publication ledger) and 异议标注 (LS Art. 23)
//! are delivered ahead of any backlog. `seq` comes from the engine's persistent id source
//! (`Engine::next_id`), taken by the single writer: it only grows, across restarts and nodes, so
//! key order is enqueue order within a priority and shares of one subject leave in the order they
//! were accepted. [`stats`] reports the oldest share of either priority.
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
        let urgent = k.starts_with(corrections_prefix.as_bytes());
        // Each priority's run is in enqueue order, and urgent entries come first: the oldest
        // share is the first of the urgent run or the first of the ordinary one, whichever is
        // older (the first key alone is the oldest urgent entry, which may be younger than an
        // ordinary share waiting behind it).
        let first_of_run = s.pending == 0 || (!urgent && s.pending == s.pending_corrections);
        if first_of_run {
            if let Ok(e) = serde_json::from_slice::<Entry>(&v) {
                s.oldest_pending_unix = Some(
                    s.oldest_pending_unix
                        .map_or(e.enqueued_unix, |o| o.min(e.enqueued_unix)),
                );
            }
        }
        s.pending += 1;
        if urgent {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{memory, WriteSet};
    use time::macros::datetime;

    const T0: time::OffsetDateTime = datetime!(2026-11-25 10:00 +08:00);

    fn entry(dest: &str, record_id: &str, kind: Kind, at: time::OffsetDateTime) -> Entry {
        Entry {
            idempotency_key: idempotency_key(
                dest,
                "medical_insurance",
                record_id,
                1,
                Channel::GovShare,
                kind,
                "",
            ),
            destination: dest.into(),
            channel: Channel::GovShare,
            kind,
            agency: "medical_insurance".into(),
            record_id: record_id.into(),
            version: 1,
            rule: "rule".into(),
            enqueued_at: at,
            enqueued_unix: at.unix_timestamp(),
            correction_id: None,
            payload: None,
            source: None,
        }
    }

    /// Enqueue as the writer does: a sequence number, then the write.
    fn enqueue(store: &Store, e: &Entry) -> String {
        let (key, bytes) = enqueue_write(store, e).unwrap();
        let mut w = WriteSet::default();
        w.put(key.clone(), bytes);
        store.apply(w).unwrap();
        key
    }

    /// Move a queued entry to the dead letters, as delivery does when the platform refuses it.
    fn dead_letter(store: &Store, key: &str, status: u16) -> String {
        let e: Entry = store.get_json(key).unwrap().unwrap();
        let seq = crate::store::keys::OutboxKey::decode(key).unwrap().seq;
        let dead = DeadLetter {
            entry: e.clone(),
            status,
            answer: "refused".into(),
            dead_at: T0,
            from_key: key.into(),
        };
        let dkey = dead_key(&e.destination, seq);
        let mut w = WriteSet::default();
        w.remove(key);
        w.put(dkey.clone(), to_bytes(&dead));
        store.apply(w).unwrap();
        dkey
    }

    fn records(queue: &[(String, Entry)]) -> Vec<&str> {
        queue.iter().map(|(_, e)| e.record_id.as_str()).collect()
    }

    #[test]
    fn corrections_and_withdrawals_leave_first_then_shares_in_enqueue_order_per_destination() {
        let (store, _) = memory::store();
        enqueue(&store, &entry("provincial", "s1", Kind::Share, T0));
        enqueue(&store, &entry("national", "n1", Kind::Share, T0));
        enqueue(&store, &entry("provincial", "s2", Kind::Share, T0));
        enqueue(&store, &entry("provincial", "c1", Kind::Correction, T0));
        enqueue(&store, &entry("provincial", "w1", Kind::Withdrawal, T0));
        enqueue(&store, &entry("provincial", "s3", Kind::Share, T0));
        let queue = pending(&store, "provincial", 10).unwrap();
        assert_eq!(records(&queue), vec!["c1", "w1", "s1", "s2", "s3"]);
        assert_eq!(
            records(&pending(&store, "national", 10).unwrap()),
            vec!["n1"]
        );
        assert_eq!(
            records(&pending(&store, "provincial", 2).unwrap()),
            vec!["c1", "w1"]
        );
        assert!(pending(&store, "provincial", 0).unwrap().is_empty());
        // Entries in flight are passed over; the limit counts those returned.
        let skip = [queue[0].0.clone(), queue[2].0.clone()].into();
        let rest = pending_except(&store, "provincial", 2, &skip).unwrap();
        assert_eq!(records(&rest), vec!["w1", "s2"]);
    }

    #[test]
    fn stats_count_the_queue_its_corrections_its_dead_letters_and_the_oldest_share() {
        let (store, _) = memory::store();
        let empty = stats(&store, "provincial").unwrap();
        assert_eq!((empty.pending, empty.oldest_pending_unix), (0, None));
        let old = enqueue(&store, &entry("provincial", "s1", Kind::Share, T0));
        let later = T0 + time::Duration::hours(2);
        enqueue(&store, &entry("provincial", "s2", Kind::Share, later));
        enqueue(&store, &entry("provincial", "c1", Kind::Correction, later));
        enqueue(
            &store,
            &entry("national", "n1", Kind::Share, T0 - time::Duration::days(1)),
        );
        let s = stats(&store, "provincial").unwrap();
        assert_eq!(
            (s.pending, s.pending_corrections, s.dead_letters),
            (3, 1, 0)
        );
        // The correction leaves first, but the share waiting behind it is older.
        assert_eq!(s.oldest_pending_unix, Some(T0.unix_timestamp()));

        dead_letter(&store, &old, 422);
        let s = stats(&store, "provincial").unwrap();
        assert_eq!((s.pending, s.dead_letters), (2, 1));
        assert_eq!(s.oldest_pending_unix, Some(later.unix_timestamp()));
        assert_eq!(stats(&store, "national").unwrap().dead_letters, 0);
    }

    #[test]
    fn a_replay_queues_dead_letters_again_with_their_idempotency_keys_and_drops_superseded_ones() {
        let (store, _) = memory::store();
        let a = enqueue(&store, &entry("provincial", "a", Kind::Share, T0));
        let b = enqueue(&store, &entry("provincial", "b", Kind::Correction, T0));
        let c = enqueue(&store, &entry("national", "c", Kind::Share, T0));
        let (da, db) = (dead_letter(&store, &a, 422), dead_letter(&store, &b, 400));
        dead_letter(&store, &c, 422);

        let replay =
            replay_writes(&store, Some("provincial"), |_| true, |e| e.record_id != "b").unwrap();
        assert_eq!((replay.replayed, replay.superseded), (1, 1));
        assert_eq!(replay.removes, vec![da.clone(), db.clone()]);
        let original = entry("provincial", "a", Kind::Share, T0);
        assert_eq!(replay.enqueue.len(), 1);
        assert_eq!(replay.enqueue[0].idempotency_key, original.idempotency_key);

        // Applied as the writer does: each entry takes a new sequence number, same key.
        let mut w = WriteSet::default();
        for k in &replay.removes {
            w.remove(k.clone());
        }
        store.apply(w).unwrap();
        let requeued = enqueue(&store, &replay.enqueue[0]);
        assert_ne!(requeued, a, "a new place in the queue");
        let queue = pending(&store, "provincial", 10).unwrap();
        assert_eq!(records(&queue), vec!["a"]);
        assert_eq!(queue[0].1.idempotency_key, original.idempotency_key);
        let s = stats(&store, "provincial").unwrap();
        assert_eq!((s.pending, s.dead_letters), (1, 0));
        // The other destination's dead letter is untouched, and a replay of all selects by key.
        assert_eq!(stats(&store, "national").unwrap().dead_letters, 1);
        let key = entry("national", "c", Kind::Share, T0).idempotency_key;
        let only = replay_writes(&store, None, |e| e.idempotency_key == key, |_| true).unwrap();
        assert_eq!(
            (only.replayed, only.enqueue[0].record_id.as_str()),
            (1, "c")
        );
    }

    #[test]
    fn idempotency_keys_are_stable_and_differ_in_every_part_they_cover() {
        let key = |dest, record, version, channel, kind, extra| {
            idempotency_key(
                dest,
                "medical_insurance",
                record,
                version,
                channel,
                kind,
                extra,
            )
        };
        let base = key("provincial", "r1", 1, Channel::GovShare, Kind::Share, "");
        // Pinned: receivers drop duplicates by this key across releases, so its formula must
        // never change (sha256 over the parts, each followed by 0x1f, first 16 bytes).
        assert_eq!(base, "eb493ed2f2b8e3670393be935e37eea1");
        assert_eq!(
            base,
            key("provincial", "r1", 1, Channel::GovShare, Kind::Share, "")
        );
        let others = [
            key("national", "r1", 1, Channel::GovShare, Kind::Share, ""),
            key("provincial", "r2", 1, Channel::GovShare, Kind::Share, ""),
            key("provincial", "r1", 2, Channel::GovShare, Kind::Share, ""),
            key(
                "provincial",
                "r1",
                1,
                Channel::PublicNotice,
                Kind::Share,
                "",
            ),
            key(
                "provincial",
                "r1",
                1,
                Channel::GovShare,
                Kind::Correction,
                "",
            ),
            key(
                "provincial",
                "r1",
                1,
                Channel::GovShare,
                Kind::Share,
                "cor-1",
            ),
            // Parts are separated: moving a character across a boundary is another key.
            idempotency_key(
                "provincial",
                "medical_insurancer",
                "1",
                1,
                Channel::GovShare,
                Kind::Share,
                "",
            ),
        ];
        let distinct: std::collections::HashSet<&String> = others.iter().collect();
        assert_eq!(distinct.len(), others.len());
        assert!(!distinct.contains(&base));
    }

    #[test]
    fn an_entry_is_shown_by_its_display_key_or_its_idempotency_key_and_listed() {
        let (store, _) = memory::store();
        let e = entry("provincial", "r1", Kind::Share, T0);
        let key = enqueue(&store, &e);
        let shown = display_key(&key);
        assert!(shown.starts_with("out/provincial/1/"), "{shown}");
        assert_eq!(show(&store, &shown).unwrap().unwrap()["record_id"], "r1");
        assert_eq!(
            show(&store, &e.idempotency_key).unwrap().unwrap()["record_id"],
            "r1"
        );
        assert!(show(&store, "out/provincial/1/00000000000000000999")
            .unwrap()
            .is_none());
        let listed = list(&store, Some("provincial"), false, 10).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["idempotency_key"], e.idempotency_key.as_str());

        dead_letter(&store, &key, 422);
        let dead = list(&store, None, true, 10).unwrap();
        assert_eq!(
            (dead.len(), &dead[0]["status"]),
            (1, &serde_json::json!(422))
        );
        assert_eq!(
            show(&store, &e.idempotency_key).unwrap().unwrap()["status"],
            422
        );
    }

    /// The operator's replay through the single writer: audited, durable, keys kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_operator_replay_goes_through_the_writer_and_is_audited() {
        let (store, _) = memory::store();
        let key = enqueue(&store, &entry("provincial", "a", Kind::Share, T0));
        dead_letter(&store, &key, 422);
        let clock: crate::clock::SharedClock =
            std::sync::Arc::new(crate::clock::ManualClock::new(T0));
        let (committer, handle) = crate::exchange::start(store.clone(), clock).unwrap();
        let answer = ops::replay(&store, &handle, Some("provincial"), None, "op", "fixed")
            .await
            .unwrap();
        assert_eq!(answer["replayed"], 1);
        let queue = pending(&store, "provincial", 10).unwrap();
        assert_eq!(
            queue[0].1.idempotency_key,
            entry("provincial", "a", Kind::Share, T0).idempotency_key
        );
        assert_eq!(stats(&store, "provincial").unwrap().dead_letters, 0);
        let (_, audit) = store
            .last_under::<crate::audit::Entry>("aud/")
            .unwrap()
            .unwrap();
        assert_eq!(audit.kind, "operator_outbox_replay");
        assert_eq!(
            (audit.data["replayed"].clone(), audit.data["by"].clone()),
            (serde_json::json!(1), serde_json::json!("op"))
        );
        drop(handle);
        tokio::task::spawn_blocking(move || committer.join())
            .await
            .unwrap();
    }
}
