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
//! Every kind of entry is named by an [`AuditEvent`] (`event.rs`), the only way to name one when
//! writing; stored entries keep their kind as the string written, so every kind ever written
//! still reads.
//!
//! Never does: write a personal identifier or secret value in clear. Callers pass subjects through
//! [`crate::subject::SubjectId::log_safe`] and bodies as hashes.
//!
//! Reading is bounded: one page of entries holds at most [`PAGE_MAX_BYTES`] of them (plus one
//! entry), with the sequence number the next page starts at.
//!
//! Invariant: only the single writer in `store` appends, inside the same atomic batch as the
//! exchange it records, so the chain has no gap and no fork across crashes.

mod event;
pub mod ops;

pub use event::AuditEvent;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::crypto::Suite;
use crate::store::{to_bytes, Store, StoreError};

/// One stored audit entry. Its `kind` stays the stored string (an [`AuditEvent`]'s name when
/// written), so reading never depends on this release knowing every kind ever written.
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
        kind: AuditEvent,
        data: Map<String, Value>,
    ) -> (String, Vec<u8>, Head) {
        let kind = kind.as_str();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{memory, WriteSet};
    use serde_json::json;

    /// Append `n` entries to the chain as the writer does (each in its own write set); the
    /// heads after each.
    fn append(store: &Store, n: usize, padding: usize) -> Vec<Head> {
        let mut head = Head::load(store).unwrap();
        let mut heads = Vec::new();
        for i in 0..n {
            let mut data = Map::new();
            data.insert("i".into(), json!(i));
            data.insert("pad".into(), json!("x".repeat(padding)));
            let kind = if i % 2 == 0 {
                AuditEvent::BatchReceived
            } else {
                AuditEvent::ShareDelivered
            };
            let (key, bytes, next) = head.append("2026-11-25T10:00:00+08:00", kind, data);
            let mut w = WriteSet::default();
            w.put(key, bytes);
            store.apply(w).unwrap();
            head = next;
            heads.push(head.clone());
        }
        heads
    }

    fn stored(store: &Store, seq: u64) -> Entry {
        store.get_json::<Entry>(&entry_key(seq)).unwrap().unwrap()
    }

    #[test]
    fn each_entry_links_the_hash_of_the_one_before_from_a_zero_genesis() {
        let (store, _) = memory::store();
        let heads = append(&store, 4, 0);
        assert_eq!(stored(&store, 1).prev_hash, "0".repeat(64));
        for seq in 2..=4u64 {
            let (prev, this) = (stored(&store, seq - 1), stored(&store, seq));
            assert_eq!(this.seq, seq);
            assert_eq!(this.prev_hash, prev.hash, "entry {seq}");
            assert_ne!(this.hash, prev.hash);
        }
        assert_eq!(Head::load(&store).unwrap(), heads[3]);
        assert_eq!(heads[3].seq, 4);
    }

    #[test]
    fn verify_passes_on_an_intact_chain_and_names_the_entry_whose_data_changed() {
        let (store, engine) = memory::store();
        assert_eq!(verify(&store).unwrap().seq, 0, "an empty chain is intact");
        let heads = append(&store, 5, 0);
        let head = verify(&store).unwrap();
        assert_eq!((head.seq, &head.hash), (5, &heads[4].hash));

        let mut tampered = stored(&store, 3);
        tampered.data.insert("i".into(), json!(99));
        engine.overwrite(
            entry_key(3).as_bytes(),
            serde_json::to_vec(&tampered).unwrap(),
        );
        assert_eq!(verify(&store), Err(VerifyError::HashMismatch { seq: 3 }));
        let message = verify(&store).unwrap_err().to_string();
        assert!(message.starts_with("entry 3:"), "{message}");
    }

    #[test]
    fn verify_reports_a_rehashed_entry_as_a_broken_link_and_a_removed_one_as_a_gap() {
        let (store, engine) = memory::store();
        append(&store, 4, 0);
        // Entry 2 rewritten with a hash recomputed over its new data: 2 itself is consistent,
        // but entry 3 still names the old hash.
        let mut forged = stored(&store, 2);
        forged.data.insert("i".into(), json!(42));
        forged.hash = link_hash(
            &forged.prev_hash,
            2,
            &forged.at,
            &forged.kind,
            &forged.data,
            forged.suite,
        );
        engine.overwrite(
            entry_key(2).as_bytes(),
            serde_json::to_vec(&forged).unwrap(),
        );
        match verify(&store) {
            Err(VerifyError::BrokenLink { seq: 3, found, .. }) => {
                assert_eq!(found, stored(&store, 3).prev_hash)
            }
            other => panic!("expected a broken link at 3, got {other:?}"),
        }

        let (store, _) = memory::store();
        append(&store, 4, 0);
        let mut w = WriteSet::default();
        w.remove(entry_key(2));
        store.apply(w).unwrap();
        assert_eq!(
            verify(&store),
            Err(VerifyError::Gap {
                expected: 2,
                found: 3
            })
        );
    }

    #[test]
    fn a_checkpoint_names_the_head_and_moves_with_the_chain() {
        let (store, _) = memory::store();
        let now = time::macros::datetime!(2026-11-25 10:00 +08:00);
        let empty = checkpoint(&store, now).unwrap();
        assert_eq!(empty["seq"], 0);
        assert_eq!(empty["hash"], "0".repeat(64));
        let heads = append(&store, 3, 0);
        let doc = checkpoint(&store, now).unwrap();
        assert_eq!(doc["kind"], "audit_checkpoint");
        assert_eq!(doc["seq"], 3);
        assert_eq!(doc["hash"], heads[2].hash.as_str());
        assert_eq!(doc["taken_at"], "2026-11-25T10:00:00+08:00");
        assert_eq!(doc["hash_suite"], json!(Suite::International));
        // A store without keys signs nothing: the document holds these five members only.
        assert_eq!(doc.as_object().unwrap().len(), 5, "{doc}");
    }

    #[test]
    fn pages_follow_on_from_where_the_last_one_ended_and_filter_by_kind() {
        let (store, _) = memory::store();
        append(&store, 7, 0);
        let first = page(&store, 1, 3, PAGE_MAX_BYTES, None).unwrap();
        let seqs: Vec<u64> = first.entries.iter().map(|e| e.seq).collect();
        assert_eq!((seqs, first.next), (vec![1, 2, 3], Some(4)));
        let second = page(&store, 4, 3, PAGE_MAX_BYTES, None).unwrap();
        assert_eq!(second.entries[0].seq, 4);
        assert_eq!(second.next, Some(7));
        let last = page(&store, 7, 3, PAGE_MAX_BYTES, None).unwrap();
        assert_eq!((last.entries.len(), last.next), (1, None));

        // `limit` counts the entries looked at, not only those of the kind asked.
        let odd = page(&store, 1, 4, PAGE_MAX_BYTES, Some("share_delivered")).unwrap();
        let seqs: Vec<u64> = odd.entries.iter().map(|e| e.seq).collect();
        assert_eq!((seqs, odd.next), (vec![2, 4], Some(5)));

        // A limit of 0 still moves on (a page naming itself as the next would never end).
        let zero = page(&store, 1, 0, PAGE_MAX_BYTES, None).unwrap();
        assert_eq!((zero.entries.len(), zero.next), (1, Some(2)));

        assert_eq!(
            entries_from(&store, 6, 100)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>(),
            vec![6, 7]
        );
        assert!(entries_from(&store, 8, 100).unwrap().is_empty());
    }

    #[test]
    fn a_page_stops_before_the_entry_that_would_cross_its_byte_limit_but_holds_one() {
        let (store, _) = memory::store();
        append(&store, 5, 1000);
        let size = store
            .get_raw(entry_key(1).as_bytes())
            .unwrap()
            .unwrap()
            .len();
        // Room for two entries and a half: two are returned, the third starts the next page.
        let p = page(&store, 1, 100, size * 5 / 2, None).unwrap();
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.next, Some(3));
        // Smaller than one entry: the page still holds one, so a reader always moves on.
        let p = page(&store, 1, 100, 10, None).unwrap();
        assert_eq!((p.entries.len(), p.next), (1, Some(2)));
        // `entries_from` is bounded by PAGE_MAX_BYTES whatever the limit asks.
        let (store, _) = memory::store();
        let big = 300 * 1024;
        append(&store, 6, big);
        let entries = entries_from(&store, 1, 100).unwrap();
        let bytes = entries.len() * big;
        assert!(entries.len() < 6, "{} entries", entries.len());
        assert!(bytes <= PAGE_MAX_BYTES, "{bytes} bytes");
    }
}
