//! Declarative mappings: one TOML file per source format in `mappings/` turns that source's records
//! into canonical records (GD Art. 8 categories). The language is documented in
//! `mappings/README.md`; adding a source format means adding a file, never Rust code.
//!
//! Owns: loading and checking mapping files ([`MappingSet`]), parsing a source document, applying
//! rules, and running [`crate::record::validate`] on each result ([`Mapping::normalize`]), so the
//! server and the offline `check` command share exactly one path.
//!
//! Never does: I/O on the network, storage, or logging of record values.
//!
//! Invariants: a loaded mapping has been fully checked (every rule compiles, ids match file
//! stems); a bad record is rejected alone, naming the source field when the mapping knows it.

mod convert;
pub use convert::format_date;
pub mod json;
pub mod source;
mod spec;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::record::{self, CanonicalRecord, Category, ValidationContext};
pub use json::Limits;
pub use source::ParseError;
pub use spec::SourceFormat;
use spec::{Rule, RuleSource, ValueKind};

/// A mapping file problem: the operator's fault, found at start-up or by `mappings check`.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("cannot read {file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
}

/// One loaded, checked mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub id: String,
    pub name: String,
    pub description: String,
    pub format: SourceFormat,
    pub category: Option<Category>,
    pub records: String,
    pub agency: Option<String>,
    passthrough: bool,
    rules: Vec<Rule>,
    /// Alternative header texts of a file, normalized ([`header_key`]) -> the source path they
    /// name (`[columns]`).
    columns: BTreeMap<String, String>,
}

/// A mapped record: its source id, and its untyped canonical value or its mapping problems.
type Mapped = (Option<String>, Result<Value, Vec<(String, String)>>);

/// Every mapping the gateway knows, by id.
#[derive(Debug, Clone, Default)]
pub struct MappingSet {
    mappings: BTreeMap<String, Mapping>,
}

/// The result of one record of a batch.
#[derive(Debug, Clone)]
pub struct Normalized {
    pub index: usize,
    pub outcome: Result<CanonicalRecord, Rejection>,
}

/// Why one record was rejected, in terms the agency can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub index: usize,
    /// A file's row as its user sees it in the spreadsheet (the header is row 1 when it is the
    /// first row); absent for JSON and XML batches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    /// A file's column (its header text) holding the field that failed, when a column holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub record_id: Option<String>,
    /// The source field when the mapping maps it, else the canonical field.
    pub field: String,
    pub canonical_field: String,
    pub reason: String,
    /// All problems of the record when there is more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub field: String,
    pub canonical_field: String,
    pub reason: String,
}

/// Built-in copies of the shipped mappings, used when the configured folder does not exist so the
/// binary runs from anywhere.
const BUILTIN: [(&str, &str); 12] = [
    (
        "canonical.toml",
        include_str!("../../../../mappings/canonical.toml"),
    ),
    (
        "market-registration.toml",
        include_str!("../../../../mappings/market-registration.toml"),
    ),
    (
        "market-abnormal-operation.toml",
        include_str!("../../../../mappings/market-abnormal-operation.toml"),
    ),
    (
        "tax-major-violations.toml",
        include_str!("../../../../mappings/tax-major-violations.toml"),
    ),
    (
        "health-practitioner-qualifications.toml",
        include_str!("../../../../mappings/health-practitioner-qualifications.toml"),
    ),
    (
        "court-dishonest-debtors.toml",
        include_str!("../../../../mappings/court-dishonest-debtors.toml"),
    ),
    (
        "court-judgments.toml",
        include_str!("../../../../mappings/court-judgments.toml"),
    ),
    (
        "mi-penalties.toml",
        include_str!("../../../../mappings/mi-penalties.toml"),
    ),
    (
        "mi-licences.toml",
        include_str!("../../../../mappings/mi-licences.toml"),
    ),
    (
        "mi-agreement-performance.toml",
        include_str!("../../../../mappings/mi-agreement-performance.toml"),
    ),
    (
        "mi-commitments.toml",
        include_str!("../../../../mappings/mi-commitments.toml"),
    ),
    (
        "mi-evaluations.toml",
        include_str!("../../../../mappings/mi-evaluations.toml"),
    ),
];

