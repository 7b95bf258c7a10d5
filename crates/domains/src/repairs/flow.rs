//! The steps of a repair, each one atomic in the writer with its marks, ledger changes, notices
//! and audit entry: apply, decide, extend, complete, and the finding of a broken commitment after
//! completion (LS Art. 41).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::rules::{type_of, Past, RepairRules};
use super::{Decision, Repair, Status};
use crate::answer::Answer;
use crate::archive::{self, Mark, MarkChange, MarkKind};
use crate::audit::AuditEvent;
use crate::calendar::{CalendarError, Estimate, CHINA_OFFSET};
use crate::casework::{CaseDeadline, Refused};
use crate::disclosure::Channel;
use crate::exchange::WriteError;
use crate::ledger::stage::{NewVersion, Reconcile, ReconcileJob};
use crate::ledger::{recheck, Queued};
use crate::objections::RecordRef;
use crate::outbox::{self, Entry, Kind};
use crate::record::{validate_owned, CanonicalRecord, Category, ValidationContext};
use crate::store::StoreError;

const MAX_RECORDS: usize = 100;

/// Why a step was refused, and whose it is to fix.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("{0}")]
    NotAllowed(&'static str),
    #[error("{0}")]
    Invalid(String),
    /// Not eligible: every refusal with its rule and article. Stored as `refused`.
    #[error("not eligible for credit repair: {}", .refusals.iter().map(|r| format!("{} ({}): {}", r.rule, r.article, r.reason)).collect::<Vec<_>>().join("; "))]
    Ineligible {
        id: String,
        refusals: Vec<super::Refusal>,
    },
    #[error("the repair is {0:?}; this step needs another state")]
    WrongState(super::State),
    /// The step does not fit the repair as it stands; the message says why (`repair_state`).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Calendar(CalendarError),
    /// A list asked for a state the cases do not have.
    #[error("unknown state {0:?}: use under_review, overdue, refused, in_publicity, suspended or completed")]
    UnknownState(String),
    #[error("storage: {0}")]
    Storage(String),
}

impl From<CalendarError> for RepairError {
    fn from(e: CalendarError) -> Self {
        Self::Calendar(e.counted())
    }
}

impl RepairError {
    /// How the refusal is answered, to an agency or at the console (`repair_ineligible` with every
    /// refusal and its article, `repair_state`…); the calendar's and the store's as every case
    /// flow answers them (`casework::Refused`).
    pub fn refused(&self) -> Refused<'_> {
        use http::StatusCode as S;
        match self {
            Self::NotFound(_) => Refused::own(S::NOT_FOUND, "not_found", self),
            Self::UnknownState(_) => Refused::own(S::BAD_REQUEST, "invalid_query", self),
            Self::NotAllowed(_) => Refused::own(S::FORBIDDEN, "repair_not_allowed", self),
            Self::Invalid(_) => Refused::own(S::UNPROCESSABLE_ENTITY, "invalid_repair", self),
            Self::Ineligible { .. } => {
                Refused::own(S::UNPROCESSABLE_ENTITY, "repair_ineligible", self)
            }
            Self::WrongState(_) | Self::Conflict(_) => {
                Refused::own(S::CONFLICT, "repair_state", self)
            }
            Self::Calendar(error) => Refused::Calendar {
                error,
                invalid: "invalid_repair",
            },
            Self::Storage(_) => Refused::Storage,
        }
    }
}

impl Answer for RepairError {
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
    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut details = serde_json::Map::new();
        if let Self::Ineligible { id, refusals } = self {
            details.insert("repair_id".into(), id.clone().into());
            details.insert(
                "refusals".into(),
                serde_json::to_value(refusals).unwrap_or_default(),
            );
        }
        details
    }
}

impl From<StoreError> for RepairError {
    fn from(e: StoreError) -> Self {
        Self::Storage(e.to_string())
    }
}

/// The writer's answer reads as the storage failure it was before writes were typed.
impl From<WriteError> for RepairError {
    fn from(e: WriteError) -> Self {
        StoreError::from(e).into()
    }
}

/// Everything a step needs (the casework core's context with the repair rules).
pub type Context<'a> = crate::casework::Context<'a, RepairRules>;

