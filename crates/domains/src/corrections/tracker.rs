//! The correction tracker: every `check_interval_ms` it computes each correction's state, exports
//! pending and overdue counts and the time to the nearest deadline, and warns (log and optional
//! webhook) once per correction when a pending one has less than one working day left, and once
//! when it becomes overdue.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use super::{list, State};
use crate::audit::AuditEvent;
use crate::calendar::{SharedCalendar, CHINA_OFFSET, COVERAGE_WARNING_DAYS};
use crate::clock::SharedClock;
use crate::exchange::ApplyJob;
use crate::store::Store;
use crate::telemetry::events;

#[derive(Clone)]
pub struct Tracker {
    pub store: Store,
    /// Provisional deadlines made exact are written through the writer, audited.
    pub committer: crate::exchange::CommitterHandle,
    pub calendar: SharedCalendar,
    pub clock: SharedClock,
    pub interval: Duration,
    pub webhook: Option<String>,
}

impl Tracker {
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut warned: HashSet<String> = HashSet::new();
        let mut overdue_warned: HashSet<String> = HashSet::new();
        let mut coverage_warned_on: Option<time::Date> = None;
        loop {
            self.check_coverage(&mut coverage_warned_on);
            self.check(&mut warned, &mut overdue_warned).await;
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {},
                _ = stop.changed() => return,
            }
        }
    }

    /// Publish how many days the calendar has left; warn once a day when they run short.
    fn check_coverage(&self, warned_on: &mut Option<time::Date>) {
        let calendar = self.calendar.current();
        let today = self.clock.now().to_offset(CHINA_OFFSET).date();
        let left = calendar.days_left_from(today);
        let warn = left < COVERAGE_WARNING_DAYS && *warned_on != Some(today);
        if warn {
            *warned_on = Some(today);
        }
        events::calendar_coverage(
            left,
            calendar.coverage_note(today).filter(|_| warn).as_deref(),
        );
    }

    async fn check(&self, warned: &mut HashSet<String>, overdue_warned: &mut HashSet<String>) {
        let calendar = self.calendar.current();
        let now = self.clock.now();
        let all = match list(&self.store, now, None) {
            Ok(all) => all,
            Err(e) => {
                // A correction that does not read (a corrupt deadline) must be seen, not skipped.
                tracing::error!(error = %e, "corrections cannot be read: deadlines are not being tracked");
                metrics::counter!("gateway_correction_tracking_failures_total").increment(1);
                return;
            }
        };
        // Provisional deadlines the calendar now covers become exact (issue #26). A correction
        // object is written once, at creation, so re-reading it here loses no newer state.
        let keys: Vec<(String, String)> = all
            .iter()
            .filter(|s| s.correction.deadline_basis.is_some())
            .map(|s| {
                (
                    s.correction.id.clone(),
                    super::correction_key(&s.correction.id),
                )
            })
            .collect();
        let all = if keys.is_empty() {
            all
        } else {
            let made = match crate::calendar::exact_writes(
                &self.store,
                &keys,
                |c: &mut super::Correction| c.make_exact(&calendar),
            ) {
                Ok((done, writes)) if !done.is_empty() => {
                    let mut data = serde_json::Map::new();
                    data.insert("corrections".into(), json!(done));
                    self.committer
                        .apply(
                            ApplyJob::new(AuditEvent::CorrectionDeadlinesExact, data)
                                .writes(writes),
                        )
                        .await
                        .map(|_| done)
                        .map_err(Into::into)
                }
                Ok((done, _)) => Ok(done),
                Err(e) => Err(e),
            };
            match made {
                Ok(done) if !done.is_empty() => {
                    done.iter()
                        .for_each(|id| events::deadline_made_exact("correction", id));
                    match list(&self.store, now, None) {
                        Ok(all) => all,
                        Err(_) => return,
                    }
                }
                Ok(_) => all,
                Err(e) => {
                    tracing::error!(error = %e, "provisional correction deadlines cannot be made exact; trying again");
                    all
                }
            }
        };
        let (mut pending, mut overdue) = (0u64, 0u64);
        let mut nearest: Option<i64> = None;
        for status in &all {
            let c = &status.correction;
            match status.state {
                State::Pending => {
                    pending += 1;
                    if let Some(d) = c.deadline {
                        let text = crate::clock::rfc3339(d);
                        let text = text.as_str();
                        let left = (d - now).whole_seconds();
                        nearest = Some(nearest.map_or(left, |n: i64| n.min(left)));
                        let days_left = calendar.working_days_left(now, d).unwrap_or(0);
                        if days_left < 1 && warned.insert(c.id.clone()) {
                            tracing::warn!(correction = %c.id, record_id = %c.record_id, deadline = %text, "correction has less than one working day left (GD Art. 31)");
                            metrics::counter!("gateway_correction_deadline_warnings_total")
                                .increment(1);
                            self.alert("deadline_near", c, text).await;
                        }
                    }
                }
                State::Overdue => {
                    overdue += 1;
                    if overdue_warned.insert(c.id.clone()) {
                        let text = c.deadline.map(crate::clock::rfc3339).unwrap_or_default();
                        let text = text.as_str();
                        tracing::warn!(correction = %c.id, record_id = %c.record_id, deadline = %text, "correction is overdue (GD Art. 31: three working days)");
                        self.alert("overdue", c, text).await;
                    }
                }
                _ => {}
            }
        }
        metrics::gauge!("gateway_corrections_pending").set(pending as f64);
        metrics::gauge!("gateway_corrections_overdue").set(overdue as f64);
        metrics::gauge!("gateway_corrections_nearest_deadline_seconds")
            .set(nearest.unwrap_or(0) as f64);
        let late = all
            .iter()
            .filter(|s| s.state == State::DeliveredLate)
            .count();
        metrics::gauge!("gateway_corrections_delivered_late").set(late as f64);
    }

    /// POST a JSON alert to the configured webhook (plain HTTP, e.g. a local alert relay).
    async fn alert(&self, event: &str, c: &super::Correction, deadline: &str) {
        let Some(url) = &self.webhook else { return };
        let body = json!({"event": event, "correction_id": c.id, "record_id": c.record_id, "deadline": deadline, "deadline_provisional": c.deadline_provisional});
        if let Err(e) = post_json(url, &body).await {
            tracing::warn!(webhook = %url, error = %e, "correction alert webhook failed");
        }
    }
}

/// POST one JSON alert (plain HTTP, 5 s timeout); not retried: the log warning and the metrics
/// remain.
pub async fn post_json(url: &str, body: &serde_json::Value) -> Result<(), String> {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
        Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
        Ok(Ok(resp)) => Err(format!("answered {}", resp.status())),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}
