//! The watched exchange folder of an agency (issue #29, the front-end-server / 前置机 pattern):
//! files a department drops in its inbox, often over SFTP, are taken as if handed in through
//! `POST /v1/files` with the agency's identity, each answered by a feedback file beside it.
//! `docs/integrate/files.md` is the agency's guide; `[agencies.folder]` configures it.
//!
//! Owns: looking at each configured inbox every `poll_interval_ms` (polling, not inotify: it
//! works the same on NFS and SMB mounts and on every platform, a missed event cannot strand a
//! file, and a poll a second or two late costs nothing here, so no `notify` crate); deciding when
//! a file is complete; claiming it; verifying its check file; choosing its mapping and kind;
//! handing it to [`super::files::take`] (the API's own path: mapping, validation, chunked commits,
//! the receipt with its audit entry, the same file twice); writing the feedback file; moving the
//! file to `done/` or `rejected/`.
//!
//! A file is complete when: its name is not a temporary one (a leading `.` or `~$`, or a
//! `.tmp`, `.part`, `.filepart` or `.crdownload` suffix: uploaders rename the finished file
//! atomically); its check file `NAME.chk` is beside it, when `require_check_file` is set; and it
//! looked the same (size, modification time) on two looks `settle_ms` apart.
//!
//! Crash safety (kill -9 at any point loses nothing and takes nothing twice):
//! 1. Claim: `inbox/NAME` is renamed to `processing/{id}.NAME` (one filesystem: atomic), its
//!    check file after it; `{id}` is a fresh UUID and becomes the file's receipt id. A rename
//!    that fails because the file is gone means another taker (a second node on the same
//!    share) has it.
//! 2. Take: the records are stored in chunks (each durable and idempotent: a record stored
//!    again is `unchanged`, no new version, nothing queued), then the file's receipt under
//!    `rcp/{id}` (or, for a file refused whole, a refusal receipt), with its audit entry.
//! 3. Deliver: the receipt is written to `done/NAME.receipt.json` (or `rejected/`) through a
//!    temporary file, fsynced and renamed; then the check file and the data file are moved
//!    beside it.
//!
//! At every start and every poll, whatever is in `processing/` is finished first: with a stored
//! receipt `rcp/{id}` it is delivered (step 3, each move skipped when done); without one it is
//! taken again (step 2: chunks committed before the crash come back `unchanged`). A stop
//! (SIGTERM) ends a take where it is the same way, so a large file never holds a shutdown.
//!
//! Never does: guess a CSV's encoding (`csv_charset`, else UTF-8 or refused), delete a file, or
//! overwrite a feedback file (a name already in `done/` gets the receipt id before it), or log a
//! file's name (it may name a person: the receipt id instead).

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, watch};

use super::files::{take, Form, Handed, Via};
use super::respond::ApiError;
use super::App;
use crate::answer::Answer;
use crate::audit::AuditEvent;
use crate::config::FolderConfig;
use crate::exchange::{answer, Exchange, Group, WriteError};
use crate::files::check::{Algorithm, CheckFile};
use crate::files::{Charset, FileKind};
use crate::telemetry::events;

/// The folders inside an inbox.
pub const PROCESSING: &str = "processing";
pub const DONE: &str = "done";
pub const REJECTED: &str = "rejected";
/// A check file's name: the data file's and this.
pub const CHECK_SUFFIX: &str = ".chk";
/// A feedback file's name: the data file's (as moved) and this.
pub const FEEDBACK_SUFFIX: &str = ".receipt.json";

/// Why a folder's file could not be finished now. Each says whose it is and whether the next
/// poll can help.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// The folder itself (missing, permissions, a full disk): the operator's; retried at the
    /// next poll.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The gateway's store or its bounds (busy, full, unavailable): retried at the next poll.
    #[error("not taken now, retried at the next poll: {0}")]
    Later(ApiError),
    /// The file is refused as a whole: the sender's to fix; never retried.
    #[error("refused: {}", .0["message"].as_str().unwrap_or_default())]
    Refused(Value),
}

