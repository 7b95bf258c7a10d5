//! The dated, regional rule window: when a rule governs (`effective_from`, `effective_until`,
//! both days included) and where (`regions`, prefixes of the 6-digit administrative division
//! code; none: everywhere), and which of several rules governs a region on a day (issue #28:
//! this was written five times, in `lifecycle::notice`, `objections::rules`, `repairs::rules`,
//! `sharing` and `evaluation::profile`, and once more in `rulebook::in_force`).
//!
//! Owns: [`Window`] and the [`Dated`] trait every rule with a window implements; whether a window
//! is in force on a day ([`Window::in_force`], [`Window::in_force_at`] for a record that may have
//! no date), how specifically it names a region ([`Window::region_specificity`]), whether it has
//! ended before a day (the gap policies, [`Window::ended_before`]), its checks at load
//! ([`Window::check_dates`], [`Window::bad_region`]), and the selector of the rule in force
//! ([`select`]).
//!
//! Never does: parse a rule file, apply a rule, or choose a gap policy. Each rule file keeps its
//! own struct and its three keys (`effective_from`, `effective_until`, `regions`, read with the
//! same serde attributes as before) and implements [`Dated`] to lend its window. The window is
//! not a `#[serde(flatten)]`ed field because every rule struct is `deny_unknown_fields`, which
//! serde does not support together with `flatten`, and `flatten` would buffer the values and lose
//! toml's dates and error positions: the rule files and their error messages stay as they were.
//! What each domain does where nothing is in force stays in the domain (each gap policy is a
//! different legal answer; see `docs/operate/rules.md`).
//!
//! Where it sits: below every domain that has dated rules and below `rulebook` (which imports the
//! domains), beside `calendar`; it imports nothing of the crate, so any domain may use it.
//!
//! Invariants (kept exactly as every copy behaved, checked by the tests below):
//! - a window is in force on `day` when `effective_from <= day <= effective_until`, a missing
//!   bound being open;
//! - a window without regions matches every region with specificity 0, the lowest; otherwise its
//!   specificity is the length of its longest prefix of the region, and it does not match when
//!   no prefix does (a prefix `"44"` is more specific for `440106` than none, less than `"4401"`);
//! - [`select`] returns, of the windows in force that match, one of the highest specificity; on a
//!   tie the last in the order given (what `Iterator::max_by_key` chose in every copy). The
//!   scoring profiles refuse such ties at load; notice periods and objection rules do not.
//!
//! Where the copies differ, each caller keeps its own rule on top of these pieces:
//! - sharing keeps, per channel, *every* rule of the highest specificity (several rules of one
//!   channel may add up), and a dated rule does not govern a record without a date
//!   ([`Window::in_force_at`]);
//! - retention takes the *first* rule of the file in force that matches, not the most specific;
//! - repair eligibility applies *every* rule in force that matches;
//! - the rules-in-force view breaks ties by the later `effective_from`;
//! - of the scoring profiles that ended, the gap policy `successor_pending` takes the most
//!   specific, then the last ended; the profile named when evaluation stops is the last ended of
//!   those covering the region, whatever their specificity;
//! - only notice periods, objection rules and scoring profiles refuse `effective_until` before
//!   `effective_from` at load; retention, sharing and repair rules never did (such a rule is never
//!   in force), and still do not, so no file that loads today is refused after this change;
//! - only notice periods, sharing rules and scoring profiles refuse a region that is not 1-6
//!   digits ([`Window::bad_region`]); only scoring profiles must name regions; notice periods and
//!   scoring profiles must have an `effective_from` (their structs hold a `Date`, not an
//!   `Option`).

use time::Date;

/// A rule that governs from and until dates, in regions.
pub trait Dated {
    /// The rule's window, borrowed from its fields.
    fn window(&self) -> Window<'_>;
}

/// When and where a rule governs. Borrowed from the rule, so the rule files keep their keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window<'a> {
    /// First day the rule governs; `None`: since always.
    pub effective_from: Option<Date>,
    /// Last day the rule governs (included); `None`: no end.
    pub effective_until: Option<Date>,
    /// Region prefixes; empty: everywhere.
    pub regions: &'a [String],
}