impl MappingSet {
    /// Load every `*.toml` directly in `dir`, reporting every error at once.
    pub fn load_dir(dir: &Path) -> Result<Self, Vec<MappingError>> {
        let entries = std::fs::read_dir(dir).map_err(|source| {
            vec![MappingError::Io {
                file: dir.display().to_string(),
                source,
            }]
        })?;
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") || !path.is_file() {
                continue;
            }
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            match std::fs::read_to_string(&path) {
                Ok(text) => files.push((name, text)),
                Err(source) => errors.push(MappingError::Io {
                    file: path.display().to_string(),
                    source,
                }),
            }
        }
        files.sort();
        match Self::from_sources(&files) {
            Ok(set) if errors.is_empty() => Ok(set),
            Ok(_) => Err(errors),
            Err(mut more) => {
                errors.append(&mut more);
                Err(errors)
            }
        }
    }

    /// The mappings compiled into the binary.
    pub fn builtin() -> Result<Self, Vec<MappingError>> {
        let files: Vec<(String, String)> = BUILTIN
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        Self::from_sources(&files)
    }

    pub fn from_sources(files: &[(String, String)]) -> Result<Self, Vec<MappingError>> {
        let mut set = Self::default();
        let mut errors = Vec::new();
        for (name, text) in files {
            match Mapping::parse(name, text) {
                Ok(m) => {
                    set.mappings.insert(m.id.clone(), m);
                }
                Err(messages) => {
                    errors.extend(messages.into_iter().map(|message| MappingError::Invalid {
                        file: name.clone(),
                        message,
                    }))
                }
            }
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, id: &str) -> Option<&Mapping> {
        self.mappings.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Mapping> {
        self.mappings.values()
    }

    pub fn len(&self) -> usize {
        self.mappings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mappings.is_empty()
    }
}

impl Mapping {
    fn parse(file_name: &str, text: &str) -> Result<Mapping, Vec<String>> {
        let file: spec::MappingFile = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut errors = Vec::new();
        let stem = file_name.strip_suffix(".toml").unwrap_or(file_name);
        if file.id != stem {
            errors.push(format!(
                "id {:?} must equal the file name {stem:?}",
                file.id
            ));
        }
        if file.id.is_empty()
            || !file
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            errors.push("id must be lower-case letters, digits and '-'".into());
        }
        let category = spec::category_of(&file, &mut errors);
        if file.passthrough && !file.fields.is_empty() {
            errors.push("a passthrough mapping has no fields".into());
        }
        if !file.passthrough && category.is_none() && !file.fields.contains_key("category") {
            errors.push("give a category, or map fields.category".into());
        }
        if !file.passthrough && !file.fields.contains_key("source.record_id") {
            errors.push(
                "fields.\"source.record_id\" is required: every record needs its source id".into(),
            );
        }
        let mut rules = Vec::new();
        for (target, rule) in file.fields {
            if let Some(rule) = spec::compile_rule(&target, rule, &mut errors) {
                rules.push(rule);
            }
        }
        let columns = compile_columns(file.columns, &rules, file.passthrough, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Mapping {
            id: file.id,
            name: file.name,
            description: file.description,
            format: file.format,
            category,
            records: file.records,
            agency: file.agency,
            passthrough: file.passthrough,
            rules,
            columns,
        })
    }

    /// Parse a whole document, map and validate every record, within the default limits.
    pub fn normalize(
        &self,
        body: &[u8],
        ctx: &ValidationContext,
    ) -> Result<Vec<Normalized>, ParseError> {
        self.normalize_bounded(body, ctx, &Limits::default())
    }

    /// Parse a document, map and validate every record, within `limits` (issue #31): more than
    /// `limits.max_records` records refuse the batch before any record is mapped; a JSON batch is
    /// read one record at a time (each parsed, mapped, validated and dropped before the next), so
    /// only the results are held, never the document as one tree.
    pub fn normalize_bounded(
        &self,
        body: &[u8],
        ctx: &ValidationContext,
        limits: &Limits,
    ) -> Result<Vec<Normalized>, ParseError> {
        let finish = |index: usize, mapped: Mapped| self.finish(index, mapped, ctx);
        match self.format {
            SourceFormat::Json => {
                let text = source::json_text(body)?;
                let reader = json::BatchReader::new(text, *limits);
                let records = reader.records(&self.records)?;
                let mut out = Vec::with_capacity(records.len());
                for (index, raw) in records.into_iter().enumerate() {
                    let normalized = match reader.record(raw)? {
                        json::Record::Read { value, found } if found.is_empty() => {
                            finish(index, self.map_json(value))
                        }
                        json::Record::Read { value, found } => {
                            let (record_id, _) = self.map_json(value);
                            Normalized {
                                index,
                                outcome: Err(self.refused(index, record_id, found)),
                            }
                        }
                        json::Record::Refused(found) => Normalized {
                            index,
                            outcome: Err(self.refused(index, None, vec![found])),
                        },
                    };
                    out.push(normalized);
                }
                Ok(out)
            }
            SourceFormat::Xml => {
                let root = source::parse_xml_bounded(body, limits)?;
                let records = root.select(&self.records)?;
                if records.len() > limits.max_records {
                    return Err(ParseError::TooManyRecords(limits.max_records));
                }
                Ok(records
                    .into_iter()
                    .enumerate()
                    .map(|(index, r)| {
                        finish(
                            index,
                            self.apply(|path| Ok(r.value_at(path).map(str::to_string))),
                        )
                    })
                    .collect())
            }
        }
    }

    /// Validate one mapped record: the canonical record, or its rejection naming source fields.
    fn finish(
        &self,
        index: usize,
        (record_id, value): Mapped,
        ctx: &ValidationContext,
    ) -> Normalized {
        let outcome = match value {
            Ok(value) => record::validate_owned(value, ctx).map_err(|errs| {
                self.rejection(
                    index,
                    record_id,
                    errs.into_iter().map(|e| (e.field, e.reason)).collect(),
                )
            }),
            Err(problems) => Err(self.rejection(index, record_id, problems)),
        };
        Normalized { index, outcome }
    }

    /// Map and validate one row of a file (issue #29): `read` gives the text of the cell holding a
    /// source path (`None` when the file has no such column or the cell is empty), or why the
    /// cell cannot be read. The same rules and validation as a JSON or XML record.
    pub fn normalize_row(
        &self,
        index: usize,
        read: impl Fn(&str) -> Result<Option<String>, String>,
        ctx: &ValidationContext,
    ) -> Normalized {
        self.finish(index, self.apply(read), ctx)
    }

    /// Whether each record is already canonical (the `canonical` mapping): such a mapping reads
    /// no columns, so it takes no files.
    pub fn is_passthrough(&self) -> bool {
        self.passthrough
    }

    /// Every source path the rules read (character ranges cut off), each once, in rule order.
    pub fn source_paths(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for rule in &self.rules {
            if let RuleSource::Paths(paths) = &rule.source {
                for p in paths {
                    let path = convert::char_range(p).0.to_string();
                    if !out.contains(&path) {
                        out.push(path);
                    }
                }
            }
        }
        out
    }

    /// The source path a file header names: a path the rules read (ASCII case aside), or an
    /// alternative header text of `[columns]`. Both compared after [`header_key`].
    pub fn column_for_header(&self, header: &str) -> Option<String> {
        let key = header_key(header);
        if key.is_empty() {
            return None;
        }
        if let Some(path) = self.columns.get(&key) {
            return Some(path.clone());
        }
        self.source_paths()
            .into_iter()
            .find(|p| header_key(p).eq_ignore_ascii_case(&key))
    }

    /// The alternative header texts `[columns]` gives a source path (normalized).
    pub fn headers_of(&self, path: &str) -> Vec<String> {
        self.columns
            .iter()
            .filter(|(_, p)| p.as_str() == path)
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// The first source pattern of the date rule reading `path`, if a date rule reads it: how a
    /// spreadsheet's date cell in that column is written out for the rule (so `long_term`
    /// values such as `2099/12/31` still match).
    pub fn date_format_of(&self, path: &str) -> Option<&str> {
        self.rules.iter().find_map(|r| match (&r.source, &r.kind) {
            (RuleSource::Paths(ps), ValueKind::Date { formats, .. })
                if ps.iter().any(|p| convert::char_range(p).0 == path) =>
            {
                formats.first().map(String::as_str)
            }
            _ => None,
        })
    }

    /// The canonical fields every record of this mapping needs from a source path (no
    /// constant, no default), each with the paths that can give it: a file without a column for
    /// any of them cannot give one valid record (issue #29: one file-level error instead of
    /// every row rejected). Required are the rules marked `required`, the canonical record's
    /// own fields (subject, source id and region, disclosure class), the content fields the
    /// category needs, and the legal basis of a penalty or a dishonesty finding (GD Art. 26).
    pub fn required_sources(&self) -> Vec<(String, Vec<String>)> {
        const ALWAYS: [&str; 9] = [
            "category",
            "subject.kind",
            "subject.role",
            "subject.id_type",
            "subject.id",
            "subject.name",
            "source.record_id",
            "source.region",
            "disclosure.class",
        ];
        let is_penalty = self.rules.iter().any(|r| {
            r.target.join(".") == "content.action"
                && matches!(&r.source, RuleSource::Const(v) if v == "penalty")
        });
        let under = |r: &Rule, top: &str| r.target.first().map(String::as_str) == Some(top);
        let writes_basis = self.rules.iter().any(|r| under(r, "basis"));
        let needs_basis = is_penalty
            || matches!(
                self.category,
                Some(Category::DishonestList | Category::Judicial)
            )
            || writes_basis;
        let content: Vec<String> = self
            .category
            .map(|c| {
                record::required_content_fields(c)
                    .iter()
                    .map(|f| format!("content.{f}"))
                    .collect()
            })
            .unwrap_or_default();
        self.rules
            .iter()
            .filter(|r| r.default.is_none())
            .filter_map(|r| {
                let target = r.target.join(".");
                let needed = r.required
                    || ALWAYS.contains(&target.as_str())
                    || content.contains(&target)
                    || (is_penalty && target == "content.penalty_types")
                    || (needs_basis && under(r, "basis"));
                match &r.source {
                    RuleSource::Paths(ps) if needed => Some((
                        target,
                        ps.iter()
                            .map(|p| convert::char_range(p).0.to_string())
                            .collect(),
                    )),
                    _ => None,
                }
            })
            .collect()
    }

    /// One JSON source record as an untyped canonical value (or its mapping problems).
    fn map_json(&self, record: Value) -> Mapped {
        if self.passthrough {
            let id = record.pointer("/source/record_id").and_then(text_of);
            (id, Ok(record))
        } else {
            self.apply(|path| json_value_at(&record, path))
        }
    }

    /// A record refused while it was read: each problem names the source path.
    fn refused(
        &self,
        index: usize,
        record_id: Option<String>,
        found: Vec<json::Found>,
    ) -> Rejection {
        // A refused key or path can be as long as the body allows: what a receipt and the audit
        // chain say of it is cut to `MAX_ECHO_CHARS`, so their size follows the configuration.
        let mut problems: Vec<Problem> = found
            .into_iter()
            .map(|f| Problem {
                canonical_field: echo(
                    &self
                        .canonical_field(&f.path)
                        .unwrap_or_else(|| f.path.clone()),
                ),
                field: echo(&f.path),
                reason: echo(&f.issue.to_string()),
            })
            .collect();
        let first = problems.first().cloned().unwrap_or(Problem {
            field: String::new(),
            canonical_field: String::new(),
            reason: "rejected".into(),
        });
        if problems.len() == 1 {
            problems.clear();
        }
        Rejection {
            index,
            row: None,
            column: None,
            // Never a personal number in a receipt, the log or the chain (see `rejection`).
            record_id: record_id.map(|id| echo(&crate::subject::ResidentId::masked_in(&id))),
            field: first.field,
            canonical_field: first.canonical_field,
            reason: first.reason,
            problems,
        }
    }

    /// The canonical field a source path is mapped to, when a rule reads it.
    fn canonical_field(&self, source_path: &str) -> Option<String> {
        self.rules
            .iter()
            .find(|r| match &r.source {
                RuleSource::Paths(p) => p.iter().any(|p| convert::char_range(p).0 == source_path),
                RuleSource::Const(_) => false,
            })
            .map(|r| r.target.join("."))
    }

    /// Apply every rule to one source record.
    fn apply(&self, read: impl Fn(&str) -> Result<Option<String>, String>) -> Mapped {
        let mut out = Map::new();
        let mut problems = Vec::new();
        let mut record_id = None;
        if let Some(c) = self.category {
            out.insert("category".into(), Value::String(c.code().into()));
        }
        for rule in &self.rules {
            let target = rule.target.join(".");
            match self.rule_value(rule, &read) {
                Ok(Some(v)) => {
                    if target == "source.record_id" {
                        record_id = text_of(&v);
                    }
                    insert_at(&mut out, &rule.target, v);
                }
                Ok(None) => {}
                Err(reason) => problems.push((target, reason)),
            }
        }
        if problems.is_empty() {
            (record_id, Ok(Value::Object(out)))
        } else {
            (record_id, Err(problems))
        }
    }

    fn rule_value(
        &self,
        rule: &Rule,
        read: &impl Fn(&str) -> Result<Option<String>, String>,
    ) -> Result<Option<Value>, String> {
        let raw = match &rule.source {
            RuleSource::Const(v) => return Ok(Some(v.clone())),
            RuleSource::Paths(paths) => {
                let mut found = None;
                for p in paths {
                    let (path, chars) = convert::char_range(p);
                    if let Some(v) = read(path)? {
                        let v = v.trim();
                        let v = match chars {
                            None => Some(v.to_string()),
                            Some(range) => convert::chars_of(v, range),
                        };
                        if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
                            found = Some(v);
                            break;
                        }
                    }
                }
                found
            }
        };
        let Some(mut raw) = raw else {
            if let Some(d) = &rule.default {
                return Ok(Some(d.clone()));
            }
            if rule.required {
                return Err("is required".into());
            }
            return Ok(None);
        };
        if rule.upper {
            raw = raw.to_uppercase();
        }
        if let Some(map) = &rule.map {
            match map.get(&raw) {
                Some(v) => return Ok(Some(v.clone())),
                None if rule.keep_unmapped => {}
                None => return Err("value is not one of the values this mapping knows".into()),
            }
        }
        Ok(Some(match &rule.kind {
            ValueKind::Text => Value::String(raw),
            ValueKind::Date { formats, long_term } => {
                if long_term.contains(&raw) {
                    return Ok(None);
                }
                let date = convert::date(&raw, formats).ok_or_else(|| {
                    format!(
                        "not a real date in the expected format ({})",
                        formats.join(" or ")
                    )
                })?;
                // `2099/12/31` written in another accepted pattern (`2099-12-31`, or a
                // spreadsheet's date cell) is the same long-term date.
                if long_term
                    .iter()
                    .any(|l| convert::date(l, formats).as_deref() == Some(date.as_str()))
                {
                    return Ok(None);
                }
                Value::String(date)
            }
            ValueKind::Decimal { scale } => Value::String(
                convert::decimal(&raw, *scale)
                    .ok_or("not a decimal number (digits, one '.', optional sign)")?,
            ),
            ValueKind::Integer => {
                Value::from(convert::integer(&raw).ok_or("not an integer that fits in 64 bits")?)
            }
            ValueKind::Bool => Value::Bool(convert::boolean(&raw).ok_or("not a yes/no value")?),
            ValueKind::List { separator } => Value::Array(
                convert::list(&raw, separator)
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            ),
        }))
    }

    fn rejection(
        &self,
        index: usize,
        record_id: Option<String>,
        errors: Vec<(String, String)>,
    ) -> Rejection {
        let mut problems: Vec<Problem> = errors
            .into_iter()
            .map(|(canonical_field, reason)| Problem {
                field: self
                    .source_field(&canonical_field)
                    .unwrap_or_else(|| canonical_field.clone()),
                canonical_field,
                reason,
            })
            .collect();
        let first = problems.first().cloned().unwrap_or(Problem {
            field: String::new(),
            canonical_field: String::new(),
            reason: "rejected".into(),
        });
        if problems.len() == 1 {
            problems.clear();
        }
        Rejection {
            index,
            row: None,
            column: None,
            // Echoed to the sender, logged and audited: never with a personal number in it
            // (the validator refuses such an id; issue #31).
            record_id: record_id.map(|id| crate::subject::ResidentId::masked_in(&id)),
            field: first.field,
            canonical_field: first.canonical_field,
            reason: first.reason,
            problems,
        }
    }

    /// The source field a canonical field was read from, when it was read from one.
    fn source_field(&self, canonical: &str) -> Option<String> {
        self.rules
            .iter()
            .find(|r| r.target.join(".") == canonical)
            .and_then(|r| match &r.source {
                RuleSource::Paths(p) => Some(p.join(" | ")),
                RuleSource::Const(_) => None,
            })
    }
}

