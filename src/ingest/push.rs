//! `POST /v1/records`: a batch of records pushed by an agency, read (bounded, timed, within the
//! bodies in flight), mapped, validated and sorted ([`Sorting`]), and committed as one exchange
//! ([`commit_batch`]) before the receipt is answered (accept = durable). Files and the watched
//! folders (`files.rs`, `folder.rs`) sort and commit their batches the same way.
//!
//! Never does: decide a domain rule (the mapping, the record's validation, the sharing plan and
//! the archive do), or answer before the batch is durable.

use std::time::{Duration, Instant};

use hyper::{header, Request, StatusCode};
use sha2::{Digest, Sha256};

use super::body::RequestBody;
use super::respond::{json_response, ApiError};
use super::routes::{media_type, query_param, read_body, Resp};
use super::App;
use crate::archive::Prepared;
use crate::identity::Agency;
use crate::ingest::batch::{AcceptedInput, BatchJob};
use crate::ingest::receipt::Rejected;
use crate::mapping::{Mapping, Normalized, SourceFormat};
use crate::record::ValidationContext;
use crate::sharing::FilterReport;
use crate::telemetry::events;

pub(in crate::ingest) async fn push_records(
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

pub(in crate::ingest) fn check_content_type(
    req: &Request<RequestBody>,
    format: SourceFormat,
) -> Result<(), ApiError> {
    let (media, charset) = media_type(req);
    let charset = charset.map(|v| v.trim().trim_matches('"').to_ascii_lowercase());
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
