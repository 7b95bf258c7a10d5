//! The exchange writer: what one group commit of exchanges stages, on the single writer thread.
//!
//! Owns: the [`Exchange`] trait every kind of durable exchange implements (an agency's batch in
//! `ingest`, a correction in `corrections`, a re-plan in `ledger`, the plain [`ApplyJob`] here),
//! the [`Group`] they stage into (archive staging, removals, outbox entries, the audit chain's
//! head as the group advances it, subjects' standing as the group changes it, and [`Latest`]:
//! values kept one per key that several jobs may change, such as each record's publication
//! ledger), and the [`Writer`] that runs groups for `store`'s group commit.
//!
//! Read ahead, once per group, in one request each: the heads of the records the group's jobs
//! name and their subjects' entries (`archive`), then, for those records the archive holds
//! already, their publication ledger's key (`led/`, the core's `LedgerKey`): the writer holds the
//! store meanwhile, so nothing read ahead changes before it is used.
//!
//! Invariants: a job sees everything earlier jobs of its group staged (a record repeated in one
//! group is its next version, not a second "version 1"); every job that changes anything appends
//! its own audit entry in the same write set; outbox entries take their sequence numbers here, so
//! queue order is commit order; a group that fails to apply leaves no trace in the writer's
//! memory (its head and standing are reloaded).
//!
//! Never does: decide what a record's platforms may hold (`ledger`), or build a receipt
//! (`ingest`). It knows the archive, the outbox and the audit chain, the floors beneath it.
//!
//! Errors: a job is answered with a [`WriteError`], which says whose fault a failure is and
//! whether a retry helps; callers map it to their own errors (most through
//! `From<WriteError> for StoreError`, which keeps the storage answers they gave before).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::archive::{Staging, SubjectCache};
use crate::audit::{AuditEvent, Head};
use crate::clock::SharedClock;
use crate::outbox::Entry;
use crate::store::{self, Store, StoreError, WriteSet};

/// One durable exchange, staged on the writer thread and answered once durable.
pub trait Exchange: Send {
    /// The records this exchange will stage, read ahead for the whole group at once.
    fn records(&self, _store: &Store) -> Vec<crate::archive::Incoming> {
        Vec::new()
    }
    /// Add this exchange's writes and its audit entry to the group.
    fn stage(&mut self, g: &mut Group<'_>) -> Result<(), StoreError>;
    /// Answer the caller: `Ok` once the group is durable, or why not.
    fn finish(self: Box<Self>, outcome: Result<(), WriteError>);
}

/// Why the writer did not make a job durable: whose fault it is and whether a retry helps.
///
/// A group commits or fails whole, so every job of a failed group is told the same error (hence
/// `Clone`, and messages rather than the store's error itself). Each message is the display of
/// the error that failed the group, so what callers show and log reads as before the type
/// existed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The store refused the group before writing anything: free disk space is below the
    /// reserve (`storage.min_free_mb`). Not the caller's fault; a retry helps once space is freed.
    #[error("{0}")]
    StoreRefused(String),
    /// The store failed to read, apply or flush the group (the engine, a fenced data directory,
    /// an unreachable database, a stored value that does not read). The gateway's; a retry may
    /// help (a fenced directory recovers at the restart the gateway makes itself).
    #[error("{0}")]
    StoreFailed(String),
    /// A job refused: while staging (a receipt that cannot be signed, an audit event that is not
    /// a JSON object), which refuses its whole group and stores nothing; or in its own answer
    /// once its group committed (a backup whose copy failed, its entry saying so). The
    /// gateway's; a retry helps only once the cause (keys, the backup folder, a bug) is fixed.
    #[error("{0}")]
    JobRefused(String),
    /// The group is durable but the job staged nothing to answer with: a bug of the job (named).
    #[error("the {0} staged nothing")]
    StagedNothing(&'static str),
    /// The writer has stopped (shutting down) before answering: whether the job is durable is
    /// not known. A retry helps once the gateway is back (exchanges are idempotent).
    #[error("the writer has stopped (shutting down)")]
    WriterGone,
}

impl WriteError {
    /// How a store error that failed a group is told to its jobs. In the writer only jobs raise
    /// `CommitFailed` (the engines report their own failures in their own variants), so it is a
    /// job's refusal.
    pub fn of(e: &StoreError) -> Self {
        match e {
            StoreError::DiskFull { .. } => WriteError::StoreRefused(e.to_string()),
            StoreError::CommitFailed(_) => WriteError::JobRefused(e.to_string()),
            StoreError::WriterGone => WriteError::WriterGone,
            _ => WriteError::StoreFailed(e.to_string()),
        }
    }