impl FolderError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        FolderError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    fn refused(code: &str, message: String) -> Self {
        FolderError::Refused(json!({"code": code, "message": message, "retry": false}))
    }
}

impl From<ApiError> for FolderError {
    fn from(e: ApiError) -> Self {
        if e.retry() {
            FolderError::Later(e)
        } else {
            FolderError::Refused(e.body())
        }
    }
}

/// Start one watcher per agency with a folder, each on a blocking thread of its own (it reads
/// files and the store), stopping when `stop` flips.
pub fn spawn_all(app: &Arc<App>, stop: &watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    app.config
        .agencies
        .iter()
        .filter_map(|a| Some((a.id.clone(), a.folder.clone()?)))
        .map(|(agency, folder)| {
            let watcher = Watcher {
                app: app.clone(),
                agency,
                folder,
            };
            let stop = stop.clone();
            super::spawn_off_runtime(async move { watcher.run(stop).await })
        })
        .collect()
}

/// One agency's folder.
struct Watcher {
    app: Arc<App>,
    agency: String,
    folder: FolderConfig,
}

/// A file claimed into `processing/`: its receipt id and its name as dropped.
#[derive(Debug, Clone)]
struct Claimed {
    id: String,
    name: OsString,
}

impl Claimed {
    fn file_name(&self) -> OsString {
        let mut n = OsString::from(format!("{}.", self.id));
        n.push(&self.name);
        n
    }

    fn check_name(&self) -> OsString {
        let mut n = self.file_name();
        n.push(CHECK_SUFFIX);
        n
    }

    /// The name as text, for the receipt and the mapping's patterns.
    fn display(&self) -> String {
        self.name.to_string_lossy().into_owned()
    }
}

/// What a file looked like at a poll, to see it settle.
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
    since: Instant,
}

