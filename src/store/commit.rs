//! The single writer: group commit of accepted batches.
//!
//! Requests queue on a bounded channel (full: senders wait, which back-pressures agencies). The
//! writer thread takes every job that is waiting, stages all of them in one sled batch (archive
//! versions, outbox entries, audit entries, receipts) and applies it atomically; a flusher thread
//! then flushes once for every group applied meanwhile and only then answers each job. One flush
//! is shared by every request that arrived meanwhile, and staging the next group overlaps it.

use std::sync::Arc;
use std::thread;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, Notify};

use super::{to_bytes, Store, StoreError};
use crate::archive::Staging;
use crate::audit::Head;
use crate::clock::SharedClock;
use crate::ingest::receipt::{AcceptedRecord, Receipt};
use crate::ledger::{Change, CorrectionMark, Queued};
use crate::mapping::Rejection;
use crate::outbox::Entry;
use crate::record::CanonicalRecord;
use crate::sharing::{FilterReport, Plan};

/// Jobs waiting beyond this make senders wait.
const QUEUE_DEPTH: usize = 1024;
/// Most jobs folded into one commit.
const MAX_GROUP: usize = 256;

/// Work for the writer. (Variants differ in size; jobs are moved once through a channel, so
/// boxing would buy nothing.)
#[allow(clippy::large_enum_variant)]
pub enum Job {
    /// An agency's batch: archive, outbox, audit, receipt.
    Batch(CommitJob),
    /// Any other exchange: some writes and removals plus its audit entry, atomically.
    Apply(ApplyJob),
    /// A correction (GD Art. 31): new archive version, correction shares, tracking entry.
    Correction(CorrectionJob),
    /// Records re-planned (a timer, a rules reload, an exit or re-entry): the ledger's difference.
    Reconcile(ReconcileJob),
}

/// A correction to make durable.
pub struct CorrectionJob {
    pub correction: crate::corrections::Correction,
    pub record: CanonicalRecord,
    pub canonical: Vec<u8>,
    /// What the credit platforms may hold of the corrected record now.
    pub plan: Plan,
    pub mark: CorrectionMark,
    /// Correction shares outside the publication ledger (to the medical-insurance platform).
    pub forward: Vec<Entry>,
    pub reply: oneshot::Sender<Result<(crate::corrections::Correction, Head), String>>,
}

/// One stored record re-planned.
pub struct ReconcileItem {
    pub record: CanonicalRecord,
    /// The version the plan was made for; a newer one already reconciled itself.
    pub version: u32,
    pub plan: Plan,
}

/// Records to bring in line with their plans, with the audit entry that says why.
pub struct ReconcileJob {
    pub kind: String,
    pub data: Map<String, Value>,
    pub items: Vec<ReconcileItem>,
    pub writes: Vec<(String, Vec<u8>)>,
    pub removes: Vec<String>,
    /// A subject whose standing changes with this job (archive key, exited).
    pub standing: Option<(String, bool)>,
    /// Marks set or removed on records before they are reconciled (objections).
    pub marks: Vec<crate::archive::MarkChange>,
    /// Entries queued as they are (notices to the medical-insurance platform).
    pub enqueue: Vec<Entry>,
    /// A subject entry written with this job (its standing), seen by later jobs of the group.
    pub subject: Option<(String, crate::archive::SubjectEntry)>,
    /// Records the gateway itself writes (evaluation results, linked records): staged as new
    /// versions when their content changed, then reconciled like any record.
    pub records: Vec<NewVersion>,
    /// Keys removed only if they still hold these bytes and no job of the group changes the
    /// subject they follow (`chg/` keys a follower has taken up).
    pub clear_if: Vec<(String, Vec<u8>)>,
    /// No audit entry: the job only takes up changes that turned out to change nothing (the
    /// evaluation worker clearing `chg/` keys). Anything it queues is audited regardless.
    pub quiet: bool,
    pub reply: oneshot::Sender<Result<(Vec<Queued>, Head), String>>,
}

