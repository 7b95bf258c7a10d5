//! Untyped JSON -> [`CanonicalRecord`], collecting every field error of a record.
//!
//! Besides each field's own rule, every value of a record is checked (issue #31):
//! - every number is one a record may hold, as written (`mapping::json::check_number`: at most
//!   40 characters, an integer fits 64 bits, a decimal is finite), whatever path it came by;
//! - amounts, the content fields named `*_yuan` (`fine_yuan`, `arrears_yuan`...), are
//!   non-negative decimals written as digits with an optional fraction, below 10^15 yuan;
//! - no string or key holds a bidirectional control character (U+061C, U+200E, U+200F,
//!   U+202A-U+202E, U+2066-U+2069): a right-to-left override makes a name or a reason display
//!   as something other than what it says (U+202E then `gnp.exe` shows as `exe.png`) on every platform the
//!   record reaches. Refused in every field, identifying and free text alike: no field of a
//!   credit record needs them (Chinese and Latin text never does), and a rule with exceptions
//!   would be one more thing to get wrong.

use serde_json::{Map, Value};

use super::{
    parse_date, Basis, CanonicalRecord, Category, Disclosure, DisclosureClass, DocType,
    Restriction, Source, Subject,
};
use crate::subject::{
    IdType, IdentifierExceptions, RegionCode, SubjectId, SubjectKind, SubjectRole,
};

/// One problem with one field of one record. Always the sender's fault; resending the same record
/// will fail the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The canonical field path, e.g. `subject.id` or `content.grade`.
    pub field: String,
    pub reason: String,
}

impl FieldError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// What validation needs besides the record.
#[derive(Debug, Clone, Default)]
pub struct ValidationContext {
    pub exceptions: IdentifierExceptions,
    /// The agency authenticated by its client certificate. When set, `source.agency` is filled with
    /// it, and a record naming another agency is rejected: an agency cannot speak for another.
    pub authenticated_agency: Option<String>,
    /// What arrives now (a batch, a correction, an agency's offline check) rather than a record
    /// already stored being read again (re-checks of the ledger, exits, repairs, evaluation).
    /// The checks added after records were first stored (every value's number form, amounts,
    /// bidirectional controls, a personal number in a record id: issue #31) apply to what
    /// arrives only: a stored record is read under the rules it was accepted by, so an exit
    /// (LS Art. 20) still withdraws it and a re-send of it is still `unchanged`.
    pub incoming: bool,
}

const MAX_TEXT_CHARS: usize = 4000;
/// `content.severity` as sources write it (`lifecycle::Severity` reads the same words).
const SEVERITIES: [&str; 6] = ["minor", "general", "serious", "轻微", "一般", "严重"];
const MAX_ID_CHARS: usize = 128;

/// Validate one untyped record. Returns every field error found, not just the first.
pub fn validate(
    value: &Value,
    ctx: &ValidationContext,
) -> Result<CanonicalRecord, Vec<FieldError>> {
    validate_owned(value.clone(), ctx)
}

/// [`validate`], taking the record: its content moves into the result instead of being copied
/// (the ingest path owns every parsed record).
pub fn validate_owned(
    mut value: Value,
    ctx: &ValidationContext,
) -> Result<CanonicalRecord, Vec<FieldError>> {
    let mut errs = Vec::new();
    if ctx.incoming {
        check_values(&value, &mut Vec::new(), &mut errs);
    }
    let content = value.as_object_mut().and_then(|o| o.remove("content"));
    let Some(obj) = value.as_object() else {
        return Err(vec![FieldError::new("", "a record must be a JSON object")]);
    };
    for key in obj.keys() {
        if !KNOWN_TOP_LEVEL.contains(&key.as_str()) {
            errs.push(FieldError::new(
                key.clone(),
                "unknown field of the canonical record",
            ));
        }
    }
    let category = match text(obj, "category", &mut errs) {
        Some(c) => Category::from_code(&c).or_else(|| {
            errs.push(FieldError::new(
                "category",
                "not one of the 13 category codes (GD Art. 8)",
            ));
            None
        }),
        None => None,
    };
    let subject = subject(obj, ctx, &mut errs);
    let source = source(obj, ctx, &mut errs);
    let basis = basis(obj, &mut errs);
    let disclosure = disclosure(obj, &mut errs);
    let valid_from = optional_date(obj, "valid_from", "valid_from", &mut errs);
    let valid_until = optional_date(obj, "valid_until", "valid_until", &mut errs);
    if let (Some(from), Some(until)) = (valid_from, valid_until) {
        if until < from {
            errs.push(FieldError::new("valid_until", "is before valid_from"));
        }
    }
    let content = match content {
        Some(Value::Object(m)) => Some(m),
        None | Some(Value::Null) => Some(Map::new()),
        Some(_) => {
            errs.push(FieldError::new("content", "must be an object"));
            None
        }
    };
    if let (Some(category), Some(content)) = (category, content.as_ref()) {
        // A basis given as `null` names no document: it counts as absent (GD Art. 26).
        let basis_given = obj.get("basis").is_some_and(|b| !b.is_null());
        check_content(
            category,
            content,
            basis.as_ref(),
            basis_given,
            ctx.incoming,
            &mut errs,
        );
    }
    match (category, subject, source, disclosure, content) {
        (Some(category), Some(subject), Some(source), Some(disclosure), Some(content))
            if errs.is_empty() =>
        {
            Ok(CanonicalRecord {
                category,
                subject,
                source,
                basis,
                disclosure,
                valid_from,
                valid_until,
                content,
            })
        }
        _ => {
            if errs.is_empty() {
                errs.push(FieldError::new("", "record is incomplete"));
            }
            Err(errs)
        }
    }
}

