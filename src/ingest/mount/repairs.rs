//! The agency API's mount of credit repair (GD Arts. 35-39; LS Arts. 36-42): `POST /v1/repairs`,
//! `GET /v1/repairs[/{id}]`, `POST /v1/repairs/{id}/decide|extend|commitment-broken`. Reads the
//! request and answers what `repairs::agency` returns.

use hyper::{Request, StatusCode};

use super::super::body::RequestBody;
use super::super::respond::{json_response, ApiError};
use super::super::routes::{caller, json_body, query_param, Resp};
use super::super::App;
use crate::identity::Agency;

fn repair_context(
    app: &App,
    calendar: std::sync::Arc<crate::calendar::Calendar>,
) -> crate::repairs::flow::Context<'_> {
    crate::repairs::flow::Context {
        store: &app.store,
        committer: &app.committer,
        router: app.live.router.current(),
        calendar,
        rules: app.live.repairs.current(),
        exceptions: &app.exceptions,
        destinations: &app.config.destinations,
        now: app.clock.now(),
    }
}

/// The medical-insurance platform(s), which apply for repairs and correct any agency's record.
fn applicants(app: &App) -> crate::repairs::agency::Applicants<'_> {
    crate::repairs::agency::Applicants(&app.config.corrections.medical_insurance_agencies)
}

/// `POST /v1/repairs`: the medical-insurance platform applies on the subject's behalf (GD Art.
/// 36; LS Art. 39).
pub(in crate::ingest) async fn apply_repair(
    app: &App,
    agency: &Agency,
    req: Request<RequestBody>,
) -> Result<Resp, ApiError> {
    agency.check_rate().map_err(ApiError::RateLimited)?;
    let applicants = applicants(app);
    applicants.admit(&agency.id)?;
    let request = json_body(app, req).await?;
    let ctx = repair_context(app, app.live.calendar.current());
    let body = applicants.apply(&ctx, &agency.id, request).await?;
    Ok(json_response(StatusCode::CREATED, &body))
}

pub(in crate::ingest) fn list_repairs(
    app: &App,
    agency: &Agency,
    query: &str,
) -> Result<Resp, ApiError> {
    let state = query_param(query, "state");
    let body = applicants(app).list(
        &app.store,
        app.clock.now(),
        caller(agency),
        state.as_deref(),
    )?;
    Ok(json_response(StatusCode::OK, &body))
}

pub(in crate::ingest) fn show_repair(
    app: &App,
    agency: &Agency,
    id: &str,
) -> Result<Resp, ApiError> {
    let body = applicants(app).show(&app.store, app.clock.now(), caller(agency), id)?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v1/repairs/{id}/decide` by the agency that made the finding (LS Art. 40).
pub(in crate::ingest) async fn decide_repair(
    app: &App,
    agency: &Agency,
    id: &str,
    req: Request<RequestBody>,
) -> Result<Resp, ApiError> {
    agency.check_rate().map_err(ApiError::RateLimited)?;
    let request = json_body(app, req).await?;
    let ctx = repair_context(app, app.live.calendar.current());
    let body = crate::repairs::agency::decide(&ctx, &agency.id, id, request).await?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v1/repairs/{id}/extend {"reason"}`: a complex case, at most 30 working days (LS Art. 40).
pub(in crate::ingest) async fn extend_repair(
    app: &App,
    agency: &Agency,
    id: &str,
    req: Request<RequestBody>,
) -> Result<Resp, ApiError> {
    let request = json_body(app, req).await?;
    let ctx = repair_context(app, app.live.calendar.current());
    let body = crate::repairs::agency::extend(&ctx, &agency.id, id, request).await?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v1/repairs/{id}/commitment-broken {"reason", "found_on"}` (LS Art. 41).
pub(in crate::ingest) async fn commitment_broken(
    app: &App,
    agency: &Agency,
    id: &str,
    req: Request<RequestBody>,
) -> Result<Resp, ApiError> {
    agency.check_rate().map_err(ApiError::RateLimited)?;
    let request = json_body(app, req).await?;
    let ctx = repair_context(app, app.live.calendar.current());
    let body = crate::repairs::agency::commitment_broken(&ctx, &agency.id, id, request).await?;
    Ok(json_response(StatusCode::OK, &body))
}
