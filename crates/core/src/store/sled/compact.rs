//! Rewriting a sled data directory into a fresh one (`credit-gateway compact`): only the live
//! values are copied, so the pages sled has not cleaned yet (older versions of every value,
//! among them the clear values an upgrade to format 4 sealed) leave the disk, and the directory
//! shrinks to its live size.
//!
//! Crash safety: the copy goes to `<dir>.compact`, marked complete only after it is flushed; then
//! `<dir>` becomes `<dir>.pre-compact`, the copy becomes `<dir>`, and the old one is removed.
//! [`recover`], run before sled opens a directory, finishes or undoes an interrupted swap, so a
//! crash at any point leaves one whole directory.
//!
//! Never does: interpret a key or a value (stored bytes are copied as they are, sealed values
//! sealed).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::SledEngine;
use crate::store::{Durability, Store, StoreError, WriteSet};

/// Keys written per atomic batch of the copy.
const CHUNK: usize = 10_000;
/// In the copy once it is whole.
const COMPLETE: &str = "COMPACT-COMPLETE";

/// `dir` with `suffix` added to its last component (`data` -> `data.compact`); `None` for a path
/// without one (`.`, `/`), which is never compacted.
fn sibling(dir: &Path, suffix: &str) -> Option<PathBuf> {
    let mut name = dir.file_name()?.to_os_string();
    name.push(suffix);
    Some(dir.with_file_name(name))
}