/// A record version the gateway writes itself.
pub struct NewVersion {
    pub record: CanonicalRecord,
    pub canonical: Vec<u8>,
    pub plan: Plan,
    /// Recorded as the version's receipt id: what produced it.
    pub origin: String,
    /// Whether the new version counts as a change of the subject's archive (`chg/`).
    pub touches_subject: bool,
    /// Entries queued only when a new version is staged, carrying its version number.
    pub enqueue: Vec<Entry>,
}

/// Writes recorded in the audit chain as one entry of `kind`.
pub struct ApplyJob {
    pub kind: String,
    pub data: Map<String, Value>,
    pub writes: Vec<(String, Vec<u8>)>,
    pub removes: Vec<String>,
    /// Key -> value computed by the writer when the job is applied (outbox entries get their
    /// sequence numbers there so order follows commit order).
    pub enqueue: Vec<crate::outbox::Entry>,
    pub reply: oneshot::Sender<Result<Head, String>>,
}

/// One accepted record and what the platforms may hold of it, acted on when it is new or a new
/// version.
pub struct AcceptedInput {
    pub index: usize,
    pub record: CanonicalRecord,
    /// `record.canonical_bytes()`, computed before the writer so it stays out of its thread.
    pub canonical: Vec<u8>,
    pub plan: Plan,
}

/// One batch to make durable.
pub struct CommitJob {
    pub receipt_id: String,
    pub agency: String,
    pub mapping: String,
    pub received_at: String,
    pub body_sha256: String,
    pub total: usize,
    pub accepted: Vec<AcceptedInput>,
    pub rejected: Vec<Rejection>,
    /// What the disclosure filter withheld or masked (rule and field names only), for the audit.
    pub filter: FilterReport,
    pub reply: oneshot::Sender<Result<Receipt, String>>,
}

/// When the writer and the flusher started what they are doing (for the watchdog).
#[derive(Debug)]
pub struct Progress {
    origin: std::time::Instant,
    /// Milliseconds since `origin` + 1 when the current apply began; 0 when idle.
    applying: std::sync::atomic::AtomicU64,
    flushing: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self {
            origin: std::time::Instant::now(),
            applying: Default::default(),
            flushing: Default::default(),
        }
    }

    fn mark(&self, slot: &std::sync::atomic::AtomicU64, busy: bool) {
        let v = if busy {
            self.origin.elapsed().as_millis() as u64 + 1
        } else {
            0
        };
        slot.store(v, std::sync::atomic::Ordering::SeqCst);
    }

    /// How long the oldest unfinished apply or flush has been running.
    pub fn stuck_for(&self) -> Option<std::time::Duration> {
        let now = self.origin.elapsed().as_millis() as u64 + 1;
        [&self.applying, &self.flushing]
            .iter()
            .map(|s| s.load(std::sync::atomic::Ordering::SeqCst))
            .filter(|v| *v > 0)
            .map(|since| std::time::Duration::from_millis(now.saturating_sub(since)))
            .max()
    }
}

/// Cheap handle to submit jobs.
#[derive(Clone)]
pub struct CommitterHandle {
    /// What the writer is doing, for the watchdog.
    pub progress: Arc<Progress>,
    tx: mpsc::Sender<Job>,
    /// Woken after every commit that queued shares.
    pub outbox_notify: Arc<Notify>,
}

