//! Request routing and the handlers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use serde_json::json;

use super::body::RequestBody;
use super::respond::{json_response, ApiError};
use super::App;
use crate::answer::Answer;
use crate::identity::Agency;
use crate::subject::{IdType, SubjectId};
use crate::telemetry::events;

pub(super) type Resp = Response<Full<Bytes>>;

/// The per-connection service: the agency is fixed by the connection's client certificate.
#[derive(Clone)]
pub(super) struct ApiService {
    app: Arc<App>,
    agency: Option<Arc<Agency>>,
}

pub(super) fn service(app: Arc<App>, agency: Option<Arc<Agency>>, _peer: SocketAddr) -> ApiService {
    ApiService { app, agency }
}

impl hyper::service::Service<Request<Incoming>> for ApiService {
    type Response = Resp;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let app = self.app.clone();
        let agency = self.agency.clone();
        Box::pin(async move {
            let agency_id = agency
                .as_ref()
                .map(|a| a.id.clone())
                .unwrap_or_else(|| "unknown".into());
            let server = &app.config.server;
            let (max_body, body_time) = (
                server.max_body_bytes,
                Duration::from_millis(server.body_read_timeout_ms),
            );
            let (req, leftover) = super::body::split(req);
            let result = match check_head(&req) {
                Err(e) => Err(e),
                Ok(()) => {
                    let app = app.clone();
                    super::off_runtime(async move { route(&app, agency, req).await })
                        .await
                        .unwrap_or(Err(ApiError::StorageUnavailable))
                }
            };
            // What the handler left unread is read and discarded after the answer, so an early
            // refusal reaches clients whole (see `body`): HTTP/2 streams are otherwise reset, and
            // HTTP/1.1 clients that write the whole body before reading (hyper's) meet a closed
            // socket. A drain never outlasts `DRAIN_AT_MOST`: a client trickling a body to a
            // refusal holds its connection no longer than that.
            leftover.drain(max_body, body_time.min(super::body::DRAIN_AT_MOST));
            Ok(result.unwrap_or_else(|e| {
                events::request_refused(&agency_id, e.code(), e.status().as_u16());
                e.into_response()
            }))
        })
    }
}

/// Request heads over these get `431 headers_too_large` from us, with the JSON error. hyper's own
/// limits, where it answers `431` itself with no body (HTTP/1.1) or h2 refuses the stream, are
/// set to twice these in `serve`, so a head between the two is answered here.
pub(super) const MAX_HEADER_BYTES: usize = 64 * 1024;
pub(super) const MAX_HEADER_FIELDS: usize = 100;

/// The request head within [`MAX_HEADER_BYTES`] (counted as HTTP/2 does, RFC 9113 6.5.2: name,
/// value and 32 per field, whatever the protocol) and [`MAX_HEADER_FIELDS`].
fn check_head(req: &Request<RequestBody>) -> Result<(), ApiError> {
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum::<usize>()
        + req.uri().to_string().len();
    if bytes > MAX_HEADER_BYTES || headers.len() > MAX_HEADER_FIELDS {
        return Err(ApiError::HeadersTooLarge {
            max_bytes: MAX_HEADER_BYTES,
            max_fields: MAX_HEADER_FIELDS,
        });
    }
    Ok(())
}

