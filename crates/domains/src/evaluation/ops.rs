//! Reading results: the authorized query's answer (GD Art. 21), the operator's view of a subject's
//! results and of the yearly cycles. Shared by the API, the admin endpoint and the CLI.

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::engine::{today, Engine, EvaluationError};
use super::{ids, worker};
use crate::archive;
use crate::command::OpError;
use crate::subject::SubjectId;

/// The operator API's paths of these commands (issue #28): the admin server routes them and the
/// CLI calls them by these constants, never by a literal of its own.
pub mod route {
    pub const SHOW: &str = "/evaluation/show";
    pub const CYCLES: &str = "/evaluation/cycles";
    pub const PUBLISH: &str = "/evaluation/publish";
    pub const RERUN: &str = "/evaluation/rerun";
}

/// How many past cycles a subject's view goes back (dishonesty counts 3 years, LS Art. 20).
const YEARS_SHOWN: i32 = 4;

/// The subject's current result: this cycle's, else the last cycle's. `None`: never evaluated,
/// or exited (LS Art. 20: removed from view).
pub fn current(
    engine: &Engine,
    subject: &SubjectId,
    now: OffsetDateTime,
) -> Result<Option<Value>, EvaluationError> {
    let archive_key = subject.archive_key(&engine.store);
    let entry = engine
        .store
        .get_json::<archive::SubjectEntry>(&archive::subject_key(&archive_key))?;
    if entry.as_ref().is_some_and(|e| e.is_exited()) {
        return Ok(None);
    }
    let key = archive_key;
    let year = today(now).year();
    for y in [year, year - 1] {
        if let Some(view) = result_view(engine, &key, y)? {
            return Ok(Some(view));
        }
    }
    Ok(None)
}

/// Every result the subject holds over the last cycles, newest first.
pub fn history(
    engine: &Engine,
    subject: &SubjectId,
    now: OffsetDateTime,
) -> Result<Value, EvaluationError> {
    let key = subject.archive_key(&engine.store);
    let year = today(now).year();
    let mut results = Vec::new();
    for y in (year - YEARS_SHOWN..=year).rev() {
        if let Some(v) = result_view(engine, &key, y)? {
            results.push(v);
        }
        let pub_id = engine.derived_id(&key, |k| ids::publication(y, k))?;
        if let Some((_, version)) =
            archive::current_version(&engine.store, &engine.agency, &pub_id)?
        {
            let json: Value = serde_json::from_str(version.record.get()).unwrap_or(Value::Null);
            results.push(json!({"record_id": pub_id, "version": version.version, "published": json.get("content")}));
        }
    }
    Ok(json!({"subject": subject.log_safe(&engine.store), "results": results}))
}

fn result_view(engine: &Engine, key: &str, year: i32) -> Result<Option<Value>, EvaluationError> {
    let id = engine.derived_id(key, |k| ids::result(year, k))?;
    let Some((head, version)) = archive::current_version(&engine.store, &engine.agency, &id)?
    else {
        return Ok(None);
    };
    let json: Value = serde_json::from_str(version.record.get()).map_err(|e| {
        crate::store::StoreError::Corrupt {
            key: archive::record_head_key(&engine.agency, &id),
            message: e.to_string(),
        }
    })?;
    let mut view = json.get("content").cloned().unwrap_or(Value::Null);
    if let Some(obj) = view.as_object_mut() {
        obj.insert("record".into(), json!({"agency": engine.agency, "record_id": id, "version": version.version, "evaluated_at": crate::clock::rfc3339(version.received_at)}));
        if !head.marks.is_empty() {
            obj.insert("marks".into(), json!(head.marks));
        }
        obj.insert(
            "subject".into(),
            json.get("subject").cloned().unwrap_or(Value::Null),
        );
    }
    Ok(Some(view))
}

/// Every yearly cycle with its progress.
pub fn cycles(engine: &Engine) -> Result<Value, EvaluationError> {
    Ok(json!({"cycles": worker::cycles(&engine.store)?}))
}

/// An operator's evaluation command (admin endpoint or CLI).
pub enum Command {
    Show {
        id_type: String,
        id: String,
    },
    Cycles,
    Publish {
        year: i32,
    },
    /// Run the year's cycle again under the profiles in force (issue #26).
    Rerun {
        year: i32,
        region: Option<String>,
        by: String,
    },
}

/// The command a request names, or why it cannot be run: `GET /evaluation/show?id_type=T&id=I`,
/// `GET /evaluation/cycles`, `POST /evaluation/publish?year=Y`, `POST /evaluation/rerun?year=Y
/// [&region=R]`. `None`: no path of this domain.
pub fn command(
    method: &str,
    path: &str,
    query: &crate::command::Query,
    by: &str,
) -> Option<Result<Command, OpError>> {
    use crate::command::{given, param};
    let year = || {
        param(query, "year")
            .parse()
            .map_err(|_| OpError::Invalid("year must be a number".into()))
    };
    Some(match (method, path) {
        ("GET", route::SHOW) => Ok(Command::Show {
            id_type: param(query, "id_type"),
            id: param(query, "id"),
        }),
        ("GET", route::CYCLES) => Ok(Command::Cycles),
        ("POST", route::RERUN) => year().map(|year| Command::Rerun {
            year,
            region: given(query, "region"),
            by: by.to_string(),
        }),
        ("POST", route::PUBLISH) => year().map(|year| Command::Publish { year }),
        _ => return None,
    })
}