/// A file header as compared with field names and `[columns]` (issue #29): without any
/// whitespace (templates break long headers over lines), full-width brackets as ASCII ones
/// (`罚款金额（万元）` = `罚款金额(万元)`), and without the `*` that templates put before or after a
/// required column's name.
pub fn header_key(header: &str) -> String {
    let text: String = header
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '（' => '(',
            '）' => ')',
            '［' | '【' => '[',
            '］' | '】' => ']',
            '＊' => '*',
            other => other,
        })
        .collect();
    text.trim_matches('*').to_string()
}

/// Check and normalize `[columns]`: each names a path a rule reads, and no two header texts are
/// the same once normalized.
fn compile_columns(
    columns: BTreeMap<String, String>,
    rules: &[Rule],
    passthrough: bool,
    errors: &mut Vec<String>,
) -> BTreeMap<String, String> {
    if passthrough && !columns.is_empty() {
        errors.push("a passthrough mapping reads no columns: remove [columns]".into());
    }
    let read: Vec<&str> = rules
        .iter()
        .filter_map(|r| match &r.source {
            RuleSource::Paths(ps) => Some(ps),
            RuleSource::Const(_) => None,
        })
        .flatten()
        .map(|p| convert::char_range(p).0)
        .collect();
    let mut out = BTreeMap::new();
    for (header, path) in columns {
        let key = header_key(&header);
        if key.is_empty() {
            errors.push(format!("columns.{header:?}: an empty header text"));
            continue;
        }
        if !read.contains(&path.as_str()) {
            errors.push(format!(
                "columns.{header:?}: names {path:?}, which no field of this mapping reads"
            ));
            continue;
        }
        if let Some(other) = out.insert(key, path.clone()) {
            if other != path {
                errors.push(format!(
                    "columns.{header:?}: the same header (once spaces, brackets and `*` are set aside) already names {other:?}"
                ));
            }
        }
    }
    out
}

