//! The evaluation worker: dynamic evaluation (GD Art. 18), evaluation timers, and the yearly cycle
//! (LS Art. 20).
//!
//! - Every change to a subject's archive leaves a `chg/` key (written by the archive with the
//!   change); the worker evaluates the subject and removes the key in the same atomic step, unless
//!   another change came in meanwhile (then it evaluates again).
//! - `evt/` timers bring a subject back on the day a counted record leaves its validity.
//! - The cycle of the clock's year runs once over every subject (`evc/{year}` holds its progress and
//!   its cursor, committed with each chunk of results): a crash in the middle resumes from the
//!   cursor; running a chunk twice changes nothing, since equal results are not new versions.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::engine::{today, Engine, EvaluationError, Step};
use crate::audit::AuditEvent;
use crate::clock::SharedClock;
use crate::exchange::ApplyJob;
use crate::exchange::CommitterHandle;
use crate::ledger::stage::{Reconcile, ReconcileJob};
use crate::store::{Store, StoreError};

/// Subjects evaluated per writer job outside the cycle.
const BATCH: usize = 256;

/// Progress of one yearly cycle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CycleRun {
    pub year: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Subjects in the archive when the cycle started.
    pub total: u64,
    pub done: u64,
    /// The last subject (archive key) whose result is committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub finished_at: Option<OffsetDateTime>,
    /// The year ended before the cycle went through every subject: the next year's cycle, which
    /// covers every subject, took over.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended_early: bool,
    /// A re-evaluation (issue #26): how many times the year's cycle was started again, why, by
    /// whom, and the region it is limited to (none: every subject).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reruns: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Subjects this run could not evaluate because no profile applies (the gap policy "stop"),
    /// by the profile that ended.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub not_evaluated: BTreeMap<String, u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why a re-evaluation cannot start: the caller's to fix.
#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    #[error("only the running year's cycle ({running}) can be re-evaluated: results of a past year stay as its cycle left them")]
    NotRunningYear { running: i32 },
    #[error("region {0:?} is not a region prefix (1-6 digits)")]
    BadRegion(String),
    #[error(transparent)]
    Evaluation(#[from] EvaluationError),
}

/// Start the year's cycle again (a re-evaluation, issue #26): every subject (of `region` when
/// given) is evaluated under the profiles in force now, in chunks committed with their cursor, so
/// a restart resumes it; a grade notice goes out only where a grade really changes (equal results
/// are not new versions). Replaces a run still going. Audited with its cause and operator.
pub async fn start_rerun(
    store: &Store,
    committer: &CommitterHandle,
    year: i32,
    region: Option<String>,
    now: OffsetDateTime,
    cause: &str,
    by: &str,
) -> Result<CycleRun, RerunError> {
    let running = today(now).year();
    if year != running {
        return Err(RerunError::NotRunningYear { running });
    }
    if let Some(r) = &region {
        if r.is_empty() || r.len() > 6 || !r.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RerunError::BadRegion(r.clone()));
        }
    }
    let previous = store
        .get_json::<CycleRun>(&cycle_key(year))
        .map_err(EvaluationError::from)?;
    let run = CycleRun {
        year,
        started_at: now,
        total: store.count_under(b"sub/").map_err(EvaluationError::from)? as u64,
        done: 0,
        cursor: None,
        finished_at: None,
        ended_early: false,
        reruns: previous.as_ref().map_or(0, |p| p.reruns) + 1,
        rerun_cause: Some(cause.to_string()),
        region: region.clone(),
        not_evaluated: BTreeMap::new(),
    };
    let mut data = Map::new();
    data.insert("year".into(), json!(year));
    data.insert("region".into(), json!(region));
    data.insert("cause".into(), json!(cause));
    data.insert("by".into(), json!(by));
    data.insert("total".into(), json!(run.total));
    committer
        .apply(
            ApplyJob::new(AuditEvent::EvaluationRerunStarted, data)
                .writes(vec![(cycle_key(year), crate::store::to_bytes(&run))]),
        )
        .await
        .map_err(EvaluationError::from)?;
    tracing::info!(year, region = ?run.region, cause, by, total = run.total, "re-evaluation started");
    Ok(run)
}

pub fn cycle_key(year: i32) -> String {
    crate::store::keys::Key::encode(&crate::store::keys::CycleKey(year))
}

/// Every cycle run, oldest first.
pub fn cycles(store: &Store) -> Result<Vec<CycleRun>, StoreError> {
    Ok(store
        .scan::<CycleRun>("evc/")?
        .into_iter()
        .map(|(_, c)| c)
        .collect())
}

#[derive(Clone)]
pub struct Worker {
    pub engine: Engine,
    pub committer: CommitterHandle,
    pub clock: SharedClock,
    pub interval: Duration,
    pub cycle_batch: usize,
    pub cycle_pace: Duration,
}

