//! The rulebook: every kind of rule data the gateway applies, governed while it runs (issue #26).
//!
//! Owns: loading the rule data of a configuration as one whole (the working-day calendar; the
//! sharing, disclosure, public-notice, severity and retention rules; the objection and repair
//! rules; the scoring profiles; the agencies and the operators of the configuration file), a hash
//! per kind, putting a loaded whole in force atomically ([`Live::install`]), the reload itself
//! ([`reload`]), and what is in force for a region and a day with the warnings before a rule or
//! the calendar ends ([`in_force`]).
//!
//! Never does: apply a rule (each domain does, from the value it takes from [`Live`]), read the
//! system clock, or write to the store except through the writer (the reload's audit entry).
//!
//! Invariants: a rulebook is put in force only when every kind loaded without error, so a broken
//! file changes nothing; every reader takes one value of each kind per request or pass, never a
//! mix of old and new; a kind whose hash did not change is not replaced.

pub mod in_force;
pub mod ops;
pub mod reload;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::calendar::{Calendar, SharedCalendar};
use crate::config::{AgencyConfig, Config, OperatorConfig};
use crate::evaluation::profile::Profiles;
use crate::identity::Registry;
use crate::mapping::MappingSet;
use crate::objections::rules::ObjectionRules;
use crate::operators::Gate;
use crate::repairs::rules::RepairRules;
use crate::sharing::{Router, SharedRouter};
use crate::swap::Swap;

/// The kinds of rule data, in the order they are reported.
pub const KINDS: [&str; 8] = [
    "mappings",
    "calendar",
    "sharing_disclosure_notice",
    "objections",
    "repairs",
    "scoring_profiles",
    "agencies",
    "operators",
];

/// One problem of one kind of rule data; the operator's to fix (a retry without a change of the
/// file does not help).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct RuleError {
    pub kind: &'static str,
    pub message: String,
}

/// Every kind of rule data of one configuration, loaded and checked together.
pub struct Rulebook {
    /// The source formats agencies push (`mappings/*.toml`).
    pub mappings: MappingSet,
    pub calendar: Calendar,
    pub router: Router,
    pub objections: ObjectionRules,
    pub repairs: RepairRules,
    pub profiles: Profiles,
    pub agencies: Vec<AgencyConfig>,
    pub operators: Vec<OperatorConfig>,
    /// A short hash per kind (of its files' text, or of its configuration section).
    pub hashes: BTreeMap<String, String>,
}

impl Rulebook {
    /// Load every kind; every error of every kind at once.
    pub fn load(config: &Config) -> Result<Self, Vec<RuleError>> {
        let mut errors = Vec::new();
        let mut keep = |kind: &'static str, message: String| {
            errors.push(RuleError { kind, message });
        };
        let mappings = load_mappings(config)
            .map_err(|e| keep("mappings", e.join("; ")))
            .ok();
        let calendar = load_calendar(config).map_err(|e| keep("calendar", e)).ok();
        let router = load_router(config)
            .map_err(|e| keep("sharing_disclosure_notice", e))
            .ok();
        let objections = ObjectionRules::load(&config.objection_rules_path())
            .map_err(|e| keep("objections", e.to_string()))
            .ok();
        let repairs = RepairRules::load(&config.repair_rules_path())
            .map_err(|e| keep("repairs", e.to_string()))
            .ok();
        let profiles = Profiles::load(&config.scoring_profiles_dir())
            .map_err(|e| keep("scoring_profiles", e.to_string()))
            .ok();
        let (
            Some(mappings),
            Some(calendar),
            Some(router),
            Some(objections),
            Some(repairs),
            Some(profiles),
        ) = (mappings, calendar, router, objections, repairs, profiles)
        else {
            return Err(errors);
        };
        let mut hashes = BTreeMap::new();
        hashes.insert(
            "mappings".into(),
            dir_hash(&config.mappings.dir, "built-in"),
        );
        hashes.insert(
            "calendar".into(),
            dir_hash(&config.calendar_dir(), "built-in"),
        );
        hashes.insert(
            "sharing_disclosure_notice".into(),
            router.rules_hash().to_string(),
        );
        hashes.insert(
            "objections".into(),
            file_hash(
                &config.objection_rules_path(),
                crate::objections::rules::BUILTIN,
            ),
        );
        hashes.insert(
            "repairs".into(),
            file_hash(&config.repair_rules_path(), crate::repairs::rules::BUILTIN),
        );
        hashes.insert("scoring_profiles".into(), profiles.hash().to_string());
        hashes.insert("agencies".into(), json_hash(&config.agencies));
        hashes.insert("operators".into(), json_hash(&config.operators));
        Ok(Self {
            mappings,
            calendar,
            router,
            objections,
            repairs,
            profiles,
            agencies: config.agencies.clone(),
            operators: config.operators.clone(),
            hashes,
        })
    }
}