fn json_value_at(record: &Value, path: &str) -> Result<Option<String>, String> {
    let mut node = record;
    for segment in path.split('.') {
        node = match node {
            Value::Object(m) => match m.get(segment) {
                Some(v) => v,
                None => return Ok(None),
            },
            Value::Array(a) => match segment.parse::<usize>().ok().and_then(|i| a.get(i)) {
                Some(v) => v,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
    }
    match node {
        Value::Null => Ok(None),
        Value::Object(_) | Value::Array(_) => Err(format!(
            "`{path}` must be a single value, not an object or array"
        )),
        other => Ok(text_of(other)),
    }
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn insert_at(out: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = out;
    for p in parents {
        let entry = node
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else { return };
        node = next;
    }
    node.insert(last.clone(), value);
}

/// The longest text a rejection repeats from the input (a path, a key, a reason naming it).
pub const MAX_ECHO_CHARS: usize = 256;

/// `text` cut to [`MAX_ECHO_CHARS`] characters, marked when cut.
fn echo(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PENALTY_MAPPING: &str = r#"
id = "test-penalties"
name = "测试"
format = "json"
category = "administrative"
records = "data"
[fields]
"source.record_id" = { path = "CF_WSH" }
"source.region" = { path = "XZQH" }
"subject.kind" = { const = "institution" }
"subject.role" = { const = "designated_medical_institution" }
"subject.id_type" = { const = "uscc" }
"subject.id" = { paths = ["CF_XDR_SHXYM", "CF_XDR_GSZC"], upper = true }
"subject.name" = { path = "CF_XDR_MC" }
"basis.doc_type" = { const = "penalty_decision" }
"basis.doc_number" = { path = "CF_WSH" }
"basis.decided_on" = { path = "CF_JDRQ", type = "date", formats = ["YYYY/MM/DD"] }
"valid_until" = { path = "CF_YXQ", type = "date", formats = ["YYYY/MM/DD"], long_term = ["2099/12/31"] }
"disclosure.class" = { const = "public" }
"content.action" = { const = "penalty" }
"content.authority" = { path = "CF_CFJG" }
"content.penalty_types" = { path = "CF_CFLB", type = "list" }
"content.fine_yuan" = { path = "CF_NR_FK", type = "decimal", scale = 4 }
"#;

    fn mapping() -> Mapping {
        Mapping::parse("test-penalties.toml", PENALTY_MAPPING).expect("mapping compiles")
    }

    fn ctx() -> ValidationContext {
        ValidationContext {
            authenticated_agency: Some("medical_insurance".into()),
            incoming: true,
            ..Default::default()
        }
    }

    #[test]
    fn maps_shuanggongshi_codes() {
        let body = r#"{"data": [{"CF_WSH": "穗医保罚〔2025〕3号", "XZQH": "440100", "CF_XDR_SHXYM": "91310110666007217t",
            "CF_XDR_MC": "某医院", "CF_JDRQ": "2025/3/14", "CF_YXQ": "2099/12/31", "CF_CFJG": "广州市医疗保障局",
            "CF_CFLB": "警告;罚款", "CF_NR_FK": 0.5}]}"#;
        let out = mapping().normalize(body.as_bytes(), &ctx()).unwrap();
        let rec = out[0].outcome.as_ref().expect("accepted");
        assert_eq!(rec.content["fine_yuan"], "5000");
        assert_eq!(rec.valid_until, None, "2099/12/31 means long-term");
        assert_eq!(rec.subject.id.as_str(), "91310110666007217T");
        assert_eq!(
            rec.content["penalty_types"],
            serde_json::json!(["警告", "罚款"])
        );
    }

    #[test]
    fn rejections_name_the_source_field() {
        let body = r#"{"data": [{"CF_WSH": "X-1", "XZQH": "440100", "CF_XDR_SHXYM": "91310110666007217U",
            "CF_XDR_MC": "某医院", "CF_JDRQ": "2025/02/30", "CF_CFJG": "局", "CF_CFLB": "罚款"}]}"#;
        let out = mapping().normalize(body.as_bytes(), &ctx()).unwrap();
        let rej = out[0].outcome.as_ref().expect_err("rejected");
        assert_eq!(rej.record_id.as_deref(), Some("X-1"));
        assert_eq!(rej.field, "CF_JDRQ");
        assert_eq!(rej.canonical_field, "basis.decided_on");
    }

    #[test]
    fn wrong_shape_is_a_document_error() {
        assert!(matches!(
            mapping().normalize(b"[1,2]", &ctx()),
            Err(ParseError::Shape(_))
        ));
    }

    #[test]
    fn bad_mapping_files_report_every_problem() {
        let bad = "id = \"x\"\nname = \"n\"\nformat = \"json\"\ncategory = \"nope\"\nrecords = \"\"\n[fields]\n\"subject.idd\" = { path = \"a\" }\n\"content.x\" = { path = \"a\", const = \"b\" }\n";
        let errs = Mapping::parse("y.toml", bad).unwrap_err();
        assert!(errs.len() >= 4, "{errs:?}");
    }

    #[test]
    fn columns_name_fields_the_mapping_reads() {
        let with = |columns: &str| {
            Mapping::parse(
                "test-penalties.toml",
                &format!("{PENALTY_MAPPING}\n[columns]\n{columns}\n"),
            )
        };
        let m = with("\"行政处罚决定书文号\" = \"CF_WSH\"\n\"罚款金额（万元）\" = \"CF_NR_FK\"")
            .unwrap();
        assert_eq!(
            m.column_for_header("行政处罚决定书文号").as_deref(),
            Some("CF_WSH")
        );
        assert_eq!(
            m.column_for_header(" 罚款金额\n(万元) *").as_deref(),
            Some("CF_NR_FK")
        );
        assert_eq!(
            m.column_for_header("cf_xdr_mc").as_deref(),
            Some("CF_XDR_MC")
        );
        assert_eq!(
            m.headers_of("CF_WSH"),
            vec!["行政处罚决定书文号".to_string()]
        );
        let errs = with("\"某列\" = \"CF_NOPE\"").unwrap_err();
        assert!(
            errs[0].contains("no field of this mapping reads"),
            "{errs:?}"
        );
        let errs = with("\"罚款金额(万元)\" = \"CF_NR_FK\"\n\"罚款金额（万元）\" = \"CF_WSH\"")
            .unwrap_err();
        assert!(errs[0].contains("already names"), "{errs:?}");
        // A file without a column every record needs is refused: these are the ones.
        let required: Vec<String> = m.required_sources().into_iter().map(|(t, _)| t).collect();
        for t in [
            "source.record_id",
            "subject.id",
            "subject.name",
            "basis.decided_on",
            "content.authority",
            "content.penalty_types",
        ] {
            assert!(required.contains(&t.to_string()), "{t}: {required:?}");
        }
        assert!(!required.contains(&"content.fine_yuan".to_string()));
    }

    #[test]
    fn long_term_dates_match_in_any_accepted_pattern() {
        let m = Mapping::parse(
            "test-penalties.toml",
            &PENALTY_MAPPING.replace(
                "\"valid_until\" = { path = \"CF_YXQ\", type = \"date\", formats = [\"YYYY/MM/DD\"]",
                "\"valid_until\" = { path = \"CF_YXQ\", type = \"date\", formats = [\"YYYY/MM/DD\", \"YYYY-MM-DD\"]",
            ),
        )
        .unwrap();
        let body = r#"{"data": [{"CF_WSH": "L-1", "XZQH": "440100", "CF_XDR_SHXYM": "91310110666007217T",
            "CF_XDR_MC": "某医院", "CF_JDRQ": "2025/3/14", "CF_YXQ": "2099-12-31", "CF_CFJG": "局", "CF_CFLB": "警告"}]}"#;
        let out = m.normalize(body.as_bytes(), &ctx()).unwrap();
        assert_eq!(out[0].outcome.as_ref().expect("accepted").valid_until, None);
    }

    #[test]
    fn shipped_mappings_all_load() {
        let set = MappingSet::builtin().expect("every shipped mapping compiles");
        assert_eq!(set.len(), BUILTIN.len());
        assert!(set.get("canonical").is_some());
    }
}
