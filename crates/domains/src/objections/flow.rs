//! The steps of an objection, each one atomic in the writer with its marks, ledger changes,
//! notices and audit entry.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::rules::ObjectionRules;
use super::{Action, Ground, LateAcceptance, Objection, Outcome, RecordRef, Resolution, Status};
use crate::answer::Answer;
use crate::archive::{self, Mark, MarkChange, MarkKind};
use crate::audit::AuditEvent;
use crate::calendar::{CalendarError, Estimate, CHINA_OFFSET};
use crate::casework::{CaseDeadline, Refused};
use crate::config::DestinationRole;
use crate::disclosure::Channel;
use crate::exchange::WriteError;
use crate::ledger::stage::{Reconcile, ReconcileJob};
use crate::ledger::{recheck, Queued};
use crate::outbox::{self, Entry, Kind};
use crate::record::Category;
use crate::store::StoreError;

/// How far a sender's clock may run ahead of the gateway's.
const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);
/// Most records one objection names.
const MAX_RECORDS: usize = 100;

/// Why a step was refused, and whose it is to fix.
#[derive(Debug, thiserror::Error)]
pub enum ObjectionError {
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("{0}")]
    NotAllowed(&'static str),
    #[error("{0}")]
    Invalid(String),
    /// LS Art. 21: filed after the 10 working days; kept as `filed_late` for an operator.
    #[error("filed after the objection window for an evaluation result closed at {deadline} (LS Art. 21: 10 working days from notification); kept as {id} for an operator to accept with a reason")]
    Late { id: String, deadline: String },
    #[error("the objection is {0:?}; this step needs another state")]
    WrongState(super::State),
    #[error("{0}")]
    Calendar(CalendarError),
    /// A list asked for a state the cases do not have.
    #[error("unknown state {0:?}: use filed_late, under_review, overdue, upheld or rejected")]
    UnknownState(String),
    #[error("storage: {0}")]
    Storage(String),
}

impl From<CalendarError> for ObjectionError {
    fn from(e: CalendarError) -> Self {
        Self::Calendar(e.counted())
    }
}

impl ObjectionError {
    /// How the refusal is answered, to an agency or at the console: the status and stable code of
    /// each (`objection_state`, `objection_late` with the kept objection's id…); the calendar's
    /// and the store's as every case flow answers them (`casework::Refused`).
    pub fn refused(&self) -> Refused<'_> {
        use http::StatusCode as S;
        match self {
            Self::NotFound(_) => Refused::own(S::NOT_FOUND, "not_found", self),
            Self::UnknownState(_) => Refused::own(S::BAD_REQUEST, "invalid_query", self),
            Self::NotAllowed(_) => Refused::own(S::FORBIDDEN, "objection_not_allowed", self),
            Self::Invalid(_) => Refused::own(S::UNPROCESSABLE_ENTITY, "invalid_objection", self),
            Self::Late { .. } => Refused::own(S::UNPROCESSABLE_ENTITY, "objection_late", self),
            Self::WrongState(_) => Refused::own(S::CONFLICT, "objection_state", self),
            Self::Calendar(error) => Refused::Calendar {
                error,
                invalid: "invalid_objection",
            },
            Self::Storage(_) => Refused::Storage,
        }
    }
}

impl Answer for ObjectionError {
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
        if let Self::Late { id, .. } = self {
            details.insert("objection_id".into(), id.clone().into());
        }
        details
    }
}

impl From<StoreError> for ObjectionError {
    fn from(e: StoreError) -> Self {
        Self::Storage(e.to_string())
    }
}

/// The writer's answer reads as the storage failure it was before writes were typed.
impl From<WriteError> for ObjectionError {
    fn from(e: WriteError) -> Self {
        StoreError::from(e).into()
    }
}

/// Everything a step needs (the casework core's context with the objection rules).
pub type Context<'a> = crate::casework::Context<'a, ObjectionRules>;

/// `POST /v1/objections` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRequest {
    pub records: Vec<RecordIn>,
    pub ground: Ground,
    pub materials: String,
    /// When the subject filed it (RFC 3339); default now.
    #[serde(default)]
    pub filed_at: Option<String>,
    /// For an evaluation result: the date the subject was told it (YYYY-MM-DD).
    #[serde(default)]
    pub notified_on: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordIn {
    /// The agency that provided the record (default the medical-insurance platform's id, the
    /// caller's when it is one).
    #[serde(default)]
    pub agency: Option<String>,
    pub record_id: String,
}

