//! The mapping file format (documented for people in `mappings/README.md`) and its compilation
//! into rules. Every problem in a file is reported, not just the first.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::record::Category;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MappingFile {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub format: SourceFormat,
    #[serde(default)]
    pub category: Option<String>,
    pub records: String,
    #[serde(default)]
    pub agency: Option<String>,
    #[serde(default)]
    pub passthrough: bool,
    #[serde(default)]
    pub fields: BTreeMap<String, RuleFile>,
    /// Header texts of a spreadsheet or CSV file (issue #29) that name a source field besides the
    /// field's own name: `"行政处罚决定书文号" = "CF_WSH"`.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Json,
    Xml,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFile {
    pub path: Option<String>,
    pub paths: Option<Vec<String>>,
    #[serde(rename = "const")]
    pub constant: Option<toml::Value>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub formats: Vec<String>,
    #[serde(default)]
    pub long_term: Vec<String>,
    pub scale: Option<u32>,
    pub map: Option<BTreeMap<String, toml::Value>>,
    pub unmapped: Option<String>,
    pub separator: Option<String>,
    #[serde(default)]
    pub upper: bool,
    pub default: Option<toml::Value>,
    #[serde(default)]
    pub required: bool,
}

/// A compiled rule for one canonical field.
#[derive(Debug, Clone)]
pub struct Rule {
    pub target: Vec<String>,
    pub source: RuleSource,
    pub kind: ValueKind,
    pub map: Option<BTreeMap<String, serde_json::Value>>,
    pub keep_unmapped: bool,
    pub upper: bool,
    pub default: Option<serde_json::Value>,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub enum RuleSource {
    Paths(Vec<String>),
    Const(serde_json::Value),
}

#[derive(Debug, Clone)]
pub enum ValueKind {
    Text,
    Date {
        formats: Vec<String>,
        long_term: Vec<String>,
    },
    Decimal {
        scale: u32,
    },
    Integer,
    Bool,
    List {
        separator: String,
    },
}

/// Canonical fields a mapping may write (besides anything under `content.`).
pub(super) const TARGETS: [&str; 16] = [
    "category",
    "subject.kind",
    "subject.role",
    "subject.id_type",
    "subject.id",
    "subject.name",
    "source.agency",
    "source.record_id",
    "source.region",
    "basis.doc_type",
    "basis.doc_number",
    "basis.decided_on",
    "disclosure.class",
    "disclosure.restriction",
    "valid_from",
    "valid_until",
];

pub(super) fn compile_rule(target: &str, file: RuleFile, errors: &mut Vec<String>) -> Option<Rule> {
    let err_count = errors.len();
    let mut problem = |m: String| errors.push(format!("fields.\"{target}\": {m}"));
    let content_key = target.strip_prefix("content.");
    let target_ok = TARGETS.contains(&target)
        || content_key.is_some_and(|k| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
    if !target_ok {
        problem("not a canonical field (see mappings/README.md); content fields are content.<snake_case>".into());
    }
    let sources = [
        file.path.is_some(),
        file.paths.is_some(),
        file.constant.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        problem("give exactly one of path, paths or const".into());
    }
    let source = match (file.path, file.paths, file.constant) {
        (Some(p), _, _) => RuleSource::Paths(vec![p]),
        (_, Some(ps), _) if !ps.is_empty() => RuleSource::Paths(ps),
        (_, _, Some(c)) => match toml_to_json(&c) {
            Some(v) => RuleSource::Const(v),
            None => {
                problem("const must be a string, number or boolean".into());
                RuleSource::Paths(vec![])
            }
        },
        _ => RuleSource::Paths(vec![]),
    };
    let kind = match file.kind.as_deref().unwrap_or("string") {
        "string" => ValueKind::Text,
        "date" => {
            let formats = if file.formats.is_empty() {
                vec!["YYYY-MM-DD".to_string()]
            } else {
                file.formats
            };
            for f in &formats {
                if !(f.contains("YYYY") && f.contains("MM") && f.contains("DD")) {
                    problem(format!("date format {f:?} must contain YYYY, MM and DD"));
                }
            }
            ValueKind::Date {
                formats,
                long_term: file.long_term,
            }
        }
        "decimal" => ValueKind::Decimal {
            scale: file.scale.unwrap_or(0),
        },
        "integer" => ValueKind::Integer,
        "bool" => ValueKind::Bool,
        "list" => ValueKind::List {
            separator: file.separator.unwrap_or_else(|| ";".into()),
        },
        other => {
            problem(format!(
                "type {other:?} is not one of string, date, decimal, integer, bool, list"
            ));
            ValueKind::Text
        }
    };
    if file.scale.is_some_and(|s| s > 12) {
        problem("scale above 12 is not supported".into());
    }
    let keep_unmapped = match file.unmapped.as_deref() {
        None | Some("reject") => false,
        Some("keep") => true,
        Some(other) => {
            problem(format!("unmapped = {other:?}: use reject or keep"));
            false
        }
    };
    let map = file.map.map(|m| {
        m.into_iter()
            .filter_map(|(k, v)| match toml_to_json(&v) {
                Some(j) => Some((k, j)),
                None => {
                    problem(format!(
                        "map value for {k:?} must be a string, number or boolean"
                    ));
                    None
                }
            })
            .collect()
    });
    let default = file.default.and_then(|d| {
        toml_to_json(&d).or_else(|| {
            problem("default must be a string, number or boolean".into());
            None
        })
    });
    if errors.len() != err_count {
        return None;
    }
    Some(Rule {
        target: target.split('.').map(str::to_string).collect(),
        source,
        kind,
        map,
        keep_unmapped,
        upper: file.upper,
        default,
        required: file.required,
    })
}

pub(super) fn category_of(file: &MappingFile, errors: &mut Vec<String>) -> Option<Category> {
    let code = file.category.as_deref()?;
    Category::from_code(code).or_else(|| {
        errors.push(format!(
            "category {code:?} is not one of the 13 category codes (GD Art. 8)"
        ));
        None
    })
}

fn toml_to_json(v: &toml::Value) -> Option<serde_json::Value> {
    Some(match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Value::from(*f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        _ => return None,
    })
}
