//! The tamper-evident audit chain (GD Art. 12, LS Art. 43): every exchange is appended as an
//! entry whose hash covers the previous entry's hash, so altering or removing any entry breaks
//! every later link.
//!
//! Entry n stores `hash_n = H(hash_{n-1} || canonical bytes of entry n)`, where the canonical
//! bytes are the compact JSON of `{seq, at, kind, data, suite}` with sorted keys, and `hash_0` of
//! the first entry's predecessor is 32 zero bytes. Entries live under `aud/` with a 20-digit
//! sequence. `H` is the entry's suite's hash (`crypto.suite`): SM3 for `national`, SHA-256 for
//! `international` and for entries written before suites existed (they carry no `suite`, and
//! their canonical bytes have none). A change of suite needs no break: the first entry under the
//! new suite links the last hash of the old one (GB/T 39786-2021 §8.3: integrity of logs by a
//! hash of the approved algorithms).
//!
//! Never does: write a personal identifier or secret value in clear. Callers pass subjects through
//! [`crate::subject::SubjectId::log_safe`] and bodies as hashes.
//!
//! Reading is bounded: one page of entries holds at most [`PAGE_MAX_BYTES`] of them (plus one
//! entry), with the sequence number the next page starts at.
//!
//! Invariant: only the single writer in `store` appends, inside the same atomic batch as the
//! exchange it records, so the chain has no gap and no fork across crashes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::crypto::Suite;
use crate::store::{to_bytes, Store, StoreError};

/// One stored audit entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub at: String,
    pub kind: String,
    pub data: Map<String, Value>,
    pub prev_hash: String,
    pub hash: String,
    /// The suite whose hash links this entry; absent on entries from before suites (SHA-256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<Suite>,
}

/// The head of the chain: the last sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
    /// The suite the next entries are linked with (the store's, `crypto.suite`).
    #[serde(skip)]
    pub suite: Suite,
}

impl Head {
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: hex::encode([0u8; 32]),
            suite: Suite::International,
        }
    }

    /// The current head as stored.
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let suite = store.suite();
        Ok(match store.last_under::<Entry>("aud/")? {
            Some((_, e)) => Self {
                seq: e.seq,
                hash: e.hash,
                suite,
            },
            None => Self {
                suite,
                ..Self::genesis()
            },
        })
    }

    /// Build the next entry; returns its key, stored bytes and the new head. The caller writes it.
    pub fn append(
        &self,
        at: &str,
        kind: &str,
        data: Map<String, Value>,
    ) -> (String, Vec<u8>, Head) {
        let seq = self.seq + 1;
        let suite = Some(self.suite);
        let hash = link_hash(&self.hash, seq, at, kind, &data, suite);
        let entry = Entry {
            seq,
            at: at.to_string(),
            kind: kind.to_string(),
            data,
            prev_hash: self.hash.clone(),
            hash: hash.clone(),
            suite,
        };
        (
            entry_key(seq),
            to_bytes(&entry),
            Head {
                seq,
                hash,
                suite: self.suite,
            },
        )
    }
}

pub fn entry_key(seq: u64) -> String {
    crate::store::keys::SeqKey::audit(seq)
}

fn link_hash(
    prev: &str,
    seq: u64,
    at: &str,
    kind: &str,
    data: &Map<String, Value>,
    suite: Option<Suite>,
) -> String {
    let mut canonical = Map::new();
    if let Some(s) = suite {
        canonical.insert("suite".into(), Value::String(s.name().into()));
    }
    canonical.insert("at".into(), Value::String(at.into()));
    canonical.insert("data".into(), Value::Object(data.clone()));
    canonical.insert("kind".into(), Value::String(kind.into()));
    canonical.insert("seq".into(), Value::from(seq));
    let bytes = serde_json::to_vec(&Value::Object(canonical)).unwrap_or_default();
    let prev = hex::decode(prev).unwrap_or_default();
    hex::encode(
        suite
            .unwrap_or(Suite::International)
            .digest(&[&prev, &bytes]),
    )
}

/// Where verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("entry {seq}: its hash does not match its content and the previous hash")]
    HashMismatch { seq: u64 },
    #[error("entry {seq}: it names {found} as the previous hash, but entry {} has {expected}", seq - 1)]
    BrokenLink {
        seq: u64,
        expected: String,
        found: String,
    },
    #[error("entry {expected} is missing (next found: {found})")]
    Gap { expected: u64, found: u64 },
    #[error("entry at key {key} cannot be read: {message}")]
    Unreadable { key: String, message: String },
}

