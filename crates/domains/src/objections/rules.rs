//! The objections rules file (`mappings/rules/objections.toml`): the filing window for evaluation
//! results (LS Art. 21) and review deadlines (LS Art. 23), each a rule with regions and effective
//! dates (issue #26: every rule says when it governs). The rule for a region and a day is the most
//! specific in force ([`crate::rule_window::select`]).
//!
//! Gap policy: where no filing rule is in force for a region and day, the longest window of any
//! known rule applies, so that a gap never shortens a subject's right to object (LS Art. 21). A
//! file of an earlier release with only `evaluation_filing_working_days` still loads: that number
//! becomes a rule without regions or dates.

use std::path::Path;

use serde::Deserialize;
use time::Date;

use crate::rule_window::{self, Dated, Window};

/// A rules file problem: the operator's to fix.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ObjectionRulesError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectionRules {
    /// An earlier release's single filing window (no regions, no dates); read into `filing`.
    #[serde(default)]
    evaluation_filing_working_days: Option<u32>,
    #[serde(default)]
    pub filing: Vec<FilingRule>,
    pub review: Vec<ReviewRule>,
}

/// How long a subject may object to an evaluation result (LS Art. 21: 10 working days).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilingRule {
    pub name: String,
    #[serde(default)]
    pub source: String,
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
    pub working_days: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewRule {
    pub name: String,
    #[serde(default)]
    pub source: String,
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
    pub working_days: u32,
}

/// The rule an objection names when no review rule was in force for its region and day.
pub const GAP_REVIEW: &str = "no-review-rule-in-force: the shortest known";

/// The shipped rules, used when the configured file does not exist.
pub const BUILTIN: &str = include_str!("../../../../mappings/rules/objections.toml");

impl ObjectionRules {
    pub fn parse(path: &str, text: &str) -> Result<Self, ObjectionRulesError> {
        let mut rules: Self = toml::from_str(text).map_err(|e| ObjectionRulesError {
            path: path.into(),
            message: e.to_string(),
        })?;
        if let Some(days) = rules.evaluation_filing_working_days.take() {
            rules.filing.push(FilingRule {
                name: "evaluation_filing_working_days".into(),
                source: "LS Art. 21 (a file of an earlier release: no regions, no dates)".into(),
                regions: Vec::new(),
                effective_from: None,
                effective_until: None,
                working_days: days,
            });
        }
        if rules.filing.is_empty() {
            return Err(ObjectionRulesError {
                path: path.into(),
                message: "no [[filing]] rule: the window to object to an evaluation result (LS Art. 21) is needed".into(),
            });
        }
        let dated = rules
            .filing
            .iter()
            .map(|f| (&f.name, f.window()))
            .chain(rules.review.iter().map(|r| (&r.name, r.window())));
        for (name, window) in dated {
            if let Err(e) = window.check_dates() {
                return Err(ObjectionRulesError {
                    path: path.into(),
                    message: format!("rule {name:?}: {e}"),
                });
            }
        }
        if rules.review.iter().all(|r| !r.regions.is_empty()) {
            return Err(ObjectionRulesError {
                path: path.into(),
                message: "one [[review]] rule without regions is needed as the default".into(),
            });
        }
        Ok(rules)
    }

    pub fn load(path: &Path) -> Result<Self, ObjectionRulesError> {
        if !path.exists() {
            return Self::parse("built-in objections.toml", BUILTIN);
        }
        let text = std::fs::read_to_string(path).map_err(|e| ObjectionRulesError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// The review rule for a record of `region` received on `day`.
    pub fn review_for(&self, region: &str, day: Date) -> Option<&ReviewRule> {
        rule_window::select(&self.review, region, day)
    }

    /// The review period for an objection of `region` received on `day` and the rule's name: the
    /// rule in force, else (a gap) the shortest period any rule allows, named [`GAP_REVIEW`].
    pub fn review_period(&self, region: &str, day: Date) -> (u32, String) {
        match self.review_for(region, day) {
            Some(r) => (r.working_days, r.name.clone()),
            None => (
                self.review
                    .iter()
                    .map(|r| r.working_days)
                    .min()
                    .unwrap_or(0),
                GAP_REVIEW.to_string(),
            ),
        }
    }

    /// The filing rule for a result of `region` notified on `day`.
    pub fn filing_for(&self, region: &str, day: Date) -> Option<&FilingRule> {
        rule_window::select(&self.filing, region, day)
    }

    /// Working days a subject has to object to a result of `region` notified on `day`: the rule
    /// in force, else (a gap) the longest any rule allows, never a shorter window (LS Art. 21).
    pub fn filing_working_days(&self, region: &str, day: Date) -> u32 {
        self.filing_for(region, day)
            .map(|r| r.working_days)
            .unwrap_or_else(|| self.longest_filing_working_days())
    }

    /// The longest filing window of any rule: where one window must serve every region (the
    /// yearly publication waits until every subject's window has closed).
    pub fn longest_filing_working_days(&self) -> u32 {
        self.filing
            .iter()
            .map(|r| r.working_days)
            .max()
            .unwrap_or(0)
    }
}

impl Dated for FilingRule {
    fn window(&self) -> Window<'_> {
        Window::new(self.effective_from, self.effective_until, &self.regions)
    }
}

impl Dated for ReviewRule {
    fn window(&self) -> Window<'_> {
        Window::new(self.effective_from, self.effective_until, &self.regions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn the_most_specific_region_wins() {
        let rules = ObjectionRules::parse("t", BUILTIN).unwrap();
        assert_eq!(
            rules
                .review_for("540102", date!(2025 - 01 - 06))
                .unwrap()
                .name,
            "ls-art-23"
        );
        assert_eq!(
            rules
                .review_for("440106", date!(2026 - 01 - 05))
                .unwrap()
                .name,
            "default-15"
        );
        assert_eq!(
            rules.filing_working_days("540102", date!(2025 - 03 - 03)),
            10
        );
    }

    #[test]
    fn a_file_of_an_earlier_release_still_loads_and_a_gap_keeps_the_longest_window() {
        let old =
            "evaluation_filing_working_days = 12\n[[review]]\nname = \"d\"\nworking_days = 15\n";
        let rules = ObjectionRules::parse("t", old).unwrap();
        assert_eq!(
            rules.filing_working_days("440106", date!(2030 - 01 - 02)),
            12
        );
        let dated = "[[filing]]\nname = \"a\"\neffective_from = 2024-01-01\neffective_until = 2025-12-31\nworking_days = 10\n[[filing]]\nname = \"b\"\nregions = [\"44\"]\neffective_from = 2024-01-01\neffective_until = 2024-12-31\nworking_days = 7\n[[review]]\nname = \"d\"\nworking_days = 15\n";
        let rules = ObjectionRules::parse("t", dated).unwrap();
        assert_eq!(
            rules.filing_working_days("440106", date!(2024 - 06 - 03)),
            7
        );
        assert_eq!(
            rules.filing_working_days("440106", date!(2025 - 06 - 03)),
            10
        );
        // LS Art. 21: past every rule's end the window is never shorter than any known one.
        assert!(rules.filing_for("440106", date!(2026 - 06 - 03)).is_none());
        assert_eq!(
            rules.filing_working_days("440106", date!(2026 - 06 - 03)),
            10
        );
    }
}
