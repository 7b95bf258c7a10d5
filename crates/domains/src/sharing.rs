//! Sharing rules and routing: which records each platform may hold, on which channel, at an instant
//! (GD Art. 6; rules file `mappings/rules/sharing.toml`).
//!
//! Owns: [`Router::plan`], which turns one record, its subject's standing and an instant into a
//! [`Plan`]: every (platform, channel) the record may be held on now with the filtered payload, every
//! route that matched but is refused (with the reason), and when the answer changes by time alone.
//! Rule match -> destinations by region (a province platform receives its whole province, a city
//! platform its city) -> the disclosure filter of the rule's channel -> the lifecycle gates (public
//! notice periods, retention, exit).
//!
//! Rules select by agency, category and channel, and optionally by region prefix, grade (evaluation
//! results, LS Art. 27 / GD Art. 25), subject kind and effective dates (judged by the record's
//! decision date). For one category and channel, the matching rules with the longest region prefix
//! win: a regional rule replaces the general one there, it does not add to it. The window itself
//! (dates, region prefixes, specificity) is [`crate::rule_window`]'s; a dated rule does not govern
//! a record without any date.
//!
//! Never does: queue or send anything (the ledger turns a plan into shares and withdrawals against
//! what each platform holds; delivery sends them), or read the clock.

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::{Date, OffsetDateTime};

use crate::config::DestinationConfig;
use crate::disclosure::{self, Channel, Decision, DisclosureRules};
use crate::lifecycle::{self, Gate, NoticeRules, Standing};
use crate::record::{CanonicalRecord, Category};
use crate::rule_window::{Dated, Window};
use crate::subject::{RegionCode, SubjectKind};

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
    /// Region prefixes of the record (`5401` Lhasa, `44` Guangdong); empty: everywhere.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Evaluation grades shared (`content.grade`); empty: every grade.
    #[serde(default)]
    pub grades: Vec<String>,
    /// Subject kinds shared; empty: both.
    #[serde(default)]
    pub subject_kinds: Vec<SubjectKind>,
    /// The rule governs records decided on or after this date.
    #[serde(
        default,
        deserialize_with = "crate::calendar::deserialize_toml_date_opt"
    )]
    pub effective_from: Option<Date>,
    /// The rule governs records decided on or before this date.
    #[serde(
        default,
        deserialize_with = "crate::calendar::deserialize_toml_date_opt"
    )]
    pub effective_until: Option<Date>,
    /// Where the rule comes from (article), for people.
    #[serde(default)]
    pub source: String,
}

/// One (platform, channel) a record may be held on, with what the platform gets.
#[derive(Debug, Clone)]
pub struct PlannedShare {
    pub destination: String,
    pub channel: Channel,
    pub rule: String,
    /// The filtered record, serialized once for every platform that gets it.
    pub payload: Box<serde_json::value::RawValue>,
    /// sha256 (first 16 bytes, hex) of the payload: a changed payload is published again.
    pub payload_hash: String,
    /// Field paths the filter masked or dropped, with the filter rule (names only, never values).
    pub masked: Vec<(String, &'static str)>,
    /// The marks the payload carries ([`Plan::mark`]).
    pub marks: Option<serde_json::Value>,
}

/// A route that matched a record but may not hold it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub destination: String,
    pub channel: Channel,
    pub rule: String,
    pub reason: &'static str,
}

/// Everything the record may be, and may not be, held as at one instant.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub shares: Vec<PlannedShare>,
    pub refused: Vec<Refusal>,
    /// When the plan may change by time alone (a notice window or retention ends).
    pub next_change: Option<OffsetDateTime>,
    /// sha256 of the rules files in force.
    pub rules_hash: String,
    /// The legal-basis document the shares rest on (LS Arts. 25-26): `type number`.
    pub basis: Option<String>,
    /// The record is past its retention (LS Art. 20): marked expired in the archive.
    pub expired: bool,
    /// Every route is closed for this reason (the subject exited), whatever the rules say.
    pub closed: Option<&'static str>,
}

impl Plan {
    /// Why a (platform, channel) may not hold the record; `not_routed` when no rule routes it there.
    pub fn refusal_reason(&self, destination: &str, channel: Channel) -> &'static str {
        if let Some(reason) = self.closed {
            return reason;
        }
        self.refused
            .iter()
            .find(|r| r.destination == destination && r.channel == channel)
            .map(|r| r.reason)
            .unwrap_or("not_routed")
    }

    /// Every share carries these marks (异议标注 while an objection is reviewed, LS Art. 23): the
    /// payload changes, so every platform holding the record is sent it again, marked.
    pub fn mark(&mut self, marks: &serde_json::Value) {
        for share in &mut self.shares {
            let mut payload: serde_json::Value =
                serde_json::from_str(share.payload.get()).unwrap_or(serde_json::Value::Null);
            if let Some(obj) = payload.as_object_mut() {
                obj.insert("marks".into(), marks.clone());
            }
            if let Ok(raw) = serde_json::value::to_raw_value(&payload) {
                share.payload_hash = hex::encode(&Sha256::digest(raw.get().as_bytes())[..16]);
                share.payload = raw;
                share.marks = Some(marks.clone());
            }
        }
    }

    /// Nothing may be held, for this reason (the subject exited: LS Art. 20).
    pub fn close(&mut self, reason: &'static str) {
        self.shares.clear();
        self.next_change = None;
        self.closed = Some(reason);
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
    notice: NoticeRules,
    rules_hash: String,
}

