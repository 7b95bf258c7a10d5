//! The agency API's mount of corrections (GD Art. 31): `POST /v1/corrections` and `GET
//! /v1/corrections`. Reads the request and answers what `corrections::agency` returns.

use hyper::header;

use hyper::{Request, StatusCode};

use super::super::body::RequestBody;
use super::super::respond::{json_response, ApiError};
use super::super::routes::{caller, json_body, query_param, Resp};
use super::super::App;
use crate::identity::Agency;
use crate::record::ValidationContext;

/// `POST /v1/corrections` (GD Art. 31): the rules are `corrections::agency`'s.
pub(in crate::ingest) async fn post_correction(
    app: &App,
    agency: &Agency,
    req: Request<RequestBody>,
) -> Result<Resp, ApiError> {
    use crate::corrections::{agency as corrections, request::Context};
    agency.check_rate().map_err(ApiError::RateLimited)?;
    if !req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
    {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/json (UTF-8)",
        });
    }
    let request = json_body(app, req).await?;
    let (calendar, router) = (app.live.calendar.current(), app.live.router.current());
    let medical_insurance = &app.config.corrections.medical_insurance_agencies;
    let ctx = Context {
        store: &app.store,
        calendar: &calendar,
        router: &router,
        destinations: &app.config.destinations,
        validation: ValidationContext {
            exceptions: app.exceptions.clone(),
            authenticated_agency: None,
            incoming: true,
        },
        medical_insurance_agencies: medical_insurance,
        working_days: app.config.corrections.working_days,
        now: app.clock.now(),
    };
    let may_correct_others =
        corrections::may_correct_others(agency.correct_others, medical_insurance, &agency.id);
    let body =
        corrections::file(ctx, &app.committer, &agency.id, may_correct_others, request).await?;
    Ok(json_response(StatusCode::ACCEPTED, &body))
}

pub(in crate::ingest) fn list_corrections(
    app: &App,
    agency: &Agency,
    query: &str,
) -> Result<Resp, ApiError> {
    let state = query_param(query, "state");
    let body = crate::corrections::agency::visible(
        &app.store,
        app.clock.now(),
        caller(agency),
        state.as_deref(),
    )?;
    Ok(json_response(StatusCode::OK, &body))
}