async fn route(
    app: &App,
    agency: Option<Arc<Agency>>,
    req: Request<RequestBody>,
) -> Result<Resp, ApiError> {
    let agency = agency.ok_or(ApiError::UnknownAgency)?;
    // Below the free-space reserve nothing new is written: refused before anything is read.
    if req.method() == Method::POST && app.disk.is_low() {
        return Err(ApiError::StorageFull);
    }
    // A commit stuck past its bound: new work would only pile up behind it.
    let stuck_bound = Duration::from_millis(app.config.storage.commit_stuck_ms);
    if req.method() == Method::POST
        && app
            .committer
            .progress
            .stuck_for()
            .is_some_and(|d| d > stuck_bound)
    {
        return Err(ApiError::StorageUnavailable);
    }
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match (req.method(), segments.as_slice()) {
        (&Method::POST, ["v1", "records"]) => super::push::push_records(app, &agency, req).await,
        (_, ["v1", "records"]) => Err(ApiError::MethodNotAllowed),
        (&Method::POST, ["v1", "files"]) => super::files::push_file(app, &agency, req).await,
        (_, ["v1", "files"]) => Err(ApiError::MethodNotAllowed),
        (&Method::GET, ["v1", "receipts", id]) => receipt(app, &agency, id),
        (&Method::GET, ["v1", "subjects", id_type, id]) => subject(app, &agency, id_type, id),
        (&Method::POST, ["v1", "subjects", id_type, id, action @ ("exit" | "reentry")]) => {
            super::mount::ledger::change_standing(app, &agency, id_type, id, action == &"exit", req)
                .await
        }
        (&Method::POST, ["v1", "repairs"]) => {
            super::mount::repairs::apply_repair(app, &agency, req).await
        }
        (&Method::GET, ["v1", "repairs"]) => {
            super::mount::repairs::list_repairs(app, &agency, req.uri().query().unwrap_or(""))
        }
        (_, ["v1", "repairs"]) => Err(ApiError::MethodNotAllowed),
        (&Method::GET, ["v1", "repairs", id]) => {
            super::mount::repairs::show_repair(app, &agency, id)
        }
        (&Method::POST, ["v1", "repairs", id, "decide"]) => {
            super::mount::repairs::decide_repair(app, &agency, id, req).await
        }
        (&Method::POST, ["v1", "repairs", id, "extend"]) => {
            super::mount::repairs::extend_repair(app, &agency, id, req).await
        }
        (&Method::POST, ["v1", "repairs", id, "commitment-broken"]) => {
            super::mount::repairs::commitment_broken(app, &agency, id, req).await
        }
        (&Method::POST, ["v1", "objections"]) => {
            super::mount::objections::file_objection(app, &agency, req).await
        }
        (&Method::GET, ["v1", "objections"]) => {
            super::mount::objections::list_objections(app, &agency, req.uri().query().unwrap_or(""))
        }
        (_, ["v1", "objections"]) => Err(ApiError::MethodNotAllowed),
        (&Method::GET, ["v1", "objections", id]) => {
            super::mount::objections::show_objection(app, &agency, id)
        }
        (&Method::POST, ["v1", "objections", id, "resolve"]) => {
            super::mount::objections::resolve_objection(app, &agency, id, req).await
        }
        (&Method::POST, ["v1", "objections", id, "review"]) => {
            super::mount::objections::review_objection(app, &agency, id, req).await
        }
        (&Method::GET, ["v1", "ledger", "records", agency_id, record_id]) => {
            super::mount::ledger::ledger_record(
                app,
                &agency,
                agency_id,
                record_id,
                req.uri().query().unwrap_or(""),
            )
        }
        (&Method::GET, ["v1", "ledger", "subjects", id_type, id]) => {
            super::mount::ledger::ledger_subject(
                app,
                &agency,
                id_type,
                id,
                req.uri().query().unwrap_or(""),
            )
        }
        (&Method::GET, ["v1", "evaluations", id_type, id]) => {
            super::mount::evaluation::authorized_query(app, &agency, id_type, id, &req).await
        }
        (&Method::POST, ["v1", "evaluations", year, "publish"]) => {
            super::mount::evaluation::publish(app, &agency, year).await
        }
        (&Method::GET, ["v1", "mappings"]) => Ok(mappings(app, &agency)),
        (&Method::GET, ["openapi.json"]) => Ok(openapi()),
        (&Method::POST, ["v1", "corrections"]) => {
            super::mount::corrections::post_correction(app, &agency, req).await
        }
        (&Method::GET, ["v1", "corrections"]) => super::mount::corrections::list_corrections(
            app,
            &agency,
            req.uri().query().unwrap_or(""),
        ),
        (_, ["v1", "corrections"]) => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::NotFound("resource")),
    }
}

