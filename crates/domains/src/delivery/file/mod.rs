//! File destinations (GB/T 39443-2020's file interface; docs/integrate/files-out.md): shares are
//! written as batch files into the platform's outgoing folder, and the platform answers each file
//! with a feedback file in its feedback folder.
//!
//! Owns: the folders of file destinations, the names and manifests of the files ([`naming`]),
//! their layouts ([`layout`]), reading feedback files ([`feedback`]), and the record of each file
//! written and not yet answered ([`SentFile`], `ofs/{destination} \x1f {file}` in the store).
//!
//! One file at a time per destination, like one HTTPS batch in flight: the shares in a file stay
//! in the outbox until its feedback file answers them, and the worker (`delivery::Worker`) applies
//! each answer through the same transitions as an HTTPS answer: accepted = acknowledged (removed,
//! ledger and corrections acknowledgements written), rejected = refused (resent alone, then dead
//! letter), rejected with `retry` or not answered = failed attempt (retried with backoff). A file
//! with no feedback `feedback_timeout_ms` after it was written (on the gateway's clock) is a failed
//! attempt: taken back from the folder if the platform has not picked it up, and its shares written
//! again in a new file (their idempotency keys unchanged, so a platform that took both drops one).
//!
//! Writing a file, crash-safe:
//! 1. the data file and its manifest are written under hidden temporary names (`.{name}.tmp`) and
//!    fsynced;
//! 2. the [`SentFile`] record is committed (audited `file_written`);
//! 3. the data file, then the manifest, are renamed to their final names and the folder fsynced.
//!
//! A name the platform can see is therefore always a complete file, and a complete file is always
//! recorded. After a crash the worker resumes each recorded file: step 3 again where the
//! temporary files remain; temporary files no record names are removed.
//!
//! Picked up: the data file gone from the outgoing folder (moved or deleted by the platform) is
//! the platform having taken it; the time is recorded once (audited `file_picked_up`), and for a
//! correction written to `cop/` (corrections show it in the deadline view). A platform that
//! answers a file it left in place picked it up at the latest when its answer is read.
//!
//! Never does: decide what a platform may receive (the payloads are filtered and queued by
//! `sharing` and the ledger), or import anything above `delivery` (the corrections' pick-up writes
//! come in through the worker's `on_picked_up`).

pub mod feedback;
pub mod layout;
pub mod naming;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::DestinationConfig;
use crate::outbox::Entry;
use crate::store::keys::{Key, SentFileKey};

pub use layout::Layout;

/// A file destination's folders and timings.
#[derive(Debug, Clone)]
pub struct FileOut {
    pub destination: String,
    pub sender: String,
    pub outgoing: PathBuf,
    pub feedback: PathBuf,
    pub batch_wait: Duration,
    pub feedback_timeout: Duration,
}

/// What went wrong with a destination's folders. The environment's or the operator's (a folder
/// missing, not writable, the disk full): a retry helps once it is fixed.
#[derive(Debug, thiserror::Error)]
pub enum FileOutError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Layout(#[from] layout::LayoutError),
}

impl FileOutError {
    /// A folder problem may go away; a share that cannot be rendered will not.
    pub fn retry(&self) -> bool {
        matches!(self, FileOutError::Io { .. })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileOutError + '_ {
    move |source| FileOutError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A batch file written and not yet answered. New in issue #29; every field is written with it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SentFile {
    pub destination: String,
    /// The data file's name (in the outgoing folder).
    pub file: String,
    pub manifest: String,
    pub layout: String,
    pub records: usize,
    pub sha256: String,
    pub sm3: String,
    /// Each share of the file, in file order: its outbox key and its idempotency key.
    pub shares: Vec<(String, String)>,
    #[serde(with = "time::serde::rfc3339")]
    pub written_at: OffsetDateTime,
    /// When the platform took the data file out of the outgoing folder.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub picked_up_at: Option<OffsetDateTime>,
}

impl SentFile {
    pub fn key(&self) -> String {
        SentFileKey {
            destination: self.destination.clone(),
            file: self.file.clone(),
        }
        .encode()
    }

