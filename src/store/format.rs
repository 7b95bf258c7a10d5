//! The data directory's format version (`meta/format`), so an operator's existing data directory
//! opens in the next release and a directory written by a newer release is refused instead of
//! being misread.
//!
//! Versions: 1 is every release before the key existed (no `meta/format`); 2 adds the evaluation
//! key spaces (`chg/`, `evt/`, `evc/`), which are additive: a version-1 directory needs no rewrite
//! (its subjects are evaluated by the first yearly cycle). 3 queues shares by reference: an
//! outbox entry names the archived version and the disclosure decision instead of carrying a
//! copy of the filtered record (`outbox::ShareSource`); entries of format 2 keep their payload
//! and are delivered as they are, so the step rewrites nothing, but a release of format 2 must
//! not read (and would misread) the new entries. Each later change adds a step to
//! [`migrate`], run once, in order, before anything else touches the data.
//!
//! Never does: interpret any other key.

use super::{Store, StoreError, WriteSet};

/// The format this release writes.
pub const CURRENT: u32 = 3;
pub const KEY: &str = "meta/format";

/// Check the directory's format, migrate an older one, record the current one. Returns the
/// format found (1 for a directory from before the key, `CURRENT` for a new one).
pub fn open(db: &Store) -> Result<u32, StoreError> {
    let found = match db.get_raw(KEY.as_bytes())? {
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .ok_or_else(|| StoreError::Corrupt {
                key: KEY.into(),
                message: "not a format number".into(),
            })?,
        None if is_empty(db)? => CURRENT,
        None => 1,
    };
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

fn record(db: &Store, format: u32) -> Result<(), StoreError> {
    let mut w = WriteSet::default();
    w.put(KEY, format.to_string());
    db.apply(w)?;
    db.flush()
}

fn is_empty(db: &Store) -> Result<bool, StoreError> {
    Ok(db.range_raw(b"", None).next().transpose()?.is_none())
}

/// One step from format `from` to `from + 1`.
fn migrate(_db: &Store, from: u32) -> Result<(), StoreError> {
    match from {
        // 1 -> 2: new key spaces only; nothing to rewrite.
        1 => Ok(()),
        // 2 -> 3: entries with a payload of their own stay deliverable as they are.
        2 => Ok(()),
        _ => Ok(()),
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
            },
        )
    }

    fn put(db: &Store, k: &str, v: &str) {
        let mut w = WriteSet::default();
        w.put(k, v);
        db.apply(w).unwrap();
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
}
