//! Turning a correction request into a corrected record, its shares and its deadline.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::{Correction, CorrectionKind};
use crate::answer::Answer;
use crate::archive;
use crate::calendar::{Calendar, CalendarError};
use crate::casework::Refused;
use crate::config::{DestinationConfig, DestinationRole};
use crate::disclosure::Channel;
use crate::ledger::CorrectionMark;
use crate::outbox::{self, Entry, Kind};
use crate::record::{validate_owned, CanonicalRecord, FieldError, ValidationContext};
use crate::sharing::{Plan, Router};
use crate::store::Store;

/// How far an agency's clock may run ahead of the gateway's before `found_at` is refused.
const FOUND_AT_SKEW: time::Duration = time::Duration::minutes(5);

/// `POST /v1/corrections` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Source agency of the record (default: the caller).
    #[serde(default)]
    pub agency: Option<String>,
    pub record_id: String,
    pub kind: CorrectionKind,
    /// Content fields to set (null removes one); for `correct` and `change`.
    #[serde(default)]
    pub content: Option<Map<String, Value>>,
    /// A whole new canonical record instead of a content change.
    #[serde(default)]
    pub record: Option<Value>,
    /// New end of validity.
    #[serde(default)]
    pub valid_until: Option<String>,
    /// When the problem was found (RFC 3339); default now.
    #[serde(default)]
    pub found_at: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Why a correction was refused. All the caller's to fix, except `Storage`.
#[derive(Debug, thiserror::Error)]
pub enum CorrectionError {
    #[error("no record {record_id:?} from agency {agency:?} in the archive")]
    NotFound { agency: String, record_id: String },
    #[error("an agency may correct only the records it provided")]
    NotAllowed,
    #[error("the corrected record is not valid")]
    Invalid(Vec<FieldError>),
    #[error("found_at must be an RFC 3339 time, e.g. 2025-03-14T10:00:00+08:00")]
    BadFoundAt,
    #[error("found_at lies in the future: a problem cannot be found after the correction is sent (GD Art. 31 counts from its discovery)")]
    FoundAtInFuture,
    #[error("{0}")]
    Calendar(CalendarError),
    #[error("a correction with a whole record must keep its source agency and record id")]
    IdentityChanged,
    /// A list asked for a state corrections do not have.
    #[error("unknown state {0:?}: use pending, overdue, delivered_on_time, delivered_late, delivered or no_platform")]
    UnknownState(String),
    #[error("storage: {0}")]
    Storage(String),
}

impl From<CalendarError> for CorrectionError {
    fn from(e: CalendarError) -> Self {
        Self::Calendar(e.counted())
    }
}

impl CorrectionError {
    /// How a refused correction is answered (GD Art. 31): the caller's to fix, with every field's
    /// problem for an invalid record; the calendar's and the store's as every case flow answers
    /// them (`casework::Refused`).
    pub fn refused(&self) -> Refused<'_> {
        use http::StatusCode as S;
        match self {
            Self::NotFound { .. } => Refused::own(S::NOT_FOUND, "not_found", "no such record"),
            Self::NotAllowed => Refused::own(S::FORBIDDEN, "correction_not_allowed", self),
            Self::Invalid(_) => Refused::own(S::UNPROCESSABLE_ENTITY, "invalid_correction", self),
            Self::BadFoundAt
            | Self::FoundAtInFuture
            | Self::IdentityChanged
            | Self::UnknownState(_) => {
                Refused::own(S::UNPROCESSABLE_ENTITY, "bad_correction", self)
            }
            Self::Calendar(error) => Refused::Calendar {
                error,
                invalid: "bad_correction",
            },
            Self::Storage(_) => Refused::Storage,
        }
    }
}

impl Answer for CorrectionError {
    fn status(&self) -> http::StatusCode {
        self.refused().status()
    }
    fn code(&self) -> &'static str {
        self.refused().code()
    }
    fn message(&self) -> String {
        self.refused().message()
    }
    fn retry(&self) -> bool {
        self.refused().retry()
    }
    fn retry_after(&self) -> Option<u64> {
        self.refused().retry_after()
    }
    fn details(&self) -> Map<String, Value> {
        let mut details = Map::new();
        if let Self::Invalid(problems) = self {
            details.insert(
                "problems".into(),
                problems
                    .iter()
                    .map(|p| json!({"field": p.field, "reason": p.reason}))
                    .collect(),
            );
        }
        details
    }
}

/// Everything that shapes a correction besides the request.
pub struct Context<'a> {
    pub store: &'a Store,
    pub calendar: &'a Calendar,
    pub router: &'a Router,
    pub destinations: &'a [DestinationConfig],
    pub validation: ValidationContext,
    pub medical_insurance_agencies: &'a [String],
    pub working_days: u32,
    pub now: OffsetDateTime,
}

/// A correction ready for the writer.
pub struct Prepared {
    pub correction: Correction,
    pub record: CanonicalRecord,
    /// What the credit platforms may hold of the corrected record now (the ledger sends the
    /// difference as correction shares and withdrawals).
    pub plan: Plan,
    pub mark: CorrectionMark,
    /// Outside information: the corrected record for the medical-insurance platform.
    pub forward: Vec<Entry>,
}

