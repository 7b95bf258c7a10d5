//! Repair casework: the steps the flow allows a repair in its state, the same list for the agency
//! API and the console (issue #27), and the checks that belong to the step rather than to who asks.
//!
//! Owns: which step is open when (decide and extend while under review, GD Art. 37 / LS Art. 40;
//! complete once the publicity has ended without an open objection, GD Art. 38; record a broken
//! commitment on a completed repair, LS Art. 41), and that only the department that made the
//! finding extends its decision. The states and steps are the casework core's
//! [`crate::casework::CaseFlow`], implemented by [`RepairFlow`] (every step is the deciding
//! department's casework, [`crate::casework::Duty::Casework`]); [`allowed`] gives the steps alone
//! as the API and the console read them.
//!
//! Never does: render, or write anything itself (every step is a `flow` step, written and
//! audited there).

use super::flow::{self, Context, RepairError};
use super::{Repair, State};
use crate::casework::{CaseFlow, Duty, Phase};

/// A step the flow allows on a repair as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Approve (into publicity) or refuse, with a reason; false materials refuse (LS Art. 41).
    Decide,
    /// A complex case: at most 30 working days from acceptance, once (LS Art. 40).
    Extend,
    /// The publicity has ended without an open objection: complete now rather than at the
    /// tracker's next pass (GD Art. 38).
    Complete,
    /// The commitment of a completed repair was untrue or not kept (LS Art. 41).
    CommitmentBroken,
}

impl Step {
    pub fn code(self) -> &'static str {
        match self {
            Self::Decide => "decide",
            Self::Extend => "extend",
            Self::Complete => "complete",
            Self::CommitmentBroken => "commitment_broken",
        }
    }
}

/// The repair's flow on the casework core: the decision deadline runs `under_review` and has
/// passed when `overdue`; `in_publicity` and `suspended` wait (for the publicity's end, for the
/// objection); `refused` and `completed` are terminal (a broken commitment is recorded on a
/// completed repair without changing its state, LS Art. 41). Every step is the deciding
/// department's casework.
pub struct RepairFlow;

impl CaseFlow for RepairFlow {
    type Case = Repair;
    type State = State;
    type Step = Step;
    /// Whether an objection filed during the publicity is still open on one of its records.
    type Facts = bool;

    const STATES: &'static [State] = &[
        State::UnderReview,
        State::Overdue,
        State::Refused,
        State::InPublicity,
        State::Suspended,
        State::Completed,
    ];

    fn state(repair: &Repair, now: time::OffsetDateTime, objection_open: bool) -> State {
        repair.state(now, objection_open)
    }

    fn phase(state: State) -> Phase {
        match state {
            State::UnderReview => Phase::Running,
            State::Overdue => Phase::Overdue,
            State::InPublicity | State::Suspended => Phase::Waiting,
            State::Refused | State::Completed => Phase::Closed,
        }
    }

    fn is_terminal(state: State) -> bool {
        matches!(state, State::Refused | State::Completed)
    }

    fn steps(repair: &Repair, state: State, now: time::OffsetDateTime) -> Vec<(Step, Duty)> {
        let steps = match state {
            State::UnderReview | State::Overdue if repair.extension_reason.is_none() => {
                vec![Step::Decide, Step::Extend]
            }
            State::UnderReview | State::Overdue => vec![Step::Decide],
            State::InPublicity if repair.publicity_until.is_some_and(|u| now >= u) => {
                vec![Step::Complete]
            }
            State::Completed if repair.commitment_broken.is_none() => {
                vec![Step::CommitmentBroken]
            }
            State::InPublicity | State::Suspended | State::Refused | State::Completed => Vec::new(),
        };
        steps.into_iter().map(|s| (s, Duty::Casework)).collect()
    }
}

/// The steps open now ([`RepairFlow`]); `objection_open`: an objection on one of its records is
/// still open.
pub fn allowed(repair: &Repair, now: time::OffsetDateTime, objection_open: bool) -> Vec<Step> {
    RepairFlow::allowed(repair, now, objection_open)
        .into_iter()
        .map(|(step, _)| step)
        .collect()
}