impl Watcher {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let interval = Duration::from_millis(self.folder.poll_interval_ms);
        let mut seen = std::collections::HashMap::<OsString, Seen>::new();
        tracing::info!(agency = %self.agency, inbox = %self.folder.inbox.display(), "watching the exchange folder");
        while !*stop.borrow() {
            if let Err(e) = self.poll(&mut seen, &stop).await {
                events::folder_unavailable(&self.agency, &e.to_string());
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {},
                _ = stop.changed() => {},
            }
        }
    }

    fn dir(&self, sub: &str) -> PathBuf {
        self.folder.inbox.join(sub)
    }

    /// One look: finish what is in `processing/`, then claim and take each complete new file.
    async fn poll(
        &self,
        seen: &mut std::collections::HashMap<OsString, Seen>,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), FolderError> {
        for sub in [PROCESSING, DONE, REJECTED] {
            let dir = self.dir(sub);
            std::fs::create_dir_all(&dir).map_err(|e| FolderError::io(&dir, e))?;
        }
        for claimed in self.claimed()? {
            if *stop.borrow() {
                return Ok(());
            }
            self.finish(&claimed, stop).await?;
        }
        let inbox = &self.folder.inbox;
        let entries = std::fs::read_dir(inbox).map_err(|e| FolderError::io(inbox, e))?;
        let mut names = Vec::new();
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                names.push(entry.file_name());
            }
        }
        // Oldest names first would need a stat each; name order is stable and good enough.
        names.sort();
        seen.retain(|n, _| names.contains(n));
        for name in names {
            if *stop.borrow() {
                return Ok(());
            }
            if is_ignored(&name) || !self.complete(&name, seen) {
                continue;
            }
            if self.app.disk.is_low() {
                // Nothing new is written below the reserve; the file waits in the inbox.
                return Ok(());
            }
            if let Some(claimed) = self.claim(&name)? {
                seen.remove(&name);
                self.finish(&claimed, stop).await?;
            }
        }
        Ok(())
    }

    /// Whether a data file may be taken now: its check file is there when required, and it has
    /// settled.
    fn complete(&self, name: &OsStr, seen: &mut std::collections::HashMap<OsString, Seen>) -> bool {
        let path = self.folder.inbox.join(name);
        if self.folder.require_check_file && !with_suffix(&path, CHECK_SUFFIX).is_file() {
            return false;
        }
        if self.folder.settle_ms == 0 {
            return true;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            return false;
        };
        let (len, modified) = (meta.len(), meta.modified().ok());
        match seen.get(name) {
            Some(s) if s.len == len && s.modified == modified => {
                s.since.elapsed() >= Duration::from_millis(self.folder.settle_ms)
            }
            _ => {
                seen.insert(
                    name.to_os_string(),
                    Seen {
                        len,
                        modified,
                        since: Instant::now(),
                    },
                );
                false
            }
        }
    }

    /// Claim a file by renaming it into `processing/` (then its check file): `None` when another
    /// taker was first.
    fn claim(&self, name: &OsStr) -> Result<Option<Claimed>, FolderError> {
        let claimed = Claimed {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_os_string(),
        };
        let from = self.folder.inbox.join(name);
        let to = self.dir(PROCESSING).join(claimed.file_name());
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FolderError::io(&from, e)),
        }
        let check = with_suffix(&from, CHECK_SUFFIX);
        if check.is_file() {
            let to = self.dir(PROCESSING).join(claimed.check_name());
            if let Err(e) = std::fs::rename(&check, &to) {
                tracing::warn!(agency = %self.agency, receipt_id = %claimed.id, error = %e, "check file not claimed with its data file");
            }
        }
        sync_dir(&self.dir(PROCESSING));
        sync_dir(&self.folder.inbox);
        Ok(Some(claimed))
    }

    /// The files in `processing/` (claimed, not yet delivered), oldest claim unknown: by name.
    fn claimed(&self) -> Result<Vec<Claimed>, FolderError> {
        let dir = self.dir(PROCESSING);
        let entries = std::fs::read_dir(&dir).map_err(|e| FolderError::io(&dir, e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some((id, name)) = split_claim(&file_name) else {
                continue;
            };
            if name.as_encoded_bytes().ends_with(CHECK_SUFFIX.as_bytes()) {
                continue; // a check file, moved with its data file
            }
            out.push(Claimed { id, name });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Take a claimed file if it was not taken before the last stop, and deliver its receipt.
    async fn finish(
        &self,
        claimed: &Claimed,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), FolderError> {
        let key = super::receipt::receipt_key(&claimed.id);
        let stored = self.store_read(&key)?;
        let receipt = match stored {
            Some(receipt) => receipt,
            None => {
                // A stop ends a file's take where it is (the batches committed stay; the file
                // stays in processing/ and is taken again at the next start): a 200,000-row file
                // never holds a shutdown for minutes.
                let mut stop = stop.clone();
                let taken = tokio::select! {
                    taken = self.take_claimed(claimed) => taken,
                    _ = stop.wait_for(|s| *s) => {
                        tracing::info!(agency = %self.agency, receipt_id = %claimed.id, "stopping: the folder file is taken again at the next start");
                        return Ok(());
                    }
                };
                match taken {
                    Ok(receipt) => receipt,
                    Err(FolderError::Refused(error)) => self.refuse(claimed, error).await?,
                    Err(FolderError::Later(e)) => {
                        tracing::warn!(agency = %self.agency, receipt_id = %claimed.id, error = %e, "folder file left in processing/ for the next poll");
                        return Ok(());
                    }
                    Err(other) => return Err(other),
                }
            }
        };
        self.deliver(claimed, &receipt)
    }

    fn store_read(&self, key: &str) -> Result<Option<Value>, FolderError> {
        self.app.store.get_json::<Value>(key).map_err(|e| {
            tracing::error!(error = %e, "cannot read a receipt");
            FolderError::Later(ApiError::StorageUnavailable)
        })
    }

    /// Verify, then take a claimed file through the API's path.
    async fn take_claimed(&self, claimed: &Claimed) -> Result<Value, FolderError> {
        let started = Instant::now();
        let processing = self.dir(PROCESSING);
        let path = processing.join(claimed.file_name());
        let name = claimed.display();
        let check = self.check_file(claimed)?;
        // One of `ingest.files_at_once`, as an upload holds: a folder waits for its turn.
        let _slot = self
            .app
            .files
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| FolderError::Later(ApiError::ShuttingDown))?;
        let (file, sha256, sm3, bytes) = digest(&path, check.as_ref().map(|c| c.algorithm))
            .map_err(|e| FolderError::io(&path, e))?;
        if let Some(c) = &check {
            verify(c, &name, &sha256, sm3.as_deref(), bytes)?;
        }
        let mapping_id = self.folder.mapping_for(&name).ok_or_else(|| {
            FolderError::refused(
                "no_mapping_for_file",
                format!("no mapping is configured for the file name {name:?}: rename it to match a route of the agency's folder, or ask the operator to add one"),
            )
        })?;
        let mapping = self
            .app
            .live
            .mappings
            .current()
            .get(mapping_id)
            .cloned()
            .ok_or_else(|| ApiError::UnknownMapping(mapping_id.to_string()))?;
        let allowed = self
            .app
            .live
            .registry
            .current()
            .get(&self.agency)
            .is_some_and(|a| a.may_push(&mapping.id));
        if !allowed {
            return Err(ApiError::MappingNotAllowed(mapping.id.clone()).into());
        }
        let form = self.form_of(&name, &mapping)?;
        let taken = take(
            &self.app,
            Handed {
                agency: self.agency.clone(),
                mapping,
                form,
                sheet: self.folder.sheet.clone(),
                file,
                sha256,
                bytes,
                receipt_id: claimed.id.clone(),
                expected_rows: check.map(|c| c.records),
                name: Some(name),
                via: Via::Folder,
                by: None,
            },
            started,
        )
        .await?;
        Ok(taken.receipt)
    }

    /// The claimed file's check file, parsed: from `processing/`, or still in the inbox when a
    /// crash came between the two renames of a claim.
    fn check_file(&self, claimed: &Claimed) -> Result<Option<CheckFile>, FolderError> {
        let claimed_path = self.dir(PROCESSING).join(claimed.check_name());
        let inbox_path = with_suffix(&self.folder.inbox.join(&claimed.name), CHECK_SUFFIX);
        if !claimed_path.is_file() && inbox_path.is_file() {
            std::fs::rename(&inbox_path, &claimed_path)
                .map_err(|e| FolderError::io(&inbox_path, e))?;
        }
        let bytes = match read_bounded(&claimed_path, crate::files::check::MAX_CHECK_FILE_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.folder.require_check_file {
                    return Err(FolderError::refused(
                        "check_mismatch",
                        "the check file (NAME.chk) was removed after the data file was claimed: drop both again".into(),
                    ));
                }
                return Ok(None);
            }
            Err(e) => return Err(FolderError::io(&claimed_path, e)),
        };
        CheckFile::parse(&bytes)
            .map(Some)
            .map_err(|e| ApiError::CheckMismatch(format!("{e}: write the check file again")).into())
    }

    /// What kind of file a name is, for its mapping.
    fn form_of(&self, name: &str, mapping: &crate::mapping::Mapping) -> Result<Form, FolderError> {
        let extension = Path::new(name)
            .extension()
            .and_then(OsStr::to_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let sheet = |kind| {
            if mapping.is_passthrough() {
                Err(FolderError::refused(
                    "unsupported_file_type",
                    "the canonical mapping takes canonical JSON records (.json), not spreadsheets"
                        .into(),
                ))
            } else {
                Ok(Form::Sheet(kind))
            }
        };
        match extension.as_str() {
            "xlsx" => sheet(FileKind::Xlsx),
            "csv" => {
                let charset = match self.folder.csv_charset.as_deref() {
                    None => None,
                    Some(label) => Some(Charset::from_label(label).map_err(|other| {
                        FolderError::Refused(
                            ApiError::from(crate::mapping::ParseError::UnsupportedEncoding(other))
                                .body(),
                        )
                    })?),
                };
                sheet(FileKind::Csv(charset))
            }
            "xml" if mapping.format == crate::mapping::SourceFormat::Xml => Ok(Form::Document),
            "json" if mapping.format == crate::mapping::SourceFormat::Json => Ok(Form::Document),
            "xml" | "json" => Err(FolderError::refused(
                "unsupported_file_type",
                format!("mapping {:?} reads {} documents, not .{extension}", mapping.id, match mapping.format {
                    crate::mapping::SourceFormat::Xml => "XML",
                    crate::mapping::SourceFormat::Json => "JSON",
                }),
            )),
            "xls" => Err(FolderError::refused(
                "unsupported_file_type",
                "an .xls (Excel 97-2003) file: save it as .xlsx (Excel 2007 and later) and drop it again".into(),
            )),
            _ => Err(FolderError::refused(
                "unsupported_file_type",
                format!("the folder takes .xlsx, .csv, .xml and .json files, not {name:?}"),
            )),
        }
    }

    /// Store the refusal of a file refused whole (its receipt and audit entry), so a restart
    /// delivers it instead of reading the file again.
    async fn refuse(&self, claimed: &Claimed, error: Value) -> Result<Value, FolderError> {
        let path = self.dir(PROCESSING).join(claimed.file_name());
        let (sha256, bytes) = match digest(&path, None) {
            Ok((_, sha256, _, bytes)) => (Some(sha256), Some(bytes)),
            Err(_) => (None, None),
        };
        let name = claimed.display();
        let receipt = json!({
            "receipt_id": claimed.id,
            "kind": "file_refused",
            "agency": self.agency,
            "mapping": self.folder.mapping_for(&name),
            "received_at": crate::clock::rfc3339(self.app.clock.now()),
            "file": {"name": name, "sha256": sha256, "bytes": bytes, "via": "folder"},
            "error": error,
        });
        self.app
            .committer
            .submit(|reply| {
                Box::new(Refusal {
                    receipt,
                    reply: Some(reply),
                    staged: None,
                })
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "folder file refusal not stored");
                FolderError::Later(ApiError::StorageUnavailable)
            })
    }

    /// Write the feedback file (atomically), then move the check file and the data file beside
    /// it. Each step is skipped when a former run did it.
    fn deliver(&self, claimed: &Claimed, receipt: &Value) -> Result<(), FolderError> {
        let refused = receipt["kind"] == "file_refused";
        let dest = self.dir(if refused { REJECTED } else { DONE });
        let processing = self.dir(PROCESSING);
        let final_name = self.final_name(&dest, claimed);
        let feedback = with_suffix(&dest.join(&final_name), FEEDBACK_SUFFIX);
        if !feedback.is_file() {
            let mut tmp_name = OsString::from(format!(".{}.", claimed.id));
            tmp_name.push(&final_name);
            tmp_name.push(".tmp");
            let tmp = dest.join(tmp_name);
            let bytes = serde_json::to_vec_pretty(receipt).unwrap_or_default();
            write_synced(&tmp, &bytes).map_err(|e| FolderError::io(&tmp, e))?;
            std::fs::rename(&tmp, &feedback).map_err(|e| FolderError::io(&feedback, e))?;
            sync_dir(&dest);
        }
        let check = processing.join(claimed.check_name());
        if check.is_file() {
            let to = with_suffix(&dest.join(&final_name), CHECK_SUFFIX);
            std::fs::rename(&check, &to).map_err(|e| FolderError::io(&check, e))?;
        }
        let data = processing.join(claimed.file_name());
        if data.is_file() {
            let to = dest.join(&final_name);
            std::fs::rename(&data, &to).map_err(|e| FolderError::io(&data, e))?;
        }
        sync_dir(&dest);
        sync_dir(&processing);
        let count = |k: &str| receipt[k].as_u64().unwrap_or(0) as usize;
        events::folder_file(
            &self.agency,
            &claimed.id,
            if refused { "rejected" } else { "done" },
            receipt["error"]["code"].as_str(),
            count("accepted"),
            count("rejected_count"),
        );
        Ok(())
    }

    /// The name the file takes in `dest`: its own, unless another file (or another file's
    /// feedback) has it there; then the receipt id before it.
    fn final_name(&self, dest: &Path, claimed: &Claimed) -> OsString {
        let own = claimed.name.clone();
        let data = dest.join(&own);
        let feedback = with_suffix(&data, FEEDBACK_SUFFIX);
        let feedback_is_ours = || {
            read_bounded(&feedback, 64 * 1024 * 1024)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| v["receipt_id"] == claimed.id.as_str())
        };
        let free = !data.exists() && (!feedback.exists() || feedback_is_ours());
        if free {
            own
        } else {
            claimed.file_name()
        }
    }
}

