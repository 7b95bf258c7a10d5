//! Turning a correction request into a corrected record, its shares and its deadline.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::{Correction, CorrectionKind};
use crate::archive::{self, RecordHead, Version};
use crate::calendar::{Calendar, CalendarError};
use crate::clock::rfc3339;
use crate::config::{DestinationConfig, DestinationRole};
use crate::disclosure::{self, Channel, Decision, DisclosureRules};
use crate::record::{validate_owned, CanonicalRecord, FieldError, ValidationContext};
use crate::sharing::PlannedShare;
use crate::store::{Store, SEP};

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
    #[error("{0}")]
    Calendar(#[from] CalendarError),
    #[error("a correction with a whole record must keep its source agency and record id")]
    IdentityChanged,
    #[error("storage: {0}")]
    Storage(String),
}

/// Everything that shapes a correction besides the request.
pub struct Context<'a> {
    pub store: &'a Store,
    pub calendar: &'a Calendar,
    pub disclosure: &'a DisclosureRules,
    pub destinations: &'a [DestinationConfig],
    pub validation: ValidationContext,
    pub medical_insurance_agencies: &'a [String],
    pub working_days: u32,
    pub now: OffsetDateTime,
}

pub fn prepare(
    ctx: Context<'_>,
    caller: &str,
    may_correct_any: bool,
    req: Request,
) -> Result<(Correction, CanonicalRecord, Vec<PlannedShare>), CorrectionError> {
    let agency = req.agency.clone().unwrap_or_else(|| caller.to_string());
    if agency != caller && !may_correct_any {
        return Err(CorrectionError::NotAllowed);
    }
    let not_found = || CorrectionError::NotFound {
        agency: agency.clone(),
        record_id: req.record_id.clone(),
    };
    let storage = |e: crate::store::StoreError| CorrectionError::Storage(e.to_string());
    let head: RecordHead = ctx
        .store
        .get_json(&archive::record_head_key(&agency, &req.record_id))
        .map_err(storage)?
        .ok_or_else(not_found)?;
    let version_key = format!(
        "arc/{}{SEP}{:02}{SEP}{agency}{SEP}{}{SEP}{:010}",
        head.subject,
        head.category.number(),
        req.record_id,
        head.version
    );
    let current: Version = ctx
        .store
        .get_json(&version_key)
        .map_err(storage)?
        .ok_or_else(not_found)?;
    let found_at = match &req.found_at {
        None => ctx.now,
        Some(s) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|_| CorrectionError::BadFoundAt)?,
    };
    let deadline = ctx.calendar.deadline(found_at, ctx.working_days)?;
    let current_json: Value = serde_json::from_str(current.record.get())
        .map_err(|e| CorrectionError::Storage(e.to_string()))?;
    let corrected = corrected_json(current_json, &req)?;
    let validation = ValidationContext {
        authenticated_agency: Some(agency.clone()),
        ..ctx.validation
    };
    let record = validate_owned(corrected, &validation).map_err(CorrectionError::Invalid)?;
    if record.source.agency != agency || record.source.record_id != req.record_id {
        return Err(CorrectionError::IdentityChanged);
    }
    let id = uuid::Uuid::new_v4().to_string();
    let along_chain = ctx.medical_insurance_agencies.contains(&agency);
    let targets: Vec<(String, Channel)> = if along_chain {
        archive::shared_with(ctx.store, &agency, &req.record_id).map_err(storage)?
    } else {
        ctx.destinations
            .iter()
            .filter(|d| d.role == DestinationRole::MedicalInsurancePlatform)
            .map(|d| (d.id.clone(), Channel::GovShare))
            .collect()
    };
    let marker =
        json!({"id": id, "kind": req.kind, "reason": req.reason.clone().unwrap_or_default()});
    let shares = targets
        .iter()
        .map(|(dest, channel)| {
            let mut payload = match disclosure::filter(&record, *channel, ctx.disclosure) {
                Decision::Share { record, .. } => record,
                // The platform had it, but must no longer show it on this channel: withdraw it.
                Decision::Withheld { .. } => json!({
                    "category": record.category.code(),
                    "source": {"agency": record.source.agency, "record_id": record.source.record_id, "region": record.source.region.as_str()},
                    "withdrawn": true,
                }),
            };
            payload["correction"] = marker.clone();
            let payload = serde_json::value::to_raw_value(&payload).map_err(|e| CorrectionError::Storage(e.to_string()))?;
            Ok(PlannedShare { destination: dest.clone(), channel: *channel, rule: "correction".into(), payload })
        })
        .collect::<Result<Vec<_>, CorrectionError>>()?;
    let mut destinations: Vec<String> = targets.into_iter().map(|(d, _)| d).collect();
    destinations.sort();
    destinations.dedup();
    let correction = Correction {
        id,
        kind: req.kind,
        agency,
        record_id: req.record_id,
        version: 0,
        requested_by: caller.to_string(),
        reason: req.reason.unwrap_or_default(),
        found_at: rfc3339(found_at.to_offset(crate::calendar::CHINA_OFFSET)),
        received_at: rfc3339(ctx.now.to_offset(crate::calendar::CHINA_OFFSET)),
        deadline: rfc3339(deadline),
        destinations,
        direction: if along_chain {
            "along_chain".into()
        } else {
            "to_medical_insurance".into()
        },
    };
    Ok((correction, record, shares))
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