impl CommitterHandle {
    /// Submit and wait until the job is durable.
    pub async fn commit(
        &self,
        job_without_reply: impl FnOnce(oneshot::Sender<Result<Receipt, String>>) -> CommitJob,
    ) -> Result<Receipt, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Job::Batch(job_without_reply(tx)), rx).await
    }

    /// Store a correction and queue its shares, durably.
    pub async fn correct(
        &self,
        correction: crate::corrections::Correction,
        record: CanonicalRecord,
        plan: Plan,
        mark: CorrectionMark,
        forward: Vec<Entry>,
    ) -> Result<(crate::corrections::Correction, Head), StoreError> {
        let (reply, rx) = oneshot::channel();
        let job = CorrectionJob {
            correction,
            canonical: record.canonical_bytes(),
            record,
            plan,
            mark,
            forward,
            reply,
        };
        self.submit(Job::Correction(job), rx).await
    }

    /// Bring stored records in line with their plans, durably.
    pub async fn reconcile(
        &self,
        job_without_reply: impl FnOnce(
            oneshot::Sender<Result<(Vec<Queued>, Head), String>>,
        ) -> ReconcileJob,
    ) -> Result<(Vec<Queued>, Head), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Job::Reconcile(job_without_reply(tx)), rx).await
    }

    /// Apply writes and removals with their audit entry, durably.
    pub async fn apply(
        &self,
        kind: &str,
        data: Map<String, Value>,
        writes: Vec<(String, Vec<u8>)>,
        removes: Vec<String>,
        enqueue: Vec<crate::outbox::Entry>,
    ) -> Result<Head, StoreError> {
        let (reply, rx) = oneshot::channel();
        let job = ApplyJob {
            kind: kind.to_string(),
            data,
            writes,
            removes,
            enqueue,
            reply,
        };
        self.submit(Job::Apply(job), rx).await
    }

    /// Queue a job and wait until the writer says it is durable (or why not).
    async fn submit<T>(
        &self,
        job: Job,
        answer: oneshot::Receiver<Result<T, String>>,
    ) -> Result<T, StoreError> {
        self.tx
            .send(job)
            .await
            .map_err(|_| StoreError::WriterGone)?;
        match answer.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(message)) => Err(StoreError::CommitFailed(message)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }
}

/// The writer thread.
pub struct Committer {
    thread: Option<thread::JoinHandle<()>>,
}

impl Committer {
    /// Start the writer. Every time it stamps (audit entries, ledger events) comes from `clock`.
    pub fn start(
        store: Store,
        clock: SharedClock,
    ) -> Result<(Committer, CommitterHandle), StoreError> {
        let head = Head::load(&store)?;
        let exited = crate::archive::exited_subjects(&store)?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let notify = Arc::new(Notify::new());
        let wake = notify.clone();
        let progress = Arc::new(Progress::new());
        let writer_progress = progress.clone();
        let thread = thread::Builder::new()
            .name("commit".into())
            .spawn(move || {
                run(
                    Writer {
                        store,
                        clock,
                        subjects: crate::archive::SubjectCache::default(),
                        exited,
                        progress: writer_progress,
                    },
                    head,
                    rx,
                    wake,
                )
            })
            .map_err(StoreError::Spawn)?;
        Ok((
            Committer {
                thread: Some(thread),
            },
            CommitterHandle {
                progress,
                tx,
                outbox_notify: notify,
            },
        ))
    }

    /// Wait for the writer to finish the jobs it has; it stops when every handle is dropped.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the writer thread keeps between groups.
struct Writer {
    store: Store,
    clock: SharedClock,
    subjects: crate::archive::SubjectCache,
    /// Archive keys of exited subjects (LS Art. 20): nothing of theirs is shared.
    exited: std::collections::HashSet<String>,
    progress: Arc<Progress>,
}

fn run(mut w: Writer, mut head: Head, mut rx: mpsc::Receiver<Job>, notify: Arc<Notify>) {
    let store = w.store.clone();
    // Pipeline: while the flusher makes group N durable, this thread stages and applies group
    // N+1. A reply leaves only after a flush that started after its group was applied.
    let (to_flusher, flusher_rx) = std::sync::mpsc::sync_channel::<Applied>(4);
    let flusher = {
        let store = store.clone();
        let progress = w.progress.clone();
        thread::Builder::new()
            .name("commit-flush".into())
            .spawn(move || flush_and_reply(store, flusher_rx, notify, progress))
    };
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        w.progress.mark(&w.progress.applying, true);
        let committed = commit_group(&mut w, &head, &group);
        w.progress.mark(&w.progress.applying, false);
        match committed {
            Ok((new_head, answers, queued)) => {
                head = new_head;
                let applied = Applied {
                    group,
                    answers,
                    queued,
                    started,
                };
                if let Err(std::sync::mpsc::SendError(applied)) = to_flusher.send(applied) {
                    fail_all(applied.group, "the flusher has stopped");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = group.len(), "commit failed; nothing of these jobs was acknowledged");
                // What was staged is not on disk: reload the head so the chain continues from
                // what is stored.
                head = Head::load(&store).unwrap_or(head);
                fail_all(group, &e.to_string());
            }
        }
    }
    drop(to_flusher);
    if let Ok(f) = flusher {
        let _ = f.join();
    }
    if let Err(e) = store.flush() {
        tracing::error!(error = %e, "final flush failed");
    }
}

