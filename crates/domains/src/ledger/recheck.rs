//! Re-planning records already in the archive: when a timer fires (a notice window or retention
//! ends), when the rules are reloaded (SIGHUP), and when a subject exits or re-enters (LS Art. 20).
//! Reads run on blocking threads; the writer applies the difference atomically and audits it.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::archive::{self, SubjectEntry};
use crate::audit::AuditEvent;
use crate::exchange::CommitterHandle;
use crate::ledger::stage::{Reconcile, ReconcileItem, ReconcileJob};
use crate::lifecycle::Standing;
use crate::record::{validate_owned, ValidationContext};
use crate::sharing::Router;
use crate::store::{Store, StoreError};
use crate::subject::IdentifierExceptions;
use crate::telemetry::events;

/// Records re-planned per writer job.
const CHUNK: usize = 256;

/// Why a standing change was refused.
#[derive(Debug, thiserror::Error)]
pub enum StandingError {
    #[error("no subject with this identifier in the archive")]
    NotFound,
    #[error("the subject is already {0}")]
    Already(&'static str),
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
}

/// The writer's answer reads as the storage failure it was before writes were typed.
impl From<crate::exchange::WriteError> for StandingError {
    fn from(e: crate::exchange::WriteError) -> Self {
        StandingError::Storage(e.into())
    }
}

/// The subject's standing as stored.
pub fn standing_of(store: &Store, archive_key: &str) -> Result<Standing, StoreError> {
    Ok(
        match store.get_json::<SubjectEntry>(&archive::subject_key(archive_key))? {
            Some(s) if s.is_exited() => Standing::Exited,
            _ => Standing::Active,
        },
    )
}

/// Re-plan one stored record at `now`; `None` when it is gone or no longer validates.
pub fn item(
    store: &Store,
    router: &Router,
    exceptions: &IdentifierExceptions,
    agency: &str,
    record_id: &str,
    standing: Option<Standing>,
    now: OffsetDateTime,
) -> Result<Option<ReconcileItem>, StoreError> {
    let Some((head, version)) = archive::current_version(store, agency, record_id)? else {
        return Ok(None);
    };
    let json: Value =
        serde_json::from_str(version.record.get()).map_err(|e| StoreError::Corrupt {
            key: archive::record_head_key(agency, record_id),
            message: e.to_string(),
        })?;
    let ctx = ValidationContext {
        exceptions: exceptions.clone(),
        authenticated_agency: None,
        // A stored record, read again: the rules it was accepted by.
        incoming: false,
    };
    let record = match validate_owned(json, &ctx) {
        Ok(r) => r,
        Err(errs) => {
            let fields: Vec<String> = errs.into_iter().map(|e| e.field).collect();
            events::recheck_failed(
                record_id,
                &format!("no longer valid: {}", fields.join(", ")),
            );
            return Ok(None);
        }
    };
    let standing = match standing {
        Some(s) => s,
        None => standing_of(store, &head.subject)?,
    };
    let plan = router.plan(&record, standing, now);
    Ok(Some(ReconcileItem {
        record,
        version: head.version,
        plan,
    }))
}

/// Re-check every stored record against the rules in force (after a reload), in chunks, with
/// progress in the log. Returns (records checked, changes queued).
pub async fn recheck_all(
    store: Store,
    committer: CommitterHandle,
    router: Arc<Router>,
    exceptions: IdentifierExceptions,
    now: impl Fn() -> OffsetDateTime,
    cause: &'static str,
) -> Result<(usize, usize), StoreError> {
    let mut after: Option<Vec<u8>> = None;
    let (mut checked, mut changed) = (0usize, 0usize);
    loop {
        let (store2, router2, exceptions2, at) =
            (store.clone(), router.clone(), exceptions.clone(), now());
        let from = after.clone();
        let (items, last) = tokio::task::spawn_blocking(move || {
            let mut items = Vec::new();
            let mut last = None;
            // The smallest key after `k` is `k` followed by a zero byte.
            let start = match &from {
                Some(k) => [k.as_slice(), &[0u8]].concat(),
                None => b"rec/".to_vec(),
            };
            for kv in store2.range_raw(&start, None) {
                let (k, _) = kv?;
                if !k.starts_with(b"rec/") {
                    break;
                }
                last = Some(k.to_vec());
                let head = <crate::store::keys::RecordKey as crate::store::keys::Key>::decode(
                    &String::from_utf8_lossy(&k),
                );
                if let Some(crate::store::keys::RecordKey { agency, record_id }) = &head {
                    if let Some(item) =
                        item(&store2, &router2, &exceptions2, agency, record_id, None, at)?
                    {
                        items.push(item);
                    }
                }
                if items.len() >= CHUNK {
                    break;
                }
            }
            Ok::<_, StoreError>((items, last))
        })
        .await
        .map_err(|e| StoreError::CommitFailed(e.to_string()))??;
        checked += items.len();
        if !items.is_empty() {
            let mut data = Map::new();
            data.insert("cause".into(), json!(cause));
            data.insert("rules_hash".into(), json!(router.rules_hash()));
            let (queued, _) = committer
                .reconcile(ReconcileJob::new(AuditEvent::LedgerRechecked, data).items(items))
                .await?;
            crate::ledger::report_queued(cause, &queued);
            changed += queued.len();
        }
        events::recheck_progress(cause, checked, changed, last.is_none());
        match last {
            Some(k) => after = Some(k),
            None => return Ok((checked, changed)),
        }
    }
}

/// A subject leaves medical-insurance service or dies (`exited = true`), or becomes a subject
/// again: its standing is stored and every record of it re-planned in the same atomic step, so
/// every platform copy is withdrawn (exit) or what is still within its windows is shared again
/// (re-entry). LS Art. 20.
#[allow(clippy::too_many_arguments)]
pub async fn change_standing(
    store: Store,
    committer: &CommitterHandle,
    router: Arc<Router>,
    exceptions: IdentifierExceptions,
    archive_key: String,
    exited: bool,
    change: archive::StandingChange,
    now: OffsetDateTime,
) -> Result<Vec<crate::ledger::Queued>, StandingError> {
    let key = archive_key.clone();
    let (store2, router2, exceptions2) = (store.clone(), router.clone(), exceptions.clone());
    let (entry, items) = tokio::task::spawn_blocking(move || {
        let Some(mut entry) = store.get_json::<SubjectEntry>(&archive::subject_key(&key))? else {
            return Err(StandingError::NotFound);
        };
        if entry.is_exited() == exited {
            return Err(StandingError::Already(if exited {
                "exited"
            } else {
                "active"
            }));
        }
        let standing = if exited {
            Standing::Exited
        } else {
            Standing::Active
        };
        let mut items = Vec::new();
        for (agency, record_id) in archive::records_of(&store, &key)? {
            if let Some(i) = item(
                &store,
                &router,
                &exceptions,
                &agency,
                &record_id,
                Some(standing),
                now,
            )? {
                items.push(i);
            }
        }
        entry.status = if exited { archive::EXITED } else { "active" }.to_string();
        entry.updated_at = now;
        entry.standing_change = Some(change);
        Ok((entry, items))
    })
    .await
    .map_err(|e| StandingError::Storage(StoreError::CommitFailed(e.to_string())))??;
    let mut data = Map::new();
    // The subject is personal information for individuals: the chain names it by a hash.
    data.insert("subject_sha256".into(), json!(subject_hash(&archive_key)));
    data.insert(
        "standing_change".into(),
        serde_json::to_value(&entry.standing_change).unwrap_or_default(),
    );
    let mut writes = Vec::new();
    let mut removes = Vec::new();
    if exited {
        writes.push((archive::exited_key(&archive_key), b"{}".to_vec()));
    } else {
        removes.push(archive::exited_key(&archive_key));
    }
    let planned: std::collections::HashSet<(String, String)> = items
        .iter()
        .map(|i| {
            (
                i.record.source.agency.clone(),
                i.record.source.record_id.clone(),
            )
        })
        .collect();
    let kind = if exited {
        AuditEvent::SubjectExited
    } else {
        AuditEvent::SubjectReentered
    };
    let (mut queued, _) = committer
        .reconcile(
            ReconcileJob::new(kind, data)
                .items(items)
                .writes(writes)
                .removes(removes)
                .standing(archive_key.clone(), exited)
                .subject(archive_key.clone(), entry),
        )
        .await?;
    // A record first stored while this was being prepared was shared under the old standing:
    // a second pass, now that the writer knows the new one, brings it in line too.
    let key = archive_key.clone();
    let late_items = tokio::task::spawn_blocking(move || {
        let standing = if exited {
            Standing::Exited
        } else {
            Standing::Active
        };
        let mut items = Vec::new();
        for (agency, record_id) in archive::records_of(&store2, &key)? {
            if planned.contains(&(agency.clone(), record_id.clone())) {
                continue;
            }
            if let Some(i) = item(
                &store2,
                &router2,
                &exceptions2,
                &agency,
                &record_id,
                Some(standing),
                now,
            )? {
                items.push(i);
            }
        }
        Ok::<_, StoreError>(items)
    })
    .await
    .map_err(|e| StandingError::Storage(StoreError::CommitFailed(e.to_string())))??;
    if !late_items.is_empty() {
        let mut data = Map::new();
        data.insert("subject_sha256".into(), json!(subject_hash(&archive_key)));
        data.insert("pass".into(), json!("records stored meanwhile"));
        let (more, _) = committer
            .reconcile(ReconcileJob::new(kind, data).items(late_items))
            .await?;
        queued.extend(more);
    }
    Ok(queued)
}

/// sha256 of a subject's archive key: names a subject in the audit chain without its identifier.
pub fn subject_hash(archive_key: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(archive_key.as_bytes())[..16])
}

