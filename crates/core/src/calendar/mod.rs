//! The working-day calendar (GD Art. 31: corrections within three working days).
//!
//! Owns: which days are working days in mainland China, and deadlines counted in working days.
//! Working days are Monday to Friday, minus the public holidays the State Council announces each
//! year, plus its announced make-up working weekends (调休). All days are China time (UTC+08:00).
//!
//! The schedule is data: one file per year (`mappings/calendar/2025.toml`), which an operator adds
//! without a rebuild when the State Council publishes the next year's notice:
//!
//! ```toml
//! year = 2025
//! source = "国务院办公厅关于2025年部分节假日安排的通知（国办发明电〔2024〕12号）"
//! holidays = [ { name = "春节", from = 2025-01-28, to = 2025-02-04 } ]
//! make_up_working_days = [2025-01-26, 2025-02-08]
//! ```
//!
//! Deadline rule: counting starts on the day after the day (China time) the problem was found; the
//! deadline is the end (23:59:59 +08:00) of the N-th working day counted. Source: GD Art. 31
//! ("应当在三个工作日内…更正"), counted as the Chinese administrative practice counts periods in
//! days: the day of the event is not counted.
//!
//! Past the last known year (issue #26: the State Council publishes next year's schedule late in
//! the autumn, and a subject's right to object must not wait for it) a count is *estimated*, never
//! refused, and the result is marked provisional ([`Deadline::provisional`]). The direction of the
//! error is part of the call ([`Estimate`]):
//!
//! - [`Estimate::NeverLater`], for the gateway's own duties (GD Art. 31 correction, LS Art. 23
//!   objection review, LS Art. 40 / GD Art. 37 repair decision): every
//!   calendar day past the known years counts as a working day. A working day is a calendar day,
//!   so the estimate is never later than the truth, whatever the schedule. (Counting weekdays only
//!   could be *later*: a make-up Saturday after a holiday, e.g. 2025-02-08, is a working day a
//!   weekday count skips.)
//! - [`Estimate::NeverEarlier`], for a window others are given (LS Art. 21 filing window, the
//!   evaluation publication hold that waits for it, and a repair's 5-working-day publicity, GD
//!   Art. 37 / LS Art. 40, during which anyone may object: ending it early would shorten it):
//!   weekdays only, plus
//!   [`HOLIDAY_MARGIN_WEEKDAYS`] weekdays for every started [`HOLIDAY_MARGIN_PER`] working days
//!   counted past the known years. Make-up days only make the truth earlier; the margin covers
//!   the weekday holidays of any span (the longest blocks, 元旦 + 春节 or 国庆 + 中秋, take at most 8
//!   weekdays out of such a span in 2024-2026; a unit test checks every start day of the shipped
//!   years).
//!
//! Once the year's file is loaded (SIGHUP), the same call is exact again and the trackers replace
//! provisional deadlines with exact ones.
//!
//! Never does: read the system clock (time always comes in as an argument). A date *before* the
//! first known year is still an error.
//!
//! Invariants: a loaded calendar covers a contiguous range of years; every holiday and make-up day
//! lies in its file's year; make-up days are weekends; no day is both.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::Path;

use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime, Time, UtcOffset, Weekday};

/// What [`exact_writes`] gives: the keys made exact, and their new values.
pub type ExactWrites = (Vec<String>, Vec<(String, Vec<u8>)>);

/// The writes that make the provisional deadlines of stored objects exact (issue #26): for each
/// key, re-read the object and let `make_exact` change only its deadline fields. Nothing is
/// written here: the caller commits the writes through the single writer, with an audit entry,
/// and holds whatever lock the object's writers hold (or the object is written only once, a
/// correction), so no newer state is overwritten. Returns the ids made exact and their writes.
pub fn exact_writes<T>(
    store: &crate::store::Store,
    keys: &[(String, String)],
    make_exact: impl Fn(&mut T) -> bool,
) -> Result<ExactWrites, crate::store::StoreError>
where
    T: serde::de::DeserializeOwned + Serialize,
{
    let mut done = Vec::new();
    let mut writes = Vec::new();
    for (id, key) in keys {
        let Some(mut value) = store.get_json::<T>(key)? else {
            continue;
        };
        if make_exact(&mut value) {
            writes.push((key.clone(), crate::store::to_bytes(&value)));
            done.push(id.clone());
        }
    }
    Ok((done, writes))
}