/// A group applied to sled, waiting for a flush.
struct Applied {
    group: Vec<Job>,
    answers: Vec<Answer>,
    queued: usize,
    started: std::time::Instant,
}

fn flush_and_reply(
    store: Store,
    rx: std::sync::mpsc::Receiver<Applied>,
    notify: Arc<Notify>,
    progress: Arc<Progress>,
) {
    while let Ok(first) = rx.recv() {
        let mut ready = vec![first];
        while let Ok(more) = rx.try_recv() {
            ready.push(more);
        }
        progress.mark(&progress.flushing, true);
        let flushed = store.flush();
        progress.mark(&progress.flushing, false);
        if let Err(e) = flushed {
            tracing::error!(error = %e, "flush failed; these jobs are not acknowledged");
            for applied in ready {
                fail_all(applied.group, &e.to_string());
            }
            continue;
        }
        let mut queued = 0;
        for applied in ready {
            metrics::histogram!("gateway_commit_seconds")
                .record(applied.started.elapsed().as_secs_f64());
            metrics::counter!("gateway_commit_groups_total").increment(1);
            queued += applied.queued;
            for (job, answer) in applied.group.into_iter().zip(applied.answers) {
                match (job, answer) {
                    (Job::Batch(j), Answer::Receipt(r)) => {
                        let _ = j.reply.send(Ok(*r));
                    }
                    (Job::Apply(j), Answer::Head(h)) => {
                        let _ = j.reply.send(Ok(h));
                    }
                    (Job::Correction(j), Answer::Correction(c, h)) => {
                        let _ = j.reply.send(Ok((*c, h)));
                    }
                    (Job::Reconcile(j), Answer::Reconciled(q, h)) => {
                        let _ = j.reply.send(Ok((q, h)));
                    }
                    _ => {}
                }
            }
        }
        if queued > 0 {
            metrics::counter!("gateway_outbox_enqueued_total").increment(queued as u64);
            notify.notify_waiters();
        }
    }
}

fn fail_all(group: Vec<Job>, message: &str) {
    for job in group {
        match job {
            Job::Batch(j) => {
                let _ = j.reply.send(Err(message.to_string()));
            }
            Job::Apply(j) => {
                let _ = j.reply.send(Err(message.to_string()));
            }
            Job::Correction(j) => {
                let _ = j.reply.send(Err(message.to_string()));
            }
            Job::Reconcile(j) => {
                let _ = j.reply.send(Err(message.to_string()));
            }
        }
    }
}

enum Answer {
    Receipt(Box<Receipt>),
    Head(Head),
    Correction(Box<crate::corrections::Correction>, Head),
    Reconciled(Vec<Queued>, Head),
}

/// Everything one group stages before it is applied as one sled batch.
struct Group {
    archive: Staging,
    removes: Vec<String>,
    queued: usize,
    /// Standing changes staged in this group (archive key, exited), in order.
    standing: Vec<(String, bool)>,
}

impl Group {
    /// Whether a subject is exited, as this group sees it.
    fn is_exited(&self, w: &Writer, subject: &str) -> bool {
        match self.standing.iter().rev().find(|(s, _)| s == subject) {
            Some((_, exited)) => *exited,
            None => w.exited.contains(subject),
        }
    }
}

