//! What agencies may do with evaluation results through the agency API: the authorized query
//! (`GET /v1/evaluations/{id_type}/{id}`, GD Art. 21) and the yearly publication (`POST
//! /v1/evaluations/{year}/publish`, LS Arts. 24, 27). The server's route reads the request (the
//! subject in the path, the bearer token) and answers what these return; the rules are here.
//!
//! Never does: read a request or a header, or answer with a status of its own choosing: every
//! refusal is a [`Refused`], answered through `crate::answer::Answer`.
//!
//! Invariant: every authorized query, answered or refused, is in the audit chain before the
//! caller is answered (the subject as a hash, never the token).

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::authz::{Authority, AuthzError};
use super::engine::{Engine, EvaluationError};
use super::publish::PublishError;
use crate::answer::{Answer, StorageUnavailable};
use crate::audit::AuditEvent;
use crate::calendar::Calendar;
use crate::exchange::{ApplyJob, CommitterHandle};
use crate::subject::SubjectId;
use crate::telemetry::events;

/// Why an agency's evaluation request was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// `evaluation.enabled` is off: the operator's to turn on.
    #[error("credit evaluation is not enabled on this gateway")]
    Disabled,
    /// No issuer key is configured (`evaluation.authorization_keys`).
    #[error("authorized queries are not configured on this gateway: the operator adds the issuer's public key")]
    AuthorizationNotConfigured,
    /// GD Art. 21: the subject's authorization is missing or does not hold.
    #[error("{0}")]
    Authorization(AuthzError),
    #[error("this agency may not publish evaluation results (LS Art. 24)")]
    PublishNotAllowed,
    #[error("{0}")]
    CycleNotEnded(String),
    #[error("the year must be a number like 2025")]
    BadYear,
    #[error("no such evaluation result")]
    NoResult,
    /// The store could not be read or the audit entry written; a retry may help.
    #[error("storage: {0}")]
    Storage(String),
}

impl From<EvaluationError> for Refused {
    fn from(e: EvaluationError) -> Self {
        Self::Storage(e.to_string())
    }
}

impl From<crate::exchange::WriteError> for Refused {
    fn from(e: crate::exchange::WriteError) -> Self {
        Self::Storage(e.to_string())
    }
}

impl Answer for Refused {
    fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::Disabled | Self::AuthorizationNotConfigured => S::SERVICE_UNAVAILABLE,
            Self::Authorization(AuthzError::OtherSubject | AuthzError::WrongScope) => S::FORBIDDEN,
            Self::Authorization(_) => S::UNAUTHORIZED,
            Self::PublishNotAllowed => S::FORBIDDEN,
            Self::CycleNotEnded(_) => S::CONFLICT,
            Self::BadYear => S::BAD_REQUEST,
            Self::NoResult => S::NOT_FOUND,
            Self::Storage(_) => StorageUnavailable.status(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::Disabled => "evaluation_disabled",
            Self::AuthorizationNotConfigured => "authorization_not_configured",
            Self::Authorization(e) => match e {
                AuthzError::Missing => "authorization_missing",
                AuthzError::Invalid | AuthzError::UnknownIssuer | AuthzError::BadLifetime => {
                    "authorization_invalid"
                }
                AuthzError::Expired => "authorization_expired",
                AuthzError::WrongScope => "authorization_scope",
                AuthzError::OtherSubject => "authorization_other_subject",
            },
            Self::PublishNotAllowed => "publish_not_allowed",
            Self::CycleNotEnded(_) => "cycle_not_ended",
            Self::BadYear => "invalid_query",
            Self::NoResult => "not_found",
            Self::Storage(_) => StorageUnavailable.code(),
        }
    }
    fn message(&self) -> String {
        match self {
            Self::Storage(_) => StorageUnavailable.message(),
            _ => self.to_string(),
        }
    }
    /// Turning evaluation on or configuring an issuer is the operator's, not a matter of time.
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

/// What the evaluation requests need of the running gateway.
pub struct Desk<'a> {
    /// `None` when `evaluation.enabled` is off.
    pub engine: Option<&'a Engine>,
    pub authority: &'a Authority,
    pub committer: &'a CommitterHandle,
    pub now: OffsetDateTime,
}