/// `POST /v1/repairs` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    pub records: Vec<crate::objections::flow::RecordIn>,
    /// Where the subject's materials are (GD Art. 36; LS Art. 39).
    pub materials: String,
    /// The subject's public credit commitment (信用承诺), or where it is.
    pub commitment: String,
}

/// `POST /v1/repairs/{id}/decide` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    pub approve: bool,
    pub reason: String,
    /// LS Art. 41: refused because materials or the commitment were false.
    #[serde(default)]
    pub false_materials: bool,
}

/// `POST /v1/repairs/{id}/commitment-broken` body (LS Art. 41).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitmentBrokenRequest {
    /// What was found: the commitment untrue (信用承诺不实) or not kept (不履行承诺).
    pub reason: String,
    /// `YYYY-MM-DD`, the day it was found: the 3 years run from it.
    pub found_on: String,
}

/// Apply for repair on the subject's behalf. Ineligible: stored as `refused` with every refusal.
pub async fn apply(
    ctx: &Context<'_>,
    caller: &str,
    default_agency: &str,
    req: ApplyRequest,
) -> Result<Repair, RepairError> {
    let _step = crate::casework::step(ctx.store).await?;
    if req.records.is_empty() || req.records.len() > MAX_RECORDS {
        return Err(RepairError::Invalid(format!(
            "records must name 1 to {MAX_RECORDS} records"
        )));
    }
    if req.materials.trim().is_empty() || req.commitment.trim().is_empty() {
        return Err(RepairError::Invalid(
            "materials and the subject's commitment are required (GD Art. 36; LS Art. 39)".into(),
        ));
    }
    let mut records = Vec::new();
    let mut subject_key: Option<String> = None;
    for r in &req.records {
        let agency = r
            .agency
            .clone()
            .unwrap_or_else(|| default_agency.to_string());
        let (record, head_subject) = load_record(ctx, &agency, &r.record_id)?;
        if subject_key.get_or_insert_with(|| head_subject.clone()) != &head_subject {
            return Err(RepairError::Invalid(
                "every record of one repair must be about the same subject".into(),
            ));
        }
        let dishonesty = record.category == Category::DishonestList
            || (record.category == Category::Administrative
                && record.content.get("action").and_then(Value::as_str) == Some("penalty"));
        if !dishonesty {
            return Err(RepairError::Invalid(format!(
                "{} is not dishonesty information (a penalty or a dishonesty list)",
                r.record_id
            )));
        }
        records.push(record);
    }
    let subject_key = subject_key.unwrap_or_default();
    let (others, repairs) = history(ctx, &subject_key)?;
    // One application per record at a time, and none for a record already repaired.
    if let Some(busy) = repairs.iter().find(|r| {
        matches!(
            r.status,
            Status::UnderReview | Status::InPublicity | Status::Completed
        ) && r.records.iter().any(|x| {
            records
                .iter()
                .any(|c| c.source.agency == x.agency && c.source.record_id == x.record_id)
        })
    }) {
        return Err(RepairError::Invalid(format!(
            "a record of this application is already in repair {} ({:?})",
            busy.id, busy.status
        )));
    }
    let notice = ctx.router.notice();
    let refusals: Vec<super::Refusal> = records
        .iter()
        .flat_map(|r| ctx.rules.refusals(notice, r, &others, &repairs, ctx.now))
        .collect();
    let mut types: Vec<String> = records.iter().map(type_of).collect();
    types.sort();
    types.dedup();
    // A refused application has no decision to wait for (and needs no calendar year). Past the
    // last known year the decision deadline is estimated never later than the truth (issue #26).
    let decision = if refusals.is_empty() {
        CaseDeadline::count(
            &ctx.calendar,
            ctx.now,
            ctx.rules.decision_working_days,
            Estimate::NeverLater,
        )?
    } else {
        CaseDeadline {
            at: ctx.now,
            provisional: false,
            basis: None,
        }
    };
    let mut repair = Repair {
        id: uuid::Uuid::new_v4().to_string(),
        subject_key,
        records: records
            .iter()
            .map(|r| RecordRef {
                agency: r.source.agency.clone(),
                record_id: r.source.record_id.clone(),
            })
            .collect(),
        types,
        materials: req.materials,
        commitment: req.commitment,
        applied_by: caller.to_string(),
        accepted_at: ctx.now,
        status: Status::UnderReview,
        decision_deadline: decision.at,
        decision_deadline_provisional: decision.provisional,
        decision_basis: decision.basis,
        extension_reason: None,
        decision: None,
        publicity_from: None,
        publicity_until: None,
        publicity_until_provisional: false,
        publicity_basis: None,
        completed_at: None,
        commitment_broken: None,
    };
    if !refusals.is_empty() {
        repair.status = Status::Refused;
        repair.decision = Some(Decision {
            approved: false,
            by: "eligibility rules".into(),
            reason: refusals
                .iter()
                .map(|r| format!("{} ({})", r.rule, r.article))
                .collect::<Vec<_>>()
                .join("; "),
            false_materials: false,
            at: ctx.now,
        });
        let notice = notices(ctx, &repair, "refused", Some(&refusals));
        commit(
            ctx,
            &repair,
            AuditEvent::RepairRefusedIneligible,
            Vec::new(),
            notice,
            Vec::new(),
        )
        .await?;
        return Err(RepairError::Ineligible {
            id: repair.id,
            refusals,
        });
    }
    commit(
        ctx,
        &repair,
        AuditEvent::RepairAccepted,
        Vec::new(),
        Vec::new(),
        Vec::new(),
    )
    .await?;
    Ok(repair)
}

