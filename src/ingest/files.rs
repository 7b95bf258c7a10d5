//! `POST /v1/files?mapping=ID[&sheet=NAME]` (issue #29): an agency hands in a batch as an `.xlsx`
//! or CSV file, with the same client certificate, the same permission (`may_push` of the
//! mapping) and the same accept = durable as a push; `docs/integrate/files.md` is the agency's
//! guide.
//!
//! The path of a file:
//! 1. The head is checked before the body is read: rate, mapping and permission, `Content-Type`
//!    (`.xlsx`, or `text/csv` with its charset), one of `ingest.files_at_once`.
//! 2. The body is written as it arrives to a file in `<data_dir>/incoming/`, unlinked at once
//!    (a crash leaves nothing behind), hashed (SHA-256) on the way, at most `ingest.max_file_mb`
//!    within `ingest.file_read_timeout_ms`, and only with room for it above the disk reserve.
//! 3. A first read of the whole file ([`crate::files::read`]) checks everything that refuses a
//!    file as a whole: its encoding, its header and columns, its rows' bounds. A refused file
//!    stores nothing.
//! 4. A second read maps and validates each row ([`crate::mapping::Mapping::normalize_row`]) and
//!    hands them, in chunks of [`CHUNK_ROWS`] rows (at most `ingest.max_records_per_batch`),
//!    to the same sorting and commit as a push (`push::Sorting`, `push::commit_batch`): each
//!    chunk is one durable batch with its own receipt and `batch_received` audit entry naming
//!    the file. A reading thread and the committing request pass chunks through a channel of
//!    one, so at most a few chunks are in memory, whatever the file's size.
//! 5. Once every chunk is durable, the file's receipt (counts, the rejections with their
//!    spreadsheet row and column, the chunks' receipts) is stored with a `file_received` audit
//!    entry, both in one write set, and answered.
//!
//! The same file twice: its records are idempotent (record id and content), so the second
//! receipt has every record `unchanged` and stores nothing new but its receipts; both receipts
//! and audit entries carry the file's SHA-256.
//!
//! A failure of the store while chunks are committed (`503`, nothing listed) leaves the chunks
//! already committed in place: sending the file again is safe and completes it.

use std::io::{Seek, Write};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::{header, Request, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::body::RequestBody;
use super::push::{commit_batch, Batch, Sorting};
use super::receipt::{FilePart, NotListed, Rejected};
use super::respond::{json_response, ApiError};
use super::routes::query_param;
use super::App;
use crate::audit::AuditEvent;
use crate::audit::Head;
use crate::exchange::{answer, CommitterHandle, Exchange, Group, WriteError};
use crate::files::{self, Charset, FileError, FileInfo, FileKind};
use crate::identity::Agency;
use crate::ingest::batch::AcceptedInput;
use crate::mapping::{Normalized, Rejection};
use crate::record::ValidationContext;
use crate::sharing::FilterReport;
use crate::telemetry::events;

type Resp = hyper::Response<http_body_util::Full<bytes::Bytes>>;

/// Rows of a file per batch (fewer when `ingest.max_records_per_batch` is lower): a chunk's
/// records, prepared and planned, are what the reading thread holds at once.
pub const CHUNK_ROWS: usize = 2_000;

/// The `Content-Type` of an `.xlsx`.
pub const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

pub(super) async fn push_file(
    app: &App,
    agency: &Agency,
    req: Request<RequestBody>,
) -> Result<Resp, ApiError> {
    let started = Instant::now();
    agency.check_rate().map_err(ApiError::RateLimited)?;
    let query = req.uri().query().unwrap_or("").to_string();
    let mapping_id = query_param(&query, "mapping").ok_or(ApiError::MissingMapping)?;
    let mapping = app
        .live
        .mappings
        .current()
        .get(&mapping_id)
        .cloned()
        .ok_or_else(|| ApiError::UnknownMapping(mapping_id.clone()))?;
    if !agency.may_push(&mapping.id) {
        return Err(ApiError::MappingNotAllowed(mapping.id.clone()));
    }
    if mapping.is_passthrough() {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/json on POST /v1/records: the canonical mapping takes canonical records, not files",
        });
    }
    let kind = file_kind(&req)?;
    let sheet = query_param(&query, "sheet");
    if sheet.is_some() && kind != FileKind::Xlsx {
        return Err(ApiError::InvalidQuery(
            "sheet= names a sheet of an .xlsx file; a CSV has none".into(),
        ));
    }
    // One of `ingest.files_at_once`, held until the file's receipt is answered.
    let wait = Duration::from_millis(app.config.server.inflight_wait_ms);
    let _slot = tokio::time::timeout(wait, app.files.clone().acquire_owned())
        .await
        .map_err(|_| ApiError::Busy)?
        .map_err(|_| ApiError::Busy)?;
    let (file, sha256, bytes) = spool(app, req).await?;
    let taken = take(
        app,
        Handed {
            agency: agency.id.clone(),
            mapping,
            form: Form::Sheet(kind),
            sheet,
            file,
            sha256,
            bytes,
            receipt_id: uuid::Uuid::new_v4().to_string(),
            expected_rows: None,
            name: None,
            via: Via::Api,
            by: None,
        },
        started,
    )
    .await?;
    Ok(json_response(StatusCode::OK, &taken.receipt))
}

