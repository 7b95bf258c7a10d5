//! Sharing rules and routing: which accepted records are shared, with which platform, on which
//! channel (GD Art. 6; rules file `mappings/sharing.toml`).
//!
//! Owns: [`Router::plan`], which turns one accepted record into the shares to queue: rule match ->
//! destinations by region (a province platform receives its whole province, a city platform its
//! city) -> the disclosure filter of the rule's channel.
//!
//! Never does: queue or send anything (the committer writes the plan to the outbox only when the
//! record is new or a new version; delivery sends it).

use std::path::Path;

use serde::Deserialize;

use crate::config::DestinationConfig;
use crate::disclosure::{self, Channel, Decision, DisclosureRules};
use crate::record::{CanonicalRecord, Category};
use crate::subject::RegionCode;

/// A rules file problem: the operator's.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SharingError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<ShareRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareRule {
    pub name: String,
    pub from_agencies: Vec<String>,
    pub categories: Vec<Category>,
    pub channel: Channel,
    #[serde(default)]
    pub destinations: Option<Vec<String>>,
}

/// One share to queue.
#[derive(Debug, Clone)]
pub struct PlannedShare {
    pub destination: String,
    pub channel: Channel,
    pub rule: String,
    /// The filtered record, serialized once for every platform that gets it.
    pub payload: Box<serde_json::value::RawValue>,
}

impl PlannedShare {
    /// The outbox entry that carries this share of `version` of `record`. A correction share has
    /// its own idempotency key, so a platform never drops it as a duplicate of the original.
    pub fn entry(
        &self,
        record: &crate::record::CanonicalRecord,
        version: u32,
        correction_id: Option<&str>,
        enqueued_at: &str,
        enqueued_unix: i64,
    ) -> crate::outbox::Entry {
        use crate::outbox::Kind;
        let kind = if correction_id.is_some() {
            Kind::Correction
        } else {
            Kind::Share
        };
        crate::outbox::Entry {
            idempotency_key: crate::outbox::idempotency_key(
                &self.destination,
                &record.source.agency,
                &record.source.record_id,
                version,
                self.channel,
                kind,
                correction_id.unwrap_or(""),
            ),
            destination: self.destination.clone(),
            channel: self.channel,
            kind,
            agency: record.source.agency.clone(),
            record_id: record.source.record_id.clone(),
            version,
            rule: self.rule.clone(),
            enqueued_at: enqueued_at.to_string(),
            enqueued_unix,
            correction_id: correction_id.map(str::to_string),
            payload: self.payload.clone(),
        }
    }
}

/// What the filter held back or changed, by rule and field, never by value.
#[derive(Debug, Clone, Default)]
pub struct FilterReport {
    pub withheld: Vec<(String, Channel, &'static str)>,
    pub masked: Vec<(String, Channel, String, &'static str)>,
}

#[derive(Debug, Clone)]
pub struct Router {
    rules: Vec<ShareRule>,
    destinations: Vec<(String, RegionCode)>,
    disclosure: DisclosureRules,
}

const BUILTIN_RULES: &str = include_str!("../mappings/rules/sharing.toml");

impl Router {
    pub fn new(
        rules_path: &Path,
        disclosure: DisclosureRules,
        destinations: &[DestinationConfig],
    ) -> Result<Self, SharingError> {
        let (path, text) = if rules_path.exists() {
            let text = std::fs::read_to_string(rules_path).map_err(|e| SharingError {
                path: rules_path.display().to_string(),
                message: e.to_string(),
            })?;
            (rules_path.display().to_string(), text)
        } else {
            (
                "built-in sharing.toml".to_string(),
                BUILTIN_RULES.to_string(),
            )
        };
        let file: RulesFile = toml::from_str(&text).map_err(|e| SharingError {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let known: Vec<&str> = destinations.iter().map(|d| d.id.as_str()).collect();
        for rule in &file.rules {
            for d in rule.destinations.iter().flatten() {
                if !known.contains(&d.as_str()) {
                    return Err(SharingError {
                        path: path.clone(),
                        message: format!("rule {:?} names unknown destination {d:?}", rule.name),
                    });
                }
            }
        }
        let destinations = destinations
            .iter()
            .filter(|d| d.role == crate::config::DestinationRole::CreditPlatform)
            .filter_map(|d| RegionCode::parse(&d.region).ok().map(|r| (d.id.clone(), r)))
            .collect();
        Ok(Self {
            rules: file.rules,
            destinations,
            disclosure,
        })
    }

    /// The shares one accepted record gives rise to.
    pub fn plan(&self, record: &CanonicalRecord, report: &mut FilterReport) -> Vec<PlannedShare> {
        let mut shares = Vec::new();
        for rule in &self.rules {
            if !rule.from_agencies.contains(&record.source.agency)
                || !rule.categories.contains(&record.category)
            {
                continue;
            }
            let decision = disclosure::filter(record, rule.channel, &self.disclosure);
            let raw = match &decision {
                Decision::Share {
                    record: payload, ..
                } => serde_json::value::to_raw_value(payload).ok(),
                Decision::Withheld { .. } => None,
            };
            for (dest, region) in &self.destinations {
                if !serves(*region, record.source.region) {
                    continue;
                }
                if rule
                    .destinations
                    .as_ref()
                    .is_some_and(|only| !only.contains(dest))
                {
                    continue;
                }
                match &decision {
                    Decision::Withheld { rule: why } => {
                        report.withheld.push((dest.clone(), rule.channel, why))
                    }
                    Decision::Share {
                        masked, dropped, ..
                    } => {
                        let Some(payload) = &raw else { continue };
                        for (field, why) in masked.iter().chain(dropped) {
                            report
                                .masked
                                .push((dest.clone(), rule.channel, field.clone(), why));
                        }
                        shares.push(PlannedShare {
                            destination: dest.clone(),
                            channel: rule.channel,
                            rule: rule.name.clone(),
                            payload: payload.clone(),
                        });
                    }
                }
            }
        }
        shares
    }

    pub fn disclosure(&self) -> &DisclosureRules {
        &self.disclosure
    }
}

/// Whether a platform serving `platform` receives a record of `record`'s region.
pub fn serves(platform: RegionCode, record: RegionCode) -> bool {
    platform == record || platform == record.province() || Some(platform) == record.city()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    #[test]
    fn routing_by_region() {
        assert!(
            serves(r("440000"), r("440106")),
            "province gets its districts"
        );
        assert!(serves(r("440100"), r("440106")), "city gets its districts");
        assert!(serves(r("440100"), r("440100")));
        assert!(
            !serves(r("440300"), r("440106")),
            "Shenzhen does not get Guangzhou"
        );
        assert!(!serves(r("540000"), r("440106")));
    }
}
