//! A case's deadline in working days: counted on the State Council calendar, estimated past its
//! last known year and made exact later (issue #26), its countdown, and the warnings given once
//! before and once past it.
//!
//! Owns: [`CaseDeadline`] (what a step stores: the deadline, whether provisional, its basis),
//! [`make_exact`] (the one rule for replacing a provisional deadline), [`Countdown`] (seconds
//! and working days left, at risk under one working day) and [`Warnings`].
//!
//! Never does: choose the number of working days or the direction of an estimate (the domain's
//! rules and its law do: a department's own duty is never later than the truth, a subject's
//! window never earlier), or read the clock (`now` is passed in).

use std::collections::HashSet;

use time::{Date, OffsetDateTime};

use crate::calendar::{Basis, Calendar, CalendarError, Estimate, CHINA_OFFSET};

/// A deadline as a case stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseDeadline {
    /// 23:59:59 +08:00 of the last working day counted.
    pub at: OffsetDateTime,
    /// Counted (partly) past the last known calendar year: an estimate.
    pub provisional: bool,
    /// What it was counted from, stored only while provisional so it can be made exact.
    pub basis: Option<Basis>,
}

impl CaseDeadline {
    /// `working_days` working days after the China date of `from` (not counting that day), past
    /// the known years estimated in the direction `estimate`.
    pub fn count(
        calendar: &Calendar,
        from: OffsetDateTime,
        working_days: u32,
        estimate: Estimate,
    ) -> Result<Self, CalendarError> {
        let d = calendar.deadline_estimated(from, working_days, estimate)?;
        Ok(Self {
            at: d.at,
            provisional: d.provisional,
            basis: d.basis(from, working_days),
        })
    }

    /// [`Self::count`] from a day rather than a moment (a notification date): counted from the
    /// middle of that China day, 11:59:59 +08:00, the moment stored as the basis.
    pub fn count_from_day(
        calendar: &Calendar,
        day: Date,
        working_days: u32,
        estimate: Estimate,
    ) -> Result<Self, CalendarError> {
        let from = day
            .with_time(time::Time::from_hms(11, 59, 59).unwrap_or(time::Time::MIDNIGHT))
            .assume_offset(CHINA_OFFSET);
        Self::count(calendar, from, working_days, estimate)
    }

    /// Store it in a case's three deadline fields.
    pub fn store<T: From<OffsetDateTime>>(
        self,
        at: &mut T,
        provisional: &mut bool,
        basis: &mut Option<Basis>,
    ) {
        *at = self.at.into();
        *provisional = self.provisional;
        *basis = self.basis;
    }
}

/// Replace a provisional deadline with the exact one once `calendar` covers it; only the three
/// deadline fields change. `true` when it changed; an exact deadline (no basis) never does.
pub fn make_exact<T: From<OffsetDateTime>>(
    calendar: &Calendar,
    at: &mut T,
    provisional: &mut bool,
    basis: &mut Option<Basis>,
) -> bool {
    let Some(exact) = basis.and_then(|b| calendar.exact(&b)) else {
        return false;
    };
    *at = exact.into();
    *provisional = false;
    *basis = None;
    true
}

/// Whether a case with this deadline is overdue at `now`: strictly after it.
pub fn passed(deadline: OffsetDateTime, now: OffsetDateTime) -> bool {
    now > deadline
}

/// How long an open case has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Countdown {
    /// Seconds to the deadline (negative once passed).
    pub seconds: i64,
    /// Working days strictly after today up to the deadline's day; 0 on the last day, when past,
    /// or when the calendar cannot say (a warning is then given rather than missed).
    pub working_days: u32,
}

impl Countdown {
    pub fn of(deadline: OffsetDateTime, now: OffsetDateTime, calendar: &Calendar) -> Self {
        Self {
            seconds: (deadline - now).whole_seconds(),
            working_days: calendar.working_days_left(now, deadline).unwrap_or(0),
        }
    }

    /// As [`Countdown::of`], or why the calendar cannot count (a deadline before its first
    /// year): for a page that shows the reason rather than a warning.
    pub fn counted(
        deadline: OffsetDateTime,
        now: OffsetDateTime,
        calendar: &Calendar,
    ) -> Result<Self, CalendarError> {
        Ok(Self {
            seconds: (deadline - now).whole_seconds(),
            working_days: calendar.working_days_left(now, deadline)?,
        })
    }

    /// Less than one working day left: the trackers' alert (gauges, webhook), on the last day.
    pub fn at_risk(&self) -> bool {
        self.working_days < 1
    }

