//! The re-encryption after a data key rotation: every stored value sealed under an older data
//! key is re-sealed under the active one, in the background, in small steps, each through the
//! single writer (so a value the flow rewrites at the same time is never overwritten with an older
//! copy). Progress is stored (`meta/reencryption`), so a restart resumes where the last step
//! ended; the start and the end are audit entries (`reencryption_started`,
//! `reencryption_finished`).
//!
//! Never does: remove a key from the key file (the operator does, once this has finished and
//! backups sealed under the old key have aged out).

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use crate::audit::AuditEvent;
use crate::audit::Head;
use crate::exchange::{answer, CommitterHandle, Exchange, Group, WriteError};
use crate::store::{at_rest, to_bytes, Store, StoreError};

/// Where the re-encryption's progress is kept.
pub const PROGRESS_KEY: &str = "meta/reencryption";

/// The re-encryption's progress towards one data key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The data key values are being re-sealed under.
    pub key: String,
    /// The next key to look at (hex), empty at the start.
    pub cursor: String,
    pub scanned: u64,
    pub resealed: u64,
    /// Re-sealed in the current pass over the store. A pass that re-sealed anything is followed
    /// by another: only a pass that finds nothing left (no value under an older key, none that
    /// could not be opened) finishes, so a value another node sealed under the older key behind
    /// the cursor is never left behind a retired key.
    #[serde(default)]
    pub pass_resealed: u64,
    /// Values the current pass could not open or re-seal.
    #[serde(default)]
    pub skipped: u64,
    pub finished: bool,
}

impl Progress {
    /// Another pass over the whole store.
    fn start_pass(&mut self) {
        self.cursor.clear();
        self.pass_resealed = 0;
        self.skipped = 0;
        self.finished = false;
    }
}

/// The stored progress, if any.
pub fn progress(store: &Store) -> Result<Option<Progress>, StoreError> {
    store.get_json(PROGRESS_KEY)
}

/// The background worker (one per cluster: it runs under a lease).
#[derive(Clone)]
pub struct Worker {
    pub store: Store,
    pub committer: CommitterHandle,
    /// Values looked at per step.
    pub batch: usize,
    /// Pause between steps, so the flow keeps the writer.
    pub pace: Duration,
}

impl Worker {
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let wait = match self.step().await {
                Ok(true) => self.pace,
                Ok(false) => Duration::from_secs(30),
                Err(e) => {
                    tracing::warn!(error = %e, "re-encryption step failed; retrying");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {},
                _ = stop.changed() => return,
            }
        }
    }

    /// One step; `true` while there is more to do.
    async fn step(&self) -> Result<bool, StoreError> {
        let Some(at_rest) = self.store.at_rest().cloned() else {
            return Ok(false);
        };
        let Some(active) = self.store.keys().map(|k| k.active_data_key().to_string()) else {
            return Ok(false);
        };
        let store = self.store.clone();
        let batch = self.batch.max(1);
        let scan = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let mut progress = progress(&store)?.unwrap_or_default();
            if progress.key != active {
                progress = Progress {
                    key: active,
                    ..Progress::default()
                };
            } else if progress.finished {
                return Ok(None);
            }
            let start = hex::decode(&progress.cursor).unwrap_or_default();
            let mut stale = Vec::new();
            let mut next = None;
            let mut looked = 0u64;
            for item in store.range_stored(&start, None) {
                let (k, v) = item?;
                if looked as usize >= batch {
                    next = Some(k);
                    break;
                }
                looked += 1;
                if k.as_slice() != PROGRESS_KEY.as_bytes() && at_rest.stale(&v) {
                    stale.push(String::from_utf8_lossy(&k).into_owned());
                }
            }
            // Audited from the first value re-sealed (a pass that finds nothing, as after the first
            // start, leaves no entry).
            let started = progress.resealed == 0 && !stale.is_empty();
            progress.scanned += looked;
            progress.resealed += stale.len() as u64;
            progress.pass_resealed += stale.len() as u64;
            progress.cursor = next.as_deref().map(hex::encode).unwrap_or_default();
            // A pass that re-sealed nothing but met values it could not open makes no progress:
            // the next one waits like an idle worker.
            let mut stuck = false;
            if next.is_none() {
                if progress.pass_resealed == 0 && progress.skipped == 0 {
                    progress.finished = true;
                } else {
                    stuck = progress.pass_resealed == 0;
                    progress.start_pass();
                }
            }
            Ok(Some((stale, progress, started, stuck)))
        });
        let Some((stale, progress, started, stuck)) = scan
            .await
            .map_err(|e| StoreError::CommitFailed(e.to_string()))??
        else {
            return Ok(false);
        };
        let more = !progress.finished && !stuck;
        let finished = progress.finished;
        let (resealed, scanned) = (progress.resealed, progress.scanned);
        self.committer
            .submit(|reply| {
                Box::new(Reseal {
                    keys: stale,
                    progress,
                    started,
                    reply: Some(reply),
                    head: None,
                })
            })
            .await?;
        metrics::gauge!("gateway_reencryption_resealed").set(resealed as f64);
        metrics::gauge!("gateway_reencryption_pending").set(if finished { 0.0 } else { 1.0 });
        tracing::info!(
            resealed,
            scanned,
            finished,
            "re-encryption under the active data key"
        );
        Ok(more)
    }
}

