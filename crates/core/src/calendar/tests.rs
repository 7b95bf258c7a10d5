//! Every holiday block and make-up day of the shipped years, and deadlines across weekends,
//! make-up days, Spring Festival and National Day. Expected dates checked against a real calendar.

use time::macros::{date, datetime};
use time::Date;

use super::*;

fn cal() -> Calendar {
    Calendar::builtin().expect("shipped calendar files load")
}

fn each_day(from: Date, to: Date) -> Vec<Date> {
    let mut out = vec![from];
    while *out.last().unwrap() < to {
        out.push(out.last().unwrap().next_day().unwrap());
    }
    out
}

const HOLIDAYS: &[(Date, Date)] = &[
    (date!(2024 - 01 - 01), date!(2024 - 01 - 01)),
    (date!(2024 - 02 - 10), date!(2024 - 02 - 17)),
    (date!(2024 - 04 - 04), date!(2024 - 04 - 06)),
    (date!(2024 - 05 - 01), date!(2024 - 05 - 05)),
    (date!(2024 - 06 - 10), date!(2024 - 06 - 10)),
    (date!(2024 - 09 - 15), date!(2024 - 09 - 17)),
    (date!(2024 - 10 - 01), date!(2024 - 10 - 07)),
    (date!(2025 - 01 - 01), date!(2025 - 01 - 01)),
    (date!(2025 - 01 - 28), date!(2025 - 02 - 04)),
    (date!(2025 - 04 - 04), date!(2025 - 04 - 06)),
    (date!(2025 - 05 - 01), date!(2025 - 05 - 05)),
    (date!(2025 - 05 - 31), date!(2025 - 06 - 02)),
    (date!(2025 - 10 - 01), date!(2025 - 10 - 08)),
    (date!(2026 - 01 - 01), date!(2026 - 01 - 03)),
    (date!(2026 - 02 - 15), date!(2026 - 02 - 23)),
    (date!(2026 - 04 - 04), date!(2026 - 04 - 06)),
    (date!(2026 - 05 - 01), date!(2026 - 05 - 05)),
    (date!(2026 - 06 - 19), date!(2026 - 06 - 21)),
    (date!(2026 - 09 - 25), date!(2026 - 09 - 27)),
    (date!(2026 - 10 - 01), date!(2026 - 10 - 07)),
];

const MAKE_UP: &[Date] = &[
    date!(2024 - 02 - 04),
    date!(2024 - 02 - 18),
    date!(2024 - 04 - 07),
    date!(2024 - 04 - 28),
    date!(2024 - 05 - 11),
    date!(2024 - 09 - 14),
    date!(2024 - 09 - 29),
    date!(2024 - 10 - 12),
    date!(2025 - 01 - 26),
    date!(2025 - 02 - 08),
    date!(2025 - 04 - 27),
    date!(2025 - 09 - 28),
    date!(2025 - 10 - 11),
    date!(2026 - 01 - 04),
    date!(2026 - 02 - 14),
    date!(2026 - 02 - 28),
    date!(2026 - 05 - 09),
    date!(2026 - 09 - 20),
    date!(2026 - 10 - 10),
];

#[test]
fn every_day_of_every_holiday_block_is_rest() {
    let cal = cal();
    for (from, to) in HOLIDAYS {
        for d in each_day(*from, *to) {
            assert_eq!(cal.is_working_day(d), Ok(false), "{d} is a holiday");
        }
    }
}

#[test]
fn every_make_up_day_is_working() {
    let cal = cal();
    for d in MAKE_UP {
        assert!(
            matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday),
            "{d} is a weekend day"
        );
        assert_eq!(
            cal.is_working_day(*d),
            Ok(true),
            "{d} is a make-up working day"
        );
    }
}

#[test]
fn ordinary_days() {
    let cal = cal();
    assert_eq!(
        cal.is_working_day(date!(2025 - 03 - 12)),
        Ok(true),
        "a Wednesday"
    );
    assert_eq!(
        cal.is_working_day(date!(2025 - 03 - 15)),
        Ok(false),
        "a Saturday"
    );
    assert_eq!(
        cal.is_working_day(date!(2025 - 03 - 16)),
        Ok(false),
        "a Sunday"
    );
    assert_eq!(
        cal.is_working_day(date!(2026 - 11 - 24)),
        Ok(true),
        "a Tuesday"
    );
}

#[test]
fn deadline_across_a_plain_weekend() {
    // Found Friday 14 March 2025: Mon 17, Tue 18, Wed 19.
    assert_eq!(
        cal().deadline(datetime!(2025-03-14 10:00 +08:00), 3),
        Ok(datetime!(2025-03-19 23:59:59 +08:00))
    );
}