const KNOWN_TOP_LEVEL: [&str; 8] = [
    "category",
    "subject",
    "source",
    "basis",
    "disclosure",
    "valid_from",
    "valid_until",
    "content",
];

fn subject(
    obj: &Map<String, Value>,
    ctx: &ValidationContext,
    errs: &mut Vec<FieldError>,
) -> Option<Subject> {
    let s = object(obj, "subject", "subject", errs)?;
    let kind = prefixed_text(s, "subject.kind", "kind", errs).and_then(|k| match k.as_str() {
        "institution" => Some(SubjectKind::Institution),
        "individual" => Some(SubjectKind::Individual),
        _ => {
            errs.push(FieldError::new(
                "subject.kind",
                "must be institution or individual",
            ));
            None
        }
    });
    let errs_before = errs.len();
    let role = prefixed_text(s, "subject.role", "role", errs).and_then(|r| {
        SubjectRole::from_code(&r).or_else(|| {
            errs.push(FieldError::new(
                "subject.role",
                "not a known subject role (GD Art. 4)",
            ));
            None
        })
    });
    let id_type = prefixed_text(s, "subject.id_type", "id_type", errs).and_then(|t| {
        IdType::from_code(&t).or_else(|| {
            errs.push(FieldError::new(
                "subject.id_type",
                "must be uscc, resident_id, passport, hk_macao_permit, taiwan_permit or foreign_permanent_resident",
            ));
            None
        })
    });
    let raw_id = prefixed_text(s, "subject.id", "id", errs);
    let name = prefixed_text(s, "subject.name", "name", errs);
    if let Some(n) = &name {
        if n.chars().count() > 200 {
            errs.push(FieldError::new(
                "subject.name",
                "longer than 200 characters",
            ));
        }
    }
    if let (Some(kind), Some(role)) = (kind, role) {
        if role.kind() != kind {
            errs.push(FieldError::new(
                "subject.role",
                format!("is not a role of an {}", kind_word(kind)),
            ));
        }
    }
    if let (Some(kind), Some(t)) = (kind, id_type) {
        if t.kind() != kind {
            errs.push(FieldError::new(
                "subject.id_type",
                match kind {
                    SubjectKind::Institution => "institutions are identified by their unified social credit code (uscc) (LS Art. 14)",
                    SubjectKind::Individual => "individuals are identified by a personal ID document, not a uscc (LS Art. 14)",
                },
            ));
        }
    }
    let id = match (id_type, raw_id) {
        (Some(t), Some(raw)) => match SubjectId::parse(t, &raw, &ctx.exceptions) {
            Ok(id) => Some(id),
            Err(e) => {
                errs.push(FieldError::new(
                    "subject.id",
                    format!("invalid {}: {e}", id_word(t)),
                ));
                None
            }
        },
        _ => None,
    };
    if errs.len() != errs_before {
        return None;
    }
    Some(Subject {
        kind: kind?,
        role: role?,
        id: id?,
        name: name?,
    })
}

