//! The one place where errors become HTTP responses: a stable machine-readable `code`, a message
//! for people, never an internal detail.
//!
//! Body: `{"error": {"code": "...", "message": "...", ...}}`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Response, StatusCode};
use serde_json::{json, Value};

use crate::mapping::json::JsonIssue;
use crate::mapping::ParseError;

/// Everything a request can fail with. `retry` says whether sending the same request again later
/// can succeed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the certificate is from the gateway's CA but names no configured agency")]
    UnknownAgency,
    #[error("give the mapping id as ?mapping=ID")]
    MissingMapping,
    #[error("no mapping {0:?}")]
    UnknownMapping(String),
    #[error("this agency may not push with mapping {0:?}")]
    MappingNotAllowed(String),
    #[error("this agency may not read subject archives")]
    ArchiveNotAllowed,
    #[error("over the rate limit for this agency")]
    RateLimited(Duration),
    #[error("Content-Type must be {expected}")]
    UnsupportedMediaType { expected: &'static str },
    #[error("the body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error(
        "the request headers are larger than {max_bytes} bytes or more than {max_fields} fields"
    )]
    HeadersTooLarge { max_bytes: usize, max_fields: usize },
    #[error("the body was not received in time")]
    BodyTimeout,
    #[error("the body could not be read: {0}")]
    BodyRead(String),
    #[error("{0}")]
    Document(#[from] ParseError),
    #[error("unknown id type {0:?}")]
    UnknownIdType(String),
    #[error("invalid subject identifier: {0}")]
    InvalidSubjectId(String),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("an agency may correct only the records it provided")]
    CorrectionNotAllowed,
    #[error("the corrected record is not valid")]
    InvalidCorrection(Vec<(String, String)>),
    #[error("{0}")]
    BadCorrection(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the gateway could not store the batch; nothing was accepted, send it again")]
    StorageUnavailable,
    #[error("the gateway is shutting down; send it again")]
    ShuttingDown,
    /// Free disk space is below the operator's reserve: nothing is accepted until space returns.
    #[error("the gateway's disk is below its free-space reserve; nothing was accepted: send it again later")]
    StorageFull,
    /// This agency holds all its connection slots (`server.max_connections_per_agency`).
    #[error("this agency already holds all the connections it may; use an open one, or send it again shortly")]
    AgencyConnectionsFull,
    /// The bound on work in flight is reached (`server.max_inflight_mb`): send it again shortly.
    #[error("the gateway has as much work in flight as it is configured to take; nothing was read, send it again")]
    Busy,
    #[error(
        "only the medical-insurance platform may mark a subject exited or re-entered (LS Art. 20)"
    )]
    StandingNotAllowed,
    #[error("{0}")]
    StandingUnchanged(String),
    #[error("{0}")]
    ObjectionNotAllowed(String),
    #[error("{0}")]
    InvalidObjection(String),
    #[error("{message}")]
    ObjectionLate { id: String, message: String },
    #[error("{0}")]
    ObjectionState(String),
    #[error("{0}")]
    RepairNotAllowed(String),
    #[error("{0}")]
    InvalidRepair(String),
    #[error("{message}")]
    RepairIneligible {
        id: String,
        message: String,
        refusals: Vec<crate::repairs::Refusal>,
    },
    #[error("{0}")]
    RepairState(String),
    #[error("{0}")]
    InvalidQuery(String),
    /// `evaluation.enabled` is off.
    #[error("credit evaluation is not enabled on this gateway")]
    EvaluationDisabled,
    /// No issuer key is configured (`evaluation.authorization_keys`).
    #[error("authorized queries are not configured on this gateway: the operator adds the issuer's public key")]
    AuthorizationNotConfigured,
    /// GD Art. 21: the subject's authorization is missing or does not hold.
    #[error("{0}")]
    Authorization(crate::evaluation::authz::AuthzError),
    #[error("this agency may not publish evaluation results (LS Art. 24)")]
    PublishNotAllowed,
    #[error("{0}")]
    CycleNotEnded(String),
    /// The operator's to fix: the deadline starts in a year *before* the working-day calendar's
    /// first (past its last year deadlines are provisional instead, issue #26, so this is retired
    /// for those).
    #[error("the gateway's working-day calendar does not cover {0}, so no deadline can be set; nothing was stored: check the time sent, or ask the operator to add the year")]
    CalendarYearMissing(i32),
    /// A CSV that is not UTF-8 and declares no charset (issue #29): never guessed.
    #[error("{message}")]
    CharsetRequired {
        line: usize,
        column: usize,
        message: String,
    },
    /// A file without a column every record needs: refused as a whole.
    #[error("{message}")]
    MissingColumns {
        columns: Vec<crate::files::MissingColumn>,
        message: String,
    },
    #[error("{message}")]
    SheetNotFound {
        sheets: Vec<String>,
        message: String,
    },
    /// Not an .xlsx, a damaged one, no header row, two headers for one field.
    #[error("{0}")]
    MalformedFile(String),
    /// A bound of a file (`ingest.max_file_rows`, `max_xlsx_unpacked_mb`, a row's length).
    #[error("{0}")]
    FileLimit(String),
    /// A file is not what its check file says (digest, record count, name): refused whole.
    #[error("{0}")]
    CheckMismatch(String),
}

