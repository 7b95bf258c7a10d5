//! Request routing and the handlers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::body::RequestBody;
use super::respond::{json_response, ApiError};
use super::App;
use crate::answer::Answer;
use crate::archive::Prepared;
use crate::identity::Agency;
use crate::ingest::batch::{AcceptedInput, BatchJob};
use crate::ingest::receipt::Rejected;
use crate::mapping::{Mapping, Normalized, SourceFormat};
use crate::record::ValidationContext;
use crate::sharing::FilterReport;
use crate::subject::{IdType, SubjectId};
use crate::telemetry::events;

type Resp = Response<Full<Bytes>>;

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
        (&Method::POST, ["v1", "records"]) => push_records(app, &agency, req).await,
        (_, ["v1", "records"]) => Err(ApiError::MethodNotAllowed),
        (&Method::POST, ["v1", "files"]) => super::files::push_file(app, &agency, req).await,
        (_, ["v1", "files"]) => Err(ApiError::MethodNotAllowed),
        (&Method::GET, ["v1", "receipts", id]) => receipt(app, &agency, id),
        (&Method::GET, ["v1", "subjects", id_type, id]) => subject(app, &agency, id_type, id),
        (&Method::POST, ["v1", "subjects", id_type, id, action @ ("exit" | "reentry")]) => {
            change_standing(app, &agency, id_type, id, action == &"exit", req).await
        }
        (&Method::POST, ["v1", "repairs"]) => apply_repair(app, &agency, req).await,
        (&Method::GET, ["v1", "repairs"]) => {
            list_repairs(app, &agency, req.uri().query().unwrap_or(""))
        }
        (_, ["v1", "repairs"]) => Err(ApiError::MethodNotAllowed),
        (&Method::GET, ["v1", "repairs", id]) => show_repair(app, &agency, id),
        (&Method::POST, ["v1", "repairs", id, "decide"]) => {
            decide_repair(app, &agency, id, req).await
        }
        (&Method::POST, ["v1", "repairs", id, "extend"]) => {
            extend_repair(app, &agency, id, req).await
        }
        (&Method::POST, ["v1", "repairs", id, "commitment-broken"]) => {
            commitment_broken(app, &agency, id, req).await
        }
        (&Method::POST, ["v1", "objections"]) => file_objection(app, &agency, req).await,
        (&Method::GET, ["v1", "objections"]) => {
            list_objections(app, &agency, req.uri().query().unwrap_or(""))
        }
        (_, ["v1", "objections"]) => Err(ApiError::MethodNotAllowed),
        (&Method::GET, ["v1", "objections", id]) => show_objection(app, &agency, id),
        (&Method::POST, ["v1", "objections", id, "resolve"]) => {
            resolve_objection(app, &agency, id, req).await
        }
        (&Method::POST, ["v1", "objections", id, "review"]) => {
            review_objection(app, &agency, id, req).await
        }
        (&Method::GET, ["v1", "ledger", "records", agency_id, record_id]) => ledger_record(
            app,
            &agency,
            agency_id,
            record_id,
            req.uri().query().unwrap_or(""),
        ),
        (&Method::GET, ["v1", "ledger", "subjects", id_type, id]) => {
            ledger_subject(app, &agency, id_type, id, req.uri().query().unwrap_or(""))
        }
        (&Method::GET, ["v1", "evaluations", id_type, id]) => {
            super::evaluation::authorized_query(app, &agency, id_type, id, &req).await
        }
        (&Method::POST, ["v1", "evaluations", year, "publish"]) => {
            super::evaluation::publish(app, &agency, year).await
        }
        (&Method::GET, ["v1", "mappings"]) => Ok(mappings(app, &agency)),
        (&Method::GET, ["openapi.json"]) => Ok(openapi()),
        (&Method::POST, ["v1", "corrections"]) => post_correction(app, &agency, req).await,
        (&Method::GET, ["v1", "corrections"]) => {
            list_corrections(app, &agency, req.uri().query().unwrap_or(""))
        }
        (_, ["v1", "corrections"]) => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::NotFound("resource")),
    }
}