/// The provider's decision: refused (with its reason; `false_materials` counts for LS Art. 41) or
/// approved, which starts the 5-working-day publicity on the credit platforms' public channel.
pub async fn decide(
    ctx: &Context<'_>,
    caller: &str,
    may_decide_others: bool,
    id: &str,
    req: &DecideRequest,
) -> Result<Repair, RepairError> {
    let _step = crate::casework::step(ctx.store).await?;
    let mut repair = load(ctx, id)?;
    if repair.status != Status::UnderReview {
        return Err(RepairError::WrongState(repair.state(ctx.now, false)));
    }
    if !may_decide_others && repair.records.iter().any(|r| r.agency != caller) {
        return Err(RepairError::NotAllowed(
            "only the agency that made the dishonesty finding decides its repair",
        ));
    }
    if req.reason.trim().is_empty() {
        return Err(RepairError::Invalid(
            "a reason is required: the subject is told it".into(),
        ));
    }
    if req.approve && req.false_materials {
        return Err(RepairError::Invalid(
            "false materials mean a refusal".into(),
        ));
    }
    repair.decision = Some(Decision {
        approved: req.approve,
        by: caller.to_string(),
        reason: req.reason.clone(),
        false_materials: req.false_materials,
        at: ctx.now,
    });
    // GD Art. 39: false materials are 记入信用记录, a record of the subject's own, not only a
    // flag inside the repair (issue #26).
    let finding = if req.false_materials {
        vec![false_materials_record(ctx, &repair, caller, &req.reason)?]
    } else {
        Vec::new()
    };
    let (kind, notice) = if req.approve {
        repair.status = Status::InPublicity;
        repair.publicity_from = Some(ctx.now);
        CaseDeadline::count(
            &ctx.calendar,
            ctx.now,
            ctx.rules.publicity_working_days,
            Estimate::NeverEarlier,
        )?
        .store(
            &mut repair.publicity_until,
            &mut repair.publicity_until_provisional,
            &mut repair.publicity_basis,
        );
        (AuditEvent::RepairApproved, publicity(ctx, &repair)?)
    } else {
        repair.status = Status::Refused;
        (
            AuditEvent::RepairRefused,
            notices(ctx, &repair, "refused", None),
        )
    };
    commit(ctx, &repair, kind, Vec::new(), notice, finding).await?;
    Ok(repair)
}

