//! The scoring rule: a pure function from a subject's facts, its profile and its cycle to points,
//! grade and reasons. No I/O, no clock: the day is an argument.
//!
//! - Only facts within their validity count (GD Art. 19 "生效期内"): not past `valid_until`, not
//!   expired from the archive, and dishonesty items only for `dishonesty_valid_years` after their
//!   date (LS Art. 20: dishonesty records are kept 3 years).
//! - A repaired record and a record an upheld objection eliminated never count (Order No. 36
//!   Art. 3; LS Arts. 23, 40: repaired points do not carry over).
//! - The yearly cycle (LS Art. 20): dishonesty items dated before `carried_since` do not count;
//!   positive items count in their own cycle only.
//! - Points are clamped to 0..=100; a counting serious-dishonesty listing makes the grade E
//!   whatever the points (GD Art. 20).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::Date;

use super::profile::{Method, Profile, ValueSource};
use super::Grade;
use crate::record::Category;

/// Why a record no longer counts, whatever its dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Repaired,
    Eliminated,
    Expired,
}

/// One archived record as the score sees it.
#[derive(Debug, Clone)]
pub struct Fact {
    pub agency: String,
    pub record_id: String,
    pub version: u32,
    pub category: Category,
    pub content: Map<String, Value>,
    /// The date the conduct was established: the basis's decision date, else the category's own
    /// date (listed_on, awarded_on...), else valid_from, else the day it was received.
    pub on: Date,
    pub valid_until: Option<Date>,
    pub ended: Option<Ended>,
}

/// The cycle a result belongs to (LS Art. 20: one natural year).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cycle {
    pub year: i32,
    /// Dishonesty items dated before this year do not count: the year itself for a subject that
    /// returned to base, an earlier year for a D or E subject carrying its unrepaired points.
    pub carried_since: i32,
}

/// One record that moved the score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub agency: String,
    pub record_id: String,
    pub version: u32,
    pub category: Category,
    /// The profile item that counted it.
    pub item: String,
    /// Signed change of the score (negative: deducted / recorded points).
    pub points: i32,
    /// The record's date.
    pub on: String,
    /// Counted from an earlier cycle (LS Art. 20 carry-over of a D or E subject).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub carried: bool,
    /// Whether the points are the regulation's or a documented example.
    pub value: ValueSource,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub points: u32,
    pub grade: Grade,
    pub serious_dishonesty: bool,
    pub reasons: Vec<Reason>,
    /// The first day on which a counted fact stops counting or a future-dated one starts: the
    /// result must be computed again then.
    pub next_change: Option<Date>,
}

pub fn score(profile: &Profile, facts: &[Fact], cycle: Cycle, today: Date) -> Score {
    let mut total: i64 = i64::from(profile.base);
    let mut reasons = Vec::new();
    let mut serious = false;
    let mut listings: Vec<(&Fact, bool)> = Vec::new();
    let mut next: Option<Date> = None;
    let mut soonest = |d: Date| {
        if d > today && next.is_none_or(|n| d < n) {
            next = Some(d);
        }
    };
    for fact in facts {
        if fact.ended.is_some() {
            continue;
        }
        if fact.on > today {
            soonest(fact.on);
            continue;
        }
        if let Some(until) = fact.valid_until {
            if until < today {
                continue;
            }
            if let Some(after) = until.next_day() {
                soonest(after);
            }
        }
        let carried = fact.on.year() < cycle.year;
        // A dishonesty record counts for the validity period and, across cycles, only while the
        // subject carries its points (LS Art. 20).
        let dishonesty_end = crate::lifecycle::notice::add_months(
            fact.on,
            u32::from(profile.dishonesty_valid_years) * 12,
        );
        let dishonesty_counts = dishonesty_end > today && fact.on.year() >= cycle.carried_since;
        // A listing in force makes E whatever the cycle carries (GD Art. 20).
        if profile.serious_dishonesty_is_e && is_serious_listing(fact) && dishonesty_end > today {
            serious = true;
            soonest(dishonesty_end);
            listings.push((fact, carried));
        }
        let Some(item) = profile
            .items
            .iter()
            .find(|i| i.matches(&fact.agency, fact.category, &fact.content))
        else {
            continue;
        };
        if item.points < 0 {
            if !dishonesty_counts {
                continue;
            }
            soonest(dishonesty_end);
        } else if carried {
            continue;
        }
        total += i64::from(item.points);
        reasons.push(Reason {
            agency: fact.agency.clone(),
            record_id: fact.record_id.clone(),
            version: fact.version,
            category: fact.category,
            item: item.id.clone(),
            points: item.points,
            on: crate::record::format_date(fact.on),
            carried,
            value: item.value,
        });
    }
    // GD Art. 22 asks for the reason and basis of a change of grade: a listing that makes E is
    // one even where no profile item counts it (carried from an earlier cycle, or no item for
    // it), so it is named with no points of its own.
    for (fact, carried) in listings {
        let named = reasons
            .iter()
            .any(|r| r.agency == fact.agency && r.record_id == fact.record_id);
        if !named {
            reasons.push(Reason {
                agency: fact.agency.clone(),
                record_id: fact.record_id.clone(),
                version: fact.version,
                category: fact.category,
                item: SERIOUS_LISTING_MAKES_E.to_string(),
                points: 0,
                on: crate::record::format_date(fact.on),
                carried,
                value: crate::evaluation::profile::ValueSource::Regulation,
            });
        }
    }
    let points = total.clamp(0, 100) as u32;
    let grade = if serious {
        Grade::E
    } else {
        profile.grade_for(points)
    };
    Score {
        points,
        grade,
        serious_dishonesty: serious,
        reasons,
        next_change: next,
    }
}