/// A refusal's receipt and its `file_refused` audit entry, one write set.
struct Refusal {
    receipt: Value,
    reply: Option<oneshot::Sender<Result<Value, WriteError>>>,
    staged: Option<Value>,
}

impl Exchange for Refusal {
    fn stage(&mut self, g: &mut Group<'_>) -> Result<(), crate::store::StoreError> {
        let mut receipt = self.receipt.clone();
        let mut event = serde_json::Map::new();
        for key in ["receipt_id", "agency", "mapping"] {
            event.insert(key.into(), receipt[key].clone());
        }
        for key in ["name", "sha256", "bytes", "via"] {
            event.insert(key.into(), receipt["file"][key].clone());
        }
        event.insert("code".into(), receipt["error"]["code"].clone());
        let at = receipt["received_at"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let head = g.audit(&at, AuditEvent::FileRefused, event);
        receipt["audit"] = serde_json::to_value(&head).unwrap_or_default();
        super::files::sign_value(g, &mut receipt)?;
        let id = receipt["receipt_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        g.archive.writes.push((
            super::receipt::receipt_key(&id),
            crate::store::to_bytes(&receipt),
        ));
        self.staged = Some(receipt);
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<(), WriteError>) {
        answer(self.reply, outcome, self.staged);
    }
}

