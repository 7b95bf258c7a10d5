//! Online backup and tested restore of an embedded (sled) data directory (issue #30).
//!
//! Owns: the backup folder's layout (`backup.json`, the manifest, beside `store/`, a sled
//! directory holding every key and value as stored, sealed values still sealed), the copy, the
//! backup taken as a job of the single writer so that it is the store as of one commit while the
//! gateway serves, the same copy offline when the gateway is stopped, and the restore into a
//! fresh data directory.
//!
//! Never does: copy the key file (sealed values need it; the manifest names it and says it is
//! excluded: keep it in its own backup), overwrite a data directory that holds a store, or back
//! up a PostgreSQL database (its own tools do: `pg_dump`, `pg_basebackup`, see docs).
//!
//! Invariants: a backup is complete or says it is not (the key count is checked after the copy,
//! the manifest is written last); its audit chain verifies before the manifest is written; a
//! restore raises the numbers the store hands out above every one the backup's store handed out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::audit::AuditEvent;
use crate::exchange::{CommitterHandle, Exchange, Group, WriteError};
use crate::store::{Store, StoreError, WriteSet};

/// The manifest's file name in a backup folder.
pub const MANIFEST: &str = "backup.json";
/// The sled directory in a backup folder.
pub const STORE_DIR: &str = "store";
/// Keys written per atomic step of a copy.
const CHUNK: usize = 5_000;
/// Keys between two progress lines.
const PROGRESS_EVERY: usize = 50_000;

/// What a backup holds; written last, so a folder without it is no backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Of this layout.
    pub layout: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub taken_at: OffsetDateTime,
    /// `online` (a writer job of the running gateway) or `offline` (the gateway was stopped).
    pub mode: String,
    pub keys: usize,
    pub bytes: u64,
    /// Every number the store had handed out is below this.
    pub id_floor: u64,
    /// The audit chain's head in the copy (it verifies).
    pub audit_seq: u64,
    pub audit_hash: String,
    /// Where the key file is: not in the backup.
    pub key_file_excluded: String,
}

/// The operator API's path of the online backup: the operator server routes it and the CLI calls
/// it by this constant.
pub mod route {
    pub const BACKUP: &str = "/backup";
}

/// Why a backup or a restore did not happen. Every one is the operator's to fix (a retry after
/// the fix helps); the data directory in use is never touched by a failed one.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} already exists and is not empty: back up into a new folder")]
    TargetExists(PathBuf),
    #[error("{0} holds a store already: move it aside (or remove it) before a restore")]
    DataDirInUse(PathBuf),
    #[error("{0} is no backup: {MANIFEST} is missing or unreadable ({1})")]
    NotABackup(PathBuf, String),
    #[error(
        "the copy holds {copied} keys where the store had {expected}: the backup is incomplete"
    )]
    Incomplete { copied: usize, expected: usize },
    #[error("the audit chain of the copy does not verify: {0}")]
    Audit(String),
    #[error("storage.engine = postgres: back up the database with pg_dump or pg_basebackup (docs/operate/backup.md)")]
    Postgres,
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The writer's answer reads as the storage failure it was before writes were typed.
impl From<WriteError> for BackupError {
    fn from(e: WriteError) -> Self {
        BackupError::Store(e.into())
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A folder to write a backup into: absent, or empty. Made private to its owner.
fn prepare_target(dir: &Path) -> Result<(), BackupError> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io(dir))?;
        if entries.next().is_some() {
            return Err(BackupError::TargetExists(dir.to_path_buf()));
        }
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    private(dir)
}