/// China Standard Time.
pub const CHINA_OFFSET: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

/// Whose fault: a calendar file is the operator's; a date outside the known years is the caller's
/// (or a sign the operator has not added next year's file yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("{date} is outside the known working-day calendar ({first}-{last}); add mappings/calendar/{}.toml from the State Council notice", date.year())]
    OutsideKnownYears { date: Date, first: i32, last: i32 },
    #[error("calendar file {file}: {message}")]
    File { file: String, message: String },
    #[error("no calendar year is known")]
    NoYears,
}

impl CalendarError {
    pub fn is_outside_known_years(&self) -> bool {
        matches!(self, Self::OutsideKnownYears { .. })
    }

    /// The year a deadline needed and the calendar lacks, if that is the error.
    pub fn year_missing(&self) -> Option<YearMissing> {
        match self {
            Self::OutsideKnownYears { date, .. } => Some(YearMissing(date.year())),
            _ => None,
        }
    }

    /// The error as a domain step meets it: a deadline refused for a missing year is counted and
    /// logged for the operator here, once, where the step is refused
    /// (`gateway_calendar_year_missing_total`).
    pub fn counted(self) -> Self {
        if let Some(YearMissing(year)) = self.year_missing() {
            crate::telemetry::events::calendar_year_missing(year);
        }
        self
    }
}

/// A deadline starts in a year *before* the calendar's first (past its last year deadlines are
/// provisional instead, issue #26): nothing was stored, and only the operator can fix it by adding
/// the year, so a retry within seconds cannot help (`Retry-After: 3600`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YearMissing(pub i32);

impl crate::answer::Answer for YearMissing {
    fn status(&self) -> http::StatusCode {
        http::StatusCode::SERVICE_UNAVAILABLE
    }
    fn code(&self) -> &'static str {
        "calendar_year_missing"
    }
    fn message(&self) -> String {
        format!("the gateway's working-day calendar does not cover {}, so no deadline can be set; nothing was stored: check the time sent, or ask the operator to add the year", self.0)
    }
    fn retry(&self) -> bool {
        true
    }
    fn retry_after(&self) -> Option<u64> {
        Some(3600)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YearFile {
    year: i32,
    #[serde(default)]
    source: String,
    #[serde(default)]
    holidays: Vec<HolidayFile>,
    #[serde(default)]
    make_up_working_days: Vec<toml::value::Datetime>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayFile {
    name: String,
    from: toml::value::Datetime,
    to: toml::value::Datetime,
}

/// Warn this many days before the calendar's last known day: the State Council publishes the
/// next year's schedule in the autumn, and deadlines found in late December need it.
pub const COVERAGE_WARNING_DAYS: i64 = 60;

/// Weekdays added to a [`Estimate::NeverEarlier`] count for every started
/// [`HOLIDAY_MARGIN_PER`] working days counted past the known years.
pub const HOLIDAY_MARGIN_WEEKDAYS: u32 = 8;
/// See [`HOLIDAY_MARGIN_WEEKDAYS`].
pub const HOLIDAY_MARGIN_PER: u32 = 30;

/// Which way a count past the known years may err (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimate {
    /// The gateway's own duties: the estimated date is never later than the true one.
    NeverLater,
    /// A subject's window: the estimated date is never earlier than the true one.
    NeverEarlier,
}

/// A deadline, exact or estimated past the known years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: OffsetDateTime,
    /// Counted (partly) past the last known year: an estimate, to be shown as such and replaced
    /// once the year's file is loaded.
    pub provisional: bool,
}

impl Deadline {
    /// What to store beside a provisional deadline to make it exact later; `None` when exact.
    pub fn basis(&self, from: OffsetDateTime, working_days: u32) -> Option<Basis> {
        self.provisional.then_some(Basis { from, working_days })
    }
}

/// What a provisional deadline was counted from (stored beside it, only while provisional), so a
/// tracker can make it exact once the year's file is loaded ([`Calendar::exact`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basis {
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    pub working_days: u32,
}

