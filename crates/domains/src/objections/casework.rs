//! Objection casework as one whole: the steps a resolving department takes on an objection, the
//! same for an agency through `POST /v1/objections/{id}/…` and for a signed-in operator of the
//! medical-insurance bureau at the console (issue #27).
//!
//! Owns: resolving with a correction (GD Art. 31) checked in full before the objection is resolved
//! (so a bad correction changes nothing), and the list of steps the flow allows an objection in its
//! state, each with the duty it belongs to ([`Duty`]): the department that provided the information
//! resolves at the first level (LS Art. 23; GD Art. 33), the level above reviews (复核, GD Art. 34),
//! and late objections are accepted by an operator with a reason (LS Art. 21). The states and
//! steps are the casework core's [`crate::casework::CaseFlow`], implemented by [`ObjectionFlow`]
//! (the tracker reads the same phases); [`allowed`] and [`Duty`] stay here for the API and the
//! console.
//!
//! Never does: decide who a caller is (the agency comes from its certificate, the operator from
//! the session), render anything, or keep state of its own: every step goes through `flow`, which
//! writes and audits it.

use serde_json::Value;

use super::flow::{self, Context, ObjectionError, ResolveRequest};
use super::{Objection, State};
use crate::config::DestinationConfig;
use crate::corrections::request::{
    prepare, CorrectionError, Prepared, Request as CorrectionRequest,
};
use crate::record::ValidationContext;

pub use crate::casework::Duty;
use crate::casework::{CaseFlow, Phase};

/// A step the flow allows on an objection as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    AcceptLate,
    Resolve,
    OpenReview,
}

impl Step {
    pub fn code(self) -> &'static str {
        match self {
            Self::AcceptLate => "accept_late",
            Self::Resolve => "resolve",
            Self::OpenReview => "review",
        }
    }
}

/// The objection's flow on the casework core: `filed_late` waits for an operator, a review
/// deadline runs `under_review` and has passed when `overdue`, `upheld` is terminal and
/// `rejected` closed (the level above may still review it, GD Art. 34).
pub struct ObjectionFlow;

impl CaseFlow for ObjectionFlow {
    type Case = Objection;
    type State = State;
    type Step = Step;
    type Facts = ();

    const STATES: &'static [State] = &[
        State::FiledLate,
        State::UnderReview,
        State::Overdue,
        State::Upheld,
        State::Rejected,
    ];

    fn state(objection: &Objection, now: time::OffsetDateTime, _: ()) -> State {
        objection.state(now)
    }

    fn phase(state: State) -> Phase {
        match state {
            State::FiledLate => Phase::Waiting,
            State::UnderReview => Phase::Running,
            State::Overdue => Phase::Overdue,
            State::Upheld | State::Rejected => Phase::Closed,
        }
    }

    fn is_terminal(state: State) -> bool {
        state == State::Upheld
    }

    /// Exactly the transitions of `flow`: `filed_late` → accept late; `under_review`/`overdue`
    /// → resolve (by the level the objection is at); `rejected` at the first level → review by
    /// the level above.
    fn steps(objection: &Objection, state: State, _: time::OffsetDateTime) -> Vec<(Step, Duty)> {
        match state {
            State::FiledLate => vec![(Step::AcceptLate, Duty::Casework)],
            State::UnderReview | State::Overdue if objection.level >= 2 => {
                vec![(Step::Resolve, Duty::Review)]
            }
            State::UnderReview | State::Overdue => vec![(Step::Resolve, Duty::Casework)],
            State::Rejected if objection.level < 2 => vec![(Step::OpenReview, Duty::Casework)],
            State::Rejected | State::Upheld => Vec::new(),
        }
    }
}

/// The steps the flow allows now, with the duty each needs ([`ObjectionFlow`]).
pub fn allowed(objection: &Objection, now: time::OffsetDateTime) -> Vec<(Step, Duty)> {
    ObjectionFlow::allowed(objection, now, ())
}

/// What resolving needs besides the flow's context.
pub struct Resolver<'a> {
    pub destinations: &'a [DestinationConfig],
    pub medical_insurance_agencies: &'a [String],
    /// The agency the gateway's own evaluation results are filed under.
    pub evaluation_agency: &'a str,
    /// GD Art. 31's working days for a correction.
    pub working_days: u32,
}