fn private(dir: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

/// Copy every key of `source` into `target` as stored, in atomic chunks, with progress.
/// Returns (keys, bytes).
pub fn copy_keys(
    source: &Store,
    target: &Store,
    mut progress: impl FnMut(usize, usize),
) -> Result<(usize, u64), StoreError> {
    let total = source.count_under(b"")?;
    let (mut copied, mut bytes) = (0usize, 0u64);
    let mut writes = WriteSet::default();
    for pair in source.scan_stored(b"") {
        let (k, v) = pair?;
        bytes += (k.len() + v.len()) as u64;
        writes.put(k, v);
        copied += 1;
        if writes.len() >= CHUNK {
            target.apply_stored(std::mem::take(&mut writes))?;
        }
        if copied % PROGRESS_EVERY == 0 {
            progress(copied, total);
        }
    }
    if !writes.is_empty() {
        target.apply_stored(writes)?;
    }
    progress(copied, total);
    Ok((copied, bytes))
}

/// The store of a folder, opened with the keys of `like` (sealed values need them to be read).
fn open_like(dir: &Path, like: &Store) -> Result<Store, StoreError> {
    let protection: Option<Arc<dyn crate::store::AtRest>> = like.keys().map(|k| {
        Arc::new(crate::privacy::Protection::new(k.clone())) as Arc<dyn crate::store::AtRest>
    });
    Store::open_tuned(dir, crate::store::Durability::PowerLoss, 64, protection)
}

/// The copy itself: `source` into `<dir>/store`, checked complete. Returns (keys, bytes,
/// id floor).
fn copy_store(source: &Store, dir: &Path) -> Result<(usize, u64, u64), BackupError> {
    let target = open_like(&dir.join(STORE_DIR), source)?;
    let expected = source.count_under(b"")?;
    let (keys, bytes) = copy_keys(source, &target, |done, total| {
        tracing::info!(done, total, "backup: copying keys");
        metrics::gauge!("gateway_backup_keys_copied").set(done as f64);
    })?;
    let id_floor = source.next_id()?;
    target.raise_ids(id_floor)?;
    target.flush()?;
    let copied = target.count_under(b"")?;
    if copied != expected {
        return Err(BackupError::Incomplete { copied, expected });
    }
    Ok((keys, bytes, id_floor))
}

/// Verify the copy's audit chain and write the manifest (last).
fn seal_backup(
    dir: &Path,
    like: &Store,
    copy: (usize, u64, u64),
    mode: &str,
    now: OffsetDateTime,
    key_file: &str,
) -> Result<Manifest, BackupError> {
    let target = open_like(&dir.join(STORE_DIR), like)?;
    let head = crate::audit::verify(&target).map_err(|e| BackupError::Audit(e.to_string()))?;
    drop(target);
    let manifest = Manifest {
        layout: 1,
        taken_at: now,
        mode: mode.to_string(),
        keys: copy.0,
        bytes: copy.1,
        id_floor: copy.2,
        audit_seq: head.seq,
        audit_hash: head.hash,
        key_file_excluded: key_file.to_string(),
    };
    let path = dir.join(MANIFEST);
    let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(manifest)
}

/// Back up a store no gateway is serving (the CLI with the gateway stopped).
pub fn offline(
    store: &Store,
    dir: &Path,
    now: OffsetDateTime,
    key_file: &str,
) -> Result<Manifest, BackupError> {
    prepare_target(dir)?;
    let copy = copy_store(store, dir)?;
    seal_backup(dir, store, copy, "offline", now, key_file)
}

/// Back up the running gateway's store as of one commit: the copy runs as a job of the single
/// writer (writes wait meanwhile, reads go on), then the copy's chain is verified off the
/// writer and the manifest written. Audited (`backup`).
pub async fn online(
    committer: &CommitterHandle,
    store: &Store,
    dir: &Path,
    key_file: &str,
    by: &str,
) -> Result<Manifest, BackupError> {
    if store.shared() {
        return Err(BackupError::Postgres);
    }
    let target = dir.to_path_buf();
    let checked = target.clone();
    tokio::task::spawn_blocking(move || prepare_target(&checked))
        .await
        .map_err(|e| BackupError::Io {
            path: target.clone(),
            message: e.to_string(),
        })??;
    let (copy, now) = committer
        .submit(|reply| {
            Box::new(BackupJob {
                dir: target.clone(),
                by: by.to_string(),
                copied: None,
                reply: Some(reply),
            }) as crate::exchange::Job
        })
        .await?;
    let (store, key_file) = (store.clone(), key_file.to_string());
    tokio::task::spawn_blocking(move || {
        seal_backup(&target, &store, copy, "online", now, &key_file)
    })
    .await
    .map_err(|e| BackupError::Io {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?
}

/// What the copy gave: (keys, bytes, id floor) and the commit time it is as of.
type Copied = ((usize, u64, u64), OffsetDateTime);

/// The copy as a writer job: `stage` runs between two groups' commits, so what it reads is the
/// store as of the last commit.
struct BackupJob {
    dir: PathBuf,
    by: String,
    copied: Option<Result<Copied, String>>,
    reply: Option<oneshot::Sender<Result<Copied, WriteError>>>,
}

impl Exchange for BackupJob {
    fn stage(&mut self, g: &mut Group<'_>) -> Result<(), StoreError> {
        let copied = copy_store(g.store, &self.dir);
        let mut data = Map::new();
        data.insert("dir".into(), json!(self.dir.display().to_string()));
        data.insert("by".into(), json!(self.by));
        match &copied {
            Ok((keys, bytes, _)) => {
                data.insert("keys".into(), json!(keys));
                data.insert("bytes".into(), json!(bytes));
            }
            Err(e) => {
                data.insert("error".into(), json!(e.to_string()));
            }
        }
        let at = g.at();
        g.audit(&at, AuditEvent::Backup, data);
        // A failed copy is answered as such; the group (and its audit entry) still commits.
        self.copied = Some(copied.map(|c| (c, g.now)).map_err(|e| e.to_string()));
        Ok(())
    }

    fn finish(mut self: Box<Self>, outcome: Result<(), WriteError>) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        let answer = match (outcome, self.copied.take()) {
            // The copy's own failure: its group (and the entry saying so) committed.
            (Ok(()), Some(copied)) => copied.map_err(WriteError::JobRefused),
            (Ok(()), None) => Err(WriteError::StagedNothing("backup job")),
            (Err(e), _) => Err(e),
        };
        let _ = reply.send(answer);
    }
}

/// What a restore did.
#[derive(Debug, Serialize)]
pub struct Restored {
    pub data_dir: String,
    pub keys: usize,
    pub audit_seq: u64,
    pub audit_hash: String,
}

/// Bring a backup back into `data_dir` (the gateway stopped, the directory absent or empty),
/// with the keys of `keys` (the key file the backup's values were sealed with). The restored
/// chain is verified and must end where the manifest says.
pub fn restore(
    backup: &Path,
    data_dir: &Path,
    keys: crate::crypto::Keyring,
) -> Result<Restored, BackupError> {
    let path = backup.join(MANIFEST);
    let manifest: Manifest = std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| BackupError::NotABackup(backup.to_path_buf(), e))?;
    if data_dir.join("conf").is_file() || data_dir.join("db").is_file() {
        return Err(BackupError::DataDirInUse(data_dir.to_path_buf()));
    }
    if data_dir.exists()
        && std::fs::read_dir(data_dir)
            .map_err(io(data_dir))?
            .next()
            .is_some()
    {
        return Err(BackupError::DataDirInUse(data_dir.to_path_buf()));
    }
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    private(data_dir)?;
    let protection: Arc<dyn crate::store::AtRest> = Arc::new(crate::privacy::Protection::new(keys));
    let source = Store::open_tuned(
        &backup.join(STORE_DIR),
        crate::store::Durability::ProcessCrash,
        64,
        Some(protection.clone()),
    )?;
    let target = Store::open_tuned(
        data_dir,
        crate::store::Durability::PowerLoss,
        64,
        Some(protection),
    )?;
    let (keys, _) = copy_keys(&source, &target, |done, total| {
        eprintln!("restore: {done} of {total} keys");
    })?;
    if keys != manifest.keys {
        return Err(BackupError::Incomplete {
            copied: keys,
            expected: manifest.keys,
        });
    }
    target.raise_ids(manifest.id_floor.max(source.next_id()?))?;
    target.flush()?;
    let head = crate::audit::verify(&target).map_err(|e| BackupError::Audit(e.to_string()))?;
    if head.seq != manifest.audit_seq || head.hash != manifest.audit_hash {
        return Err(BackupError::Audit(format!(
            "the restored chain ends at {} but the manifest says {}",
            head.seq, manifest.audit_seq
        )));
    }
    Ok(Restored {
        data_dir: data_dir.display().to_string(),
        keys,
        audit_seq: head.seq,
        audit_hash: head.hash,
    })
}