fn source(
    obj: &Map<String, Value>,
    ctx: &ValidationContext,
    errs: &mut Vec<FieldError>,
) -> Option<Source> {
    let s = object(obj, "source", "source", errs)?;
    let stated = match s.get("agency") {
        None | Some(Value::Null) => None,
        Some(Value::String(a)) if a.trim().is_empty() => None,
        Some(Value::String(a)) => Some(a.trim().to_string()),
        Some(_) => {
            errs.push(FieldError::new("source.agency", "must be a string"));
            return None;
        }
    };
    let agency = match (&ctx.authenticated_agency, stated) {
        (Some(auth), Some(stated)) if *auth != stated => {
            errs.push(FieldError::new(
                "source.agency",
                "names another agency than the one authenticated by the client certificate",
            ));
            None
        }
        (Some(auth), _) => Some(auth.clone()),
        (None, Some(stated)) => Some(stated),
        (None, None) => {
            errs.push(FieldError::new("source.agency", "is required"));
            None
        }
    };
    let record_id = prefixed_text(s, "source.record_id", "record_id", errs);
    if let Some(id) = &record_id {
        if id.chars().count() > MAX_ID_CHARS || id.chars().any(char::is_control) {
            errs.push(FieldError::new(
                "source.record_id",
                "must be at most 128 printable characters",
            ));
            return None;
        }
        // A record id is a key: in the store's keys, logs, the audit chain and every platform's
        // copy, where nothing can be sealed or masked (issue #31).
        if ctx.incoming && crate::subject::ResidentId::found_in(id) {
            errs.push(FieldError::new(
                "source.record_id",
                "holds a resident ID number (GB 11643): a record id is stored in keys and sent to every platform, so it may not carry a personal number; use the source system's own serial",
            ));
            return None;
        }
    }
    let region = prefixed_text(s, "source.region", "region", errs).and_then(|r| match RegionCode::parse(&r) {
        Ok(r) => Some(r),
        Err(_) => {
            errs.push(FieldError::new(
                "source.region",
                "must be a 6-digit administrative division code (GB/T 2260) with a known province prefix",
            ));
            None
        }
    });
    Some(Source {
        agency: agency?,
        record_id: record_id?,
        region: region?,
    })
}

fn basis(obj: &Map<String, Value>, errs: &mut Vec<FieldError>) -> Option<Basis> {
    let b = match obj.get("basis") {
        None | Some(Value::Null) => return None,
        Some(Value::Object(b)) => b,
        Some(_) => {
            errs.push(FieldError::new("basis", "must be an object"));
            return None;
        }
    };
    let doc_type =
        prefixed_text(b, "basis.doc_type", "doc_type", errs).and_then(|t| match t.as_str() {
            "judgment" => Some(DocType::Judgment),
            "penalty_decision" => Some(DocType::PenaltyDecision),
            "other" => Some(DocType::Other),
            _ => {
                errs.push(FieldError::new(
                    "basis.doc_type",
                    "must be judgment, penalty_decision or other",
                ));
                None
            }
        });
    let doc_number = prefixed_text(b, "basis.doc_number", "doc_number", errs);
    let decided_on = required_date(b, "decided_on", "basis.decided_on", errs);
    Some(Basis {
        doc_type: doc_type?,
        doc_number: doc_number?,
        decided_on: decided_on?,
    })
}

fn disclosure(obj: &Map<String, Value>, errs: &mut Vec<FieldError>) -> Option<Disclosure> {
    let d = object(obj, "disclosure", "disclosure", errs)?;
    let class = prefixed_text(d, "disclosure.class", "class", errs).and_then(|c| {
        serde_json::from_value::<DisclosureClass>(Value::String(c))
            .ok()
            .or_else(|| {
                errs.push(FieldError::new(
                    "disclosure.class",
                    "must be public, gov_share, authorized_query or restricted (LS Arts. 24-27)",
                ));
                None
            })
    })?;
    let restriction = match d.get("restriction") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) => {
            match serde_json::from_value::<Restriction>(Value::String(r.trim().into())) {
                Ok(r) => Some(r),
                Err(_) => {
                    errs.push(FieldError::new(
                    "disclosure.restriction",
                    "must be state_secret, commercial_secret, personal_privacy, not_yet_disclosed or legally_prohibited (LS Art. 25)",
                ));
                    return None;
                }
            }
        }
        Some(_) => {
            errs.push(FieldError::new(
                "disclosure.restriction",
                "must be a string",
            ));
            return None;
        }
    };
    let mut restricted_fields = std::collections::BTreeMap::new();
    match d.get("restricted_fields") {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => {
            for (path, r) in fields {
                let parsed = r.as_str().and_then(|r| {
                    serde_json::from_value::<Restriction>(Value::String(r.trim().into())).ok()
                });
                match parsed {
                    Some(r) if path.starts_with("content.") && path.len() > "content.".len() => {
                        restricted_fields.insert(path.clone(), r);
                    }
                    Some(_) => errs.push(FieldError::new("disclosure.restricted_fields", format!("{path:?} is not a content field (content.<name>)"))),
                    None => errs.push(FieldError::new(
                        format!("disclosure.restricted_fields.{path}"),
                        "must be state_secret, commercial_secret, personal_privacy, not_yet_disclosed or legally_prohibited (LS Art. 25)",
                    )),
                }
            }
        }
        Some(_) => {
            errs.push(FieldError::new(
                "disclosure.restricted_fields",
                "must be an object: content field -> restriction",
            ));
            return None;
        }
    }
    match (class, restriction) {
        (DisclosureClass::Restricted, None) => {
            errs.push(FieldError::new(
                "disclosure.restriction",
                "a restricted record names what LS Art. 25 forbids to disclose",
            ));
            None
        }
        (c, Some(_)) if c != DisclosureClass::Restricted => {
            errs.push(FieldError::new(
                "disclosure.class",
                "a record with a restriction must be classed restricted (LS Art. 25)",
            ));
            None
        }
        (class, restriction) => Some(Disclosure {
            class,
            restriction,
            restricted_fields,
        }),
    }
}