async fn push_records(
    app: &App,
    agency: &Agency,
    req: Request<RequestBody>,
) -> Result<Resp, ApiError> {
    let started = Instant::now();
    agency.check_rate().map_err(ApiError::RateLimited)?;
    let mapping_id =
        query_param(req.uri().query().unwrap_or(""), "mapping").ok_or(ApiError::MissingMapping)?;
    let mappings = app.live.mappings.current();
    let mapping = mappings
        .get(&mapping_id)
        .ok_or_else(|| ApiError::UnknownMapping(mapping_id.clone()))?;
    if !agency.may_push(&mapping.id) {
        return Err(ApiError::MappingNotAllowed(mapping.id.clone()));
    }
    check_content_type(&req, mapping.format)?;
    // Held until the batch is committed: the memory of work in flight stays bounded.
    let _inflight = reserve_inflight(app, &req).await?;
    let body = read_body(app, req).await?;
    let received_at = app.clock.now();
    let ctx = ValidationContext {
        exceptions: app.exceptions.clone(),
        authenticated_agency: Some(agency.id.clone()),
        incoming: true,
    };
    let mapping_owned: Mapping = mapping.clone();
    let router = app.live.router.current();
    let now = app.clock.now();
    let body_for_map = body.clone();
    let store = app.store.clone();
    let limits = app.config.ingest.limits();
    let mut rejected = Rejected::new(app.config.ingest.max_listed_rejections);
    let (agency_id, mapping_id) = (agency.id.clone(), mapping.id.clone());
    let (total, accepted, rejected, filter) = tokio::task::spawn_blocking(move || {
        let normalized = mapping_owned.normalize_bounded(&body_for_map, &ctx, &limits)?;
        let total = normalized.len();
        let to = Sorting {
            store: &store,
            router: &router,
            now,
            agency: &agency_id,
            mapping: &mapping_id,
        };
        let (accepted, filter) = to.sort(normalized, &mut rejected, None)?;
        Ok::<_, ApiError>((total, accepted, rejected, filter))
    })
    .await
    .map_err(|_| ApiError::StorageUnavailable)??;
    let receipt = commit_batch(
        app,
        Batch {
            agency: &agency.id,
            mapping: &mapping.id,
            received_at,
            body_sha256: hex::encode(Sha256::digest(&body)),
            total,
            accepted,
            rejected,
            filter,
            file: None,
        },
        started,
    )
    .await?;
    let body = serde_json::to_value(&receipt).unwrap_or_default();
    Ok(json_response(StatusCode::OK, &body))
}

/// What sorting mapped records needs: the store (records are prepared for the archive), the
/// rules in force (each accepted record's plan) and who sent them.
pub(super) struct Sorting<'a> {
    pub store: &'a crate::store::Store,
    pub router: &'a crate::sharing::Router,
    pub now: time::OffsetDateTime,
    pub agency: &'a str,
    pub mapping: &'a str,
}

impl Sorting<'_> {
    /// Mapped and validated records made ready for the writer: each accepted one hashed and
    /// protected for the archive (here, in parallel, not on the single writer) and planned for
    /// the platforms; each rejected one counted in `rejected` (and in `also`: a file's receipt
    /// lists its rejections across its batches). One path for pushes and files.
    pub(super) fn sort(
        &self,
        normalized: impl IntoIterator<Item = Normalized>,
        rejected: &mut Rejected,
        mut also: Option<&mut Rejected>,
    ) -> Result<(Vec<AcceptedInput>, FilterReport), ApiError> {
        let mut accepted = Vec::new();
        let mut filter = FilterReport::default();
        for n in normalized {
            match n.outcome {
                Ok(record) => {
                    let plan = self.router.plan_reported(&record, self.now, &mut filter);
                    let prepared =
                        Prepared::new(self.store, &record.canonical_bytes()).map_err(|e| {
                            tracing::error!(error = %e, "cannot prepare a record for the archive");
                            ApiError::StorageUnavailable
                        })?;
                    accepted.push(AcceptedInput {
                        prepared,
                        index: n.index,
                        record,
                        plan,
                    });
                }
                Err(rejection) => {
                    events::record_rejected(
                        self.agency,
                        self.mapping,
                        rejection.index,
                        rejection.record_id.as_deref(),
                        &rejection.field,
                    );
                    if let Some(also) = also.as_deref_mut() {
                        also.push(rejection.clone());
                    }
                    rejected.push(rejection);
                }
            }
        }
        Ok((accepted, filter))
    }
}