    /// Whether the same job may succeed later unchanged.
    pub fn retry(&self) -> bool {
        match self {
            WriteError::StoreRefused(_) | WriteError::StoreFailed(_) | WriteError::WriterGone => {
                true
            }
            WriteError::JobRefused(_) | WriteError::StagedNothing(_) => false,
        }
    }
}

/// For callers whose errors carry a storage failure: the same `StoreError` they were given
/// before writes were typed (`CommitFailed` with the group's error, or `WriterGone`), so their
/// answers (HTTP status and code) do not change.
impl From<WriteError> for StoreError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::WriterGone => StoreError::WriterGone,
            other => StoreError::CommitFailed(other.to_string()),
        }
    }
}

pub type Job = Box<dyn Exchange>;

/// Values kept one per key that several jobs of a group may change (each record's publication
/// ledger, `led/`): what the group staged last wins, and each changed key is written once, at the
/// end of the group, in the same write set as everything else the group stages.
#[derive(Default)]
pub struct Latest {
    staged: HashMap<String, Vec<u8>>,
    /// Staged keys in the order first staged (the write set's order).
    order: Vec<String>,
    /// Read ahead for the group in one request (a missing key as `None`).
    read: HashMap<String, Option<Vec<u8>>>,
}

impl Latest {
    /// The value as this group leaves it so far: staged, read ahead, or stored (opened).
    pub fn get(&mut self, store: &Store, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.staged.get(key) {
            return Ok(Some(v.clone()));
        }
        match self.read.remove(key) {
            Some(read) => Ok(read),
            None => store.get_raw(key.as_bytes()),
        }
    }

    /// Stage the key's new value.
    pub fn put(&mut self, key: String, value: Vec<u8>) {
        if !self.staged.contains_key(&key) {
            self.order.push(key.clone());
        }
        self.staged.insert(key, value);
    }

    /// Read the keys not read or staged yet in one request.
    pub fn read_ahead(
        &mut self,
        store: &Store,
        keys: impl Iterator<Item = String>,
    ) -> Result<(), StoreError> {
        let mut keys: Vec<String> = keys
            .filter(|k| !self.read.contains_key(k) && !self.staged.contains_key(k))
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        keys.sort_unstable();
        keys.dedup();
        let raw: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        let found = store.get_many_raw(&raw)?;
        self.read.extend(keys.into_iter().zip(found));
        Ok(())
    }

    fn into_write_set(mut self, set: &mut WriteSet) {
        for key in self.order {
            if let Some(value) = self.staged.remove(&key) {
                set.put(key, value);
            }
        }
    }
}

/// Everything one group stages before it is applied as one write set.
pub struct Group<'a> {
    pub store: &'a Store,
    pub archive: Staging,
    /// Values one per key that several jobs may change (the publication ledger's, `led/`).
    pub latest: Latest,
    /// Keys removed by this group (a removal wins over a write of the same key).
    pub removes: Vec<String>,
    /// Outbox entries queued (for the delivery workers' wake-up).
    pub queued: usize,
    /// The audit chain's head as this group advanced it.
    pub head: Head,
    /// The writer's clock, read once for the group.
    pub now: time::OffsetDateTime,
    pub subjects: &'a mut SubjectCache,
    exited: &'a HashSet<String>,
    /// Standing changes staged in this group (archive key, exited), in order.
    standing: Vec<(String, bool)>,
    /// Keys removed only if they still hold these bytes and no job of the group changed the
    /// subject they follow.
    clear_if: Vec<(String, Vec<u8>)>,
}

