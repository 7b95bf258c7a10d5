//! The data directory's format version (`meta/format`), so an operator's existing data directory
//! opens in the next release and a directory written by a newer release is refused instead of
//! being misread.
//!
//! Versions: 1 is every release before the key existed (no `meta/format`); 2 adds the evaluation
//! key spaces (`chg/`, `evt/`, `evc/`), which are additive: a version-1 directory needs no rewrite
//! (its subjects are evaluated by the first yearly cycle). 3 queues shares by reference: an
//! outbox entry names the archived version and the disclosure decision instead of carrying a
//! copy of the filtered record (`outbox::ShareSource`; entries of format 2 keep their payload
//! and are delivered as they are), and follows changes through a log (`chg/{seq:020}`, one entry
//! per group commit listing its subjects) instead of one `chg/{subject}` key per subject: the step
//! gathers the format-2 keys into log entries, in chunks, logging its progress. Each later change
//! adds a step to
//! [`migrate`], run once, in order, before anything else touches the data. 4 protects personal
//! information at rest (`privacy`): every key naming a person in clear (`arc/resident_id:…`)
//! moves to the keyed hash of the identifier, every value naming one is rewritten, and every
//! value passes through the protection (its personal and restricted fields sealed). The step
//! walks the whole store in chunks, each atomic, logging its progress; values already sealed are
//! skipped, so an interrupted step resumes at the next start. 5 keeps the names of persons'
//! evaluation records: before format 4 a person's `EVAL-`, `PUB-` and `LINK-` record ids were
//! derived from the clear archive key (`resident_id:110…`), after it from the keyed one, so a
//! person evaluated before the upgrade would get a second result (and a platform a second
//! published result) under a new id. The step finds, for each person, the records named the old
//! way (recomputing the old ids, whose formulas are frozen here) and records the clear form in the
//! subject's entry (`named_before_sealing`, sealed), from which those ids keep being derived. 6
//! gives the publication ledger a key space of its own (issue #28): each record's ledger, kept
//! until then inside its archive head (`rec/…` member `publication`, opaque to the archive), moves
//! to `led/{agency}\x1f{record_id}`, and a head that still notes the platforms a release before
//! the ledger queued it for (member `shared`) has its ledger seeded there from them (the shape is
//! frozen here, [`legacy_ledger`]); both members leave the head. The step walks the heads in
//! chunks; each chunk is one atomic write set (the ledger keys and the rewritten heads together),
//! flushed before the next, so a crash leaves whole chunks done; a head already rewritten holds
//! neither member and is skipped, so the step run again after a crash finishes the rest and
//! changes nothing twice.
//!
//! Never does: interpret any key beyond what a migration step rewrites (steps work on raw keys
//! and JSON, never on domain types, so this module imports no domain module).

use super::{Store, StoreError, WriteSet};

/// The format this release writes.
pub const CURRENT: u32 = 6;
pub const KEY: &str = "meta/format";

/// Check the directory's format, migrate an older one, record the current one. Returns the
/// format found (1 for a directory from before the key, `CURRENT` for a new one).
pub fn open(db: &Store) -> Result<u32, StoreError> {
    let found = found(db)?;
    if found > CURRENT {
        return Err(StoreError::NewerFormat {
            found,
            known: CURRENT,
        });
    }
    for from in found..CURRENT {
        migrate(db, from)?;
        record(db, from + 1)?;
        tracing::info!(from, to = from + 1, "data directory migrated");
    }
    if db.get_raw(KEY.as_bytes())?.is_none() {
        record(db, CURRENT)?;
    }
    Ok(found)
}

/// The directory's format as found (1 for a directory from before the key, `CURRENT` for an
/// empty one), without migrating anything.
pub fn found(db: &Store) -> Result<u32, StoreError> {
    Ok(match db.get_raw(KEY.as_bytes())? {
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .ok_or_else(|| StoreError::Corrupt {
                key: KEY.into(),
                message: "not a format number".into(),
            })?,
        None if is_empty(db)? => CURRENT,
        None => 1,
    })
}

fn record(db: &Store, format: u32) -> Result<(), StoreError> {
    let mut w = WriteSet::default();
    w.put(KEY, format.to_string());
    db.apply(w)?;
    db.flush()
}

