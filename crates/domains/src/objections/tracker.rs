//! The objection tracker: every `objections.check_interval_ms` it counts objections by state,
//! exports the time to the nearest review deadline, and warns (log, metric and optional webhook)
//! once per objection when one under review has less than one working day left and once when it
//! becomes overdue (LS Art. 23: 15 working days).

use std::time::Duration;

use serde_json::json;

use super::{list, State};
use crate::calendar::warnings::{Due, Warnings};
use crate::calendar::SharedCalendar;
use crate::clock::SharedClock;
use crate::store::Store;
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
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut warnings = Warnings::default();
        loop {
            self.check(&mut warnings).await;
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {},
                _ = stop.changed() => return,
            }
        }
    }

    async fn check(&self, warnings: &mut Warnings) {
        let now = self.clock.now();
        let store = self.store.clone();
        let Ok(Ok(all)) = tokio::task::spawn_blocking(move || list(&store, now, None)).await else {
            return;
        };
        let calendar = self.calendar.current();
        // Provisional deadlines the calendar now covers become exact (issue #26), through the
        // flow: re-read under the step, only the deadline fields changed, written and audited.
        let mut made = false;
        if all.iter().any(|l| l.objection.make_exact_on(&calendar)) {
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
                .filter(|o| o.make_exact_on(&calendar))
            {
                match super::flow::make_exact(&ctx, &o.id).await {
                    Ok(true) => {
                        events::deadline_made_exact("objection", &o.id);
                        made = true;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(objection = %o.id, error = %e, "cannot make the provisional deadline exact; trying again");
                    }
                }
            }
        }
        let all = if made {
            let store = self.store.clone();
            let Ok(Ok(all)) = tokio::task::spawn_blocking(move || list(&store, now, None)).await
            else {
                return;
            };
            all
        } else {
            all
        };
        let mut counts = std::collections::BTreeMap::<&'static str, u64>::new();
        for listed in &all {
            let o = &listed.objection;
            let state = match listed.state {
                State::FiledLate => "filed_late",
                State::UnderReview => "under_review",
                State::Overdue => "overdue",
                State::Upheld => "upheld",
                State::Rejected => "rejected",
            };
            *counts.entry(state).or_default() += 1;
            let Some(deadline) = o.review_deadline else {
                continue;
            };
            let due = match listed.state {
                State::UnderReview => warnings.open(&o.id, deadline, now, &calendar),
                State::Overdue => warnings.overdue(&o.id, deadline),
                _ => None,
            };
            if let Some(due) = due {
                let text = crate::clock::rfc3339(deadline);
                let overdue = due == Due::Overdue;
                events::objection_deadline(&o.id, &text, overdue);
                let event = if overdue {
                    "objection_overdue"
                } else {
                    "objection_deadline_near"
                };
                self.alert(event, &o.id, &text, o.review_deadline_provisional)
                    .await;
            }
        }
        for state in [
            "filed_late",
            "under_review",
            "overdue",
            "upheld",
            "rejected",
        ] {
            metrics::gauge!("gateway_objections", "state" => state)
                .set(counts.get(state).copied().unwrap_or(0) as f64);
        }
        metrics::gauge!("gateway_objections_nearest_deadline_seconds")
            .set(warnings.take_nearest() as f64);
    }

    async fn alert(&self, event: &str, id: &str, deadline: &str, provisional: bool) {
        let Some(url) = &self.webhook else { return };
        let body = json!({"event": event, "objection_id": id, "deadline": deadline, "deadline_provisional": provisional});
        if let Err(e) = crate::corrections::tracker::post_json(url, &body).await {
            tracing::warn!(objection = %id, error = %e, "objection alert webhook failed");
        }
    }
}
