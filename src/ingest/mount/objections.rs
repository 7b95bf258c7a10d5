//! The agency API's mount of objections (GD Arts. 32-34; LS Arts. 21-23): `POST /v1/objections`,
//! `GET /v1/objections[/{id}]`, `POST /v1/objections/{id}/resolve|review`. Reads the request
//! and answers what `objections::agency` returns; who may take each step is asked there.

use hyper::{Request, StatusCode};

use super::super::body::RequestBody;
use super::super::respond::{json_response, ApiError};
use super::super::routes::{caller, json_body, query_param, Resp};
use super::super::App;
use crate::identity::Agency;

fn objection_context(
    app: &App,
    calendar: std::sync::Arc<crate::calendar::Calendar>,
) -> crate::objections::flow::Context<'_> {
    crate::objections::flow::Context {
        store: &app.store,
        committer: &app.committer,
        router: app.live.router.current(),
        calendar,
        rules: app.live.objections.current(),
        exceptions: &app.exceptions,
        destinations: &app.config.destinations,
        now: app.clock.now(),
    }
}

/// The parties of objections (`objections::agency`), from the configuration.
fn objection_parties(app: &App) -> crate::objections::agency::Parties<'_> {
    crate::objections::agency::Parties {
        medical_insurance: &app.config.corrections.medical_insurance_agencies,
        forwarders: &app.config.objections.forwarders,
    }
}

/// `POST /v1/objections` (GD Arts. 32-33; LS Arts. 21, 23).
pub(in crate::ingest) async fn file_objection(
    app: &App,
    agency: &Agency,
    req: Request<RequestBody>,
) -> Result<Resp, ApiError> {
    agency.check_rate().map_err(ApiError::RateLimited)?;
    let parties = objection_parties(app);
    parties.admit_filer(&agency.id)?;
    let request = json_body(app, req).await?;
    let ctx = objection_context(app, app.live.calendar.current());
    let body = parties.file(&ctx, &agency.id, request).await?;
    Ok(json_response(StatusCode::CREATED, &body))
}

pub(in crate::ingest) fn list_objections(
    app: &App,
    agency: &Agency,
    query: &str,
) -> Result<Resp, ApiError> {
    let state = query_param(query, "state");
    let body = objection_parties(app).list(
        &app.store,
        app.clock.now(),
        caller(agency),
        state.as_deref(),
    )?;
    Ok(json_response(StatusCode::OK, &body))
}

pub(in crate::ingest) fn show_objection(
    app: &App,
    agency: &Agency,
    id: &str,
) -> Result<Resp, ApiError> {
    let body = objection_parties(app).show(&app.store, app.clock.now(), caller(agency), id)?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v1/objections/{id}/resolve`, by the agency that provided the information (LS Art. 23;
/// GD Art. 31): `objections::agency::resolve`, the same step as at the console.
pub(in crate::ingest) async fn resolve_objection(
    app: &App,
    agency: &Agency,
    id: &str,
    req: Request<RequestBody>,
) -> Result<Resp, ApiError> {
    use crate::objections::casework::Resolver;
    agency.check_rate().map_err(ApiError::RateLimited)?;
    let request = json_body(app, req).await?;
    let medical_insurance = &app.config.corrections.medical_insurance_agencies;
    let may_correct_others = crate::corrections::agency::may_correct_others(
        agency.correct_others,
        medical_insurance,
        &agency.id,
    );
    let ctx = objection_context(app, app.live.calendar.current());
    let resolver = Resolver {
        destinations: &app.config.destinations,
        medical_insurance_agencies: medical_insurance,
        evaluation_agency: &app.config.evaluation.agency,
        working_days: app.config.corrections.working_days,
    };
    let body = crate::objections::agency::resolve(
        &ctx,
        &resolver,
        (&agency.id, may_correct_others),
        id,
        request,
    )
    .await?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v1/objections/{id}/review`: review by the level above (复核, GD Art. 34).
pub(in crate::ingest) async fn review_objection(
    app: &App,
    agency: &Agency,
    id: &str,
    req: Request<RequestBody>,
) -> Result<Resp, ApiError> {
    let parties = objection_parties(app);
    parties.admit_review(&agency.id)?;
    let request = json_body(app, req).await?;
    let ctx = objection_context(app, app.live.calendar.current());
    let body = parties.review(&ctx, &agency.id, id, request).await?;
    Ok(json_response(StatusCode::OK, &body))
}