/// Names a folder never takes: temporary names of uploads in progress, Excel's lock files,
/// check and feedback files.
pub fn is_ignored(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    let lower: Vec<u8> = bytes.iter().map(u8::to_ascii_lowercase).collect();
    bytes.starts_with(b".")
        || bytes.starts_with("~$".as_bytes())
        || [
            ".tmp",
            ".part",
            ".filepart",
            ".crdownload",
            CHECK_SUFFIX,
            FEEDBACK_SUFFIX,
        ]
        .iter()
        .any(|s| lower.ends_with(s.as_bytes()))
}

/// `{id}.NAME` in `processing/`: the claim's id and the name.
fn split_claim(file_name: &OsStr) -> Option<(String, OsString)> {
    let bytes = file_name.as_encoded_bytes();
    let id = std::str::from_utf8(bytes.get(..36)?).ok()?;
    uuid::Uuid::parse_str(id).ok()?;
    if bytes.get(36) != Some(&b'.') || bytes.len() == 37 {
        return None;
    }
    // The id is ASCII: the name keeps its own bytes (a GBK name from an SMB share too).
    Some((id.to_string(), os_from_bytes(&bytes[37..])?))
}

#[cfg(unix)]
fn os_from_bytes(bytes: &[u8]) -> Option<OsString> {
    use std::os::unix::ffi::OsStrExt;
    Some(OsStr::from_bytes(bytes).to_os_string())
}