/// What each category's content must hold.
#[derive(Clone, Copy)]
enum Need {
    Text,
    Date,
    OneOf(&'static [&'static str]),
    List,
    Decimal { min: i64, max: i64 },
    Integer { min: i64, max: i64 },
}

/// The content fields every record of `category` must carry (issue #29: a file without a column
/// for one of them is refused as a whole).
pub fn required_content_fields(category: Category) -> Vec<&'static str> {
    required_content(category)
        .iter()
        .map(|(name, _)| *name)
        .collect()
}

fn required_content(category: Category) -> &'static [(&'static str, Need)] {
    use Need::*;
    match category {
        Category::Registration => &[("registered_on", Date), ("registration_authority", Text)],
        Category::Judicial => &[("court", Text), ("case_number", Text)],
        Category::Administrative => &[
            ("action", OneOf(&["penalty", "licence", "other"])),
            ("authority", Text),
        ],
        Category::Qualification => &[("qualification_type", Text), ("certificate_number", Text)],
        Category::AbnormalOperation => {
            &[("listed_on", Date), ("reason", Text), ("authority", Text)]
        }
        Category::DishonestList => &[
            ("list_name", Text),
            ("listed_on", Date),
            ("authority", Text),
        ],
        Category::AgreementPerformance => {
            &[("item", OneOf(&["agreement", "payment"])), ("status", Text)]
        }
        Category::Commitment => &[
            ("commitment_type", Text),
            ("committed_on", Date),
            ("fulfilment", OneOf(&["pending", "fulfilled", "breached"])),
        ],
        Category::EvaluationResult => &[
            (
                "year",
                Integer {
                    min: 2000,
                    max: 2100,
                },
            ),
            ("points", Decimal { min: 0, max: 100 }),
            ("grade", OneOf(&["A", "B", "C", "D", "E"])),
        ],
        Category::LawCompliance | Category::OtherPublic => &[("description", Text)],
        Category::Honor => &[
            ("honor_name", Text),
            ("awarded_by", Text),
            ("awarded_on", Date),
        ],
        Category::StatutoryOther => &[("description", Text), ("legal_basis", Text)],
    }
}

fn check_content(
    category: Category,
    content: &Map<String, Value>,
    basis: Option<&Basis>,
    basis_given: bool,
    incoming: bool,
    errs: &mut Vec<FieldError>,
) {
    for (name, need) in required_content(category) {
        check_need(content, name, *need, errs);
    }
    let is_penalty = category == Category::Administrative
        && content.get("action").and_then(Value::as_str) == Some("penalty");
    if is_penalty {
        check_need(content, "penalty_types", Need::List, errs);
    }
    // GD Art. 26: a dishonesty finding (and a penalty) rests on a document with legal effect.
    let needs_basis =
        matches!(category, Category::DishonestList | Category::Judicial) || is_penalty;
    if needs_basis && basis.is_none() && !basis_given {
        errs.push(FieldError::new(
            "basis",
            "a dishonesty record or penalty must name its legal basis document: type, number and date (GD Art. 26)",
        ));
    }
    // The source's own severity class drives the public-notice period: a wrong value is an
    // error, never the default class.
    if let Some(v) = content.get("severity") {
        if !v.as_str().is_some_and(|s| SEVERITIES.contains(&s.trim())) {
            errs.push(FieldError::new(
                "content.severity",
                "must be minor, general or serious (national credit-repair measures)",
            ));
        }
    }
    match category {
        Category::AgreementPerformance => check_agreement_status(content, errs),
        Category::EvaluationResult => check_grade(content, errs),
        _ => {}
    }
    for (key, value) in content {
        if key.ends_with("_on") || key.ends_with("_until") {
            if let Some(s) = value.as_str() {
                if parse_date(s).is_none() {
                    errs.push(FieldError::new(
                        format!("content.{key}"),
                        "must be a date YYYY-MM-DD",
                    ));
                }
            }
        }
        if incoming && key.ends_with("_yuan") {
            if let Err(reason) = check_amount(value) {
                errs.push(FieldError::new(format!("content.{key}"), reason));
            }
        }
        if let Value::String(s) = value {
            if s.chars().count() > MAX_TEXT_CHARS {
                errs.push(FieldError::new(
                    format!("content.{key}"),
                    "longer than 4000 characters",
                ));
            }
        }
    }
}