/// How a file reached the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// `POST /v1/files`.
    Api,
    /// The agency's watched exchange folder (`folder`).
    Folder,
    /// The console: a signed-in operator hands the file in on the agency's behalf (the receipt and
    /// its audit entry name the operator).
    Console,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Api => "api",
            Via::Folder => "folder",
            Via::Console => "console",
        }
    }
}

/// What kind of file is handed in: a sheet (rows under a header) or a document in the mapping's
/// own format (the XML or JSON an agency pushes to `POST /v1/records`, dropped in a folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Sheet(FileKind),
    Document,
}

/// A file handed in, spooled to disk with its digest, ready to be taken.
pub struct Handed {
    pub agency: String,
    pub mapping: crate::mapping::Mapping,
    pub form: Form,
    pub sheet: Option<String>,
    /// Open for reading, at its start.
    pub file: std::fs::File,
    /// SHA-256, lower-case hex.
    pub sha256: String,
    pub bytes: u64,
    /// The file's receipt id, chosen by the caller (a folder names its claim by it, so a restart
    /// finds whether the file was taken).
    pub receipt_id: String,
    /// The records a check file says the file holds: another count refuses the file.
    pub expected_rows: Option<u64>,
    /// The file's name, when it has one (a folder's file).
    pub name: Option<String>,
    pub via: Via,
    /// The operator who handed it in at the console, on the agency's behalf.
    pub by: Option<String>,
}

/// A file taken: its receipt as answered (and stored), and its counts for the caller's events.
pub struct Taken {
    pub receipt: serde_json::Value,
    pub total: usize,
    pub accepted: usize,
    pub rejected: usize,
    /// The receipt id of the earlier hand-in of the same bytes, when this one is a repeat.
    pub repeat_of: Option<String>,
}