/// `POST /v1/objections/{id}/resolve` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub outcome: Outcome,
    /// For `upheld`: `correct` (with `correction`) or `eliminate`.
    #[serde(default)]
    pub action: Option<Action>,
    /// For `correct`: a correction request as `POST /v1/corrections` takes it.
    #[serde(default)]
    pub correction: Option<Value>,
    pub reason: String,
}

/// File an objection. Accepted: every record is marked and every platform holding it is sent it
/// again, marked. Late (LS Art. 21): stored as `filed_late`, nothing marked, and refused.
pub async fn file(
    ctx: &Context<'_>,
    caller: &str,
    default_agency: &str,
    req: FileRequest,
) -> Result<Objection, ObjectionError> {
    let _step = crate::casework::step(ctx.store).await?;
    if req.records.is_empty() || req.records.len() > MAX_RECORDS {
        return Err(ObjectionError::Invalid(format!(
            "records must name 1 to {MAX_RECORDS} records"
        )));
    }
    if req.materials.trim().is_empty() {
        return Err(ObjectionError::Invalid(
            "materials must say where the applicant's documents are".into(),
        ));
    }
    let filed_at = match &req.filed_at {
        None => ctx.now,
        Some(s) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|_| ObjectionError::Invalid("filed_at must be an RFC 3339 time".into()))?,
    };
    if filed_at > ctx.now + CLOCK_SKEW {
        return Err(ObjectionError::Invalid(
            "filed_at lies in the future".into(),
        ));
    }
    let mut records = Vec::new();
    let (mut subject, mut region, mut evaluation) = (None::<String>, None::<String>, false);
    for r in &req.records {
        let agency = r
            .agency
            .clone()
            .unwrap_or_else(|| default_agency.to_string());
        let (head, version) = archive::current_version(ctx.store, &agency, &r.record_id)?
            .ok_or(ObjectionError::NotFound("record"))?;
        if subject.get_or_insert_with(|| head.subject.clone()) != &head.subject {
            return Err(ObjectionError::Invalid(
                "every record of one objection must be about the same subject".into(),
            ));
        }
        evaluation |= head.category == Category::EvaluationResult;
        if region.is_none() {
            let v: Value = serde_json::from_str(version.record.get()).unwrap_or(Value::Null);
            region = v["source"]["region"].as_str().map(String::from);
        }
        if records
            .first()
            .is_some_and(|f: &RecordRef| f.agency != agency)
        {
            return Err(ObjectionError::Invalid(
                "one objection names records of one providing agency (it resolves them): file one per agency".into(),
            ));
        }
        records.push(RecordRef {
            agency,
            record_id: r.record_id.clone(),
        });
    }
    // A result the gateway computed carries the date its notice went out (GD Art. 22).
    let notified_on = req.notified_on.clone().or_else(|| {
        let r = records.first()?;
        let (_, version) = archive::current_version(ctx.store, &r.agency, &r.record_id).ok()??;
        let v: Value = serde_json::from_str(version.record.get()).ok()?;
        v.pointer("/content/notified_on")?
            .as_str()
            .map(String::from)
    });
    // Whatever the record, a date given is kept and shown as a date, and the filer cannot say
    // the subject was told of a record after objecting to it (the window counts from that day,
    // LS Art. 21: a later day would only lengthen it). The date the gateway's own notice went
    // out is taken as it is: an objection filed before it is simply in time.
    let notified_day = match &notified_on {
        None => None,
        Some(day) => {
            let day = crate::record::parse_date(day)
                .ok_or_else(|| ObjectionError::Invalid("notified_on must be YYYY-MM-DD".into()))?;
            if req.notified_on.is_some() && day > filed_at.to_offset(CHINA_OFFSET).date() {
                return Err(ObjectionError::Invalid(
                    "notified_on is after the day the objection was filed".into(),
                ));
            }
            Some(day)
        }
    };
    let filing_deadline = match (evaluation, notified_day) {
        (false, _) => None,
        (true, None) => {
            return Err(ObjectionError::Invalid(
                "an objection to an evaluation result needs notified_on, the date the subject was told it (LS Art. 21)".into(),
            ))
        }
        (true, Some(day)) => {
            // LS Art. 21: the window of the rule in force for the result's region on the day
            // it was notified; a gap gives the longest known window, never a shorter one.
            let working_days = ctx
                .rules
                .filing_working_days(region.as_deref().unwrap_or_default(), day);
            // Past the last known year: estimated never earlier than the truth, so a subject
            // is never told the window closed before it did (issue #26).
            let window = CaseDeadline::count_from_day(
                &ctx.calendar,
                day,
                working_days,
                Estimate::NeverEarlier,
            )?;
            Some((window.at, window.basis))
        }
    };
    let filing_basis = filing_deadline.and_then(|(_, b)| b);
    let filing_deadline_provisional = filing_basis.is_some();
    let filing_deadline = filing_deadline.map(|(d, _)| d);
    let late = filing_deadline.is_some_and(|d| crate::casework::deadline::passed(d, filed_at));
    let mut objection = Objection {
        id: uuid::Uuid::new_v4().to_string(),
        records,
        ground: req.ground,
        materials: req.materials,
        filed_by: caller.to_string(),
        filed_at,
        received_at: ctx.now,
        notified_on,
        filing_deadline,
        filing_deadline_provisional,
        filing_basis,
        late_accepted: None,
        level: 1,
        status: if late {
            Status::FiledLate
        } else {
            Status::UnderReview
        },
        review_deadline: None,
        review_deadline_provisional: false,
        review_basis: None,
        review_rule: String::new(),
        resolutions: Vec::new(),
    };
    if late {
        commit(
            ctx,
            &objection,
            AuditEvent::ObjectionFiledLate,
            Vec::new(),
            Vec::new(),
        )
        .await?;
        return Err(ObjectionError::Late {
            id: objection.id,
            deadline: filing_deadline
                .map(crate::clock::rfc3339)
                .unwrap_or_default(),
        });
    }
    open_review(
        ctx,
        &mut objection,
        region.as_deref().unwrap_or(""),
        filed_at,
    )?;
    let marks = mark_all(&objection, MarkKind::Objection, ctx.now);
    commit(
        ctx,
        &objection,
        AuditEvent::ObjectionFiled,
        marks,
        Vec::new(),
    )
    .await?;
    Ok(objection)
}