/// The calendar in force, shared by the API and the correction tracker; replaced whole when the
/// operator reloads the folder (SIGHUP), so a year can be added without a restart.
#[derive(Debug, Clone)]
pub struct SharedCalendar(std::sync::Arc<std::sync::RwLock<std::sync::Arc<Calendar>>>);

impl SharedCalendar {
    pub fn new(calendar: Calendar) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(calendar),
        )))
    }

    pub fn current(&self) -> std::sync::Arc<Calendar> {
        self.0
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn replace(&self, calendar: Calendar) {
        let calendar = std::sync::Arc::new(calendar);
        match self.0.write() {
            Ok(mut c) => *c = calendar,
            Err(p) => *p.into_inner() = calendar,
        }
    }
}

/// The working-day calendar of the known years.
#[derive(Debug, Clone)]
pub struct Calendar {
    years: RangeInclusive<i32>,
    holidays: BTreeSet<Date>,
    make_up: BTreeSet<Date>,
    sources: BTreeMap<i32, String>,
}

const BUILTIN: [(&str, &str); 3] = [
    (
        "2024.toml",
        include_str!("../../../../mappings/calendar/2024.toml"),
    ),
    (
        "2025.toml",
        include_str!("../../../../mappings/calendar/2025.toml"),
    ),
    (
        "2026.toml",
        include_str!("../../../../mappings/calendar/2026.toml"),
    ),
];

impl Calendar {
    /// The shipped years (2024-2026).
    pub fn builtin() -> Result<Calendar, CalendarError> {
        let files: Vec<(String, String)> = BUILTIN
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        Self::from_sources(&files).map_err(|mut errs| errs.remove(0))
    }