/// The mappings: the configured folder, else the built-in ones (said in the log).
pub fn load_mappings(config: &Config) -> Result<MappingSet, Vec<String>> {
    let to_strings = |errs: Vec<crate::mapping::MappingError>| {
        errs.into_iter().map(|e| e.to_string()).collect::<Vec<_>>()
    };
    if config.mappings.dir.is_dir() {
        MappingSet::load_dir(&config.mappings.dir).map_err(to_strings)
    } else {
        tracing::warn!(dir = %config.mappings.dir.display(), "mappings folder not found; using the built-in mappings");
        MappingSet::builtin().map_err(to_strings)
    }
}

/// The working-day calendar: the configured folder, else the built-in years.
pub fn load_calendar(config: &Config) -> Result<Calendar, String> {
    let dir = config.calendar_dir();
    if dir.is_dir() {
        Calendar::load_dir(&dir).map_err(|errs| {
            errs.into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
    } else {
        Calendar::builtin().map_err(|e| e.to_string())
    }
}

/// The sharing, disclosure and public-notice rules, checked together.
pub fn load_router(config: &Config) -> Result<Router, String> {
    Router::load(
        crate::sharing::RuleFiles {
            sharing: &config.sharing_rules_path(),
            disclosure: &config.disclosure_rules_path(),
            notice: &config.public_notice_rules_path(),
        },
        &config.destinations,
    )
    .map_err(|e| e.to_string())
}

fn short(digest: impl AsRef<[u8]>) -> String {
    hex::encode(digest)[..16].to_string()
}

fn file_hash(path: &Path, builtin: &str) -> String {
    let text = std::fs::read(path).unwrap_or_else(|_| builtin.as_bytes().to_vec());
    short(Sha256::digest(&text))
}

fn json_hash<T: serde::Serialize>(value: &T) -> String {
    short(Sha256::digest(
        serde_json::to_vec(value).unwrap_or_default(),
    ))
}

/// The `*.toml` files directly in `dir` (names and text), or `absent` when there are none.
fn dir_hash(dir: &Path, absent: &str) -> String {
    let mut h = Sha256::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|x| x == "toml"));
    paths.sort();
    if paths.is_empty() {
        h.update(absent.as_bytes());
    }
    for p in paths {
        h.update(
            p.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        h.update(std::fs::read(&p).unwrap_or_default());
    }
    short(h.finalize())
}

/// One kind whose data a reload replaced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub kind: String,
    pub from: String,
    pub to: String,
}

/// The rule data in force, shared by every part that applies it. Clones share one state.
#[derive(Clone)]
pub struct Live {
    pub mappings: Swap<MappingSet>,
    pub calendar: SharedCalendar,
    pub router: SharedRouter,
    pub objections: Swap<ObjectionRules>,
    pub repairs: Swap<RepairRules>,
    pub profiles: Swap<Profiles>,
    pub registry: Swap<Registry>,
    pub agencies: Swap<Vec<AgencyConfig>>,
    pub gate: Arc<Gate>,
    hashes: Swap<BTreeMap<String, String>>,
}

