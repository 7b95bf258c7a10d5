//! What agencies may ask of the publication ledger and of a subject's standing through the agency
//! API: what each platform holds (or held at `as_of`) of one record (`GET
//! /v1/ledger/records/{agency}/{record_id}`) or of a subject (`GET
//! /v1/ledger/subjects/{id_type}/{id}`), and the subject's exit and re-entry (`POST
//! /v1/subjects/{id_type}/{id}/exit|reentry`, LS Art. 20). The server's route reads the path and
//! query and answers what these return; who may ask, and the refusals, are here.
//!
//! Never does: read a request, or decide a status outside its [`Refused`]'s `Answer`.

use serde_json::Value;
use time::OffsetDateTime;

use super::ops::{set_standing, OpContext};
use super::{query, recheck};
use crate::answer::{Answer, StorageUnavailable};
use crate::command::OpError;
use crate::store::{Store, StoreError};
use crate::subject::SubjectId;

/// Why an agency's ledger or standing request was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("this agency may not read subject archives")]
    ArchiveNotAllowed,
    #[error(
        "only the medical-insurance platform may mark a subject exited or re-entered (LS Art. 20)"
    )]
    StandingNotAllowed,
    #[error("{0}")]
    InvalidQuery(String),
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The subject already stands as asked (exited twice, re-entered without an exit).
    #[error("{0}")]
    StandingUnchanged(String),
    #[error("storage: {0}")]
    Storage(String),
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        Self::Storage(e.to_string())
    }
}

impl Answer for Refused {
    fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::ArchiveNotAllowed | Self::StandingNotAllowed => S::FORBIDDEN,
            Self::InvalidQuery(_) => S::BAD_REQUEST,
            Self::NotFound(_) => S::NOT_FOUND,
            Self::StandingUnchanged(_) => S::CONFLICT,
            Self::Storage(_) => StorageUnavailable.status(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::ArchiveNotAllowed => "archive_not_allowed",
            Self::StandingNotAllowed => "standing_not_allowed",
            Self::InvalidQuery(_) => "invalid_query",
            Self::NotFound(_) => "not_found",
            Self::StandingUnchanged(_) => "standing_unchanged",
            Self::Storage(_) => StorageUnavailable.code(),
        }
    }
    fn message(&self) -> String {
        match self {
            Self::Storage(_) => StorageUnavailable.message(),
            _ => self.to_string(),
        }
    }
    fn retry(&self) -> bool {
        matches!(self, Self::Storage(_))
    }
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Storage(_) => StorageUnavailable.retry_after(),
            _ => None,
        }
    }
}

/// Who asks: an agency's id and whether it reads archives (`agencies.*.read_archive`).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub id: &'a str,
    pub reads_archives: bool,
}

/// `as_of` as given in the query (a date, the end of that day in China time, or an RFC 3339
/// time), else now.
fn instant(as_of: Option<&str>, now: OffsetDateTime) -> Result<OffsetDateTime, Refused> {
    match as_of {
        None => Ok(now),
        Some(text) => query::parse_as_of(text).map_err(Refused::InvalidQuery),
    }
}

/// What each platform holds (or held at `as_of`) of one record: for agencies with archive reads,
/// and for the agency that provided the record.
pub fn record_holdings(
    store: &Store,
    now: OffsetDateTime,
    caller: Caller<'_>,
    (agency, record_id): (&str, &str),
    as_of: Option<&str>,
    destination: Option<&str>,
) -> Result<Value, Refused> {
    if !caller.reads_archives && caller.id != agency {
        return Err(Refused::ArchiveNotAllowed);
    }
    let at = instant(as_of, now)?;
    query::record(store, agency, record_id, at, destination)?.ok_or(Refused::NotFound("record"))
}

/// What each platform holds (or held at `as_of`) of every record of a subject: for agencies with
/// archive reads.
pub fn subject_holdings(
    store: &Store,
    now: OffsetDateTime,
    caller: Caller<'_>,
    subject: &SubjectId,
    as_of: Option<&str>,
    destination: Option<&str>,
) -> Result<Value, Refused> {
    if !caller.reads_archives {
        return Err(Refused::ArchiveNotAllowed);
    }
    let at = instant(as_of, now)?;
    query::subject(store, &subject.archive_key(store), at, destination)?
        .ok_or(Refused::NotFound("subject"))
}

/// LS Art. 20: a subject that leaves medical-insurance service or dies is removed from view and
/// from every platform; if it becomes a subject again, its information returns. Only the
/// medical-insurance platform(s) say so (`medical_insurance`); `ctx.by` is the caller.
pub async fn change_standing(
    ctx: &OpContext<'_>,
    medical_insurance: &[String],
    (id_type, id): (&str, &str),
    exit: bool,
    request: recheck::StandingRequest,
) -> Result<Value, Refused> {
    if !medical_insurance.iter().any(|a| a == ctx.by) {
        return Err(Refused::StandingNotAllowed);
    }
    set_standing(ctx, id_type, id, exit, request)
        .await
        .map_err(|e| match e {
            OpError::Invalid(m) => Refused::InvalidQuery(m),
            OpError::NotFound(what) => Refused::NotFound(what),
            OpError::Conflict(m) => Refused::StandingUnchanged(m),
            OpError::Storage(m) => Refused::Storage(m),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_providing_agency_reads_its_own_record_ledger_without_archive_reads() {
        let (store, _) = crate::store::memory::store();
        let now = OffsetDateTime::UNIX_EPOCH;
        let other = Caller {
            id: "tax",
            reads_archives: false,
        };
        assert!(matches!(
            record_holdings(&store, now, other, ("health", "r1"), None, None),
            Err(Refused::ArchiveNotAllowed)
        ));
        let owner = Caller {
            id: "health",
            reads_archives: false,
        };
        assert!(matches!(
            record_holdings(&store, now, owner, ("health", "r1"), None, None),
            Err(Refused::NotFound("record"))
        ));
        assert!(matches!(
            record_holdings(&store, now, owner, ("health", "r1"), Some("soon"), None),
            Err(Refused::InvalidQuery(_))
        ));
    }
}
