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
    let (Some(copy), Some(old)) = (sibling(dir, ".compact"), sibling(dir, ".pre-compact")) else {
        return Ok(());
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
    // `data/`, `./data` and `.` all name the same folder: work on its full path.
    let dir = &std::fs::canonicalize(dir).map_err(io)?;
    let bytes_before = size_of(dir);
    let (Some(copy), Some(aside)) = (sibling(dir, ".compact"), sibling(dir, ".pre-compact")) else {
        return Err(io(std::io::Error::other(
            "the data directory must be a folder with a name (not the file system's root)",
        )));
    };
    if copy.exists() {
        std::fs::remove_dir_all(&copy).map_err(io)?;
    }
    let total = source.count_under(b"")?;
    let keys = {
        let target = Store::over(Arc::new(SledEngine::open(&copy, durability, cache_mb)?))?;
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
    drop(source);
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
}