/// Take a file handed in by an agency: the one path of `POST /v1/files` and of a watched
/// folder. A file whose bytes the agency handed in before with the same mapping (its SHA-256)
/// is answered with a receipt saying so and stores nothing new; any other is read, mapped,
/// validated and stored chunk by chunk, then its receipt stored with its audit entry.
pub async fn take(app: &App, handed: Handed, started: Instant) -> Result<Taken, ApiError> {
    if let Some(earlier) = earlier_receipt(app, &handed)? {
        return repeat(app, handed, earlier, started).await;
    }
    let progress = events::FileInProgress::start(handed.via.as_str());
    let received_at = app.clock.now();
    let Handed {
        agency,
        mapping,
        form,
        sheet,
        file,
        sha256,
        bytes,
        receipt_id,
        expected_rows,
        name,
        via,
        by,
    } = handed;
    let mapping_id = mapping.id.clone();
    let sheet_named = sheet.clone();

    // The reading thread: first the whole file's checks, then its rows, chunk by chunk.
    let (tx, mut rx) = mpsc::channel::<Result<Chunk, ApiError>>(1);
    let (done_tx, done_rx) = oneshot::channel::<Result<(FileInfo, Rejected), ApiError>>();
    let reader = Reader {
        mapping,
        form,
        sheet,
        bounds: app.config.ingest.file_bounds(),
        limits: app.config.ingest.limits(),
        max_document_bytes: app.config.server.max_body_bytes,
        expected_rows,
        chunk_rows: CHUNK_ROWS
            .min(app.config.ingest.max_records_per_batch)
            .max(1),
        max_listed: app.config.ingest.max_listed_rejections,
        ctx: ValidationContext {
            exceptions: app.exceptions.clone(),
            authenticated_agency: Some(agency.clone()),
            incoming: true,
        },
        store: app.store.clone(),
        router: app.live.router.current(),
        now: app.clock.now(),
        agency: agency.clone(),
    };
    let reading = tokio::task::spawn_blocking(move || {
        let _ = done_tx.send(reader.run(file, &tx));
    });
    let mut totals = Totals::default();
    let mut batches = Vec::new();
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk?;
        let chunk_started = Instant::now();
        let (first_row, last_row, total) = (chunk.first_row, chunk.last_row, chunk.total);
        let receipt = commit_batch(
            app,
            Batch {
                agency: &agency,
                mapping: &mapping_id,
                received_at,
                body_sha256: sha256.clone(),
                total,
                accepted: chunk.accepted,
                rejected: chunk.rejected,
                filter: chunk.filter,
                file: Some(FilePart {
                    receipt_id: receipt_id.clone(),
                    sha256: sha256.clone(),
                    first_row,
                    last_row,
                }),
            },
            chunk_started,
        )
        .await?;
        events::file_rows(&agency, &mapping_id, total);
        progress.rows(total);
        totals.add(&receipt);
        batches.push(BatchRef {
            receipt_id: receipt.receipt_id,
            first_row,
            last_row,
            total,
            accepted: receipt.accepted,
            rejected: receipt.rejected_count,
        });
    }
    let _ = reading.await;
    let (info, rejected) = done_rx.await.map_err(|_| ApiError::StorageUnavailable)??;
    let receipt = FileReceipt {
        receipt_id,
        kind: "file",
        agency: agency.clone(),
        mapping: mapping_id.clone(),
        received_at,
        file: FileFacts {
            sha256,
            bytes,
            name,
            via,
            by,
            info,
        },
        total: totals.total,
        accepted: totals.accepted,
        new: totals.new,
        updated: totals.updated,
        unchanged: totals.unchanged,
        rejected_count: rejected.total,
        rejected: rejected.listed.clone(),
        rejected_not_listed: rejected.not_listed(),
        batches,
        audit: None,
        signature: None,
    };
    let receipt = commit_file(&app.committer, receipt, sheet_named)
        .await
        .map_err(|e| storage_error(app, e))?;
    events::file_received(
        &agency,
        &mapping_id,
        &receipt.receipt_id,
        receipt.file.info.format,
        receipt.total,
        receipt.accepted,
        receipt.rejected_count,
        started.elapsed(),
    );
    Ok(Taken {
        receipt: serde_json::to_value(&receipt).unwrap_or_default(),
        total: receipt.total,
        accepted: receipt.accepted,
        rejected: receipt.rejected_count,
        repeat_of: None,
    })
}

fn storage_error(app: &App, e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "file receipt not stored");
    if app.disk.is_low() {
        ApiError::StorageFull
    } else {
        ApiError::StorageUnavailable
    }
}

/// `fsh/{agency}\x1f{sha256}`: the file an agency handed in with these bytes, and its receipt.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct DigestEntry {
    receipt_id: String,
    mapping: String,
    /// The sheet named when the file was handed in (another sheet of one workbook is another
    /// hand-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sheet: Option<String>,
}

