//! A case flow: its states, the phase of each, its terminal states, and the steps each state
//! allows with the duty that may take them. Each domain implements [`CaseFlow`] once
//! (`corrections::CorrectionFlow`, `objections::casework::ObjectionFlow`,
//! `repairs::casework::RepairFlow`); the tracker, the console and the API read the same answer.
//!
//! Owns also what every step on an objection or a repair shares: the [`Context`] it gets and the
//! one lock it holds ([`step`]).
//!
//! Never does: take a step (the domain's `flow` does, written and audited by the writer) or
//! decide who a caller is (the API from its certificate, the console from the session).
//!
//! Invariants: [`CaseFlow::STATES`] lists every state once, in the order gauges and tabs show
//! them; a terminal state allows no step that changes the state; [`CaseFlow::allowed`] is
//! exactly the transitions the domain's `flow` accepts (each domain's tests check it).

use std::fmt::Debug;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::calendar::Calendar;
use crate::config::DestinationConfig;
use crate::exchange::CommitterHandle;
use crate::sharing::Router;
use crate::store::{Store, StoreError};
use crate::subject::IdentifierExceptions;

/// Who does a step, by the regulations' split of duties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// The department's own casework (经办): accept late, resolve at the first level, decide a
    /// repair, record the subject's request for a review by the level above.
    Casework,
    /// The level above (复核, GD Art. 34): resolves an objection under its review.
    Review,
}

/// Where a state stands with respect to the case's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The deadline runs: counted down, warned of when near.
    Running,
    /// The deadline passed with the duty undone: warned of once.
    Overdue,
    /// Open, but no deadline of the department's runs (filed late and waiting for an operator;
    /// a repair in publicity or suspended).
    Waiting,
    /// Nothing runs; a step may still reopen some (a rejected objection reviewed).
    Closed,
}

/// A domain's case flow.
pub trait CaseFlow {
    /// The stored case.
    type Case;
    /// The state shown (stored status, or computed: overdue, suspended).
    type State: Copy + Eq + Debug + serde::Serialize + 'static;
    /// A step a person takes.
    type Step: Copy + Eq + Debug;
    /// What the state depends on besides the case and the time (a repair: whether an objection
    /// is open on one of its records); `()` when nothing.
    type Facts: Copy;

    /// Every state, once, in the order they are shown and counted.
    const STATES: &'static [Self::State];

    /// The state of `case` at `now`.
    fn state(case: &Self::Case, now: OffsetDateTime, facts: Self::Facts) -> Self::State;

    fn phase(state: Self::State) -> Phase;

    /// No step ever moves a case out of this state.
    fn is_terminal(state: Self::State) -> bool;

    /// The steps `case` in `state` allows at `now`, each with the duty that takes it.
    fn steps(case: &Self::Case, state: Self::State, now: OffsetDateTime)
        -> Vec<(Self::Step, Duty)>;

    /// The steps the flow allows now.
    fn allowed(
        case: &Self::Case,
        now: OffsetDateTime,
        facts: Self::Facts,
    ) -> Vec<(Self::Step, Duty)> {
        Self::steps(case, Self::state(case, now, facts), now)
    }

    /// The state's code, as stored, listed and labelled (`under_review`).
    fn code(state: Self::State) -> String {
        serde_json::to_value(state)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    }
}

/// Everything a step on a case needs; `R` is the domain's rules.
pub struct Context<'a, R> {
    pub store: &'a Store,
    pub committer: &'a CommitterHandle,
    pub router: Arc<Router>,
    pub calendar: Arc<Calendar>,
    pub rules: Arc<R>,
    pub exceptions: &'a IdentifierExceptions,
    pub destinations: &'a [DestinationConfig],
    pub now: OffsetDateTime,
}

/// Steps on objections and repairs run one at a time in a gateway: each loads its objection or
/// repair, checks its state and writes it back, and a repair's completion checks for objections
/// on its records; serialized, no two steps can interleave between the check and the write.
pub static STEPS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One step held: in this process ([`STEPS`]) and across every node sharing the store.
pub struct StepHeld {
    _shared: crate::store::Exclusive,
    _local: tokio::sync::MutexGuard<'static, ()>,
}

/// Wait for the turn of a step on objections or repairs.
pub async fn step(store: &Store) -> Result<StepHeld, StoreError> {
    let local = STEPS.lock().await;
    let shared = store.exclusive("objections-and-repairs")?;
    Ok(StepHeld {
        _shared: shared,
        _local: local,
    })
}
