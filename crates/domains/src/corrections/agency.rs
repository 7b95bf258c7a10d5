//! What agencies may do with corrections through the agency API (GD Art. 31): send one (`POST
//! /v1/corrections`) and list those they sent or that concern their records (`GET
//! /v1/corrections`). The server's route checks the media type, reads the body and answers what
//! these return; who may correct whose record, and the refusals, are here.
//!
//! Never does: read a request, or decide a status outside `CorrectionError`'s `Answer`.
//!
//! Invariant: the caller is answered only once the correction, its new record version and its
//! shares are committed (`stage::commit`).

use serde_json::{json, Value};

use super::request::{prepare, Context, CorrectionError, Prepared, Request};
use super::State;
use crate::clock::rfc3339;
use crate::exchange::CommitterHandle;
use crate::telemetry::events;

/// Who may correct another agency's record: an agency so configured (`agencies.*.correct_others`)
/// and the medical-insurance platform (GD Art. 31, second clause: it forwards the corrections of
/// outside information). Reading archives is not correcting them.
pub fn may_correct_others(configured: bool, medical_insurance: &[String], caller: &str) -> bool {
    configured || medical_insurance.iter().any(|a| a == caller)
}

/// Take a correction from `caller`: stored, its shares queued ahead of ordinary traffic, its
/// deadline on the working-day calendar; answered with its status and the audit entry.
pub async fn file(
    ctx: Context<'_>,
    committer: &CommitterHandle,
    caller: &str,
    may_correct_others: bool,
    request: Request,
) -> Result<Value, CorrectionError> {
    let (store, now) = (ctx.store, ctx.now);
    let Prepared {
        correction,
        record,
        plan,
        mark,
        forward,
    } = prepare(ctx, caller, may_correct_others, request)?;
    let (stored, audit) = super::stage::commit(committer, correction, record, plan, mark, forward)
        .await
        .map_err(|e| CorrectionError::Storage(e.to_string()))?;
    events::correction_received(
        &stored.id,
        &stored.record_id,
        &stored
            .deadline
            .map(rfc3339)
            .unwrap_or_else(|| "none".into()),
        stored.destinations.len(),
    );
    if let (true, Some(d)) = (stored.deadline_provisional, stored.deadline) {
        events::deadline_provisional("correction", &stored.id, &rfc3339(d));
    }
    let status = super::status_of(store, stored, now)
        .map_err(|e| CorrectionError::Storage(e.to_string()))?;
    let mut body = serde_json::to_value(&status).unwrap_or_default();
    body["audit"] = serde_json::to_value(&audit).unwrap_or_default();
    Ok(body)
}

/// The corrections an agency sees (those it sent, those of its records, or all with archive
/// reads), optionally in one state.
pub fn visible(
    store: &crate::store::Store,
    now: time::OffsetDateTime,
    (caller, reads_archives): (&str, bool),
    state: Option<&str>,
) -> Result<Value, CorrectionError> {
    let state = match state {
        None => None,
        Some(s) => Some(State::parse(s).ok_or_else(|| CorrectionError::UnknownState(s.into()))?),
    };
    let visible: Vec<_> = super::list(store, now, state)
        .map_err(|e| CorrectionError::Storage(e.to_string()))?
        .into_iter()
        .filter(|c| {
            reads_archives || c.correction.requested_by == caller || c.correction.agency == caller
        })
        .collect();
    Ok(json!({ "corrections": visible }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Answer;

    #[test]
    fn the_medical_insurance_platform_and_configured_agencies_correct_others() {
        let mi = vec!["medical_insurance".to_string()];
        assert!(may_correct_others(false, &mi, "medical_insurance"));
        assert!(may_correct_others(true, &mi, "court"));
        assert!(!may_correct_others(false, &mi, "tax"));
    }

    #[test]
    fn an_unknown_state_is_the_callers_to_fix() {
        let (store, _) = crate::store::memory::store();
        let e = visible(
            &store,
            time::OffsetDateTime::UNIX_EPOCH,
            ("tax", false),
            Some("lost"),
        )
        .unwrap_err();
        assert_eq!(e.code(), "bad_correction");
        assert_eq!(e.status(), http::StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message().contains("no_platform"));
    }
}
