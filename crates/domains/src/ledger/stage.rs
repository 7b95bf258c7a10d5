//! The publication ledger on the writer thread: bring every platform in line with what it may
//! hold of a record now, inside a group commit ([`reconcile_record`]), and the re-plan exchange
//! ([`ReconcileJob`]) timers, rule reloads, exits, objections, repairs and evaluation submit.
//!
//! Invariants: a record's ledger (its own key, `led/`), its outbox entries, its next timer and its
//! expiry mark are staged in the same group as the version they follow, so they are applied in
//! one atomic write set with it; a plan made for an older version is not
//! applied (the record is checked again at the next timer tick).

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::{timer_key, Change, CorrectionMark, Ledger, Queued};
use crate::archive::{MarkChange, MarkKind, Outcome, SubjectEntry};
use crate::audit::{AuditEvent, Head};
use crate::exchange::{answer, CommitterHandle, Exchange, Group, WriteError};
use crate::outbox::Entry;
use crate::record::CanonicalRecord;
use crate::sharing::Plan;
use crate::store::StoreError;

/// Whether a record has state stored before this change (its marks, its ledger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    /// A record never seen before: no platform holds it, no mark; nothing to read.
    New,
    /// A record the archive holds: its marks and its ledger are read as this group leaves them.
    Stored,
}

impl Prior {
    /// The prior of a version the archive just staged.
    pub fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome::New => Prior::New,
            _ => Prior::Stored,
        }
    }
}

/// Bring every platform in line with what it may hold of one record now (the publication
/// ledger's difference), schedule the record's next check, and mark it expired when it is.
pub fn reconcile_record(
    g: &mut Group<'_>,
    record: &CanonicalRecord,
    version: u32,
    plan: &Plan,
    prior: Prior,
    correction: Option<&CorrectionMark>,
    marking: bool,
) -> Result<Vec<Queued>, StoreError> {
    let subject = record.subject.id.archive_key(g.store);
    let (agency, record_id) = (&record.source.agency, &record.source.record_id);
    let current = match prior {
        Prior::New => None,
        Prior::Stored => g.archive.head(g.store, agency, record_id)?,
    };
    // The record's ledger as this group leaves it so far. One that cannot be read must not stop
    // agencies' batches in the same group: it is reported, and the record starts a new ledger
    // (written whatever this reconciliation queues).
    let key = super::ledger_key(agency, record_id);
    let (mut ledger, unreadable) = match prior {
        Prior::New => (Ledger::default(), false),
        Prior::Stored => match g.latest.get(g.store, &key)? {
            None => (Ledger::default(), false),
            Some(bytes) => match serde_json::from_slice::<Ledger>(&bytes) {
                Ok(ledger) => (ledger, false),
                Err(e) => {
                    crate::telemetry::events::recheck_failed(record_id, &e.to_string());
                    (Ledger::default(), true)
                }
            },
        },
    };
    let marks = current.as_ref().map(|h| h.marks.as_slice()).unwrap_or(&[]);
    let adjusted = adjust(plan, g.is_exited(&subject), marks);
    let plan = adjusted.as_ref().unwrap_or(plan);
    let now = g.now;
    let change = Change {
        record,
        subject: &subject,
        version,
        plan,
        now,
        correction,
        marking,
    };
    let mut superseded = Vec::new();
    let queued = ledger.reconcile(
        &change,
        |entry| g.enqueue(entry),
        |old| superseded.push(old.to_string()),
    )?;
    g.removes.extend(superseded);
    // A ledger changes only by what reconciling queued.
    if !queued.is_empty() || unreadable {
        g.latest.put(key, crate::store::to_bytes(&ledger));
    }
    if let Some(at) = plan.next_change {
        g.archive
            .writes
            .push((timer_key(at, agency, record_id), b"{}".to_vec()));
    }
    if plan.expired {
        g.archive.mark_expired(g.store, agency, record_id, now)?;
    }
    Ok(queued)
}

