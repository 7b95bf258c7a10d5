//! The repair tracker: every `repairs.check_interval_ms` it completes repairs whose publicity
//! ended without an open objection (durable: the state is stored, the step runs once), counts
//! repairs by state, and warns (log, metric and optional webhook) once per repair when a decision
//! has less than one working day left and once when it is overdue (LS Art. 40).

use std::time::Duration;

use serde_json::json;

use super::flow::Context;
use super::{list, State};
use crate::calendar::warnings::{Due, Warnings};
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
        let ctx = Context {
            store: &self.store,
            committer: &self.committer,
            router: self.router.current(),
            calendar: calendar.clone(),
            rules: self.rules.current(),
            exceptions: &self.exceptions,
            destinations: &self.destinations,
            now,
        };
        // Provisional deadlines the calendar now covers become exact (issue #26), through the
        // flow: re-read under the step, only the deadline fields changed, written and audited.
        let mut made = false;
        for r in all
            .iter()
            .map(|l| &l.repair)
            .filter(|r| r.make_exact_on(&calendar))
        {
            match super::flow::make_exact(&ctx, &r.id).await {
                Ok(true) => {
                    events::deadline_made_exact("repair", &r.id);
                    made = true;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(repair = %r.id, error = %e, "cannot make the provisional deadline exact; trying again");
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
        let mut counts = std::collections::BTreeMap::<String, u64>::new();
        for listed in &all {
            let r = &listed.repair;
            let state = serde_json::to_value(listed.state)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            *counts.entry(state).or_default() += 1;
            let deadline = crate::clock::rfc3339(r.decision_deadline);
            if listed.state == State::InPublicity {
                if let Err(e) = super::flow::complete_if_due(&ctx, &r.id).await {
                    tracing::error!(repair = %r.id, error = %e, "cannot complete the repair; trying again");
                }
            }
            let due = match listed.state {
                State::UnderReview => warnings.open(&r.id, r.decision_deadline, now, &calendar),
                State::Overdue => warnings.overdue(&r.id, r.decision_deadline),
                _ => None,
            };
            if let Some(due) = due {
                let overdue = due == Due::Overdue;
                events::repair_deadline(&r.id, &deadline, overdue);
                let event = if overdue {
                    "repair_overdue"
                } else {
                    "repair_deadline_near"
                };
                self.alert(event, &r.id, &deadline, r.decision_deadline_provisional)
                    .await;
            }
        }
        for state in [
            "under_review",
            "overdue",
            "refused",
            "in_publicity",
            "suspended",
            "completed",
        ] {
            metrics::gauge!("gateway_repairs", "state" => state)
                .set(counts.get(state).copied().unwrap_or(0) as f64);
        }
        metrics::gauge!("gateway_repairs_nearest_deadline_seconds")
            .set(warnings.take_nearest() as f64);
    }

    async fn alert(&self, event: &str, id: &str, deadline: &str, provisional: bool) {
        let Some(url) = &self.webhook else { return };
        let body = json!({"event": event, "repair_id": id, "deadline": deadline, "deadline_provisional": provisional});
        if let Err(e) = crate::corrections::tracker::post_json(url, &body).await {
            tracing::warn!(repair = %id, error = %e, "repair alert webhook failed");
        }
    }
}
