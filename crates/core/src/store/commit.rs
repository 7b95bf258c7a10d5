//! The single writer: group commit, engine-neutral and domain-free.
//!
//! Requests queue on a bounded channel (full: senders wait, which back-pressures agencies). The
//! writer thread takes every job that is waiting and hands the group to a [`Stager`], which turns
//! it into one [`WriteSet`]; the set is applied atomically; a flusher thread then flushes once
//! for every group applied meanwhile and only then answers each job. One flush is shared by every
//! request that arrived meanwhile, and staging the next group overlaps it.
//!
//! Invariants: a job is answered `Ok` only after a flush that began after its group was applied
//! (accept = durable); a group whose apply or flush failed is answered `Err` as a whole; one
//! thread stages, so whatever a stager checks (idempotency, a hash chain) sees no race.
//!
//! Never does: know what a job means. The stager (`exchange`) does.

use std::sync::Arc;
use std::thread;

use tokio::sync::{mpsc, Notify};

use super::{Store, StoreError, WriteSet};

/// Jobs waiting beyond this make senders wait.
const QUEUE_DEPTH: usize = 1024;
/// Most jobs folded into one commit.
const MAX_GROUP: usize = 256;

/// What turns a group of jobs into writes, on the writer thread.
pub trait Stager: Send + 'static {
    type Job: Send + 'static;
    /// Stage every job of the group into `writes`; returns whether the group queued anything a
    /// waiter of [`CommitterHandle::wake`] cares about (shares to deliver), as a count.
    fn stage(
        &mut self,
        store: &Store,
        group: &mut [Self::Job],
        writes: &mut WriteSet,
    ) -> Result<usize, StoreError>;
    /// The group's writes are applied: keep what the stager learned from it.
    fn applied(&mut self);
    /// The group's writes were not applied: forget what was staged and reload from the store.
    fn abandoned(&mut self, store: &Store);
    /// Another writer (another node sharing the engine) committed since this one last did:
    /// reload whatever is kept in memory from the store before staging.
    fn refresh(&mut self, store: &Store) -> Result<(), StoreError>;
    /// Answer a job: `Ok` once its group is durable, or the error that failed its group (the
    /// stager tells its jobs what it means for them).
    fn finish(job: Self::Job, outcome: Result<(), &StoreError>);
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
pub struct CommitterHandle<J> {
    /// What the writer is doing, for the watchdog.
    pub progress: Arc<Progress>,
    tx: mpsc::Sender<J>,
    /// Woken after every durable group whose stager counted something (queued shares).
    pub wake: Arc<Notify>,
}

impl<J> Clone for CommitterHandle<J> {
    fn clone(&self) -> Self {
        Self {
            progress: self.progress.clone(),
            tx: self.tx.clone(),
            wake: self.wake.clone(),
        }
    }
}

impl<J: Send + 'static> CommitterHandle<J> {
    /// Queue a job for the writer (waits while the queue is full).
    pub async fn send(&self, job: J) -> Result<(), StoreError> {
        self.tx.send(job).await.map_err(|_| StoreError::WriterGone)
    }
}

/// The writer thread.
pub struct Committer {
    thread: Option<thread::JoinHandle<()>>,
}

impl Committer {
    /// Start the writer with its stager.
    pub fn start<S: Stager>(
        store: Store,
        stager: S,
    ) -> Result<(Committer, CommitterHandle<S::Job>), StoreError> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let wake = Arc::new(Notify::new());
        let progress = Arc::new(Progress::new());
        let (writer_wake, writer_progress) = (wake.clone(), progress.clone());
        let thread = thread::Builder::new()
            .name("commit".into())
            .spawn(move || run(store, stager, rx, writer_wake, writer_progress))
            .map_err(StoreError::Spawn)?;
        Ok((
            Committer {
                thread: Some(thread),
            },
            CommitterHandle { progress, tx, wake },
        ))
    }

    /// Wait for the writer to finish the jobs it has; it stops when every handle is dropped.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A group applied to the engine, waiting for a flush.
struct Applied<J> {
    group: Vec<J>,
    counted: usize,
    started: std::time::Instant,
}

fn run<S: Stager>(
    store: Store,
    mut stager: S,
    mut rx: mpsc::Receiver<S::Job>,
    wake: Arc<Notify>,
    progress: Arc<Progress>,
) {
    // Pipeline: while the flusher makes group N durable, this thread stages and applies group
    // N+1. A reply leaves only after a flush that started after its group was applied.
    let (to_flusher, flusher_rx) = std::sync::mpsc::sync_channel::<Applied<S::Job>>(4);
    let flusher = {
        let store = store.clone();
        let progress = progress.clone();
        thread::Builder::new()
            .name("commit-flush".into())
            .spawn(move || flush_and_reply::<S>(store, flusher_rx, wake, progress))
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
        progress.mark(&progress.applying, true);
        let mut writes = WriteSet::default();
        // Between begin and end no other writer (of any node) applies: what the stager reads,
        // checks (idempotency, the chain's head) and writes is one serial step.
        // Ended when dropped, also if staging panics: another node's writer must never wait
        // for a lock this one no longer uses.
        let turn = Turn(&store);
        let committed = store
            .begin_group()
            .and_then(|stale| {
                if stale {
                    stager.refresh(&store)
                } else {
                    Ok(())
                }
            })
            .and_then(|()| stager.stage(&store, &mut group, &mut writes))
            .and_then(|counted| store.apply(writes).map(|()| counted));
        drop(turn);
        progress.mark(&progress.applying, false);
        match committed {
            Ok(counted) => {
                stager.applied();
                let applied = Applied {
                    group,
                    counted,
                    started,
                };
                if let Err(std::sync::mpsc::SendError(applied)) = to_flusher.send(applied) {
                    // The flusher died: nothing of this group can be made durable any more,
                    // as when the writer is gone.
                    tracing::error!(
                        jobs = applied.group.len(),
                        "the flusher has stopped; these jobs are not acknowledged"
                    );
                    fail_all::<S>(applied.group, &StoreError::WriterGone);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = group.len(), "commit failed; nothing of these jobs was acknowledged");
                // What was staged is not stored: the stager continues from what is.
                stager.abandoned(&store);
                fail_all::<S>(group, &e);
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

/// The writer's turn among the writers sharing the engine, ended when dropped.
struct Turn<'a>(&'a Store);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.end_group();
    }
}

fn flush_and_reply<S: Stager>(
    store: Store,
    rx: std::sync::mpsc::Receiver<Applied<S::Job>>,
    wake: Arc<Notify>,
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
                fail_all::<S>(applied.group, &e);
            }
            continue;
        }
        let mut counted = 0;
        for applied in ready {
            metrics::histogram!("gateway_commit_seconds")
                .record(applied.started.elapsed().as_secs_f64());
            metrics::counter!("gateway_commit_groups_total").increment(1);
            counted += applied.counted;
            for job in applied.group {
                S::finish(job, Ok(()));
            }
        }
        if counted > 0 {
            metrics::counter!("gateway_outbox_enqueued_total").increment(counted as u64);
            wake.notify_waiters();
        }
    }
}

fn fail_all<S: Stager>(group: Vec<S::Job>, error: &StoreError) {
    for job in group {
        S::finish(job, Err(error));
    }
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