/// The reason item naming a serious listing that makes the grade E (GD Art. 20) where no profile
/// item counted it.
pub const SERIOUS_LISTING_MAKES_E: &str = "serious_dishonesty_list_grade_e (GD Art. 20)";

/// A serious-dishonesty listing (严重失信主体名单, GD Art. 20).
pub fn is_serious_listing(fact: &Fact) -> bool {
    fact.category == Category::DishonestList
        && fact.content.get("serious_dishonesty") == Some(&Value::Bool(true))
}

/// The cycle of `year` for a subject whose last result of the previous year had `previous` grade
/// and `previous_since` carry start (LS Art. 20): A, B and C return to base; the grades the
/// profile carries (D, E) keep counting their unrepaired dishonesty points.
pub fn cycle_for(profile: &Profile, year: i32, previous: Option<(Grade, i32)>) -> Cycle {
    let carried_since = match previous {
        Some((grade, since)) if profile.carry_grades.contains(&grade) => since.min(year - 1),
        _ => year,
    };
    Cycle {
        year,
        carried_since,
    }
}

/// The grade a subject without a stored result for `year` would have ended it with (its records
/// predate the gateway's evaluation, or it was not evaluated then): every dishonesty record within
/// its validity counts, so a subject listed last year is not returned to base for want of a
/// result. Returns the grade and the carry start to continue from.
pub fn unrecorded_year(profile: &Profile, facts: &[Fact], year: i32) -> Option<(Grade, i32)> {
    let end = Date::from_calendar_date(year, time::Month::December, 31).ok()?;
    let since = year - i32::from(profile.dishonesty_valid_years);
    let cycle = Cycle {
        year,
        carried_since: since,
    };
    Some((score(profile, facts, cycle, end).grade, since))
}

