//! The public-notice and retention rules file (`mappings/rules/public-notice.toml`): notice periods
//! by severity with effective dates and regions, severity rules, retention of dishonesty records.
//!
//! Owns: parsing the file, choosing the period in force for a record (by its decision date and
//! region), classing a record's severity, and the two instants that follow: the end of its public
//! notice and the end of its retention.
//!
//! Never does: decide channels or destinations (that is `sharing`), or read the clock: every
//! answer is a pure function of the record and the file. When and where a period or a retention
//! rule governs is [`crate::rule_window`]'s: a period is the most specific in force on the
//! decision date (`rule_window::select`), a retention rule the first of the file that governs.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Date, OffsetDateTime, Time};

use crate::calendar::CHINA_OFFSET;
use crate::record::{CanonicalRecord, Category};
// `Window` here is the public-notice window of a record; a rule's dated window is `RuleWindow`.
use crate::rule_window::{self, Dated, Window as RuleWindow};

/// A rules file problem: the operator's to fix.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct NoticeRulesError {
    pub path: String,
    pub message: String,
}

/// Severity of dishonest conduct (national credit-repair measures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Minor,
    General,
    Serious,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "minor" | "轻微" => Some(Self::Minor),
            "general" | "一般" => Some(Self::General),
            "serious" | "严重" => Some(Self::Serious),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Minor => "minor",
            Self::General => "general",
            Self::Serious => "serious",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    pub min_months: u32,
    pub max_months: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub name: String,
    #[serde(default)]
    pub source: String,
    #[serde(deserialize_with = "crate::calendar::deserialize_toml_date")]
    pub effective_from: Date,
    #[serde(
        default,
        deserialize_with = "crate::calendar::deserialize_toml_date_opt"
    )]
    pub effective_until: Option<Date>,
    #[serde(default)]
    pub regions: Vec<String>,
    pub categories: Vec<Category>,
    /// Administrative records count only when they are penalties (`content.action = "penalty"`):
    /// notice periods govern dishonesty information, not licences.
    #[serde(default)]
    pub penalties_only: bool,
    pub minor: Bounds,
    pub general: Bounds,
    pub serious: Bounds,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityRule {
    pub name: String,
    #[serde(default)]
    pub source: String,
    pub categories: Vec<Category>,
    /// Matches when every penalty type of the record is in this list.
    #[serde(default)]
    pub penalty_types_only: Vec<String>,
    /// Matches when any penalty type of the record is in this list.
    #[serde(default)]
    pub penalty_types_any: Vec<String>,
    /// Matches when `content.list_name` contains any of these.
    #[serde(default)]
    pub list_name_contains: Vec<String>,
    /// Matches when the fine (`content.fine_yuan`, 元) is at least this much.
    #[serde(default)]
    pub min_fine_yuan: Option<u64>,
    pub severity: Severity,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub name: String,
    #[serde(default)]
    pub source: String,
    pub categories: Vec<Category>,
    #[serde(default)]
    pub penalties_only: bool,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(
        default,
        deserialize_with = "crate::calendar::deserialize_toml_date_opt"
    )]
    pub effective_from: Option<Date>,
    #[serde(
        default,
        deserialize_with = "crate::calendar::deserialize_toml_date_opt"
    )]
    pub effective_until: Option<Date>,
    pub years: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeRules {
    pub default_severity: Severity,
    #[serde(default)]
    pub periods: Vec<Period>,
    #[serde(default)]
    pub severity: Vec<SeverityRule>,
    #[serde(default)]
    pub retention: Vec<Retention>,
}

/// The period a window names when no period was in force on the record's decision date.
pub const GAP_PERIOD: &str = "no-period-in-force: the longest known, the source's end honoured";

/// The public-notice window of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    pub period: String,
    pub severity: Severity,
    /// First instant of notice: 00:00 +08:00 of the decision date.
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    /// First instant the record is no longer noticed; equal to `from` when never noticed.
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    /// First instant after the minimum period of its severity: credit repair may be applied for
    /// from then on (national credit-repair measures).
    #[serde(with = "time::serde::rfc3339")]
    pub minimum_until: OffsetDateTime,
}

