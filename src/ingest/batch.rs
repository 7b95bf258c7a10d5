//! An agency's batch as one durable exchange: every accepted record staged in the archive and
//! reconciled with the publication ledger, one `batch_received` audit entry, and the receipt,
//! all in one write set (accept = durable).
//!
//! The audit entry lists every accepted record and the rejected ones as the receipt does (the
//! first `ingest.max_listed_rejections`, the rest counted by field and reason), so one entry is
//! bounded by the configuration (issue #31).

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::receipt::{AcceptedRecord, FilePart, NotListed, Receipt, Rejected};
use crate::archive::Outcome;
use crate::audit::AuditEvent;
use crate::exchange::{answer, CommitterHandle, Exchange, Group, WriteError};
use crate::ledger::stage::{reconcile_record, Prior};
use crate::ledger::Action;
use crate::record::CanonicalRecord;
use crate::sharing::{FilterReport, Plan};
use crate::store::{to_bytes, StoreError};

/// One accepted record and what the platforms may hold of it, acted on when it is new or a new
/// version.
pub struct AcceptedInput {
    pub index: usize,
    pub record: CanonicalRecord,
    /// The record hashed and protected for the archive before the writer (it stays out of the
    /// writer's thread).
    pub prepared: crate::archive::Prepared,
    pub plan: Plan,
}

/// One batch to make durable.
pub struct BatchJob {
    pub receipt_id: String,
    pub agency: String,
    pub mapping: String,
    pub received_at: time::OffsetDateTime,
    pub body_sha256: String,
    pub total: usize,
    pub accepted: Vec<AcceptedInput>,
    /// The rejected records: the first listed, the others counted (`ingest.max_listed_rejections`).
    pub rejected: Rejected,
    /// What the disclosure filter withheld or masked (rule and field names only), for the audit.
    pub filter: FilterReport,
    /// The file this batch is a part of (`POST /v1/files`), with its SHA-256.
    pub file: Option<FilePart>,
}

/// Store a batch and answer its receipt once durable.
pub async fn commit(handle: &CommitterHandle, job: BatchJob) -> Result<Receipt, StoreError> {
    handle
        .submit(|reply| {
            Box::new(Batch {
                job,
                reply: Some(reply),
                receipt: None,
            })
        })
        .await
        .map_err(StoreError::from)
}

struct Batch {
    job: BatchJob,
    reply: Option<oneshot::Sender<Result<Receipt, WriteError>>>,
    receipt: Option<Receipt>,
}

impl Exchange for Batch {
    fn records(&self, store: &crate::store::Store) -> Vec<crate::archive::Incoming> {
        self.job
            .accepted
            .iter()
            .map(|a| crate::archive::Incoming::of(&a.record, store))
            .collect()
    }

    fn stage(&mut self, g: &mut Group<'_>) -> Result<(), StoreError> {
        self.receipt = Some(stage_batch(g, &self.job)?);
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<(), WriteError>) {
        answer(self.reply, outcome, self.receipt);
    }
}

/// The audit entry of a batch: counts, each record's outcome, what the filter withheld or
/// masked (rule and field names only: never a value).
#[derive(Serialize)]
struct BatchReceived<'a> {
    receipt_id: &'a str,
    agency: &'a str,
    mapping: &'a str,
    body_sha256: &'a str,
    total: usize,
    accepted: usize,
    new: usize,
    updated: usize,
    unchanged: usize,
    rejected: usize,
    shares_queued: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    withdrawals_queued: Vec<Value>,
    /// Records that changed subject with this batch (a corrected attribution): from which
    /// archive to which (archive keys: a person's is the keyed hash, never the number).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    moved: Vec<Value>,
    records: Vec<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rejected_not_listed: Vec<NotListed>,
    #[serde(skip_serializing_if = "Option::is_none")]
    withheld: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    masked: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a FilePart>,
}

fn stage_batch(g: &mut Group<'_>, job: &BatchJob) -> Result<Receipt, StoreError> {
    let mut accepted = Vec::with_capacity(job.accepted.len());
    let (mut new, mut updated, mut unchanged) = (0usize, 0usize, 0usize);
    let (mut shares_queued, mut withdrawals) = (0usize, Vec::new());
    let mut moved = Vec::new();
    for input in &job.accepted {
        let record = &input.record;
        let (outcome, version, previous) = g.archive.stage(
            g.store,
            g.subjects,
            record,
            &input.prepared,
            &job.receipt_id,
            job.received_at,
            true,
        )?;
        if let Some(prev) = previous.as_ref() {
            let to = record.subject.id.archive_key(g.store);
            if prev.subject != to {
                moved.push(json!({
                    "record_id": record.source.record_id,
                    "version": version,
                    "from": prev.subject,
                    "to": to,
                }));
            }
        }
        match outcome {
            Outcome::New => new += 1,
            Outcome::Updated => updated += 1,
            Outcome::Unchanged => unchanged += 1,
        }
        if outcome != Outcome::Unchanged {
            let prior = Prior::of(outcome);
            for q in reconcile_record(g, record, version, &input.plan, prior, None, false)? {
                match q.action {
                    Action::Publish => shares_queued += 1,
                    Action::Withdraw => withdrawals.push(json!({
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
    let filtered = !job.filter.withheld.is_empty() || !job.filter.masked.is_empty();
    let event = BatchReceived {
        receipt_id: &job.receipt_id,
        agency: &job.agency,
        mapping: &job.mapping,
        body_sha256: &job.body_sha256,
        total: job.total,
        accepted: accepted.len(),
        new,
        updated,
        unchanged,
        rejected: job.rejected.total,
        shares_queued,
        withdrawals_queued: withdrawals,
        moved,
        records: accepted
            .iter()
            .map(|a| json!({"index": a.index, "record_id": a.record_id, "outcome": a.outcome, "version": a.version}))
            .chain(job.rejected.listed.iter().map(|r| {
                let mut entry = json!({"index": r.index, "record_id": r.record_id, "outcome": "rejected", "field": r.field});
                if let Some(row) = r.row {
                    entry["row"] = json!(row);
                }
                entry
            }))
            .collect(),
        rejected_not_listed: job.rejected.not_listed(),
        withheld: filtered.then(|| {
            job.filter
                .withheld
                .iter()
                .map(|(d, c, r)| json!({"destination": d, "channel": c, "rule": r}))
                .collect()
        }),
        masked: filtered.then(|| {
            job.filter
                .masked
                .iter()
                .map(|(d, c, f, r)| json!({"destination": d, "channel": c, "field": f, "rule": r}))
                .collect()
        }),
        file: job.file.as_ref(),
    };
    let at = crate::clock::rfc3339(job.received_at);
    let head = g.audit_event(&at, AuditEvent::BatchReceived, &event)?;
    let mut receipt = Receipt {
        receipt_id: job.receipt_id.clone(),
        agency: job.agency.clone(),
        mapping: job.mapping.clone(),
        received_at: job.received_at,
        total: job.total,
        accepted: accepted.len(),
        new,
        updated,
        unchanged,
        rejected_count: job.rejected.total,
        rejected: job.rejected.listed.clone(),
        rejected_not_listed: job.rejected.not_listed(),
        records: accepted,
        file: job.file.clone(),
        audit: head,
        signature: None,
    };
    receipt
        .sign(g.store.keys())
        .map_err(|e| StoreError::CommitFailed(format!("cannot sign the receipt: {e}")))?;
    g.archive.writes.push((
        super::receipt::receipt_key(&job.receipt_id),
        to_bytes(&receipt),
    ));
    Ok(receipt)
}