const BUILTIN_RULES: &str = include_str!("../../../mappings/rules/sharing.toml");

/// The files a router is built from (each: the path, else the built-in copy).
pub struct RuleFiles<'a> {
    pub sharing: &'a Path,
    pub disclosure: &'a Path,
    pub notice: &'a Path,
}

impl Router {
    /// Load and check every rules file; any error is the operator's and names the file.
    pub fn load(
        files: RuleFiles<'_>,
        destinations: &[DestinationConfig],
    ) -> Result<Self, SharingError> {
        let read = |path: &Path, builtin: &str| -> Result<(String, String), SharingError> {
            if path.exists() {
                let text = std::fs::read_to_string(path).map_err(|e| SharingError {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                Ok((path.display().to_string(), text))
            } else {
                Ok((
                    format!(
                        "built-in {}",
                        path.file_name().and_then(|n| n.to_str()).unwrap_or("")
                    ),
                    builtin.to_string(),
                ))
            }
        };
        let (sharing_path, sharing_text) = read(files.sharing, BUILTIN_RULES)?;
        let (disclosure_path, disclosure_text) = read(files.disclosure, disclosure::BUILTIN_RULES)?;
        let (notice_path, notice_text) = read(files.notice, lifecycle::notice::BUILTIN)?;
        let disclosure =
            DisclosureRules::parse(&disclosure_path, &disclosure_text).map_err(|e| {
                SharingError {
                    path: disclosure_path.clone(),
                    message: e.to_string(),
                }
            })?;
        let notice = NoticeRules::parse(&notice_path, &notice_text).map_err(|e| SharingError {
            path: notice_path.clone(),
            message: e.message,
        })?;
        let mut hash = Sha256::new();
        for text in [&sharing_text, &disclosure_text, &notice_text] {
            hash.update(text.as_bytes());
            hash.update([0x1f]);
        }
        let rules_hash = hex::encode(&hash.finalize()[..16]);
        Self::from_parts(
            &sharing_path,
            &sharing_text,
            disclosure,
            notice,
            rules_hash,
            destinations,
        )
    }

    fn from_parts(
        path: &str,
        text: &str,
        disclosure: DisclosureRules,
        notice: NoticeRules,
        rules_hash: String,
        destinations: &[DestinationConfig],
    ) -> Result<Self, SharingError> {
        let err = |message: String| SharingError {
            path: path.to_string(),
            message,
        };
        let file: RulesFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let known: Vec<&str> = destinations.iter().map(|d| d.id.as_str()).collect();
        for rule in &file.rules {
            for d in rule.destinations.iter().flatten() {
                if !known.contains(&d.as_str()) {
                    return Err(err(format!(
                        "rule {:?} names unknown destination {d:?}",
                        rule.name
                    )));
                }
            }
            if let Some(r) = rule.window().bad_region() {
                return Err(err(format!(
                    "rule {:?}: region {r:?} is not 1-6 digits",
                    rule.name
                )));
            }
            if let Some(g) = rule
                .grades
                .iter()
                .find(|g| !["A", "B", "C", "D", "E"].contains(&g.as_str()))
            {
                return Err(err(format!(
                    "rule {:?}: grade {g:?} is not one of A-E",
                    rule.name
                )));
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
            notice,
            rules_hash,
        })
    }

    /// Everything one record may be held as, by which platform on which channel, at `now`.
    pub fn plan(&self, record: &CanonicalRecord, standing: Standing, now: OffsetDateTime) -> Plan {
        let mut plan = Plan {
            rules_hash: self.rules_hash.clone(),
            basis: record.basis.as_ref().map(|b| {
                format!(
                    "{} {}",
                    serde_json::to_value(b.doc_type)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default(),
                    b.doc_number
                )
            }),
            ..Plan::default()
        };
        let retention = self.notice.retention_end(record);
        plan.expired = retention.is_some_and(|end| now >= end);
        if let Some(end) = retention.filter(|end| now < *end) {
            plan.next_change = Some(end);
        }
        for rule in self.governing_rules(record) {
            let gate = lifecycle::gate(&self.notice, record, rule.channel, standing, now);
            let decision = match gate {
                Gate::Closed { reason } => Decision::Withheld { rule: reason },
                Gate::Open { .. } if !rule_admits(rule, record) => Decision::Withheld {
                    rule: "rule_excludes_grade_or_kind",
                },
                Gate::Open { .. } => disclosure::filter(record, rule.channel, &self.disclosure),
            };
            let shared = match &decision {
                Decision::Share {
                    record: payload,
                    masked,
                    dropped,
                } => serde_json::value::to_raw_value(payload).ok().map(|raw| {
                    let hash = hex::encode(&Sha256::digest(raw.get().as_bytes())[..16]);
                    let fields: Vec<(String, &'static str)> =
                        masked.iter().chain(dropped).cloned().collect();
                    (raw, hash, fields)
                }),
                Decision::Withheld { .. } => None,
            };
            if let (Gate::Open { until: Some(t) }, Some(_)) = (gate, &shared) {
                plan.next_change = Some(plan.next_change.map_or(t, |n| n.min(t)));
            }
            for dest in self.destinations_for(rule, record) {
                match (&decision, &shared) {
                    (Decision::Share { .. }, Some((raw, hash, fields))) => {
                        plan.shares.push(PlannedShare {
                            destination: dest.clone(),
                            channel: rule.channel,
                            rule: rule.name.clone(),
                            payload: raw.clone(),
                            payload_hash: hash.clone(),
                            masked: fields.clone(),
                            marks: None,
                        })
                    }
                    (Decision::Withheld { rule: why }, _) => plan.refused.push(Refusal {
                        destination: dest.clone(),
                        channel: rule.channel,
                        rule: rule.name.clone(),
                        reason: why,
                    }),
                    _ => {}
                }
            }
        }
        if standing == Standing::Exited {
            plan.close("subject_exited");
        }
        plan
    }

    /// [`Router::plan`] for a record being accepted, also reporting what the filter withheld or
    /// masked (for metrics and the batch's audit entry).
    pub fn plan_reported(
        &self,
        record: &CanonicalRecord,
        now: OffsetDateTime,
        report: &mut FilterReport,
    ) -> Plan {
        let plan = self.plan(record, Standing::Active, now);
        for r in &plan.refused {
            report
                .withheld
                .push((r.destination.clone(), r.channel, r.reason));
        }
        for s in &plan.shares {
            for (field, why) in &s.masked {
                report
                    .masked
                    .push((s.destination.clone(), s.channel, field.clone(), why));
            }
        }
        plan
    }

    /// The rules that govern this record: for each channel, those that match with the longest
    /// region prefix.
    fn governing_rules(&self, record: &CanonicalRecord) -> Vec<&ShareRule> {
        let date = lifecycle::notice::decision_date(record).or_else(|| evaluation_year(record));
        let region = record.source.region.as_str();
        let matching: Vec<(usize, &ShareRule)> = self
            .rules
            .iter()
            .filter(|r| {
                r.from_agencies.contains(&record.source.agency)
                    && r.categories.contains(&record.category)
            })
            .filter(|r| r.window().in_force_at(date))
            .filter_map(|r| r.window().region_specificity(region).map(|len| (len, r)))
            .collect();
        // Not `rule_window::select`: per channel, every rule of the highest specificity governs
        // (rules of one channel add up, by agency, grade or subject kind).
        matching
            .iter()
            .filter(|(len, r)| {
                !matching
                    .iter()
                    .any(|(other, o)| o.channel == r.channel && other > len)
            })
            .map(|(_, r)| *r)
            .collect()
    }

    fn destinations_for<'a>(
        &'a self,
        rule: &'a ShareRule,
        record: &'a CanonicalRecord,
    ) -> impl Iterator<Item = &'a String> + 'a {
        self.destinations
            .iter()
            .filter(move |(_, region)| serves(*region, record.source.region))
            .filter(move |(dest, _)| {
                rule.destinations
                    .as_ref()
                    .is_none_or(|only| only.contains(dest))
            })
            .map(|(dest, _)| dest)
    }

    pub fn disclosure(&self) -> &DisclosureRules {
        &self.disclosure
    }

    pub fn notice(&self) -> &NoticeRules {
        &self.notice
    }

    pub fn rules_hash(&self) -> &str {
        &self.rules_hash
    }
}

impl Dated for ShareRule {
    fn window(&self) -> Window<'_> {
        Window::new(self.effective_from, self.effective_until, &self.regions)
    }
}

/// Grade and subject-kind filters of a rule.
fn rule_admits(rule: &ShareRule, record: &CanonicalRecord) -> bool {
    let grade_ok = rule.grades.is_empty()
        || record
            .content
            .get("grade")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|g| rule.grades.iter().any(|r| r == g.trim()));
    let kind_ok =
        rule.subject_kinds.is_empty() || rule.subject_kinds.contains(&record.subject.kind);
    grade_ok && kind_ok
}