/// An operator accepts a late objection with a reason (audited): it is reviewed like any other.
pub async fn accept_late(
    ctx: &Context<'_>,
    id: &str,
    by: &str,
    reason: &str,
) -> Result<Objection, ObjectionError> {
    let _step = crate::casework::step(ctx.store).await?;
    let mut objection = load(ctx, id)?;
    if objection.status != Status::FiledLate {
        return Err(ObjectionError::WrongState(objection.state(ctx.now)));
    }
    if reason.trim().is_empty() {
        return Err(ObjectionError::Invalid("a reason is required".into()));
    }
    objection.late_accepted = Some(LateAcceptance {
        by: by.to_string(),
        reason: reason.to_string(),
        at: ctx.now,
    });
    objection.status = Status::UnderReview;
    let region = first_region(ctx, &objection)?;
    open_review(ctx, &mut objection, &region, ctx.now)?;
    let marks = mark_all(&objection, MarkKind::Objection, ctx.now);
    commit(
        ctx,
        &objection,
        AuditEvent::ObjectionLateAccepted,
        marks,
        Vec::new(),
    )
    .await?;
    Ok(objection)
}

/// The reviewing agency's decision. `correction` is the prepared correction of an upheld
/// objection resolved by `correct`; it is committed after the resolution.
pub async fn resolve(
    ctx: &Context<'_>,
    caller: &str,
    also_for: &[String],
    id: &str,
    req: &ResolveRequest,
    correction_for: Option<(&str, &str)>,
) -> Result<Objection, ObjectionError> {
    let _step = crate::casework::step(ctx.store).await?;
    let mut objection = load(ctx, id)?;
    if objection.status != Status::UnderReview {
        return Err(ObjectionError::WrongState(objection.state(ctx.now)));
    }
    if objection
        .records
        .iter()
        .any(|r| r.agency != caller && !also_for.contains(&r.agency))
    {
        return Err(ObjectionError::NotAllowed(
            "only the agency that provided the information resolves an objection to it",
        ));
    }
    if req.reason.trim().is_empty() {
        return Err(ObjectionError::Invalid(
            "a reason is required: the subject is told it".into(),
        ));
    }
    let action = match (req.outcome, req.action) {
        (Outcome::Rejected, None) => None,
        (Outcome::Rejected, Some(_)) => {
            return Err(ObjectionError::Invalid(
                "a rejection takes no action".into(),
            ))
        }
        (Outcome::Upheld, None) => {
            return Err(ObjectionError::Invalid(
                "an upheld objection needs action: correct or eliminate".into(),
            ))
        }
        (Outcome::Upheld, Some(a)) => Some(a),
    };
    match (action, correction_for) {
        (Some(Action::Correct), None) => {
            return Err(ObjectionError::Invalid(
                "action correct needs a correction naming one of the objection's records".into(),
            ))
        }
        (Some(Action::Correct), Some((agency, record_id)))
            if !objection
                .records
                .iter()
                .any(|r| r.agency == agency && r.record_id == record_id) =>
        {
            return Err(ObjectionError::Invalid(
                "the correction must be of a record the objection names".into(),
            ))
        }
        (Some(Action::Eliminate) | None, Some(_)) => {
            return Err(ObjectionError::Invalid(
                "a correction goes only with action correct".into(),
            ))
        }
        _ => {}
    }
    let mut marks = unmark_all(&objection);
    if action == Some(Action::Eliminate) {
        marks = mark_all(&objection, MarkKind::Eliminated, ctx.now);
        for m in &mut marks {
            m.remove = Some(objection.id.clone());
        }
    }
    objection.status = match req.outcome {
        Outcome::Upheld => Status::Upheld,
        Outcome::Rejected => Status::Rejected,
    };
    objection.resolutions.push(Resolution {
        level: objection.level,
        outcome: req.outcome,
        action,
        by: caller.to_string(),
        reason: req.reason.clone(),
        at: ctx.now,
        correction_id: None,
    });
    let notice = notices(ctx, &objection);
    commit(
        ctx,
        &objection,
        AuditEvent::ObjectionResolved,
        marks,
        notice,
    )
    .await?;
    Ok(objection)
}

