//! Warnings before and at a deadline counted in working days, once per deadline: "near" when less
//! than one working day is left, "overdue" once it has passed. Shared by the trackers of
//! objections and repairs; a new deadline for the same item (a review, an extension) warns again.

use std::collections::HashSet;

use time::OffsetDateTime;

use super::Calendar;

/// What to warn of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Near,
    Overdue,
}

#[derive(Debug, Default)]
pub struct Warnings {
    warned: HashSet<(String, OffsetDateTime, bool)>,
    nearest: Option<i64>,
}

impl Warnings {
    /// An item still open before its deadline: counts toward the nearest deadline, and is `Near`
    /// the first time less than one working day is left.
    pub fn open(
        &mut self,
        id: &str,
        deadline: OffsetDateTime,
        now: OffsetDateTime,
        calendar: &Calendar,
    ) -> Option<Due> {
        let left = (deadline - now).whole_seconds();
        self.nearest = Some(self.nearest.map_or(left, |n| n.min(left)));
        let days_left = calendar.working_days_left(now, deadline).unwrap_or(0);
        (days_left < 1 && self.warned.insert((id.to_string(), deadline, false)))
            .then_some(Due::Near)
    }

    /// An item past its deadline: `Overdue` the first time.
    pub fn overdue(&mut self, id: &str, deadline: OffsetDateTime) -> Option<Due> {
        self.warned
            .insert((id.to_string(), deadline, true))
            .then_some(Due::Overdue)
    }

    /// Seconds to the nearest open deadline seen since the last call (0 when none).
    pub fn take_nearest(&mut self) -> i64 {
        self.nearest.take().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn each_deadline_warns_once_and_a_new_one_again() {
        let cal = Calendar::builtin().unwrap();
        let mut w = Warnings::default();
        let d = datetime!(2026-10-13 23:59:59 +08:00);
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
        let later = datetime!(2026-11-03 23:59:59 +08:00);
        assert_eq!(
            w.overdue("o1", later),
            Some(Due::Overdue),
            "a new deadline warns again"
        );
        assert!(w.take_nearest() > 0);
        assert_eq!(w.take_nearest(), 0);
    }
}