/// The stored receipt of the same bytes handed in earlier by the same agency with the same
/// mapping, if any.
fn earlier_receipt(app: &App, h: &Handed) -> Result<Option<serde_json::Value>, ApiError> {
    let key = crate::store::keys::FileDigestKey::encode_of(&h.agency, &h.sha256);
    let unavailable = |e: crate::store::StoreError| {
        tracing::error!(error = %e, "cannot read the file digests");
        ApiError::StorageUnavailable
    };
    let Some(entry) = app
        .store
        .get_json::<DigestEntry>(&key)
        .map_err(unavailable)?
    else {
        return Ok(None);
    };
    // The same bytes with another mapping, or another sheet named, are another hand-in (a file
    // first sent with the wrong mapping can be sent again with the right one).
    if entry.mapping != h.mapping.id || entry.sheet != h.sheet {
        return Ok(None);
    }
    app.store
        .get_json::<serde_json::Value>(&super::receipt::receipt_key(&entry.receipt_id))
        .map_err(unavailable)
}

/// Answer a repeat: the earlier receipt's counts and rejections (every accepted record counted
/// unchanged: nothing is stored again), `repeat_of` its id, no batches; stored with a
/// `file_repeated` audit entry.
async fn repeat(
    app: &App,
    h: Handed,
    earlier: serde_json::Value,
    started: Instant,
) -> Result<Taken, ApiError> {
    let earlier_id = earlier["receipt_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut receipt = earlier.clone();
    let received_at = app.clock.now();
    let accepted = earlier["accepted"].as_u64().unwrap_or(0);
    receipt["receipt_id"] = h.receipt_id.clone().into();
    receipt["repeat_of"] = earlier_id.clone().into();
    receipt["received_at"] = crate::clock::rfc3339(received_at).into();
    receipt["new"] = 0.into();
    receipt["updated"] = 0.into();
    receipt["unchanged"] = accepted.into();
    receipt["batches"] = serde_json::Value::Array(Vec::new());
    receipt["file"]["via"] = serde_json::to_value(h.via).unwrap_or_default();
    match &h.by {
        Some(by) => receipt["file"]["by"] = by.clone().into(),
        None => {
            if let Some(file) = receipt["file"].as_object_mut() {
                file.remove("by");
            }
        }
    }
    match &h.name {
        Some(name) => receipt["file"]["name"] = name.clone().into(),
        None => {
            if let Some(file) = receipt["file"].as_object_mut() {
                file.remove("name");
            }
        }
    }
    if let Some(r) = receipt.as_object_mut() {
        r.remove("audit");
        r.remove("signature");
    }
    let receipt = app
        .committer
        .submit(|reply| {
            Box::new(Repeated {
                receipt: receipt.clone(),
                reply: Some(reply),
                staged: None,
            })
        })
        .await
        .map_err(|e| storage_error(app, e.into()))?;
    let count = |k: &str| receipt[k].as_u64().unwrap_or(0) as usize;
    events::file_repeated(
        &h.agency,
        &h.mapping.id,
        &h.receipt_id,
        &earlier_id,
        started.elapsed(),
    );
    Ok(Taken {
        total: count("total"),
        accepted: count("accepted"),
        rejected: count("rejected_count"),
        receipt,
        repeat_of: Some(earlier_id),
    })
}

/// A repeat's receipt and its audit entry, one write set.
struct Repeated {
    receipt: serde_json::Value,
    reply: Option<oneshot::Sender<Result<serde_json::Value, WriteError>>>,
    staged: Option<serde_json::Value>,
}

impl Exchange for Repeated {
    fn stage(&mut self, g: &mut Group<'_>) -> Result<(), crate::store::StoreError> {
        let mut receipt = self.receipt.clone();
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let mut event = serde_json::Map::new();
        for key in ["receipt_id", "repeat_of", "agency", "mapping"] {
            event.insert(key.into(), receipt[key].clone());
        }
        for key in ["sha256", "bytes", "format", "name", "via", "by"] {
            if let Some(v) = receipt["file"].get(key) {
                event.insert(key.into(), v.clone());
            }
        }
        let at = text(&receipt["received_at"]);
        let head = g.audit(&at, AuditEvent::FileRepeated, event);
        receipt["audit"] = serde_json::to_value(&head).unwrap_or_default();
        sign_value(g, &mut receipt)?;
        g.archive.writes.push((
            super::receipt::receipt_key(&text(&receipt["receipt_id"])),
            crate::store::to_bytes(&receipt),
        ));
        self.staged = Some(receipt);
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<(), WriteError>) {
        answer(self.reply, outcome, self.staged);
    }
}

/// Sign a receipt held as JSON (without its `signature`), when the store has keys.
pub(super) fn sign_value(
    g: &Group<'_>,
    receipt: &mut serde_json::Value,
) -> Result<(), crate::store::StoreError> {
    if let Some(keys) = g.store.keys() {
        let canonical = crate::crypto::signed::canonical(receipt);
        let signature =
            crate::crypto::signed::sign(keys.current().signer(), &canonical).map_err(|e| {
                crate::store::StoreError::CommitFailed(format!("cannot sign the receipt: {e}"))
            })?;
        receipt["signature"] = serde_json::to_value(&signature).unwrap_or_default();
    }
    Ok(())
}

/// The kind of file the `Content-Type` says: an `.xlsx`, or a CSV with its charset if declared.
fn file_kind(req: &Request<RequestBody>) -> Result<FileKind, ApiError> {
    let (media, charset) = super::routes::media_type(req);
    match media.as_str() {
        XLSX => Ok(FileKind::Xlsx),
        "text/csv" | "application/csv" | "text/comma-separated-values" => match charset {
            None => Ok(FileKind::Csv(None)),
            Some(label) => Charset::from_label(&label)
                .map(|c| FileKind::Csv(Some(c)))
                .map_err(|other| {
                    ApiError::from(crate::mapping::ParseError::UnsupportedEncoding(other))
                }),
        },
        _ => Err(ApiError::UnsupportedMediaType {
            expected: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet (.xlsx), or text/csv; charset=utf-8 or charset=gbk",
        }),
    }
}

/// Write the body to an unlinked file in `<data_dir>/incoming/` as it arrives, hashing it:
/// the file, its SHA-256 (hex) and its size.
async fn spool(
    app: &App,
    req: Request<RequestBody>,
) -> Result<(std::fs::File, String, u64), ApiError> {
    let limit = app.config.ingest.max_file_mb.saturating_mul(1024 * 1024);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let dir = app.config.storage.data_dir.join("incoming");
    let storage = |e: std::io::Error| {
        tracing::error!(error = %e, "cannot write a received file");
        ApiError::StorageUnavailable
    };
    std::fs::create_dir_all(&dir).map_err(storage)?;
    // Room for the whole file above the free-space reserve (sled never meets a full disk).
    let free = crate::store::space::free_bytes(&dir).unwrap_or(0);
    if free < app.disk.reserve().saturating_add(declared.unwrap_or(limit)) {
        return Err(ApiError::StorageFull);
    }
    let path = dir.join(format!("{}.part", uuid::Uuid::new_v4()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(storage)?;
    // Unlinked at once: the open handle keeps it until it is taken; a crash leaves nothing.
    std::fs::remove_file(&path).map_err(storage)?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut body = req.into_body();
    let within = Duration::from_millis(app.config.ingest.file_read_timeout_ms);
    let read = async {
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, &mut file);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ApiError::BodyRead(e.to_string()))?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            size += data.len() as u64;
            if size > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            hasher.update(data);
            out.write_all(data).map_err(storage)?;
        }
        out.flush().map_err(storage)?;
        Ok(())
    };
    tokio::time::timeout(within, read)
        .await
        .map_err(|_| ApiError::BodyTimeout)??;
    file.rewind().map_err(storage)?;
    Ok((file, hex::encode(hasher.finalize()), size))
}

