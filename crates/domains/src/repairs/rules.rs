//! The repair rules file (`mappings/rules/repair.toml`): decision and publicity periods (LS Art.
//! 40; GD Art. 37) and the eligibility rules (LS Arts. 38, 40, 41; the national measures), each
//! refusal naming its rule and article. `false_materials_years` is LS Art. 41 whole: false
//! materials found in a decision and a commitment found broken after a completed repair each bar
//! repair for its `years`. Every eligibility rule whose window ([`crate::rule_window`]) governs
//! the record's region on its decision date applies.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use time::{Date, OffsetDateTime};

use super::{Refusal, Repair};
use crate::lifecycle::notice::{add_months, start_of, NoticeRules};
use crate::record::CanonicalRecord;
use crate::rule_window::{Dated, Window};

/// A rules file problem: the operator's to fix.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RepairRulesError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairRules {
    pub decision_working_days: u32,
    pub max_decision_working_days: u32,
    pub publicity_working_days: u32,
    #[serde(default)]
    pub rule: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    MonthsSinceDecision,
    NoSameTypeWithinMonths,
    RepeatAfterRepair,
    FalseMaterialsYears,
    MinimumNoticePeriod,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub article: String,
    pub kind: RuleKind,
    #[serde(default)]
    pub months: Option<u32>,
    #[serde(default)]
    pub years: Option<u32>,
    /// Region prefixes of the record; empty: everywhere.
    #[serde(default)]
    pub regions: Vec<String>,
    /// The rule governs records decided within these dates (the rules in force for its dates).
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
}

/// The shipped rules, used when the configured file does not exist.
pub const BUILTIN: &str = include_str!("../../../../mappings/rules/repair.toml");

/// Another dishonesty record of the same subject, as eligibility needs it.
#[derive(Debug, Clone)]
pub struct Past {
    pub record_id: String,
    pub kind: String,
    pub decided: Date,
}

impl RepairRules {
    pub fn parse(path: &str, text: &str) -> Result<Self, RepairRulesError> {
        let rules: Self = toml::from_str(text).map_err(|e| RepairRulesError {
            path: path.into(),
            message: e.to_string(),
        })?;
        for r in &rules.rule {
            let needs_months = matches!(
                r.kind,
                RuleKind::MonthsSinceDecision | RuleKind::NoSameTypeWithinMonths
            );
            if (needs_months && r.months.is_none())
                || (r.kind == RuleKind::FalseMaterialsYears && r.years.is_none())
            {
                return Err(RepairRulesError {
                    path: path.into(),
                    message: format!("rule {:?} needs its months or years", r.name),
                });
            }
        }
        if rules.max_decision_working_days < rules.decision_working_days {
            return Err(RepairRulesError {
                path: path.into(),
                message: "max_decision_working_days is below decision_working_days".into(),
            });
        }
        Ok(rules)
    }