impl Desk<'_> {
    fn engine(&self) -> Result<&Engine, Refused> {
        self.engine.ok_or(Refused::Disabled)
    }

    /// Refused unless the gateway answers authorized queries: evaluation on and an issuer's key
    /// configured. The route asks before it reads the subject and the token.
    pub fn admit_query(&self) -> Result<&Engine, Refused> {
        let engine = self.engine()?;
        if !self.authority.is_configured() {
            return Err(Refused::AuthorizationNotConfigured);
        }
        Ok(engine)
    }

    /// The authorized query (GD Art. 21): the subject's current grade and its reasons, for a
    /// caller the subject authorized with `token`. Refused and answered alike go into the audit
    /// chain first.
    pub async fn authorized_query(
        &self,
        caller: &str,
        subject: &SubjectId,
        token: Option<&str>,
    ) -> Result<Value, Refused> {
        let engine = self.admit_query()?;
        let mut data = Map::new();
        data.insert("caller".into(), json!(caller));
        data.insert("subject".into(), json!(subject.log_safe(&engine.store)));
        let claims = match self.authority.verify(token, subject, self.now) {
            Ok(c) => c,
            Err(e) => {
                data.insert("outcome".into(), json!("refused"));
                data.insert("reason".into(), json!(e.to_string()));
                self.committer
                    .apply(ApplyJob::new(AuditEvent::EvaluationQuery, data))
                    .await?;
                events::authorized_query(caller, "refused");
                return Err(Refused::Authorization(e));
            }
        };
        let result = super::ops::current(engine, subject, self.now)?;
        let outcome = if result.is_some() {
            "answered"
        } else {
            "no_result"
        };
        data.insert("issuer".into(), json!(claims.iss));
        data.insert("token_id".into(), json!(claims.jti));
        data.insert("outcome".into(), json!(outcome));
        if let Some(r) = &result {
            data.insert(
                "record".into(),
                r.get("record").cloned().unwrap_or_default(),
            );
        }
        self.committer
            .apply(ApplyJob::new(AuditEvent::EvaluationQuery, data))
            .await?;
        events::authorized_query(caller, outcome);
        let result = result.ok_or(Refused::NoResult)?;
        Ok(json!({"evaluation": result, "basis": "GD Art. 21"}))
    }

    /// Publish a finished year's results whose objection window has closed (LS Arts. 24, 27), by
    /// one of `publishers` (`evaluation.publishers`).
    pub async fn publish(
        &self,
        publishers: &[String],
        calendar: &Calendar,
        filing_working_days: u32,
        caller: &str,
        year: &str,
    ) -> Result<Value, Refused> {
        let engine = self.engine()?;
        if !publishers.iter().any(|p| p == caller) {
            return Err(Refused::PublishNotAllowed);
        }
        let year: i32 = year
            .parse()
            .ok()
            .filter(|y| (2000..=2100).contains(y))
            .ok_or(Refused::BadYear)?;
        let report = super::publish::publish(
            engine,
            self.committer,
            calendar,
            filing_working_days,
            year,
            self.now,
            caller,
        )
        .await
        .map_err(|e| match e {
            PublishError::CycleNotEnded(_) => Refused::CycleNotEnded(e.to_string()),
            PublishError::Evaluation(e) => e.into(),
        })?;
        Ok(serde_json::to_value(&report).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authorization_for_another_subject_or_scope_is_forbidden_the_rest_unauthorized() {
        use http::StatusCode as S;
        assert_eq!(
            Refused::Authorization(AuthzError::OtherSubject).status(),
            S::FORBIDDEN
        );
        assert_eq!(
            Refused::Authorization(AuthzError::WrongScope).status(),
            S::FORBIDDEN
        );
        assert_eq!(
            Refused::Authorization(AuthzError::Expired).status(),
            S::UNAUTHORIZED
        );
        assert_eq!(
            Refused::Authorization(AuthzError::UnknownIssuer).code(),
            "authorization_invalid"
        );
    }

    #[test]
    fn only_the_store_passes_with_time() {
        assert!(Refused::Storage("x".into()).retry());
        assert!(!Refused::Disabled.retry());
        assert!(!Refused::AuthorizationNotConfigured.retry());
        assert_eq!(
            Refused::Storage("disk path".into()).message(),
            StorageUnavailable.message(),
            "no engine detail reaches the caller"
        );
    }
}