fn check_need(content: &Map<String, Value>, name: &str, need: Need, errs: &mut Vec<FieldError>) {
    let field = format!("content.{name}");
    let value = content.get(name);
    let present_text = value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let ok = match need {
        Need::Text => present_text.is_some(),
        Need::Date => match present_text {
            Some(s) if parse_date(s).is_some() => true,
            Some(_) => {
                errs.push(FieldError::new(field, "must be a date YYYY-MM-DD"));
                return;
            }
            None => false,
        },
        Need::OneOf(options) => match present_text {
            Some(s) if options.contains(&s) => true,
            Some(_) => {
                errs.push(FieldError::new(
                    field,
                    format!("must be one of: {}", options.join(", ")),
                ));
                return;
            }
            None => false,
        },
        Need::List => {
            matches!(value, Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string))
        }
        Need::Decimal { min, max } => match value.and_then(decimal_value) {
            Some(d) if d >= min as f64 && d <= max as f64 => true,
            Some(_) => {
                errs.push(FieldError::new(
                    field,
                    format!("must be between {min} and {max}"),
                ));
                return;
            }
            None if value.is_some() => {
                errs.push(FieldError::new(field, "must be a decimal number"));
                return;
            }
            None => false,
        },
        Need::Integer { min, max } => match value.and_then(integer_value) {
            Some(i) if i >= min && i <= max => true,
            Some(_) => {
                errs.push(FieldError::new(
                    field,
                    format!("must be between {min} and {max}"),
                ));
                return;
            }
            None if value.is_some() => {
                errs.push(FieldError::new(field, "must be an integer"));
                return;
            }
            None => false,
        },
    };
    if !ok {
        let what = match need {
            Need::List => "is required (a non-empty list)",
            _ => "is required",
        };
        errs.push(FieldError::new(field, what));
    }
}

fn check_agreement_status(content: &Map<String, Value>, errs: &mut Vec<FieldError>) {
    let item = content.get("item").and_then(Value::as_str);
    let Some(status) = content.get("status").and_then(Value::as_str) else {
        return;
    };
    let allowed: &[&str] = match item {
        Some("agreement") => &["performing", "performed", "breached", "terminated"],
        Some("payment") => &["paid", "in_arrears", "partially_paid"],
        _ => return,
    };
    if !allowed.contains(&status.trim()) {
        errs.push(FieldError::new(
            "content.status",
            format!("must be one of: {}", allowed.join(", ")),
        ));
    }
}

/// LS Art. 19: A >= 95 > B >= 85 > C >= 75 > D >= 65 > E; GD Art. 20: a subject on the serious
/// dishonesty list is graded E whatever its points.
fn check_grade(content: &Map<String, Value>, errs: &mut Vec<FieldError>) {
    let Some(grade) = content.get("grade").and_then(Value::as_str) else {
        return;
    };
    // The points as written, compared exactly: as an f64, 94.99999999999999999 reads as 95.0 and
    // would pass for an A (LS Art. 19 draws the line at 95).
    let Some((points, whole)) = content.get("points").and_then(whole_points) else {
        return;
    };
    // GD Art. 20: a value of the wrong type is an error, never read as "not on the list".
    let serious = match content.get("serious_dishonesty") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errs.push(FieldError::new(
                "content.serious_dishonesty",
                "must be true or false (GD Art. 20)",
            ));
            return;
        }
    };
    let expected = if serious {
        "E"
    } else {
        grade_for_points(whole)
    };
    if grade.trim() != expected {
        let reason = if serious {
            "must be E for a subject on the serious dishonesty list (GD Art. 20)".to_string()
        } else {
            format!("does not match the points: {points} points is grade {expected} (LS Art. 19)")
        };
        errs.push(FieldError::new("content.grade", reason));
    }
}

/// LS Art. 19's grade of points whose whole part (the floor) is `whole`: every bound is a whole
/// number, so `p >= 95` exactly when `floor(p) >= 95`.
pub(crate) fn grade_for_points(whole: i64) -> &'static str {
    match whole {
        p if p >= 95 => "A",
        p if p >= 85 => "B",
        p if p >= 75 => "C",
        p if p >= 65 => "D",
        _ => "E",
    }
}

/// Points as written (a JSON number kept as written, or a decimal string) and their floor, read
/// exactly from the digits, never through a binary float. `None` when not a plain decimal.
fn whole_points(v: &Value) -> Option<(String, i64)> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let plain = !int.is_empty()
        && int.len() <= 18
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !plain {
        return None;
    }
    let int: i64 = int.parse().ok()?;
    let fractional = frac.bytes().any(|b| b != b'0');
    let whole = match (negative, fractional) {
        (false, _) => int,
        (true, false) => -int,
        (true, true) => -int - 1,
    };
    Some((text, whole))
}

fn decimal_value(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let s = s.trim();
            let digits_ok = !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
                && s.bytes().filter(|b| *b == b'.').count() <= 1;
            if digits_ok {
                s.parse().ok()
            } else {
                None
            }
        }
        _ => None,
    }
}

fn integer_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Amounts below this many integer digits (10^15 yuan).
const MAX_AMOUNT_DIGITS: usize = 15;

