//! The operator's trail in the audit chain: who asked what (method and path, never the query:
//! its values may be identifiers), with which role, and the answer's status.
//!
//! Invariant: no write is dropped: a caller whose answer is decided logs and counts a failure
//! (`gateway_audit_write_failures_total`); a caller that can still refuse gets the error.

use crate::audit::AuditEvent;
use crate::exchange::ApplyJob;
use crate::telemetry::events;

use super::Ops;

/// Record who did what in the audit chain (the path only: query values may be identifiers),
/// for a caller whose answer is already decided (a refusal, a change made): a failure is logged
/// at error level and counted (`gateway_audit_write_failures_total`), never dropped. A caller
/// that can still refuse to answer uses [`record_request`].
pub async fn audit_request(
    ops: &Ops,
    principal: &crate::operators::Principal,
    method: &hyper::Method,
    path: &str,
    status: u16,
) {
    if let Err(e) = record_request(ops, principal, method, path, status).await {
        events::audit_write_failed("operator_request", &e);
    }
}

/// [`audit_request`], returning the failure to the caller.
pub async fn record_request(
    ops: &Ops,
    principal: &crate::operators::Principal,
    method: &hyper::Method,
    path: &str,
    status: u16,
) -> Result<(), crate::store::StoreError> {
    let mut data = serde_json::Map::new();
    data.insert("operator".into(), serde_json::json!(principal.name()));
    data.insert("role".into(), serde_json::json!(principal.role()));
    data.insert("method".into(), serde_json::json!(method.as_str()));
    data.insert("path".into(), serde_json::json!(path));
    data.insert("status".into(), serde_json::json!(status));
    ops.committer
        .apply(ApplyJob::new(AuditEvent::OperatorRequest, data))
        .await
        .map(|_| ())
        .map_err(Into::into)
}