impl Group<'_> {
    /// The value of `key` as this group leaves it so far: its last staged write, or what is
    /// stored (opened). For a record two jobs of one group may both update.
    pub fn staged_or_stored(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if self.removes.iter().any(|k| k == key) {
            return Ok(None);
        }
        if let Some(v) = self.latest.staged.get(key) {
            return Ok(Some(v.clone()));
        }
        match self.archive.writes.iter().rev().find(|(k, _)| k == key) {
            Some((_, v)) => Ok(Some(v.clone())),
            None => self.store.get_raw(key.as_bytes()),
        }
    }

    /// `now` as RFC 3339, the time of audit entries staged without one of their own.
    pub fn at(&self) -> String {
        crate::clock::rfc3339(self.now)
    }

    /// Whether a subject is exited (LS Art. 20), as this group sees it.
    pub fn is_exited(&self, subject: &str) -> bool {
        match self.standing.iter().rev().find(|(s, _)| s == subject) {
            Some((_, exited)) => *exited,
            None => self.exited.contains(subject),
        }
    }

    /// A subject exits or re-enters: for the rest of the group now, for the writer once applied.
    pub fn set_standing(&mut self, subject: String, exited: bool) {
        self.standing.push((subject, exited));
    }

    /// Append one entry to the audit chain; returns the new head.
    pub fn audit(&mut self, at: &str, kind: AuditEvent, data: Map<String, Value>) -> Head {
        let (key, bytes, next) = self.head.append(at, kind, data);
        self.archive.writes.push((key, bytes));
        self.head = next;
        self.head.clone()
    }

    /// Append a typed event (a struct serialized as a JSON object) to the audit chain.
    ///
    /// An event that does not serialize to an object (a bug: a newtype, a sequence, a map with
    /// keys that are not strings) fails the job rather than chaining an entry with nothing in it.
    pub fn audit_event<E: serde::Serialize>(
        &mut self,
        at: &str,
        kind: AuditEvent,
        event: &E,
    ) -> Result<Head, StoreError> {
        // Staging answers in the store's terms; `CommitFailed` is told as the job's refusal.
        let data = event_data(kind, event).map_err(|e| StoreError::CommitFailed(e.to_string()))?;
        Ok(self.audit(at, kind, data))
    }

    /// Queue an outbox entry; its sequence number makes queue order commit order.
    pub fn enqueue(&mut self, entry: &Entry) -> Result<String, StoreError> {
        let (key, bytes) = crate::outbox::enqueue_write(self.store, entry)?;
        self.archive.writes.push((key.clone(), bytes));
        self.queued += 1;
        Ok(key)
    }

    /// Remove `key` at the end of the group if it still holds `expected` and no job of the
    /// group changed the subject it follows (`chg/` keys a follower has taken up).
    pub fn clear_if(&mut self, key: String, expected: Vec<u8>) {
        self.clear_if.push((key, expected));
    }

    fn into_writes(mut self) -> Result<(WriteSet, Vec<(String, bool)>), StoreError> {
        for (key, expected) in std::mem::take(&mut self.clear_if) {
            let subject = key.strip_prefix("chg/").unwrap_or(&key);
            if !self.archive.touches(subject)
                && self.store.get_raw(key.as_bytes())?.as_deref() == Some(expected.as_slice())
            {
                self.removes.push(key);
            }
        }
        let mut writes = WriteSet::default();
        for k in self.removes {
            writes.remove(k);
        }
        self.archive.into_write_set(&mut writes);
        self.latest.into_write_set(&mut writes);
        Ok((writes, self.standing))
    }
}

/// What the writer keeps between groups.
pub struct Writer {
    clock: SharedClock,
    subjects: SubjectCache,
    /// Archive keys of exited subjects (LS Art. 20): nothing of theirs is shared.
    exited: HashSet<String>,
    head: Head,
    /// What the group being applied will make true.
    pending: Option<(Head, Vec<(String, bool)>)>,
}

impl Writer {
    /// Every time the writer stamps (audit entries, ledger events) comes from `clock`.
    pub fn new(store: &Store, clock: SharedClock) -> Result<Self, StoreError> {
        Ok(Self {
            clock,
            subjects: SubjectCache::default(),
            exited: crate::archive::exited_subjects(store)?,
            head: Head::load(store)?,
            pending: None,
        })
    }
}

impl store::Stager for Writer {
    type Job = Job;