impl Worker {
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        while !*stop.borrow() {
            if let Err(e) = self.follow_changes().await {
                tracing::error!(error = %e, "evaluation: cannot take up archive changes; trying again");
            }
            let pause = match self.cycle_chunk().await {
                Ok(true) => self.cycle_pace,
                Ok(false) => self.interval,
                Err(e) => {
                    tracing::error!(error = %e, "evaluation: the yearly cycle failed; trying again");
                    self.interval
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {},
                _ = stop.changed() => {},
            }
        }
    }

    /// Evaluate every subject whose archive changed or whose timer is due.
    pub async fn follow_changes(&self) -> Result<usize, EvaluationError> {
        let mut total = 0;
        loop {
            let now = self.clock.now();
            let engine = self.engine.clone();
            let work = tokio::task::spawn_blocking(move || {
                let (taken, mut subjects) = crate::archive::changed_subjects(&engine.store, BATCH)?;
                let timers = due_timers(&engine.store, now, BATCH)?;
                let mut timer_keys: Vec<String> = timers.iter().map(|(k, _)| k.clone()).collect();
                // The change-log entries taken up go with the results they produced.
                timer_keys.extend(taken);
                subjects.extend(timers.into_iter().map(|(_, s)| s));
                let (step, summaries) = evaluate_all(&engine, subjects.iter(), now, None)?;
                Ok::<_, EvaluationError>((subjects.len(), step, summaries, timer_keys))
            })
            .await
            .map_err(|e| EvaluationError::Storage(StoreError::CommitFailed(e.to_string())))??;
            let (n, step, summaries, removes) = work;
            if n == 0 {
                return Ok(total);
            }
            if !step.gaps.is_empty() {
                // The gap policy "stop", never silent (issue #26); the rules watcher warns daily.
                tracing::info!(not_evaluated = ?step.gaps, "changed subjects not evaluated: no scoring profile is in force for them (see `credit-gateway rules in-force`)");
            }
            self.commit(
                AuditEvent::Evaluation,
                step,
                summaries,
                Vec::new(),
                removes,
                Vec::new(),
                None,
            )
            .await?;
            total += n;
            if n < BATCH {
                return Ok(total);
            }
        }
    }

    /// Run one chunk of the cycle of the clock's year; `true` while the cycle has more to do.
    pub async fn cycle_chunk(&self) -> Result<bool, EvaluationError> {
        let now = self.clock.now();
        let year = today(now).year();
        let engine = self.engine.clone();
        let batch = self.cycle_batch.max(1);
        let work = tokio::task::spawn_blocking(move || {
            let run = match engine.store.get_json::<CycleRun>(&cycle_key(year))? {
                Some(run) if run.finished_at.is_some() => return Ok(None),
                Some(run) => run,
                None => CycleRun {
                    year,
                    started_at: now,
                    total: engine.store.count_under(b"sub/")? as u64,
                    done: 0,
                    cursor: None,
                    finished_at: None,
                    ended_early: false,
                    reruns: 0,
                    rerun_cause: None,
                    region: None,
                    not_evaluated: BTreeMap::new(),
                },
            };
            // A cycle of an earlier year still running when its year ended: closed, said so.
            let stale: Vec<CycleRun> = cycles(&engine.store)?
                .into_iter()
                .filter(|c| c.year < year && c.finished_at.is_none())
                .map(|mut c| {
                    tracing::warn!(year = c.year, done = c.done, total = c.total, "the yearly cycle did not finish within its year; the new year's cycle covers every subject");
                    c.finished_at = Some(now);
                    c.ended_early = true;
                    c
                })
                .collect();
            let subjects = next_subjects(&engine.store, run.cursor.as_deref(), batch)?;
            let (step, summaries) =
                evaluate_all(&engine, subjects.iter(), now, run.region.as_deref())?;
            let mut next = run.clone();
            for (profile, n) in &step.gaps {
                *next.not_evaluated.entry(profile.clone()).or_default() += n;
            }
            next.done += subjects.len() as u64;
            next.cursor = subjects.last().cloned().or(run.cursor.clone());
            if subjects.len() < batch {
                next.finished_at = Some(now);
            }
            Ok::<_, EvaluationError>(Some((next, step, summaries, stale)))
        })
        .await
        .map_err(|e| EvaluationError::Storage(StoreError::CommitFailed(e.to_string())))??;
        let Some((run, step, summaries, stale)) = work else {
            return Ok(false);
        };
        let mut state = vec![(cycle_key(run.year), crate::store::to_bytes(&run))];
        state.extend(
            stale
                .iter()
                .map(|c| (cycle_key(c.year), crate::store::to_bytes(c))),
        );
        let cycle = json!({"year": run.year, "done": run.done, "total": run.total, "finished": run.finished_at.is_some(), "region": run.region, "not_evaluated": run.not_evaluated});
        if run.finished_at.is_some() && !run.not_evaluated.is_empty() {
            // The gap policy "stop" is said, never silent (issue #26).
            tracing::warn!(year = run.year, not_evaluated = ?run.not_evaluated, "evaluation cycle finished with subjects left unevaluated: no scoring profile is in force for them (see `credit-gateway rules in-force`)");
        }
        self.commit(
            AuditEvent::EvaluationCycle,
            step,
            summaries,
            state,
            Vec::new(),
            Vec::new(),
            Some(cycle),
        )
        .await?;
        crate::telemetry::events::evaluation_cycle(
            run.year,
            run.done,
            run.total,
            run.finished_at.is_some(),
        );
        Ok(run.finished_at.is_none())
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        kind: AuditEvent,
        step: Step,
        summaries: Vec<Value>,
        mut writes: Vec<(String, Vec<u8>)>,
        removes: Vec<String>,
        clear_if: Vec<(String, Vec<u8>)>,
        cycle: Option<Value>,
    ) -> Result<(), EvaluationError> {
        // Taking up a change that changed nothing is not an exchange: no audit entry.
        let quiet = summaries.is_empty() && step.marks.is_empty() && step.records.is_empty();
        writes.extend(step.timers.into_iter().map(|k| (k, b"{}".to_vec())));
        writes.extend(step.writes);
        let mut data = Map::new();
        data.insert("results".into(), Value::Array(summaries));
        if let Some(c) = cycle {
            data.insert("cycle".into(), c);
        }
        let (queued, _) = self
            .committer
            .reconcile(
                ReconcileJob::new(kind, data)
                    .items(step.items)
                    .writes(writes)
                    .removes(removes)
                    .marks(step.marks)
                    .records(step.records)
                    .clear_if(clear_if)
                    .quiet(quiet),
            )
            .await?;
        crate::ledger::report_queued(kind.as_str(), &queued);
        Ok(())
    }
}

