//! Whether the gateway is ready to take data, and if not why: what `/readyz` says. Set by the
//! parts that know (start and stop, the disk reserve, a stuck commit, the shared database).

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Readiness {
    up: AtomicBool,
    /// Free disk space below the reserve (`storage.min_free_mb`).
    disk_low: AtomicBool,
    /// A commit or flush has run longer than `storage.commit_stuck_ms`.
    stuck: AtomicBool,
    /// The shared database (PostgreSQL) does not answer.
    database_unreachable: AtomicBool,
}

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.up.store(ready, Ordering::SeqCst);
    }
    pub fn set_disk_low(&self, low: bool) {
        self.disk_low.store(low, Ordering::SeqCst);
    }
    pub fn set_stuck(&self, stuck: bool) {
        self.stuck.store(stuck, Ordering::SeqCst);
    }
    pub fn set_database_unreachable(&self, unreachable: bool) {
        self.database_unreachable
            .store(unreachable, Ordering::SeqCst);
    }
    /// Why the gateway is not ready, in plain words; `None` when it is.
    pub fn why_not(&self) -> Option<&'static str> {
        if !self.up.load(Ordering::SeqCst) {
            Some("starting or stopping")
        } else if self.disk_low.load(Ordering::SeqCst) {
            Some("free disk space is below the reserve (storage.min_free_mb): free space")
        } else if self.stuck.load(Ordering::SeqCst) {
            Some("a commit has run longer than storage.commit_stuck_ms: check the disk")
        } else if self.database_unreachable.load(Ordering::SeqCst) {
            Some("the PostgreSQL database does not answer")
        } else {
            None
        }
    }

    pub fn is_ready(&self) -> bool {
        self.up.load(Ordering::SeqCst)
            && !self.disk_low.load(Ordering::SeqCst)
            && !self.stuck.load(Ordering::SeqCst)
            && !self.database_unreachable.load(Ordering::SeqCst)
    }
}