impl Command {
    /// The stable code of this command refused in the state it found: a re-run outside the
    /// running year, a publication before the cycle ended.
    pub fn conflict_code(&self) -> &'static str {
        match self {
            Self::Rerun { .. } => "not_running_year",
            _ => "cycle_not_ended",
        }
    }
}

/// Run an operator command; publishing is audited as the operator's.
pub async fn run(
    engine: &Engine,
    committer: &crate::exchange::CommitterHandle,
    calendar: &crate::calendar::Calendar,
    filing_working_days: u32,
    now: OffsetDateTime,
    command: Command,
) -> Result<Value, crate::command::OpError> {
    use crate::command::OpError;
    let storage = |e: EvaluationError| OpError::Storage(e.to_string());
    match command {
        Command::Show { id_type, id } => {
            let id_type = crate::subject::IdType::from_code(&id_type)
                .ok_or_else(|| OpError::Invalid(format!("unknown id type {id_type:?}")))?;
            let subject = SubjectId::parse(id_type, &id, &engine.exceptions)
                .map_err(|e| OpError::Invalid(e.to_string()))?;
            history(engine, &subject, now).map_err(storage)
        }
        Command::Cycles => cycles(engine).map_err(storage),
        Command::Rerun { year, region, by } => {
            use super::worker::RerunError;
            match super::worker::start_rerun(
                &engine.store,
                committer,
                year,
                region,
                now,
                "operator",
                &by,
            )
            .await
            {
                Ok(run) => Ok(json!({"started": run})),
                Err(e @ RerunError::NotRunningYear { .. }) => Err(OpError::Conflict(e.to_string())),
                Err(e @ RerunError::BadRegion(_)) => Err(OpError::Invalid(e.to_string())),
                Err(RerunError::Evaluation(e)) => Err(storage(e)),
            }
        }
        Command::Publish { year } => {
            match super::publish::publish(
                engine,
                committer,
                calendar,
                filing_working_days,
                year,
                now,
                "operator",
            )
            .await
            {
                Ok(report) => Ok(serde_json::to_value(report).unwrap_or_default()),
                Err(e @ super::publish::PublishError::CycleNotEnded(_)) => {
                    Err(OpError::Conflict(e.to_string()))
                }
                Err(super::publish::PublishError::Evaluation(e)) => Err(storage(e)),
            }
        }
    }
}

/// A year's results at a glance (the console's evaluation page, issue #27): how many subjects have
/// a result, by grade, which results are under objection (not published until resolved, LS Art.
/// 27), and how many are published.
#[derive(Debug, Default, serde::Serialize)]
pub struct YearSummary {
    pub year: i32,
    pub results: u64,
    pub by_grade: std::collections::BTreeMap<String, u64>,
    /// Result record ids marked 异议标注.
    pub under_objection: Vec<String>,
    pub published: u64,
    /// Results recomputed to a new content during the year (a record, a rule or a profile
    /// changed): their current version is past the first.
    pub changed: u64,
}

/// Reads every result of `year` (one record head and its current version each).
pub fn year_summary(engine: &Engine, year: i32) -> Result<YearSummary, EvaluationError> {
    let mut summary = YearSummary {
        year,
        ..YearSummary::default()
    };
    let result_prefix = ids::result_prefix(year);
    let prefix = archive::record_head_key(&engine.agency, &result_prefix);
    for (key, head) in engine.store.scan::<archive::RecordHead>(&prefix)? {
        let record_id = key[prefix.len() - result_prefix.len()..].to_string();
        summary.results += 1;
        if head.version > 1 {
            summary.changed += 1;
        }
        if head
            .marks
            .iter()
            .any(|m| m.kind == archive::MarkKind::Objection)
        {
            summary.under_objection.push(record_id.clone());
        }
        if let Some((_, version)) =
            archive::current_version(&engine.store, &engine.agency, &record_id)?
        {
            let json: Value = serde_json::from_str(version.record.get()).unwrap_or(Value::Null);
            let grade = json
                .pointer("/content/grade")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string();
            *summary.by_grade.entry(grade).or_default() += 1;
        }
        if let Some(pub_id) = ids::publication_of(&record_id) {
            if engine
                .store
                .get_json::<archive::RecordHead>(&archive::record_head_key(
                    &engine.agency,
                    &pub_id,
                ))?
                .is_some()
            {
                summary.published += 1;
            }
        }
    }
    Ok(summary)
}
