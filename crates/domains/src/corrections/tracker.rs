//! The correction tracker, on the casework core ([`crate::casework::tracker`]): every
//! `check_interval_ms` it publishes the calendar's coverage, makes provisional deadlines exact,
//! computes each correction's state, exports pending, overdue and delivered-late counts and the
//! time to the nearest deadline, and warns (log and optional webhook) once per correction when a
//! pending one has less than one working day left, and once when it becomes overdue.
//!
//! What stays here is what only corrections do: the coverage warning, the batch write that makes
//! deadlines exact (a correction object is written once, at creation, so it is re-read and
//! written without a step lock), the failure line when corrections cannot be read, and the
//! warnings' log lines (GD Art. 31).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use super::{CorrectionFlow, State, Status};
use crate::audit::AuditEvent;
use crate::calendar::{Calendar, SharedCalendar, CHINA_OFFSET, COVERAGE_WARNING_DAYS};
use crate::casework::{Due, Family, Tracked, Webhook};
use crate::clock::SharedClock;
use crate::exchange::ApplyJob;
use crate::store::{Store, StoreError};
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
    type Flow = CorrectionFlow;
    type Listed = Status;
    /// The China day the coverage warning was last given.
    type Memo = Option<time::Date>;

    const FAMILY: Family = Family::Corrections;

    fn list(store: &Store, now: OffsetDateTime) -> Result<Vec<Status>, StoreError> {
        super::list(store, now, None)
    }

    fn id(listed: &Status) -> &str {
        &listed.correction.id
    }

    fn state(listed: &Status) -> State {
        listed.state
    }

    fn deadline(listed: &Status) -> Option<OffsetDateTime> {
        listed.correction.deadline
    }

    fn provisional(listed: &Status) -> bool {
        listed.correction.deadline_provisional
    }

    fn record_id(listed: &Status) -> Option<&str> {
        Some(&listed.correction.record_id)
    }

    /// Publish how many days the calendar has left; warn once a day when they run short.
    fn before_scan(&self, calendar: &Calendar, now: OffsetDateTime, warned_on: &mut Self::Memo) {
        let today = now.to_offset(CHINA_OFFSET).date();
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

    fn unreadable(&self, e: &StoreError) {
        // A correction that does not read (a corrupt deadline) must be seen, not skipped.
        tracing::error!(error = %e, "corrections cannot be read: deadlines are not being tracked");
        metrics::counter!("gateway_correction_tracking_failures_total").increment(1);
    }

    /// Provisional deadlines the calendar now covers become exact (issue #26). A correction
    /// object is written once, at creation, so re-reading it here loses no newer state.
    async fn make_exact(
        &self,
        all: &[Status],
        calendar: &Arc<Calendar>,
        _now: OffsetDateTime,
    ) -> Vec<String> {
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
        if keys.is_empty() {
            return Vec::new();
        }
        let made =
            match crate::calendar::exact_writes(&self.store, &keys, |c: &mut super::Correction| {
                c.make_exact(calendar)
            }) {
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
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "provisional correction deadlines cannot be made exact; trying again");
                Vec::new()
            }
        }
    }

    fn warned(&self, listed: &Status, deadline: &str, due: Due) {
        let c = &listed.correction;
        match due {
            Due::Near => {
                tracing::warn!(correction = %c.id, record_id = %c.record_id, deadline = %deadline, "correction has less than one working day left (GD Art. 31)");
                metrics::counter!("gateway_correction_deadline_warnings_total").increment(1);
            }
            Due::Overdue => {
                tracing::warn!(correction = %c.id, record_id = %c.record_id, deadline = %deadline, "correction is overdue (GD Art. 31: three working days)");
            }
        }
    }
}