/// An evaluation result without dates is judged by the rules in force at the start of its year.
fn evaluation_year(record: &CanonicalRecord) -> Option<Date> {
    let year = record.content.get("year")?.as_i64()?;
    Date::from_calendar_date(i32::try_from(year).ok()?, time::Month::January, 1).ok()
}

/// A shared view of the rules in force, replaced whole on SIGHUP.
#[derive(Debug, Clone)]
pub struct SharedRouter(std::sync::Arc<std::sync::RwLock<std::sync::Arc<Router>>>);

impl SharedRouter {
    pub fn new(router: Router) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(router),
        )))
    }

    pub fn current(&self) -> std::sync::Arc<Router> {
        self.0
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn replace(&self, router: Router) {
        let mut guard = self.0.write().unwrap_or_else(|p| p.into_inner());
        *guard = std::sync::Arc::new(router);
    }
}

/// Whether a platform serving `platform` receives a record of `record`'s region.
pub fn serves(platform: RegionCode, record: RegionCode) -> bool {
    platform == record || platform == record.province() || Some(platform) == record.city()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{validate, ValidationContext};
    use serde_json::json;
    use time::macros::datetime;

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

    fn router() -> Router {
        let mut dests = Vec::new();
        for (id, region) in [("gd", "440000"), ("lhasa", "540100")] {
            let mut d = crate::config::default_destinations().remove(0);
            d.id = id.into();
            d.region = region.into();
            dests.push(d);
        }
        let none = Path::new("/nonexistent/rules.toml");
        Router::load(
            RuleFiles {
                sharing: none,
                disclosure: none,
                notice: none,
            },
            &dests,
        )
        .unwrap()
    }

    fn evaluation(region: &str, grade: &str, points: u32, kind: &str) -> CanonicalRecord {
        let (role, id_type, id) = if kind == "institution" {
            (
                "designated_medical_institution",
                "uscc",
                "91310110666007217T",
            )
        } else {
            ("physician", "resident_id", "11010519491231002X")
        };
        let v = json!({
            "category": "evaluation_result",
            "subject": {"kind": kind, "role": role, "id_type": id_type, "id": id, "name": "某"},
            "source": {"agency": "medical_insurance", "record_id": format!("ev-{grade}"), "region": region},
            "disclosure": {"class": "public"},
            "valid_from": "2025-03-01",
            "content": {"year": 2025, "points": points, "grade": grade}
        });
        validate(&v, &ValidationContext::default()).unwrap()
    }

    fn channels(plan: &Plan) -> Vec<(String, Channel)> {
        plan.shares
            .iter()
            .map(|s| (s.destination.clone(), s.channel))
            .collect()
    }

    #[test]
    fn lhasa_notices_a_c_d_e_and_shares_a_e_ls_art_27() {
        let router = router();
        let now = datetime!(2025-06-01 10:00 +08:00);
        let b = router.plan(
            &evaluation("540102", "B", 90, "institution"),
            Standing::Active,
            now,
        );
        assert!(
            channels(&b).is_empty(),
            "B: neither public nor government sharing"
        );
        assert_eq!(
            b.refusal_reason("lhasa", Channel::PublicNotice),
            "rule_excludes_grade_or_kind"
        );
        let c = router.plan(
            &evaluation("540102", "C", 80, "institution"),
            Standing::Active,
            now,
        );
        assert_eq!(
            channels(&c),
            vec![("lhasa".to_string(), Channel::PublicNotice)]
        );
        let a = router.plan(
            &evaluation("540102", "A", 97, "institution"),
            Standing::Active,
            now,
        );
        assert_eq!(
            channels(&a),
            vec![
                ("lhasa".to_string(), Channel::PublicNotice),
                ("lhasa".to_string(), Channel::GovShare)
            ]
        );
    }

    #[test]
    fn guangdong_publicises_a_grade_institutions_only_gd_art_25() {
        let router = router();
        let now = datetime!(2025-06-01 10:00 +08:00);
        let a = router.plan(
            &evaluation("440106", "A", 97, "institution"),
            Standing::Active,
            now,
        );
        assert!(channels(&a).contains(&("gd".to_string(), Channel::PublicNotice)));
        let a_person = router.plan(
            &evaluation("440106", "A", 97, "individual"),
            Standing::Active,
            now,
        );
        assert!(!channels(&a_person).contains(&("gd".to_string(), Channel::PublicNotice)));
        let b = router.plan(
            &evaluation("440106", "B", 90, "institution"),
            Standing::Active,
            now,
        );
        assert_eq!(channels(&b), vec![("gd".to_string(), Channel::GovShare)]);
    }
}