/// LS Art. 40: a complex case may take longer, at most 30 working days from acceptance.
pub async fn extend(ctx: &Context<'_>, id: &str, reason: &str) -> Result<Repair, RepairError> {
    let _step = crate::casework::step(ctx.store).await?;
    let mut repair = load(ctx, id)?;
    if repair.status != Status::UnderReview || repair.extension_reason.is_some() {
        return Err(RepairError::WrongState(repair.state(ctx.now, false)));
    }
    if reason.trim().is_empty() {
        return Err(RepairError::Invalid(
            "an extension needs its reason (LS Art. 40)".into(),
        ));
    }
    // LS Art. 40: counted from acceptance, not from the extension.
    CaseDeadline::count(
        &ctx.calendar,
        repair.accepted_at,
        ctx.rules.max_decision_working_days,
        Estimate::NeverLater,
    )?
    .store(
        &mut repair.decision_deadline,
        &mut repair.decision_deadline_provisional,
        &mut repair.decision_basis,
    );
    repair.extension_reason = Some(reason.to_string());
    commit(
        ctx,
        &repair,
        AuditEvent::RepairExtended,
        Vec::new(),
        Vec::new(),
        Vec::new(),
    )
    .await?;
    Ok(repair)
}

/// The publicity ended without an open objection: every record is marked 修复 and withdrawn from
/// every platform (终止公示, 停止共享); the medical-insurance platform is told. `None` when it is
/// not due (or suspended).
pub async fn complete_if_due(ctx: &Context<'_>, id: &str) -> Result<Option<Repair>, RepairError> {
    let _step = crate::casework::step(ctx.store).await?;
    let mut repair = load(ctx, id)?;
    let due = repair.status == Status::InPublicity
        && repair.publicity_until.is_some_and(|u| ctx.now >= u);
    if !due || super::objection_open(ctx.store, &repair)? {
        return Ok(None);
    }
    repair.status = Status::Completed;
    repair.completed_at = Some(ctx.now);
    let marks = repair
        .records
        .iter()
        .map(|r| MarkChange {
            agency: r.agency.clone(),
            record_id: r.record_id.clone(),
            remove: None,
            add: Some(Mark {
                kind: MarkKind::Repaired,
                id: repair.id.clone(),
                since: ctx.now,
            }),
        })
        .collect();
    let notice = notices(ctx, &repair, "completed", None);
    commit(
        ctx,
        &repair,
        AuditEvent::RepairCompleted,
        marks,
        notice,
        Vec::new(),
    )
    .await?;
    Ok(Some(repair))
}

/// LS Art. 41: the commitment (信用承诺) of a completed repair was found untrue or not kept
/// ("信用承诺不实或者不履行承诺等弄虚作假行为"). Recorded by the agency that made the dishonesty
/// finding, as it decides the repair (LS Art. 40), and only on a completed repair: before that the
/// decision itself refuses with `false_materials`. Like false materials, the finding becomes a
/// record of the subject's own (`BROKEN-COMMITMENT-{id}`; GD Art. 39 "信用修复承诺严重不实…记入信用
/// 记录"), the medical-insurance platform is told (it tells the subject), and the repair rule
/// `false_materials_years` bars any new repair of the subject for 3 years from `found_on`
/// ("取消其3年内申请信用修复的资格"). The repair stays completed and its records stay marked 修复:
/// the article takes away the right to apply again, it does not undo the repair. The same finding
/// sent again changes nothing; a different one for the same repair is refused (`repair_state`).
pub async fn commitment_broken(
    ctx: &Context<'_>,
    caller: &str,
    id: &str,
    req: &CommitmentBrokenRequest,
) -> Result<Repair, RepairError> {
    let _step = crate::casework::step(ctx.store).await?;
    let mut repair = load(ctx, id)?;
    if repair.records.iter().any(|r| r.agency != caller) {
        return Err(RepairError::NotAllowed(
            "only the agency that made the dishonesty finding records that its repair's commitment was broken",
        ));
    }
    let reason = req.reason.trim();
    if reason.is_empty() {
        return Err(RepairError::Invalid(
            "a reason is required: the subject is told it (LS Art. 41)".into(),
        ));
    }
    let found_on = crate::record::parse_date(req.found_on.trim()).ok_or_else(|| {
        RepairError::Invalid(format!(
            "found_on {:?} is not a date (YYYY-MM-DD)",
            req.found_on
        ))
    })?;
    if let Some(done) = &repair.commitment_broken {
        if done.found_on == found_on && done.reason == reason {
            return Ok(repair);
        }
        return Err(RepairError::Conflict(format!(
            "a broken commitment was already recorded for this repair (found on {}, record {}); it is recorded once",
            crate::record::format_date(done.found_on),
            done.record_id
        )));
    }
    if repair.status != Status::Completed {
        let open =
            repair.status == Status::InPublicity && super::objection_open(ctx.store, &repair)?;
        let state = serde_json::to_value(repair.state(ctx.now, open))
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        return Err(RepairError::Conflict(format!(
            "the repair is {state}: a broken commitment is recorded only on a completed repair (LS Art. 41); before, the decision refuses with false_materials"
        )));
    }
    // The commitment was made with the application: it cannot have been found broken before it,
    // nor in the future.
    let today = ctx.now.to_offset(CHINA_OFFSET).date();
    let applied = repair.accepted_at.to_offset(CHINA_OFFSET).date();
    if found_on > today || found_on < applied {
        return Err(RepairError::Invalid(format!(
            "found_on must be between the application ({}) and today ({})",
            crate::record::format_date(applied),
            crate::record::format_date(today)
        )));
    }
    let record_id = format!("BROKEN-COMMITMENT-{}", repair.id);
    let found = crate::record::format_date(found_on);
    repair.commitment_broken = Some(super::BrokenCommitment {
        reason: reason.to_string(),
        found_on,
        by: caller.to_string(),
        at: ctx.now,
        record_id: record_id.clone(),
    });
    let record = finding_record(
        ctx,
        &repair,
        caller,
        Finding {
            record_id,
            doc_number: format!("信用修复承诺核查 {}", repair.id),
            decided_on: found.clone(),
            content: json!({
                "description": "信用修复后信用承诺不实或者不履行承诺 (a credit repair commitment found untrue or not kept after the repair completed, LS Art. 41)",
                "finding": "commitment_broken",
                "legal_basis": "LS Art. 41",
                "repair_id": repair.id,
                "records": repair.records,
                "commitment": repair.commitment,
                "reason": reason,
                "found_on": found,
                "decided_by": caller,
            }),
            origin: format!("repair_commitment_broken:{}", repair.id),
        },
    )?;
    let notice = notices(ctx, &repair, "commitment_broken", None);
    commit(
        ctx,
        &repair,
        AuditEvent::RepairCommitmentBroken,
        Vec::new(),
        notice,
        vec![record],
    )
    .await?;
    Ok(repair)
}