/// One chunk of a file's rows, mapped, validated, prepared and planned.
struct Chunk {
    first_row: usize,
    last_row: usize,
    total: usize,
    accepted: Vec<AcceptedInput>,
    rejected: Rejected,
    filter: FilterReport,
}

/// Everything the reading thread needs.
struct Reader {
    mapping: crate::mapping::Mapping,
    form: Form,
    sheet: Option<String>,
    bounds: files::Bounds,
    /// A document's parsing limits (`Form::Document`), as for a push.
    limits: crate::mapping::Limits,
    /// A document's largest size (`server.max_body_bytes`, as for a push).
    max_document_bytes: u64,
    expected_rows: Option<u64>,
    chunk_rows: usize,
    max_listed: usize,
    ctx: ValidationContext,
    store: crate::store::Store,
    router: std::sync::Arc<crate::sharing::Router>,
    now: time::OffsetDateTime,
    agency: String,
}

impl Reader {
    /// Check the whole file, then send its rows in chunks; returns what the read found and the
    /// file's rejections (the first listed, the rest counted).
    fn run(
        self,
        file: std::fs::File,
        tx: &mpsc::Sender<Result<Chunk, ApiError>>,
    ) -> Result<(FileInfo, Rejected), ApiError> {
        let again = |f: &std::fs::File| -> Result<std::fs::File, ApiError> {
            let mut f = f.try_clone().map_err(|_| ApiError::StorageUnavailable)?;
            f.rewind().map_err(|_| ApiError::StorageUnavailable)?;
            Ok(f)
        };
        let kind = match self.form {
            Form::Sheet(kind) => kind,
            Form::Document => return self.run_document(again(&file)?, tx),
        };
        // First read: everything that refuses the file as a whole, before anything is stored.
        let first = files::read(
            again(&file)?,
            kind,
            self.sheet.as_deref(),
            &self.mapping,
            self.bounds,
            |_| Ok(()),
        )?;
        self.check_count(first.rows)?;
        let sorting = Sorting {
            store: &self.store,
            router: &self.router,
            now: self.now,
            agency: &self.agency,
            mapping: &self.mapping.id,
        };
        let mut all_rejected = Rejected::new(self.max_listed);
        let mut rows: Vec<Normalized> = Vec::with_capacity(self.chunk_rows);
        let mut span = (0usize, 0usize);
        let send = |rows: &mut Vec<Normalized>,
                    span: (usize, usize),
                    all_rejected: &mut Rejected|
         -> Result<(), FileError> {
            let total = rows.len();
            let mut rejected = Rejected::new(self.max_listed);
            let sorted = sorting.sort(rows.drain(..), &mut rejected, Some(all_rejected));
            let chunk = sorted.map(|(accepted, filter)| Chunk {
                first_row: span.0,
                last_row: span.1,
                total,
                accepted,
                rejected,
                filter,
            });
            tx.blocking_send(chunk).map_err(|_| FileError::Stopped)
        };
        // The clone shares the file's offset: back to the start for the second read.
        let file = again(&file)?;
        let info = files::read(
            file,
            kind,
            self.sheet.as_deref(),
            &self.mapping,
            self.bounds,
            |row| {
                let mut n = self
                    .mapping
                    .normalize_row(row.index, |p| row.read(p), &self.ctx);
                if let Err(r) = &mut n.outcome {
                    r.row = Some(row.number);
                    r.column = row.column_of(&r.field);
                }
                if rows.is_empty() {
                    span.0 = row.number;
                }
                span.1 = row.number;
                rows.push(n);
                if rows.len() >= self.chunk_rows {
                    send(&mut rows, span, &mut all_rejected)?;
                }
                Ok(())
            },
        );
        let info = match info {
            // The request stopped taking chunks: its own error is what it answers.
            Err(FileError::Stopped) => return Err(ApiError::StorageUnavailable),
            other => other?,
        };
        if !rows.is_empty() {
            send(&mut rows, span, &mut all_rejected).map_err(|_| ApiError::StorageUnavailable)?;
        }
        Ok((info, all_rejected))
    }