/// The shipped rules, used when the configured file does not exist.
pub const BUILTIN: &str = include_str!("../../../../mappings/rules/public-notice.toml");

impl NoticeRules {
    pub fn parse(path: &str, text: &str) -> Result<Self, NoticeRulesError> {
        let err = |message: String| NoticeRulesError {
            path: path.to_string(),
            message,
        };
        let rules: NoticeRules = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        for p in &rules.periods {
            for b in [p.minor, p.general, p.serious] {
                if b.min_months > b.max_months && b.max_months != 0 {
                    return Err(err(format!(
                        "period {:?}: min_months {} is above max_months {}",
                        p.name, b.min_months, b.max_months
                    )));
                }
            }
            if let Err(e) = p.window().check_dates() {
                return Err(err(format!("period {:?}: {e}", p.name)));
            }
            if let Some(r) = p.window().bad_region() {
                return Err(err(format!(
                    "period {:?}: region {r:?} is not 1-6 digits",
                    p.name
                )));
            }
        }
        Ok(rules)
    }

    /// The file when it exists, else the built-in copy.
    pub fn load(path: &Path) -> Result<Self, NoticeRulesError> {
        if !path.exists() {
            return Self::parse("built-in public-notice.toml", BUILTIN);
        }
        let text = std::fs::read_to_string(path).map_err(|e| NoticeRulesError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    pub fn builtin() -> Result<Self, NoticeRulesError> {
        Self::parse("built-in public-notice.toml", BUILTIN)
    }

    /// The severity of a record: the source's own (`content.severity`) when it gives one, else the
    /// first matching rule, else the default.
    pub fn severity_of(&self, record: &CanonicalRecord) -> Severity {
        if let Some(s) = record
            .content
            .get("severity")
            .and_then(Value::as_str)
            .and_then(Severity::parse)
        {
            return s;
        }
        let types = penalty_types(record);
        let list_name = record
            .content
            .get("list_name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let fine = record.content.get("fine_yuan").and_then(|v| match v {
            Value::String(s) => s.trim().parse::<f64>().ok(),
            Value::Number(n) => n.as_f64(),
            _ => None,
        });
        self.severity
            .iter()
            .find(|rule| {
                rule.categories.contains(&record.category)
                    && (rule.penalty_types_only.is_empty()
                        || (!types.is_empty()
                            && types
                                .iter()
                                .all(|t| rule.penalty_types_only.iter().any(|o| o == t))))
                    && (rule.penalty_types_any.is_empty()
                        || types
                            .iter()
                            .any(|t| rule.penalty_types_any.iter().any(|o| o == t)))
                    && (rule.list_name_contains.is_empty()
                        || rule
                            .list_name_contains
                            .iter()
                            .any(|c| list_name.contains(c.as_str())))
                    && rule
                        .min_fine_yuan
                        .is_none_or(|min| fine.is_some_and(|f| f >= min as f64))
            })
            .map(|rule| rule.severity)
            .unwrap_or(self.default_severity)
    }

    /// The public-notice window of a record, or `None` when no period governs it (its category
    /// has no notice period, or it has no decision date).
    pub fn window(&self, record: &CanonicalRecord) -> Option<Window> {
        let decided = decision_date(record)?;
        let region = record.source.region.as_str();
        let governing = rule_window::select(
            self.periods
                .iter()
                .filter(|p| p.categories.contains(&record.category))
                .filter(|p| !p.penalties_only || is_dishonesty(record)),
            region,
            decided,
        );
        let Some(period) = governing else {
            return self.gap_window(record, decided);
        };
        let severity = self.severity_of(record);
        let bounds = match severity {
            Severity::Minor => period.minor,
            Severity::General => period.general,
            Severity::Serious => period.serious,
        };
        let from = start_of(decided);
        if bounds.max_months == 0 {
            return Some(Window {
                period: period.name.clone(),
                severity,
                from,
                until: from,
                minimum_until: from,
            });
        }
        let earliest = add_months(decided, bounds.min_months);
        let latest = add_months(decided, bounds.max_months);
        let last_day = match source_notice_end(record) {
            Some(end) => end.clamp(earliest, latest),
            None => latest,
        };
        Some(Window {
            period: period.name.clone(),
            severity,
            from,
            until: start_of(last_day.next_day().unwrap_or(last_day)),
            minimum_until: start_of(earliest),
        })
    }

    /// A record of a category that has notice periods, decided when none was in force (before
    /// the first, between two, or in a region none names): issue #26 found a 2019 penalty
    /// noticed with no end. The safe default: no minimum, the source's own end date honoured,
    /// and never past the longest period any known regime allows for its severity, counted from
    /// its decision date. `None` when no period of any date governs its category.
    fn gap_window(&self, record: &CanonicalRecord, decided: Date) -> Option<Window> {
        let severity = self.severity_of(record);
        let longest = self
            .periods
            .iter()
            .filter(|p| p.categories.contains(&record.category))
            .filter(|p| !p.penalties_only || is_dishonesty(record))
            .map(|p| match severity {
                Severity::Minor => p.minor.max_months,
                Severity::General => p.general.max_months,
                Severity::Serious => p.serious.max_months,
            })
            .max()?;
        let from = start_of(decided);
        let latest = add_months(decided, longest);
        let last_day = match source_notice_end(record) {
            Some(end) => end.min(latest),
            None => latest,
        };
        let until = if longest == 0 {
            from
        } else {
            start_of(last_day.next_day().unwrap_or(last_day)).max(from)
        };
        Some(Window {
            period: GAP_PERIOD.to_string(),
            severity,
            from,
            until,
            minimum_until: from,
        })
    }

    /// The first instant a record no longer counts and is no longer shared anywhere (LS Art. 20),
    /// or `None` when no retention rule governs it.
    pub fn retention_end(&self, record: &CanonicalRecord) -> Option<OffsetDateTime> {
        let decided = decision_date(record)?;
        // The first rule of the file that governs, not the most specific one: retention rules
        // have always been read in file order (see `rule_window`).
        let rule = self.retention.iter().find(|r| {
            r.categories.contains(&record.category)
                && (!r.penalties_only || is_dishonesty(record))
                && r.window().governs(record.source.region.as_str(), decided)
        })?;
        Some(start_of(add_months(decided, rule.years * 12)))
    }
}

/// The date a record's periods run from: its legal basis's decision date, else `valid_from`.
pub fn decision_date(record: &CanonicalRecord) -> Option<Date> {
    record
        .basis
        .as_ref()
        .map(|b| b.decided_on)
        .or(record.valid_from)
}

/// Dishonesty information: any record of a dishonesty category, and administrative records only
/// when they are penalties.
fn is_dishonesty(record: &CanonicalRecord) -> bool {
    record.category != Category::Administrative
        || record.content.get("action").and_then(Value::as_str) == Some("penalty")
}

fn source_notice_end(record: &CanonicalRecord) -> Option<Date> {
    record
        .content
        .get("notice_until")
        .and_then(Value::as_str)
        .and_then(crate::record::parse_date)
}

fn penalty_types(record: &CanonicalRecord) -> Vec<&str> {
    record
        .content
        .get("penalty_types")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::trim).collect())
        .unwrap_or_default()
}

