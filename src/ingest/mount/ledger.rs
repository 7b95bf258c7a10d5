//! The agency API's mount of the publication ledger and of subjects' standing (LS Arts. 20,
//! 25-26): `GET /v1/ledger/records/{agency}/{record_id}`, `GET /v1/ledger/subjects/{id_type}/{id}`,
//! `POST /v1/subjects/{id_type}/{id}/exit|reentry`. Reads the path and query and answers what
//! `ledger::agency` returns.

use hyper::{Request, StatusCode};

use super::super::body::RequestBody;
use super::super::respond::{json_response, ApiError};
use super::super::routes::{json_body, percent_decode, query_param, subject_id, Resp};
use super::super::App;
use crate::identity::Agency;

/// `GET /v1/ledger/records/{agency}/{record_id}`: `ledger::agency::record_holdings`.
pub(in crate::ingest) fn ledger_record(
    app: &App,
    agency: &Agency,
    agency_id: &str,
    record_id: &str,
    query: &str,
) -> Result<Resp, ApiError> {
    let (agency_id, record_id) = (percent_decode(agency_id), percent_decode(record_id));
    let found = crate::ledger::agency::record_holdings(
        &app.store,
        app.clock.now(),
        ledger_caller(agency),
        (&agency_id, &record_id),
        query_param(query, "as_of").as_deref(),
        query_param(query, "destination").as_deref(),
    )?;
    Ok(json_response(StatusCode::OK, &found))
}

/// `GET /v1/ledger/subjects/{id_type}/{id}`: `ledger::agency::subject_holdings`.
pub(in crate::ingest) fn ledger_subject(
    app: &App,
    agency: &Agency,
    id_type: &str,
    id: &str,
    query: &str,
) -> Result<Resp, ApiError> {
    if !agency.read_archive {
        // Refused before the identifier is looked at.
        return Err(ApiError::ArchiveNotAllowed);
    }
    let subject = subject_id(app, id_type, id)?;
    let found = crate::ledger::agency::subject_holdings(
        &app.store,
        app.clock.now(),
        ledger_caller(agency),
        &subject,
        query_param(query, "as_of").as_deref(),
        query_param(query, "destination").as_deref(),
    )?;
    Ok(json_response(StatusCode::OK, &found))
}

fn ledger_caller(agency: &Agency) -> crate::ledger::agency::Caller<'_> {
    crate::ledger::agency::Caller {
        id: &agency.id,
        reads_archives: agency.read_archive,
    }
}

/// `POST /v1/subjects/{id_type}/{id}/exit|reentry` (LS Art. 20): `ledger::agency::change_standing`.
pub(in crate::ingest) async fn change_standing(
    app: &App,
    agency: &Agency,
    id_type: &str,
    id: &str,
    exit: bool,
    req: Request<RequestBody>,
) -> Result<Resp, ApiError> {
    use crate::ledger::agency::{self as ledger, Refused};
    let medical_insurance = &app.config.corrections.medical_insurance_agencies;
    if !medical_insurance.contains(&agency.id) {
        // Refused before the body is read.
        return Err(Refused::StandingNotAllowed.into());
    }
    subject_id(app, id_type, id)?;
    let request = json_body(app, req).await?;
    let ctx = crate::ledger::ops::OpContext {
        store: &app.store,
        committer: &app.committer,
        router: app.live.router.current(),
        exceptions: &app.exceptions,
        now: app.clock.now(),
        by: &agency.id,
    };
    let id = percent_decode(id);
    let done =
        ledger::change_standing(&ctx, medical_insurance, (id_type, &id), exit, request).await?;
    Ok(json_response(StatusCode::OK, &done))
}
