//! Scoring profiles (`mappings/scoring/*.toml`): which archive records move a subject's score and
//! by how much, the grade thresholds, the carry-over of the yearly cycle, chosen by region prefix,
//! subject kind and effective dates (GD Arts. 17-20; LS Arts. 18-20).
//!
//! Owns: parsing and checking every file of the folder at once, and choosing the profile in force
//! for a subject on a day (the window, dates and region prefixes, is [`crate::rule_window`]'s).
//! Never does: read the archive or the clock.
//!
//! Invariants: grade thresholds strictly decrease and end at 0; a profile names at least one
//! region; for one region prefix, subject kind and day at most one profile is in force (checked
//! at load, so the choice is never a matter of file order).

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use time::Date;

use super::Grade;
use crate::record::Category;
use crate::rule_window::{self, Dated, Window};
use crate::subject::SubjectKind;

/// A profiles folder problem: the operator's to fix.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ProfileError {
    pub path: String,
    pub message: String,
}

/// 扣分法 (institutions) or 记分法 (individuals), LS Art. 19. Both work on the 100-point scale:
/// deductions are taken from the base, recorded points are added up against it; the reasons say
/// which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Deduction,
    Points,
}

/// Whether a value comes from the regulation's text or is a documented example the operator
/// replaces with the provincial or city indicator tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueSource {
    Regulation,
    Example,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub grade: Grade,
    pub min: u32,
}

/// One indicator: records of `category` whose content matches every `when` field move the score by
/// `points` (negative: a dishonesty item, which the yearly carry-over and the validity period
/// govern; positive: counted in its own cycle only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub id: String,
    pub category: Category,
    /// Only records from these agencies (default: any). A medical-insurance indicator table
    /// scores the medical-insurance side's own findings; another department's listing still makes
    /// the grade E (GD Art. 20) without moving the points.
    #[serde(default)]
    pub agencies: Vec<String>,
    #[serde(default)]
    pub when: toml::Table,
    pub points: i32,
    pub value: ValueSource,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub regions: Vec<String>,
    pub subject_kinds: Vec<SubjectKind>,
    #[serde(deserialize_with = "crate::calendar::deserialize_toml_date")]
    pub effective_from: Date,
    #[serde(
        default,
        deserialize_with = "crate::calendar::deserialize_toml_date_opt"
    )]
    pub effective_until: Option<Date>,
    /// Gap policy (issue #26): after `effective_until`, with no successor in force for its
    /// regions and subjects, evaluation goes on under this profile and every result says so
    /// (`profile_status = "successor_pending"`). Without it (the default) evaluation of those
    /// subjects stops at the end date, and the rules-in-force view, the log and the cycle say so.
    #[serde(default)]
    pub successor_pending: bool,
    pub method: Method,
    pub base: u32,
    pub dishonesty_valid_years: u8,
    pub carry_grades: Vec<Grade>,
    pub serious_dishonesty_is_e: bool,
    pub serious_dishonesty_value: ValueSource,
    pub source: String,
    pub grades: Vec<Threshold>,
    /// In order: the first item that matches a record is the one that counts.
    pub items: Vec<Item>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    profiles: Vec<Profile>,
}

/// Every profile of the folder.
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    profiles: Vec<(Profile, String)>,
    hash: String,
}