    /// A file holding a different number of records than its check file says is refused before
    /// anything of it is stored.
    fn check_count(&self, found: usize) -> Result<(), ApiError> {
        match self.expected_rows {
            Some(expected) if expected != found as u64 => Err(ApiError::CheckMismatch(format!(
                "the check file says {expected} records, the file holds {found} (blank rows not counted): nothing was stored; write the file and its check file again"
            ))),
            _ => Ok(()),
        }
    }

    /// A document in the mapping's own format (XML or JSON, as pushed to `POST /v1/records`):
    /// read whole within `server.max_body_bytes`, mapped and validated as a push, stored in
    /// chunks. Its rows are its records' positions, from 1.
    fn run_document(
        self,
        file: std::fs::File,
        tx: &mpsc::Sender<Result<Chunk, ApiError>>,
    ) -> Result<(FileInfo, Rejected), ApiError> {
        use std::io::Read;
        let mut body = Vec::new();
        file.take(self.max_document_bytes.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|_| ApiError::StorageUnavailable)?;
        if body.len() as u64 > self.max_document_bytes {
            return Err(ApiError::PayloadTooLarge {
                limit: self.max_document_bytes,
            });
        }
        let normalized = self
            .mapping
            .normalize_bounded(&body, &self.ctx, &self.limits)?;
        drop(body);
        self.check_count(normalized.len())?;
        let sorting = Sorting {
            store: &self.store,
            router: &self.router,
            now: self.now,
            agency: &self.agency,
            mapping: &self.mapping.id,
        };
        let info = FileInfo {
            format: match self.mapping.format {
                crate::mapping::SourceFormat::Xml => "xml",
                crate::mapping::SourceFormat::Json => "json",
            },
            rows: normalized.len(),
            ..FileInfo::default()
        };
        let mut all_rejected = Rejected::new(self.max_listed);
        let mut normalized = normalized.into_iter().peekable();
        while normalized.peek().is_some() {
            let rows: Vec<Normalized> = normalized.by_ref().take(self.chunk_rows).collect();
            let span = (
                rows.first().map_or(0, |n| n.index + 1),
                rows.last().map_or(0, |n| n.index + 1),
            );
            let total = rows.len();
            let mut rejected = Rejected::new(self.max_listed);
            let chunk = sorting
                .sort(rows, &mut rejected, Some(&mut all_rejected))
                .map(|(accepted, filter)| Chunk {
                    first_row: span.0,
                    last_row: span.1,
                    total,
                    accepted,
                    rejected,
                    filter,
                });
            tx.blocking_send(chunk)
                .map_err(|_| ApiError::StorageUnavailable)?;
        }
        Ok((info, all_rejected))
    }
}

