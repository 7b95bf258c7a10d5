//! The one place where errors become HTTP responses: a stable machine-readable `code`, a message
//! for people, never an internal detail.
//!
//! Body: `{"error": {"code": "...", "message": "...", "retry": ..., ...details}}`.
//!
//! [`ApiError`] holds the transport's own refusals (the certificate, the rate, the media type,
//! the body's size and timing, the path, the store's and the gateway's unavailability). A
//! domain's refusal arrives as [`ApiError::Refused`], carrying the domain's error, which says its
//! own status, code, retry, `Retry-After` and details (`crate::answer::Answer`, beside the code
//! that raises it: `objections::flow::ObjectionError`, `repairs::flow::RepairError`,
//! `corrections::request::CorrectionError`, `ledger::agency::Refused`,
//! `evaluation::agency::Refused`, `files::FileError`, `mapping::ParseError`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Response, StatusCode};
use serde_json::Value;

use crate::answer::Answer;
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
    #[error("unknown id type {0:?}")]
    UnknownIdType(String),
    #[error("invalid subject identifier: {0}")]
    InvalidSubjectId(String),
    #[error("no such {0}")]
    NotFound(&'static str),
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
    #[error("{0}")]
    InvalidQuery(String),
    /// A file is not what its check file says (digest, record count, name): refused whole.
    #[error("{0}")]
    CheckMismatch(String),
    /// A domain refused: answered as its error says (`crate::answer::Answer`).
    #[error("{}", .0.message())]
    Refused(Box<dyn Answer>),
}

impl ApiError {
    /// A domain's refusal, answered as the domain says.
    pub fn refused(e: impl Answer + 'static) -> Self {
        Self::Refused(Box::new(e))
    }
}

/// A document refused whole (`mapping::ParseError` says its code and position).
impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        Self::refused(e)
    }
}

/// A file refused whole (`files::FileError`).
impl From<crate::files::FileError> for ApiError {
    fn from(e: crate::files::FileError) -> Self {
        Self::refused(e)
    }
}

macro_rules! refused_from {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                Self::refused(e)
            }
        }
    )*};
}

refused_from!(
    crate::objections::flow::ObjectionError,
    crate::objections::casework::ResolveError,
    crate::repairs::flow::RepairError,
    crate::corrections::request::CorrectionError,
    crate::ledger::agency::Refused,
    crate::evaluation::agency::Refused,
);