    /// Ends within one working day (on its last day, or the working day after today), not yet
    /// passed: the console's desk lists and colours a case from here ("需处理", the countdown
    /// cells), one working day before the trackers' [`Countdown::at_risk`] alert, so that the
    /// case is taken up while a whole working day is left for it.
    pub fn due_within_a_working_day(&self) -> bool {
        !self.overdue() && self.working_days <= 1
    }

    pub fn overdue(&self) -> bool {
        self.seconds < 0
    }
}

/// What to warn of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Due {
    Near,
    Overdue,
}

/// How often a case warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OncePer {
    /// Once per case, whatever its deadline becomes (corrections).
    Case,
    /// Once per deadline: a new deadline for the same case warns again (objections, repairs).
    Deadline,
}

/// The warnings given so far, and the nearest open deadline of the current scan.
#[derive(Debug)]
pub struct Warnings {
    once_per: OncePer,
    warned: HashSet<(String, Option<OffsetDateTime>, Due)>,
    nearest: Option<i64>,
}

impl Warnings {
    pub fn new(once_per: OncePer) -> Self {
        Self {
            once_per,
            warned: HashSet::new(),
            nearest: None,
        }
    }

    /// A case still open before its deadline: counts toward the nearest deadline, and is `Near`
    /// the first time it is at risk.
    pub fn open(
        &mut self,
        id: &str,
        deadline: OffsetDateTime,
        now: OffsetDateTime,
        calendar: &Calendar,
    ) -> Option<Due> {
        let left = Countdown::of(deadline, now, calendar);
        self.nearest = Some(self.nearest.map_or(left.seconds, |n| n.min(left.seconds)));
        (left.at_risk() && self.first(id, deadline, Due::Near)).then_some(Due::Near)
    }

    /// A case past its deadline: `Overdue` the first time.
    pub fn overdue(&mut self, id: &str, deadline: OffsetDateTime) -> Option<Due> {
        self.first(id, deadline, Due::Overdue)
            .then_some(Due::Overdue)
    }

    /// Seconds to the nearest open deadline seen since the last call (0 when none).
    pub fn take_nearest(&mut self) -> i64 {
        self.nearest.take().unwrap_or(0)
    }