    pub fn stem(&self) -> &str {
        naming::stem_of(&self.file)
    }
}

/// Where a written file stands, as the folders show it.
#[derive(Debug, PartialEq)]
pub enum Seen {
    /// Still in the outgoing folder, unanswered.
    Waiting,
    /// Gone from the outgoing folder, unanswered.
    PickedUp,
    /// A feedback file answers it.
    Answered(PathBuf),
}

impl FileOut {
    pub fn new(dest: &DestinationConfig) -> Result<Self, String> {
        let (Some(outgoing), Some(feedback)) = (&dest.outgoing_dir, &dest.feedback_dir) else {
            return Err("kind = \"file\" needs outgoing_dir and feedback_dir".into());
        };
        for (what, dir) in [("outgoing_dir", outgoing), ("feedback_dir", feedback)] {
            if !dir.is_dir() {
                return Err(format!("{what} {} is not a folder", dir.display()));
            }
            if rustix::fs::access(
                dir,
                rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
            )
            .is_err()
            {
                return Err(format!(
                    "{what} {} is not writable by the gateway",
                    dir.display()
                ));
            }
        }
        Ok(Self {
            destination: dest.id.clone(),
            sender: dest.file_sender().to_string(),
            outgoing: outgoing.clone(),
            feedback: feedback.clone(),
            batch_wait: Duration::from_millis(dest.batch_wait_ms()),
            feedback_timeout: Duration::from_millis(dest.feedback_timeout_ms()),
        })
    }

    /// Steps 1 of writing: the data file and its manifest under their temporary names, fsynced.
    /// `entries` all have one layout. Nothing the platform may take exists yet.
    pub fn prepare(
        &self,
        layout: Layout,
        batch: &[(String, Entry)],
        seq: u64,
        now: OffsetDateTime,
    ) -> Result<SentFile, FileOutError> {
        let entries: Vec<Entry> = batch.iter().map(|(_, e)| e.clone()).collect();
        let (bytes, records) = layout::render(layout, &entries)?;
        let stem = naming::stem(&self.sender, &self.destination, now, seq);
        let file = naming::data_name(&stem, layout.ext());
        let manifest_name = naming::manifest_name(&stem);
        let (sha256, sm3) = naming::digests(&bytes);
        let mut kinds = std::collections::BTreeMap::new();
        for e in &entries {
            *kinds.entry(e.kind.code().to_string()).or_insert(0) += 1;
        }
        let manifest = naming::Manifest {
            file: file.clone(),
            layout: layout.code().into(),
            encoding: "UTF-8".into(),
            sender: self.sender.clone(),
            receiver: self.destination.clone(),
            created_at: crate::clock::rfc3339(now.to_offset(crate::calendar::CHINA_OFFSET)),
            records,
            bytes: bytes.len() as u64,
            sha256: sha256.clone(),
            sm3: sm3.clone(),
            kinds,
            feedback: naming::feedback_names(&stem)[0].clone(),
        };
        let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        write_synced(&self.outgoing.join(naming::temp_name(&file)), &bytes)?;
        write_synced(
            &self.outgoing.join(naming::temp_name(&manifest_name)),
            &manifest_bytes,
        )?;
        Ok(SentFile {
            destination: self.destination.clone(),
            file,
            manifest: manifest_name,
            layout: layout.code().into(),
            records,
            sha256,
            sm3,
            shares: batch
                .iter()
                .map(|(k, e)| (k.clone(), e.idempotency_key.clone()))
                .collect(),
            written_at: now,
            picked_up_at: None,
        })
    }

    /// Step 3: the data file, then its manifest, under their final names; the folder fsynced.
    /// Again after a crash it finishes what is left (a name already final stays).
    pub fn publish(&self, sent: &SentFile) -> Result<(), FileOutError> {
        for name in [&sent.file, &sent.manifest] {
            let temp = self.outgoing.join(naming::temp_name(name));
            if temp.exists() {
                let target = self.outgoing.join(name);
                std::fs::rename(&temp, &target).map_err(io(&target))?;
            }
        }
        sync_dir(&self.outgoing)
    }

    /// Remove the temporary files of a prepared file whose record could not be committed.
    pub fn discard(&self, sent: &SentFile) {
        for name in [&sent.file, &sent.manifest] {
            let _ = std::fs::remove_file(self.outgoing.join(naming::temp_name(name)));
        }
    }