impl Dated for Period {
    fn window(&self) -> RuleWindow<'_> {
        RuleWindow::new(
            Some(self.effective_from),
            self.effective_until,
            &self.regions,
        )
    }
}

impl Dated for Retention {
    fn window(&self) -> RuleWindow<'_> {
        RuleWindow::new(self.effective_from, self.effective_until, &self.regions)
    }
}

/// 00:00 China time of a date.
pub fn start_of(date: Date) -> OffsetDateTime {
    date.with_time(Time::MIDNIGHT).assume_offset(CHINA_OFFSET)
}

/// Calendar months later, on the same day of the month or the month's last day.
pub fn add_months(date: Date, months: u32) -> Date {
    let total = date.year() as i64 * 12 + (u8::from(date.month()) as i64 - 1) + months as i64;
    let year = total.div_euclid(12) as i32;
    let month =
        time::Month::try_from((total.rem_euclid(12) + 1) as u8).unwrap_or(time::Month::December);
    let last = month.length(year);
    Date::from_calendar_date(year, month, date.day().min(last)).unwrap_or(date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{validate, ValidationContext};
    use serde_json::json;
    use time::macros::{date, datetime};

    fn penalty(region: &str, decided: &str, types: &[&str], extra: Value) -> CanonicalRecord {
        let mut v = json!({
            "category": "administrative",
            "subject": {"kind": "institution", "role": "designated_medical_institution",
                        "id_type": "uscc", "id": "91310110666007217T", "name": "某医院"},
            "source": {"agency": "medical_insurance", "record_id": "r1", "region": region},
            "basis": {"doc_type": "penalty_decision", "doc_number": "罚〔2026〕1号", "decided_on": decided},
            "disclosure": {"class": "public"},
            "content": {"action": "penalty", "authority": "某医保局", "penalty_types": types}
        });
        if let Value::Object(m) = extra {
            for (k, val) in m {
                v["content"][k] = val;
            }
        }
        validate(&v, &ValidationContext::default()).unwrap()
    }

    fn rules() -> NoticeRules {
        NoticeRules::builtin().unwrap()
    }

    #[test]
    fn months_clamp_to_the_end_of_the_month() {
        assert_eq!(add_months(date!(2026 - 01 - 31), 1), date!(2026 - 02 - 28));
        assert_eq!(add_months(date!(2024 - 02 - 29), 12), date!(2025 - 02 - 28));
        assert_eq!(add_months(date!(2026 - 11 - 10), 3), date!(2027 - 02 - 10));
    }

    #[test]
    fn a_general_penalty_is_noticed_one_year_through_the_last_day() {
        let w = rules()
            .window(&penalty("440106", "2026-05-10", &["罚款"], json!({})))
            .unwrap();
        assert_eq!(w.period, "national-2026");
        assert_eq!(w.severity, Severity::General);
        assert_eq!(w.from, datetime!(2026-05-10 00:00 +08:00));
        assert_eq!(w.until, datetime!(2027-05-11 00:00 +08:00));
    }

    #[test]
    fn the_period_in_force_on_the_decision_date_applies() {
        let w = rules()
            .window(&penalty("440106", "2025-05-10", &["罚款"], json!({})))
            .unwrap();
        assert_eq!(w.period, "national-2023-trial");
    }

    #[test]
    fn a_penalty_decided_before_every_period_ends_at_its_own_end_or_the_longest_known() {
        let r = rules();
        // Decided 2019-10-10 with its own notice end 2020-10-10: before the first period
        // (2023-05-01), so no period governs it; its own end is honoured (issue #26).
        let p = penalty(
            "440106",
            "2019-10-10",
            &["罚款"],
            json!({"notice_until": "2020-10-10"}),
        );
        let w = r.window(&p).expect("a window, never an endless notice");
        assert_eq!(w.period, GAP_PERIOD);
        assert_eq!(w.until, start_of(date!(2020 - 10 - 11)));
        // Without its own end: never past the longest period any regime allows for its
        // severity, counted from the decision.
        let p = penalty("440106", "2019-10-10", &["罚款"], json!({}));
        let w = r.window(&p).unwrap();
        let longest = r
            .periods
            .iter()
            .filter(|x| x.categories.contains(&Category::Administrative))
            .map(|x| match w.severity {
                Severity::Minor => x.minor.max_months,
                Severity::General => x.general.max_months,
                Severity::Serious => x.serious.max_months,
            })
            .max()
            .unwrap();
        let end = add_months(date!(2019 - 10 - 10), longest);
        assert_eq!(w.until, start_of(end.next_day().unwrap()));
        assert!(
            w.until < start_of(date!(2024 - 01 - 01)),
            "long over by now"
        );
    }

    #[test]
    fn warnings_are_never_noticed_ls_art_27() {
        let w = rules()
            .window(&penalty("440106", "2026-05-10", &["警告"], json!({})))
            .unwrap();
        assert_eq!(w.severity, Severity::Minor);
        assert_eq!(w.from, w.until);
    }

    #[test]
    fn the_source_end_is_honoured_within_the_bounds() {
        let r = rules();
        // CF_GSJZQ inside [3 months, 1 year]: honoured.
        let w = r
            .window(&penalty(
                "440106",
                "2026-05-10",
                &["罚款"],
                json!({"notice_until": "2026-10-31"}),
            ))
            .unwrap();
        assert_eq!(w.until, datetime!(2026-11-01 00:00 +08:00));
        // Shorter than the minimum: raised to 3 months.
        let w = r
            .window(&penalty(
                "440106",
                "2026-05-10",
                &["罚款"],
                json!({"notice_until": "2026-05-20"}),
            ))
            .unwrap();
        assert_eq!(w.until, datetime!(2026-08-11 00:00 +08:00));
        // Longer than the maximum: cut to 1 year.
        let w = r
            .window(&penalty(
                "440106",
                "2026-05-10",
                &["罚款"],
                json!({"notice_until": "2029-01-01"}),
            ))
            .unwrap();
        assert_eq!(w.until, datetime!(2027-05-11 00:00 +08:00));
    }

    #[test]
    fn lhasa_lists_at_least_six_months_ls_art_27() {
        let w = rules()
            .window(&penalty(
                "540102",
                "2025-03-01",
                &["罚款"],
                json!({"notice_until": "2025-04-01"}),
            ))
            .unwrap();
        assert_eq!(w.period, "lhasa-ls-27");
        assert_eq!(w.until, datetime!(2025-09-02 00:00 +08:00));
    }

    #[test]
    fn source_severity_wins_over_rules() {
        let r = rules();
        let rec = penalty(
            "440106",
            "2026-05-10",
            &["警告"],
            json!({"severity": "serious"}),
        );
        assert_eq!(r.severity_of(&rec), Severity::Serious);
        let rec = penalty("440106", "2026-05-10", &["罚款", "吊销许可证件"], json!({}));
        assert_eq!(r.severity_of(&rec), Severity::Serious);
    }

    #[test]
    fn a_licence_has_no_notice_period() {
        let mut licence = penalty("440106", "2024-05-10", &["罚款"], json!({}));
        licence
            .content
            .insert("action".into(), Value::String("licence".into()));
        assert!(rules().window(&licence).is_none());
    }

    #[test]
    fn a_rule_can_class_by_fine_amount() {
        let text = BUILTIN.to_string()
            + "\n[[severity]]\nname = \"large-fine\"\ncategories = [\"administrative\"]\nmin_fine_yuan = 200000\nseverity = \"serious\"\n";
        let r = NoticeRules::parse("test", &text).unwrap();
        let small = penalty(
            "440106",
            "2026-05-10",
            &["罚款"],
            json!({"fine_yuan": "199999.5"}),
        );
        let large = penalty(
            "440106",
            "2026-05-10",
            &["罚款"],
            json!({"fine_yuan": "200000"}),
        );
        assert_eq!(r.severity_of(&small), Severity::General);
        assert_eq!(r.severity_of(&large), Severity::Serious);
    }

    #[test]
    fn dishonesty_is_retained_three_years_ls_art_20() {
        let end = rules()
            .retention_end(&penalty("540102", "2024-02-01", &["罚款"], json!({})))
            .unwrap();
        assert_eq!(end, datetime!(2027-02-01 00:00 +08:00));
        assert!(
            rules()
                .retention_end(&penalty("440106", "2024-02-01", &["罚款"], json!({})))
                .is_none(),
            "LS Art. 20 is Lhasa's"
        );
    }
}