/// Nothing stored but the record of the keys (written before the format, see
/// `Store::over_protected`).
fn is_empty(db: &Store) -> Result<bool, StoreError> {
    for item in db.range_stored(b"", None) {
        let (k, _) = item?;
        if k.as_slice() != super::at_rest::KEYS_KEY {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One step from format `from` to `from + 1`.
fn migrate(db: &Store, from: u32) -> Result<(), StoreError> {
    match from {
        // 1 -> 2: new key spaces only; nothing to rewrite.
        1 => Ok(()),
        // 2 -> 3: outbox entries with a payload of their own stay deliverable as they are; the
        // per-subject change keys become change-log entries.
        2 => subject_changes_into_log(db),
        3 => seal_in_place(db),
        4 => evaluation_names_kept(db),
        5 => ledgers_out_of_heads(db),
        _ => Ok(()),
    }
}

/// The identifier types of persons, as keys name them (`resident_id:110…`): the clear form
/// format 4 replaces by `resident_id:k:<keyed hash>`.
const PERSONAL_TYPES: [&str; 5] = [
    "resident_id",
    "passport",
    "hk_macao_permit",
    "taiwan_permit",
    "foreign_permanent_resident",
];

/// A subject key in clear (`resident_id:110…`) in its keyed form, or `None` when `text` is not
/// one.
fn pseudonym(text: &str, at_rest: &dyn super::AtRest) -> Option<String> {
    let (kind, id) = text.split_once(':')?;
    // An identifier is letters and digits: `resident_id:sha256:…` (an earlier audit entry's
    // digest) or free text is not a subject key.
    let identifier = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric());
    if !PERSONAL_TYPES.contains(&kind) || !identifier {
        return None;
    }
    Some(format!(
        "{kind}:k:{}",
        at_rest.lookup_token(text.as_bytes())
    ))
}

/// A key with every segment that names a person in clear replaced by its keyed form.
fn pseudonymize_key(key: &str, at_rest: &dyn super::AtRest) -> Option<String> {
    let (space, rest) = key.split_once('/')?;
    if space.len() != 3 || !space.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let mut changed = false;
    let parts: Vec<String> = rest
        .split(super::SEP)
        .map(|part| match pseudonym(part, at_rest) {
            Some(p) => {
                changed = true;
                p
            }
            None => part.to_string(),
        })
        .collect();
    changed.then(|| format!("{space}/{}", parts.join(&super::SEP.to_string())))
}

/// Every string in a JSON value that is a person's subject key in clear, in its keyed form.
fn pseudonymize_value(value: &mut serde_json::Value, at_rest: &dyn super::AtRest) -> bool {
    use serde_json::Value;
    match value {
        // A subject key, or a key that holds one (an outbox entry's `version_key`,
        // `arc/resident_id:110…␟05␟…`).
        Value::String(s) => match pseudonym(s, at_rest).or_else(|| pseudonymize_key(s, at_rest)) {
            Some(p) => {
                *s = p;
                true
            }
            None => false,
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, v| pseudonymize_value(v, at_rest) | any),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |any, v| pseudonymize_value(v, at_rest) | any),
        _ => false,
    }
}

/// Format 3 -> 4: persons' keys to keyed hashes, values through the protection at rest.
fn seal_in_place(db: &Store) -> Result<(), StoreError> {
    let Some(at_rest) = db.at_rest().cloned() else {
        return Err(StoreError::Sealing {
            key: KEY.into(),
            message: "format 4 seals personal information: open the data directory with the gateway's keys (crypto.key_file)".into(),
        });
    };
    let at_rest = at_rest.as_ref();
    let mut cursor: Vec<u8> = Vec::new();
    let (mut seen, mut rewritten) = (0usize, 0usize);
    loop {
        let mut w = WriteSet::default();
        let mut n = 0;
        let mut last = None;
        for item in db.range_stored(&cursor, None) {
            let (k, v) = item?;
            last = Some(k.clone());
            n += 1;
            if n > MIGRATION_CHUNK {
                break;
            }
            if k.as_slice() == KEY.as_bytes() {
                continue;
            }
            let text = String::from_utf8_lossy(&k).into_owned();
            let new_key = pseudonymize_key(&text, at_rest);
            // Sealed already: by an earlier step of this open, or by this step before a restart.
            // A `$sealed` member an older release stored from input is not ours and does not
            // open: such a value was never protected, and goes to the protection as it is.
            let opened = super::at_rest::is_sealed(&v)
                .then(|| at_rest.reveal(&k, v.clone()).ok())
                .flatten();
            let was_sealed = opened.is_some();
            let mut value = opened.unwrap_or_else(|| v.clone());
            let mut renamed = false;
            // Audit entries and receipts are hashed and signed as they are: never rewritten (they
            // name persons only by digest).
            let hashed = k.starts_with(b"aud/") || k.starts_with(b"rcp/");
            if let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&value) {
                if !hashed && pseudonymize_value(&mut json, at_rest) {
                    value = serde_json::to_vec(&json).unwrap_or(value);
                    renamed = true;
                }
            }
            if was_sealed && !renamed && new_key.is_none() {
                continue;
            }
            let value = at_rest.protect(&k, value)?;
            match new_key {
                Some(nk) => {
                    w.remove(k);
                    w.put(nk, value);
                }
                None if value != v => w.put(k, value),
                None => continue,
            }
            rewritten += 1;
        }
        seen += n.min(MIGRATION_CHUNK);
        let Some(mut next) = last else {
            return Ok(());
        };
        let done = n <= MIGRATION_CHUNK;
        if !w.is_empty() {
            db.apply_stored(w)?;
            db.flush()?;
        }
        tracing::info!(
            keys = seen,
            rewritten,
            "migrating to format 4: personal information sealed at rest"
        );
        if done {
            return Ok(());
        }
        // The last key read was not processed (the chunk was full): start there.
        cursor = std::mem::take(&mut next);
    }
}