    /// Temporary files no record names (a crash between steps 1 and 2): removed.
    pub fn clean_temps(&self, recorded: &[SentFile]) -> Result<usize, FileOutError> {
        let keep: std::collections::HashSet<String> = recorded
            .iter()
            .flat_map(|s| [naming::temp_name(&s.file), naming::temp_name(&s.manifest)])
            .collect();
        let prefix = format!(".{}_{}_", self.sender, self.destination);
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.outgoing)
            .map_err(io(&self.outgoing))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(".tmp") && !keep.contains(&name) {
                std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Where `sent` stands: answered (a feedback file exists), picked up (its data file is gone
    /// from the outgoing folder, and not only because it is still temporary), or waiting.
    pub fn look(&self, sent: &SentFile) -> Seen {
        for name in naming::feedback_names(sent.stem()) {
            let path = self.feedback.join(&name);
            if path.is_file() {
                return Seen::Answered(path);
            }
        }
        let data = self.outgoing.join(&sent.file);
        let temp = self.outgoing.join(naming::temp_name(&sent.file));
        if data.exists() || temp.exists() {
            Seen::Waiting
        } else {
            Seen::PickedUp
        }
    }

    /// Read a feedback file (bounded), JSON or CSV by its name.
    pub fn read_feedback(
        &self,
        path: &Path,
        sent: &SentFile,
    ) -> Result<feedback::Feedback, String> {
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        if meta.len() > feedback::MAX_FEEDBACK_BYTES {
            return Err(feedback::FeedbackError::TooLarge.to_string());
        }
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let parsed = if path.extension().and_then(|e| e.to_str()) == Some("csv") {
            feedback::parse_csv(&bytes)
        } else {
            feedback::parse_json(&bytes, &sent.file)
        };
        parsed.map_err(|e| e.to_string())
    }

    /// Move a feedback file the gateway has applied into `done/` (or a refused one into
    /// `invalid/`) beside it, so it is read once and kept for the operators.
    pub fn retire_feedback(&self, path: &Path, invalid: bool) -> Result<(), FileOutError> {
        let dir = self.feedback.join(if invalid { "invalid" } else { "done" });
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let target = dir.join(path.file_name().unwrap_or_default());
        std::fs::rename(path, &target).map_err(io(&target))?;
        sync_dir(&self.feedback)
    }

    /// Take a file back after it went unanswered: the manifest first (so a platform never sees a
    /// manifest without its data), then the data file, when the platform has not taken them.
    /// A leftover manifest of a picked-up file goes too.
    pub fn take_back(&self, sent: &SentFile) -> Result<(), FileOutError> {
        for name in [&sent.manifest, &sent.file] {
            for path in [
                self.outgoing.join(name),
                self.outgoing.join(naming::temp_name(name)),
            ] {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&path)(e)),
                }
            }
        }
        sync_dir(&self.outgoing)
    }

    /// What the platform left of an answered file: its answer shows it read the file, so the
    /// data file and manifest go (a platform that reads in place would otherwise read it again).
    pub fn tidy(&self, sent: &SentFile) {
        for name in [&sent.manifest, &sent.file] {
            let _ = std::fs::remove_file(self.outgoing.join(name));
        }
    }

    /// Whether `sent` went unanswered too long, at `now`.
    pub fn overdue(&self, sent: &SentFile, now: OffsetDateTime) -> bool {
        let timeout =
            time::Duration::try_from(self.feedback_timeout).unwrap_or(time::Duration::MAX);
        now - sent.written_at >= timeout
    }
}