    /// Every `YYYY.toml` in `dir`; every problem reported.
    pub fn load_dir(dir: &Path) -> Result<Calendar, Vec<CalendarError>> {
        let file_err = |file: String, message: String| vec![CalendarError::File { file, message }];
        let entries = std::fs::read_dir(dir)
            .map_err(|e| file_err(dir.display().to_string(), e.to_string()))?;
        let mut files = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| file_err(path.display().to_string(), e.to_string()))?;
            files.push((name, text));
        }
        Self::from_sources(&files)
    }

    pub fn from_sources(files: &[(String, String)]) -> Result<Calendar, Vec<CalendarError>> {
        let mut errors = Vec::new();
        let mut holidays = BTreeSet::new();
        let mut make_up = BTreeSet::new();
        let mut sources = BTreeMap::new();
        for (name, text) in files {
            let mut problem = |message: String| {
                errors.push(CalendarError::File {
                    file: name.clone(),
                    message,
                })
            };
            let file: YearFile = match toml::from_str(text) {
                Ok(f) => f,
                Err(e) => {
                    problem(e.to_string());
                    continue;
                }
            };
            if name.trim_end_matches(".toml") != file.year.to_string() {
                problem(format!("year = {} does not match the file name", file.year));
            }
            if sources.insert(file.year, file.source.clone()).is_some() {
                problem(format!("year {} appears twice", file.year));
            }
            for h in &file.holidays {
                let (Some(from), Some(to)) = (to_date(&h.from), to_date(&h.to)) else {
                    problem(format!(
                        "holiday {:?}: from and to must be dates (YYYY-MM-DD)",
                        h.name
                    ));
                    continue;
                };
                if from.year() != file.year || to.year() != file.year || to < from {
                    problem(format!(
                        "holiday {:?}: {from}..{to} must lie within {} and end after it starts",
                        h.name, file.year
                    ));
                    continue;
                }
                let mut d = from;
                loop {
                    holidays.insert(d);
                    match d.next_day() {
                        Some(next) if d < to => d = next,
                        _ => break,
                    }
                }
            }
            for raw in &file.make_up_working_days {
                let Some(d) = to_date(raw) else {
                    problem(format!("make-up day {raw} must be a date"));
                    continue;
                };
                if d.year() != file.year {
                    problem(format!("make-up day {d} is outside {}", file.year));
                } else if !is_weekend(d) {
                    problem(format!(
                        "make-up day {d} is a {}, not a weekend day",
                        d.weekday()
                    ));
                } else {
                    make_up.insert(d);
                }
            }
        }
        for d in holidays.intersection(&make_up) {
            errors.push(CalendarError::File {
                file: format!("{}.toml", d.year()),
                message: format!("{d} is both a holiday and a make-up working day"),
            });
        }
        let (Some(first), Some(last)) = (
            sources.keys().next().copied(),
            sources.keys().next_back().copied(),
        ) else {
            errors.push(CalendarError::NoYears);
            return Err(errors);
        };
        for year in first..=last {
            if !sources.contains_key(&year) {
                errors.push(CalendarError::File {
                    file: format!("{year}.toml"),
                    message: format!(
                        "missing: the known years must be contiguous ({first}-{last})"
                    ),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Calendar {
            years: first..=last,
            holidays,
            make_up,
            sources,
        })
    }

    pub fn known_years(&self) -> RangeInclusive<i32> {
        self.years.clone()
    }

    /// Whole days from `today` to the last day the calendar knows (31 December of its last year);
    /// negative once past it. A deadline needs the days after the day a problem was found, so the
    /// next year's file must be in place before the last days of December.
    pub fn days_left_from(&self, today: Date) -> i64 {
        Date::from_calendar_date(*self.years.end(), time::Month::December, 31)
            .map(|last| (last - today).whole_days())
            .unwrap_or(0)
    }

    /// From [`COVERAGE_WARNING_DAYS`] before the last known day: which file to add, and that
    /// deadlines past the last known year are provisional (start-up and daily warning, `/readyz`).
    pub fn coverage_note(&self, today: Date) -> Option<String> {
        let left = self.days_left_from(today);
        let last = *self.years.end();
        (left < COVERAGE_WARNING_DAYS).then(|| {
            format!(
                "the working-day calendar ends {last}-12-31 ({left} days left): add mappings/calendar/{}.toml from the State Council notice and send SIGHUP; deadlines counted past {last}-12-31 are provisional (estimated, marked, made exact once the file is loaded)",
                last + 1
            )
        })
    }

    /// The notice each year's schedule comes from.
    pub fn source(&self, year: i32) -> Option<&str> {
        self.sources.get(&year).map(String::as_str)
    }

    pub fn is_working_day(&self, date: Date) -> Result<bool, CalendarError> {
        if !self.years.contains(&date.year()) {
            return Err(CalendarError::OutsideKnownYears {
                date,
                first: *self.years.start(),
                last: *self.years.end(),
            });
        }
        Ok(self.make_up.contains(&date) || (!is_weekend(date) && !self.holidays.contains(&date)))
    }

    /// The n-th working day after `date` (not counting `date` itself); `date` when n is 0.
    pub fn nth_working_day_after(&self, date: Date, n: u32) -> Result<Date, CalendarError> {
        let mut day = date;
        let mut counted = 0;
        while counted < n {
            day = day.next_day().ok_or(CalendarError::OutsideKnownYears {
                date: day,
                first: *self.years.start(),
                last: *self.years.end(),
            })?;
            if self.is_working_day(day)? {
                counted += 1;
            }
        }
        Ok(day)
    }

    /// The n-th working day after `date`, estimated past the known years in the direction
    /// `estimate`; `true` when estimated (provisional). An error only when `date` lies before the
    /// first known year.
    pub fn nth_working_day_after_estimated(
        &self,
        date: Date,
        n: u32,
        estimate: Estimate,
    ) -> Result<(Date, bool), CalendarError> {
        if date.year() < *self.years.start() {
            return Err(self.outside(date));
        }
        let mut day = date;
        let mut counted = 0;
        while counted < n {
            let Some(next) = day.next_day() else {
                return Err(self.outside(day));
            };
            if next.year() > *self.years.end() {
                break;
            }
            day = next;
            if self.is_working_day(day)? {
                counted += 1;
            }
        }
        if counted == n {
            return Ok((day, false));
        }
        let estimated =
            estimate_after(day, n - counted, estimate).ok_or_else(|| self.outside(day))?;
        Ok((estimated, true))
    }

    /// [`Self::deadline`], estimated past the known years in the direction `estimate`.
    pub fn deadline_estimated(
        &self,
        found_at: OffsetDateTime,
        working_days: u32,
        estimate: Estimate,
    ) -> Result<Deadline, CalendarError> {
        let found_day = found_at.to_offset(CHINA_OFFSET).date();
        let (last_day, provisional) =
            self.nth_working_day_after_estimated(found_day, working_days, estimate)?;
        Ok(Deadline {
            at: last_day.with_time(end_of_day()).assume_offset(CHINA_OFFSET),
            provisional,
        })
    }

    /// The exact deadline of a provisional one, once this calendar covers it; `None` while it
    /// would still be an estimate.
    pub fn exact(&self, basis: &Basis) -> Option<OffsetDateTime> {
        self.deadline_estimated(basis.from, basis.working_days, Estimate::NeverLater)
            .ok()
            .filter(|d| !d.provisional)
            .map(|d| d.at)
    }

    fn outside(&self, date: Date) -> CalendarError {
        CalendarError::OutsideKnownYears {
            date,
            first: *self.years.start(),
            last: *self.years.end(),
        }
    }

    /// 23:59:59 +08:00 of the `working_days`-th working day after the China date of `found_at`.
    pub fn deadline(
        &self,
        found_at: OffsetDateTime,
        working_days: u32,
    ) -> Result<OffsetDateTime, CalendarError> {
        let found_day = found_at.to_offset(CHINA_OFFSET).date();
        if !self.years.contains(&found_day.year()) {
            return Err(CalendarError::OutsideKnownYears {
                date: found_day,
                first: *self.years.start(),
                last: *self.years.end(),
            });
        }
        let last_day = self.nth_working_day_after(found_day, working_days)?;
        Ok(last_day.with_time(end_of_day()).assume_offset(CHINA_OFFSET))
    }

    /// Working days strictly after `now`'s China date up to and including the deadline's date; 0
    /// when the deadline is today or past. Days past the known years count when they are weekdays
    /// (a display and warning figure for provisional deadlines, not a deadline).
    pub fn working_days_left(
        &self,
        now: OffsetDateTime,
        deadline: OffsetDateTime,
    ) -> Result<u32, CalendarError> {
        let today = now.to_offset(CHINA_OFFSET).date();
        let last = deadline.to_offset(CHINA_OFFSET).date();
        let mut n = 0;
        let mut day = today;
        while day < last {
            day += Duration::days(1);
            if day.year() > *self.years.end() {
                if !is_weekend(day) {
                    n += 1;
                }
            } else if self.is_working_day(day)? {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The n-th day after `day` by the estimate's rule alone, as if no year were known (see the
/// module doc); `None` past the end of `time`'s dates.
fn estimate_after(day: Date, n: u32, estimate: Estimate) -> Option<Date> {
    match estimate {
        Estimate::NeverLater => day.checked_add(Duration::days(i64::from(n))),
        Estimate::NeverEarlier => {
            let margin = n.div_ceil(HOLIDAY_MARGIN_PER) * HOLIDAY_MARGIN_WEEKDAYS;
            let mut left = n + margin;
            let mut d = day;
            while left > 0 {
                d = d.next_day()?;
                if !is_weekend(d) {
                    left -= 1;
                }
            }
            Some(d)
        }
    }
}

fn end_of_day() -> Time {
    Time::from_hms(23, 59, 59).unwrap_or(Time::MIDNIGHT)
}

fn is_weekend(d: Date) -> bool {
    matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
}

fn to_date(dt: &toml::value::Datetime) -> Option<Date> {
    if dt.time.is_some() || dt.offset.is_some() {
        return None;
    }
    let d = dt.date?;
    Date::from_calendar_date(d.year as i32, time::Month::try_from(d.month).ok()?, d.day).ok()
}

/// A TOML local date (`effective_from = 2026-04-01`) as a [`Date`], for rules files' serde.
pub fn deserialize_toml_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
    let dt = toml::value::Datetime::deserialize(d)?;
    to_date(&dt).ok_or_else(|| serde::de::Error::custom("expected a date such as 2026-04-01"))
}

/// [`deserialize_toml_date`] for an optional field (use with `#[serde(default)]`).
pub fn deserialize_toml_date_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Date>, D::Error> {
    deserialize_toml_date(d).map(Some)
}

#[cfg(test)]
mod tests;