/// One step of re-sealing, staged by the single writer.
struct Reseal {
    keys: Vec<String>,
    progress: Progress,
    started: bool,
    reply: Option<oneshot::Sender<Result<Head, WriteError>>>,
    head: Option<Head>,
}

impl Exchange for Reseal {
    fn stage(&mut self, g: &mut Group<'_>) -> Result<(), StoreError> {
        // A key an earlier job of this group writes is written under the active key anyway.
        let staged: HashSet<String> = g
            .archive
            .writes
            .iter()
            .map(|(k, _)| k.clone())
            .chain(g.removes.iter().cloned())
            .collect();
        for key in &self.keys {
            if staged.contains(key) {
                continue;
            }
            // Read opened; written back through the protection, which seals with the active key.
            // A value that cannot be opened (altered, or sealed under a key this node lacks) is
            // left as it is and said: it must never fail the group the flow's batches share.
            match g.store.get_raw(key.as_bytes()) {
                Ok(Some(clear)) => g.archive.writes.push((key.clone(), clear)),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(
                        key = %crate::store::printable_key(key.as_bytes()),
                        error = %e,
                        "re-encryption: a stored value cannot be opened; left as it is"
                    );
                    // Counted: the older keys are never retired while such a value remains.
                    self.progress.skipped += 1;
                    if self.progress.finished {
                        self.progress.start_pass();
                    }
                }
            }
        }
        g.archive
            .writes
            .push((PROGRESS_KEY.into(), to_bytes(&self.progress)));
        if self.progress.finished {
            // Every value is sealed under the active key now: the older data keys may leave the
            // key file (the store stops asking for them at start).
            if let Some(mut recorded) = recorded_in(g)? {
                let older: Vec<String> = recorded
                    .fingerprints
                    .keys()
                    .filter(|id| *id != "lookup" && **id != self.progress.key)
                    .cloned()
                    .collect();
                let before = recorded.retired.len();
                recorded.retired.extend(older);
                if recorded.retired.len() != before {
                    let key = String::from_utf8_lossy(at_rest::KEYS_KEY).into_owned();
                    g.archive.writes.push((key, to_bytes(&recorded)));
                }
            }
        }
        let kind = match (self.started, self.progress.finished) {
            (true, _) => Some(AuditEvent::ReencryptionStarted),
            (false, true) if self.progress.resealed > 0 => Some(AuditEvent::ReencryptionFinished),
            _ => None,
        };
        let at = g.at();
        let mut data = Map::new();
        data.insert("data_key".into(), json!(self.progress.key));
        data.insert("resealed".into(), json!(self.progress.resealed));
        data.insert("scanned".into(), json!(self.progress.scanned));
        self.head = Some(match kind {
            Some(kind) => g.audit(&at, kind, data),
            None => g.head.clone(),
        });
        if let (true, true) = (self.started, self.progress.finished) {
            let mut data = Map::new();
            data.insert("data_key".into(), Value::String(self.progress.key.clone()));
            data.insert("resealed".into(), json!(self.progress.resealed));
            self.head = Some(g.audit(&at, AuditEvent::ReencryptionFinished, data));
        }
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<(), WriteError>) {
        answer(self.reply, outcome, self.head);
    }
}