/// Evaluate subjects one by one; a subject whose result does not validate is reported and
/// skipped, a storage failure stops the batch.
fn evaluate_all<'a>(
    engine: &Engine,
    subjects: impl Iterator<Item = &'a String>,
    now: OffsetDateTime,
    scope: Option<&str>,
) -> Result<(Step, Vec<Value>), EvaluationError> {
    let mut step = Step::default();
    let mut summaries = Vec::new();
    for subject in subjects {
        match engine.evaluate_in(subject, now, scope) {
            Ok(s) => step.absorb(s, &mut summaries),
            Err(EvaluationError::Invalid(message)) => {
                crate::telemetry::events::evaluation_failed(
                    &super::ids::subject_token(subject),
                    &message,
                );
            }
            // One unreadable stored record must not hold back every other subject: reported and
            // skipped (its `chg/` key is taken up; the next change brings it back).
            Err(EvaluationError::Storage(e @ StoreError::Corrupt { .. })) => {
                crate::telemetry::events::evaluation_failed(
                    &super::ids::subject_token(subject),
                    &e.to_string(),
                );
            }
            Err(e) => return Err(e),
        }
    }
    for (profile, n) in &step.gaps {
        metrics::counter!("gateway_evaluation_not_evaluated_total", "ended_profile" => profile.clone())
            .increment(*n);
    }
    Ok((step, summaries))
}

/// Subjects after `cursor` in key order.
fn next_subjects(
    store: &Store,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let start = match cursor {
        // The key right after the cursor's.
        Some(c) => format!("sub/{c}\u{0}"),
        None => "sub/".to_string(),
    };
    let mut out = Vec::new();
    for item in store.range_raw(start.as_bytes(), Some(b"sub0")) {
        let (k, _) = item?;
        out.push(String::from_utf8_lossy(&k["sub/".len()..]).into_owned());
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// `evt/` timers due at `now`: (key, archive key).
fn due_timers(
    store: &Store,
    now: OffsetDateTime,
    limit: usize,
) -> Result<Vec<(String, String)>, StoreError> {
    use super::engine::TIMER_PREFIX;
    use crate::store::keys::{due_bound, parse_instant_key};
    let end = due_bound(TIMER_PREFIX, now.unix_timestamp());
    let mut out = Vec::new();
    for item in store.range_raw(TIMER_PREFIX.as_bytes(), Some(end.as_bytes())) {
        let (k, _) = item?;
        let key = String::from_utf8_lossy(&k).into_owned();
        if let Some((_, subject)) = parse_instant_key(TIMER_PREFIX, &key) {
            out.push((key.clone(), subject.to_string()));
        }
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}
