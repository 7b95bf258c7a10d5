//! The one case tracker: every `check_interval_ms` of its domain it lists the cases, lets the
//! domain make provisional deadlines exact (issue #26) and take the steps that fall due, counts
//! the cases by state into the domain's gauges, exports the time to the nearest open deadline,
//! and warns (the domain's log event and metric, and the optional webhook) once when an open
//! case has less than one working day left and once when it becomes overdue.
//!
//! Owns: the loop and its shutdown ([`Tracker::run`]) and one scan ([`Tracker::scan`], which
//! answers what it found, for tests and tools). It sends through the one [`Webhook`] and names
//! what it exports by the domain's [`Family`].
//!
//! Never does: write a case or compute its state (through [`Tracked`], the domain does), or
//! retry a webhook (the log warning and the metrics remain).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::deadline::{Due, Warnings};
pub use super::family::Family;
use super::flow::{CaseFlow, Phase};
pub use super::webhook::Webhook;
use crate::calendar::{Calendar, SharedCalendar};
use crate::clock::SharedClock;
use crate::store::{Store, StoreError};
use crate::telemetry::events;

/// A domain as the tracker sees it.
pub trait Tracked: Send + Sync + 'static {
    type Flow: CaseFlow;
    /// A case as listed, with its state.
    type Listed: Send + Sync + 'static;
    /// What the domain keeps from one scan to the next besides the warnings.
    type Memo: Default + Send;

    const FAMILY: Family;

    /// Every case with its state at `now`.
    fn list(store: &Store, now: OffsetDateTime) -> Result<Vec<Self::Listed>, StoreError>;
    fn id(listed: &Self::Listed) -> &str;
    fn state(listed: &Self::Listed) -> <Self::Flow as CaseFlow>::State;
    /// The deadline the state's phase refers to; `None`: none tracked.
    fn deadline(listed: &Self::Listed) -> Option<OffsetDateTime>;
    fn provisional(listed: &Self::Listed) -> bool;
    /// The record named in the webhook payload, for families that name one.
    fn record_id(_listed: &Self::Listed) -> Option<&str> {
        None
    }

    /// Before each scan (corrections: the calendar's coverage).
    fn before_scan(&self, _calendar: &Calendar, _now: OffsetDateTime, _memo: &mut Self::Memo) {}

    /// The cases could not be listed; the scan is skipped.
    fn unreadable(&self, _error: &StoreError) {}

    /// Make exact the provisional deadlines `calendar` now covers, as the domain writes them;
    /// answers the ids made exact (errors are the domain's to log: it tries again next scan).
    fn make_exact(
        &self,
        all: &[Self::Listed],
        calendar: &Arc<Calendar>,
        now: OffsetDateTime,
    ) -> impl Future<Output = Vec<String>> + Send;

    /// A step due for this case, taken by the tracker (repairs: completion, GD Art. 38).
    fn advance(
        &self,
        _listed: &Self::Listed,
        _calendar: &Arc<Calendar>,
        _now: OffsetDateTime,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The domain's log event and metric for a warning (`deadline` in RFC 3339).
    fn warned(&self, listed: &Self::Listed, deadline: &str, due: Due);
}

/// The tracker of one domain.
#[derive(Clone)]
pub struct Tracker<D> {
    pub domain: D,
    pub store: Store,
    pub calendar: SharedCalendar,
    pub clock: SharedClock,
    pub interval: Duration,
    pub webhook: Webhook,
}

/// What a tracker remembers between scans.
pub struct Memory<D: Tracked> {
    warnings: Warnings,
    memo: D::Memo,
}

impl<D: Tracked> Default for Memory<D> {
    fn default() -> Self {
        Self {
            warnings: Warnings::new(D::FAMILY.once_per()),
            memo: D::Memo::default(),
        }
    }
}

/// What one scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Cases per state code (only the states seen).
    pub counts: BTreeMap<String, u64>,
    /// Seconds to the nearest open deadline (0 when none).
    pub nearest: i64,
    /// The warnings given, in list order.
    pub warned: Vec<(String, Due)>,
    /// The provisional deadlines made exact.
    pub made_exact: Vec<String>,
}