    pub fn load(path: &Path) -> Result<Self, RepairRulesError> {
        if !path.exists() {
            return Self::parse("built-in repair.toml", BUILTIN);
        }
        let text = std::fs::read_to_string(path).map_err(|e| RepairRulesError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Every rule that refuses repairing `record` at `now`, given the subject's other dishonesty
    /// records and earlier repairs.
    pub fn refusals(
        &self,
        notice: &NoticeRules,
        record: &CanonicalRecord,
        others: &[Past],
        repairs: &[Repair],
        now: OffsetDateTime,
    ) -> Vec<Refusal> {
        let kind = type_of(record);
        let Some(decided) = crate::lifecycle::notice::decision_date(record) else {
            return vec![Refusal {
                rule: "decision-date".into(),
                article: "GD Art. 26".into(),
                record_id: record.source.record_id.clone(),
                reason: "the record names no decision date to count from".into(),
            }];
        };
        let mut out = Vec::new();
        let region = record.source.region.as_str();
        // Every rule that governs applies (eligibility bars add up), not only the most specific.
        for rule in self
            .rule
            .iter()
            .filter(|r| r.window().governs(region, decided))
        {
            let refused = match rule.kind {
                RuleKind::MonthsSinceDecision => {
                    let from = start_of(add_months(decided, rule.months.unwrap_or(0)));
                    (now < from).then(|| {
                        format!(
                            "confirmed on {decided}: repair may be applied for from {}",
                            crate::record::format_date(from.date())
                        )
                    })
                }
                RuleKind::NoSameTypeWithinMonths => {
                    let until = add_months(decided, rule.months.unwrap_or(0));
                    others
                        .iter()
                        .find(|p| {
                            p.record_id != record.source.record_id
                                && p.kind == kind
                                && p.decided > decided
                                && p.decided <= until
                        })
                        .map(|p| {
                            format!(
                                "a dishonesty of the same type ({}) followed on {} within {} months",
                                p.record_id,
                                p.decided,
                                rule.months.unwrap_or(0)
                            )
                        })
                }
                RuleKind::RepeatAfterRepair => repairs
                    .iter()
                    .filter(|r| r.types.contains(&kind))
                    .filter_map(|r| r.completed_at)
                    .find(|done| done.date() < decided)
                    .and_then(|done| {
                        let next_year_end = Date::from_calendar_date(
                            decided.year() + 2,
                            time::Month::January,
                            1,
                        )
                        .ok()?;
                        (now < start_of(next_year_end)).then(|| {
                            format!(
                                "the same type of dishonesty recurred after a repair completed on {}: no repair of this type until {}",
                                done.date(),
                                next_year_end
                            )
                        })
                    }),
                RuleKind::FalseMaterialsYears => repairs
                    .iter()
                    .filter_map(|r| r.decision.as_ref())
                    .filter(|d| d.false_materials)
                    .find(|d| {
                        now < d.at + time::Duration::days(365 * i64::from(rule.years.unwrap_or(0)))
                    })
                    .map(|d| {
                        format!(
                            "an application on {} used false materials: no repair for {} years",
                            d.at.date(),
                            rule.years.unwrap_or(0)
                        )
                    })
                    // LS Art. 41 bars repair for every 弄虚作假 it names, not only false materials:
                    // "信用承诺不实或者不履行承诺" found after a completed repair counts the same,
                    // for `years` from the day it was found.
                    .or_else(|| {
                        let years = rule.years.unwrap_or(0);
                        repairs
                            .iter()
                            .filter_map(|r| r.commitment_broken.as_ref().map(|b| (r, b)))
                            .map(|(r, b)| (r, b, add_months(b.found_on, years.saturating_mul(12))))
                            .find(|(_, _, until)| now < start_of(*until))
                            .map(|(r, b, until)| {
                                format!(
                                    "the commitment of repair {} was found broken on {}: no repair for {} years, repair may be applied for again from {}",
                                    r.id,
                                    crate::record::format_date(b.found_on),
                                    years,
                                    crate::record::format_date(until)
                                )
                            })
                    }),
                RuleKind::MinimumNoticePeriod => notice
                    .window(record)
                    .filter(|w| now < w.minimum_until)
                    .map(|w| {
                        format!(
                            "the minimum public-notice period of {} misconduct runs until {}",
                            w.severity.code(),
                            crate::record::format_date(w.minimum_until.date())
                        )
                    }),
            };
            if let Some(reason) = refused {
                out.push(Refusal {
                    rule: rule.name.clone(),
                    article: rule.article.clone(),
                    record_id: record.source.record_id.clone(),
                    reason,
                });
            }
        }
        out
    }
}

impl Dated for Rule {
    fn window(&self) -> Window<'_> {
        Window::new(self.effective_from, self.effective_until, &self.regions)
    }
}

/// A dishonesty record's type: its category, and for penalties its violation type when given.
pub fn type_of(record: &CanonicalRecord) -> String {
    match record.content.get("violation_type").and_then(Value::as_str) {
        Some(v) if !v.trim().is_empty() => format!("{}/{}", record.category.code(), v.trim()),
        _ => record.category.code().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{validate, ValidationContext};
    use serde_json::json;
    use time::macros::datetime;

    fn penalty(id: &str, decided: &str) -> CanonicalRecord {
        let v = json!({
            "category": "administrative",
            "subject": {"kind": "institution", "role": "designated_medical_institution",
                        "id_type": "uscc", "id": "91310110666007217T", "name": "某医院"},
            "source": {"agency": "medical_insurance", "record_id": id, "region": "540102"},
            "basis": {"doc_type": "penalty_decision", "doc_number": "罚〔2025〕1号", "decided_on": decided},
            "disclosure": {"class": "public"},
            "content": {"action": "penalty", "authority": "某医保局", "penalty_types": ["罚款"], "violation_type": "违规收费"}
        });
        validate(&v, &ValidationContext::default()).unwrap()
    }

    /// A completed repair of the subject, stored as the flow stores it; with `found_on`, its
    /// commitment was found broken that day (LS Art. 41).
    fn completed(found_on: Option<&str>) -> Repair {
        let mut v = json!({
            "id": "REP-1", "subject_key": "k",
            "records": [{"agency": "medical_insurance", "record_id": "P0"}],
            "types": ["administrative/其他"], "materials": "修复材料", "commitment": "信用承诺书",
            "applied_by": "medical_insurance", "accepted_at": "2025-09-01T10:00:00+08:00",
            "status": "completed", "decision_deadline": "2025-09-15T23:59:59+08:00",
            "completed_at": "2025-09-20T00:00:01+08:00"
        });
        if let Some(found_on) = found_on {
            v["commitment_broken"] = json!({
                "reason": "修复后未履行信用承诺", "found_on": found_on, "by": "medical_insurance",
                "at": "2025-10-09T10:00:00+08:00", "record_id": "BROKEN-COMMITMENT-REP-1"
            });
        }
        serde_json::from_value(v).unwrap()
    }

    fn names(r: &[Refusal]) -> Vec<&str> {
        r.iter().map(|r| r.rule.as_str()).collect()
    }

    #[test]
    fn six_months_and_the_minimum_notice_period_ls_art_38() {
        let rules = RepairRules::parse("t", BUILTIN).unwrap();
        let notice = NoticeRules::builtin().unwrap();
        let r = penalty("P1", "2025-03-01");
        let early = rules.refusals(&notice, &r, &[], &[], datetime!(2025-08-01 10:00 +08:00));
        assert_eq!(
            names(&early),
            vec!["six-months-since-confirmed", "minimum-notice-period"]
        );
        assert!(early[0].article.contains("LS Art. 38"));
        let later = rules.refusals(&notice, &r, &[], &[], datetime!(2025-09-02 10:00 +08:00));
        assert!(later.is_empty(), "{later:?}");
    }

    #[test]
    fn the_same_type_within_six_months_bars_repair_ls_art_38() {
        let rules = RepairRules::parse("t", BUILTIN).unwrap();
        let notice = NoticeRules::builtin().unwrap();
        let r = penalty("P1", "2025-01-01");
        let again = Past {
            record_id: "P2".into(),
            kind: "administrative/违规收费".into(),
            decided: time::macros::date!(2025 - 05 - 01),
        };
        let refused = rules.refusals(
            &notice,
            &r,
            &[again],
            &[],
            datetime!(2025-12-01 10:00 +08:00),
        );
        assert_eq!(names(&refused), vec!["no-same-type-within-six-months"]);
    }

    #[test]
    fn a_broken_commitment_bars_repair_for_three_years_from_its_finding_ls_art_41() {
        let rules = RepairRules::parse("t", BUILTIN).unwrap();
        let notice = NoticeRules::builtin().unwrap();
        let r = penalty("P1", "2025-03-01");
        let broken = [completed(Some("2025-10-08"))];
        let within = rules.refusals(
            &notice,
            &r,
            &[],
            &broken,
            datetime!(2025-12-01 10:00 +08:00),
        );
        assert_eq!(names(&within), vec!["false-materials-three-years"]);
        assert_eq!(within[0].article, "LS Art. 41");
        assert!(
            within[0].reason.contains("REP-1") && within[0].reason.contains("2028-10-08"),
            "{within:?}"
        );
        // Three calendar years from the day it was found, to the last second (China time).
        let last = rules.refusals(
            &notice,
            &r,
            &[],
            &broken,
            datetime!(2028-10-07 23:59:59 +08:00),
        );
        assert_eq!(names(&last), vec!["false-materials-three-years"]);
        let after = rules.refusals(
            &notice,
            &r,
            &[],
            &broken,
            datetime!(2028-10-08 00:00 +08:00),
        );
        assert!(after.is_empty(), "{after:?}");
        // A completed repair whose commitment held (stored before the field existed) bars nothing.
        let kept = [completed(None)];
        assert!(kept[0].commitment_broken.is_none());
        let fine = rules.refusals(&notice, &r, &[], &kept, datetime!(2025-12-01 10:00 +08:00));
        assert!(fine.is_empty(), "{fine:?}");
    }
}