    fn stage(
        &mut self,
        store: &Store,
        group: &mut [Job],
        writes: &mut WriteSet,
    ) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut g = Group {
            store,
            archive: Staging::default(),
            latest: Latest::default(),
            removes: Vec::new(),
            queued: 0,
            head: self.head.clone(),
            now,
            subjects: &mut self.subjects,
            exited: &self.exited,
            standing: Vec::new(),
            clear_if: Vec::new(),
        };
        g.archive.change_seq = store.next_id()?;
        let records: Vec<crate::archive::Incoming> =
            group.iter().flat_map(|j| j.records(store)).collect();
        g.archive.read_ahead(store, g.subjects, &records)?;
        let ledgers = g
            .archive
            .stored(&records)
            .into_iter()
            .map(|r| crate::store::keys::LedgerKey::encode_of(&r.agency, &r.record_id));
        g.latest.read_ahead(store, ledgers)?;
        for job in group.iter_mut() {
            job.stage(&mut g)?;
        }
        let (queued, head) = (g.queued, g.head.clone());
        let (staged, standing) = g.into_writes()?;
        *writes = staged;
        self.pending = Some((head, standing));
        Ok(queued)
    }

    fn applied(&mut self) {
        if let Some((head, standing)) = self.pending.take() {
            self.head = head;
            for (subject, exited) in standing {
                if exited {
                    self.exited.insert(subject);
                } else {
                    self.exited.remove(&subject);
                }
            }
        }
    }

    fn abandoned(&mut self, store: &Store) {
        self.pending = None;
        // The subject cache may name subjects whose entry was never written.
        self.subjects = SubjectCache::default();
        match Head::load(store) {
            Ok(head) => self.head = head,
            Err(e) => tracing::error!(error = %e, "cannot reload the audit head"),
        }
    }

    fn refresh(&mut self, store: &Store) -> Result<(), StoreError> {
        self.subjects = SubjectCache::default();
        self.exited = crate::archive::exited_subjects(store)?;
        self.head = Head::load(store)?;
        Ok(())
    }

    fn finish(job: Job, outcome: Result<(), &StoreError>) {
        job.finish(outcome.map_err(WriteError::of));
    }
}

/// The handle every module submits exchanges through.
#[derive(Clone)]
pub struct CommitterHandle {
    inner: store::CommitterHandle<Job>,
    /// What the writer is doing, for the watchdog.
    pub progress: std::sync::Arc<store::Progress>,
    /// Woken after every durable group that queued shares.
    pub outbox_notify: std::sync::Arc<tokio::sync::Notify>,
}

/// Start the writer thread over `store`.
pub fn start(
    store: Store,
    clock: SharedClock,
) -> Result<(store::Committer, CommitterHandle), StoreError> {
    let writer = Writer::new(&store, clock)?;
    let (committer, inner) = store::Committer::start(store, writer)?;
    Ok((
        committer,
        CommitterHandle {
            progress: inner.progress.clone(),
            outbox_notify: inner.wake.clone(),
            inner,
        },
    ))
}

impl CommitterHandle {
    /// Submit an exchange built around its reply channel and wait until it is durable.
    pub async fn submit<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, WriteError>>) -> Job,
    ) -> Result<T, WriteError> {
        let (reply, answer) = oneshot::channel();
        // The queue only refuses a job once the writer is gone.
        self.inner
            .send(make(reply))
            .await
            .map_err(|_| WriteError::WriterGone)?;
        match answer.await {
            Ok(outcome) => outcome,
            Err(_) => Err(WriteError::WriterGone),
        }
    }

    /// Apply a job's writes and removals with its audit entry, durably.
    pub async fn apply(&self, job: ApplyJob) -> Result<Head, WriteError> {
        self.submit(|reply| {
            Box::new(ApplyJob {
                reply: Some(reply),
                ..job
            })
        })
        .await
    }
}

/// Writes recorded in the audit chain as one entry: built from its event and data
/// ([`ApplyJob::new`]), with what else the step changes said by name.
pub struct ApplyJob {
    kind: AuditEvent,
    data: Map<String, Value>,
    writes: Vec<(String, Vec<u8>)>,
    removes: Vec<String>,
    /// Outbox entries, given their sequence numbers when the job is staged.
    enqueue: Vec<Entry>,
    reply: Option<oneshot::Sender<Result<Head, WriteError>>>,
    head: Option<Head>,
}

impl ApplyJob {
    /// An audit entry of `kind` with `data`, and nothing else written.
    pub fn new(kind: AuditEvent, data: Map<String, Value>) -> Self {
        Self {
            kind,
            data,
            writes: Vec::new(),
            removes: Vec::new(),
            enqueue: Vec::new(),
            reply: None,
            head: None,
        }
    }

    /// Keys written with the entry.
    pub fn writes(mut self, writes: Vec<(String, Vec<u8>)>) -> Self {
        self.writes = writes;
        self
    }

    /// Keys removed with the entry.
    pub fn removes(mut self, removes: Vec<String>) -> Self {
        self.removes = removes;
        self
    }

    /// Outbox entries queued with the entry.
    pub fn enqueue(mut self, enqueue: Vec<Entry>) -> Self {
        self.enqueue = enqueue;
        self
    }
}