/// An amount (`content.*_yuan`): a non-negative decimal as digits with an optional fraction.
fn check_amount(value: &Value) -> Result<(), String> {
    let text = match value {
        Value::Null => return Ok(()),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.trim().is_empty() => return Ok(()),
        Value::String(s) => s.trim().to_string(),
        _ => return Err("must be an amount (a number or a decimal string)".into()),
    };
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text.as_str(), None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(
            "must be a non-negative amount written as digits with an optional decimal part (no sign, no exponent)"
                .into(),
        );
    }
    if int.trim_start_matches('0').len() > MAX_AMOUNT_DIGITS {
        return Err(format!("must be less than 10^{MAX_AMOUNT_DIGITS} yuan"));
    }
    Ok(())
}

/// Bidirectional formatting characters: they reorder how text displays.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// One step of a path inside a record.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Problems found by [`check_values`] in one record: the first ones are enough to act on.
const MAX_VALUE_ERRORS: usize = 16;

/// Every string and key of a record free of bidirectional controls, every number one a record
/// may hold; each problem names its path (`subject.name`, `content.fine_yuan`).
fn check_values<'a>(value: &'a Value, path: &mut Vec<Step<'a>>, errs: &mut Vec<FieldError>) {
    if errs.len() >= MAX_VALUE_ERRORS {
        return;
    }
    let here = |path: &[Step<'_>]| {
        path.iter()
            .map(|s| match s {
                Step::Key(k) => k.to_string(),
                Step::Index(i) => i.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".")
    };
    const BIDI: &str = "contains a bidirectional control character (U+202E right-to-left override and the like), which makes text display as something other than what it says";
    match value {
        Value::String(s) => {
            if s.chars().any(is_bidi_control) {
                errs.push(FieldError::new(here(path), BIDI));
            }
        }
        Value::Number(n) => {
            if let Err(issue) = crate::mapping::json::check_number(&n.to_string()) {
                errs.push(FieldError::new(here(path), issue.to_string()));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Step::Index(i));
                check_values(item, path, errs);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                path.push(Step::Key(k));
                if k.chars().any(is_bidi_control) {
                    errs.push(FieldError::new(here(path), BIDI));
                }
                check_values(v, path, errs);
                path.pop();
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

fn kind_word(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::Institution => "institution",
        SubjectKind::Individual => "individual",
    }
}

fn id_word(t: IdType) -> &'static str {
    match t {
        IdType::Uscc => "unified social credit code",
        IdType::ResidentId => "resident ID number",
        IdType::Passport => "passport number",
        IdType::HkMacaoPermit => "Hong Kong/Macao permit number",
        IdType::TaiwanPermit => "Taiwan permit number",
        IdType::ForeignPermanentResident => "foreign permanent resident ID",
    }
}

fn object<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    field: &str,
    errs: &mut Vec<FieldError>,
) -> Option<&'a Map<String, Value>> {
    match obj.get(key) {
        Some(Value::Object(m)) => Some(m),
        None | Some(Value::Null) => {
            errs.push(FieldError::new(field, "is required"));
            None
        }
        Some(_) => {
            errs.push(FieldError::new(field, "must be an object"));
            None
        }
    }
}

fn text(obj: &Map<String, Value>, key: &str, errs: &mut Vec<FieldError>) -> Option<String> {
    prefixed_text(obj, key, key, errs)
}

fn prefixed_text(
    obj: &Map<String, Value>,
    field: &str,
    key: &str,
    errs: &mut Vec<FieldError>,
) -> Option<String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            let s = s.trim();
            if s.chars().count() > MAX_TEXT_CHARS {
                errs.push(FieldError::new(field, "longer than 4000 characters"));
                return None;
            }
            Some(s.to_string())
        }
        Some(Value::Number(n)) => Some(n.to_string()),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            errs.push(FieldError::new(field, "is required"));
            None
        }
        Some(_) => {
            errs.push(FieldError::new(field, "must be a string"));
            None
        }
    }
}

fn required_date(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
    errs: &mut Vec<FieldError>,
) -> Option<time::Date> {
    let s = prefixed_text(obj, field, key, errs)?;
    parse_date(&s).or_else(|| {
        errs.push(FieldError::new(field, "must be a real date YYYY-MM-DD"));
        None
    })
}