/// The keys recorded (`meta/keys`) as this group leaves them so far: a reload recorded in the
/// same group as a step that retires keys must not lose either change.
fn recorded_in(g: &Group<'_>) -> Result<Option<at_rest::RecordedKeys>, StoreError> {
    let key = String::from_utf8_lossy(at_rest::KEYS_KEY);
    g.staged_or_stored(&key)?
        .map(|bytes| crate::store::decode(at_rest::KEYS_KEY, &bytes))
        .transpose()
}

/// Check keys reloaded at SIGHUP against the keys the store records and record any it has not
/// seen, through the single writer (serial with the re-encryption's retirements, and with every
/// other node's writer). `Err` names why the reload is refused (a key the stored values need is
/// missing or differs); the keys in use then stay.
pub async fn record_reloaded_keys(
    committer: &CommitterHandle,
    ours: std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    let refused = committer
        .submit(|reply| {
            Box::new(RecordKeys {
                ours,
                reply: Some(reply),
                refused: None,
            })
        })
        .await
        // Worded as the storage failure it was before writes were typed.
        .map_err(|e| crate::store::StoreError::from(e).to_string())?;
    match refused {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// A reload's keys, checked and recorded by the single writer.
struct RecordKeys {
    ours: std::collections::BTreeMap<String, String>,
    reply: Option<oneshot::Sender<Result<Option<String>, WriteError>>>,
    /// Why the keys were refused (then nothing is written).
    refused: Option<Option<String>>,
}

impl Exchange for RecordKeys {
    fn stage(&mut self, g: &mut Group<'_>) -> Result<(), StoreError> {
        // A refusal is this job's answer, never the group's failure.
        self.refused = Some(match at_rest::merge(recorded_in(g)?, self.ours.clone()) {
            Ok(Some(keys)) => {
                let key = String::from_utf8_lossy(at_rest::KEYS_KEY).into_owned();
                g.archive.writes.push((key, to_bytes(&keys)));
                None
            }
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        });
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<(), WriteError>) {
        answer(self.reply, outcome, self.refused);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keyring::KeyFile;
    use crate::crypto::{Keyring, Suite};
    use crate::privacy::Protection;

    /// A reload's keys are checked and recorded by the single writer: a key the store has not
    /// seen is added to `meta/keys` beside what is there, a file with another lookup key is
    /// refused and leaves the record as it was.
    #[test]
    fn reloaded_keys_are_recorded_by_the_writer_and_other_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = time::OffsetDateTime::UNIX_EPOCH;
        let mut file = KeyFile::new(Suite::National, epoch);
        let keys = Keyring::from_file(&file, Suite::National, "test").unwrap();
        let at_rest: std::sync::Arc<dyn crate::store::AtRest> =
            std::sync::Arc::new(Protection::new(keys));
        let store = Store::open_tuned(dir.path(), Default::default(), 16, Some(at_rest)).unwrap();
        let before = at_rest::recorded(&store).unwrap().unwrap();
        let clock: crate::clock::SharedClock = std::sync::Arc::new(crate::clock::SystemClock);
        let (committer, handle) = crate::exchange::start(store.clone(), clock).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();

        let added = file.add_data_key(Suite::National, epoch + time::Duration::days(1));
        let rotated = Keyring::from_file(&file, Suite::National, "test").unwrap();
        rt.block_on(record_reloaded_keys(&handle, rotated.fingerprints()))
            .unwrap();
        let after = at_rest::recorded(&store).unwrap().unwrap();
        assert!(after.fingerprints.contains_key(&added), "{after:?}");
        for (id, fp) in &before.fingerprints {
            assert_eq!(after.fingerprints.get(id), Some(fp), "{id} kept");
        }

        let other = Keyring::from_file(&KeyFile::new(Suite::National, epoch), Suite::National, "x")
            .unwrap();
        let refused = rt
            .block_on(record_reloaded_keys(&handle, other.fingerprints()))
            .unwrap_err();
        assert!(refused.contains("lookup key differs"), "{refused}");
        assert_eq!(at_rest::recorded(&store).unwrap().unwrap(), after);
        drop(handle);
        committer.join();
    }
}