/// Read the body within the size limit and the read timeout. A declared length over the limit is
/// refused before reading anything; an undeclared one stops at the limit.
pub(super) async fn read_body(app: &App, req: Request<RequestBody>) -> Result<Bytes, ApiError> {
    let limit = app.config.server.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let limited = Limited::new(req.into_body(), limit as usize);
    let timeout = Duration::from_millis(app.config.server.body_read_timeout_ms);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(ApiError::BodyTimeout),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Ok(Err(e)) => Err(ApiError::BodyRead(e.to_string())),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The caller as the domains' agency rules read it: its id and whether it reads archives.
pub(super) fn caller(agency: &Agency) -> (&str, bool) {
    (&agency.id, agency.read_archive)
}

fn receipt(app: &App, agency: &Agency, id: &str) -> Result<Resp, ApiError> {
    let stored: Option<serde_json::Value> = app
        .store
        .get_json(&crate::ingest::receipt::receipt_key(id))
        .map_err(|_| ApiError::StorageUnavailable)?;
    match stored {
        Some(r) if r.get("agency").and_then(|a| a.as_str()) == Some(agency.id.as_str()) => {
            Ok(json_response(StatusCode::OK, &r))
        }
        _ => Err(ApiError::NotFound("receipt")),
    }
}

fn subject(app: &App, agency: &Agency, id_type: &str, id: &str) -> Result<Resp, ApiError> {
    if !agency.read_archive {
        return Err(ApiError::ArchiveNotAllowed);
    }
    let id_type =
        IdType::from_code(id_type).ok_or_else(|| ApiError::UnknownIdType(id_type.to_string()))?;
    let id = percent_decode(id);
    let subject_id = SubjectId::parse(id_type, &id, &app.exceptions)
        .map_err(|e| ApiError::InvalidSubjectId(e.to_string()))?;
    let archive = crate::archive::visible_subject(&app.store, &subject_id)
        .map_err(|_| ApiError::StorageUnavailable)?;
    events::archive_read(&agency.id, archive.is_some());
    match archive {
        Some(a) => Ok(json_response(
            StatusCode::OK,
            &serde_json::to_value(&a).unwrap_or_default(),
        )),
        None => Err(ApiError::NotFound("subject")),
    }
}

/// A JSON body as `T`, or `400 malformed_document` with the position.
pub(super) async fn json_body<T: serde::de::DeserializeOwned>(
    app: &App,
    req: Request<RequestBody>,
) -> Result<T, ApiError> {
    let body = read_body(app, req).await?;
    Ok(crate::mapping::source::parse_json_as(&body)?)
}

fn openapi() -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from_static(
        super::openapi::SPEC.as_bytes(),
    )));
    if let Ok(v) = "application/json; charset=utf-8".parse() {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// The subject identifier in a path, parsed.
pub(super) fn subject_id(app: &App, id_type: &str, id: &str) -> Result<SubjectId, ApiError> {
    let id_type =
        IdType::from_code(id_type).ok_or_else(|| ApiError::UnknownIdType(id_type.to_string()))?;
    let id = percent_decode(id);
    SubjectId::parse(id_type, &id, &app.exceptions)
        .map_err(|e| ApiError::InvalidSubjectId(e.to_string()))
}

fn mappings(app: &App, agency: &Agency) -> Resp {
    let list: Vec<_> = app
        .live
        .mappings
        .current()
        .iter()
        .filter(|m| agency.may_push(&m.id))
        .map(|m| json!({"id": m.id, "name": m.name, "format": m.format, "category": m.category.map(|c| c.code())}))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"agency": agency.id, "mappings": list}),
    )
}

/// The request's `Content-Type`: its media type (lower case) and its `charset` parameter as sent.
pub(super) fn media_type(req: &Request<RequestBody>) -> (String, Option<String>) {
    let value = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let charset = parts
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.to_string());
    (media, charset)
}

pub(super) fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
        .filter(|v| !v.is_empty())
}

/// Percent-decoding for path and query values.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