/// LS Art. 40: only the department that made the finding extends its decision.
pub async fn extend(
    ctx: &Context<'_>,
    caller: &str,
    id: &str,
    reason: &str,
) -> Result<Repair, RepairError> {
    let repair = super::get(ctx.store, id)?.ok_or(RepairError::NotFound("repair"))?;
    if repair.records.iter().any(|r| r.agency != caller) {
        return Err(RepairError::NotAllowed(
            "only the agency that made the finding extends its decision",
        ));
    }
    flow::extend(ctx, id, reason).await
}

/// Complete a repair whose publicity has ended (GD Art. 38); refused when it is not due or an
/// objection is open on one of its records (the repair is then suspended).
pub async fn complete(ctx: &Context<'_>, id: &str) -> Result<Repair, RepairError> {
    match flow::complete_if_due(ctx, id).await? {
        Some(done) => Ok(done),
        None => {
            let repair = super::get(ctx.store, id)?.ok_or(RepairError::NotFound("repair"))?;
            let open = super::objection_open(ctx.store, &repair)?;
            Err(RepairError::WrongState(repair.state(ctx.now, open)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objections::RecordRef;
    use crate::repairs::Status;

    fn repair(status: Status) -> Repair {
        let at = time::macros::datetime!(2026-09-28 10:00 +8);
        Repair {
            id: "REP".into(),
            subject_key: "k".into(),
            records: vec![RecordRef {
                agency: "mi".into(),
                record_id: "R".into(),
            }],
            types: Vec::new(),
            materials: "m".into(),
            commitment: "c".into(),
            applied_by: "mi".into(),
            accepted_at: at,
            status,
            decision_deadline: at + time::Duration::days(10),
            decision_deadline_provisional: false,
            decision_basis: None,
            extension_reason: None,
            decision: None,
            publicity_from: Some(at),
            publicity_until: Some(at + time::Duration::days(7)),
            publicity_until_provisional: false,
            publicity_basis: None,
            completed_at: None,
            commitment_broken: None,
        }
    }

    #[test]
    fn each_state_allows_exactly_the_flows_steps() {
        let now = time::macros::datetime!(2026-09-29 10:00 +8);
        let after_publicity = now + time::Duration::days(20);
        assert_eq!(
            allowed(&repair(Status::UnderReview), now, false),
            vec![Step::Decide, Step::Extend]
        );
        let mut extended = repair(Status::UnderReview);
        extended.extension_reason = Some("复杂".into());
        assert_eq!(
            allowed(&extended, now, false),
            vec![Step::Decide],
            "one extension (LS Art. 40)"
        );
        assert!(
            allowed(&repair(Status::InPublicity), now, false).is_empty(),
            "the publicity runs"
        );
        assert_eq!(
            allowed(&repair(Status::InPublicity), after_publicity, false),
            vec![Step::Complete]
        );
        assert!(
            allowed(&repair(Status::InPublicity), after_publicity, true).is_empty(),
            "suspended by an open objection"
        );
        assert_eq!(
            allowed(&repair(Status::Completed), now, false),
            vec![Step::CommitmentBroken]
        );
        assert!(allowed(&repair(Status::Refused), now, false).is_empty());
    }

    /// Every state once, in the order of the gauges; no step leaves a terminal state.
    #[test]
    fn the_states_are_listed_once_and_terminal_ones_stay() {
        let codes: Vec<String> = RepairFlow::STATES
            .iter()
            .map(|s| RepairFlow::code(*s))
            .collect();
        assert_eq!(
            codes,
            [
                "under_review",
                "overdue",
                "refused",
                "in_publicity",
                "suspended",
                "completed"
            ]
        );
        let now = time::macros::datetime!(2026-09-29 10:00 +8);
        assert!(RepairFlow::is_terminal(State::Refused));
        assert!(RepairFlow::allowed(&repair(Status::Refused), now, false).is_empty());
        assert_eq!(
            RepairFlow::allowed(&repair(Status::Completed), now, false),
            vec![(Step::CommitmentBroken, Duty::Casework)],
            "recorded on the completed repair, which stays completed (LS Art. 41)"
        );
        assert_eq!(
            RepairFlow::phase(RepairFlow::state(&repair(Status::InPublicity), now, true)),
            Phase::Waiting,
            "suspended: no decision deadline runs"
        );
    }
}