/// Record the correction an upheld objection led to.
pub async fn note_correction(
    ctx: &Context<'_>,
    id: &str,
    correction_id: &str,
) -> Result<Objection, ObjectionError> {
    let mut objection = load(ctx, id)?;
    if let Some(last) = objection.resolutions.last_mut() {
        last.correction_id = Some(correction_id.to_string());
    }
    let kind = AuditEvent::ObjectionCorrectionLinked;
    commit(ctx, &objection, kind, Vec::new(), Vec::new()).await?;
    Ok(objection)
}

/// Review by the level above (复核, GD Art. 34) of a rejected objection: marked again, a new
/// deadline.
pub async fn review(
    ctx: &Context<'_>,
    id: &str,
    reason: &str,
) -> Result<Objection, ObjectionError> {
    let _step = crate::casework::step(ctx.store).await?;
    let mut objection = load(ctx, id)?;
    if objection.status != Status::Rejected || objection.level >= 2 {
        return Err(ObjectionError::WrongState(objection.state(ctx.now)));
    }
    if reason.trim().is_empty() {
        return Err(ObjectionError::Invalid("a reason is required".into()));
    }
    objection.level = 2;
    objection.status = Status::UnderReview;
    let region = first_region(ctx, &objection)?;
    open_review(ctx, &mut objection, &region, ctx.now)?;
    let marks = mark_all(&objection, MarkKind::Objection, ctx.now);
    commit(
        ctx,
        &objection,
        AuditEvent::ObjectionReviewOpened,
        marks,
        Vec::new(),
    )
    .await?;
    Ok(objection)
}

/// Provisional deadlines made exact once the calendar covers them (issue #26): re-read under the
/// step every objection writer holds, so no newer state is overwritten; only the deadline fields
/// change; written and audited (`objection_deadline_exact`) by the writer like every step.
/// `true` when it changed.
pub async fn make_exact(ctx: &Context<'_>, id: &str) -> Result<bool, ObjectionError> {
    let _step = crate::casework::step(ctx.store).await?;
    let mut objection = load(ctx, id)?;
    if !objection.make_exact(&ctx.calendar) {
        return Ok(false);
    }
    commit(
        ctx,
        &objection,
        AuditEvent::ObjectionDeadlineExact,
        Vec::new(),
        Vec::new(),
    )
    .await?;
    Ok(true)
}

fn load(ctx: &Context<'_>, id: &str) -> Result<Objection, ObjectionError> {
    super::get(ctx.store, id)?.ok_or(ObjectionError::NotFound("objection"))
}

fn first_region(ctx: &Context<'_>, objection: &Objection) -> Result<String, ObjectionError> {
    let Some(first) = objection.records.first() else {
        return Ok(String::new());
    };
    Ok(
        archive::current_version(ctx.store, &first.agency, &first.record_id)?
            .and_then(|(_, v)| serde_json::from_str::<Value>(v.record.get()).ok())
            .and_then(|v| v["source"]["region"].as_str().map(String::from))
            .unwrap_or_default(),
    )
}