/// The message of a window whose end is before its start; callers prefix it with the rule's name
/// as they always did.
pub const UNTIL_BEFORE_FROM: &str = "effective_until is before effective_from";

impl<'a> Window<'a> {
    pub fn new(
        effective_from: Option<Date>,
        effective_until: Option<Date>,
        regions: &'a [String],
    ) -> Self {
        Self {
            effective_from,
            effective_until,
            regions,
        }
    }

    /// Whether the rule governs on `day` (both bounds included; a missing bound is open).
    pub fn in_force(&self, day: Date) -> bool {
        self.effective_from.is_none_or(|f| f <= day)
            && self.effective_until.is_none_or(|u| day <= u)
    }

    /// [`Self::in_force`] for something that may have no date (a shared record without a
    /// decision date): a rule without dates governs it, a dated rule does not.
    pub fn in_force_at(&self, day: Option<Date>) -> bool {
        match day {
            Some(day) => self.in_force(day),
            None => self.effective_from.is_none() && self.effective_until.is_none(),
        }
    }

    /// How specifically the rule names `region`: the length of its longest prefix of it, 0 for a
    /// rule without regions (everywhere, the lowest), `None` when it does not cover the region.
    pub fn region_specificity(&self, region: &str) -> Option<usize> {
        if self.regions.is_empty() {
            return Some(0);
        }
        self.regions
            .iter()
            .filter(|p| region.starts_with(p.as_str()))
            .map(|p| p.len())
            .max()
    }

    /// Whether the rule covers `region` (everywhere, or one of its prefixes).
    pub fn covers(&self, region: &str) -> bool {
        self.region_specificity(region).is_some()
    }

    /// In force on `day` and covering `region`.
    pub fn governs(&self, region: &str, day: Date) -> bool {
        self.in_force(day) && self.covers(region)
    }

    /// The rule's last day when it ended before `day` (the gap policies name what ended, and
    /// since when); `None` while it runs, or when it has no end.
    pub fn ended_before(&self, day: Date) -> Option<Date> {
        self.effective_until.filter(|u| *u < day)
    }

    /// Whether the rule ended before `day`.
    pub fn has_ended(&self, day: Date) -> bool {
        self.ended_before(day).is_some()
    }

    /// Whether the two windows have a day in common (dates only; regions are the caller's to
    /// compare): rules of one duty and region must not (the scoring profiles refuse it at load).
    pub fn shares_a_day_with(&self, other: &Window<'_>) -> bool {
        let from = |w: &Window<'_>| w.effective_from.unwrap_or(Date::MIN);
        let until = |w: &Window<'_>| w.effective_until.unwrap_or(Date::MAX);
        from(self) <= until(other) && from(other) <= until(self)
    }

    /// At load: the end must not be before the start ([`UNTIL_BEFORE_FROM`]).
    pub fn check_dates(&self) -> Result<(), &'static str> {
        match (self.effective_from, self.effective_until) {
            (Some(f), Some(u)) if u < f => Err(UNTIL_BEFORE_FROM),
            _ => Ok(()),
        }
    }

    /// At load: the first region that is not a prefix of an administrative division code (1 to
    /// 6 digits), if any.
    pub fn bad_region(&self) -> Option<&'a str> {
        self.regions
            .iter()
            .map(String::as_str)
            .find(|r| !is_region_prefix(r))
    }
}