#[derive(Default)]
struct Totals {
    total: usize,
    accepted: usize,
    new: usize,
    updated: usize,
    unchanged: usize,
}

impl Totals {
    fn add(&mut self, r: &super::receipt::Receipt) {
        self.total += r.total;
        self.accepted += r.accepted;
        self.new += r.new;
        self.updated += r.updated;
        self.unchanged += r.unchanged;
    }
}

/// One batch of a file, as its receipt lists it (`GET /v1/receipts/{receipt_id}` has each
/// record's outcome and version).
#[derive(Debug, Clone, Serialize)]
pub struct BatchRef {
    pub receipt_id: String,
    pub first_row: usize,
    pub last_row: usize,
    pub total: usize,
    pub accepted: usize,
    pub rejected: usize,
}

/// The file as received and read.
#[derive(Debug, Clone, Serialize)]
pub struct FileFacts {
    pub sha256: String,
    pub bytes: u64,
    /// The file's name (a folder's file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `api`, `folder` or `console`.
    pub via: Via,
    /// The operator who handed it in at the console.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(flatten)]
    pub info: FileInfo,
}

/// The receipt of a file: what was accepted and rejected (with each rejection's spreadsheet row
/// and column), the file's digest, its batches; stored as `rcp/{id}` like a batch's receipt.
#[derive(Debug, Clone, Serialize)]
pub struct FileReceipt {
    pub receipt_id: String,
    /// `file`: a batch's receipt has no `kind`.
    pub kind: &'static str,
    pub agency: String,
    pub mapping: String,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: time::OffsetDateTime,
    pub file: FileFacts,
    pub total: usize,
    pub accepted: usize,
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub rejected_count: usize,
    pub rejected: Vec<Rejection>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected_not_listed: Vec<NotListed>,
    pub batches: Vec<BatchRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<Head>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::crypto::Signature>,
}