impl Profiles {
    /// Load every `*.toml` in `dir` (sorted by name). A missing folder is no profile at all.
    pub fn load(dir: &Path) -> Result<Self, ProfileError> {
        let err = |message: String| ProfileError {
            path: dir.display().to_string(),
            message,
        };
        let mut paths = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect::<Vec<_>>(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(err(e.to_string())),
        };
        paths.sort();
        let mut profiles = Vec::new();
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| ProfileError {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            sha2::Digest::update(&mut hasher, text.as_bytes());
            let file: File = toml::from_str(&text).map_err(|e| ProfileError {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            for p in file.profiles {
                check(&p).map_err(|message| ProfileError {
                    path: path.display().to_string(),
                    message: format!("profile {}: {message}", p.name),
                })?;
                profiles.push((p, path.display().to_string()));
            }
        }
        check_overlaps(&profiles).map_err(err)?;
        Ok(Self {
            profiles,
            hash: hex::encode(sha2::Digest::finalize(hasher))[..16].to_string(),
        })
    }

    /// From profiles already parsed (tests).
    pub fn from_profiles(list: Vec<Profile>) -> Result<Self, String> {
        for p in &list {
            check(p)?;
        }
        let profiles: Vec<_> = list.into_iter().map(|p| (p, String::new())).collect();
        check_overlaps(&profiles)?;
        Ok(Self {
            profiles,
            hash: String::new(),
        })
    }

    /// A short hash of the files' text, kept with every result.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// Whether any profile is in force for subjects of `kind` on `day` (before reading an archive).
    pub fn any_in_force(&self, kind: SubjectKind, day: Date) -> bool {
        self.profiles
            .iter()
            .any(|(p, _)| p.subject_kinds.contains(&kind) && p.window().in_force(day))
    }

    /// Whether any profile applies to subjects of `kind` on `day`: in force, or ended and marked
    /// `successor_pending`.
    pub fn any_applies(&self, kind: SubjectKind, day: Date) -> bool {
        self.any_in_force(kind, day)
            || self.profiles.iter().any(|(p, _)| {
                p.subject_kinds.contains(&kind) && p.successor_pending && p.window().has_ended(day)
            })
    }

    /// The profile for a subject: the one in force, else (the gap policy) the last ended profile
    /// of its region marked `successor_pending`, with the day it ended.
    pub fn applicable(
        &self,
        region: &str,
        kind: SubjectKind,
        day: Date,
    ) -> Option<(&Profile, Option<Date>)> {
        if let Some(p) = self.select(region, kind, day) {
            return Some((p, None));
        }
        self.profiles
            .iter()
            .map(|(p, _)| p)
            .filter(|p| p.subject_kinds.contains(&kind) && p.successor_pending)
            .filter_map(|p| {
                let ended = p.window().ended_before(day)?;
                let len = p.window().region_specificity(region)?;
                // The most specific, then the last ended (not the last in file order).
                Some(((len, ended), p, ended))
            })
            .max_by_key(|(rank, _, _)| *rank)
            .map(|(_, p, ended)| (p, Some(ended)))
    }

    /// The profile that last governed subjects of `kind` in `region` before `day` and has ended:
    /// named when evaluation stops in a gap.
    pub fn last_ended(&self, region: &str, kind: SubjectKind, day: Date) -> Option<&Profile> {
        self.profiles
            .iter()
            .map(|(p, _)| p)
            .filter(|p| p.subject_kinds.contains(&kind) && p.window().has_ended(day))
            // The last to end of those covering the region, whatever their specificity: it names
            // what stopped, for the operator.
            .filter(|p| p.window().covers(region))
            .max_by_key(|p| p.effective_until)
    }

    /// Every profile with the file it came from.
    pub fn all(&self) -> impl Iterator<Item = (&Profile, &str)> {
        self.profiles.iter().map(|(p, f)| (p, f.as_str()))
    }

    /// The profile in force for a subject of `kind` in `region` on `day`: the longest matching
    /// region prefix wins.
    pub fn select(&self, region: &str, kind: SubjectKind, day: Date) -> Option<&Profile> {
        // Ties cannot happen: two profiles matching a region equally name the same prefix, and
        // `check_overlaps` refuses two of one prefix, kind and day.
        rule_window::select(
            self.profiles
                .iter()
                .map(|(p, _)| p)
                .filter(|p| p.subject_kinds.contains(&kind)),
            region,
            day,
        )
    }
}

impl Dated for Profile {
    fn window(&self) -> Window<'_> {
        Window::new(
            Some(self.effective_from),
            self.effective_until,
            &self.regions,
        )
    }
}

fn check(p: &Profile) -> Result<(), String> {
    // Unlike the other rule files, a profile always names its regions.
    if p.regions.is_empty() || p.window().bad_region().is_some() {
        return Err("regions must be 1 to 6 digit division-code prefixes".into());
    }
    if p.subject_kinds.is_empty() {
        return Err("subject_kinds must name institution and/or individual".into());
    }
    p.window().check_dates()?;
    if p.base == 0 || p.base > 100 {
        return Err("base must be 1 to 100 (the 100-point scale, LS Art. 19)".into());
    }
    if p.dishonesty_valid_years == 0 {
        return Err("dishonesty_valid_years must be at least 1".into());
    }
    let order = [Grade::A, Grade::B, Grade::C, Grade::D, Grade::E];
    let grades: Vec<Grade> = p.grades.iter().map(|t| t.grade).collect();
    if grades != order {
        return Err("grades must list A, B, C, D and E in that order".into());
    }
    if p.grades.windows(2).any(|w| w[0].min <= w[1].min)
        || p.grades.last().is_some_and(|t| t.min != 0)
    {
        return Err("grade thresholds must strictly decrease and E must start at 0".into());
    }
    if p.grades.first().is_some_and(|t| t.min > 100) {
        return Err("grade thresholds are on the 100-point scale".into());
    }
    let mut ids = std::collections::HashSet::new();
    for item in &p.items {
        if !ids.insert(item.id.as_str()) {
            return Err(format!("item {} appears twice", item.id));
        }
        if item.points == 0 {
            return Err(format!("item {}: points must not be 0", item.id));
        }
        for (field, value) in &item.when {
            if !matches!(
                value,
                toml::Value::String(_) | toml::Value::Boolean(_) | toml::Value::Integer(_)
            ) {
                return Err(format!(
                    "item {}: when.{field} must be a string, a boolean or an integer",
                    item.id
                ));
            }
        }
    }
    Ok(())
}

fn check_overlaps(profiles: &[(Profile, String)]) -> Result<(), String> {
    for (i, (a, _)) in profiles.iter().enumerate() {
        for (b, _) in &profiles[i + 1..] {
            let same_region = a.regions.iter().any(|r| b.regions.contains(r));
            let same_kind = a.subject_kinds.iter().any(|k| b.subject_kinds.contains(k));
            let dates_overlap = a.window().shares_a_day_with(&b.window());
            if same_region && same_kind && dates_overlap {
                return Err(format!(
                    "profiles {} and {} are both in force for the same region, subject kind and days",
                    a.name, b.name
                ));
            }
        }
    }
    Ok(())
}

impl Item {
    /// Whether a record of `category` with this content is what the item counts. A content field
    /// holding a list matches when the list holds the value.
    pub fn matches(
        &self,
        agency: &str,
        category: Category,
        content: &serde_json::Map<String, Value>,
    ) -> bool {
        category == self.category
            && (self.agencies.is_empty() || self.agencies.iter().any(|a| a == agency))
            && self.when.iter().all(|(field, want)| {
                let Some(have) = content.get(field) else {
                    return false;
                };
                match have {
                    Value::Array(items) => items.iter().any(|v| same(v, want)),
                    v => same(v, want),
                }
            })
    }
}

fn same(have: &Value, want: &toml::Value) -> bool {
    match (have, want) {
        (Value::String(h), toml::Value::String(w)) => h.trim() == w,
        (Value::Bool(h), toml::Value::Boolean(w)) => h == w,
        (Value::Number(h), toml::Value::Integer(w)) => h.as_i64() == Some(*w),
        _ => false,
    }
}

impl Profile {
    pub fn grade_for(&self, points: u32) -> Grade {
        self.grades
            .iter()
            .find(|t| points >= t.min)
            .map(|t| t.grade)
            .unwrap_or(Grade::E)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Profiles {
        Profiles::load(
            &Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("mappings/scoring"),
        )
        .unwrap()
    }

    #[test]
    fn an_ended_profile_marked_successor_pending_goes_on_until_a_successor_gd_art_43() {
        let shipped = shipped();
        let mut list: Vec<Profile> = shipped.all().map(|(p, _)| p.clone()).collect();
        let after = time::macros::date!(2026 - 12 - 07);
        // Unmarked (the default): GD ended 2026-06-30 and nothing applies; the ended one is named.
        let p = Profiles::from_profiles(list.clone()).unwrap();
        assert!(p
            .applicable("440106", SubjectKind::Institution, after)
            .is_none());
        assert_eq!(
            p.last_ended("440106", SubjectKind::Institution, after)
                .unwrap()
                .name,
            "gd-institution"
        );
        // Marked: it still applies past its end, and says since when.
        for profile in &mut list {
            profile.successor_pending = profile.name == "gd-institution";
        }
        let p = Profiles::from_profiles(list.clone()).unwrap();
        let (profile, ended) = p
            .applicable("440106", SubjectKind::Institution, after)
            .unwrap();
        assert_eq!(profile.name, "gd-institution");
        assert_eq!(ended, Some(time::macros::date!(2026 - 06 - 30)));
        assert!(p.any_applies(SubjectKind::Institution, after));
        assert!(
            p.applicable("540102", SubjectKind::Institution, after)
                .is_none(),
            "only its regions"
        );
        // Within its dates it is simply in force.
        let inside = time::macros::date!(2026 - 03 - 02);
        assert_eq!(
            p.applicable("440106", SubjectKind::Institution, inside)
                .unwrap()
                .1,
            None
        );
        // A successor in force wins over the pending one.
        let mut successor = list
            .iter()
            .find(|p| p.name == "gd-institution")
            .unwrap()
            .clone();
        successor.name = "gd2026-institution".into();
        successor.successor_pending = false;
        successor.effective_from = time::macros::date!(2026 - 07 - 01);
        successor.effective_until = None;
        list.push(successor);
        let p = Profiles::from_profiles(list).unwrap();
        let (profile, ended) = p
            .applicable("440106", SubjectKind::Institution, after)
            .unwrap();
        assert_eq!((profile.name.as_str(), ended), ("gd2026-institution", None));
    }

    #[test]
    fn the_shipped_profiles_load_and_are_chosen_by_region_kind_and_date() {
        let p = shipped();
        assert_eq!(p.len(), 4);
        let day = time::macros::date!(2025 - 03 - 01);
        assert_eq!(
            p.select("540102", SubjectKind::Institution, day)
                .unwrap()
                .name,
            "ls-institution"
        );
        assert_eq!(
            p.select("540102", SubjectKind::Individual, day)
                .unwrap()
                .name,
            "ls-individual"
        );
        assert_eq!(
            p.select("440106", SubjectKind::Institution, day)
                .unwrap()
                .name,
            "gd-institution"
        );
        assert!(
            p.select("310101", SubjectKind::Institution, day).is_none(),
            "no profile for Shanghai"
        );
        // LS Art. 44: the Lhasa measures ran to 2025-12-31; GD Art. 43: Guangdong's to 2026-06-30.
        assert!(p
            .select(
                "540102",
                SubjectKind::Institution,
                time::macros::date!(2026 - 01 - 01)
            )
            .is_none());
        assert!(p
            .select(
                "440106",
                SubjectKind::Institution,
                time::macros::date!(2026 - 07 - 01)
            )
            .is_none());
    }

    #[test]
    fn grade_thresholds_are_those_of_ls_art_19() {
        let p = shipped();
        let ls = p
            .select(
                "540102",
                SubjectKind::Institution,
                time::macros::date!(2025 - 03 - 01),
            )
            .unwrap();
        for (points, grade) in [
            (100, Grade::A),
            (95, Grade::A),
            (94, Grade::B),
            (85, Grade::B),
            (84, Grade::C),
            (75, Grade::C),
            (74, Grade::D),
            (65, Grade::D),
            (64, Grade::E),
            (0, Grade::E),
        ] {
            assert_eq!(ls.grade_for(points), grade, "{points} points");
        }
    }

    #[test]
    fn overlapping_profiles_and_bad_thresholds_are_refused() {
        let mut a = shipped().profiles[0].0.clone();
        let b = a.clone();
        assert!(Profiles::from_profiles(vec![a.clone(), b])
            .unwrap_err()
            .contains("both in force"));
        a.grades[1].min = 96;
        assert!(Profiles::from_profiles(vec![a])
            .unwrap_err()
            .contains("strictly decrease"));
    }

    #[test]
    fn an_item_matches_content_fields_and_list_members() {
        let item = Item {
            id: "x".into(),
            category: Category::Administrative,
            agencies: Vec::new(),
            when: toml::toml! { action = "penalty" severity = "serious" },
            points: -5,
            value: ValueSource::Example,
        };
        let content = serde_json::json!({"action": "penalty", "severity": "serious"});
        assert!(item.matches("mi", Category::Administrative, content.as_object().unwrap()));
        assert!(!item.matches("mi", Category::Judicial, content.as_object().unwrap()));
        let general = serde_json::json!({"action": "penalty", "severity": "general"});
        assert!(!item.matches("mi", Category::Administrative, general.as_object().unwrap()));
        let listed = Item {
            when: toml::toml! { penalty_types = "罚款" },
            agencies: vec!["mi".into()],
            ..item
        };
        let content = serde_json::json!({"penalty_types": ["警告", "罚款"]});
        assert!(listed.matches("mi", Category::Administrative, content.as_object().unwrap()));
        assert!(!listed.matches(
            "court",
            Category::Administrative,
            content.as_object().unwrap()
        ));
    }
}
