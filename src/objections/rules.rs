//! The objections rules file (`mappings/rules/objections.toml`): the filing window for evaluation
//! results (LS Art. 21) and review deadlines by region and date (LS Art. 23).

use std::path::Path;

use serde::Deserialize;
use time::Date;

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
    pub evaluation_filing_working_days: u32,
    pub review: Vec<ReviewRule>,
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

/// The shipped rules, used when the configured file does not exist.
pub const BUILTIN: &str = include_str!("../../mappings/rules/objections.toml");

impl ObjectionRules {
    pub fn parse(path: &str, text: &str) -> Result<Self, ObjectionRulesError> {
        let rules: Self = toml::from_str(text).map_err(|e| ObjectionRulesError {
            path: path.into(),
            message: e.to_string(),
        })?;
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
        self.review
            .iter()
            .filter(|r| {
                r.effective_from.is_none_or(|f| f <= day)
                    && r.effective_until.is_none_or(|u| day <= u)
            })
            .filter_map(|r| {
                if r.regions.is_empty() {
                    return Some((0, r));
                }
                r.regions
                    .iter()
                    .filter(|p| region.starts_with(p.as_str()))
                    .map(|p| p.len())
                    .max()
                    .map(|len| (len, r))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, r)| r)
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
                .review_for("540102", date!(2026 - 01 - 05))
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
        assert_eq!(rules.evaluation_filing_working_days, 10);
    }
}