fn commit_group(
    w: &mut Writer,
    head: &Head,
    group: &[Job],
) -> Result<(Head, Vec<Answer>, usize), StoreError> {
    let mut g = Group {
        archive: Staging::default(),
        removes: Vec::new(),
        queued: 0,
        standing: Vec::new(),
    };
    let mut head = head.clone();
    let mut answers = Vec::with_capacity(group.len());
    let now = w.clock.now();
    g.archive.stamp = format!("{}-{}", head.seq, now.unix_timestamp_nanos());
    let mut clear_if: Vec<(String, Vec<u8>)> = Vec::new();
    let at = crate::clock::rfc3339(now);
    for job in group {
        match job {
            Job::Batch(job) => {
                let receipt = stage_batch(w, &mut g, &mut head, job, now)?;
                answers.push(Answer::Receipt(Box::new(receipt)));
            }
            Job::Correction(job) => {
                let (c, h) = stage_correction(w, &mut g, &mut head, job, now)?;
                answers.push(Answer::Correction(Box::new(c), h));
            }
            Job::Apply(job) => {
                g.archive.writes.extend(job.writes.iter().cloned());
                for entry in &job.enqueue {
                    g.archive
                        .writes
                        .push(crate::outbox::enqueue_write(&w.store, entry)?);
                    g.queued += 1;
                }
                g.removes.extend(job.removes.iter().cloned());
                let (key, bytes, next) = head.append(&at, &job.kind, job.data.clone());
                g.archive.writes.push((key, bytes));
                head = next;
                answers.push(Answer::Head(head.clone()));
            }
            Job::Reconcile(job) => {
                clear_if.extend(job.clear_if.iter().cloned());
                let queued = stage_reconcile(w, &mut g, job, now)?;
                if !job.quiet || !queued.is_empty() {
                    let mut data = job.data.clone();
                    data.insert(
                        "changes".into(),
                        serde_json::to_value(&queued).unwrap_or_default(),
                    );
                    let (key, bytes, next) = head.append(&at, &job.kind, data);
                    g.archive.writes.push((key, bytes));
                    head = next;
                }
                answers.push(Answer::Reconciled(queued, head.clone()));
            }
        }
    }
    for (key, expected) in clear_if {
        let subject = key.strip_prefix("chg/").unwrap_or(&key);
        if !g.archive.touches(subject)
            && w.store.raw().get(key.as_bytes())?.as_deref() == Some(expected.as_slice())
        {
            g.removes.push(key);
        }
    }
    let mut batch = sled::Batch::default();
    // A key both queued and removed in one group is a publication a later withdrawal superseded:
    // the removal wins (a sled batch keeps the last operation on a key, so the write is dropped).
    let removed: std::collections::HashSet<&str> = g.removes.iter().map(String::as_str).collect();
    for k in &g.removes {
        batch.remove(k.as_bytes());
    }
    for (k, v) in g.archive.into_writes() {
        if !removed.contains(k.as_str()) {
            batch.insert(k.into_bytes(), v);
        }
    }
    w.store.apply(batch)?;
    for (subject, exited) in g.standing {
        if exited {
            w.exited.insert(subject);
        } else {
            w.exited.remove(&subject);
        }
    }
    Ok((head, answers, g.queued))
}

/// What a record's ledger is judged against.
enum Prior {
    /// A record never seen before: no platform holds it, no mark.
    New,
    /// The head as it was before this job staged a new version.
    Was(Option<crate::archive::RecordHead>),
    /// The head as this group sees it (no new version staged).
    Current,
}