impl From<crate::files::FileError> for ApiError {
    fn from(e: crate::files::FileError) -> Self {
        use crate::files::FileError as F;
        let message = e.to_string();
        match e {
            F::Document(p) => ApiError::Document(p),
            F::CharsetRequired { line, column } => ApiError::CharsetRequired {
                line,
                column,
                message,
            },
            F::MissingColumns(columns) => ApiError::MissingColumns { columns, message },
            F::SheetNotFound { sheets, .. } => ApiError::SheetNotFound { sheets, message },
            F::Malformed(m) => ApiError::MalformedFile(m),
            F::Limit(m) => ApiError::FileLimit(m),
            F::Io(_) | F::Stopped => ApiError::StorageUnavailable,
        }
    }
}

/// The agency API's errors answer through the same trait as every other (`crate::answer`).
impl crate::answer::Answer for ApiError {
    fn status(&self) -> StatusCode {
        ApiError::status(self)
    }
    fn code(&self) -> &'static str {
        ApiError::code(self)
    }
    fn message(&self) -> String {
        self.to_string()
    }
    fn retry(&self) -> bool {
        ApiError::retry(self)
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownAgency
            | Self::MappingNotAllowed(_)
            | Self::ArchiveNotAllowed
            | Self::CorrectionNotAllowed
            | Self::StandingNotAllowed
            | Self::ObjectionNotAllowed(_)
            | Self::RepairNotAllowed(_)
            | Self::PublishNotAllowed => StatusCode::FORBIDDEN,
            Self::Authorization(crate::evaluation::authz::AuthzError::OtherSubject)
            | Self::Authorization(crate::evaluation::authz::AuthzError::WrongScope) => {
                StatusCode::FORBIDDEN
            }
            Self::Authorization(_) => StatusCode::UNAUTHORIZED,
            Self::CycleNotEnded(_) => StatusCode::CONFLICT,
            Self::InvalidRepair(_) | Self::RepairIneligible { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::RepairState(_) => StatusCode::CONFLICT,
            Self::InvalidObjection(_) | Self::ObjectionLate { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::ObjectionState(_) => StatusCode::CONFLICT,
            Self::StandingUnchanged(_) => StatusCode::CONFLICT,
            Self::InvalidCorrection(_) | Self::BadCorrection(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Document(
                ParseError::TooManyRecords(_)
                | ParseError::TooManyElements(_)
                | ParseError::TooManyChildren { .. },
            ) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Document(ParseError::Refused { found, .. })
                if matches!(
                    found.issue,
                    JsonIssue::TooManyMembers(_) | JsonIssue::TooManyValues(_)
                ) =>
            {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::FileLimit(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::CheckMismatch(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MissingMapping
            | Self::CharsetRequired { .. }
            | Self::MissingColumns { .. }
            | Self::SheetNotFound { .. }
            | Self::MalformedFile(_)
            | Self::Document(_)
            | Self::BodyRead(_)
            | Self::UnknownIdType(_)
            | Self::InvalidSubjectId(_)
            | Self::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            Self::UnknownMapping(_) | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::StorageUnavailable
            | Self::ShuttingDown
            | Self::Busy
            | Self::StorageFull
            | Self::AgencyConnectionsFull
            | Self::CalendarYearMissing(_)
            | Self::EvaluationDisabled
            | Self::AuthorizationNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable code agencies program against.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownAgency => "unknown_agency",
            Self::MissingMapping => "missing_mapping",
            Self::UnknownMapping(_) => "unknown_mapping",
            Self::MappingNotAllowed(_) => "mapping_not_allowed",
            Self::ArchiveNotAllowed => "archive_not_allowed",
            Self::RateLimited(_) => "rate_limited",
            Self::UnsupportedMediaType { .. } => "unsupported_media_type",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::HeadersTooLarge { .. } => "headers_too_large",
            Self::BodyTimeout => "body_timeout",
            Self::BodyRead(_) => "body_unreadable",
            Self::Document(ParseError::Syntax { .. }) => "malformed_document",
            Self::Document(ParseError::UnsupportedEncoding(_)) => "unsupported_encoding",
            Self::Document(ParseError::InvalidEncoding { .. }) => "invalid_encoding",
            Self::Document(ParseError::MislabeledUtf8(_)) => "encoding_mismatch",
            Self::Document(ParseError::Doctype) => "doctype_refused",
            Self::Document(ParseError::TooDeep) => "too_deep",
            Self::Document(ParseError::UndefinedEntity(_)) => "undefined_entity",
            Self::Document(ParseError::Empty) => "empty_document",
            Self::Document(ParseError::Shape(_)) => "unexpected_shape",
            Self::Document(ParseError::TooManyRecords(_)) => "too_many_records",
            Self::Document(ParseError::TooManyElements(_) | ParseError::TooManyChildren { .. }) => {
                "document_limit"
            }
            Self::Document(ParseError::Refused { found, .. }) => match found.issue {
                JsonIssue::DuplicateKey(_) => "duplicate_key",
                JsonIssue::TooManyMembers(_) | JsonIssue::TooManyValues(_) => "document_limit",
                JsonIssue::TooLong(_)
                | JsonIssue::NumberTooLong
                | JsonIssue::IntegerOutOfRange
                | JsonIssue::NotFinite => "invalid_value",
            },
            Self::UnknownIdType(_) => "unknown_id_type",
            Self::InvalidSubjectId(_) => "invalid_subject_id",
            Self::NotFound(_) => "not_found",
            Self::CorrectionNotAllowed => "correction_not_allowed",
            Self::InvalidCorrection(_) => "invalid_correction",
            Self::BadCorrection(_) => "bad_correction",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::StorageUnavailable => "storage_unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::Busy => "busy",
            Self::StorageFull => "storage_full",
            Self::AgencyConnectionsFull => "agency_connections_full",
            Self::CalendarYearMissing(_) => "calendar_year_missing",
            Self::StandingNotAllowed => "standing_not_allowed",
            Self::StandingUnchanged(_) => "standing_unchanged",
            Self::InvalidQuery(_) => "invalid_query",
            Self::ObjectionNotAllowed(_) => "objection_not_allowed",
            Self::InvalidObjection(_) => "invalid_objection",
            Self::ObjectionLate { .. } => "objection_late",
            Self::ObjectionState(_) => "objection_state",
            Self::RepairNotAllowed(_) => "repair_not_allowed",
            Self::InvalidRepair(_) => "invalid_repair",
            Self::RepairIneligible { .. } => "repair_ineligible",
            Self::RepairState(_) => "repair_state",
            Self::EvaluationDisabled => "evaluation_disabled",
            Self::AuthorizationNotConfigured => "authorization_not_configured",
            Self::Authorization(e) => {
                use crate::evaluation::authz::AuthzError as A;
                match e {
                    A::Missing => "authorization_missing",
                    A::Invalid | A::UnknownIssuer | A::BadLifetime => "authorization_invalid",
                    A::Expired => "authorization_expired",
                    A::WrongScope => "authorization_scope",
                    A::OtherSubject => "authorization_other_subject",
                }
            }
            Self::PublishNotAllowed => "publish_not_allowed",
            Self::CycleNotEnded(_) => "cycle_not_ended",
            Self::CharsetRequired { .. } => "charset_required",
            Self::MissingColumns { .. } => "missing_columns",
            Self::SheetNotFound { .. } => "sheet_not_found",
            Self::MalformedFile(_) => "malformed_file",
            Self::FileLimit(_) => "file_limit",
            Self::CheckMismatch(_) => "check_mismatch",
        }
    }

    pub fn retry(&self) -> bool {
        matches!(
            self,
            Self::RateLimited(_)
                | Self::BodyTimeout
                | Self::StorageUnavailable
                | Self::ShuttingDown
                | Self::Busy
                | Self::StorageFull
                | Self::AgencyConnectionsFull
                | Self::CalendarYearMissing(_)
        )
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let error = self.body();
        let mut resp = json_response(self.status(), &json!({ "error": error }));
        if let Self::RateLimited(wait) = &self {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if let Ok(v) = secs.max(1).to_string().parse() {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        let retry_after = match self {
            Self::StorageUnavailable | Self::ShuttingDown => Some("5"),
            Self::Busy => Some("1"),
            Self::StorageFull => Some("60"),
            Self::AgencyConnectionsFull => Some("1"),
            // An operator has to add a calendar file: retrying within seconds cannot help.
            Self::CalendarYearMissing(_) => Some("3600"),
            _ => None,
        };
        if let Some(v) = retry_after.and_then(|v| v.parse().ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }

    /// The error object an answer carries (`{"code", "message", "retry", …}`): the HTTP body's
    /// `error`, and a folder's feedback file's.
    pub fn body(&self) -> Value {
        let mut error =
            json!({"code": self.code(), "message": self.to_string(), "retry": self.retry()});
        if let Self::Document(
            ParseError::Syntax { line, column, .. }
            | ParseError::InvalidEncoding { line, column, .. }
            | ParseError::Refused { line, column, .. },
        ) = &self
        {
            if *line > 0 {
                error["line"] = json!(line);
                error["column"] = json!(column);
            }
        }
        if let Self::Document(ParseError::Refused { found, .. }) = &self {
            error["field"] = json!(found.path);
        }
        if let Self::CharsetRequired { line, column, .. } = &self {
            error["line"] = json!(line);
            error["column"] = json!(column);
        }
        if let Self::MissingColumns { columns, .. } = &self {
            error["columns"] = json!(columns);
        }
        if let Self::SheetNotFound { sheets, .. } = &self {
            error["sheets"] = json!(sheets);
        }
        if let Self::ObjectionLate { id, .. } = &self {
            error["objection_id"] = json!(id);
        }
        if let Self::RepairIneligible { id, refusals, .. } = &self {
            error["repair_id"] = json!(id);
            error["refusals"] = json!(refusals);
        }
        if let Self::InvalidCorrection(problems) = &self {
            error["problems"] = problems
                .iter()
                .map(|(f, r)| json!({"field": f, "reason": r}))
                .collect();
        }
        error
    }
}

pub fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    if let Ok(v) = "application/json; charset=utf-8".parse() {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
pub(crate) use tests::one_of_each;

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each error. The match below fails to compile when a variant is added, so the list
    /// (and the README table checked against it) cannot fall behind.
    pub(crate) fn one_of_each() -> Vec<ApiError> {
        fn listed(e: &ApiError) {
            match e {
                ApiError::UnknownAgency
                | ApiError::MissingMapping
                | ApiError::UnknownMapping(_)
                | ApiError::MappingNotAllowed(_)
                | ApiError::ArchiveNotAllowed
                | ApiError::RateLimited(_)
                | ApiError::UnsupportedMediaType { .. }
                | ApiError::PayloadTooLarge { .. }
                | ApiError::HeadersTooLarge { .. }
                | ApiError::BodyTimeout
                | ApiError::BodyRead(_)
                | ApiError::Document(_)
                | ApiError::UnknownIdType(_)
                | ApiError::InvalidSubjectId(_)
                | ApiError::NotFound(_)
                | ApiError::CorrectionNotAllowed
                | ApiError::InvalidCorrection(_)
                | ApiError::BadCorrection(_)
                | ApiError::MethodNotAllowed
                | ApiError::StorageUnavailable
                | ApiError::ShuttingDown
                | ApiError::Busy
                | ApiError::StorageFull
                | ApiError::AgencyConnectionsFull
                | ApiError::CalendarYearMissing(_)
                | ApiError::StandingNotAllowed
                | ApiError::StandingUnchanged(_)
                | ApiError::InvalidQuery(_)
                | ApiError::ObjectionNotAllowed(_)
                | ApiError::InvalidObjection(_)
                | ApiError::ObjectionLate { .. }
                | ApiError::ObjectionState(_)
                | ApiError::RepairNotAllowed(_)
                | ApiError::InvalidRepair(_)
                | ApiError::RepairIneligible { .. }
                | ApiError::RepairState(_)
                | ApiError::EvaluationDisabled
                | ApiError::AuthorizationNotConfigured
                | ApiError::Authorization(_)
                | ApiError::PublishNotAllowed
                | ApiError::CycleNotEnded(_)
                | ApiError::CharsetRequired { .. }
                | ApiError::MissingColumns { .. }
                | ApiError::SheetNotFound { .. }
                | ApiError::MalformedFile(_)
                | ApiError::FileLimit(_)
                | ApiError::CheckMismatch(_) => {}
            }
        }
        use crate::evaluation::authz::AuthzError as A;
        let doc = |e: ParseError| ApiError::Document(e);
        let all = vec![
            ApiError::UnknownAgency,
            ApiError::MissingMapping,
            ApiError::UnknownMapping("x".into()),
            ApiError::MappingNotAllowed("x".into()),
            ApiError::ArchiveNotAllowed,
            ApiError::RateLimited(Duration::from_millis(1500)),
            ApiError::UnsupportedMediaType {
                expected: "application/json",
            },
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::HeadersTooLarge {
                max_bytes: 1,
                max_fields: 1,
            },
            ApiError::BodyTimeout,
            ApiError::BodyRead("x".into()),
            doc(ParseError::Syntax {
                format: "JSON",
                line: 1,
                column: 2,
                message: "x".into(),
            }),
            doc(ParseError::UnsupportedEncoding("Big5".into())),
            doc(ParseError::InvalidEncoding {
                encoding: "GBK".into(),
                line: 1,
                column: 2,
            }),
            doc(ParseError::MislabeledUtf8("GBK".into())),
            doc(ParseError::Doctype),
            doc(ParseError::TooDeep),
            doc(ParseError::UndefinedEntity("x".into())),
            doc(ParseError::Empty),
            doc(ParseError::Shape("x".into())),
            doc(ParseError::TooManyRecords(10)),
            doc(ParseError::TooManyElements(10)),
            doc(ParseError::Refused {
                found: crate::mapping::json::Found {
                    path: "a".into(),
                    issue: JsonIssue::DuplicateKey("a".into()),
                },
                line: 1,
                column: 2,
            }),
            doc(ParseError::Refused {
                found: crate::mapping::json::Found {
                    path: "a".into(),
                    issue: JsonIssue::NotFinite,
                },
                line: 1,
                column: 2,
            }),
            ApiError::UnknownIdType("x".into()),
            ApiError::InvalidSubjectId("x".into()),
            ApiError::NotFound("receipt"),
            ApiError::CorrectionNotAllowed,
            ApiError::InvalidCorrection(vec![("content".into(), "x".into())]),
            ApiError::BadCorrection("x".into()),
            ApiError::MethodNotAllowed,
            ApiError::StorageUnavailable,
            ApiError::ShuttingDown,
            ApiError::Busy,
            ApiError::StorageFull,
            ApiError::AgencyConnectionsFull,
            ApiError::CalendarYearMissing(2027),
            ApiError::StandingNotAllowed,
            ApiError::StandingUnchanged("x".into()),
            ApiError::InvalidQuery("x".into()),
            ApiError::ObjectionNotAllowed("x".into()),
            ApiError::InvalidObjection("x".into()),
            ApiError::ObjectionLate {
                id: "x".into(),
                message: "x".into(),
            },
            ApiError::ObjectionState("x".into()),
            ApiError::RepairNotAllowed("x".into()),
            ApiError::InvalidRepair("x".into()),
            ApiError::RepairIneligible {
                id: "x".into(),
                message: "x".into(),
                refusals: Vec::new(),
            },
            ApiError::RepairState("x".into()),
            ApiError::EvaluationDisabled,
            ApiError::AuthorizationNotConfigured,
            ApiError::Authorization(A::Missing),
            ApiError::Authorization(A::Invalid),
            ApiError::Authorization(A::Expired),
            ApiError::Authorization(A::WrongScope),
            ApiError::Authorization(A::OtherSubject),
            ApiError::PublishNotAllowed,
            ApiError::CycleNotEnded("x".into()),
            ApiError::CharsetRequired {
                line: 2,
                column: 1,
                message: "x".into(),
            },
            ApiError::MissingColumns {
                columns: Vec::new(),
                message: "x".into(),
            },
            ApiError::SheetNotFound {
                sheets: vec!["Sheet1".into()],
                message: "x".into(),
            },
            ApiError::MalformedFile("x".into()),
            ApiError::FileLimit("x".into()),
            ApiError::CheckMismatch("x".into()),
        ];
        all.iter().for_each(listed);
        all
    }

    #[test]
    fn every_code_is_in_the_readme_with_its_status_and_retry() {
        let readme = include_str!("../../README.md");
        for e in one_of_each() {
            let row = format!(
                "| `{}` | {} | {} |",
                e.code(),
                e.status().as_u16(),
                if e.retry() { "yes" } else { "no" }
            );
            assert!(readme.contains(&row), "README's error table lacks {row}");
        }
    }

    #[test]
    fn codes_are_unique_and_bodies_carry_them() {
        let all = one_of_each();
        let codes: std::collections::HashSet<&str> = all.iter().map(ApiError::code).collect();
        assert_eq!(codes.len(), all.len(), "two errors share a code");
        for e in all {
            let (code, status, retry) = (e.code(), e.status(), e.retry());
            let resp = e.into_response();
            assert_eq!(resp.status(), status);
            assert_eq!(
                resp.headers().contains_key(header::RETRY_AFTER),
                retry && status != StatusCode::REQUEST_TIMEOUT,
                "{code}: Retry-After goes with every retryable answer but a body timeout"
            );
        }
    }
}