/// The plan as the subject's standing and the record's marks leave it: nothing while exited
/// (LS Art. 20), eliminated (LS Art. 23) or repaired (LS Art. 40); marked while under objection.
fn adjust(plan: &Plan, exited: bool, marks: &[crate::archive::Mark]) -> Option<Plan> {
    let has = |kind| marks.iter().any(|m| m.kind == kind);
    let closed = if exited {
        Some("subject_exited")
    } else if has(MarkKind::Eliminated) {
        Some("objection_upheld")
    } else if has(MarkKind::Repaired) {
        Some("repaired")
    } else {
        None
    };
    let mut p = plan.clone();
    match closed {
        Some(reason) => p.close(reason),
        None if !marks.is_empty() => p.mark(&serde_json::to_value(marks).unwrap_or_default()),
        None => return None,
    }
    Some(p)
}

/// One stored record re-planned.
pub struct ReconcileItem {
    pub record: CanonicalRecord,
    /// The version the plan was made for; a newer one already reconciled itself.
    pub version: u32,
    pub plan: Plan,
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

/// Records to bring in line with their plans, with the audit entry that says why.
///
/// Built from the entry's event and data ([`ReconcileJob::new`]); everything else starts empty
/// and each step says only what it changes, by name (`.items(..)`, `.marks(..)`, ...).
pub struct ReconcileJob {
    kind: AuditEvent,
    data: Map<String, Value>,
    items: Vec<ReconcileItem>,
    writes: Vec<(String, Vec<u8>)>,
    removes: Vec<String>,
    /// A subject whose standing changes with this job (archive key, exited).
    standing: Option<(String, bool)>,
    /// Marks set or removed on records before they are reconciled (objections).
    marks: Vec<MarkChange>,
    /// Entries queued as they are (notices to the medical-insurance platform).
    enqueue: Vec<Entry>,
    /// A subject entry written with this job (its standing), seen by later jobs of the group.
    subject: Option<(String, SubjectEntry)>,
    /// Records the gateway itself writes (evaluation results, linked records): staged as new
    /// versions when their content changed, then reconciled like any record.
    records: Vec<NewVersion>,
    /// Keys removed only if they still hold these bytes and no job of the group changes the
    /// subject they follow (`chg/` keys a follower has taken up).
    clear_if: Vec<(String, Vec<u8>)>,
    /// No audit entry: the job only takes up changes that turned out to change nothing (the
    /// evaluation worker clearing `chg/` keys). Anything it queues is audited regardless.
    quiet: bool,
}

impl ReconcileJob {
    /// A re-plan audited as `kind` with `data` (the entry also gets `changes`, what was queued),
    /// changing nothing yet.
    pub fn new(kind: AuditEvent, data: Map<String, Value>) -> Self {
        Self {
            kind,
            data,
            items: Vec::new(),
            writes: Vec::new(),
            removes: Vec::new(),
            standing: None,
            marks: Vec::new(),
            enqueue: Vec::new(),
            subject: None,
            records: Vec::new(),
            clear_if: Vec::new(),
            quiet: false,
        }
    }

    /// Stored records re-planned.
    pub fn items(mut self, items: Vec<ReconcileItem>) -> Self {
        self.items = items;
        self
    }

    /// Keys written with the job.
    pub fn writes(mut self, writes: Vec<(String, Vec<u8>)>) -> Self {
        self.writes = writes;
        self
    }

    /// Keys removed with the job.
    pub fn removes(mut self, removes: Vec<String>) -> Self {
        self.removes = removes;
        self
    }

    /// The subject (archive key) exits or re-enters with this job (LS Art. 20).
    pub fn standing(mut self, subject: String, exited: bool) -> Self {
        self.standing = Some((subject, exited));
        self
    }

    /// Marks set or removed on records before they are reconciled (objections, repairs).
    pub fn marks(mut self, marks: Vec<MarkChange>) -> Self {
        self.marks = marks;
        self
    }

    /// Entries queued as they are (notices to the medical-insurance platform).
    pub fn enqueue(mut self, enqueue: Vec<Entry>) -> Self {
        self.enqueue = enqueue;
        self
    }

    /// The subject entry (archive key, entry) written with this job.
    pub fn subject(mut self, key: String, entry: SubjectEntry) -> Self {
        self.subject = Some((key, entry));
        self
    }