/// Bring every platform in line with what it may hold of one record now (the publication
/// ledger's difference), schedule the record's next check, and mark it expired when it is.
#[allow(clippy::too_many_arguments)]
fn reconcile_record(
    w: &Writer,
    g: &mut Group,
    record: &CanonicalRecord,
    version: u32,
    plan: &Plan,
    prior: Prior,
    correction: Option<&CorrectionMark>,
    marking: bool,
    now: time::OffsetDateTime,
) -> Result<Vec<Queued>, StoreError> {
    let subject = record.subject.id.archive_key();
    let (agency, record_id) = (&record.source.agency, &record.source.record_id);
    let current = match prior {
        Prior::New => None,
        _ => g.archive.head(&w.store, agency, record_id)?,
    };
    let before = match prior {
        Prior::New => None,
        Prior::Was(head) => head,
        Prior::Current => current.clone(),
    };
    // A head whose ledger cannot be read must not stop agencies' batches in the same group: it is
    // reported, and the record starts a new ledger.
    let mut ledger = match before.as_ref().map(crate::ledger::Ledger::of_head) {
        None => crate::ledger::Ledger::default(),
        Some(Ok(ledger)) => ledger,
        Some(Err(e)) => {
            crate::telemetry::events::recheck_failed(record_id, &e.to_string());
            crate::ledger::Ledger::default()
        }
    };
    let marks = current.as_ref().map(|h| h.marks.as_slice()).unwrap_or(&[]);
    let adjusted;
    let plan = if g.is_exited(w, &subject) {
        let mut p = plan.clone();
        p.close("subject_exited");
        adjusted = p;
        &adjusted
    } else if marks
        .iter()
        .any(|m| m.kind == crate::archive::MarkKind::Eliminated)
    {
        let mut p = plan.clone();
        p.close("objection_upheld");
        adjusted = p;
        &adjusted
    } else if marks
        .iter()
        .any(|m| m.kind == crate::archive::MarkKind::Repaired)
    {
        let mut p = plan.clone();
        p.close("repaired");
        adjusted = p;
        &adjusted
    } else if !marks.is_empty() {
        let mut p = plan.clone();
        p.mark(&serde_json::to_value(marks).unwrap_or_default());
        adjusted = p;
        &adjusted
    } else {
        plan
    };
    let Group {
        archive, removes, ..
    } = g;
    let store = &w.store;
    let change = Change {
        record,
        version,
        plan,
        now,
        correction,
        marking,
    };
    let queued = ledger.reconcile(
        &change,
        |entry| {
            let (key, bytes) = crate::outbox::enqueue_write(store, entry)?;
            archive.writes.push((key.clone(), bytes));
            Ok::<_, StoreError>(key)
        },
        |superseded| removes.push(superseded.to_string()),
    )?;
    g.queued += queued.len();
    g.archive
        .set_publication(&w.store, agency, record_id, ledger.to_raw()?)?;
    if let Some(at) = plan.next_change {
        g.archive.writes.push((
            crate::ledger::timer_key(at, agency, record_id),
            b"{}".to_vec(),
        ));
    }
    if plan.expired {
        g.archive.mark_expired(&w.store, agency, record_id, now)?;
    }
    Ok(queued)
}