/// Why a resolution was refused: the objection's flow, or the correction it carries.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Objection(#[from] ObjectionError),
    /// The caller's to fix: the correction does not read as one (a field of the wrong type).
    #[error("correction: {0}")]
    CorrectionUnreadable(String),
    /// The caller's to fix: the correction is not one the correction flow takes (its refusal,
    /// with every field's problem for an invalid record, GD Art. 31).
    #[error("correction: {0}")]
    Correction(CorrectionError),
    /// The correction could not be stored; a retry may help.
    #[error("storage: {0}")]
    Storage(String),
}

/// A refused resolution answers as the objection's refusal it was; a correction the flow does not
/// take as an invalid objection (`invalid_objection`, the correction's reason in the message).
impl crate::answer::Answer for ResolveError {
    fn status(&self) -> http::StatusCode {
        match self {
            Self::Objection(e) => e.status(),
            Self::Correction(_) | Self::CorrectionUnreadable(_) => {
                http::StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Storage(_) => crate::answer::StorageUnavailable.status(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::Objection(e) => e.code(),
            Self::Correction(_) | Self::CorrectionUnreadable(_) => "invalid_objection",
            Self::Storage(_) => crate::answer::StorageUnavailable.code(),
        }
    }
    fn message(&self) -> String {
        match self {
            Self::Objection(e) => e.message(),
            Self::Correction(_) | Self::CorrectionUnreadable(_) => self.to_string(),
            Self::Storage(_) => crate::answer::StorageUnavailable.message(),
        }
    }
    fn retry(&self) -> bool {
        self.retry_after().is_some()
    }
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Objection(e) => e.retry_after(),
            Self::Correction(_) | Self::CorrectionUnreadable(_) => None,
            Self::Storage(_) => crate::answer::StorageUnavailable.retry_after(),
        }
    }
    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        match self {
            Self::Objection(e) => e.details(),
            // The correction's own details: which fields, and why (`problems`).
            Self::Correction(e) => e.details(),
            _ => serde_json::Map::new(),
        }
    }
}

/// The resolved objection and, for `correct`, the correction's status.
pub struct Resolved {
    pub objection: Objection,
    pub correction: Option<crate::corrections::Status>,
}

/// Resolve objection `id` as `caller` (an agency id). `may_correct_others`: the caller corrects
/// records of other agencies (the medical-insurance platform, or an agency so configured). The
/// department that provided the information decides (LS Art. 23), never the filer for it; results
/// the gateway computes are the medical-insurance department's (LS Art. 21: 向市级医疗保障部门
/// 提出异议), so its agencies resolve objections to them.
pub async fn resolve(
    ctx: &Context<'_>,
    resolver: &Resolver<'_>,
    caller: &str,
    may_correct_others: bool,
    id: &str,
    request: &ResolveRequest,
) -> Result<Resolved, ResolveError> {
    let prepared = match &request.correction {
        None => None,
        Some(value) => Some(prepare_correction(
            ctx,
            resolver,
            caller,
            may_correct_others,
            value,
        )?),
    };
    let also_for = if resolver
        .medical_insurance_agencies
        .iter()
        .any(|a| a == caller)
    {
        vec![resolver.evaluation_agency.to_string()]
    } else {
        Vec::new()
    };
    let objection = flow::resolve(
        ctx,
        caller,
        &also_for,
        id,
        request,
        prepared.as_ref().map(|p| {
            (
                p.correction.agency.as_str(),
                p.correction.record_id.as_str(),
            )
        }),
    )
    .await?;
    let Some(Prepared {
        correction,
        record,
        plan,
        mark,
        forward,
    }) = prepared
    else {
        return Ok(Resolved {
            objection,
            correction: None,
        });
    };
    let (stored, _) =
        crate::corrections::stage::commit(ctx.committer, correction, record, plan, mark, forward)
            .await
            .map_err(|e| ResolveError::Storage(e.to_string()))?;
    let linked = flow::note_correction(ctx, &objection.id, &stored.id).await?;
    let status = crate::corrections::status_of(ctx.store, stored, ctx.now)
        .map_err(|e| ResolveError::Storage(e.to_string()))?;
    Ok(Resolved {
        objection: linked,
        correction: Some(status),
    })
}