/// Walk the whole chain. Ok(head) when every link holds.
pub fn verify(store: &Store) -> Result<Head, VerifyError> {
    let mut head = Head::genesis();
    for item in store.scan_raw(b"aud/") {
        let (k, v) = item.map_err(|e| VerifyError::Unreadable {
            key: "aud/".into(),
            message: e.to_string(),
        })?;
        let key = String::from_utf8_lossy(&k).into_owned();
        let entry: Entry = serde_json::from_slice(&v).map_err(|e| VerifyError::Unreadable {
            key: key.clone(),
            message: e.to_string(),
        })?;
        let expected_seq = head.seq + 1;
        if entry.seq != expected_seq || key != entry_key(entry.seq) {
            return Err(VerifyError::Gap {
                expected: expected_seq,
                found: entry.seq,
            });
        }
        if entry.prev_hash != head.hash {
            return Err(VerifyError::BrokenLink {
                seq: entry.seq,
                expected: head.hash,
                found: entry.prev_hash,
            });
        }
        let linked = link_hash(
            &head.hash,
            entry.seq,
            &entry.at,
            &entry.kind,
            &entry.data,
            entry.suite,
        );
        if linked != entry.hash {
            return Err(VerifyError::HashMismatch { seq: entry.seq });
        }
        head = Head {
            seq: entry.seq,
            hash: entry.hash,
            suite: entry.suite.unwrap_or(Suite::International),
        };
    }
    Ok(head)
}

/// Stored bytes of entries one read of the chain returns at most (`/audit/entries`, `audit show`,
/// the console): a page ends before the entry that would cross it, and always holds at least one
/// entry. A batch's entry is bounded by `ingest.max_records_per_batch` and
/// `ingest.max_listed_rejections` (about 1 MB at the defaults), so a page stays within about
/// 1 MiB plus one entry whatever `limit` asks (issue #31: 50 entries answered 41 MB).
pub const PAGE_MAX_BYTES: usize = 1 << 20;

/// One page of the chain: its entries and where the next page starts, if anything is left.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub entries: Vec<Entry>,
    pub next: Option<u64>,
}

/// Entries from `from` (inclusive), at most `limit` and [`PAGE_MAX_BYTES`].
pub fn entries_from(store: &Store, from: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
    Ok(page(store, from, limit, PAGE_MAX_BYTES, None)?.entries)
}

/// At most `limit` entries from `from` (inclusive) are looked at; those of `kind` (all when
/// `None`) are returned while their stored bytes stay within `max_bytes` (the first always is).
pub fn page(
    store: &Store,
    from: u64,
    limit: usize,
    max_bytes: usize,
    kind: Option<&str>,
) -> Result<Page, StoreError> {
    // A page of none would name itself as the next: a client following it would never end.
    let limit = limit.max(1);
    let mut out = Page::default();
    let (mut looked_at, mut bytes) = (0usize, 0usize);
    for item in store.range_raw(entry_key(from).as_bytes(), None) {
        let (k, v) = item?;
        if !k.starts_with(b"aud/") {
            break;
        }
        if looked_at >= limit || (!out.entries.is_empty() && bytes + v.len() > max_bytes) {
            let entry: Entry = crate::store::decode(&k, &v)?;
            out.next = Some(entry.seq);
            break;
        }
        looked_at += 1;
        let entry: Entry = crate::store::decode(&k, &v)?;
        if kind.is_none_or(|want| entry.kind == want) {
            bytes += v.len();
            out.entries.push(entry);
        }
    }
    Ok(out)
}

/// A signed checkpoint of the chain (`audit checkpoint`): its last sequence number and hash, the
/// suite, when it was taken, and the gateway's signature, so an auditor can later prove the chain
/// then ended there (`audit checkpoint --verify`).
pub fn checkpoint(store: &Store, now: time::OffsetDateTime) -> Result<Value, StoreError> {
    let head = Head::load(store)?;
    let last_suite = store
        .last_under::<Entry>("aud/")?
        .map(|(_, e)| e.suite.unwrap_or(Suite::International));
    let mut doc = serde_json::json!({
        "kind": "audit_checkpoint",
        "seq": head.seq,
        "hash": head.hash,
        "hash_suite": last_suite.unwrap_or(head.suite),
        "taken_at": crate::clock::rfc3339(now),
    });
    if let Some(keys) = store.keys() {
        crate::crypto::signed::sign_document(keys.current().signer(), &mut doc)
            .map_err(|e| StoreError::CommitFailed(format!("cannot sign the checkpoint: {e}")))?;
    }
    Ok(doc)
}