/// Store a file's receipt with its `file_received` audit entry; answered once durable.
async fn commit_file(
    handle: &CommitterHandle,
    receipt: FileReceipt,
    sheet_named: Option<String>,
) -> Result<FileReceipt, crate::store::StoreError> {
    handle
        .submit(|reply| {
            Box::new(FileDone {
                receipt: Some(receipt),
                sheet_named,
                reply: Some(reply),
                staged: None,
            })
        })
        .await
        .map_err(Into::into)
}

struct FileDone {
    receipt: Option<FileReceipt>,
    /// The sheet the hand-in named (for the file's digest entry).
    sheet_named: Option<String>,
    reply: Option<oneshot::Sender<Result<FileReceipt, WriteError>>>,
    staged: Option<FileReceipt>,
}

/// The audit entry of a file (never a value of a record).
#[derive(Serialize)]
struct FileReceived<'a> {
    receipt_id: &'a str,
    agency: &'a str,
    mapping: &'a str,
    sha256: &'a str,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    via: Via,
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<&'a str>,
    format: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sheet: Option<&'a str>,
    total: usize,
    accepted: usize,
    new: usize,
    updated: usize,
    unchanged: usize,
    rejected: usize,
    batches: Vec<&'a str>,
}

impl Exchange for FileDone {
    fn stage(&mut self, g: &mut Group<'_>) -> Result<(), crate::store::StoreError> {
        let Some(mut receipt) = self.receipt.clone() else {
            return Ok(());
        };
        let event = FileReceived {
            receipt_id: &receipt.receipt_id,
            agency: &receipt.agency,
            mapping: &receipt.mapping,
            sha256: &receipt.file.sha256,
            bytes: receipt.file.bytes,
            name: receipt.file.name.as_deref(),
            via: receipt.file.via,
            by: receipt.file.by.as_deref(),
            format: receipt.file.info.format,
            sheet: receipt.file.info.sheet.as_deref(),
            total: receipt.total,
            accepted: receipt.accepted,
            new: receipt.new,
            updated: receipt.updated,
            unchanged: receipt.unchanged,
            rejected: receipt.rejected_count,
            batches: receipt
                .batches
                .iter()
                .map(|b| b.receipt_id.as_str())
                .collect(),
        };
        let at = crate::clock::rfc3339(receipt.received_at);
        let head = g.audit_event(&at, AuditEvent::FileReceived, &event)?;
        receipt.audit = Some(head);
        if let Some(keys) = g.store.keys() {
            let canonical = crate::crypto::signed::canonical(
                &serde_json::to_value(&receipt).unwrap_or_default(),
            );
            let signature = crate::crypto::signed::sign(keys.current().signer(), &canonical)
                .map_err(|e| {
                    crate::store::StoreError::CommitFailed(format!("cannot sign the receipt: {e}"))
                })?;
            receipt.signature = Some(signature);
        }
        g.archive.writes.push((
            super::receipt::receipt_key(&receipt.receipt_id),
            crate::store::to_bytes(&receipt),
        ));
        // The bytes' first receipt stays the one a repeat names (two hand-ins of one file at
        // once both store their receipts; their records are idempotent anyway).
        let digest =
            crate::store::keys::FileDigestKey::encode_of(&receipt.agency, &receipt.file.sha256);
        let earlier: Option<DigestEntry> = match g.staged_or_stored(&digest)? {
            Some(bytes) => serde_json::from_slice(&bytes).ok(),
            None => None,
        };
        let named = self.sheet_named.clone();
        if earlier.is_none_or(|e| e.mapping != receipt.mapping || e.sheet != named) {
            g.archive.writes.push((
                digest,
                crate::store::to_bytes(&DigestEntry {
                    receipt_id: receipt.receipt_id.clone(),
                    mapping: receipt.mapping.clone(),
                    sheet: named,
                }),
            ));
        }
        self.staged = Some(receipt);
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<(), WriteError>) {
        answer(self.reply, outcome, self.staged);
    }
}
