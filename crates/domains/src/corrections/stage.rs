//! A correction (GD Art. 31) as one durable exchange: the corrected record's new version, the
//! ledger's correction shares, the forwarded shares, the tracking entry and the
//! `correction_received` audit entry, in one write set.

use serde::Serialize;
use tokio::sync::oneshot;

use super::Correction;
use crate::audit::AuditEvent;
use crate::audit::Head;
use crate::exchange::{answer, CommitterHandle, Exchange, Group, WriteError};
use crate::ledger::stage::{reconcile_record, Prior};
use crate::ledger::{CorrectionMark, Queued};
use crate::outbox::Entry;
use crate::record::CanonicalRecord;
use crate::sharing::Plan;
use crate::store::{to_bytes, StoreError};

/// Store a correction and queue its shares, durably; answers the correction as stored (its
/// version and destinations filled in) and the audit head.
pub async fn commit(
    handle: &CommitterHandle,
    correction: Correction,
    record: CanonicalRecord,
    plan: Plan,
    mark: CorrectionMark,
    forward: Vec<Entry>,
) -> Result<(Correction, Head), StoreError> {
    handle
        .submit(|reply| {
            Box::new(Correcting {
                canonical: record.canonical_bytes(),
                correction,
                record,
                plan,
                mark,
                forward,
                reply: Some(reply),
                done: None,
            })
        })
        .await
        .map_err(StoreError::from)
}

struct Correcting {
    correction: Correction,
    record: CanonicalRecord,
    canonical: Vec<u8>,
    /// What the credit platforms may hold of the corrected record now.
    plan: Plan,
    mark: CorrectionMark,
    /// Correction shares outside the publication ledger (to the medical-insurance platform).
    forward: Vec<Entry>,
    reply: Option<oneshot::Sender<Result<(Correction, Head), WriteError>>>,
    done: Option<(Correction, Head)>,
}

/// The audit entry of a correction.
#[derive(Serialize)]
struct CorrectionReceived<'a> {
    correction_id: &'a str,
    kind: super::CorrectionKind,
    agency: &'a str,
    record_id: &'a str,
    version: u32,
    requested_by: &'a str,
    found_at: String,
    deadline: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deadline_provisional: bool,
    destinations: &'a [String],
    changes: &'a [Queued],
}

impl Exchange for Correcting {
    fn stage(&mut self, g: &mut Group<'_>) -> Result<(), StoreError> {
        let mut correction = self.correction.clone();
        let record = &self.record;
        let received_at = crate::clock::rfc3339(correction.received_at);
        let (_, version, _) = g.archive.stage(
            g.store,
            g.subjects,
            record,
            &crate::archive::Prepared::new(g.store, &self.canonical)?,
            &correction.id,
            correction.received_at,
            true,
        )?;
        correction.version = version;
        let queued = reconcile_record(
            g,
            record,
            version,
            &self.plan,
            Prior::Stored,
            Some(&self.mark),
            false,
        )?;
        let mut destinations: Vec<String> = queued.iter().map(|q| q.destination.clone()).collect();
        for entry in &self.forward {
            let mut entry = entry.clone();
            entry.version = version;
            g.enqueue(&entry)?;
            destinations.push(entry.destination.clone());
        }
        destinations.sort();
        destinations.dedup();
        correction.destinations = destinations;
        g.archive
            .writes
            .push((super::correction_key(&correction.id), to_bytes(&correction)));
        let event = CorrectionReceived {
            correction_id: &correction.id,
            kind: correction.kind,
            agency: &correction.agency,
            record_id: &correction.record_id,
            version,
            requested_by: &correction.requested_by,
            found_at: crate::clock::rfc3339(correction.found_at),
            deadline: correction.deadline.map(crate::clock::rfc3339),
            deadline_provisional: correction.deadline_provisional,
            destinations: &correction.destinations,
            changes: &queued,
        };
        let head = g.audit_event(&received_at, AuditEvent::CorrectionReceived, &event)?;
        self.done = Some((correction, head));
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<(), WriteError>) {
        answer(self.reply, outcome, self.done);
    }
}