/// The ids earlier releases gave an evaluation's records, as they computed them (frozen: a later
/// change of `evaluation::ids` must not change what this step recognizes).
mod frozen_ids {
    use sha2::Digest;

    pub fn subject_token(naming_key: &str) -> String {
        hex::encode(&sha2::Sha256::digest(naming_key.as_bytes())[..8])
    }

    /// `EVAL-{year}-{token}` or `PUB-{year}-{token}` of `naming_key`.
    pub fn is_result_of(record_id: &str, naming_key: &str) -> bool {
        let rest = record_id
            .strip_prefix("EVAL-")
            .or_else(|| record_id.strip_prefix("PUB-"));
        rest.and_then(|r| r.split_once('-'))
            .is_some_and(|(year, token)| year.len() == 4 && token == subject_token(naming_key))
    }

    pub fn link(agency: &str, record_id: &str, naming_key: &str) -> String {
        let mut h = sha2::Sha256::new();
        h.update(agency.as_bytes());
        h.update([0x1f]);
        h.update(record_id.as_bytes());
        h.update([0x1f]);
        h.update(naming_key.as_bytes());
        format!("LINK-{}", hex::encode(&h.finalize()[..8]))
    }
}

/// Format 4 -> 5: each person whose evaluation records carry ids derived from the clear
/// identifier gets `named_before_sealing` in its subject entry.
fn evaluation_names_kept(db: &Store) -> Result<(), StoreError> {
    if db.at_rest().is_none() {
        // Without the keys the identifiers cannot be read, and the old ids would be lost.
        return Err(StoreError::Sealing {
            key: KEY.into(),
            message: "format 5 reads sealed identifiers: open the data directory with the gateway's keys (crypto.key_file)".into(),
        });
    }
    let mut cursor = b"sub/".to_vec();
    let (mut seen, mut kept) = (0usize, 0usize);
    loop {
        let mut chunk = Vec::new();
        for item in db.range_raw(&cursor, None) {
            let (k, v) = item?;
            if !k.starts_with(b"sub/") || chunk.len() >= MIGRATION_CHUNK {
                break;
            }
            chunk.push((k, v));
        }
        let Some((last, _)) = chunk.last() else {
            return Ok(());
        };
        cursor = last.iter().copied().chain([0u8]).collect();
        let mut w = WriteSet::default();
        for (k, v) in &chunk {
            let subject = String::from_utf8_lossy(&k[4..]).into_owned();
            let Some((id_type, _)) = subject.split_once(":k:") else {
                continue;
            };
            if !PERSONAL_TYPES.contains(&id_type) {
                continue;
            }
            let mut entry: serde_json::Value =
                serde_json::from_slice(v).map_err(|e| StoreError::corrupt(k, e))?;
            if entry.get("named_before_sealing").is_some() {
                continue;
            }
            if let Some(id) = named_the_old_way(db, &subject)? {
                entry["named_before_sealing"] = serde_json::json!({"id_type": id_type, "id": id});
                w.put(k.clone(), serde_json::to_vec(&entry).unwrap_or_default());
                kept += 1;
            }
        }
        seen += chunk.len();
        if !w.is_empty() {
            db.apply(w)?;
            db.flush()?;
        }
        tracing::info!(
            subjects = seen,
            kept,
            "migrating to format 5: persons' evaluation records keep their ids"
        );
        if chunk.len() < MIGRATION_CHUNK {
            return Ok(());
        }
    }
}