/// A finding about the subject's conduct in its repair, as [`finding_record`] records it.
struct Finding {
    record_id: String,
    doc_number: String,
    /// `YYYY-MM-DD`: the basis's decision date and the record's `valid_from`.
    decided_on: String,
    content: Value,
    origin: String,
}

/// The record a finding of false materials puts in the subject's credit archive (GD Art. 39:
/// "提供虚假材料的…记入信用记录"): named after the repair (`FALSE-MATERIALS-{repair id}`), its
/// basis the decision.
fn false_materials_record(
    ctx: &Context<'_>,
    repair: &Repair,
    caller: &str,
    reason: &str,
) -> Result<NewVersion, RepairError> {
    let today = crate::record::format_date(ctx.now.to_offset(CHINA_OFFSET).date());
    finding_record(
        ctx,
        repair,
        caller,
        Finding {
            record_id: format!("FALSE-MATERIALS-{}", repair.id),
            doc_number: format!("信用修复决定 {}", repair.id),
            decided_on: today,
            content: json!({
                "description": "信用修复申请中提供虚假材料 (false materials in a credit repair application, GD Art. 39)",
                "finding": "false_materials",
                "repair_id": repair.id,
                "records": repair.records,
                "reason": reason,
                "decided_by": caller,
            }),
            origin: format!("repair_false_materials:{}", repair.id),
        },
    )
}