#[cfg(not(unix))]
fn os_from_bytes(bytes: &[u8]) -> Option<OsString> {
    std::str::from_utf8(bytes).ok().map(OsString::from)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

/// The file opened at its start, its SHA-256 (and SM3 when a check file names it) in hex, and
/// its size.
fn digest(
    path: &Path,
    also: Option<Algorithm>,
) -> std::io::Result<(std::fs::File, String, Option<String>, u64)> {
    use std::io::Seek;
    let mut file = std::fs::File::open(path)?;
    let mut sha = Sha256::new();
    let mut sm3 = (also == Some(Algorithm::Sm3)).then(sm3::Sm3::new);
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        sha.update(&buf[..n]);
        if let Some(s) = sm3.as_mut() {
            s.update(&buf[..n]);
        }
    }
    file.rewind()?;
    Ok((
        file,
        hex::encode(sha.finalize()),
        sm3.map(|s| hex::encode(s.finalize())),
        size,
    ))
}

/// The file against its check file: name, size, digest.
fn verify(
    check: &CheckFile,
    name: &str,
    sha256: &str,
    sm3: Option<&str>,
    bytes: u64,
) -> Result<(), FolderError> {
    let mismatch = |m: String| -> FolderError { ApiError::CheckMismatch(m).into() };
    if let Some(named) = &check.file {
        if named != name {
            return Err(mismatch(format!(
                "the check file is for {named:?}, not {name:?}: nothing was stored"
            )));
        }
    }
    if let Some(expected) = check.bytes {
        if expected != bytes {
            return Err(mismatch(format!(
                "the check file says {expected} bytes, the file has {bytes} (an incomplete upload?): nothing was stored; drop the file again"
            )));
        }
    }
    let found = match check.algorithm {
        Algorithm::Sha256 => sha256,
        Algorithm::Sm3 => sm3.unwrap_or_default(),
    };
    if !check.digest_matches(found) {
        return Err(mismatch(format!(
            "the file's {} digest is {found}, the check file says {} (an incomplete or altered upload?): nothing was stored; drop the file again",
            check.algorithm.name(),
            check.digest
        )));
    }
    Ok(())
}