/// The person's clear identifier when one of their stored records is an evaluation record named
/// from it (`subject` is the keyed archive key).
fn named_the_old_way(db: &Store, subject: &str) -> Result<Option<String>, StoreError> {
    let prefix = format!("arc/{subject}{}", super::SEP);
    let mut clear: Option<(String, String)> = None;
    for item in db.scan_raw(prefix.as_bytes()) {
        let (k, v) = item?;
        let key = String::from_utf8_lossy(&k).into_owned();
        // arc/{subject}␟{category#}␟{agency}␟{record_id}␟{version}
        let Some(record_id) = key.split(super::SEP).nth(3) else {
            continue;
        };
        let derived = ["EVAL-", "PUB-", "LINK-"]
            .iter()
            .any(|p| record_id.starts_with(p));
        if !derived {
            continue;
        }
        let version: serde_json::Value =
            serde_json::from_slice(&v).map_err(|e| StoreError::corrupt(&k, e))?;
        let record = &version["record"];
        if clear.is_none() {
            let (Some(t), Some(id)) = (
                record.pointer("/subject/id_type").and_then(|v| v.as_str()),
                record.pointer("/subject/id").and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            clear = Some((format!("{t}:{id}"), id.to_string()));
        }
        let Some((old_key, id)) = &clear else {
            continue;
        };
        let old_link = |r: &serde_json::Value| {
            let to = r.pointer("/content/linked_to")?;
            Some(frozen_ids::link(
                to.get("agency")?.as_str()?,
                to.get("record_id")?.as_str()?,
                old_key,
            ))
        };
        if frozen_ids::is_result_of(record_id, old_key)
            || old_link(record).as_deref() == Some(record_id)
        {
            return Ok(Some(id.clone()));
        }
    }
    Ok(None)
}

/// Format 5 -> 6: every record head's publication ledger to the ledger's own key
/// (`rec/{agency}\x1f{record_id}` -> `led/{agency}\x1f{record_id}`), the head without it.
fn ledgers_out_of_heads(db: &Store) -> Result<(), StoreError> {
    ledgers_out_of_heads_in(db, MIGRATION_CHUNK)
}

fn ledgers_out_of_heads_in(db: &Store, chunk_size: usize) -> Result<(), StoreError> {
    let mut cursor = HEADS.to_vec();
    let (mut seen, mut moved) = (0usize, 0usize);
    loop {
        let mut chunk = Vec::new();
        for item in db.range_raw(&cursor, None) {
            let (k, v) = item?;
            if !k.starts_with(HEADS) || chunk.len() >= chunk_size {
                break;
            }
            chunk.push((k, v));
        }
        let Some((last, _)) = chunk.last() else {
            return Ok(());
        };
        // The smallest key after the last one read.
        cursor = last.iter().copied().chain([0u8]).collect();
        let mut w = WriteSet::default();
        for (k, v) in &chunk {
            let mut head: serde_json::Value =
                serde_json::from_slice(v).map_err(|e| StoreError::corrupt(k, e))?;
            let Some(members) = head.as_object_mut() else {
                return Err(StoreError::corrupt(
                    k,
                    "a record head that is not an object",
                ));
            };
            let publication = members.remove("publication").filter(|p| !p.is_null());
            let shared = members.remove("shared");
            if publication.is_none() && shared.is_none() {
                // Rewritten already (by this step before a crash), or never shared.
                continue;
            }
            let ledger = match publication {
                Some(ledger) => Some(ledger),
                None => legacy_ledger(&head, shared.as_ref()),
            };
            if let Some(ledger) = ledger {
                let key: Vec<u8> = LEDGERS.iter().chain(&k[HEADS.len()..]).copied().collect();
                w.put(key, serde_json::to_vec(&ledger).unwrap_or_default());
                moved += 1;
            }
            w.put(k.clone(), serde_json::to_vec(&head).unwrap_or_default());
        }
        seen += chunk.len();
        if !w.is_empty() {
            // One atomic write set: a head loses its ledger only together with the ledger's key
            // being written.
            db.apply(w)?;
            db.flush()?;
        }
        tracing::info!(
            records = seen,
            moved,
            "migrating to format 6: the publication ledger in its own key space"
        );
        if chunk.len() < chunk_size {
            return Ok(());
        }
    }
}

/// The key spaces the format-6 step reads and writes: record heads, and the ledger's.
const HEADS: &[u8] = b"rec/";
const LEDGERS: &[u8] = b"led/";

/// The ledger a record shared before the ledger existed starts with (frozen: the shape of the
/// ledger's `Ledger` as format 6 defines it): each (platform, channel) its head's `shared` notes,
/// held since the head's last update, by the version it was then. `None` when it notes none.
fn legacy_ledger(
    head: &serde_json::Value,
    shared: Option<&serde_json::Value>,
) -> Option<serde_json::Value> {
    let shared = shared?.as_array().filter(|s| !s.is_empty())?;
    let holdings: Vec<serde_json::Value> = shared
        .iter()
        .filter_map(|pair| {
            let [destination, channel] = pair.as_array()?.as_slice() else {
                return None;
            };
            Some(serde_json::json!({
                "destination": destination,
                "channel": channel,
                "events": [{
                    "at": head["updated_at"],
                    "action": "publish",
                    "version": head["version"],
                    "idempotency_key": "",
                    "rule": "before-ledger",
                    "rules_hash": "",
                    "legacy": true,
                }],
            }))
        })
        .collect();
    Some(serde_json::json!({ "holdings": holdings }))
}

/// Subjects per change-log entry the migration writes (and per atomic step: a crash in the
/// middle leaves whole steps done, and the rest is done at the next start).
const MIGRATION_CHUNK: usize = 10_000;

/// Format 2's `chg/{subject}` keys into format 3's change log (`chg/{seq:020}` -> JSON array of
/// subjects).
fn subject_changes_into_log(db: &Store) -> Result<(), StoreError> {
    use super::keys::{Key, SeqKey};
    let is_log_key = |k: &[u8]| SeqKey::decode(&String::from_utf8_lossy(k)).is_some();
    let mut done = 0usize;
    loop {
        let mut chunk = Vec::new();
        for item in db.scan_raw(b"chg/") {
            let (k, _) = item?;
            if !is_log_key(&k) {
                chunk.push(k);
                if chunk.len() >= MIGRATION_CHUNK {
                    break;
                }
            }
        }
        if chunk.is_empty() {
            return Ok(());
        }
        let subjects: Vec<String> = chunk
            .iter()
            .map(|k| String::from_utf8_lossy(&k[4..]).into_owned())
            .collect();
        let mut w = WriteSet::default();
        w.put(
            SeqKey::change_log(db.next_id()?),
            serde_json::to_vec(&subjects).unwrap_or_default(),
        );
        for k in chunk {
            w.remove(k);
        }
        db.apply(w)?;
        db.flush()?;
        done += subjects.len();
        tracing::info!(
            subjects = done,
            "migrating to format 3: pending subject changes moved into the change log"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled::SledEngine;
    use crate::store::Durability;

    /// A store over a fresh engine whose format was not checked yet.
    fn db() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let engine = SledEngine::open(dir.path(), Durability::ProcessCrash, 8).unwrap();
        (
            dir,
            Store {
                engine: std::sync::Arc::new(engine),
                // Format 4 seals in place: the migration needs the protection (a test-only use of
                // the layer above).
                at_rest: Some(std::sync::Arc::new(crate::privacy::Protection::new(
                    crate::crypto::Keyring::ephemeral(crate::crypto::Suite::National),
                ))),
                keys: None,
                reserve: None,
            },
        )
    }

    /// Write as an older release did: the bytes as given, nothing sealed.
    fn put(db: &Store, k: &str, v: &str) {
        let mut w = WriteSet::default();
        w.put(k, v);
        db.apply_stored(w).unwrap();
    }

    #[test]
    fn a_new_directory_gets_the_current_format_and_an_old_one_is_migrated() {
        let (_d, fresh) = db();
        assert_eq!(open(&fresh).unwrap(), CURRENT);
        assert_eq!(
            fresh.get_raw(KEY.as_bytes()).unwrap().unwrap(),
            CURRENT.to_string().into_bytes()
        );
        let (_d, old) = db();
        put(&old, "rec/x", "{}");
        assert_eq!(
            open(&old).unwrap(),
            1,
            "data without a format key is the first release's"
        );
        assert_eq!(
            old.get_raw(KEY.as_bytes()).unwrap().unwrap(),
            CURRENT.to_string().into_bytes()
        );
        assert_eq!(
            open(&old).unwrap(),
            CURRENT,
            "and opens as current afterwards"
        );
    }

    #[test]
    fn format_2_subject_changes_become_one_change_log_and_nothing_else_moves() {
        let (_d, old) = db();
        put(&old, KEY, "2");
        put(&old, "chg/uscc:91310110666007217T", "5-123");
        put(&old, "chg/resident_id:110101199003071234", "5-123");
        put(&old, "rec/a\u{1f}1", "{}");
        assert_eq!(open(&old).unwrap(), 2);
        let chg: Vec<_> = old.scan_raw(b"chg/").map(Result::unwrap).collect();
        assert_eq!(chg.len(), 1, "one log entry replaces the subject keys");
        assert_eq!(chg[0].0.len(), 24, "chg/ and a 20-digit sequence");
        let subjects: Vec<String> = serde_json::from_slice(&chg[0].1).unwrap();
        let person = pseudonym(
            "resident_id:110101199003071234",
            old.at_rest().unwrap().as_ref(),
        )
        .unwrap();
        assert!(person.starts_with("resident_id:k:"));
        assert_eq!(
            subjects,
            vec![person, "uscc:91310110666007217T".to_string()],
            "format 4 then names the person by the keyed hash"
        );
        assert!(old.get_raw("rec/a\u{1f}1".as_bytes()).unwrap().is_some());
    }

    #[test]
    fn format_3_is_sealed_in_place_persons_keyed_by_hash_and_values_still_read() {
        let (_d, old) = db();
        put(&old, KEY, "3");
        let record = r#"{"version":1,"record":{"subject":{"id_type":"resident_id","id":"110101199003071234","name":"张三"},"content":{}}}"#;
        put(
            &old,
            "arc/resident_id:110101199003071234\u{1f}05\u{1f}a\u{1f}r1\u{1f}0000000001",
            record,
        );
        put(
            &old,
            "sub/resident_id:110101199003071234",
            r#"{"id_type":"resident_id","name":"张三"}"#,
        );
        put(
            &old,
            "rec/a\u{1f}r1",
            r#"{"subject":"resident_id:110101199003071234"}"#,
        );
        put(
            &old,
            "sub/uscc:91310110666007217T",
            r#"{"id_type":"uscc","name":"某公司"}"#,
        );
        // Hashed as stored: an audit entry naming a person by an earlier release's digest.
        let audit =
            r#"{"seq":7,"data":{"subject":"resident_id:sha256:6e8d8c8fc638c5ae"},"hash":"h"}"#;
        put(&old, "aud/00000000000000000007", audit);
        // A share queued by reference to the person's version.
        put(
            &old,
            "out/provincial\u{1f}00000000000000000009",
            r#"{"source":{"version_key":"arc/resident_id:110101199003071234\u001f05\u001fa\u001fr1\u001f0000000001"}}"#,
        );
        // A `$sealed` member an older release stored from input.
        let foreign = r#"{"content":{"x":{"$sealed":"k1.AAAA"}}}"#;
        let foreign_key = "arc/uscc:91310110666007217T\u{1f}05\u{1f}a\u{1f}r2\u{1f}0000000001";
        put(&old, foreign_key, foreign);
        assert_eq!(open(&old).unwrap(), 3);
        assert_eq!(
            old.get_raw(b"aud/00000000000000000007").unwrap().unwrap(),
            audit.as_bytes(),
            "an audit entry is never rewritten"
        );
        let queued: serde_json::Value = old
            .get_json("out/provincial\u{1f}00000000000000000009")
            .unwrap()
            .unwrap();
        let version_key = queued["source"]["version_key"].as_str().unwrap();
        assert!(
            old.get_raw(version_key.as_bytes()).unwrap().is_some(),
            "a queued share still finds its version: {version_key}"
        );
        let back: serde_json::Value = old.get_json(foreign_key).unwrap().unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(foreign).unwrap()
        );
        let mut clear = Vec::new();
        for pair in old.scan_stored(b"") {
            let (k, v) = pair.unwrap();
            let both = [k, v].concat();
            let text = String::from_utf8_lossy(&both).into_owned();
            if text.contains("110101199003071234") || text.contains("张三") {
                clear.push(text);
            }
        }
        assert!(clear.is_empty(), "in clear after the migration: {clear:?}");
        let person = pseudonym(
            "resident_id:110101199003071234",
            old.at_rest().unwrap().as_ref(),
        )
        .unwrap();
        let head: serde_json::Value = old.get_json("rec/a\u{1f}r1").unwrap().unwrap();
        assert_eq!(head["subject"], person.as_str());
        let entry: serde_json::Value = old.get_json(&format!("sub/{person}")).unwrap().unwrap();
        assert_eq!(entry["name"], "张三", "opened on read");
        let version: serde_json::Value = old
            .get_json(&format!(
                "arc/{person}\u{1f}05\u{1f}a\u{1f}r1\u{1f}0000000001"
            ))
            .unwrap()
            .unwrap();
        assert_eq!(version["record"]["subject"]["id"], "110101199003071234");
        assert!(old
            .get_raw("sub/uscc:91310110666007217T".as_bytes())
            .unwrap()
            .is_some());
        // A second open finds nothing to do.
        assert_eq!(open(&old).unwrap(), CURRENT);
    }

    /// A store over a fresh in-memory engine whose format was not checked yet, and the engine
    /// (for its crash hooks).
    fn memory_db() -> (std::sync::Arc<crate::store::memory::MemoryEngine>, Store) {
        let engine = std::sync::Arc::new(crate::store::memory::MemoryEngine::default());
        let store = Store {
            engine: engine.clone(),
            at_rest: None,
            keys: None,
            reserve: None,
        };
        (engine, store)
    }

    /// A ledger as format 5 kept it in a head's `publication`.
    fn publication(destination: &str) -> serde_json::Value {
        serde_json::json!({"holdings": [{"destination": destination, "channel": "gov_share", "events": [{
            "at": "2026-11-25T10:00:00+08:00", "action": "publish", "version": 1,
            "idempotency_key": format!("k-{destination}"),
            "outbox_key": format!("out/{destination}\u{1f}1\u{1f}00000000000000000003"),
            "rule": "gov_share_all", "rules_hash": "h", "payload_hash": "p"}]}]})
    }

    fn head_with(members: serde_json::Value) -> String {
        let mut head = serde_json::json!({"subject": "uscc:91310110666007217T",
            "category": "administrative", "version": 2, "content_hash": "c",
            "updated_at": "2026-11-25T10:00:00+08:00"});
        for (k, v) in members.as_object().unwrap() {
            head[k] = v.clone();
        }
        head.to_string()
    }

    fn json_at(db: &Store, key: &str) -> Option<serde_json::Value> {
        db.get_json(key).unwrap()
    }

    /// Format 5 -> 6: each head's ledger moves to `led/`, a pre-ledger head's `shared` seeds one,
    /// and a crash between two chunks leaves whole chunks done, which the next start finishes.
    #[test]
    fn format_5_ledgers_leave_the_heads_for_their_own_keys_and_a_rerun_after_a_crash_finishes() {
        let (engine, old) = memory_db();
        put(&old, KEY, "5");
        let rec = |id: &str| format!("rec/medical_insurance\u{1f}{id}");
        let led = |id: &str| format!("led/medical_insurance\u{1f}{id}");
        let mark = serde_json::json!([{"kind": "objection", "id": "obj-1", "since": "2026-11-26T10:00:00+08:00"}]);
        let legacy =
            serde_json::json!([["guangzhou", "public_notice"], ["provincial", "gov_share"]]);
        let heads = [
            (
                "r1",
                serde_json::json!({"publication": publication("provincial"), "marks": mark}),
            ),
            ("r2", serde_json::json!({"shared": legacy})),
            ("r3", serde_json::json!({})),
            (
                "r4",
                serde_json::json!({"publication": publication("guangzhou")}),
            ),
            (
                "r5",
                serde_json::json!({"publication": publication("provincial"), "shared": [["guangzhou", "gov_share"]]}),
            ),
        ];
        for (id, members) in &heads {
            put(&old, &rec(id), &head_with(members.clone()));
        }
        put(&old, "sub/uscc:91310110666007217T", r#"{"name":"某医院"}"#);

        // The second chunk's write set never lands (a crash before it was applied).
        engine.fail_apply_in(2);
        assert!(ledgers_out_of_heads_in(&old, 2).is_err());
        engine.crash();
        assert_eq!(found(&old).unwrap(), 5, "the step is not recorded done");
        assert_eq!(json_at(&old, &led("r1")), Some(publication("provincial")));
        assert!(json_at(&old, &led("r2")).is_some());
        let r1 = json_at(&old, &rec("r1")).unwrap();
        assert!(r1.get("publication").is_none() && r1["marks"] == mark);
        // The second chunk (r3, r4) is untouched: r4 keeps its ledger in its head.
        assert!(json_at(&old, &led("r4")).is_none());
        assert_eq!(
            json_at(&old, &rec("r4")).unwrap()["publication"],
            publication("guangzhou")
        );

        // The next start runs the step again from the beginning and finishes it.
        assert_eq!(open(&old).unwrap(), 5);
        assert_eq!(found(&old).unwrap(), CURRENT);
        assert_eq!(json_at(&old, &led("r1")), Some(publication("provincial")));
        assert_eq!(json_at(&old, &led("r4")), Some(publication("guangzhou")));
        assert_eq!(
            json_at(&old, &led("r5")),
            Some(publication("provincial")),
            "the ledger wins over what a release before it noted"
        );
        assert!(
            json_at(&old, &led("r3")).is_none(),
            "never shared: no ledger"
        );
        let seeded = json_at(&old, &led("r2")).unwrap();
        let holdings = seeded["holdings"].as_array().unwrap();
        assert_eq!(holdings.len(), 2);
        assert_eq!(
            (
                holdings[0]["destination"].as_str(),
                holdings[0]["channel"].as_str()
            ),
            (Some("guangzhou"), Some("public_notice"))
        );
        let event = &holdings[1]["events"][0];
        assert_eq!(event["legacy"], true);
        assert_eq!(
            (event["version"].as_u64(), event["at"].as_str()),
            (Some(2), Some("2026-11-25T10:00:00+08:00"))
        );
        for (id, _) in &heads {
            let head = json_at(&old, &rec(id)).unwrap();
            assert!(
                head.get("publication").is_none() && head.get("shared").is_none(),
                "{id}: {head}"
            );
            assert_eq!(head["version"], 2, "the rest of the head stays");
        }
        assert_eq!(json_at(&old, &rec("r1")).unwrap()["marks"], mark);

        // Run again over a finished directory: nothing changes.
        let before: Vec<_> = old.scan_raw(b"").map(Result::unwrap).collect();
        let applies = engine.applies();
        ledgers_out_of_heads(&old).unwrap();
        assert_eq!(engine.applies(), applies, "nothing to write");
        let after: Vec<_> = old.scan_raw(b"").map(Result::unwrap).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn a_newer_format_is_refused_with_both_versions_named() {
        let (_d, newer) = db();
        put(&newer, KEY, &(CURRENT + 1).to_string());
        let e = open(&newer).unwrap_err();
        assert!(
            e.to_string().contains(&format!("format {}", CURRENT + 1)),
            "{e}"
        );
        assert!(e.to_string().contains(&format!("format {CURRENT}")), "{e}");
    }

    /// Format 4 -> 5: a person whose result or linked record was named from the clear
    /// identifier keeps that naming (sealed in the subject entry); a person named the new way, and
    /// an institution, are left alone.
    #[test]
    fn format_4_persons_evaluated_before_sealing_keep_their_record_names() {
        let (_d, old) = db();
        put(&old, KEY, "4");
        let entry = r#"{"kind":"individual","id_type":"resident_id","name":"某","status":"active","first_seen":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}"#;
        let version = |id: &str, extra: &str| {
            format!(
                r#"{{"version":1,"received_at":"2026-01-01T00:00:00Z","receipt_id":"r","content_hash":"h","record":{{"subject":{{"kind":"individual","id_type":"resident_id","id":"{id}","name":"某"}}{extra}}}}}"#
            )
        };
        let arc = |subject: &str, record_id: &str| {
            format!("arc/{subject}\u{1f}12#\u{1f}evaluator\u{1f}{record_id}\u{1f}0000000001")
        };
        // Evaluated before format 4: its result's id is derived from `resident_id:<id>`.
        let (a, a_id) = ("resident_id:k:aaaa", "440106198001011230");
        put(&old, &format!("sub/{a}"), entry);
        let old_result = format!(
            "EVAL-2026-{}",
            frozen_ids::subject_token(&format!("resident_id:{a_id}"))
        );
        put(&old, &arc(a, &old_result), &version(a_id, ""));
        // Evaluated after format 4: named from its keyed archive key.
        let (b, b_id) = ("resident_id:k:bbbb", "440106197503154560");
        put(&old, &format!("sub/{b}"), entry);
        let new_result = format!("EVAL-2026-{}", frozen_ids::subject_token(b));
        put(&old, &arc(b, &new_result), &version(b_id, ""));
        // Linked to an institution's listing before format 4.
        let (c, c_id) = ("resident_id:k:cccc", "440106199007207896");
        put(&old, &format!("sub/{c}"), entry);
        let link = frozen_ids::link("medical_insurance", "L-1", &format!("resident_id:{c_id}"));
        put(
            &old,
            &arc(c, &link),
            &version(
                c_id,
                r#","content":{"linked_to":{"agency":"medical_insurance","record_id":"L-1"}}"#,
            ),
        );
        assert_eq!(open(&old).unwrap(), 4);
        let named = |subject: &str| {
            let entry: serde_json::Value =
                old.get_json(&format!("sub/{subject}")).unwrap().unwrap();
            entry["named_before_sealing"]["id"]
                .as_str()
                .map(String::from)
        };
        assert_eq!(named(a).as_deref(), Some(a_id));
        assert_eq!(named(b), None, "named the new way: left alone");
        assert_eq!(named(c).as_deref(), Some(c_id));
        let stored = old
            .get_stored(format!("sub/{a}").as_bytes())
            .unwrap()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&stored).contains(a_id),
            "the clear identifier is sealed at rest"
        );
        assert_eq!(open(&old).unwrap(), CURRENT);
    }
}
