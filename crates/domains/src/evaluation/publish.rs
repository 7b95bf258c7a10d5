//! Yearly publication of results (LS Arts. 24, 27; GD Art. 25): once a year, after the subject's
//! objection window (LS Art. 21: 10 working days from the notice) has closed with no objection
//! pending, each result of the year becomes a published result record (`PUB-{year}-…`, disclosure
//! class `public`). The publication ledger then shares it by grade as `mappings/rules/sharing.toml`
//! says (Lhasa: A, C, D, E publicly, A and E to government; Guangdong: A-grade institutions).
//!
//! Running it again publishes what has become eligible since and nothing twice.

use serde::Serialize;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::engine::{today, Engine, EvaluationError};
use super::ids;
use crate::archive::{self, MarkKind};
use crate::audit::AuditEvent;
use crate::calendar::Calendar;
use crate::exchange::CommitterHandle;
use crate::ledger::stage::{NewVersion, Reconcile, ReconcileJob};
use crate::lifecycle::Standing;
use crate::store::{StoreError, SEP};

/// What a publication did.
#[derive(Debug, Serialize, Default)]
pub struct Report {
    pub year: i32,
    pub published: Vec<String>,
    pub already_published: usize,
    /// Results not published yet, with why.
    pub held: Vec<Held>,
}

#[derive(Debug, Serialize)]
pub struct Held {
    pub record_id: String,
    pub reason: String,
}

/// Why a publication was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(
        "the {0} cycle has not ended: results are published once a year, after it (LS Art. 27)"
    )]
    CycleNotEnded(i32),
    #[error("{0}")]
    Evaluation(#[from] EvaluationError),
}

impl From<StoreError> for PublishError {
    fn from(e: StoreError) -> Self {
        Self::Evaluation(EvaluationError::Storage(e))
    }
}

/// The writer's answer reads as the storage failure it was before writes were typed.
impl From<crate::exchange::WriteError> for PublishError {
    fn from(e: crate::exchange::WriteError) -> Self {
        StoreError::from(e).into()
    }
}

pub async fn publish(
    engine: &Engine,
    committer: &CommitterHandle,
    calendar: &Calendar,
    filing_working_days: u32,
    year: i32,
    now: OffsetDateTime,
    by: &str,
) -> Result<Report, PublishError> {
    if year >= today(now).year() {
        return Err(PublishError::CycleNotEnded(year));
    }
    let mut report = Report {
        year,
        ..Report::default()
    };
    let mut records = Vec::new();
    let prefix = format!("rec/{}{SEP}{}", engine.agency, ids::result_prefix(year));
    let heads = engine.store.scan::<archive::RecordHead>(&prefix)?;
    let router = engine.router.current();
    for (key, head) in heads {
        let record_id = key[prefix.len() - ids::result_prefix(year).len()..].to_string();
        let Some(pub_id) = ids::publication_of(&record_id) else {
            continue;
        };
        if engine
            .store
            .get_json::<archive::RecordHead>(&archive::record_head_key(&engine.agency, &pub_id))?
            .is_some()
        {
            report.already_published += 1;
            continue;
        }
        if head.marks.iter().any(|m| m.kind == MarkKind::Objection) {
            report.held.push(Held {
                record_id,
                reason: "under objection (LS Art. 23)".into(),
            });
            continue;
        }
        if head.marks.iter().any(|m| m.kind == MarkKind::Eliminated) {
            report.held.push(Held {
                record_id,
                reason: "eliminated by an upheld objection".into(),
            });
            continue;
        }
        let Some((_, version)) =
            archive::current_version(&engine.store, &engine.agency, &record_id)?
        else {
            continue;
        };
        let json: Value =
            serde_json::from_str(version.record.get()).map_err(|e| StoreError::Corrupt {
                key: key.clone(),
                message: e.to_string(),
            })?;
        let notified = json
            .pointer("/content/notified_on")
            .and_then(Value::as_str)
            .and_then(crate::record::parse_date);
        if let Some(on) = notified {
            // Past the last known year the window is estimated never earlier than the truth, so
            // a result is never published while the subject may still object (issue #26).
            match calendar.nth_working_day_after_estimated(
                on,
                filing_working_days,
                crate::calendar::Estimate::NeverEarlier,
            ) {
                Ok((last, provisional)) if today(now) <= last => {
                    report.held.push(Held {
                        record_id,
                        reason: format!(
                            "objection window open until {}{} (LS Art. 21)",
                            crate::record::format_date(last),
                            if provisional {
                                ", provisional: counted past the last known calendar year"
                            } else {
                                ""
                            }
                        ),
                    });
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    report.held.push(Held {
                        record_id,
                        reason: e.to_string(),
                    });
                    continue;
                }
            }
        }
        let record = published_record(engine, &json, year, &record_id, version.version, now)?;
        let plan = router.plan(&record, Standing::Active, now);
        report.published.push(record.source.record_id.clone());
        records.push(NewVersion {
            canonical: record.canonical_bytes(),
            record,
            plan,
            origin: format!("publication:{year}"),
            touches_subject: false,
            enqueue: Vec::new(),
        });
    }
    let mut data = Map::new();
    data.insert("year".into(), json!(year));
    data.insert("by".into(), json!(by));
    data.insert("published".into(), json!(report.published.len()));
    data.insert("held".into(), json!(report.held.len()));
    committer
        .reconcile(ReconcileJob::new(AuditEvent::EvaluationPublished, data).records(records))
        .await?;
    Ok(report)
}

fn published_record(
    engine: &Engine,
    result: &Value,
    year: i32,
    record_id: &str,
    version: u32,
    now: OffsetDateTime,
) -> Result<crate::record::CanonicalRecord, EvaluationError> {
    let content = result.get("content").cloned().unwrap_or(Value::Null);
    let pick = |k: &str| content.get(k).cloned().unwrap_or(Value::Null);
    let pub_id = ids::publication_of(record_id).unwrap_or_else(|| {
        // Not a working result's id (never: `publish` reads only those): named from the head.
        ids::publication(year, record_id)
    });
    let value = json!({
        "category": "evaluation_result",
        "subject": result.get("subject").cloned().unwrap_or(Value::Null),
        "source": {
            "agency": engine.agency,
            "record_id": pub_id,
            "region": result.pointer("/source/region").cloned().unwrap_or(Value::Null),
        },
        "disclosure": {"class": "public"},
        "valid_from": format!("{year:04}-01-01"),
        "content": {
            "year": year,
            "points": pick("points"),
            "grade": pick("grade"),
            "serious_dishonesty": pick("serious_dishonesty"),
            "profile": pick("profile"),
            "published_on": crate::record::format_date(today(now)),
            "result": {"record_id": record_id, "version": version},
            "basis": "LS Art. 27",
        },
    });
    let ctx = crate::record::ValidationContext {
        exceptions: engine.exceptions.clone(),
        authenticated_agency: None,
        // A stored record, read again: the rules it was accepted by.
        incoming: false,
    };
    crate::record::validate_owned(value, &ctx).map_err(|errs| {
        EvaluationError::Invalid(
            errs.into_iter()
                .map(|e| format!("{}: {}", e.field, e.reason))
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}
