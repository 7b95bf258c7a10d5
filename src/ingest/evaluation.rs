//! HTTP face of credit evaluation: the authorized query (GD Art. 21) and the yearly publication
//! (LS Art. 27). The rules are in `crate::evaluation`; this maps requests and errors.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Request, Response, StatusCode};
use serde_json::{json, Map};

use super::respond::{json_response, ApiError};
use super::App;
use crate::audit::AuditEvent;
use crate::evaluation::engine::EvaluationError;
use crate::exchange::ApplyJob;
use crate::identity::Agency;
use crate::telemetry::events;

type Resp = Response<Full<Bytes>>;

fn evaluation_error(e: EvaluationError) -> ApiError {
    match e {
        EvaluationError::Storage(_) => ApiError::StorageUnavailable,
        EvaluationError::Invalid(_) => ApiError::StorageUnavailable,
    }
}

/// `GET /v1/evaluations/{id_type}/{id}` with `Authorization: Bearer <token>`: the subject's current
/// grade and its reasons, for a caller the subject authorized. Every query, answered or refused,
/// is in the audit chain (the subject as a hash, never the token).
pub async fn authorized_query(
    app: &App,
    agency: &Agency,
    id_type: &str,
    id: &str,
    req: &Request<super::body::RequestBody>,
) -> Result<Resp, ApiError> {
    let engine = app
        .evaluation
        .as_ref()
        .ok_or(ApiError::EvaluationDisabled)?;
    if !app.authority.is_configured() {
        return Err(ApiError::AuthorizationNotConfigured);
    }
    let subject = super::routes::subject_id(app, id_type, id)?;
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let now = app.clock.now();
    let mut data = Map::new();
    data.insert("caller".into(), json!(agency.id));
    data.insert("subject".into(), json!(subject.log_safe(&app.store)));
    let claims = match app.authority.verify(token, &subject, now) {
        Ok(c) => c,
        Err(e) => {
            data.insert("outcome".into(), json!("refused"));
            data.insert("reason".into(), json!(e.to_string()));
            app.committer
                .apply(ApplyJob::new(AuditEvent::EvaluationQuery, data))
                .await
                .map_err(|_| ApiError::StorageUnavailable)?;
            events::authorized_query(&agency.id, "refused");
            return Err(ApiError::Authorization(e));
        }
    };
    let result =
        crate::evaluation::ops::current(engine, &subject, now).map_err(evaluation_error)?;
    data.insert("issuer".into(), json!(claims.iss));
    data.insert("token_id".into(), json!(claims.jti));
    data.insert(
        "outcome".into(),
        json!(if result.is_some() {
            "answered"
        } else {
            "no_result"
        }),
    );
    if let Some(r) = &result {
        data.insert(
            "record".into(),
            r.get("record").cloned().unwrap_or_default(),
        );
    }
    // Answer only once the query is in the audit chain.
    app.committer
        .apply(ApplyJob::new(AuditEvent::EvaluationQuery, data))
        .await
        .map_err(|_| ApiError::StorageUnavailable)?;
    events::authorized_query(
        &agency.id,
        if result.is_some() {
            "answered"
        } else {
            "no_result"
        },
    );
    match result {
        Some(r) => Ok(json_response(
            StatusCode::OK,
            &json!({"evaluation": r, "basis": "GD Art. 21"}),
        )),
        None => Err(ApiError::NotFound("evaluation result")),
    }
}

/// `POST /v1/evaluations/{year}/publish`: publish a finished year's results whose objection window
/// has closed (LS Arts. 24, 27), by an agency in `evaluation.publishers`.
pub async fn publish(app: &App, agency: &Agency, year: &str) -> Result<Resp, ApiError> {
    let engine = app
        .evaluation
        .as_ref()
        .ok_or(ApiError::EvaluationDisabled)?;
    if !app.config.evaluation.publishers.contains(&agency.id) {
        return Err(ApiError::PublishNotAllowed);
    }
    let year: i32 = year
        .parse()
        .ok()
        .filter(|y| (2000..=2100).contains(y))
        .ok_or_else(|| ApiError::InvalidQuery("the year must be a number like 2025".into()))?;
    let calendar = app.calendar.current();
    let report = crate::evaluation::publish::publish(
        engine,
        &app.committer,
        &calendar,
        app.objection_rules.current().longest_filing_working_days(),
        year,
        app.clock.now(),
        &agency.id,
    )
    .await
    .map_err(|e| match e {
        crate::evaluation::publish::PublishError::CycleNotEnded(_) => {
            ApiError::CycleNotEnded(e.to_string())
        }
        crate::evaluation::publish::PublishError::Evaluation(e) => evaluation_error(e),
    })?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::to_value(&report).unwrap_or_default(),
    ))
}