/// One batch ready for the writer.
pub(super) struct Batch<'a> {
    pub agency: &'a str,
    pub mapping: &'a str,
    pub received_at: time::OffsetDateTime,
    pub body_sha256: String,
    pub total: usize,
    pub accepted: Vec<AcceptedInput>,
    pub rejected: Rejected,
    pub filter: FilterReport,
    pub file: Option<crate::ingest::receipt::FilePart>,
}

/// Commit one batch (accept = durable) and answer its receipt: the filter's reports, the
/// writer, the log line and the metrics. One path for pushes and a file's batches.
pub(super) async fn commit_batch(
    app: &App,
    batch: Batch<'_>,
    started: Instant,
) -> Result<crate::ingest::receipt::Receipt, ApiError> {
    for (dest, channel, rule) in &batch.filter.withheld {
        events::share_withheld(dest, channel.code(), rule);
    }
    for (dest, channel, field, rule) in &batch.filter.masked {
        events::field_masked(dest, channel.code(), field, rule);
    }
    let job = BatchJob {
        receipt_id: uuid::Uuid::new_v4().to_string(),
        agency: batch.agency.to_string(),
        mapping: batch.mapping.to_string(),
        received_at: batch.received_at,
        body_sha256: batch.body_sha256,
        total: batch.total,
        accepted: batch.accepted,
        rejected: batch.rejected,
        filter: batch.filter,
        file: batch.file,
    };
    let receipt = crate::ingest::batch::commit(&app.committer, job)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "batch not stored");
            // Refused by the reserve check before the engine wrote anything: the same answer
            // as the route's own check, with its Retry-After.
            if app.disk.is_low() {
                ApiError::StorageFull
            } else {
                ApiError::StorageUnavailable
            }
        })?;
    events::batch_received(
        batch.agency,
        batch.mapping,
        &receipt.receipt_id,
        receipt.accepted,
        receipt.rejected_count,
        receipt.new,
        started.elapsed(),
    );
    Ok(receipt)
}

fn check_content_type(req: &Request<RequestBody>, format: SourceFormat) -> Result<(), ApiError> {
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
        .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase());
    match format {
        SourceFormat::Json => {
            let ok = (media == "application/json" || media.ends_with("+json"))
                && charset
                    .as_deref()
                    .is_none_or(|c| c == "utf-8" || c == "utf8");
            if !ok {
                return Err(ApiError::UnsupportedMediaType {
                    expected: "application/json (UTF-8)",
                });
            }
        }
        SourceFormat::Xml => {
            if !(media == "application/xml" || media == "text/xml" || media.ends_with("+xml")) {
                return Err(ApiError::UnsupportedMediaType {
                    expected: "application/xml or text/xml",
                });
            }
        }
    }
    Ok(())
}

