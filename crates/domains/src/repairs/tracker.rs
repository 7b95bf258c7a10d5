//! The repair tracker, on the casework core ([`crate::casework::tracker`]): every
//! `repairs.check_interval_ms` it makes provisional deadlines exact, completes repairs whose
//! publicity ended without an open objection (durable: the state is stored, the step runs once),
//! counts repairs by state, and warns (log, metric and optional webhook) once per repair when a
//! decision has less than one working day left and once when it is overdue (LS Art. 40).
//!
//! What stays here: the decision deadline is the one tracked, completion is a step only repairs
//! take in the scan (GD Art. 38), provisional deadlines are made exact through the flow's step,
//! and the warning's log event.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::casework::RepairFlow;
use super::flow::Context;
use super::{list, Listed, State};
use crate::calendar::Calendar;
use crate::casework::{Due, Family, Tracked, Webhook};
use crate::store::{Store, StoreError};
use crate::telemetry::events;

#[derive(Clone)]
pub struct Tracker {
    pub store: crate::store::Store,
    pub committer: crate::exchange::CommitterHandle,
    pub router: crate::sharing::SharedRouter,
    pub calendar: crate::calendar::SharedCalendar,
    pub rules: crate::swap::Swap<super::rules::RepairRules>,
    pub exceptions: crate::subject::IdentifierExceptions,
    pub destinations: Vec<crate::config::DestinationConfig>,
    pub clock: crate::clock::SharedClock,
    pub interval: Duration,
    pub webhook: Option<String>,
}

impl Tracker {
    pub async fn run(self, stop: tokio::sync::watch::Receiver<bool>) {
        crate::casework::Tracker {
            store: self.store.clone(),
            calendar: self.calendar.clone(),
            clock: self.clock.clone(),
            interval: self.interval,
            webhook: Webhook::new(self.webhook.clone()),
            domain: self,
        }
        .run(stop)
        .await
    }

    fn context(&self, calendar: &Arc<Calendar>, now: OffsetDateTime) -> Context<'_> {
        Context {
            store: &self.store,
            committer: &self.committer,
            router: self.router.current(),
            calendar: calendar.clone(),
            rules: self.rules.current(),
            exceptions: &self.exceptions,
            destinations: &self.destinations,
            now,
        }
    }
}

impl Tracked for Tracker {
    type Flow = RepairFlow;
    type Listed = Listed;
    type Memo = ();

    const FAMILY: Family = Family::Repairs;

    fn list(store: &Store, now: OffsetDateTime) -> Result<Vec<Listed>, StoreError> {
        list(store, now, None)
    }

    fn id(listed: &Listed) -> &str {
        &listed.repair.id
    }

    fn state(listed: &Listed) -> State {
        listed.state
    }

    fn deadline(listed: &Listed) -> Option<OffsetDateTime> {
        Some(listed.repair.decision_deadline)
    }

    fn provisional(listed: &Listed) -> bool {
        listed.repair.decision_deadline_provisional
    }

    /// Provisional deadlines the calendar now covers become exact (issue #26), through the flow:
    /// re-read under the step, only the deadline fields changed, written and audited.
    async fn make_exact(
        &self,
        all: &[Listed],
        calendar: &Arc<Calendar>,
        now: OffsetDateTime,
    ) -> Vec<String> {
        let ctx = self.context(calendar, now);
        let mut made = Vec::new();
        for r in all
            .iter()
            .map(|l| &l.repair)
            .filter(|r| r.make_exact_on(calendar))
        {
            match super::flow::make_exact(&ctx, &r.id).await {
                Ok(true) => made.push(r.id.clone()),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(repair = %r.id, error = %e, "cannot make the provisional deadline exact; trying again");
                }
            }
        }
        made
    }

    /// The publicity ended without an open objection: complete (GD Art. 38).
    async fn advance(&self, listed: &Listed, calendar: &Arc<Calendar>, now: OffsetDateTime) {
        if listed.state != State::InPublicity {
            return;
        }
        let ctx = self.context(calendar, now);
        if let Err(e) = super::flow::complete_if_due(&ctx, &listed.repair.id).await {
            tracing::error!(repair = %listed.repair.id, error = %e, "cannot complete the repair; trying again");
        }
    }

    fn warned(&self, listed: &Listed, deadline: &str, due: Due) {
        events::repair_deadline(&listed.repair.id, deadline, due == Due::Overdue);
    }
}