/// A finding about a repair (false materials, GD Art. 39; a broken commitment, LS Art. 41) as a
/// record of the subject's own in its credit archive: category `other_public`, from the agency
/// that found it, about the subject of the repaired records and in their region, shared with
/// government as the sharing rules say (`gov_share`: a finding about a repair is no penalty to
/// notice publicly).
fn finding_record(
    ctx: &Context<'_>,
    repair: &Repair,
    caller: &str,
    finding: Finding,
) -> Result<NewVersion, RepairError> {
    let first = repair
        .records
        .first()
        .ok_or(RepairError::NotFound("record"))?;
    let (repaired, _) = load_record(ctx, &first.agency, &first.record_id)?;
    let repaired = repaired.to_json();
    let json = json!({
        "category": "other_public",
        "subject": repaired["subject"],
        "source": {"agency": caller, "record_id": finding.record_id,
                   "region": repaired["source"]["region"]},
        "basis": {"doc_type": "other", "doc_number": finding.doc_number, "decided_on": finding.decided_on},
        "disclosure": {"class": "gov_share"},
        "valid_from": finding.decided_on,
        "content": finding.content,
    });
    let ctx_v = ValidationContext {
        exceptions: ctx.exceptions.clone(),
        authenticated_agency: None,
        // Built here from a stored record: its identity passed when that record arrived.
        incoming: false,
    };
    let record = validate_owned(json, &ctx_v).map_err(|errs| {
        RepairError::Invalid(format!(
            "the {} record does not validate: {}",
            finding.record_id,
            errs.iter()
                .map(|e| format!("{}: {}", e.field, e.reason))
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    let plan = ctx
        .router
        .plan(&record, crate::lifecycle::Standing::Active, ctx.now);
    Ok(NewVersion {
        canonical: record.canonical_bytes(),
        record,
        plan,
        origin: finding.origin,
        touches_subject: true,
        enqueue: Vec::new(),
    })
}

/// Provisional deadlines made exact once the calendar covers them (issue #26): re-read under the
/// step every repair writer holds, so no newer state is overwritten; only the deadline fields
/// change; written and audited (`repair_deadline_exact`) by the writer like every step. `true`
/// when it changed.
pub async fn make_exact(ctx: &Context<'_>, id: &str) -> Result<bool, RepairError> {
    let _step = crate::casework::step(ctx.store).await?;
    let mut repair = load(ctx, id)?;
    if !repair.make_exact(&ctx.calendar) {
        return Ok(false);
    }
    commit(
        ctx,
        &repair,
        AuditEvent::RepairDeadlineExact,
        Vec::new(),
        Vec::new(),
        Vec::new(),
    )
    .await?;
    Ok(true)
}

fn load(ctx: &Context<'_>, id: &str) -> Result<Repair, RepairError> {
    super::get(ctx.store, id)?.ok_or(RepairError::NotFound("repair"))
}

fn load_record(
    ctx: &Context<'_>,
    agency: &str,
    record_id: &str,
) -> Result<(CanonicalRecord, String), RepairError> {
    let (head, version) = archive::current_version(ctx.store, agency, record_id)?
        .ok_or(RepairError::NotFound("record"))?;
    let json: Value = serde_json::from_str(version.record.get())
        .map_err(|e| RepairError::Storage(e.to_string()))?;
    let ctx_v = ValidationContext {
        exceptions: ctx.exceptions.clone(),
        authenticated_agency: None,
        // A stored record, read again: the rules it was accepted by.
        incoming: false,
    };
    let record = validate_owned(json, &ctx_v)
        .map_err(|_| RepairError::Invalid(format!("{record_id} no longer validates")))?;
    Ok((record, head.subject))
}

/// The subject's other dishonesty records and earlier repairs.
fn history(ctx: &Context<'_>, subject_key: &str) -> Result<(Vec<Past>, Vec<Repair>), RepairError> {
    let mut others = Vec::new();
    for (agency, record_id) in archive::records_of(ctx.store, subject_key)? {
        // An objection found it was no bad credit information: it counts for nothing.
        let eliminated = ctx
            .store
            .get_json::<archive::RecordHead>(&archive::record_head_key(&agency, &record_id))?
            .is_some_and(|h| h.marks.iter().any(|m| m.kind == MarkKind::Eliminated));
        if eliminated {
            continue;
        }
        let Ok((record, _)) = load_record(ctx, &agency, &record_id) else {
            continue;
        };
        if let Some(decided) = crate::lifecycle::notice::decision_date(&record) {
            others.push(Past {
                record_id,
                kind: type_of(&record),
                decided,
            });
        }
    }
    let repairs = ctx
        .store
        .scan::<Repair>("rep/")?
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.subject_key == subject_key)
        .collect();
    Ok((others, repairs))
}

/// The approved repair, publicised on the public channel of every platform holding the records
/// (GD Art. 37; LS Art. 40).
fn publicity(ctx: &Context<'_>, repair: &Repair) -> Result<Vec<Entry>, RepairError> {
    let mut platforms: Vec<String> = Vec::new();
    for r in &repair.records {
        let ledger = crate::ledger::Ledger::read(ctx.store, &r.agency, &r.record_id)?;
        platforms.extend(ledger.holdings.iter().map(|h| h.destination.clone()));
    }
    platforms.sort();
    platforms.dedup();
    let body = json!({"repair_publicity": {
        "id": repair.id,
        "records": repair.records,
        "from": crate::clock::rfc3339(repair.publicity_from.unwrap_or(ctx.now)),
        "until": repair.publicity_until.map(crate::clock::rfc3339),
        "until_provisional": repair.publicity_until_provisional,
    }});
    Ok(platforms
        .iter()
        .filter_map(|d| entry(ctx, d, Channel::PublicNotice, repair, "publicity", &body))
        .collect())
}

/// The result for the medical-insurance platform, which tells the subject.
fn notices(
    ctx: &Context<'_>,
    repair: &Repair,
    result: &str,
    refusals: Option<&[super::Refusal]>,
) -> Vec<Entry> {
    let mut body = json!({"repair": {
        "id": repair.id,
        "records": repair.records,
        "result": result,
        "decision": repair.decision,
        "refusals": refusals,
    }});
    // LS Art. 41: the subject learns why it may not apply again, and until when it is counted.
    if let Some(broken) = &repair.commitment_broken {
        body["repair"]["commitment_broken"] = json!(broken);
    }
    ctx.destinations
        .iter()
        .filter(|d| d.role == crate::config::DestinationRole::MedicalInsurancePlatform)
        .filter_map(|d| entry(ctx, &d.id, Channel::GovShare, repair, result, &body))
        .collect()
}

fn entry(
    ctx: &Context<'_>,
    destination: &str,
    channel: Channel,
    repair: &Repair,
    step: &str,
    body: &Value,
) -> Option<Entry> {
    let payload = serde_json::value::to_raw_value(body).ok()?;
    Some(Entry {
        idempotency_key: outbox::idempotency_key(
            destination,
            "repair",
            &repair.id,
            0,
            channel,
            Kind::Notice,
            step,
        ),
        destination: destination.to_string(),
        channel,
        kind: Kind::Notice,
        agency: "repair".into(),
        record_id: repair.id.clone(),
        version: 0,
        rule: format!("repair-{step}"),
        enqueued_at: ctx.now.to_offset(CHINA_OFFSET),
        enqueued_unix: ctx.now.unix_timestamp(),
        correction_id: None,
        payload: Some(payload),
        source: None,
    })
}

async fn commit(
    ctx: &Context<'_>,
    repair: &Repair,
    kind: AuditEvent,
    marks: Vec<MarkChange>,
    enqueue: Vec<Entry>,
    records: Vec<NewVersion>,
) -> Result<Vec<Queued>, RepairError> {
    let mut items = Vec::new();
    if !marks.is_empty() {
        for r in &repair.records {
            if let Some(item) = recheck::item(
                ctx.store,
                &ctx.router,
                ctx.exceptions,
                &r.agency,
                &r.record_id,
                None,
                ctx.now,
            )? {
                items.push(item);
            }
        }
    }
    let mut data = Map::new();
    data.insert("repair_id".into(), json!(repair.id));
    data.insert("status".into(), json!(repair.status));
    data.insert("records".into(), json!(repair.records));
    data.insert(
        "subject_sha256".into(),
        json!(recheck::subject_hash(&repair.subject_key)),
    );
    if let Some(broken) = &repair.commitment_broken {
        // LS Art. 41: when the 3 years start, and the finding's record (the reason stays out of
        // the audit chain like the other free texts).
        data.insert(
            "commitment_broken".into(),
            json!({"found_on": crate::record::format_date(broken.found_on), "record_id": broken.record_id}),
        );
    }
    let writes = vec![(Repair::key(&repair.id), crate::store::to_bytes(repair))];
    let (queued, _) = ctx
        .committer
        .reconcile(
            ReconcileJob::new(kind, data)
                .items(items)
                .writes(writes)
                .marks(marks)
                .enqueue(enqueue)
                .records(records),
        )
        .await?;
    crate::ledger::report_queued(kind.as_str(), &queued);
    crate::telemetry::events::repair_step(kind.as_str(), &repair.id, queued.len());
    Ok(queued)
}