/// A correction is checked in full before the objection is resolved.
fn prepare_correction(
    ctx: &Context<'_>,
    resolver: &Resolver<'_>,
    caller: &str,
    may_correct_others: bool,
    value: &Value,
) -> Result<Prepared, ResolveError> {
    let correction: CorrectionRequest = serde_json::from_value(value.clone())
        .map_err(|e| ResolveError::CorrectionUnreadable(e.to_string()))?;
    let correction_ctx = crate::corrections::request::Context {
        store: ctx.store,
        calendar: &ctx.calendar,
        router: &ctx.router,
        destinations: resolver.destinations,
        validation: ValidationContext {
            exceptions: ctx.exceptions.clone(),
            authenticated_agency: None,
            incoming: true,
        },
        medical_insurance_agencies: resolver.medical_insurance_agencies,
        working_days: resolver.working_days,
        now: ctx.now,
    };
    prepare(correction_ctx, caller, may_correct_others, correction).map_err(|e| match e {
        CorrectionError::Storage(m) => ResolveError::Storage(m),
        other => ResolveError::Correction(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objections::{Ground, RecordRef, Status};

    fn objection(status: Status, level: u8) -> Objection {
        let at = time::macros::datetime!(2026-09-28 10:00 +8);
        Objection {
            id: "OBJ".into(),
            records: vec![RecordRef {
                agency: "mi".into(),
                record_id: "R".into(),
            }],
            ground: Ground::ErrorOrOmission,
            materials: "m".into(),
            filed_by: "mi".into(),
            filed_at: at,
            received_at: at,
            notified_on: None,
            filing_deadline: None,
            filing_deadline_provisional: false,
            filing_basis: None,
            late_accepted: None,
            level,
            status,
            review_deadline: Some(at + time::Duration::days(5)),
            review_deadline_provisional: false,
            review_basis: None,
            review_rule: String::new(),
            resolutions: Vec::new(),
        }
    }

    /// Exactly the flow's transitions, each with its duty (GD Arts. 33-34; LS Arts. 21, 23).
    #[test]
    fn each_state_allows_exactly_the_flows_steps() {
        let now = time::macros::datetime!(2026-09-29 10:00 +8);
        let late = now + time::Duration::days(30);
        assert_eq!(
            allowed(&objection(Status::FiledLate, 1), now),
            vec![(Step::AcceptLate, Duty::Casework)]
        );
        assert_eq!(
            allowed(&objection(Status::UnderReview, 1), now),
            vec![(Step::Resolve, Duty::Casework)]
        );
        assert_eq!(
            allowed(&objection(Status::UnderReview, 1), late),
            vec![(Step::Resolve, Duty::Casework)],
            "overdue is still resolved"
        );
        assert_eq!(
            allowed(&objection(Status::UnderReview, 2), now),
            vec![(Step::Resolve, Duty::Review)],
            "the level above resolves its review (GD Art. 34)"
        );
        assert_eq!(
            allowed(&objection(Status::Rejected, 1), now),
            vec![(Step::OpenReview, Duty::Casework)]
        );
        assert!(allowed(&objection(Status::Rejected, 2), now).is_empty());
        assert!(allowed(&objection(Status::Upheld, 1), now).is_empty());
    }

    /// Every state once, in the order of the gauges; terminal ones allow nothing.
    #[test]
    fn the_states_are_listed_once_and_terminal_ones_allow_nothing() {
        let codes: Vec<String> = ObjectionFlow::STATES
            .iter()
            .map(|s| ObjectionFlow::code(*s))
            .collect();
        assert_eq!(
            codes,
            [
                "filed_late",
                "under_review",
                "overdue",
                "upheld",
                "rejected"
            ]
        );
        let now = time::macros::datetime!(2026-09-29 10:00 +8);
        for (status, level) in [(Status::Upheld, 1), (Status::Upheld, 2)] {
            let o = objection(status, level);
            assert!(ObjectionFlow::is_terminal(o.state(now)));
            assert!(allowed(&o, now).is_empty());
        }
        assert!(!ObjectionFlow::is_terminal(State::Rejected), "GD Art. 34");
    }
}