/// The agency API's errors answer through the same trait as every other (`crate::answer`).
impl Answer for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::UnknownAgency | Self::MappingNotAllowed(_) | Self::ArchiveNotAllowed => {
                StatusCode::FORBIDDEN
            }
            Self::CheckMismatch(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MissingMapping
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
            | Self::AgencyConnectionsFull => StatusCode::SERVICE_UNAVAILABLE,
            Self::Refused(e) => e.status(),
        }
    }

    /// The stable code agencies program against.
    fn code(&self) -> &'static str {
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
            Self::UnknownIdType(_) => "unknown_id_type",
            Self::InvalidSubjectId(_) => "invalid_subject_id",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::StorageUnavailable => "storage_unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::Busy => "busy",
            Self::StorageFull => "storage_full",
            Self::AgencyConnectionsFull => "agency_connections_full",
            Self::InvalidQuery(_) => "invalid_query",
            Self::CheckMismatch(_) => "check_mismatch",
            Self::Refused(e) => e.code(),
        }
    }

    fn message(&self) -> String {
        self.to_string()
    }

    fn retry(&self) -> bool {
        match self {
            Self::Refused(e) => e.retry(),
            other => matches!(
                other,
                Self::RateLimited(_)
                    | Self::BodyTimeout
                    | Self::StorageUnavailable
                    | Self::ShuttingDown
                    | Self::Busy
                    | Self::StorageFull
                    | Self::AgencyConnectionsFull
            ),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            // Rounded up: a client waiting the whole seconds never arrives early.
            Self::RateLimited(wait) => {
                Some((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
            }
            Self::StorageUnavailable | Self::ShuttingDown => Some(5),
            Self::Busy | Self::AgencyConnectionsFull => Some(1),
            Self::StorageFull => Some(60),
            Self::Refused(e) => e.retry_after(),
            _ => None,
        }
    }

    fn details(&self) -> serde_json::Map<String, Value> {
        match self {
            Self::Refused(e) => e.details(),
            _ => serde_json::Map::new(),
        }
    }
}

impl ApiError {
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut resp = json_response(self.status(), &crate::answer::body(&self));
        if let Some(v) = self
            .retry_after()
            .and_then(|secs| secs.to_string().parse().ok())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }

    /// The error object an answer carries (`{"code", "message", "retry", …}`): the HTTP body's
    /// `error`, and a folder's feedback file's.
    pub fn body(&self) -> Value {
        crate::answer::error(self)
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
    use crate::calendar::CalendarError;
    use crate::corrections::request::CorrectionError;
    use crate::evaluation::agency::Refused as EvaluationRefused;
    use crate::evaluation::authz::AuthzError;
    use crate::files::FileError;
    use crate::ledger::agency::Refused as LedgerRefused;
    use crate::mapping::json::{Found, JsonIssue};
    use crate::objections::casework::ResolveError;
    use crate::objections::flow::ObjectionError;
    use crate::repairs::flow::RepairError;

    /// Every variant, so that adding one without listing it here does not compile: the list (and
    /// the README's and the agency guide's tables checked against it) cannot fall behind.
    #[allow(clippy::too_many_lines)]
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
            | ApiError::UnknownIdType(_)
            | ApiError::InvalidSubjectId(_)
            | ApiError::NotFound(_)
            | ApiError::MethodNotAllowed
            | ApiError::StorageUnavailable
            | ApiError::ShuttingDown
            | ApiError::Busy
            | ApiError::StorageFull
            | ApiError::AgencyConnectionsFull
            | ApiError::InvalidQuery(_)
            | ApiError::CheckMismatch(_)
            | ApiError::Refused(_) => {}
        }
    }

    fn objection(e: &ObjectionError) {
        use ObjectionError as E;
        match e {
            E::NotFound(_)
            | E::NotAllowed(_)
            | E::Invalid(_)
            | E::Late { .. }
            | E::WrongState(_)
            | E::UnknownState(_)
            | E::Calendar(_)
            | E::Storage(_) => {}
        }
    }

    fn repair(e: &RepairError) {
        use RepairError as E;
        match e {
            E::NotFound(_)
            | E::NotAllowed(_)
            | E::Invalid(_)
            | E::Ineligible { .. }
            | E::WrongState(_)
            | E::Conflict(_)
            | E::UnknownState(_)
            | E::Calendar(_)
            | E::Storage(_) => {}
        }
    }

    fn correction(e: &CorrectionError) {
        use CorrectionError as E;
        match e {
            E::NotFound { .. }
            | E::NotAllowed
            | E::Invalid(_)
            | E::BadFoundAt
            | E::FoundAtInFuture
            | E::Calendar(_)
            | E::IdentityChanged
            | E::UnknownState(_)
            | E::Storage(_) => {}
        }
    }

    fn ledger(e: &LedgerRefused) {
        use LedgerRefused as E;
        match e {
            E::ArchiveNotAllowed
            | E::StandingNotAllowed
            | E::InvalidQuery(_)
            | E::NotFound(_)
            | E::StandingUnchanged(_)
            | E::Storage(_) => {}
        }
    }

    fn evaluation(e: &EvaluationRefused) {
        use EvaluationRefused as E;
        match e {
            E::Disabled
            | E::AuthorizationNotConfigured
            | E::Authorization(_)
            | E::PublishNotAllowed
            | E::CycleNotEnded(_)
            | E::BadYear
            | E::NoResult
            | E::Storage(_) => {}
        }
    }

    fn file(e: &FileError) {
        match e {
            FileError::Document(_)
            | FileError::CharsetRequired { .. }
            | FileError::MissingColumns(_)
            | FileError::SheetNotFound { .. }
            | FileError::Malformed(_)
            | FileError::Limit(_)
            | FileError::Io(_)
            | FileError::Stopped => {}
        }
    }

    fn parse(e: &ParseError) {
        match e {
            ParseError::Syntax { .. }
            | ParseError::UnsupportedEncoding(_)
            | ParseError::InvalidEncoding { .. }
            | ParseError::MislabeledUtf8(_)
            | ParseError::Doctype
            | ParseError::TooDeep
            | ParseError::UndefinedEntity(_)
            | ParseError::Empty
            | ParseError::Shape(_)
            | ParseError::TooManyRecords(_)
            | ParseError::Refused { .. }
            | ParseError::TooManyElements(_)
            | ParseError::TooManyChildren { .. } => {}
        }
    }

    fn before_the_calendar() -> CalendarError {
        CalendarError::OutsideKnownYears {
            date: time::macros::date!(2023 - 03 - 14),
            first: 2024,
            last: 2026,
        }
    }

    /// One of each error the agency API answers with: the transport's and every domain's.
    pub(crate) fn one_of_each() -> Vec<ApiError> {
        let parse_errors = vec![
            ParseError::Syntax {
                format: "JSON",
                line: 1,
                column: 2,
                message: "x".into(),
            },
            ParseError::UnsupportedEncoding("Big5".into()),
            ParseError::InvalidEncoding {
                encoding: "GBK".into(),
                line: 1,
                column: 2,
            },
            ParseError::MislabeledUtf8("GBK".into()),
            ParseError::Doctype,
            ParseError::TooDeep,
            ParseError::UndefinedEntity("x".into()),
            ParseError::Empty,
            ParseError::Shape("x".into()),
            ParseError::TooManyRecords(10),
            ParseError::TooManyElements(10),
            ParseError::Refused {
                found: Found {
                    path: "a".into(),
                    issue: JsonIssue::DuplicateKey("a".into()),
                },
                line: 1,
                column: 2,
            },
            ParseError::Refused {
                found: Found {
                    path: "a".into(),
                    issue: JsonIssue::NotFinite,
                },
                line: 1,
                column: 2,
            },
        ];
        parse_errors.iter().for_each(parse);
        let file_errors = vec![
            FileError::CharsetRequired { line: 2, column: 1 },
            FileError::MissingColumns(Vec::new()),
            FileError::SheetNotFound {
                name: "x".into(),
                sheets: vec!["Sheet1".into()],
            },
            FileError::Malformed("x".into()),
            FileError::Limit("x".into()),
            FileError::Io("x".into()),
        ];
        file_errors.iter().for_each(file);
        let objection_errors = vec![
            ObjectionError::NotFound("objection"),
            ObjectionError::NotAllowed("x"),
            ObjectionError::Invalid("x".into()),
            ObjectionError::Late {
                id: "x".into(),
                deadline: "x".into(),
            },
            ObjectionError::WrongState(crate::objections::State::Rejected),
            ObjectionError::UnknownState("x".into()),
            ObjectionError::Calendar(before_the_calendar()),
            ObjectionError::Storage("x".into()),
        ];
        objection_errors.iter().for_each(objection);
        let repair_errors = vec![
            RepairError::NotFound("repair"),
            RepairError::NotAllowed("x"),
            RepairError::Invalid("x".into()),
            RepairError::Ineligible {
                id: "x".into(),
                refusals: Vec::new(),
            },
            RepairError::WrongState(crate::repairs::State::Refused),
            RepairError::Conflict("x".into()),
            RepairError::UnknownState("x".into()),
            RepairError::Calendar(before_the_calendar()),
            RepairError::Storage("x".into()),
        ];
        repair_errors.iter().for_each(repair);
        let correction_errors = vec![
            CorrectionError::NotFound {
                agency: "x".into(),
                record_id: "x".into(),
            },
            CorrectionError::NotAllowed,
            CorrectionError::Invalid(Vec::new()),
            CorrectionError::BadFoundAt,
            CorrectionError::FoundAtInFuture,
            CorrectionError::Calendar(before_the_calendar()),
            CorrectionError::IdentityChanged,
            CorrectionError::UnknownState("x".into()),
            CorrectionError::Storage("x".into()),
        ];
        correction_errors.iter().for_each(correction);
        let ledger_errors = vec![
            LedgerRefused::ArchiveNotAllowed,
            LedgerRefused::StandingNotAllowed,
            LedgerRefused::InvalidQuery("x".into()),
            LedgerRefused::NotFound("record"),
            LedgerRefused::StandingUnchanged("x".into()),
            LedgerRefused::Storage("x".into()),
        ];
        ledger_errors.iter().for_each(ledger);
        let evaluation_errors = vec![
            EvaluationRefused::Disabled,
            EvaluationRefused::AuthorizationNotConfigured,
            EvaluationRefused::Authorization(AuthzError::Missing),
            EvaluationRefused::Authorization(AuthzError::Invalid),
            EvaluationRefused::Authorization(AuthzError::Expired),
            EvaluationRefused::Authorization(AuthzError::WrongScope),
            EvaluationRefused::Authorization(AuthzError::OtherSubject),
            EvaluationRefused::PublishNotAllowed,
            EvaluationRefused::CycleNotEnded("x".into()),
            EvaluationRefused::BadYear,
            EvaluationRefused::NoResult,
            EvaluationRefused::Storage("x".into()),
        ];
        evaluation_errors.iter().for_each(evaluation);
        let mut all = vec![
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
            ApiError::UnknownIdType("x".into()),
            ApiError::InvalidSubjectId("x".into()),
            ApiError::NotFound("receipt"),
            ApiError::MethodNotAllowed,
            ApiError::StorageUnavailable,
            ApiError::ShuttingDown,
            ApiError::Busy,
            ApiError::StorageFull,
            ApiError::AgencyConnectionsFull,
            ApiError::InvalidQuery("x".into()),
            ApiError::CheckMismatch("x".into()),
        ];
        all.extend(parse_errors.into_iter().map(ApiError::from));
        all.extend(file_errors.into_iter().map(ApiError::from));
        all.extend(objection_errors.into_iter().map(ApiError::from));
        all.extend(repair_errors.into_iter().map(ApiError::from));
        all.extend(correction_errors.into_iter().map(ApiError::from));
        all.extend(ledger_errors.into_iter().map(ApiError::from));
        all.extend(evaluation_errors.into_iter().map(ApiError::from));
        all.push(ApiError::from(ResolveError::CorrectionUnreadable(
            "x".into(),
        )));
        all.push(ApiError::from(ResolveError::Correction(
            crate::corrections::request::CorrectionError::Invalid(Vec::new()),
        )));
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

    /// A code means one status and one retry, whichever domain answers with it (`not_found` from
    /// a path, an objection or a ledger read alike), and every retryable answer but a body
    /// timeout says when to come back.
    #[test]
    fn a_code_has_one_status_and_retry_and_bodies_carry_it() {
        let mut seen: std::collections::HashMap<&str, (StatusCode, bool)> = Default::default();
        for e in one_of_each() {
            let (code, status, retry) = (e.code(), e.status(), e.retry());
            let first = *seen.entry(code).or_insert((status, retry));
            assert_eq!(first, (status, retry), "{code} answers two ways");
            let resp = e.into_response();
            assert_eq!(resp.status(), status);
            assert_eq!(
                resp.headers().contains_key(header::RETRY_AFTER),
                retry && status != StatusCode::REQUEST_TIMEOUT,
                "{code}: Retry-After goes with every retryable answer but a body timeout"
            );
        }
    }

    #[test]
    fn a_domain_refusal_keeps_its_details_and_no_storage_detail_leaks() {
        let late = ApiError::from(ObjectionError::Late {
            id: "obj-7".into(),
            deadline: "2026-03-02".into(),
        });
        assert_eq!(late.body()["objection_id"], "obj-7");
        assert_eq!(late.body()["code"], "objection_late");
        let stored = ApiError::from(RepairError::Storage("sled: /var/lib/x corrupt".into()));
        assert_eq!(stored.body()["code"], "storage_unavailable");
        assert!(!stored.body()["message"].as_str().unwrap().contains("sled"));
        let resp = ApiError::from(CorrectionError::Calendar(before_the_calendar())).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3600");
    }
}