impl Live {
    /// The rulebook of the start, with the operators' gate (which holds the CLI's token).
    pub fn new(book: Rulebook, local_token: String) -> Self {
        Self {
            mappings: Swap::new(book.mappings),
            calendar: SharedCalendar::new(book.calendar),
            router: SharedRouter::new(book.router),
            objections: Swap::new(book.objections),
            repairs: Swap::new(book.repairs),
            profiles: Swap::new(book.profiles),
            registry: Swap::new(Registry::new(&book.agencies)),
            gate: Arc::new(Gate::new(&book.operators, local_token)),
            agencies: Swap::new(book.agencies),
            hashes: Swap::new(book.hashes),
        }
    }

    /// The hash of each kind in force.
    pub fn hashes(&self) -> BTreeMap<String, String> {
        (*self.hashes.current()).clone()
    }

    /// Put a loaded rulebook in force: every kind whose hash changed is replaced, each in one
    /// step. Returns what changed.
    pub fn install(&self, book: Rulebook) -> Vec<Change> {
        let before = self.hashes.current();
        let changed = |kind: &str| before.get(kind) != book.hashes.get(kind);
        let mut changes = Vec::new();
        for kind in KINDS {
            if changed(kind) {
                changes.push(Change {
                    kind: kind.to_string(),
                    from: before.get(kind).cloned().unwrap_or_default(),
                    to: book.hashes.get(kind).cloned().unwrap_or_default(),
                });
            }
        }
        if changed("mappings") {
            self.mappings.replace(book.mappings);
        }
        if changed("calendar") {
            self.calendar.replace(book.calendar);
        }
        if changed("sharing_disclosure_notice") {
            self.router.replace(book.router);
        }
        if changed("objections") {
            self.objections.replace(book.objections);
        }
        if changed("repairs") {
            self.repairs.replace(book.repairs);
        }
        if changed("scoring_profiles") {
            self.profiles.replace(book.profiles);
        }
        if changed("agencies") {
            // Rate limits start afresh for every agency: the configured quotas may have changed.
            self.registry.replace(Registry::new(&book.agencies));
            self.agencies.replace(book.agencies);
        }
        if changed("operators") {
            self.gate.replace_operators(&book.operators);
        }
        self.hashes.replace(book.hashes);
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_in(dir: &Path) -> Config {
        let mut c = Config::default();
        c.mappings.dir = dir.join("mappings");
        c.storage.data_dir = dir.join("data");
        c
    }

    fn copy_mappings(to: &Path) {
        let from = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("mappings");
        for sub in ["rules", "scoring", "calendar", "outbound"] {
            std::fs::create_dir_all(to.join("mappings").join(sub)).unwrap();
            for e in std::fs::read_dir(from.join(sub)).unwrap() {
                let p = e.unwrap().path();
                std::fs::copy(
                    &p,
                    to.join("mappings").join(sub).join(p.file_name().unwrap()),
                )
                .unwrap();
            }
        }
    }

    #[test]
    fn every_broken_kind_is_reported_at_once_and_nothing_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        copy_mappings(dir.path());
        let config = config_in(dir.path());
        let live = Live::new(Rulebook::load(&config).unwrap(), "t".into());
        let before = live.hashes();
        let m = dir.path().join("mappings");
        std::fs::write(m.join("rules/objections.toml"), "review = 3").unwrap();
        std::fs::write(m.join("scoring/broken.toml"), "[[profiles]]\nname = 1").unwrap();
        let errors = Rulebook::load(&config).err().unwrap();
        let kinds: Vec<_> = errors.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["objections", "scoring_profiles"], "{errors:?}");
        assert_eq!(live.hashes(), before);
    }

    #[test]
    fn only_the_kinds_that_changed_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        copy_mappings(dir.path());
        let config = config_in(dir.path());
        let live = Live::new(Rulebook::load(&config).unwrap(), "t".into());
        assert!(live.install(Rulebook::load(&config).unwrap()).is_empty());
        let path = dir.path().join("mappings/rules/objections.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("working_days = 15", "working_days = 14"),
        )
        .unwrap();
        let changes = live.install(Rulebook::load(&config).unwrap());
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, "objections");
        assert_eq!(
            live.objections
                .current()
                .review_period("440106", time::macros::date!(2026 - 12 - 07))
                .0,
            14
        );
    }
}