    fn first(&mut self, id: &str, deadline: OffsetDateTime, due: Due) -> bool {
        let deadline = (self.once_per == OncePer::Deadline).then_some(deadline);
        self.warned.insert((id.to_string(), deadline, due))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn calendar() -> Calendar {
        Calendar::builtin().unwrap()
    }

    /// National Day 2026 (10-01 to 10-07 off; 09-27 and 10-10 make-up working days): three
    /// working days from Wednesday 09-30 are 10-08, 10-09 and the make-up Saturday 10-10, never
    /// `+ 3 days` (10-03, inside the holiday).
    #[test]
    fn a_deadline_counts_working_days_across_a_holiday() {
        let cal = calendar();
        let found = datetime!(2026-09-30 15:00 +08:00);
        let d = CaseDeadline::count(&cal, found, 3, Estimate::NeverLater).unwrap();
        assert_eq!(d.at, datetime!(2026-10-10 23:59:59 +08:00));
        assert!(!d.provisional && d.basis.is_none());
        assert_ne!(d.at.date(), (found + time::Duration::days(3)).date());
        // Counted from the China date: 16:30 UTC on 09-30 is already 10-01 in Beijing.
        let late_utc = datetime!(2026-09-30 16:30 UTC);
        let d2 = CaseDeadline::count(&cal, late_utc, 3, Estimate::NeverLater).unwrap();
        assert_eq!(d2.at, datetime!(2026-10-10 23:59:59 +08:00));
        let d3 = CaseDeadline::count_from_day(&cal, date!(2026 - 09 - 29), 1, Estimate::NeverLater)
            .unwrap();
        assert_eq!(d3.at, datetime!(2026-09-30 23:59:59 +08:00));
    }

    /// The desk warns a working day before the trackers alert: with the deadline at the end of
    /// the next working day it is due within a working day but not at risk; on its last day it is
    /// both; past it, neither (it is overdue). Counted across National Day: on Wednesday
    /// 2026-09-30 the next working day is 10-08.
    #[test]
    fn the_desk_warns_a_working_day_before_the_trackers_alert() {
        let cal = calendar();
        let now = datetime!(2026-09-30 10:00 +08:00);
        let next_working_day =
            Countdown::counted(datetime!(2026-10-08 23:59:59 +08:00), now, &cal).unwrap();
        assert_eq!(next_working_day.working_days, 1);
        assert!(next_working_day.due_within_a_working_day() && !next_working_day.at_risk());
        let two_ahead =
            Countdown::counted(datetime!(2026-10-09 23:59:59 +08:00), now, &cal).unwrap();
        assert!(!two_ahead.due_within_a_working_day());
        let today = Countdown::counted(datetime!(2026-09-30 23:59:59 +08:00), now, &cal).unwrap();
        assert!(today.due_within_a_working_day() && today.at_risk());
        let passed = Countdown::of(datetime!(2026-09-29 23:59:59 +08:00), now, &cal);
        assert!(passed.overdue() && !passed.due_within_a_working_day());
    }

    /// Past the last known year: provisional with its basis, exact once a calendar covers it,
    /// and only the deadline fields change.
    #[test]
    fn a_provisional_deadline_is_made_exact_only_on_a_calendar_that_covers_it() {
        let cal = calendar();
        let from = datetime!(2026-12-29 10:00 +08:00);
        let d = CaseDeadline::count(&cal, from, 3, Estimate::NeverLater).unwrap();
        assert!(d.provisional);
        assert_eq!(
            d.basis,
            Some(Basis {
                from,
                working_days: 3
            })
        );
        let (mut at, mut provisional, mut basis) = (None, false, None);
        d.store(&mut at, &mut provisional, &mut basis);
        assert_eq!((at, provisional), (Some(d.at), true));
        assert!(!make_exact(&cal, &mut at, &mut provisional, &mut basis));
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
        let with_2027 = Calendar::from_sources(&files).unwrap();
        assert!(make_exact(
            &with_2027,
            &mut at,
            &mut provisional,
            &mut basis
        ));
        assert_eq!(at, Some(datetime!(2027-01-04 23:59:59 +08:00)));
        assert!(!provisional && basis.is_none());
        assert!(
            !make_exact(&with_2027, &mut at, &mut provisional, &mut basis),
            "an exact deadline stays"
        );
    }

    /// Overdue is strictly after the deadline; at risk is under one working day, counted on the
    /// calendar, not in hours: before National Day eight days of time are one working day.
    #[test]
    fn overdue_and_at_risk_are_classified_on_the_calendar() {
        let cal = calendar();
        let deadline = datetime!(2026-10-08 23:59:59 +08:00);
        assert!(!passed(deadline, deadline));
        assert!(passed(deadline, deadline + time::Duration::seconds(1)));
        // 09-30: the holiday 10-01..07 has no working day; 10-08 is one left.
        let c = Countdown::of(deadline, datetime!(2026-09-30 18:00 +08:00), &cal);
        assert_eq!(c.working_days, 1);
        assert!(!c.at_risk() && !c.overdue());
        assert!(
            c.seconds > 7 * 86_400,
            "eight days of time, one working day"
        );
        // The last day: at risk.
        let c = Countdown::of(deadline, datetime!(2026-10-08 09:00 +08:00), &cal);
        assert_eq!(c.working_days, 0);
        assert!(c.at_risk() && !c.overdue());
        let c = Countdown::of(deadline, datetime!(2026-10-09 00:00 +08:00), &cal);
        assert!(c.overdue() && c.at_risk());
    }

    #[test]
    fn each_deadline_warns_once_and_a_new_one_again_unless_once_per_case() {
        let cal = calendar();
        let d = datetime!(2026-10-13 23:59:59 +08:00);
        let later = datetime!(2026-11-03 23:59:59 +08:00);
        for once_per in [OncePer::Deadline, OncePer::Case] {
            let mut w = Warnings::new(once_per);
            assert_eq!(
                w.open("o1", d, datetime!(2026-10-09 10:00 +08:00), &cal),
                None
            );
            assert_eq!(
                w.open("o1", d, datetime!(2026-10-13 10:00 +08:00), &cal),
                Some(Due::Near)
            );
            assert_eq!(
                w.open("o1", d, datetime!(2026-10-13 11:00 +08:00), &cal),
                None
            );
            assert_eq!(w.overdue("o1", d), Some(Due::Overdue));
            assert_eq!(w.overdue("o1", d), None);
            assert_eq!(
                w.overdue("o1", later),
                (once_per == OncePer::Deadline).then_some(Due::Overdue),
                "a new deadline warns again only once per deadline"
            );
            assert!(w.take_nearest() > 0);
            assert_eq!(w.take_nearest(), 0);
        }
    }
}