#[test]
fn deadline_across_a_make_up_sunday() {
    // Found Friday 26 September 2025: Sun 28 is a make-up working day, then Mon 29, Tue 30.
    assert_eq!(
        cal().deadline(datetime!(2025-09-26 16:30 +08:00), 3),
        Ok(datetime!(2025-09-30 23:59:59 +08:00))
    );
}

#[test]
fn deadline_across_spring_festival() {
    // Found Monday 27 January 2025: Jan 28-Feb 4 is the holiday; Wed 5, Thu 6, Fri 7 February.
    assert_eq!(
        cal().deadline(datetime!(2025-01-27 09:00 +08:00), 3),
        Ok(datetime!(2025-02-07 23:59:59 +08:00))
    );
    // Found on the holiday's last day: Wed 5, Thu 6, Fri 7; four days reach the make-up Saturday 8.
    assert_eq!(
        cal().deadline(datetime!(2025-02-04 09:00 +08:00), 4),
        Ok(datetime!(2025-02-08 23:59:59 +08:00))
    );
    // 2026: found Friday 13 February; Sat 14 is a make-up day, 15-23 the holiday, then Tue 24 and Wed 25.
    assert_eq!(
        cal().deadline(datetime!(2026-02-13 11:00 +08:00), 3),
        Ok(datetime!(2026-02-25 23:59:59 +08:00))
    );
}

#[test]
fn deadline_across_national_day() {
    // Found Tuesday 30 September 2025: Oct 1-8 holiday; Thu 9, Fri 10, make-up Sat 11.
    assert_eq!(
        cal().deadline(datetime!(2025-09-30 18:00 +08:00), 3),
        Ok(datetime!(2025-10-11 23:59:59 +08:00))
    );
    // 2024: found Monday 30 September: Oct 1-7 holiday; Tue 8, Wed 9, Thu 10.
    assert_eq!(
        cal().deadline(datetime!(2024-09-30 10:00 +08:00), 3),
        Ok(datetime!(2024-10-10 23:59:59 +08:00))
    );
}

#[test]
fn the_day_found_is_counted_in_china_time() {
    // 17:00 UTC on Thursday 13 March is 01:00 on Friday 14 March in China.
    assert_eq!(
        cal().deadline(datetime!(2025-03-13 17:00 UTC), 3),
        Ok(datetime!(2025-03-19 23:59:59 +08:00))
    );
    assert_eq!(
        cal().deadline(datetime!(2025-03-13 15:59 UTC), 3),
        Ok(datetime!(2025-03-18 23:59:59 +08:00))
    );
}

#[test]
fn outside_the_known_years_is_an_error_never_a_guess() {
    let cal = cal();
    assert!(cal
        .is_working_day(date!(2023 - 12 - 29))
        .unwrap_err()
        .is_outside_known_years());
    assert!(cal
        .deadline(datetime!(2023-12-29 10:00 +08:00), 3)
        .unwrap_err()
        .is_outside_known_years());
    // Counting runs into 2027, which is not known.
    assert!(cal
        .deadline(datetime!(2026-12-30 10:00 +08:00), 3)
        .unwrap_err()
        .is_outside_known_years());
}

#[test]
fn working_days_left() {
    let cal = cal();
    let deadline = datetime!(2025-03-19 23:59:59 +08:00);
    assert_eq!(
        cal.working_days_left(datetime!(2025-03-14 10:00 +08:00), deadline),
        Ok(3)
    );
    assert_eq!(
        cal.working_days_left(datetime!(2025-03-18 10:00 +08:00), deadline),
        Ok(1)
    );
    assert_eq!(
        cal.working_days_left(datetime!(2025-03-19 10:00 +08:00), deadline),
        Ok(0)
    );
}

#[test]
fn file_problems_are_all_reported() {
    let files = vec![
        ("2025.toml".to_string(), "year = 2025\nholidays = [{ name = \"x\", from = 2024-12-31, to = 2025-01-01 }]\nmake_up_working_days = [2025-03-12]\n".to_string()),
        ("2027.toml".to_string(), "year = 2027\n".to_string()),
        ("2028.toml".to_string(), "year = 2028\nbogus = 1\n".to_string()),
    ];
    let errs = Calendar::from_sources(&files).unwrap_err();
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter().any(|t| t.contains("must lie within 2025")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|t| t.contains("not a weekend day")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("2026.toml") && t.contains("contiguous")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|t| t.contains("2028.toml")),
        "malformed file: {text:?}"
    );
}