/// What a compaction did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub keys: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Finish or undo a compaction interrupted by a crash (see the module doc).
pub fn recover(dir: &Path) -> std::io::Result<()> {
    let (Some(copy), Some(old), Some(lock)) = (
        sibling(dir, ".compact"),
        sibling(dir, ".pre-compact"),
        sibling(dir, ".compact.lock"),
    ) else {
        return Ok(());
    };
    // A compaction still running holds the lock: its copy is not ours to remove.
    let _held = match std::fs::OpenOptions::new().write(true).open(&lock) {
        Ok(file) => match file.try_lock() {
            Ok(()) => Some(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::other(
                    "a compaction of this data directory is running (credit-gateway compact): wait for it to end",
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let copy_whole = copy.join(COMPLETE).exists();
    // A directory without sled's data file holds nothing (it may have been created empty by a
    // start that came after the crash).
    if !dir.join("db").exists() && (copy_whole || old.exists()) {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        if copy_whole {
            std::fs::rename(&copy, dir)?;
        } else {
            std::fs::rename(&old, dir)?;
        }
    }
    if copy.exists() {
        // A copy that is not whole, or one left beside a directory that is already in place.
        std::fs::remove_dir_all(&copy)?;
    }
    if old.exists() && dir.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    let marker = dir.join(COMPLETE);
    if marker.exists() {
        std::fs::remove_file(marker)?;
    }
    Ok(())
}

/// Rewrite `source`'s directory `dir` (opened, migrated) into a fresh one and swap them.
/// `progress` is told keys copied and total.
pub fn compact(
    source: Store,
    dir: &Path,
    durability: Durability,
    cache_mb: u64,
    mut progress: impl FnMut(usize, usize),
) -> Result<Report, StoreError> {
    let io = |e: std::io::Error| StoreError::Sled(::sled::Error::Io(e));
    let refuse = |why: &str| io(std::io::Error::other(why.to_string()));
    // The copy is made beside the directory and renamed into its place: the directory must be a
    // plain folder with a name, on the same file system as its parent, holding nothing but
    // sled's files and the gateway's loose files (anything else would not survive the swap).
    let (Some(copy), Some(aside), Some(lock_path)) = (
        sibling(dir, ".compact"),
        sibling(dir, ".pre-compact"),
        sibling(dir, ".compact.lock"),
    ) else {
        return Err(refuse(
            "give the data directory by its name (storage.data_dir = \"data\", not \".\")",
        ));
    };
    if std::fs::symlink_metadata(dir)
        .map_err(io)?
        .file_type()
        .is_symlink()
    {
        return Err(refuse(
            "the data directory is a symbolic link: compact its target by name",
        ));
    }
    {
        use std::os::unix::fs::MetadataExt;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let same_device = std::fs::metadata(dir).map_err(io)?.dev()
            == std::fs::metadata(&parent).map_err(io)?.dev();
        if !same_device {
            return Err(refuse(
                "the data directory is a mount point: the copy cannot take its place; keep the data directory in a folder inside the volume",
            ));
        }
    }
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let kind = entry.file_type().map_err(io)?;
        if !(kind.is_file() || (kind.is_dir() && entry.file_name() == "blobs")) {
            return Err(refuse(&format!(
                "the data directory holds {} besides the store: move it out first",
                entry.path().display()
            )));
        }
    }
    let lock = std::fs::File::create(&lock_path).map_err(io)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(refuse(
                "another compaction of this data directory is running",
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    let bytes_before = size_of(dir);
    if copy.exists() {
        std::fs::remove_dir_all(&copy).map_err(io)?;
    }
    let total = source.count_under(b"")?;
    let keys = {
        // Whatever the configured durability, the copy is fsynced before the original goes.
        let _ = durability;
        let target = Store::over(Arc::new(SledEngine::open(
            &copy,
            Durability::PowerLoss,
            cache_mb,
        )?))?;
        let mut writes = WriteSet::default();
        let mut copied = 0usize;
        for pair in source.scan_stored(b"") {
            let (k, v) = pair?;
            writes.put(k, v);
            copied += 1;
            if writes.len() >= CHUNK {
                target.apply_stored(std::mem::take(&mut writes))?;
                progress(copied, total);
            }
        }
        if !writes.is_empty() {
            target.apply_stored(writes)?;
        }
        // Numbers the directory handed out (outbox sequences, the change log) stay unique.
        target.raise_ids(source.next_id()?)?;
        target.flush()?;
        let in_copy = target.count_under(b"")?;
        if in_copy != copied {
            return Err(StoreError::CommitFailed(format!(
                "the copy holds {in_copy} keys, the directory {copied}"
            )));
        }
        progress(copied, total);
        copied
    };
    // `source` stays open (sled's lock on the directory held) until the copy has taken its
    // place: a gateway started meanwhile cannot acknowledge writes into the directory that goes.
    // The gateway's own files beside sled's (the admin address and token, the test clock).
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        let sleds = text == "db" || text == "conf" || text == "blobs" || text.starts_with("snap.");
        if !sleds && entry.file_type().map_err(io)?.is_file() {
            std::fs::copy(entry.path(), copy.join(&name)).map_err(io)?;
        }
    }
    let marker = std::fs::File::create(copy.join(COMPLETE)).map_err(io)?;
    marker.sync_all().map_err(io)?;
    std::fs::File::open(&copy)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    std::fs::rename(dir, &aside).map_err(io)?;
    std::fs::rename(&copy, dir).map_err(io)?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::File::open(&parent)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    drop(source);
    drop(lock);
    let _ = std::fs::remove_file(&lock_path);
    recover(dir).map_err(io)?;
    Ok(Report {
        keys,
        bytes_before,
        bytes_after: size_of(dir),
    })
}

/// Bytes of every file under `dir`.
fn size_of(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => size_of(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_swap_leaves_one_whole_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let copy = sibling(&dir, ".compact").unwrap();
        let old = sibling(&dir, ".pre-compact").unwrap();
        // Crashed while copying: the copy goes, the directory stays.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("db"), "old").unwrap();
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::write(copy.join("db"), "half").unwrap();
        recover(&dir).unwrap();
        assert!(!copy.exists());
        assert_eq!(std::fs::read_to_string(dir.join("db")).unwrap(), "old");
        // Crashed between the two renames: the whole copy takes the place.
        std::fs::rename(&dir, &old).unwrap();
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::write(copy.join("db"), "new").unwrap();
        std::fs::write(copy.join(COMPLETE), "").unwrap();
        recover(&dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("db")).unwrap(), "new");
        assert!(!old.exists() && !copy.exists() && !dir.join(COMPLETE).exists());
        // Crashed after moving the directory aside, before the copy was whole: it comes back,
        // also when a start has made an empty directory in its place since.
        std::fs::rename(&dir, &old).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        recover(&dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("db")).unwrap(), "new");
    }

    #[test]
    fn a_directory_holding_anything_else_is_refused_and_left_as_it_was() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let store = Store::open(&dir).unwrap();
        let mut w = WriteSet::default();
        w.put("k/1", "v");
        store.apply(w).unwrap();
        store.flush().unwrap();
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        let e = compact(store, &dir, Durability::ProcessCrash, 8, |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("besides the store"), "{e}");
        assert!(dir.join("keys").exists() && !sibling(&dir, ".compact").unwrap().exists());
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.get_raw(b"k/1").unwrap().unwrap(), b"v".to_vec());
        // Without it, the compaction goes through, and numbers stay above those handed out.
        drop(store);
        std::fs::remove_dir(dir.join("keys")).unwrap();
        let store = Store::open(&dir).unwrap();
        let before = store.next_id().unwrap();
        let report = compact(store, &dir, Durability::ProcessCrash, 8, |_, _| {}).unwrap();
        assert!(report.keys >= 2, "{report:?}");
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.get_raw(b"k/1").unwrap().unwrap(), b"v".to_vec());
        assert!(store.next_id().unwrap() > before);
    }
}