/// How a reason reads to the subject: 扣分 for institutions, 记分 for individuals (LS Art. 19).
pub fn wording(method: Method) -> &'static str {
    match method {
        Method::Deduction => "扣分",
        Method::Points => "记分",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::profile::Profiles;
    use crate::subject::SubjectKind;
    use serde_json::json;
    use time::macros::date;

    fn profile() -> Profile {
        Profiles::load(
            &std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
                .join("mappings/scoring"),
        )
        .unwrap()
        .select("540102", SubjectKind::Institution, date!(2025 - 06 - 01))
        .unwrap()
        .clone()
    }

    fn fact(id: &str, category: Category, content: Value, on: Date) -> Fact {
        Fact {
            agency: "medical_insurance".into(),
            record_id: id.into(),
            version: 1,
            category,
            content: content.as_object().unwrap().clone(),
            on,
            valid_until: None,
            ended: None,
        }
    }

    fn penalty(id: &str, severity: &str, on: Date) -> Fact {
        fact(
            id,
            Category::Administrative,
            json!({"action": "penalty", "severity": severity}),
            on,
        )
    }

    const Y2025: Cycle = Cycle {
        year: 2025,
        carried_since: 2025,
    };

    #[test]
    fn points_and_grade_at_each_boundary_ls_art_19() {
        let p = profile();
        let today = date!(2025 - 06 - 01);
        // 100 - 5 = 95 (A); -8 -> 92 (B)... using the shipped example values.
        let five = penalty("p1", "x", date!(2025 - 02 - 01));
        let mut five = five;
        five.content = json!({"action": "penalty"}).as_object().unwrap().clone();
        let s = score(&p, &[five.clone()], Y2025, today);
        assert_eq!((s.points, s.grade), (95, Grade::A));
        let s = score(
            &p,
            &[five.clone(), penalty("p2", "minor", date!(2025 - 03 - 01))],
            Y2025,
            today,
        );
        assert_eq!((s.points, s.grade), (93, Grade::B));
        assert_eq!(s.reasons.len(), 2);
        assert_eq!(s.reasons[1].item, "penalty-minor");
    }

    #[test]
    fn a_serious_listing_is_e_at_any_points_gd_art_20() {
        let mut p = profile();
        for item in &mut p.items {
            if item.id == "serious-dishonesty-list" {
                item.points = -1;
            }
        }
        let listing = fact(
            "l1",
            Category::DishonestList,
            json!({"serious_dishonesty": true, "list_name": "x"}),
            date!(2025 - 01 - 10),
        );
        let s = score(&p, &[listing], Y2025, date!(2025 - 06 - 01));
        assert_eq!(s.points, 99);
        assert_eq!(s.grade, Grade::E);
        assert!(s.serious_dishonesty);
    }

    #[test]
    fn a_listing_of_last_year_still_in_force_makes_e_after_a_return_to_base() {
        let p = profile();
        let listing = fact(
            "l1",
            Category::DishonestList,
            json!({"serious_dishonesty": true, "list_name": "x"}),
            date!(2025 - 11 - 10),
        );
        // A B subject returns to base in 2026: the listing's points do not carry...
        let reset = cycle_for(&p, 2026, Some((Grade::B, 2025)));
        let s = score(&p, &[listing], reset, date!(2026 - 01 - 05));
        assert_eq!(s.points, 100);
        // ...but the listing is still in force: E (GD Art. 20).
        assert_eq!(s.grade, Grade::E);
        // GD Art. 22: the change of grade names its reason and basis.
        assert_eq!(s.reasons.len(), 1, "{:?}", s.reasons);
        assert_eq!(s.reasons[0].record_id, "l1");
        assert_eq!(s.reasons[0].item, SERIOUS_LISTING_MAKES_E);
        assert_eq!(s.reasons[0].points, 0);
        assert!(s.reasons[0].carried);
    }

    #[test]
    fn a_record_past_its_validity_stops_counting_gd_art_19() {
        let p = profile();
        let mut f = penalty("p1", "serious", date!(2025 - 01 - 10));
        f.valid_until = Some(date!(2025 - 03 - 31));
        let before = score(&p, std::slice::from_ref(&f), Y2025, date!(2025 - 03 - 31));
        assert_eq!(before.points, 85);
        assert_eq!(before.next_change, Some(date!(2025 - 04 - 01)));
        let after = score(&p, &[f], Y2025, date!(2025 - 04 - 01));
        assert_eq!(after.points, 100);
        assert!(after.reasons.is_empty());
    }

    #[test]
    fn dishonesty_counts_three_years_at_most_ls_art_20() {
        let p = profile();
        let f = penalty("p1", "serious", date!(2023 - 05 - 10));
        let carrying = Cycle {
            year: 2026,
            carried_since: 2023,
        };
        assert_eq!(
            score(
                &p,
                std::slice::from_ref(&f),
                carrying,
                date!(2026 - 05 - 09)
            )
            .points,
            85
        );
        assert_eq!(score(&p, &[f], carrying, date!(2026 - 05 - 10)).points, 100);
    }

    #[test]
    fn the_cycle_returns_a_b_c_to_base_and_carries_d_and_e_ls_art_20() {
        let p = profile();
        let f = penalty("p1", "serious", date!(2025 - 05 - 10));
        let b = cycle_for(&p, 2026, Some((Grade::B, 2025)));
        assert_eq!(
            score(&p, std::slice::from_ref(&f), b, date!(2026 - 01 - 02)).points,
            100
        );
        let d = cycle_for(&p, 2026, Some((Grade::D, 2025)));
        let s = score(&p, std::slice::from_ref(&f), d, date!(2026 - 01 - 02));
        assert_eq!(s.points, 85);
        assert!(s.reasons[0].carried);
        let mut repaired = f;
        repaired.ended = Some(Ended::Repaired);
        assert_eq!(score(&p, &[repaired], d, date!(2026 - 01 - 02)).points, 100);
        // Honours count in their own cycle only.
        let honour = fact(
            "h",
            Category::Honor,
            json!({"honor_name": "x"}),
            date!(2025 - 05 - 10),
        );
        assert_eq!(
            score(&p, std::slice::from_ref(&honour), d, date!(2026 - 01 - 02)).points,
            100
        );
        assert_eq!(
            score(&p, &[honour], Y2025, date!(2025 - 06 - 02)).points,
            100,
            "capped at 100"
        );
    }
}