impl<D: Tracked> Tracker<D> {
    /// Scan every `interval` until `stop` changes.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut memory = Memory::<D>::default();
        loop {
            self.scan(&mut memory).await;
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {},
                _ = stop.changed() => return,
            }
        }
    }

    /// One scan; `None` when the cases could not be listed (nothing was set).
    pub async fn scan(&self, memory: &mut Memory<D>) -> Option<Scan> {
        let now = self.clock.now();
        let calendar = self.calendar.current();
        self.domain.before_scan(&calendar, now, &mut memory.memo);
        let all = match self.list(now).await {
            Ok(all) => all,
            Err(e) => {
                if let Some(e) = e {
                    self.domain.unreadable(&e);
                }
                return None;
            }
        };
        let made_exact = self.domain.make_exact(&all, &calendar, now).await;
        for id in &made_exact {
            events::deadline_made_exact(D::FAMILY.case(), id);
        }
        let all = if made_exact.is_empty() {
            all
        } else {
            self.list(now).await.ok()?
        };
        let mut scan = Scan {
            made_exact,
            ..Scan::default()
        };
        for listed in &all {
            let state = D::state(listed);
            *scan.counts.entry(D::Flow::code(state)).or_default() += 1;
            self.domain.advance(listed, &calendar, now).await;
            let Some(deadline) = D::deadline(listed) else {
                continue;
            };
            let id = D::id(listed);
            let due = match D::Flow::phase(state) {
                Phase::Running => memory.warnings.open(id, deadline, now, &calendar),
                Phase::Overdue => memory.warnings.overdue(id, deadline),
                Phase::Waiting | Phase::Closed => None,
            };
            if let Some(due) = due {
                let text = crate::clock::rfc3339(deadline);
                self.domain.warned(listed, &text, due);
                self.alert(listed, &text, due).await;
                scan.warned.push((id.to_string(), due));
            }
        }
        scan.nearest = memory.warnings.take_nearest();
        let codes: Vec<String> = D::Flow::STATES.iter().map(|s| D::Flow::code(*s)).collect();
        D::FAMILY.publish(&codes, &scan.counts, scan.nearest);
        Some(scan)
    }

    /// The cases, read off the async threads; `Err(None)`: the read did not finish.
    async fn list(&self, now: OffsetDateTime) -> Result<Vec<D::Listed>, Option<StoreError>> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || D::list(&store, now)).await {
            Ok(Ok(all)) => Ok(all),
            Ok(Err(e)) => Err(Some(e)),
            Err(_) => Err(None),
        }
    }

    async fn alert(&self, listed: &D::Listed, deadline: &str, due: Due) {
        let id = D::id(listed);
        let body = D::FAMILY.alert(
            due,
            id,
            D::record_id(listed),
            deadline,
            D::provisional(listed),
        );
        if let Some((url, Err(e))) = self.webhook.post(&body).await {
            D::FAMILY.webhook_failed(url, id, &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use time::macros::datetime;

    use super::*;
    use crate::calendar::Estimate;
    use crate::casework::CaseDeadline;
    use crate::clock::ManualClock;
    use crate::objections::casework::ObjectionFlow;
    use crate::objections::{Ground, Listed, Objection, RecordRef, State, Status};
    use crate::store::{memory, WriteSet};

    /// Objections as stored, tracked without the writer: deadlines made exact are written
    /// straight to the in-memory store, warnings are kept for the test to read.
    struct Objections {
        store: Store,
        warned: Mutex<Vec<(String, String, Due)>>,
    }

    impl Tracked for Objections {
        type Flow = ObjectionFlow;
        type Listed = Listed;
        type Memo = ();
        const FAMILY: Family = Family::Objections;

        fn list(store: &Store, now: OffsetDateTime) -> Result<Vec<Listed>, StoreError> {
            crate::objections::list(store, now, None)
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
        async fn make_exact(
            &self,
            all: &[Listed],
            calendar: &Arc<Calendar>,
            _now: OffsetDateTime,
        ) -> Vec<String> {
            let mut made = Vec::new();
            for l in all {
                let mut o = l.objection.clone();
                if o.make_exact(calendar) {
                    put(&self.store, &o);
                    made.push(o.id);
                }
            }
            made
        }
        fn warned(&self, listed: &Listed, deadline: &str, due: Due) {
            self.warned.lock().unwrap().push((
                listed.objection.id.clone(),
                deadline.to_string(),
                due,
            ));
        }
    }

    fn objection(id: &str, status: Status, deadline: Option<OffsetDateTime>) -> Objection {
        let at = datetime!(2026-09-14 10:00 +08:00);
        Objection {
            id: id.into(),
            records: vec![RecordRef {
                agency: "mi".into(),
                record_id: format!("R-{id}"),
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
            level: 1,
            status,
            review_deadline: deadline,
            review_deadline_provisional: false,
            review_basis: None,
            review_rule: String::new(),
            resolutions: Vec::new(),
        }
    }

    fn put(store: &Store, o: &Objection) {
        let mut w = WriteSet::default();
        w.put(Objection::key(&o.id), crate::store::to_bytes(o));
        store.apply(w).unwrap();
    }

    /// The builtin years and a 2027 with only New Year off.
    fn calendar_with_2027() -> Calendar {
        let mut files: Vec<(String, String)> = ["2025", "2026"]
            .iter()
            .map(|y| {
                (
                    format!("{y}.toml"),
                    std::fs::read_to_string(format!(
                        "{}/mappings/calendar/{y}.toml",
                        concat!(env!("CARGO_MANIFEST_DIR"), "/../..")
                    ))
                    .unwrap(),
                )
            })
            .collect();
        files.push((
            "2027.toml".into(),
            "year = 2027\nholidays = [ { name = \"元旦\", from = 2027-01-01, to = 2027-01-03 } ]\n"
                .into(),
        ));
        Calendar::from_sources(&files).unwrap()
    }

    /// A small set of cases around National Day 2026: one on its last working day (at risk),
    /// one with four working days left, one overdue, one closed, one filed late without a
    /// deadline, and one provisional deadline the loaded calendar now makes exact. Each warns
    /// once; the next day the one at risk is overdue and warns again, the others do not.
    #[tokio::test]
    async fn a_scan_counts_by_state_warns_once_and_makes_provisional_deadlines_exact() {
        let (store, _) = memory::store();
        let near = datetime!(2026-10-08 23:59:59 +08:00);
        put(
            &store,
            &objection("at-risk", Status::UnderReview, Some(near)),
        );
        put(
            &store,
            &objection(
                "running",
                Status::UnderReview,
                Some(datetime!(2026-10-13 23:59:59 +08:00)),
            ),
        );
        put(
            &store,
            &objection(
                "late",
                Status::UnderReview,
                Some(datetime!(2026-09-30 23:59:59 +08:00)),
            ),
        );
        put(
            &store,
            &objection(
                "closed",
                Status::Upheld,
                Some(datetime!(2026-09-30 23:59:59 +08:00)),
            ),
        );
        put(&store, &objection("waiting", Status::FiledLate, None));
        // Counted before 2027 was known: a never-later estimate with its basis.
        let builtin = Calendar::builtin().unwrap();
        let from = datetime!(2026-12-29 10:00 +08:00);
        let estimate = CaseDeadline::count(&builtin, from, 3, Estimate::NeverLater).unwrap();
        assert!(estimate.provisional);
        let mut provisional = objection("provisional", Status::UnderReview, None);
        estimate.store(
            &mut provisional.review_deadline,
            &mut provisional.review_deadline_provisional,
            &mut provisional.review_basis,
        );
        put(&store, &provisional);

        let clock = ManualClock::new(datetime!(2026-10-08 09:00 +08:00));
        let tracker = Tracker {
            domain: Objections {
                store: store.clone(),
                warned: Mutex::new(Vec::new()),
            },
            store: store.clone(),
            calendar: SharedCalendar::new(calendar_with_2027()),
            clock: Arc::new(clock.clone()),
            interval: Duration::from_secs(60),
            webhook: Webhook::default(),
        };
        let mut memory = Memory::default();
        let scan = tracker.scan(&mut memory).await.unwrap();
        assert_eq!(scan.made_exact, ["provisional"]);
        let exact = crate::objections::get(&store, "provisional")
            .unwrap()
            .unwrap();
        assert_eq!(
            exact.review_deadline,
            Some(datetime!(2027-01-04 23:59:59 +08:00))
        );
        assert!(!exact.review_deadline_provisional && exact.review_basis.is_none());
        let counts: Vec<(&str, u64)> = scan.counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            counts,
            [
                ("filed_late", 1),
                ("overdue", 1),
                ("under_review", 3),
                ("upheld", 1)
            ]
        );
        assert_eq!(
            scan.warned,
            [
                ("late".to_string(), Due::Overdue),
                ("at-risk".to_string(), Due::Near)
            ],
            "the overdue one and the one on its last working day, in list order"
        );
        assert_eq!(
            scan.nearest,
            (near - datetime!(2026-10-08 09:00 +08:00)).whole_seconds()
        );
        assert_eq!(
            tracker.domain.warned.lock().unwrap()[1],
            (
                "at-risk".to_string(),
                "2026-10-08T23:59:59+08:00".to_string(),
                Due::Near
            ),
            "the domain's event gets the deadline in RFC 3339"
        );

        let again = tracker.scan(&mut memory).await.unwrap();
        assert!(again.warned.is_empty() && again.made_exact.is_empty());

        clock.set(datetime!(2026-10-09 00:00 +08:00));
        let next_day = tracker.scan(&mut memory).await.unwrap();
        assert_eq!(next_day.warned, [("at-risk".to_string(), Due::Overdue)]);
        assert_eq!(next_day.counts.get("overdue"), Some(&2));
    }

    /// Corrections on the same loop: pending with a deadline is counted down, a forwarded one
    /// (no deadline) is pending without a countdown, a late delivery is counted; a correction
    /// warns once per case, so a deadline changed afterwards does not warn again.
    #[tokio::test]
    async fn corrections_warn_once_per_case_and_count_every_state() {
        use crate::corrections::{Correction, CorrectionFlow, CorrectionKind, Status as Listed};

        struct Corrections(Mutex<Vec<(String, Due)>>);
        impl Tracked for Corrections {
            type Flow = CorrectionFlow;
            type Listed = Listed;
            type Memo = ();
            const FAMILY: Family = Family::Corrections;
            fn list(store: &Store, now: OffsetDateTime) -> Result<Vec<Listed>, StoreError> {
                crate::corrections::list(store, now, None)
            }
            fn id(listed: &Listed) -> &str {
                &listed.correction.id
            }
            fn state(listed: &Listed) -> crate::corrections::State {
                listed.state
            }
            fn deadline(listed: &Listed) -> Option<OffsetDateTime> {
                listed.correction.deadline
            }
            fn provisional(listed: &Listed) -> bool {
                listed.correction.deadline_provisional
            }
            async fn make_exact(
                &self,
                _: &[Listed],
                _: &Arc<Calendar>,
                _: OffsetDateTime,
            ) -> Vec<String> {
                Vec::new()
            }
            fn warned(&self, listed: &Listed, _: &str, due: Due) {
                self.0
                    .lock()
                    .unwrap()
                    .push((listed.correction.id.clone(), due));
            }
        }
        let correction = |id: &str, deadline: Option<OffsetDateTime>| Correction {
            id: id.into(),
            kind: CorrectionKind::Correct,
            agency: "mi".into(),
            record_id: format!("R-{id}"),
            version: 2,
            requested_by: "mi".into(),
            reason: String::new(),
            found_at: datetime!(2026-10-05 10:00 +08:00),
            received_at: datetime!(2026-10-05 10:00 +08:00),
            deadline,
            deadline_provisional: false,
            deadline_basis: None,
            destinations: vec!["platform".into()],
            direction: "along_chain".into(),
        };
        let put = |store: &Store, c: &Correction| {
            let mut w = WriteSet::default();
            w.put(
                crate::corrections::correction_key(&c.id),
                crate::store::to_bytes(c),
            );
            store.apply(w).unwrap();
        };
        let (store, _) = memory::store();
        let deadline = datetime!(2026-10-08 23:59:59 +08:00);
        put(&store, &correction("near", Some(deadline)));
        put(&store, &correction("forwarded", None));
        put(
            &store,
            &correction("late", Some(datetime!(2026-09-30 23:59:59 +08:00))),
        );
        let mut w = WriteSet::default();
        w.put(
            crate::corrections::delivered_key("late", "platform"),
            crate::store::to_bytes(&serde_json::json!({"at": "2026-10-02T09:00:00+08:00"})),
        );
        store.apply(w).unwrap();
        let tracker = Tracker {
            domain: Corrections(Mutex::new(Vec::new())),
            store: store.clone(),
            calendar: SharedCalendar::new(Calendar::builtin().unwrap()),
            clock: Arc::new(ManualClock::new(datetime!(2026-10-08 09:00 +08:00))),
            interval: Duration::from_secs(60),
            webhook: Webhook::default(),
        };
        let mut memory = Memory::default();
        let scan = tracker.scan(&mut memory).await.unwrap();
        assert_eq!(scan.warned, [("near".to_string(), Due::Near)]);
        assert_eq!(
            scan.counts.get("pending"),
            Some(&2),
            "the forwarded one too"
        );
        assert_eq!(scan.counts.get("delivered_late"), Some(&1));
        assert_eq!(
            scan.nearest,
            (deadline - datetime!(2026-10-08 09:00 +08:00)).whole_seconds(),
            "only a deadline counts toward the nearest"
        );
        put(
            &store,
            &correction("near", Some(datetime!(2026-10-08 22:00 +08:00))),
        );
        let again = tracker.scan(&mut memory).await.unwrap();
        assert!(again.warned.is_empty(), "once per correction (GD Art. 31)");
    }

    /// The payloads each family's receivers read, exactly as before the core.
    #[test]
    fn each_family_keeps_its_webhook_payload() {
        let d = "2026-10-08T23:59:59+08:00";
        assert_eq!(
            Family::Corrections.alert(Due::Near, "c1", Some("r1"), d, false),
            serde_json::json!({"event": "deadline_near", "correction_id": "c1", "record_id": "r1", "deadline": d, "deadline_provisional": false})
        );
        assert_eq!(
            Family::Objections.alert(Due::Overdue, "o1", None, d, true),
            serde_json::json!({"event": "objection_overdue", "objection_id": "o1", "deadline": d, "deadline_provisional": true})
        );
        assert_eq!(
            Family::Repairs.alert(Due::Near, "p1", None, d, false),
            serde_json::json!({"event": "repair_deadline_near", "repair_id": "p1", "deadline": d, "deadline_provisional": false})
        );
    }
}
