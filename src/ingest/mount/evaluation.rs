//! HTTP face of credit evaluation: the authorized query (GD Art. 21) and the yearly publication
//! (LS Art. 27). Who may ask, the audit of every query and the refusals are
//! `crate::evaluation::agency`'s; this reads the path and the bearer token and answers.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Request, Response, StatusCode};

use super::super::respond::{json_response, ApiError};
use super::super::App;
use crate::evaluation::agency::Desk;
use crate::identity::Agency;

type Resp = Response<Full<Bytes>>;

fn desk(app: &App) -> Desk<'_> {
    Desk {
        engine: app.evaluation.as_ref(),
        authority: &app.authority,
        committer: &app.committer,
        now: app.clock.now(),
    }
}

/// `GET /v1/evaluations/{id_type}/{id}` with `Authorization: Bearer <token>`.
pub async fn authorized_query(
    app: &App,
    agency: &Agency,
    id_type: &str,
    id: &str,
    req: &Request<super::super::body::RequestBody>,
) -> Result<Resp, ApiError> {
    let desk = desk(app);
    // Whether the gateway answers such queries at all is said before the path is looked at.
    desk.admit_query()?;
    let subject = super::super::routes::subject_id(app, id_type, id)?;
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let body = desk.authorized_query(&agency.id, &subject, token).await?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v1/evaluations/{year}/publish` (LS Arts. 24, 27).
pub async fn publish(app: &App, agency: &Agency, year: &str) -> Result<Resp, ApiError> {
    let calendar = app.live.calendar.current();
    let body = desk(app)
        .publish(
            &app.config.evaluation.publishers,
            &calendar,
            app.live.objections.current().longest_filing_working_days(),
            &agency.id,
            year,
        )
        .await?;
    Ok(json_response(StatusCode::OK, &body))
}