fn optional_date(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
    errs: &mut Vec<FieldError>,
) -> Option<time::Date> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(_) => required_date(obj, key, field, errs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> ValidationContext {
        ValidationContext {
            incoming: true,
            ..Default::default()
        }
    }

    fn penalty() -> Value {
        json!({
            "category": "administrative",
            "subject": {"kind": "institution", "role": "designated_medical_institution",
                        "id_type": "uscc", "id": "91310110666007217T", "name": "广州市某某医院有限公司"},
            "source": {"agency": "medical_insurance", "record_id": "穗医保罚〔2025〕12号", "region": "440100"},
            "basis": {"doc_type": "penalty_decision", "doc_number": "穗医保罚〔2025〕12号", "decided_on": "2025-03-14"},
            "disclosure": {"class": "public"},
            "valid_from": "2025-03-14",
            "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"], "fine_yuan": "50000"}
        })
    }

    fn field_of(r: Result<CanonicalRecord, Vec<FieldError>>) -> Vec<String> {
        r.expect_err("should be rejected")
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_valid_penalty_passes_and_round_trips() {
        let rec = validate(&penalty(), &ctx()).expect("valid");
        assert_eq!(rec.category, Category::Administrative);
        let again = validate(&rec.to_json(), &ctx()).expect("canonical form validates");
        assert_eq!(again.content_hash(), rec.content_hash());
    }

    #[test]
    fn penalty_without_basis_is_rejected_gd_art_26() {
        let mut v = penalty();
        v.as_object_mut().unwrap().remove("basis");
        assert_eq!(field_of(validate(&v, &ctx())), vec!["basis"]);
        let mut v = penalty();
        v["basis"]["doc_number"] = json!("");
        assert_eq!(field_of(validate(&v, &ctx())), vec!["basis.doc_number"]);
        let mut v = penalty();
        v["basis"]["doc_number"] = json!("   ");
        assert_eq!(field_of(validate(&v, &ctx())), vec!["basis.doc_number"]);
    }

    #[test]
    fn a_null_basis_names_no_document_gd_art_26() {
        let mut v = penalty();
        v["basis"] = Value::Null;
        assert_eq!(field_of(validate(&v, &ctx())), vec!["basis"]);
    }

    #[test]
    fn serious_dishonesty_of_the_wrong_type_is_an_error_gd_art_20() {
        let mut v = penalty();
        v["category"] = json!("evaluation_result");
        v["content"] =
            json!({"year": 2025, "points": 97, "grade": "A", "serious_dishonesty": "yes"});
        assert!(field_of(validate(&v, &ctx())).contains(&"content.serious_dishonesty".to_string()));
        v["content"]["serious_dishonesty"] = json!(1);
        assert!(field_of(validate(&v, &ctx())).contains(&"content.serious_dishonesty".to_string()));
    }

    #[test]
    fn an_unknown_severity_is_an_error() {
        let mut v = penalty();
        v["content"]["severity"] = json!("medium");
        assert_eq!(field_of(validate(&v, &ctx())), vec!["content.severity"]);
        v["content"]["severity"] = json!("serious");
        assert!(validate(&v, &ctx()).is_ok());
    }

    #[test]
    fn bad_date_and_bad_check_character_are_named() {
        let mut v = penalty();
        v["basis"]["decided_on"] = json!("2025-02-30");
        v["subject"]["id"] = json!("91310110666007217U");
        let fields = field_of(validate(&v, &ctx()));
        assert!(
            fields.contains(&"basis.decided_on".to_string()),
            "{fields:?}"
        );
        assert!(fields.contains(&"subject.id".to_string()), "{fields:?}");
    }

    #[test]
    fn a_stored_record_is_read_again_under_the_rules_it_was_accepted_by() {
        // Accepted before the value checks of issue #31: a negative amount, a record id holding
        // a resident ID number. Arriving now it is refused; read again (an exit, a re-check) it
        // still validates, so LS Art. 20's withdrawal still reaches it.
        let mut v = penalty();
        v["content"]["fine_yuan"] = json!("-3.5");
        v["source"]["record_id"] = json!("R11010519491231002X");
        let fields = field_of(validate(&v, &ctx()));
        assert!(
            fields.contains(&"content.fine_yuan".to_string()),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"source.record_id".to_string()),
            "{fields:?}"
        );
        let stored = ValidationContext {
            incoming: false,
            ..ctx()
        };
        assert!(validate(&v, &stored).is_ok());
    }

    #[test]
    fn an_agency_cannot_speak_for_another() {
        let ctx = ValidationContext {
            authenticated_agency: Some("tax".into()),
            ..ctx()
        };
        assert_eq!(field_of(validate(&penalty(), &ctx)), vec!["source.agency"]);
        let mut v = penalty();
        v["source"].as_object_mut().unwrap().remove("agency");
        assert_eq!(validate(&v, &ctx).unwrap().source.agency, "tax");
    }

    #[test]
    fn restricted_needs_a_restriction_and_vice_versa() {
        let mut v = penalty();
        v["disclosure"] = json!({"class": "restricted"});
        assert_eq!(
            field_of(validate(&v, &ctx())),
            vec!["disclosure.restriction"]
        );
        v["disclosure"] = json!({"class": "public", "restriction": "state_secret"});
        assert_eq!(field_of(validate(&v, &ctx())), vec!["disclosure.class"]);
        v["disclosure"] = json!({"class": "restricted", "restriction": "personal_privacy"});
        assert!(validate(&v, &ctx()).is_ok());
    }

    #[test]
    fn institution_cannot_use_a_personal_id_type() {
        let mut v = penalty();
        v["subject"]["id_type"] = json!("resident_id");
        assert!(field_of(validate(&v, &ctx())).contains(&"subject.id_type".to_string()));
    }

    #[test]
    fn evaluation_grade_must_match_points_ls_art_19() {
        let mut v = penalty();
        v["category"] = json!("evaluation_result");
        v.as_object_mut().unwrap().remove("basis");
        v["content"] = json!({"year": 2025, "points": "88.5", "grade": "A"});
        assert_eq!(field_of(validate(&v, &ctx())), vec!["content.grade"]);
        v["content"]["grade"] = json!("B");
        assert!(validate(&v, &ctx()).is_ok());
        v["content"] =
            json!({"year": 2025, "points": 97, "grade": "A", "serious_dishonesty": true});
        assert_eq!(field_of(validate(&v, &ctx())), vec!["content.grade"]);
        v["content"]["grade"] = json!("E");
        assert!(validate(&v, &ctx()).is_ok());
    }

    #[test]
    fn grade_boundaries() {
        assert_eq!(grade_for_points(95), "A");
        assert_eq!(grade_for_points(94), "B");
        assert_eq!(grade_for_points(85), "B");
        assert_eq!(grade_for_points(75), "C");
        assert_eq!(grade_for_points(65), "D");
        assert_eq!(grade_for_points(64), "E");
        let whole = |s: &str| whole_points(&json!(s)).map(|(_, w)| w);
        assert_eq!(
            whole("94.99999999999999999"),
            Some(94),
            "never rounded up to 95"
        );
        assert_eq!(whole("95.000"), Some(95));
        assert_eq!(whole("-0.5"), Some(-1));
        assert_eq!(whole("9e1"), None);
    }

    #[test]
    fn numbers_a_record_cannot_hold_reject_it_naming_the_field() {
        for (bad, what) in [
            (
                "99999999999999999999999999999",
                "an integer that does not fit",
            ),
            ("1e400", "infinite"),
        ] {
            let mut v = penalty();
            v["content"]["fine_yuan"] = serde_json::from_str(bad).unwrap();
            let errs = validate(&v, &ctx()).expect_err(bad);
            assert!(
                errs.iter()
                    .any(|e| e.field == "content.fine_yuan" && e.reason.contains(what)),
                "{bad}: {errs:?}"
            );
        }
        let mut v = penalty();
        v["content"]["other"] = serde_json::from_str(&"7".repeat(100_000)).unwrap();
        assert_eq!(field_of(validate(&v, &ctx())), vec!["content.other"]);
    }

    #[test]
    fn amounts_are_non_negative_plain_decimals_below_10_pow_15() {
        let written = |t: &str| serde_json::from_str::<Value>(t).unwrap();
        for ok in [
            json!("20000"),
            json!(20000),
            json!("0.5"),
            written("999999999999999.99"),
        ] {
            let mut v = penalty();
            v["content"]["fine_yuan"] = ok.clone();
            assert!(validate(&v, &ctx()).is_ok(), "{ok}");
        }
        for bad in [
            json!("-5"),
            json!(-5),
            json!("1e5"),
            json!("1000000000000000"),
            json!(true),
            json!("5,000"),
        ] {
            let mut v = penalty();
            v["content"]["arrears_yuan"] = bad.clone();
            assert_eq!(
                field_of(validate(&v, &ctx())),
                vec!["content.arrears_yuan"],
                "{bad}"
            );
        }
    }

    #[test]
    fn bidirectional_controls_are_refused_in_names_ids_and_text() {
        for (path, c) in [
            ("subject.name", '\u{202E}'),
            ("source.record_id", '\u{2066}'),
            ("content.authority", '\u{200F}'),
            ("basis.doc_number", '\u{202B}'),
        ] {
            let mut v = penalty();
            let (a, b) = path.split_once('.').unwrap();
            let text = format!("某医院{c}gnp.exe");
            v[a][b] = json!(text);
            let errs = validate(&v, &ctx()).expect_err(path);
            assert!(
                errs.iter()
                    .any(|e| e.field == path && e.reason.contains("bidirectional")),
                "{path}: {errs:?}"
            );
        }
        let mut v = penalty();
        v["content"]["penalty_types"] = json!(["罚款", "\u{202E}告警"]);
        assert_eq!(
            field_of(validate(&v, &ctx())),
            vec!["content.penalty_types.1"]
        );
    }

    #[test]
    fn unknown_top_level_field_is_rejected() {
        let mut v = penalty();
        v["secret_note"] = json!("x");
        assert_eq!(field_of(validate(&v, &ctx())), vec!["secret_note"]);
    }
}
