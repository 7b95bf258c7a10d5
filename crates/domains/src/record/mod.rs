//! The canonical record: the one shape every source format is mapped into (MISSION.md, "The
//! canonical record"), in exactly one of the 13 information categories of GD Art. 8.
//!
//! Owns: [`Category`], the typed [`CanonicalRecord`], and [`validate`], which turns an untyped JSON
//! value into a record or a list of field errors. Each category's required content, the legal-basis
//! rule for dishonesty records and penalties (GD Art. 26) and the grade/points rule of credit
//! evaluation (LS Art. 19, GD Art. 20) live here.
//!
//! Never does: I/O, logging, or knowing any source format (that is `mapping`).
//!
//! Invariants: a `CanonicalRecord` holds only valid identifiers, dates and enumerations; its JSON
//! form ([`CanonicalRecord::to_json`]) is deterministic (object keys sorted), so the same record
//! always hashes the same for idempotency.

mod category;
mod validate;

pub use category::Category;
pub use validate::{
    required_content_fields, validate, validate_owned, FieldError, ValidationContext,
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::Date;

use crate::subject::{RegionCode, SubjectId, SubjectKind, SubjectRole};

#[derive(Debug, Clone, PartialEq)]
pub struct CanonicalRecord {
    pub category: Category,
    pub subject: Subject,
    pub source: Source,
    pub basis: Option<Basis>,
    pub disclosure: Disclosure,
    pub valid_from: Option<Date>,
    pub valid_until: Option<Date>,
    pub content: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub kind: SubjectKind,
    pub role: SubjectRole,
    pub id: SubjectId,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub agency: String,
    pub record_id: String,
    pub region: RegionCode,
}

/// The legal document a dishonesty finding or penalty rests on (GD Art. 26).
#[derive(Debug, Clone, PartialEq)]
pub struct Basis {
    pub doc_type: DocType,
    pub doc_number: String,
    pub decided_on: Date,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocType {
    Judgment,
    PenaltyDecision,
    Other,
}

/// Disclosure class and restriction (LS Arts. 24-27, GD Art. 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosure {
    pub class: DisclosureClass,
    pub restriction: Option<Restriction>,
    /// Content fields that must never leave the gateway although the record may
    /// (`content.bank_account` -> commercial_secret), LS Art. 25.
    pub restricted_fields: std::collections::BTreeMap<String, Restriction>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisclosureClass {
    Public,
    GovShare,
    AuthorizedQuery,
    Restricted,
}

/// What LS Art. 25 forbids to disclose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Restriction {
    StateSecret,
    CommercialSecret,
    PersonalPrivacy,
    NotYetDisclosed,
    LegallyProhibited,
}

impl CanonicalRecord {
    /// The canonical JSON form. serde_json's `Map` keeps keys sorted (no `preserve_order`), so
    /// this is deterministic.
    pub fn to_json(&self) -> Value {
        let mut subject = Map::new();
        subject.insert("kind".into(), json_enum(&self.subject.kind));
        subject.insert(
            "role".into(),
            Value::String(self.subject.role.code().into()),
        );
        subject.insert(
            "id_type".into(),
            Value::String(self.subject.id.id_type().code().into()),
        );
        subject.insert("id".into(), Value::String(self.subject.id.as_str().into()));
        subject.insert("name".into(), Value::String(self.subject.name.clone()));

        let mut source = Map::new();
        source.insert("agency".into(), Value::String(self.source.agency.clone()));
        source.insert(
            "record_id".into(),
            Value::String(self.source.record_id.clone()),
        );
        source.insert(
            "region".into(),
            Value::String(self.source.region.as_str().into()),
        );

        let mut disclosure = Map::new();
        disclosure.insert("class".into(), json_enum(&self.disclosure.class));
        if let Some(r) = self.disclosure.restriction {
            disclosure.insert("restriction".into(), json_enum(&r));
        }
        if !self.disclosure.restricted_fields.is_empty() {
            let fields: Map<String, Value> = self
                .disclosure
                .restricted_fields
                .iter()
                .map(|(k, r)| (k.clone(), json_enum(r)))
                .collect();
            disclosure.insert("restricted_fields".into(), Value::Object(fields));
        }

        let mut record = Map::new();
        record.insert(
            "category".into(),
            Value::String(self.category.code().into()),
        );
        record.insert("subject".into(), Value::Object(subject));
        record.insert("source".into(), Value::Object(source));
        if let Some(b) = &self.basis {
            let mut basis = Map::new();
            basis.insert("doc_type".into(), json_enum(&b.doc_type));
            basis.insert("doc_number".into(), Value::String(b.doc_number.clone()));
            basis.insert(
                "decided_on".into(),
                Value::String(format_date(b.decided_on)),
            );
            record.insert("basis".into(), Value::Object(basis));
        }
        record.insert("disclosure".into(), Value::Object(disclosure));
        if let Some(d) = self.valid_from {
            record.insert("valid_from".into(), Value::String(format_date(d)));
        }
        if let Some(d) = self.valid_until {
            record.insert("valid_until".into(), Value::String(format_date(d)));
        }
        record.insert("content".into(), Value::Object(self.content.clone()));
        Value::Object(record)
    }

    /// The canonical JSON bytes (compact, keys sorted).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }

    /// sha256 of the canonical JSON bytes: the same content always gives the same hash.
    pub fn content_hash(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }

    /// The record's identity across versions: who sent it and under which id.
    pub fn record_key(&self) -> RecordKey {
        RecordKey {
            agency: self.source.agency.clone(),
            record_id: self.source.record_id.clone(),
        }
    }
}

/// (source agency, source record id): the identity a record keeps across its versions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub agency: String,
    pub record_id: String,
}

fn json_enum<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// `YYYY-MM-DD`, a real calendar date.
pub fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year: i32 = s[0..4].parse().ok()?;
    let month: u8 = s[5..7].parse().ok()?;
    let day: u8 = s[8..10].parse().ok()?;
    if !s[0..4].bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()
}