/// Write `bytes` to `path` (created, truncated) and fsync it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), FileOutError> {
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// fsync a folder, so renames in it survive a power loss.
fn sync_dir(dir: &Path) -> Result<(), FileOutError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// The longest prefix of `batch` with the layout of its first share.
pub fn same_layout_prefix(batch: &[(String, Entry)]) -> (Layout, usize) {
    let Some((_, first)) = batch.first() else {
        return (Layout::JsonLines, 0);
    };
    let layout = Layout::of(first);
    let n = batch
        .iter()
        .take_while(|(_, e)| Layout::of(e) == layout)
        .count();
    (layout, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Kind;

    fn out(dir: &Path) -> FileOut {
        std::fs::create_dir_all(dir.join("out")).unwrap();
        std::fs::create_dir_all(dir.join("back")).unwrap();
        FileOut {
            destination: "files".into(),
            sender: "credit-gateway".into(),
            outgoing: dir.join("out"),
            feedback: dir.join("back"),
            batch_wait: Duration::from_millis(10),
            feedback_timeout: Duration::from_secs(60),
        }
    }

    fn batch() -> Vec<(String, Entry)> {
        (0..3)
            .map(|i| {
                (
                    format!("out/files\u{1f}1\u{1f}{i:020}"),
                    layout::tests::entry(
                        Kind::Share,
                        &format!("k{i}"),
                        serde_json::json!({"category": "commitment", "n": i}),
                    ),
                )
            })
            .collect()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_file_is_visible_only_complete_and_its_manifest_matches() {
        let tmp = tempfile::tempdir().unwrap();
        let o = out(tmp.path());
        let now = time::macros::datetime!(2025-03-14 01:02:03 UTC);
        let sent = o.prepare(Layout::JsonLines, &batch(), 7, now).unwrap();
        // Before publishing only hidden temporary names exist.
        assert!(names(&o.outgoing).iter().all(|n| n.starts_with('.')));
        assert_eq!(o.look(&sent), Seen::Waiting);
        o.publish(&sent).unwrap();
        assert_eq!(
            names(&o.outgoing),
            vec![
                "credit-gateway_files_20250314090203_0000000007.jsonl".to_string(),
                "credit-gateway_files_20250314090203_0000000007.manifest.json".to_string()
            ]
        );
        let data = std::fs::read(o.outgoing.join(&sent.file)).unwrap();
        let manifest: naming::Manifest =
            serde_json::from_slice(&std::fs::read(o.outgoing.join(&sent.manifest)).unwrap())
                .unwrap();
        assert_eq!(manifest.records, 3);
        assert_eq!(manifest.bytes, data.len() as u64);
        assert_eq!(
            (manifest.sha256.clone(), manifest.sm3.clone()),
            naming::digests(&data)
        );
        assert_eq!(manifest.kinds.get("share"), Some(&3));
        o.publish(&sent).unwrap();
        // Picked up, then answered.
        std::fs::rename(o.outgoing.join(&sent.file), tmp.path().join("taken")).unwrap();
        assert_eq!(o.look(&sent), Seen::PickedUp);
        let fb = o.feedback.join(format!("{}.feedback.json", sent.stem()));
        std::fs::write(
            &fb,
            br#"{"records": [{"idempotency_key": "k0", "result": "accepted"}]}"#,
        )
        .unwrap();
        assert_eq!(o.look(&sent), Seen::Answered(fb.clone()));
        let parsed = o.read_feedback(&fb, &sent).unwrap();
        assert_eq!(parsed.get("k0"), Some(&feedback::Verdict::Accepted));
        o.retire_feedback(&fb, false).unwrap();
        assert!(o
            .feedback
            .join("done")
            .join(fb.file_name().unwrap())
            .exists());
        o.tidy(&sent);
        assert!(names(&o.outgoing).is_empty());
    }

    #[test]
    fn unrecorded_temporary_files_are_cleaned_and_unanswered_files_taken_back() {
        let tmp = tempfile::tempdir().unwrap();
        let o = out(tmp.path());
        let now = time::macros::datetime!(2025-03-14 01:02:03 UTC);
        let orphan = o.prepare(Layout::JsonLines, &batch(), 1, now).unwrap();
        let kept = o.prepare(Layout::JsonLines, &batch(), 2, now).unwrap();
        assert_eq!(o.clean_temps(std::slice::from_ref(&kept)).unwrap(), 2);
        assert_eq!(o.look(&orphan), Seen::PickedUp, "nothing of it is left");
        o.publish(&kept).unwrap();
        assert!(!o.overdue(&kept, now + time::Duration::seconds(59)));
        assert!(o.overdue(&kept, now + time::Duration::seconds(60)));
        o.take_back(&kept).unwrap();
        assert!(names(&o.outgoing).is_empty());
    }

    #[test]
    fn a_batch_is_cut_where_the_layout_changes() {
        let mut b = batch();
        b.insert(
            2,
            (
                "k".into(),
                layout::tests::entry(
                    Kind::Share,
                    "p",
                    serde_json::json!({"category": "administrative", "content": {"action": "penalty"}}),
                ),
            ),
        );
        assert_eq!(same_layout_prefix(&b), (Layout::JsonLines, 2));
        assert_eq!(same_layout_prefix(&b[2..]), (Layout::Penalties, 1));
    }
}