impl Exchange for ApplyJob {
    fn stage(&mut self, g: &mut Group<'_>) -> Result<(), StoreError> {
        g.archive.writes.extend(self.writes.iter().cloned());
        for entry in &self.enqueue {
            g.enqueue(entry)?;
        }
        g.removes.extend(self.removes.iter().cloned());
        let at = g.at();
        self.head = Some(g.audit(&at, self.kind, self.data.clone()));
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<(), WriteError>) {
        answer(self.reply, outcome, self.head);
    }
}

/// Send a job's answer: what it staged once durable, or why not.
pub fn answer<T>(
    reply: Option<oneshot::Sender<Result<T, WriteError>>>,
    outcome: Result<(), WriteError>,
    staged: Option<T>,
) {
    let Some(reply) = reply else { return };
    let _ = reply.send(match (outcome, staged) {
        (Ok(()), Some(done)) => Ok(done),
        (Ok(()), None) => Err(WriteError::StagedNothing("job")),
        (Err(e), _) => Err(e),
    });
}

/// The data of an audit entry of `kind` from a typed event, which must serialize to a JSON
/// object: anything else is refused, never chained as an entry with nothing in it.
pub fn event_data<E: serde::Serialize>(
    kind: AuditEvent,
    event: &E,
) -> Result<Map<String, Value>, WriteError> {
    match serde_json::to_value(event) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(WriteError::JobRefused(format!(
            "the {kind} audit event is not a JSON object but {}",
            json_type(&other)
        ))),
        Err(e) => Err(WriteError::JobRefused(format!(
            "the {kind} audit event does not serialize: {e}"
        ))),
    }
}