#[test]
fn days_left_count_to_the_last_known_day() {
    let c = cal();
    assert_eq!(c.days_left_from(date!(2026 - 12 - 31)), 0);
    assert_eq!(c.days_left_from(date!(2026 - 11 - 25)), 36);
    assert_eq!(c.days_left_from(date!(2027 - 01 - 02)), -2);
    let shared = SharedCalendar::new(c);
    let only_2024 = Calendar::from_sources(&[(
        "2024.toml".into(),
        std::fs::read_to_string(concat!(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
            "/mappings/calendar/2024.toml"
        ))
        .unwrap(),
    )])
    .unwrap();
    shared.replace(only_2024);
    assert_eq!(shared.current().known_years(), 2024..=2024);
}

fn only_2024() -> Calendar {
    Calendar::from_sources(&[(
        "2024.toml".into(),
        std::fs::read_to_string(concat!(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
            "/mappings/calendar/2024.toml"
        ))
        .unwrap(),
    )])
    .unwrap()
}

/// The make-up Saturday after Spring Festival 2025: on the real file the third working day after
/// 2025-02-05 is Saturday 2025-02-08; a weekdays-only count would say Monday 2025-02-10, too late
/// for the gateway's own duty. The never-later estimate (2024 known only) is not later.
#[test]
fn never_later_beats_a_make_up_saturday_gd_art_31() {
    let found = datetime!(2025-02-05 10:00 +08:00);
    let truth = cal().deadline(found, 3).unwrap();
    assert_eq!(truth, datetime!(2025-02-08 23:59:59 +08:00));
    let mut weekdays_only = date!(2025 - 02 - 05);
    for _ in 0..3 {
        weekdays_only = weekdays_only.next_day().unwrap();
        while is_weekend(weekdays_only) {
            weekdays_only = weekdays_only.next_day().unwrap();
        }
    }
    assert_eq!(
        weekdays_only,
        date!(2025 - 02 - 10),
        "weekdays only is later"
    );
    let est = only_2024()
        .deadline_estimated(found, 3, Estimate::NeverLater)
        .unwrap();
    assert!(est.provisional);
    assert!(est.at <= truth, "{} must not be later than {truth}", est.at);
    let exact = cal()
        .deadline_estimated(found, 3, Estimate::NeverLater)
        .unwrap();
    assert_eq!(
        exact,
        Deadline {
            at: truth,
            provisional: false
        }
    );
}

/// Every start day of the shipped years and every count up to 30 working days: as if no year
/// were known from the start day on, the never-later estimate is never later and the
/// never-earlier one never earlier than the real calendar (LS Art. 23 review, LS Art. 21 window).
#[test]
fn estimates_err_in_their_direction_on_every_shipped_day_ls_art_21_ls_art_23() {
    let c = cal();
    for d in each_day(date!(2024 - 01 - 01), date!(2026 - 12 - 31)) {
        for n in [1, 2, 3, 5, 10, 15, 20, 30] {
            let Ok(truth) = c.nth_working_day_after(d, n) else {
                continue;
            };
            let early = estimate_after(d, n, Estimate::NeverLater).unwrap();
            let late = estimate_after(d, n, Estimate::NeverEarlier).unwrap();
            assert!(early <= truth, "{d} +{n}: {early} later than {truth}");
            assert!(late >= truth, "{d} +{n}: {late} earlier than {truth}");
        }
    }
}

/// A count from 2026-12-29 runs into 2027: estimated, marked, never an error (issue #26).
#[test]
fn past_the_last_year_is_provisional_never_refused_gd_art_31_ls_art_21() {
    let c = cal();
    let at = datetime!(2026-12-29 10:00 +08:00);
    // 30 and 31 December are known working days; the third day is estimated.
    assert_eq!(
        c.deadline_estimated(at, 3, Estimate::NeverLater).unwrap(),
        Deadline {
            at: datetime!(2027-01-01 23:59:59 +08:00),
            provisional: true
        }
    );
    // 8 weekdays past 2026 plus a margin of 8: the 16th weekday after 2026-12-31.
    assert_eq!(
        c.nth_working_day_after_estimated(date!(2026 - 12 - 29), 10, Estimate::NeverEarlier)
            .unwrap(),
        (date!(2027 - 01 - 22), true)
    );
    // Within the known years nothing changes.
    assert_eq!(
        c.nth_working_day_after_estimated(date!(2026 - 12 - 28), 3, Estimate::NeverEarlier)
            .unwrap(),
        (date!(2026 - 12 - 31), false)
    );
    // Before the first known year is still an error.
    assert!(c
        .deadline_estimated(datetime!(2023-12-29 10:00 +08:00), 3, Estimate::NeverLater)
        .unwrap_err()
        .is_outside_known_years());
    // Days left to a provisional deadline count weekdays past the known years.
    assert_eq!(
        c.working_days_left(at, datetime!(2027-01-05 23:59:59 +08:00)),
        Ok(5)
    );
}