/// The review deadline (LS Art. 23: "自收到异议申请之日起"): counted from `received`, the day the
/// department received it (the subject's filing, or an acceptance or review request), by the rule
/// for the region in force that day.
fn open_review(
    ctx: &Context<'_>,
    objection: &mut Objection,
    region: &str,
    received: OffsetDateTime,
) -> Result<(), ObjectionError> {
    let day = received.to_offset(CHINA_OFFSET).date();
    // A subject's objection is never refused for want of a rule (GD Art. 32): in a gap the
    // review is counted on the shortest period any rule allows, so the bureau is never late.
    let (working_days, rule_name) = ctx.rules.review_period(region, day);
    // Past the last known year: estimated never later than the truth (issue #26).
    CaseDeadline::count(&ctx.calendar, received, working_days, Estimate::NeverLater)?.store(
        &mut objection.review_deadline,
        &mut objection.review_deadline_provisional,
        &mut objection.review_basis,
    );
    objection.review_rule = rule_name;
    Ok(())
}

fn mark_all(objection: &Objection, kind: MarkKind, now: OffsetDateTime) -> Vec<MarkChange> {
    objection
        .records
        .iter()
        .map(|r| MarkChange {
            agency: r.agency.clone(),
            record_id: r.record_id.clone(),
            remove: None,
            add: Some(Mark {
                kind,
                id: objection.id.clone(),
                since: now,
            }),
        })
        .collect()
}

fn unmark_all(objection: &Objection) -> Vec<MarkChange> {
    objection
        .records
        .iter()
        .map(|r| MarkChange {
            agency: r.agency.clone(),
            record_id: r.record_id.clone(),
            remove: Some(objection.id.clone()),
            add: None,
        })
        .collect()
}

/// The result for the medical-insurance platform, which tells the subject.
fn notices(ctx: &Context<'_>, objection: &Objection) -> Vec<Entry> {
    let Some(resolution) = objection.resolutions.last() else {
        return Vec::new();
    };
    let body = json!({
        "objection": {
            "id": objection.id,
            "records": objection.records,
            "ground": objection.ground,
            "level": objection.level,
            "filed_at": crate::clock::rfc3339(objection.filed_at),
        },
        "result": resolution,
    });
    let Ok(payload) = serde_json::value::to_raw_value(&body) else {
        return Vec::new();
    };
    ctx.destinations
        .iter()
        .filter(|d| d.role == DestinationRole::MedicalInsurancePlatform)
        .map(|d| Entry {
            idempotency_key: outbox::idempotency_key(
                &d.id,
                "objection",
                &objection.id,
                u32::from(objection.level),
                Channel::GovShare,
                Kind::Notice,
                &format!("result-{}", objection.resolutions.len()),
            ),
            destination: d.id.clone(),
            channel: Channel::GovShare,
            kind: Kind::Notice,
            agency: "objection".into(),
            record_id: objection.id.clone(),
            version: u32::from(objection.level),
            rule: "objection-result".into(),
            enqueued_at: ctx.now.to_offset(CHINA_OFFSET),
            enqueued_unix: ctx.now.unix_timestamp(),
            correction_id: None,
            payload: Some(payload.clone()),
            source: None,
        })
        .collect()
}

/// One atomic step: the objection, its marks, the records re-planned (the ledger sends every
/// platform the difference), notices, and the audit entry.
async fn commit(
    ctx: &Context<'_>,
    objection: &Objection,
    kind: AuditEvent,
    marks: Vec<MarkChange>,
    enqueue: Vec<Entry>,
) -> Result<Vec<Queued>, ObjectionError> {
    let mut items = Vec::new();
    if !marks.is_empty() {
        for r in &objection.records {
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
    data.insert("objection_id".into(), json!(objection.id));
    data.insert("status".into(), json!(objection.status));
    data.insert("level".into(), json!(objection.level));
    data.insert("records".into(), json!(objection.records));
    data.insert(
        "review_deadline".into(),
        json!(objection.review_deadline.map(crate::clock::rfc3339)),
    );
    if objection.review_deadline_provisional {
        data.insert("review_deadline_provisional".into(), json!(true));
        if let Some(d) = objection.review_deadline {
            crate::telemetry::events::deadline_provisional(
                "objection",
                &objection.id,
                &crate::clock::rfc3339(d),
            );
        }
    }
    let writes = vec![(
        Objection::key(&objection.id),
        crate::store::to_bytes(objection),
    )];
    let (queued, _) = ctx
        .committer
        .reconcile(
            ReconcileJob::new(kind, data)
                .items(items)
                .writes(writes)
                .marks(marks)
                .enqueue(enqueue),
        )
        .await?;
    crate::ledger::report_queued(kind.as_str(), &queued);
    crate::telemetry::events::objection_step(kind.as_str(), &objection.id, queued.len());
    Ok(queued)
}