/// A JSON value's type, for saying what an audit event serialized to without its content.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::memory;
    use crate::store::Stager;
    use time::macros::datetime;

    fn clock() -> SharedClock {
        Arc::new(ManualClock::new(datetime!(2026-11-25 10:00 +08:00)))
    }

    fn share(record_id: &str) -> Entry {
        let at = datetime!(2026-11-25 10:00 +08:00);
        Entry {
            idempotency_key: crate::outbox::idempotency_key(
                "provincial",
                "medical_insurance",
                record_id,
                1,
                crate::disclosure::Channel::GovShare,
                crate::outbox::Kind::Share,
                "",
            ),
            destination: "provincial".into(),
            channel: crate::disclosure::Channel::GovShare,
            kind: crate::outbox::Kind::Share,
            agency: "medical_insurance".into(),
            record_id: record_id.into(),
            version: 1,
            rule: "rule".into(),
            enqueued_at: at,
            enqueued_unix: at.unix_timestamp(),
            correction_id: None,
            payload: None,
            source: None,
        }
    }

    /// What each probe saw when it was staged: its key, its group's change sequence and the value
    /// of the key the probe before it wrote (as its group leaves it so far).
    type Seen = Arc<Mutex<Vec<(String, u64, Option<Vec<u8>>)>>>;

    /// An exchange that writes one key, queues one share and audits itself; it may wait on a gate
    /// before staging (to hold the writer busy) and may fail after staging its writes.
    struct Probe {
        key: String,
        look_at: Option<String>,
        fail: bool,
        gate: Option<std::sync::mpsc::Receiver<()>>,
        seen: Seen,
        reply: Option<oneshot::Sender<Result<Head, WriteError>>>,
        head: Option<Head>,
    }

    fn probe(key: &str, seen: &Seen) -> Probe {
        Probe {
            key: key.into(),
            look_at: None,
            fail: false,
            gate: None,
            seen: seen.clone(),
            reply: None,
            head: None,
        }
    }

    impl Exchange for Probe {
        fn stage(&mut self, g: &mut Group<'_>) -> Result<(), StoreError> {
            if let Some(gate) = self.gate.take() {
                let _ = gate.recv_timeout(Duration::from_secs(10));
            }
            let looked = match &self.look_at {
                Some(k) => g.staged_or_stored(k)?,
                None => None,
            };
            self.seen
                .lock()
                .unwrap()
                .push((self.key.clone(), g.archive.change_seq, looked));
            g.archive
                .writes
                .push((self.key.clone(), self.key.as_bytes().to_vec()));
            g.enqueue(&share(&self.key))?;
            let at = g.at();
            let mut data = Map::new();
            data.insert("key".into(), Value::String(self.key.clone()));
            self.head = Some(g.audit(&at, AuditEvent::OperatorCommand, data));
            if self.fail {
                return Err(StoreError::CommitFailed(format!("{} refused", self.key)));
            }
            Ok(())
        }

        fn finish(self: Box<Self>, outcome: Result<(), WriteError>) {
            answer(self.reply, outcome, self.head);
        }
    }

    async fn submit(handle: &CommitterHandle, p: Probe) -> Result<Head, WriteError> {
        handle
            .submit(|reply| {
                Box::new(Probe {
                    reply: Some(reply),
                    ..p
                })
            })
            .await
    }

    fn audited_kinds(store: &Store) -> Vec<(u64, String)> {
        store
            .scan::<crate::audit::Entry>("aud/")
            .unwrap()
            .into_iter()
            .map(|(_, e)| (e.seq, e.data["key"].as_str().unwrap_or("").to_string()))
            .collect()
    }

    /// Drive the writer as `store`'s committer does, one group, without its threads.
    fn run_group(
        writer: &mut Writer,
        store: &Store,
        jobs: Vec<Probe>,
    ) -> Result<usize, StoreError> {
        let mut group: Vec<Job> = jobs.into_iter().map(|p| Box::new(p) as Job).collect();
        let mut writes = WriteSet::default();
        let staged = writer
            .stage(store, &mut group, &mut writes)
            .and_then(|n| store.apply(writes).map(|()| n));
        match &staged {
            Ok(_) => writer.applied(),
            Err(_) => writer.abandoned(store),
        }
        staged
    }

    #[test]
    fn a_failed_group_is_told_as_whose_fault_it_is_and_reads_as_before_for_callers() {
        let full = StoreError::DiskFull {
            free_mb: 1,
            needed_mb: 2,
        };
        let refused = WriteError::of(&full);
        assert!(matches!(refused, WriteError::StoreRefused(_)) && refused.retry());
        let job = WriteError::of(&StoreError::CommitFailed("cannot sign the receipt".into()));
        assert!(matches!(job, WriteError::JobRefused(_)) && !job.retry());
        let engine = WriteError::of(&StoreError::Database("connection reset".into()));
        assert!(matches!(engine, WriteError::StoreFailed(_)) && engine.retry());
        assert_eq!(
            WriteError::of(&StoreError::WriterGone),
            WriteError::WriterGone
        );
        // Callers mapping to `StoreError` get what `submit` gave before: `CommitFailed` with the
        // group's error as it read, or `WriterGone`.
        assert_eq!(
            StoreError::from(refused).to_string(),
            format!("the commit failed: {full}")
        );
        assert!(matches!(
            StoreError::from(WriteError::WriterGone),
            StoreError::WriterGone
        ));
        assert_eq!(
            StoreError::from(WriteError::StagedNothing("job")).to_string(),
            "the commit failed: the job staged nothing"
        );
    }

    #[test]
    fn an_audit_event_that_is_not_a_json_object_fails_its_job_instead_of_chaining_nothing() {
        let (store, _) = memory::store();
        let mut subjects = SubjectCache::default();
        let exited = HashSet::new();
        let mut g = Group {
            store: &store,
            archive: Staging::default(),
            latest: Latest::default(),
            removes: Vec::new(),
            queued: 0,
            head: Head::genesis(),
            now: datetime!(2026-11-25 10:00 +08:00),
            subjects: &mut subjects,
            exited: &exited,
            standing: Vec::new(),
            clear_if: Vec::new(),
        };
        let at = g.at();
        let err = g
            .audit_event(&at, AuditEvent::OperatorCommand, &vec![1, 2])
            .unwrap_err();
        assert!(
            matches!(
                WriteError::of(&err),
                WriteError::JobRefused(ref m) if m.contains("operator_command audit event is not a JSON object but an array")
            ),
            "{err}"
        );
        assert!(g.archive.writes.is_empty(), "nothing chained");
        let head = g
            .audit_event(&at, AuditEvent::OperatorCommand, &json_object())
            .unwrap();
        assert_eq!(head.seq, 1);
    }

    fn json_object() -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("command".into(), Value::String("outbox stats".into()));
        m
    }

    #[test]
    fn jobs_of_one_group_see_each_other_and_audit_and_queue_in_job_order() {
        let (store, engine) = memory::store();
        let mut writer = Writer::new(&store, clock()).unwrap();
        let seen = Seen::default();
        let second = Probe {
            look_at: Some("t/a".into()),
            ..probe("t/b", &seen)
        };
        let applies = engine.applies();
        let queued = run_group(&mut writer, &store, vec![probe("t/a", &seen), second]).unwrap();
        assert_eq!(queued, 2);
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[1].2.as_deref(),
            Some(&b"t/a"[..]),
            "b sees what a staged"
        );
        assert_eq!(seen[0].1, seen[1].1, "one group, one change sequence");
        assert_eq!(
            audited_kinds(&store),
            vec![(1, "t/a".to_string()), (2, "t/b".to_string())]
        );
        assert!(crate::audit::verify(&store).is_ok());
        // Queue order is job order: a's share takes the lower sequence number.
        let queue = crate::outbox::pending(&store, "provincial", 10).unwrap();
        let records: Vec<&str> = queue.iter().map(|(_, e)| e.record_id.as_str()).collect();
        assert_eq!(records, vec!["t/a", "t/b"]);
        assert_eq!(engine.applies(), applies + 1, "the group is one write set");
    }

    /// A job that appends its letter to one value kept in [`Latest`] (as reconciling appends to a
    /// record's ledger), and may fail after staging.
    struct Appender {
        letter: &'static str,
        fail: bool,
    }

    impl Exchange for Appender {
        fn stage(&mut self, g: &mut Group<'_>) -> Result<(), StoreError> {
            let mut value = g.latest.get(g.store, "led/a\u{1f}r1")?.unwrap_or_default();
            value.extend_from_slice(self.letter.as_bytes());
            g.latest.put("led/a\u{1f}r1".into(), value);
            if self.fail {
                return Err(StoreError::CommitFailed("refused".into()));
            }
            Ok(())
        }

        fn finish(self: Box<Self>, _: Result<(), WriteError>) {}
    }

    fn appending(writer: &mut Writer, store: &Store, jobs: &[(&'static str, bool)]) -> bool {
        let mut group: Vec<Job> = jobs
            .iter()
            .map(|&(letter, fail)| Box::new(Appender { letter, fail }) as Job)
            .collect();
        let mut writes = WriteSet::default();
        let staged = writer
            .stage(store, &mut group, &mut writes)
            .and_then(|_| store.apply(writes));
        match staged {
            Ok(()) => writer.applied(),
            Err(_) => writer.abandoned(store),
        }
        staged.is_ok()
    }

    #[test]
    fn a_value_kept_latest_is_seen_by_later_jobs_of_the_group_and_written_once_with_it() {
        let (store, engine) = memory::store();
        let mut writer = Writer::new(&store, clock()).unwrap();
        let applies = engine.applies();
        assert!(appending(
            &mut writer,
            &store,
            &[("a", false), ("b", false)]
        ));
        assert_eq!(engine.applies(), applies + 1, "one write set");
        assert_eq!(
            store
                .get_raw("led/a\u{1f}r1".as_bytes())
                .unwrap()
                .as_deref(),
            Some(&b"ab"[..])
        );
        // A group that fails leaves the value as it was; the next one starts from what is stored.
        assert!(!appending(
            &mut writer,
            &store,
            &[("c", false), ("x", true)]
        ));
        assert_eq!(
            store
                .get_raw("led/a\u{1f}r1".as_bytes())
                .unwrap()
                .as_deref(),
            Some(&b"ab"[..])
        );
        assert!(appending(&mut writer, &store, &[("d", false)]));
        assert_eq!(
            store
                .get_raw("led/a\u{1f}r1".as_bytes())
                .unwrap()
                .as_deref(),
            Some(&b"abd"[..])
        );
    }

    #[test]
    fn a_job_that_fails_to_stage_leaves_nothing_of_its_group_and_the_chain_goes_on() {
        let (store, engine) = memory::store();
        let mut writer = Writer::new(&store, clock()).unwrap();
        let seen = Seen::default();
        run_group(&mut writer, &store, vec![probe("t/first", &seen)]).unwrap();
        let before = engine.keys(b"");

        let failing = Probe {
            fail: true,
            ..probe("t/b", &seen)
        };
        let jobs = vec![probe("t/a", &seen), failing, probe("t/c", &seen)];
        let err = run_group(&mut writer, &store, jobs).unwrap_err();
        assert!(err.to_string().contains("t/b refused"), "{err}");
        assert_eq!(engine.keys(b""), before, "nothing of the group is stored");

        // The writer's audit head did not move: the next group links to entry 1.
        run_group(&mut writer, &store, vec![probe("t/d", &seen)]).unwrap();
        assert_eq!(
            audited_kinds(&store),
            vec![(1, "t/first".to_string()), (2, "t/d".to_string())]
        );
        assert_eq!(crate::audit::verify(&store).unwrap().seq, 2);
        assert!(store.get_raw(b"t/a").unwrap().is_none());
    }

    #[test]
    fn a_group_whose_apply_fails_is_forgotten_and_the_next_one_links_to_what_is_stored() {
        let (store, engine) = memory::store();
        let mut writer = Writer::new(&store, clock()).unwrap();
        let seen = Seen::default();
        run_group(&mut writer, &store, vec![probe("t/first", &seen)]).unwrap();
        engine.fail_next_apply();
        assert!(run_group(&mut writer, &store, vec![probe("t/lost", &seen)]).is_err());
        run_group(&mut writer, &store, vec![probe("t/next", &seen)]).unwrap();
        assert_eq!(
            audited_kinds(&store),
            vec![(1, "t/first".to_string()), (2, "t/next".to_string())]
        );
        assert!(crate::audit::verify(&store).is_ok());
        assert!(store.get_raw(b"t/lost").unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_is_answered_only_after_the_flush_that_follows_its_apply() {
        let (store, engine) = memory::store();
        let (committer, handle) = start(store.clone(), clock()).unwrap();
        let seen = Seen::default();
        engine.hold_flushes(true);
        let flushes = engine.flushes();
        let task = {
            let (handle, p) = (handle.clone(), probe("t/a", &seen));
            tokio::spawn(async move { submit(&handle, p).await })
        };
        // Wait until the group is applied...
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.get_raw(b"t/a").unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "never applied");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // ...and it stays unanswered while its flush has not happened.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!task.is_finished(), "answered before the flush");
        assert_eq!(engine.flushes(), flushes);
        engine.hold_flushes(false);
        let head = task.await.unwrap().unwrap();
        assert_eq!(head.seq, 1);
        assert!(engine.flushes() > flushes);
        // What was acknowledged survives a crash.
        engine.crash();
        assert_eq!(store.get_raw(b"t/a").unwrap().as_deref(), Some(&b"t/a"[..]));
        drop(handle);
        tokio::task::spawn_blocking(move || committer.join())
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_flush_answers_every_job_of_its_group_with_an_error() {
        let (store, engine) = memory::store();
        let (committer, handle) = start(store.clone(), clock()).unwrap();
        let seen = Seen::default();
        engine.fail_next_flush();
        let err = submit(&handle, probe("t/a", &seen)).await.unwrap_err();
        assert!(err.to_string().contains("injected flush failure"), "{err}");
        // Not durable: a crash takes it away, and it was never acknowledged.
        engine.crash();
        assert!(store.get_raw(b"t/a").unwrap().is_none());
        drop(handle);
        tokio::task::spawn_blocking(move || committer.join())
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn through_the_committer_one_failing_job_fails_its_whole_group() {
        let (store, _) = memory::store();
        let (committer, handle) = start(store.clone(), clock()).unwrap();
        let seen = Seen::default();
        // Hold the writer busy staging a first job while three more queue up behind it: they
        // are taken as the next group.
        let (open, gate) = std::sync::mpsc::channel();
        let busy = {
            let p = Probe {
                gate: Some(gate),
                ..probe("t/busy", &seen)
            };
            let handle = handle.clone();
            tokio::spawn(async move { submit(&handle, p).await })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // The writer marks itself applying from the moment it takes a group.
        while handle.progress.stuck_for().is_none() {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut tasks = Vec::new();
        for (key, fail) in [("t/a", false), ("t/b", true), ("t/c", false)] {
            let p = Probe {
                fail,
                ..probe(key, &seen)
            };
            let handle = handle.clone();
            tasks.push(tokio::spawn(async move { submit(&handle, p).await }));
        }
        // Let the three reach the writer's queue, then let the busy job go.
        tokio::time::sleep(Duration::from_millis(300)).await;
        open.send(()).unwrap();
        assert_eq!(busy.await.unwrap().unwrap().seq, 1);
        for task in tasks {
            let err = task.await.unwrap().unwrap_err();
            assert!(err.to_string().contains("t/b refused"), "{err}");
        }
        let groups: std::collections::HashSet<u64> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _, _)| k != "t/busy")
            .map(|(_, seq, _)| *seq)
            .collect();
        assert_eq!(groups.len(), 1, "the three were staged as one group");
        for key in ["t/a", "t/b", "t/c"] {
            assert!(store.get_raw(key.as_bytes()).unwrap().is_none(), "{key}");
        }
        assert_eq!(
            crate::outbox::stats(&store, "provincial").unwrap().pending,
            1
        );
        assert_eq!(crate::audit::verify(&store).unwrap().seq, 1);
        drop(handle);
        tokio::task::spawn_blocking(move || committer.join())
            .await
            .unwrap();
    }
}
