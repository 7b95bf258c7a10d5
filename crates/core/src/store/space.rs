//! Free space on the data directory's filesystem, kept above a reserve (`storage.min_free_mb`) so
//! that sled never meets a full disk: with sled 0.34 a full disk can deadlock the writer and a
//! start on a full disk can leave a partial snapshot that makes every later open fail
//! (spacejam/sled#1527), and one write that meets ENOSPC fences the engine until a restart
//! (`store::sled`). Below the reserve the gateway refuses new work (`503 storage_full`,
//! `/readyz` not ready) and refuses to start; above it again, it resumes by itself. The check
//! is made twice: every second for readiness and the routes, and before every write set the
//! store applies ([`DiskGuard::admit`], counting the set's size), because a second at full
//! ingest writes far more than a reserve of a few MiB.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How many times its own size a write set may take on disk while sled writes it: the log
/// message, then the rewritten page, with room for a segment's worth of slack.
pub const WRITE_AMPLIFICATION: u64 = 3;

/// The watched reserve.
#[derive(Debug)]
pub struct DiskGuard {
    dir: PathBuf,
    reserve: u64,
    low: AtomicBool,
    free: AtomicU64,
}

/// Bytes available to the gateway on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

impl DiskGuard {
    pub fn new(dir: &Path, reserve_mb: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            reserve: reserve_mb.saturating_mul(1024 * 1024),
            low: AtomicBool::new(false),
            free: AtomicU64::new(u64::MAX),
        }
    }

    /// Measure once; returns whether free space is below the reserve (a failed measurement counts
    /// as low: better to refuse work than to meet a full disk blind).
    pub fn check(&self) -> bool {
        let (free, low) = match free_bytes(&self.dir) {
            Ok(free) => (free, free < self.reserve),
            Err(_) => (0, true),
        };
        self.free.store(free, Ordering::SeqCst);
        let was = self.low.swap(low, Ordering::SeqCst);
        if was != low {
            crate::telemetry::events::disk_reserve(low, free, self.reserve);
        }
        metrics::gauge!("gateway_disk_free_bytes").set(free as f64);
        low
    }

    /// Admit a write of about `bytes`: measured now (not the last periodic check), refused when
    /// the engine's writing it (up to [`WRITE_AMPLIFICATION`] times its size: log, page
    /// rewrites) could take free space below the reserve. A refusal marks the guard low, so the
    /// routes refuse new work at once.
    pub fn admit(&self, bytes: u64) -> Result<(), super::StoreError> {
        let needed = self
            .reserve
            .saturating_add(bytes.saturating_mul(WRITE_AMPLIFICATION));
        // Unmeasurable counts as full: better to refuse than to meet a full disk blind.
        let free = free_bytes(&self.dir).unwrap_or_default();
        self.free.store(free, Ordering::SeqCst);
        if free >= needed {
            return Ok(());
        }
        if !self.low.swap(true, Ordering::SeqCst) {
            crate::telemetry::events::disk_reserve(true, free, self.reserve);
        }
        Err(super::StoreError::DiskFull {
            free_mb: free / (1024 * 1024),
            needed_mb: needed.div_ceil(1024 * 1024),
        })
    }

    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::SeqCst)
    }

    pub fn free(&self) -> u64 {
        self.free.load(Ordering::SeqCst)
    }

    pub fn reserve(&self) -> u64 {
        self.reserve
    }
}

/// Remove what sled leaves behind when a snapshot could not be finished (`snap.*.generating`),
/// which would otherwise make every later open fail. Returns the files removed.
pub fn remove_partial_snapshots(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(removed);
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_snapshots_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("snap.00000000000036B2.generating"), b"x").unwrap();
        std::fs::write(dir.path().join("snap.00000000000036B2"), b"keep").unwrap();
        std::fs::write(dir.path().join("db"), b"keep").unwrap();
        let removed = remove_partial_snapshots(dir.path()).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(dir.path().join("snap.00000000000036B2").exists());
        assert!(dir.path().join("db").exists());
    }

    #[test]
    fn a_write_that_would_cross_the_reserve_is_refused_and_marks_the_guard_low() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        let guard = DiskGuard::new(dir.path(), 1);
        assert!(guard.admit(1024).is_ok(), "a small write fits");
        assert!(!guard.is_low());
        let too_big = free / WRITE_AMPLIFICATION + 1;
        assert!(matches!(
            guard.admit(too_big),
            Err(crate::store::StoreError::DiskFull { .. })
        ));
        assert!(guard.is_low(), "the routes refuse at once");
    }

    #[test]
    fn free_space_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        let guard = DiskGuard::new(dir.path(), u64::MAX / (1024 * 1024));
        assert!(guard.check(), "an impossible reserve is below");
    }
}
