//! Durable storage: one sled database under the data directory, and the single writer that
//! commits to it ([`Committer`]).
//!
//! Why one tree and one writer: an accepted batch writes archive versions, record heads, subject
//! entries, the audit entry and the receipt together. sled applies a `Batch` to one tree
//! atomically, so after a crash (kill -9) either all of a batch is there or none of it; a single
//! writer thread keeps idempotency checks race-free and the audit chain without forks, and lets
//! many requests share one flush (group commit).
//!
//! On-disk layout (keys are UTF-8; `\x1f` separates parts, a character record ids may not hold):
//!
//! | prefix | key | value (JSON) | owner |
//! |---|---|---|---|
//! | `rec/` | `agency \x1f record_id` | [`crate::archive::RecordHead`]: subject, category, latest version, content hash, expiry, the publication ledger's state (opaque to the archive; in data written before the ledger: the platforms it was shared with) | archive, ledger |
//! | `arc/` | `subject_key \x1f category# \x1f agency \x1f record_id \x1f version(10 digits)` | [`crate::archive::Version`] | archive |
//! | `sub/` | `subject_key` (`uscc:9131...`) | [`crate::archive::SubjectEntry`] | archive |
//! | `aud/` | sequence (20 digits) | [`crate::audit::Entry`] | audit |
//! | `rcp/` | receipt id | the receipt sent to the agency | ingest |
//! | `out/`, `dlq/` | see `outbox` | queued shares, dead letters | outbox |
//! | `cor/`, `cod/` | see `corrections` | corrections and their acknowledgements | corrections |
//! | `lak/`, `tmr/` | see `ledger` | acknowledgements of shares, re-check timers (what each platform holds is in the record head's `publication`) | ledger |
//! | `meta/` | `format` | the data directory's format version ([`format`]) | store |
//! | `exi/` | `subject_key` | `{}` while the subject is exited (LS Art. 20) | archive |
//! | `chg/` | `subject_key` | the stamp of the last group that changed the subject's archive, until a follower (evaluation) takes it up | archive |
//! | `evt/` | `unix seconds(20) \x1f subject_key` | `{}`: re-evaluate then (a record leaves its validity) | evaluation |
//! | `lnk/` | `listing agency \x1f listing record_id \x1f link record_id` | `{}`: the linked records of joint punishment a listing made | evaluation |
//! | `evc/` | year (4 digits) | [`crate::evaluation::worker::CycleRun`]: the yearly cycle's progress and cursor | evaluation |
//! | `obj/`, `rep/` | see `objections`, `repairs` | objections and repairs | objections, repairs |
//!
//! Durability: an acknowledgement is sent only after `flush`. sled 0.34 flushes with
//! `sync_file_range` on Linux: this survives a process crash, not every power loss. With
//! `storage.durability = "power_loss"` every group commit also `fsync`s sled's data file, so an
//! acknowledged batch survives losing power too, at the cost measured in the benchmark.
//!
//! Never does: interpret record content, or decide what to store (the archive and audit modules
//! build the writes; this module makes them durable).

mod commit;
pub mod format;
pub mod keys;
pub mod space;

/// The writer's progress, for the commit watchdog.
pub mod commit_progress {
    pub use super::commit::Progress;
}

pub use commit::{
    AcceptedInput, ApplyJob, CommitJob, Committer, CommitterHandle, CorrectionJob, Job, NewVersion,
    ReconcileItem, ReconcileJob,
};

use std::path::Path;

/// A storage failure. Never the sender's fault; a retry may help.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored value at {key} is corrupt: {message}")]
    Corrupt { key: String, message: String },
    #[error("the writer has stopped (shutting down)")]
    WriterGone,
    #[error("the commit failed: {0}")]
    CommitFailed(String),
    #[error("cannot start the writer thread: {0}")]
    Spawn(std::io::Error),
    /// The operator's: this binary is older than the data directory.
    #[error("the data directory is in format {found}, written by a newer release; this release reads up to format {known}: run the newer release (or restore a backup made for this one)")]
    NewerFormat { found: u32, known: u32 },
}

/// The opened database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    /// sled's data file, fsynced after every flush when power-loss durability is asked for.
    fsync: Option<std::sync::Arc<std::fs::File>>,
}

/// What an acknowledgement survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// sled's flush (sync_file_range): survives a crash of the process.
    #[default]
    ProcessCrash,
    /// Also fsync the data file in every group commit: survives a power loss.
    PowerLoss,
}

pub const SEP: char = '\x1f';

/// sled's page cache, in MiB (`storage.cache_mb`).
pub const DEFAULT_CACHE_MB: u64 = 128;

impl Store {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, Durability::ProcessCrash)
    }

    pub fn open_with(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        Self::open_tuned(dir, durability, DEFAULT_CACHE_MB)
    }

    /// `cache_mb` bounds sled's page cache, the largest part of the gateway's memory.
    pub fn open_tuned(
        dir: &Path,
        durability: Durability,
        cache_mb: u64,
    ) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_mb.max(8) * 1024 * 1024)
            .open()?;
        format::open(&db)?;
        let fsync = match durability {
            Durability::ProcessCrash => None,
            Durability::PowerLoss => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(dir.join("db"))
                    .map_err(sled::Error::Io)?;
                // The directory entry of the data file must be durable too.
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(sled::Error::Io)?;
                Some(std::sync::Arc::new(file))
            }
        };
        Ok(Self { db, fsync })
    }

    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.db.get(key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        key: printable(key),
                        message: e.to_string(),
                    })
            }
        }
    }

    /// Every (key, value) under a prefix, in key order.
    pub fn scan<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let value = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                key: printable(&key),
                message: e.to_string(),
            })?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// The last key under a prefix.
    pub fn last_under<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Option<(String, T)>, StoreError> {
        match self.db.scan_prefix(prefix.as_bytes()).next_back() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                let key = String::from_utf8_lossy(&k).into_owned();
                let value = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                    key: printable(&key),
                    message: e.to_string(),
                })?;
                Ok(Some((key, value)))
            }
        }
    }

    pub fn apply(&self, batch: sled::Batch) -> Result<(), StoreError> {
        self.db.apply_batch(batch)?;
        Ok(())
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        if let Some(file) = &self.fsync {
            file.sync_data().map_err(sled::Error::Io)?;
        }
        Ok(())
    }

    /// Raw access for the tamper test and the audit verifier's error reporting.
    pub fn raw(&self) -> &sled::Db {
        &self.db
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// Keys shown in errors never carry a personal identifier in clear.
fn printable(key: &str) -> String {
    let prefix: String = key.chars().take_while(|c| *c != SEP).take(40).collect();
    if prefix.starts_with("sub/") || prefix.starts_with("arc/") {
        return format!("{}…", &prefix[..4]);
    }
    prefix
}

/// Encode a JSON value for storage.
pub fn to_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