    /// Records the gateway itself writes as new versions.
    pub fn records(mut self, records: Vec<NewVersion>) -> Self {
        self.records = records;
        self
    }

    /// Keys removed only if they still hold these bytes (see the field).
    pub fn clear_if(mut self, clear_if: Vec<(String, Vec<u8>)>) -> Self {
        self.clear_if = clear_if;
        self
    }

    /// Whether the job goes unaudited when it queues nothing (see the field).
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }
}

/// Submitting a re-plan.
pub trait Reconcile {
    /// Bring stored records in line with their plans, durably.
    #[allow(async_fn_in_trait)]
    async fn reconcile(&self, job: ReconcileJob) -> Result<(Vec<Queued>, Head), WriteError>;
}

impl Reconcile for CommitterHandle {
    async fn reconcile(&self, job: ReconcileJob) -> Result<(Vec<Queued>, Head), WriteError> {
        self.submit(|reply| {
            Box::new(Reconciling {
                job,
                reply,
                done: None,
            })
        })
        .await
    }
}

struct Reconciling {
    job: ReconcileJob,
    reply: oneshot::Sender<Result<(Vec<Queued>, Head), WriteError>>,
    done: Option<(Vec<Queued>, Head)>,
}

impl Exchange for Reconciling {
    fn stage(&mut self, g: &mut Group<'_>) -> Result<(), StoreError> {
        let job = &self.job;
        for (key, expected) in &job.clear_if {
            g.clear_if(key.clone(), expected.clone());
        }
        let queued = stage_reconcile(g, job)?;
        if !job.quiet || !queued.is_empty() {
            let mut data = job.data.clone();
            data.insert(
                "changes".into(),
                serde_json::to_value(&queued).unwrap_or_default(),
            );
            let at = g.at();
            g.audit(&at, job.kind, data);
        }
        self.done = Some((queued, g.head.clone()));
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<(), WriteError>) {
        answer(Some(self.reply), outcome, self.done);
    }
}

fn stage_reconcile(g: &mut Group<'_>, job: &ReconcileJob) -> Result<Vec<Queued>, StoreError> {
    if let Some((subject, exited)) = &job.standing {
        g.set_standing(subject.clone(), *exited);
    }
    if let Some((key, entry)) = &job.subject {
        g.archive.put_subject(key, entry.clone());
    }
    g.archive.writes.extend(job.writes.iter().cloned());
    g.removes.extend(job.removes.iter().cloned());
    for change in &job.marks {
        g.archive.change_marks(g.store, change)?;
    }
    for entry in &job.enqueue {
        g.enqueue(entry)?;
    }
    let mut all = Vec::new();
    for new in &job.records {
        let (outcome, version, _) = g.archive.stage(
            g.store,
            g.subjects,
            &new.record,
            &crate::archive::Prepared::new(g.store, &new.canonical)?,
            &new.origin,
            g.now,
            new.touches_subject,
        )?;
        if outcome == Outcome::Unchanged {
            continue;
        }
        let prior = Prior::of(outcome);
        all.extend(reconcile_record(
            g,
            &new.record,
            version,
            &new.plan,
            prior,
            None,
            false,
        )?);
        for entry in &new.enqueue {
            let mut entry = entry.clone();
            entry.version = version;
            g.enqueue(&entry)?;
        }
    }
    for item in &job.items {
        let (agency, record_id) = (&item.record.source.agency, &item.record.source.record_id);
        let current = g.archive.head(g.store, agency, record_id)?;
        if current.as_ref().map(|h| h.version) != Some(item.version) {
            // A newer version arrived after this plan was made, possibly under other rules or
            // another standing: check the record again at the next timer tick.
            g.archive
                .writes
                .push((timer_key(g.now, agency, record_id), b"{}".to_vec()));
            continue;
        }
        all.extend(reconcile_record(
            g,
            &item.record,
            item.version,
            &item.plan,
            Prior::Stored,
            None,
            !job.marks.is_empty(),
        )?);
    }
    Ok(all)
}