fn stage_batch(
    w: &mut Writer,
    g: &mut Group,
    head: &mut Head,
    job: &CommitJob,
    now: time::OffsetDateTime,
) -> Result<Receipt, StoreError> {
    let mut accepted = Vec::with_capacity(job.accepted.len());
    let (mut new, mut updated, mut unchanged) = (0usize, 0usize, 0usize);
    let (mut shares_queued, mut withdrawals) = (0usize, Vec::new());
    for input in &job.accepted {
        let record = &input.record;
        let (outcome, version, previous) = g.archive.stage(
            &w.store,
            &mut w.subjects,
            record,
            &input.canonical,
            &job.receipt_id,
            &job.received_at,
            true,
        )?;
        match outcome {
            crate::archive::Outcome::New => new += 1,
            crate::archive::Outcome::Updated => updated += 1,
            crate::archive::Outcome::Unchanged => unchanged += 1,
        }
        if outcome != crate::archive::Outcome::Unchanged {
            let prior = match outcome {
                crate::archive::Outcome::New => Prior::New,
                _ => Prior::Was(previous),
            };
            for q in reconcile_record(w, g, record, version, &input.plan, prior, None, false, now)?
            {
                match q.action {
                    crate::ledger::Action::Publish => shares_queued += 1,
                    crate::ledger::Action::Withdraw => withdrawals.push(serde_json::json!({
                        "record_id": record.source.record_id,
                        "destination": q.destination,
                        "channel": q.channel,
                        "reason": q.reason,
                    })),
                }
            }
        }
        accepted.push(AcceptedRecord {
            index: input.index,
            record_id: record.source.record_id.clone(),
            outcome,
            version,
        });
    }
    let mut data = Map::new();
    data.insert("receipt_id".into(), Value::String(job.receipt_id.clone()));
    data.insert("agency".into(), Value::String(job.agency.clone()));
    data.insert("mapping".into(), Value::String(job.mapping.clone()));
    data.insert("body_sha256".into(), Value::String(job.body_sha256.clone()));
    data.insert("total".into(), Value::from(job.total));
    data.insert("accepted".into(), Value::from(accepted.len()));
    data.insert("new".into(), Value::from(new));
    data.insert("updated".into(), Value::from(updated));
    data.insert("unchanged".into(), Value::from(unchanged));
    data.insert("rejected".into(), Value::from(job.rejected.len()));
    data.insert("shares_queued".into(), Value::from(shares_queued));
    if !withdrawals.is_empty() {
        data.insert("withdrawals_queued".into(), Value::Array(withdrawals));
    }
    data.insert(
        "records".into(),
        Value::Array(
            accepted
                .iter()
                .map(|a| serde_json::json!({"index": a.index, "record_id": a.record_id, "outcome": a.outcome, "version": a.version}))
                .chain(job.rejected.iter().map(|r| serde_json::json!({"index": r.index, "record_id": r.record_id, "outcome": "rejected", "field": r.field})))
                .collect(),
        ),
    );
    if !job.filter.withheld.is_empty() || !job.filter.masked.is_empty() {
        data.insert(
            "withheld".into(),
            Value::Array(
                job.filter
                    .withheld
                    .iter()
                    .map(|(d, c, r)| serde_json::json!({"destination": d, "channel": c, "rule": r}))
                    .collect(),
            ),
        );
        data.insert(
            "masked".into(),
            Value::Array(job.filter.masked.iter().map(|(d, c, f, r)| serde_json::json!({"destination": d, "channel": c, "field": f, "rule": r})).collect()),
        );
    }
    let (key, bytes, next) = head.append(&job.received_at, "batch_received", data);
    g.archive.writes.push((key, bytes));
    *head = next;
    let receipt = Receipt {
        receipt_id: job.receipt_id.clone(),
        agency: job.agency.clone(),
        mapping: job.mapping.clone(),
        received_at: job.received_at.clone(),
        total: job.total,
        accepted: accepted.len(),
        new,
        updated,
        unchanged,
        rejected_count: job.rejected.len(),
        rejected: job.rejected.clone(),
        records: accepted,
        audit: head.clone(),
    };
    g.archive
        .writes
        .push((format!("rcp/{}", job.receipt_id), to_bytes(&receipt)));
    Ok(receipt)
}

fn stage_correction(
    w: &mut Writer,
    g: &mut Group,
    head: &mut Head,
    job: &CorrectionJob,
    now: time::OffsetDateTime,
) -> Result<(crate::corrections::Correction, Head), StoreError> {
    let mut correction = job.correction.clone();
    let record = &job.record;
    let received_at = crate::clock::rfc3339(correction.received_at);
    let (_, version, previous) = g.archive.stage(
        &w.store,
        &mut w.subjects,
        record,
        &job.canonical,
        &correction.id,
        &received_at,
        true,
    )?;
    correction.version = version;
    let queued = reconcile_record(
        w,
        g,
        record,
        version,
        &job.plan,
        Prior::Was(previous),
        Some(&job.mark),
        false,
        now,
    )?;
    let mut destinations: Vec<String> = queued.iter().map(|q| q.destination.clone()).collect();
    for entry in &job.forward {
        let mut entry = entry.clone();
        entry.version = version;
        g.archive
            .writes
            .push(crate::outbox::enqueue_write(&w.store, &entry)?);
        g.queued += 1;
        destinations.push(entry.destination.clone());
    }
    destinations.sort();
    destinations.dedup();
    correction.destinations = destinations;
    g.archive.writes.push((
        crate::corrections::correction_key(&correction.id),
        to_bytes(&correction),
    ));
    let mut data = Map::new();
    data.insert("correction_id".into(), Value::String(correction.id.clone()));
    data.insert(
        "kind".into(),
        serde_json::to_value(correction.kind).unwrap_or_default(),
    );
    data.insert("agency".into(), Value::String(correction.agency.clone()));
    data.insert(
        "record_id".into(),
        Value::String(correction.record_id.clone()),
    );
    data.insert("version".into(), Value::from(version));
    data.insert(
        "requested_by".into(),
        Value::String(correction.requested_by.clone()),
    );
    data.insert(
        "found_at".into(),
        Value::String(crate::clock::rfc3339(correction.found_at)),
    );
    data.insert(
        "deadline".into(),
        serde_json::to_value(correction.deadline.map(crate::clock::rfc3339)).unwrap_or_default(),
    );
    data.insert(
        "destinations".into(),
        serde_json::to_value(&correction.destinations).unwrap_or_default(),
    );
    data.insert(
        "changes".into(),
        serde_json::to_value(&queued).unwrap_or_default(),
    );
    let (key, bytes, next) = head.append(&received_at, "correction_received", data);
    g.archive.writes.push((key, bytes));
    *head = next;
    Ok((correction, head.clone()))
}

