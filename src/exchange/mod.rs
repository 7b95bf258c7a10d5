//! The exchange writer: what one group commit of exchanges stages, on the single writer thread.
//!
//! Owns: the [`Exchange`] trait every kind of durable exchange implements (an agency's batch in
//! `ingest`, a correction in `corrections`, a re-plan in `ledger`, the plain [`ApplyJob`] here),
//! the [`Group`] they stage into (archive staging, removals, outbox entries, the audit chain's
//! head as the group advances it, subjects' standing as the group changes it), and the
//! [`Writer`] that runs groups for `store`'s group commit.
//!
//! Invariants: a job sees everything earlier jobs of its group staged (a record repeated in one
//! group is its next version, not a second "version 1"); every job that changes anything appends
//! its own audit entry in the same write set; outbox entries take their sequence numbers here, so
//! queue order is commit order; a group that fails to apply leaves no trace in the writer's
//! memory (its head and standing are reloaded).
//!
//! Never does: decide what a record's platforms may hold (`ledger`), or build a receipt
//! (`ingest`). It knows the archive, the outbox and the audit chain, the floors beneath it.

use std::collections::HashSet;

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::archive::{Staging, SubjectCache};
use crate::audit::Head;
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
    fn finish(self: Box<Self>, outcome: Result<(), String>);
}

pub type Job = Box<dyn Exchange>;

/// Everything one group stages before it is applied as one write set.
pub struct Group<'a> {
    pub store: &'a Store,
    pub archive: Staging,
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
    pub fn audit(&mut self, at: &str, kind: &str, data: Map<String, Value>) -> Head {
        let (key, bytes, next) = self.head.append(at, kind, data);
        self.archive.writes.push((key, bytes));
        self.head = next;
        self.head.clone()
    }

    /// Append a typed event (a struct serialized as a JSON object) to the audit chain.
    pub fn audit_event<E: serde::Serialize>(&mut self, at: &str, kind: &str, event: &E) -> Head {
        let data = match serde_json::to_value(event) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        self.audit(at, kind, data)
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

    fn finish(job: Job, outcome: Result<(), String>) {
        job.finish(outcome);
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
        make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Job,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner.send(make(reply)).await?;
        match answer.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(message)) => Err(StoreError::CommitFailed(message)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// Apply writes and removals with their audit entry, durably.
    pub async fn apply(
        &self,
        kind: &str,
        data: Map<String, Value>,
        writes: Vec<(String, Vec<u8>)>,
        removes: Vec<String>,
        enqueue: Vec<Entry>,
    ) -> Result<Head, StoreError> {
        let kind = kind.to_string();
        self.submit(|reply| {
            Box::new(ApplyJob {
                kind,
                data,
                writes,
                removes,
                enqueue,
                reply: Some(reply),
                head: None,
            })
        })
        .await
    }
}

/// Writes recorded in the audit chain as one entry of `kind`.
pub struct ApplyJob {
    pub kind: String,
    pub data: Map<String, Value>,
    pub writes: Vec<(String, Vec<u8>)>,
    pub removes: Vec<String>,
    /// Outbox entries, given their sequence numbers when the job is staged.
    pub enqueue: Vec<Entry>,
    pub reply: Option<oneshot::Sender<Result<Head, String>>>,
    head: Option<Head>,
}

impl Exchange for ApplyJob {
    fn stage(&mut self, g: &mut Group<'_>) -> Result<(), StoreError> {
        g.archive.writes.extend(self.writes.iter().cloned());
        for entry in &self.enqueue {
            g.enqueue(entry)?;
        }
        g.removes.extend(self.removes.iter().cloned());
        let at = g.at();
        self.head = Some(g.audit(&at, &self.kind, self.data.clone()));
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<(), String>) {
        answer(self.reply, outcome, self.head);
    }
}

/// Send a job's answer: what it staged once durable, or why not.
pub fn answer<T>(
    reply: Option<oneshot::Sender<Result<T, String>>>,
    outcome: Result<(), String>,
    staged: Option<T>,
) {
    let Some(reply) = reply else { return };
    let _ = reply.send(match (outcome, staged) {
        (Ok(()), Some(done)) => Ok(done),
        (Ok(()), None) => Err("the job staged nothing".into()),
        (Err(e), _) => Err(e),
    });
}
