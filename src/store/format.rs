//! The data directory's format version (`meta/format`), so an operator's existing data directory
//! opens in the next release and a directory written by a newer release is refused instead of
//! being misread.
//!
//! Versions: 1 is every release before the key existed (no `meta/format`); 2 adds the evaluation
//! key spaces (`chg/`, `evt/`, `evc/`), which are additive: a version-1 directory needs no rewrite
//! (its subjects are evaluated by the first yearly cycle). Each later change adds a step to
//! [`migrate`], run once, in order, before anything else touches the data.
//!
//! Never does: interpret any other key.

use super::StoreError;

/// The format this release writes.
pub const CURRENT: u32 = 2;
pub const KEY: &str = "meta/format";

/// Check the directory's format, migrate an older one, record the current one. Returns the
/// format found (1 for a directory from before the key, `CURRENT` for a new one).
pub fn open(db: &sled::Db) -> Result<u32, StoreError> {
    let found = match db.get(KEY.as_bytes())? {
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
        db.insert(KEY.as_bytes(), (from + 1).to_string().as_bytes())?;
        db.flush()?;
        tracing::info!(from, to = from + 1, "data directory migrated");
    }
    if db.get(KEY.as_bytes())?.is_none() {
        db.insert(KEY.as_bytes(), CURRENT.to_string().as_bytes())?;
        db.flush()?;
    }
    Ok(found)
}

fn is_empty(db: &sled::Db) -> Result<bool, StoreError> {
    Ok(db.iter().next().transpose()?.is_none())
}

/// One step from format `from` to `from + 1`.
fn migrate(_db: &sled::Db, from: u32) -> Result<(), StoreError> {
    match from {
        // 1 -> 2: new key spaces only; nothing to rewrite.
        1 => Ok(()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        (dir, db)
    }

    #[test]
    fn a_new_directory_gets_the_current_format_and_an_old_one_is_migrated() {
        let (_d, fresh) = db();
        assert_eq!(open(&fresh).unwrap(), CURRENT);
        assert_eq!(
            &*fresh.get(KEY).unwrap().unwrap(),
            CURRENT.to_string().as_bytes()
        );
        let (_d, old) = db();
        old.insert("rec/x", "{}").unwrap();
        assert_eq!(
            open(&old).unwrap(),
            1,
            "data without a format key is the first release's"
        );
        assert_eq!(
            &*old.get(KEY).unwrap().unwrap(),
            CURRENT.to_string().as_bytes()
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
        newer
            .insert(KEY, (CURRENT + 1).to_string().as_bytes())
            .unwrap();
        let e = open(&newer).unwrap_err();
        assert!(
            e.to_string().contains(&format!("format {}", CURRENT + 1)),
            "{e}"
        );
        assert!(e.to_string().contains(&format!("format {CURRENT}")), "{e}");
    }
}