fn read_bounded(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(max as u64 + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// Write a file and flush it to the disk before it is renamed into place.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Make a directory's renames durable (power loss); a failure only loses that guarantee, so it is
/// logged, not fatal.
fn sync_dir(dir: &Path) {
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(error = %e, dir = %dir.display(), "directory not synced");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_lock_check_and_feedback_names_are_never_taken() {
        for name in [
            ".行政处罚.xlsx",
            "行政处罚.xlsx.tmp",
            "行政处罚.xlsx.part",
            "行政处罚.xlsx.FILEPART",
            "~$行政处罚.xlsx",
            "行政处罚.xlsx.chk",
            "行政处罚.xlsx.receipt.json",
        ] {
            assert!(is_ignored(OsStr::new(name)), "{name}");
        }
        for name in ["行政处罚.xlsx", "cf.csv", "push.xml", "tmp.csv"] {
            assert!(!is_ignored(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn a_claimed_name_keeps_its_id_and_name() {
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let (i, n) = split_claim(OsStr::new(&format!("{id}.行政.处罚.xlsx"))).unwrap();
        assert_eq!(i, id);
        assert_eq!(n, OsString::from("行政.处罚.xlsx"));
        assert!(split_claim(OsStr::new("行政处罚.xlsx")).is_none());
        assert!(split_claim(OsStr::new(&format!("{id}."))).is_none());
    }

    #[test]
    fn a_check_file_must_agree_with_the_file() {
        let sha = "a".repeat(64);
        let check =
            CheckFile::parse(format!("file=a.csv\nsha256={sha}\nrecords=2\nbytes=10").as_bytes())
                .unwrap();
        assert!(verify(&check, "a.csv", &sha, None, 10).is_ok());
        for (name, digest, bytes) in [
            ("b.csv", sha.clone(), 10),
            ("a.csv", "b".repeat(64), 10),
            ("a.csv", sha.clone(), 9),
        ] {
            match verify(&check, name, &digest, None, bytes) {
                Err(FolderError::Refused(e)) => assert_eq!(e["code"], "check_mismatch"),
                other => panic!("{other:?}"),
            }
        }
    }
}