/// Reserve room for a request body in the bound on work in flight (`server.max_inflight_mb`):
/// its declared length, or `max_body_bytes` when undeclared. Waits up to `inflight_wait_ms`.
pub(super) async fn reserve_inflight(
    app: &App,
    req: &Request<RequestBody>,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ApiError> {
    let Some(budget) = &app.inflight else {
        return Ok(None);
    };
    let limit = app.config.server.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Too large is the sender's to fix, not a reason to wait: 413 before any budget.
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let total = app.config.server.max_inflight_mb * 1024;
    // One request takes at most half the budget, so a large (or undeclared) body cannot shut out
    // every other agency's pushes.
    let kib = (declared.unwrap_or(limit) / 1024 + 1)
        .min((total / 2).max(1))
        .min(u64::from(u32::MAX)) as u32;
    let wait = Duration::from_millis(app.config.server.inflight_wait_ms);
    match tokio::time::timeout(wait, budget.clone().acquire_many_owned(kib)).await {
        Ok(Ok(permit)) => Ok(Some(permit)),
        _ => Err(ApiError::Busy),
    }
}

/// Read the body within the size limit and the read timeout. A declared length over the limit is
/// refused before reading anything; an undeclared one stops at the limit.
async fn read_body(app: &App, req: Request<RequestBody>) -> Result<Bytes, ApiError> {
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

/// `POST /v1/corrections` (GD Art. 31): the rules are `corrections::agency`'s.
async fn post_correction(
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

fn list_corrections(app: &App, agency: &Agency, query: &str) -> Result<Resp, ApiError> {
    let state = query_param(query, "state");
    let body = crate::corrections::agency::visible(
        &app.store,
        app.clock.now(),
        caller(agency),
        state.as_deref(),
    )?;
    Ok(json_response(StatusCode::OK, &body))
}

/// The caller as the domains' agency rules read it: its id and whether it reads archives.
fn caller(agency: &Agency) -> (&str, bool) {
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
    // LS Art. 20: an exited subject's archive is removed from view until it re-enters.
    let archive = crate::archive::read_subject(&app.store, &subject_id)
        .map_err(|_| ApiError::StorageUnavailable)?
        .filter(|a| !a.subject.is_exited());
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
async fn json_body<T: serde::de::DeserializeOwned>(
    app: &App,
    req: Request<RequestBody>,
) -> Result<T, ApiError> {
    let body = read_body(app, req).await?;
    Ok(crate::mapping::source::parse_json_as(&body)?)
}

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
async fn file_objection(
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

fn list_objections(app: &App, agency: &Agency, query: &str) -> Result<Resp, ApiError> {
    let state = query_param(query, "state");
    let body = objection_parties(app).list(
        &app.store,
        app.clock.now(),
        caller(agency),
        state.as_deref(),
    )?;
    Ok(json_response(StatusCode::OK, &body))
}

fn show_objection(app: &App, agency: &Agency, id: &str) -> Result<Resp, ApiError> {
    let body = objection_parties(app).show(&app.store, app.clock.now(), caller(agency), id)?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v1/objections/{id}/resolve`, by the agency that provided the information (LS Art. 23;
/// GD Art. 31): `objections::agency::resolve`, the same step as at the console.
async fn resolve_objection(
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
async fn review_objection(
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
async fn apply_repair(
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

fn list_repairs(app: &App, agency: &Agency, query: &str) -> Result<Resp, ApiError> {
    let state = query_param(query, "state");
    let body = applicants(app).list(
        &app.store,
        app.clock.now(),
        caller(agency),
        state.as_deref(),
    )?;
    Ok(json_response(StatusCode::OK, &body))
}

fn show_repair(app: &App, agency: &Agency, id: &str) -> Result<Resp, ApiError> {
    let body = applicants(app).show(&app.store, app.clock.now(), caller(agency), id)?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v1/repairs/{id}/decide` by the agency that made the finding (LS Art. 40).
async fn decide_repair(
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
async fn extend_repair(
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
async fn commitment_broken(
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

/// The subject identifier in a path, parsed.
fn openapi() -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from_static(
        super::openapi::SPEC.as_bytes(),
    )));
    if let Ok(v) = "application/json; charset=utf-8".parse() {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

pub(super) fn subject_id(app: &App, id_type: &str, id: &str) -> Result<SubjectId, ApiError> {
    let id_type =
        IdType::from_code(id_type).ok_or_else(|| ApiError::UnknownIdType(id_type.to_string()))?;
    let id = percent_decode(id);
    SubjectId::parse(id_type, &id, &app.exceptions)
        .map_err(|e| ApiError::InvalidSubjectId(e.to_string()))
}

/// `GET /v1/ledger/records/{agency}/{record_id}`: `ledger::agency::record_holdings`.
fn ledger_record(
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
fn ledger_subject(
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
async fn change_standing(
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
