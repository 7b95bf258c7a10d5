//! The objection tracker, on the casework core ([`crate::casework::tracker`]): every
//! `objections.check_interval_ms` it makes provisional deadlines exact, counts objections by
//! state, exports the time to the nearest review deadline, and warns (log, metric and optional
//! webhook) once per objection when one under review has less than one working day left and
//! once when it becomes overdue (LS Art. 23: 15 working days).
//!
//! What stays here: the review deadline is the one tracked, a provisional deadline is made exact
//! through the flow's step (re-read under the step lock, audited), and the warning's log event.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::casework::ObjectionFlow;
use super::{list, Listed, State};
use crate::calendar::{Calendar, SharedCalendar};
use crate::casework::{Due, Family, Tracked, Webhook};
use crate::clock::SharedClock;
use crate::store::{Store, StoreError};
use crate::telemetry::events;

#[derive(Clone)]
pub struct Tracker {
    pub store: Store,
    /// The writer, the router, the rules, the exceptions and the destinations: what the flow
    /// needs to make a provisional deadline exact as a step (issue #26).
    pub committer: crate::exchange::CommitterHandle,
    pub router: crate::sharing::SharedRouter,
    pub rules: crate::swap::Swap<super::rules::ObjectionRules>,
    pub exceptions: crate::subject::IdentifierExceptions,
    pub destinations: Vec<crate::config::DestinationConfig>,
    pub calendar: SharedCalendar,
    pub clock: SharedClock,
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
}

impl Tracked for Tracker {
    type Flow = ObjectionFlow;
    type Listed = Listed;
    type Memo = ();

    const FAMILY: Family = Family::Objections;

    fn list(store: &Store, now: OffsetDateTime) -> Result<Vec<Listed>, StoreError> {
        list(store, now, None)
    }

    fn id(listed: &Listed) -> &str {
        &listed.objection.id
    }

    fn state(listed: &Listed) -> State {
        listed.state
    }

    fn deadline(listed: &Listed) -> Option<OffsetDateTime> {
        listed.objection.review_deadline
    }

    fn provisional(listed: &Listed) -> bool {
        listed.objection.review_deadline_provisional
    }

    /// Provisional deadlines the calendar now covers become exact (issue #26), through the flow:
    /// re-read under the step, only the deadline fields changed, written and audited.
    async fn make_exact(
        &self,
        all: &[Listed],
        calendar: &Arc<Calendar>,
        now: OffsetDateTime,
    ) -> Vec<String> {
        let mut made = Vec::new();
        if !all.iter().any(|l| l.objection.make_exact_on(calendar)) {
            return made;
        }
        let ctx = super::flow::Context {
            store: &self.store,
            committer: &self.committer,
            router: self.router.current(),
            calendar: calendar.clone(),
            rules: self.rules.current(),
            exceptions: &self.exceptions,
            destinations: &self.destinations,
            now,
        };
        for o in all
            .iter()
            .map(|l| &l.objection)
            .filter(|o| o.make_exact_on(calendar))
        {
            match super::flow::make_exact(&ctx, &o.id).await {
                Ok(true) => made.push(o.id.clone()),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(objection = %o.id, error = %e, "cannot make the provisional deadline exact; trying again");
                }
            }
        }
        made
    }

    fn warned(&self, listed: &Listed, deadline: &str, due: Due) {
        events::objection_deadline(&listed.objection.id, deadline, due == Due::Overdue);
    }
}
