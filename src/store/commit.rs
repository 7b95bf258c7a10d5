//! The single writer: group commit of accepted batches.
//!
//! Requests queue on a bounded channel (full: senders wait, which back-pressures agencies). The
//! writer thread takes every job that is waiting, stages all of them in one sled batch (archive
//! versions, audit entries, receipts), applies it atomically, flushes once, and only then answers
//! each job. One flush is shared by every request that arrived meanwhile.

use std::thread;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use super::{to_bytes, Store, StoreError};
use crate::archive::Staging;
use crate::audit::Head;
use crate::ingest::receipt::{AcceptedRecord, Receipt};
use crate::mapping::Rejection;
use crate::record::CanonicalRecord;

/// Jobs waiting beyond this make senders wait.
const QUEUE_DEPTH: usize = 1024;
/// Most jobs folded into one commit.
const MAX_GROUP: usize = 256;

/// One batch to make durable.
pub struct CommitJob {
    pub receipt_id: String,
    pub agency: String,
    pub mapping: String,
    pub received_at: String,
    pub body_sha256: String,
    pub total: usize,
    pub accepted: Vec<(usize, CanonicalRecord)>,
    pub rejected: Vec<Rejection>,
    pub reply: oneshot::Sender<Result<Receipt, String>>,
}

/// Cheap handle to submit jobs.
#[derive(Clone)]
pub struct CommitterHandle {
    tx: mpsc::Sender<CommitJob>,
}

impl CommitterHandle {
    /// Submit and wait until the job is durable.
    pub async fn commit(&self, job_without_reply: impl FnOnce(oneshot::Sender<Result<Receipt, String>>) -> CommitJob) -> Result<Receipt, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(job_without_reply(tx)).await.map_err(|_| StoreError::WriterGone)?;
        match rx.await {
            Ok(Ok(receipt)) => Ok(receipt),
            Ok(Err(message)) => Err(StoreError::Corrupt { key: "commit".into(), message }),
            Err(_) => Err(StoreError::WriterGone),
        }
    }
}

/// The writer thread.
pub struct Committer {
    thread: Option<thread::JoinHandle<()>>,
}

impl Committer {
    pub fn start(store: Store) -> Result<(Committer, CommitterHandle), StoreError> {
        let head = Head::load(&store)?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let thread = thread::Builder::new()
            .name("commit".into())
            .spawn(move || run(store, head, rx))
            .map_err(|e| StoreError::Corrupt { key: "commit thread".into(), message: e.to_string() })?;
        Ok((Committer { thread: Some(thread) }, CommitterHandle { tx }))
    }

    /// Wait for the writer to finish the jobs it has; it stops when every handle is dropped.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(store: Store, mut head: Head, mut rx: mpsc::Receiver<CommitJob>) {
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        match commit_group(&store, &head, &group) {
            Ok((new_head, receipts)) => {
                head = new_head;
                metrics::histogram!("gateway_commit_seconds").record(started.elapsed().as_secs_f64());
                metrics::counter!("gateway_commit_groups_total").increment(1);
                for (job, receipt) in group.into_iter().zip(receipts) {
                    let _ = job.reply.send(Ok(receipt));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = group.len(), "commit failed; batches not acknowledged");
                // What was staged is not on disk: reload the head so the chain continues from
                // what is stored.
                head = Head::load(&store).unwrap_or(head);
                for job in group {
                    let _ = job.reply.send(Err(e.to_string()));
                }
            }
        }
    }
    if let Err(e) = store.flush() {
        tracing::error!(error = %e, "final flush failed");
    }
}

fn commit_group(store: &Store, head: &Head, group: &[CommitJob]) -> Result<(Head, Vec<Receipt>), StoreError> {
    let mut staging = Staging::default();
    let mut head = head.clone();
    let mut receipts = Vec::with_capacity(group.len());
    for job in group {
        let mut accepted = Vec::with_capacity(job.accepted.len());
        let (mut new, mut updated, mut unchanged) = (0usize, 0usize, 0usize);
        for (index, record) in &job.accepted {
            let (outcome, version) = staging.stage(store, record, &job.receipt_id, &job.received_at)?;
            match outcome {
                crate::archive::Outcome::New => new += 1,
                crate::archive::Outcome::Updated => updated += 1,
                crate::archive::Outcome::Unchanged => unchanged += 1,
            }
            accepted.push(AcceptedRecord { index: *index, record_id: record.source.record_id.clone(), outcome, version });
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
        let (key, bytes, next) = head.append(&job.received_at, "batch_received", data);
        staging.writes.push((key, bytes));
        head = next;
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
        staging.writes.push((format!("rcp/{}", job.receipt_id), to_bytes(&receipt)));
        receipts.push(receipt);
    }
    let mut batch = sled::Batch::default();
    for (k, v) in staging.writes {
        batch.insert(k.into_bytes(), v);
    }
    store.apply(batch)?;
    store.flush()?;
    Ok((head, receipts))
}