/// `POST /v1/subjects/{id_type}/{id}/exit` and `/reentry` body.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandingRequest {
    /// Exit: `left_service` (退出医保服务) or `death`. Not given for re-entry.
    #[serde(default)]
    pub reason: Option<String>,
    /// The date it took effect, YYYY-MM-DD.
    pub on: String,
    #[serde(default)]
    pub note: Option<String>,
}

/// Check a standing request: an exit names why (LS Art. 20: 退出医保服务 or death), every change
/// its date.
pub fn standing_change(
    exit: bool,
    request: StandingRequest,
    by: &str,
) -> Result<crate::archive::StandingChange, String> {
    if crate::record::parse_date(&request.on).is_none() {
        return Err("on must be the date it took effect, YYYY-MM-DD".into());
    }
    let reason = match (exit, request.reason.as_deref()) {
        (true, Some(r @ ("left_service" | "death"))) => r.to_string(),
        (true, _) => return Err("reason must be left_service or death (LS Art. 20)".into()),
        (false, None) => "reentered".to_string(),
        (false, Some(_)) => return Err("a re-entry takes no reason".into()),
    };
    Ok(crate::archive::StandingChange {
        reason,
        on: request.on,
        by: by.to_string(),
        note: request.note.unwrap_or_default(),
    })
}