/// 1 to 6 ASCII digits: a prefix of a 6-digit administrative division code.
pub fn is_region_prefix(s: &str) -> bool {
    (1..=6).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// The rule in force for `region` on `day`: the most specific region prefix among the rules in
/// force that cover it (no regions: the least specific); of equally specific ones, the last given.
pub fn select<'a, T, I>(rules: I, region: &str, day: Date) -> Option<&'a T>
where
    T: Dated + ?Sized + 'a,
    I: IntoIterator<Item = &'a T>,
{
    rules
        .into_iter()
        .filter(|r| r.window().in_force(day))
        .filter_map(|r| r.window().region_specificity(region).map(|len| (len, r)))
        .max_by_key(|(len, _)| *len)
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::date;

    #[derive(Debug, Clone)]
    struct Rule {
        id: usize,
        from: Option<Date>,
        until: Option<Date>,
        regions: Vec<String>,
    }

    impl Dated for Rule {
        fn window(&self) -> Window<'_> {
            Window::new(self.from, self.until, &self.regions)
        }
    }

    fn rule(id: usize, from: Option<Date>, until: Option<Date>, regions: &[&str]) -> Rule {
        Rule {
            id,
            from,
            until,
            regions: regions.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn both_bounds_are_days_in_force() {
        let w = rule(
            0,
            Some(date!(2024 - 01 - 01)),
            Some(date!(2025 - 12 - 31)),
            &[],
        );
        let w = w.window();
        assert!(!w.in_force(date!(2023 - 12 - 31)));
        assert!(w.in_force(date!(2024 - 01 - 01)));
        assert!(w.in_force(date!(2025 - 12 - 31)));
        assert!(!w.in_force(date!(2026 - 01 - 01)));
        assert_eq!(w.ended_before(date!(2025 - 12 - 31)), None);
        assert_eq!(
            w.ended_before(date!(2026 - 01 - 01)),
            Some(date!(2025 - 12 - 31))
        );
        let open = rule(0, None, None, &[]);
        assert!(open.window().in_force(Date::MIN) && open.window().in_force(Date::MAX));
        assert!(!open.window().has_ended(Date::MAX));
    }

    #[test]
    fn a_record_without_a_date_is_governed_only_by_undated_rules() {
        assert!(rule(0, None, None, &[]).window().in_force_at(None));
        assert!(!rule(0, Some(date!(2024 - 01 - 01)), None, &[])
            .window()
            .in_force_at(None));
        assert!(!rule(0, None, Some(date!(2024 - 01 - 01)), &[])
            .window()
            .in_force_at(None));
        let dated = rule(0, Some(date!(2024 - 01 - 01)), None, &[]);
        assert!(dated.window().in_force_at(Some(date!(2024 - 01 - 01))));
    }

    #[test]
    fn no_regions_is_everywhere_and_least_specific() {
        assert_eq!(
            rule(0, None, None, &[])
                .window()
                .region_specificity("540102"),
            Some(0)
        );
        let w = rule(0, None, None, &["44", "4401"]);
        assert_eq!(w.window().region_specificity("440106"), Some(4));
        assert_eq!(w.window().region_specificity("441900"), Some(2));
        assert_eq!(w.window().region_specificity("540102"), None);
        assert!(
            !w.window().covers("4"),
            "a prefix longer than the region does not match"
        );
    }

    #[test]
    fn the_most_specific_in_force_wins_and_ties_go_to_the_last() {
        let day = date!(2025 - 03 - 01);
        let rules = [
            rule(0, None, None, &[]),
            rule(
                1,
                Some(date!(2024 - 01 - 01)),
                Some(date!(2025 - 12 - 31)),
                &["5401"],
            ),
            rule(2, Some(date!(2026 - 01 - 01)), None, &["540102"]),
            rule(3, None, None, &["54"]),
        ];
        assert_eq!(select(&rules, "540102", day).unwrap().id, 1);
        assert_eq!(
            select(&rules, "540102", date!(2026 - 01 - 01)).unwrap().id,
            2
        );
        assert_eq!(select(&rules, "440106", day).unwrap().id, 0);
        let tied = [rule(0, None, None, &["44"]), rule(1, None, None, &["44"])];
        assert_eq!(select(&tied, "440106", day).unwrap().id, 1);
        let none = [rule(0, Some(date!(2026 - 01 - 01)), None, &[])];
        assert!(select(&none, "440106", day).is_none());
    }

    #[test]
    fn windows_share_a_day_when_their_dates_meet() {
        let a = rule(
            0,
            Some(date!(2024 - 01 - 01)),
            Some(date!(2025 - 12 - 31)),
            &[],
        );
        let next = rule(1, Some(date!(2026 - 01 - 01)), None, &[]);
        let last_day = rule(2, Some(date!(2025 - 12 - 31)), None, &[]);
        let before = rule(3, None, Some(date!(2023 - 12 - 31)), &[]);
        assert!(!a.window().shares_a_day_with(&next.window()));
        assert!(a.window().shares_a_day_with(&last_day.window()));
        assert!(last_day.window().shares_a_day_with(&a.window()));
        assert!(!before.window().shares_a_day_with(&a.window()));
        assert!(rule(4, None, None, &[])
            .window()
            .shares_a_day_with(&before.window()));
    }

    #[test]
    fn checks_at_load() {
        let bad = rule(
            0,
            Some(date!(2025 - 01 - 02)),
            Some(date!(2025 - 01 - 01)),
            &[],
        );
        assert_eq!(bad.window().check_dates(), Err(UNTIL_BEFORE_FROM));
        let one_day = rule(
            0,
            Some(date!(2025 - 01 - 01)),
            Some(date!(2025 - 01 - 01)),
            &[],
        );
        assert_eq!(one_day.window().check_dates(), Ok(()));
        assert_eq!(
            rule(0, None, None, &["44", "4401x"]).window().bad_region(),
            Some("4401x")
        );
        assert_eq!(
            rule(0, None, None, &["1234567"]).window().bad_region(),
            Some("1234567")
        );
        assert_eq!(rule(0, None, None, &[""]).window().bad_region(), Some(""));
        assert_eq!(rule(0, None, None, &["5401"]).window().bad_region(), None);
    }

    fn day_strategy() -> impl Strategy<Value = Date> {
        (0i64..60).prop_map(|n| date!(2025 - 01 - 01) + time::Duration::days(n))
    }

    fn rule_strategy() -> impl Strategy<Value = (Option<Date>, Option<Date>, Vec<String>)> {
        let prefix = prop::sample::select(vec!["4", "44", "4401", "440106", "54", "5401", "31"])
            .prop_map(String::from);
        (
            prop::option::of(day_strategy()),
            prop::option::of(day_strategy()),
            prop::collection::vec(prefix, 0..3),
        )
    }

    proptest! {
        /// The selector against the plain definition: of the rules in force that cover the
        /// region, the highest specificity, the last of a tie; and nothing when none does.
        #[test]
        fn select_is_the_last_most_specific_in_force(
            raw in prop::collection::vec(rule_strategy(), 0..8),
            day in day_strategy(),
            region in prop::sample::select(vec!["440106", "441900", "540102", "310101"]),
        ) {
            let rules: Vec<Rule> = raw
                .into_iter()
                .enumerate()
                .map(|(id, (from, until, regions))| Rule { id, from, until, regions })
                .collect();
            let spec = |r: &Rule| -> Option<usize> {
                let in_force = r.from.is_none_or(|f| f <= day) && r.until.is_none_or(|u| day <= u);
                if !in_force {
                    return None;
                }
                if r.regions.is_empty() {
                    return Some(0);
                }
                r.regions.iter().filter(|p| region.starts_with(p.as_str())).map(|p| p.len()).max()
            };
            let best = rules.iter().filter_map(spec).max();
            let expected = best.and_then(|b| rules.iter().rfind(|r| spec(r) == Some(b)));
            let got = select(&rules, region, day);
            prop_assert_eq!(got.map(|r| r.id), expected.map(|r| r.id));
            if let Some(r) = got {
                prop_assert!(r.window().governs(region, day));
            }
            // Nothing that governs is more specific than the choice.
            for r in rules.iter().filter(|r| r.window().governs(region, day)) {
                prop_assert!(r.window().region_specificity(region) <= got.and_then(|g| g.window().region_specificity(region)));
            }
        }
    }
}