pub fn prepare(
    ctx: Context<'_>,
    caller: &str,
    may_correct_any: bool,
    req: Request,
) -> Result<Prepared, CorrectionError> {
    let agency = req.agency.clone().unwrap_or_else(|| caller.to_string());
    if agency != caller && !may_correct_any {
        return Err(CorrectionError::NotAllowed);
    }
    let not_found = || CorrectionError::NotFound {
        agency: agency.clone(),
        record_id: req.record_id.clone(),
    };
    let storage = |e: crate::store::StoreError| CorrectionError::Storage(e.to_string());
    let (head, current) = archive::current_version(ctx.store, &agency, &req.record_id)
        .map_err(storage)?
        .ok_or_else(not_found)?;
    let found_at = match &req.found_at {
        None => ctx.now,
        Some(s) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|_| CorrectionError::BadFoundAt)?,
    };
    if found_at > ctx.now + FOUND_AT_SKEW {
        return Err(CorrectionError::FoundAtInFuture);
    }
    let along_chain = ctx.medical_insurance_agencies.contains(&agency);
    // GD Art. 31 sets the three working days for the medical-insurance side's own information;
    // outside information is forwarded to the medical-insurance platform without that deadline.
    // Past the last known calendar year the deadline is estimated never later than the truth
    // (the gateway's own duty) and marked provisional, never refused (issue #26).
    let deadline = if along_chain {
        Some(ctx.calendar.deadline_estimated(
            found_at,
            ctx.working_days,
            crate::calendar::Estimate::NeverLater,
        )?)
    } else {
        None
    };
    let current_json: Value = serde_json::from_str(current.record.get())
        .map_err(|e| CorrectionError::Storage(e.to_string()))?;
    let corrected = corrected_json(current_json, &req)?;
    let validation = ValidationContext {
        authenticated_agency: Some(agency.clone()),
        ..ctx.validation.clone()
    };
    let record = validate_owned(corrected, &validation).map_err(CorrectionError::Invalid)?;
    if record.source.agency != agency || record.source.record_id != req.record_id {
        return Err(CorrectionError::IdentityChanged);
    }
    let id = uuid::Uuid::new_v4().to_string();
    let standing =
        crate::ledger::recheck::standing_of(ctx.store, &head.subject).map_err(storage)?;
    let plan = ctx.router.plan(&record, standing, ctx.now);
    let marker =
        json!({"id": id, "kind": req.kind, "reason": req.reason.clone().unwrap_or_default()});
    let forward = if along_chain {
        Vec::new()
    } else {
        forward_entries(&ctx, &record, &id, &marker)?
    };
    let correction = Correction {
        id: id.clone(),
        kind: req.kind,
        agency,
        record_id: req.record_id,
        version: 0,
        requested_by: caller.to_string(),
        reason: req.reason.unwrap_or_default(),
        found_at: found_at.to_offset(crate::calendar::CHINA_OFFSET),
        received_at: ctx.now.to_offset(crate::calendar::CHINA_OFFSET),
        deadline: deadline.map(|d| d.at),
        deadline_provisional: deadline.is_some_and(|d| d.provisional),
        deadline_basis: deadline.and_then(|d| d.basis(found_at, ctx.working_days)),
        destinations: Vec::new(),
        direction: if along_chain {
            "along_chain".into()
        } else {
            "to_medical_insurance".into()
        },
    };
    Ok(Prepared {
        correction,
        record,
        plan,
        mark: CorrectionMark { id, marker },
        forward,
    })
}

/// The corrected record for every medical-insurance platform (GD Art. 31, second clause): the
/// whole canonical record, so the platform can apply it to its own archive. The medical-insurance
/// department is the credit manager itself, not a disclosure channel, so no channel filter
/// applies; the receiver must not disclose it further.
fn forward_entries(
    ctx: &Context<'_>,
    record: &CanonicalRecord,
    id: &str,
    marker: &Value,
) -> Result<Vec<Entry>, CorrectionError> {
    let mut payload = record.to_json();
    payload["correction"] = marker.clone();
    let payload = serde_json::value::to_raw_value(&payload)
        .map_err(|e| CorrectionError::Storage(e.to_string()))?;
    Ok(ctx
        .destinations
        .iter()
        .filter(|d| d.role == DestinationRole::MedicalInsurancePlatform)
        .map(|d| Entry {
            idempotency_key: outbox::idempotency_key(
                &d.id,
                &record.source.agency,
                &record.source.record_id,
                0,
                Channel::GovShare,
                Kind::Correction,
                id,
            ),
            destination: d.id.clone(),
            channel: Channel::GovShare,
            kind: Kind::Correction,
            agency: record.source.agency.clone(),
            record_id: record.source.record_id.clone(),
            version: 0,
            rule: "correction-forward".into(),
            enqueued_at: ctx.now.to_offset(crate::calendar::CHINA_OFFSET),
            enqueued_unix: ctx.now.unix_timestamp(),
            correction_id: Some(id.to_string()),
            payload: Some(payload.clone()),
            source: None,
        })
        .collect())
}

fn corrected_json(mut current: Value, req: &Request) -> Result<Value, CorrectionError> {
    if let Some(record) = &req.record {
        return Ok(record.clone());
    }
    if let Some(content) = current.get_mut("content").and_then(Value::as_object_mut) {
        if let Some(changes) = &req.content {
            for (k, v) in changes {
                if v.is_null() {
                    content.remove(k);
                } else {
                    content.insert(k.clone(), v.clone());
                }
            }
        }
        if req.kind == CorrectionKind::Invalidate {
            content.insert("invalidated".into(), Value::Bool(true));
        }
    }
    if let Some(until) = &req.valid_until {
        current["valid_until"] = Value::String(until.clone());
    }
    Ok(current)
}