fn stage_reconcile(
    w: &mut Writer,
    g: &mut Group,
    job: &ReconcileJob,
    now: time::OffsetDateTime,
) -> Result<Vec<Queued>, StoreError> {
    if let Some(standing) = &job.standing {
        // Takes effect for the rest of the group now, and for the writer once applied.
        g.standing.push(standing.clone());
    }
    if let Some((key, entry)) = &job.subject {
        g.archive.put_subject(key, entry.clone());
    }
    g.archive.writes.extend(job.writes.iter().cloned());
    g.removes.extend(job.removes.iter().cloned());
    for change in &job.marks {
        g.archive.change_marks(&w.store, change)?;
    }
    for entry in &job.enqueue {
        g.archive
            .writes
            .push(crate::outbox::enqueue_write(&w.store, entry)?);
        g.queued += 1;
    }
    let mut all = Vec::new();
    let at = crate::clock::rfc3339(now);
    for new in &job.records {
        let (outcome, version, previous) = g.archive.stage(
            &w.store,
            &mut w.subjects,
            &new.record,
            &new.canonical,
            &new.origin,
            &at,
            new.touches_subject,
        )?;
        if outcome == crate::archive::Outcome::Unchanged {
            continue;
        }
        let prior = match outcome {
            crate::archive::Outcome::New => Prior::New,
            _ => Prior::Was(previous),
        };
        all.extend(reconcile_record(
            w,
            g,
            &new.record,
            version,
            &new.plan,
            prior,
            None,
            false,
            now,
        )?);
        for entry in &new.enqueue {
            let mut entry = entry.clone();
            entry.version = version;
            g.archive
                .writes
                .push(crate::outbox::enqueue_write(&w.store, &entry)?);
            g.queued += 1;
        }
    }
    for item in &job.items {
        let (agency, record_id) = (&item.record.source.agency, &item.record.source.record_id);
        let current = g.archive.head(&w.store, agency, record_id)?;
        if current.as_ref().map(|h| h.version) != Some(item.version) {
            // A newer version arrived after this plan was made, possibly under other rules or
            // another standing: check the record again at the next timer tick.
            g.archive.writes.push((
                crate::ledger::timer_key(now, agency, record_id),
                b"{}".to_vec(),
            ));
            continue;
        }
        all.extend(reconcile_record(
            w,
            g,
            &item.record,
            item.version,
            &item.plan,
            Prior::Current,
            None,
            !job.marks.is_empty(),
            now,
        )?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_sees_how_long_an_apply_or_flush_runs() {
        let p = Progress::new();
        assert!(p.stuck_for().is_none(), "idle");
        p.mark(&p.flushing, true);
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(p.stuck_for().unwrap() >= std::time::Duration::from_millis(25));
        p.mark(&p.flushing, false);
        assert!(p.stuck_for().is_none(), "finished");
    }
}
