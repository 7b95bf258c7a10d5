//! Agency JSON read with the checks serde_json's `Value` does not make, on serde's visitor
//! machinery over serde_json's own parser (no hand-written JSON parser).
//!
//! Owns: reading a batch's records one at a time ([`BatchReader`]), and any other agency JSON
//! body ([`checked_value`]) with the same checks.
//!
//! Why (issue #31): `serde_json::from_slice::<Value>` keeps the *last* of two equal keys, so
//! `"disclosure": {"class": "restricted"}, "disclosure": {"class": "public"}` was published as
//! public; it keeps any number as written, so `1e400` or a 100,000-digit number reached the
//! platforms; and it builds the whole document as one tree, tens of times the body's size
//! (300 KB of `[{},{},...]` held 1.1 GiB). Here:
//!
//! - A batch is never one `Value` tree. The document is walked once; the records array's
//!   elements stay unparsed slices of the body (`RawValue`), at most
//!   `ingest.max_records_per_batch` of them (one more and the batch is refused whole before any
//!   per-record work). Everything outside the records is checked (syntax, duplicate keys, members)
//!   and dropped. Each record is then parsed alone, mapped, validated and dropped.
//! - Every object refuses a key it already has, naming it and where; every object and array has
//!   at most `ingest.max_object_members` members (the refusal stops the parse there); a batch
//!   builds at most `ingest.max_values_per_batch` JSON values in all, so its trees cost at most
//!   about that many times ~100 bytes.
//! - Every number is checked as written: at most [`MAX_NUMBER_CHARS`] characters, an integer fits
//!   64 bits, any other number is finite as a 64-bit float. Strings in records are at most the
//!   field limit (4,000 characters) and are refused before they are copied.
//!
//! A problem inside a record rejects that record only, naming the JSON path (`content.fine_yuan`)
//! and the reason; the record is still read (minus the refused value) so the rejection can name
//! its source record id. A problem outside the records, or a bound of the batch, refuses the batch.
//!
//! Never does: build a value it has refused, or copy a string longer than the limit.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

/// A number token longer than this is refused (no amount or count needs 40 digits).
pub const MAX_NUMBER_CHARS: usize = 40;
/// Strings in records: the field limit of the canonical record.
pub const MAX_STRING_CHARS: usize = 4000;
/// How serde_json (`arbitrary_precision`) hands a number to a visitor: a one-member map.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// The bounds of one batch (from `[ingest]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_records: usize,
    pub max_members: usize,
    pub max_values: usize,
    /// Strings in records; `usize::MAX` for bodies whose texts are checked elsewhere.
    pub max_string_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_records: crate::config::DEFAULT_MAX_RECORDS_PER_BATCH,
            max_members: crate::config::DEFAULT_MAX_OBJECT_MEMBERS,
            max_values: crate::config::DEFAULT_MAX_VALUES_PER_BATCH,
            max_string_chars: MAX_STRING_CHARS,
        }
    }
}

/// What is wrong with one value. Always the sender's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonIssue {
    #[error("the key {0:?} appears more than once in one object")]
    DuplicateKey(String),
    #[error("more than {0} members in one object or array")]
    TooManyMembers(usize),
    #[error("more than {0} JSON values in one batch: split it")]
    TooManyValues(usize),
    #[error("longer than {0} characters")]
    TooLong(usize),
    #[error("a number longer than {MAX_NUMBER_CHARS} characters")]
    NumberTooLong,
    #[error("an integer that does not fit in 64 bits")]
    IntegerOutOfRange,
    #[error("a number beyond the range of a 64-bit float (infinite)")]
    NotFinite,
}

/// An issue and where: the dot-separated path of keys and array indices (`content.fine_yuan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: String,
    pub issue: JsonIssue,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.issue)
        } else {
            write!(f, "`{}`: {}", self.path, self.issue)
        }
    }
}

/// Why a whole document is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// serde_json's own error (syntax, nesting deeper than 128), with its position.
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// A check of this module, with the position the parser had reached.
    Found {
        found: Found,
        line: usize,
        column: usize,
    },
    Shape(String),
    TooManyRecords(usize),
}

/// One record as read: its value (and what was refused in it), or refused outright.
#[derive(Debug)]
pub enum Record {
    Read { value: Value, found: Vec<Found> },
    Refused(Found),
}

/// Is this number, as written, one a record may hold?
pub fn check_number(text: &str) -> Result<(), JsonIssue> {
    if text.len() > MAX_NUMBER_CHARS {
        return Err(JsonIssue::NumberTooLong);
    }
    if text.contains(['.', 'e', 'E']) {
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(()),
            _ => Err(JsonIssue::NotFinite),
        }
    } else if text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok() {
        Ok(())
    } else {
        Err(JsonIssue::IntegerOutOfRange)
    }
}

/// A whole JSON body (a correction, an objection, a repair request) as a checked `Value`:
/// duplicate keys, numbers and the member and value bounds as in records; any issue refuses it.
pub fn checked_value(text: &str, limits: Limits) -> Result<Value, Refusal> {
    let state = State::new(limits);
    let mut de = serde_json::Deserializer::from_str(text);
    let value = ValueSeed(&state)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|_| v));
    match value {
        Ok(value) => match state.found.into_inner().into_iter().next() {
            None => Ok(value.unwrap_or(Value::Null)),
            Some(found) => Err(Refusal::Found {
                found,
                line: 0,
                column: 0,
            }),
        },
        Err(e) => Err(state.refusal(&e)),
    }
}

/// Reads one batch: its records' slices first ([`BatchReader::records`]), then each record.
pub struct BatchReader<'a> {
    text: &'a str,
    limits: Limits,
    /// JSON values built so far for this batch's records.
    values: Cell<usize>,
}

impl<'a> BatchReader<'a> {
    pub fn new(text: &'a str, limits: Limits) -> Self {
        Self {
            text,
            limits,
            values: Cell::new(0),
        }
    }

    /// The elements of the array at `path` (dot-separated keys and array indices; empty: the
    /// document itself), unparsed. The rest of the document is checked and dropped.
    pub fn records(&self, path: &str) -> Result<Vec<&'a RawValue>, Refusal> {
        let state = State::new(self.limits);
        let segments: Vec<&str> = if path.is_empty() {
            Vec::new()
        } else {
            path.split('.').collect()
        };
        let mut de = serde_json::Deserializer::from_str(self.text);
        let found = Navigate {
            state: &state,
            rest: &segments,
        }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|_| v));
        match found {
            Ok(Some(records)) => Ok(records),
            Ok(None) => Err(Refusal::Shape(format!("no `{path}` in the document"))),
            Err(e) => Err(state.refusal(&e)),
        }
    }

    /// Parse one record returned by [`BatchReader::records`]. `Err` refuses the whole batch (the
    /// batch's value bound, or nesting deeper than serde_json's limit).
    pub fn record(&self, raw: &RawValue) -> Result<Record, Refusal> {
        let state = State::new(self.limits);
        state.values.set(self.values.get());
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let value = ValueSeed(&state).deserialize(&mut de);
        self.values.set(state.values.get());
        match value {
            Ok(value) => Ok(Record::Read {
                value: value.unwrap_or(Value::Null),
                found: state.found.into_inner(),
            }),
            Err(e) => {
                let fatal = state.fatal.borrow_mut().take();
                match fatal {
                    Some(Fatal::Found(found))
                        if matches!(found.issue, JsonIssue::TooManyValues(_)) =>
                    {
                        let (line, column) = self.position_of(raw, &e);
                        Err(Refusal::Found {
                            found,
                            line,
                            column,
                        })
                    }
                    Some(Fatal::Found(found)) => Ok(Record::Refused(found)),
                    _ => {
                        let (line, column) = self.position_of(raw, &e);
                        Err(Refusal::Syntax {
                            line,
                            column,
                            message: strip_position(&e.to_string()),
                        })
                    }
                }
            }
        }
    }

    /// The position in the whole document of an error inside one record.
    fn position_of(&self, raw: &RawValue, e: &serde_json::Error) -> (usize, usize) {
        let offset = (raw.get().as_ptr() as usize).saturating_sub(self.text.as_ptr() as usize);
        let (line, column) = super::source::line_column(self.text.as_bytes(), offset);
        if e.line() <= 1 {
            (line, column + e.column().saturating_sub(1))
        } else {
            (line + e.line() - 1, e.column())
        }
    }
}

/// A problem that stops the parse.
enum Fatal {
    Found(Found),
    Shape(String),
    TooManyRecords(usize),
}

/// What one parse has met so far.
struct State {
    limits: Limits,
    values: Cell<usize>,
    path: RefCell<Vec<String>>,
    /// Refused values (dropped); the parse went on.
    found: RefCell<Vec<Found>>,
    fatal: RefCell<Option<Fatal>>,
}

impl State {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            values: Cell::new(0),
            path: RefCell::new(Vec::new()),
            found: RefCell::new(Vec::new()),
            fatal: RefCell::new(None),
        }
    }

    fn here(&self) -> String {
        self.path.borrow().join(".")
    }

    /// Note a refused value; the caller drops it and goes on.
    fn refuse(&self, issue: JsonIssue) {
        let mut found = self.found.borrow_mut();
        // A record's first problems are enough to act on; the rest cost memory for nothing.
        if found.len() < 16 {
            found.push(Found {
                path: self.here(),
                issue,
            });
        }
    }

    /// Stop the parse here.
    fn stop<E: de::Error>(&self, issue: JsonIssue) -> E {
        let found = Found {
            path: self.here(),
            issue,
        };
        let message = found.to_string();
        *self.fatal.borrow_mut() = Some(Fatal::Found(found));
        E::custom(message)
    }

    fn count<E: de::Error>(&self) -> Result<(), E> {
        let n = self.values.get() + 1;
        self.values.set(n);
        if n > self.limits.max_values {
            return Err(self.stop(JsonIssue::TooManyValues(self.limits.max_values)));
        }
        Ok(())
    }

    fn refusal(&self, e: &serde_json::Error) -> Refusal {
        let (line, column) = (e.line(), e.column());
        match self.fatal.borrow_mut().take() {
            Some(Fatal::Found(found)) => Refusal::Found {
                found,
                line,
                column,
            },
            Some(Fatal::Shape(s)) => Refusal::Shape(s),
            Some(Fatal::TooManyRecords(n)) => Refusal::TooManyRecords(n),
            None => Refusal::Syntax {
                line,
                column,
                message: strip_position(&e.to_string()),
            },
        }
    }

    fn string(&self, s: &str) -> Option<Value> {
        let max = self.limits.max_string_chars;
        if s.len() > max && s.chars().count() > max {
            self.refuse(JsonIssue::TooLong(max));
            return None;
        }
        Some(Value::String(s.to_owned()))
    }
}

/// Builds a checked `Value`; `None` when the value itself was refused (and noted).
struct ValueSeed<'s>(&'s State);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Option<Value>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        self.0.count()?;
        Ok(Some(Value::Bool(b)))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        self.0.count()?;
        Ok(Some(Value::Number(n.into())))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        self.0.count()?;
        Ok(Some(Value::Number(n.into())))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        self.0.count()?;
        match Number::from_f64(n) {
            Some(n) => Ok(Some(Value::Number(n))),
            None => {
                self.0.refuse(JsonIssue::NotFinite);
                Ok(None)
            }
        }
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        self.0.count()?;
        Ok(self.0.string(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.count()?;
        Ok(Some(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let state = self.0;
        state.count()?;
        let mut items = Vec::new();
        loop {
            if items.len() >= state.limits.max_members {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(state.stop(JsonIssue::TooManyMembers(state.limits.max_members)));
                }
                break;
            }
            state.path.borrow_mut().push(items.len().to_string());
            let item = seq.next_element_seed(ValueSeed(state))?;
            state.path.borrow_mut().pop();
            match item {
                // A refused item keeps the others' indices.
                Some(v) => items.push(v.unwrap_or(Value::Null)),
                None => break,
            }
        }
        Ok(Some(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let state = self.0;
        let Some(first) = map.next_key::<String>()? else {
            state.count()?;
            return Ok(Some(Value::Object(Map::new())));
        };
        if first == NUMBER_TOKEN {
            let text: String = map.next_value()?;
            state.count()?;
            return Ok(match check_number(&text) {
                Ok(()) => match text.parse::<Number>() {
                    Ok(n) => Some(Value::Number(n)),
                    Err(_) => {
                        state.refuse(JsonIssue::NotFinite);
                        None
                    }
                },
                Err(issue) => {
                    state.refuse(issue);
                    None
                }
            });
        }
        state.count()?;
        let mut out = Map::new();
        let mut members = 0usize;
        let mut key = Some(first);
        while let Some(k) = key {
            members += 1;
            if members > state.limits.max_members {
                return Err(state.stop(JsonIssue::TooManyMembers(state.limits.max_members)));
            }
            state.path.borrow_mut().push(k.clone());
            if out.contains_key(&k) {
                state.refuse(JsonIssue::DuplicateKey(k.clone()));
                map.next_value::<IgnoredAny>()?;
            } else if k.len() > state.limits.max_string_chars
                && k.chars().count() > state.limits.max_string_chars
            {
                state.refuse(JsonIssue::TooLong(state.limits.max_string_chars));
                map.next_value::<IgnoredAny>()?;
            } else if let Some(v) = map.next_value_seed(ValueSeed(state))? {
                out.insert(k, v);
            } else {
                // Refused: the key stays, so a second one is still a duplicate.
                out.insert(k, Value::Null);
            }
            state.path.borrow_mut().pop();
            key = map.next_key::<String>()?;
        }
        Ok(Some(Value::Object(out)))
    }
}

/// Walks to the records array; `None` when the path is not in the document.
struct Navigate<'s, 'p> {
    state: &'s State,
    rest: &'p [&'p str],
}

impl<'de> DeserializeSeed<'de> for Navigate<'_, '_> {
    type Value = Option<Vec<&'de RawValue>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Navigate<'_, '_> {
    fn not_array<'de, E: de::Error>(&self) -> Result<Option<Vec<&'de RawValue>>, E> {
        if self.rest.is_empty() {
            let path = self.state.here();
            *self.state.fatal.borrow_mut() = Some(Fatal::Shape(if path.is_empty() {
                "this mapping expects the document to be a JSON array of records".into()
            } else {
                format!("`{path}` must be an array of records")
            }));
            return Err(E::custom("not an array"));
        }
        Ok(None)
    }
}

impl<'de> Visitor<'de> for Navigate<'_, '_> {
    type Value = Option<Vec<&'de RawValue>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        self.not_array()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        self.not_array()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        self.not_array()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        self.not_array()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        self.not_array()
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.not_array()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let state = self.state;
        let Some((segment, rest)) = self.rest.split_first() else {
            // The records: left unparsed, counted.
            let max = state.limits.max_records;
            let mut records = Vec::new();
            while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                if records.len() >= max {
                    *state.fatal.borrow_mut() = Some(Fatal::TooManyRecords(max));
                    return Err(de::Error::custom("too many records"));
                }
                records.push(raw);
            }
            return Ok(Some(records));
        };
        let wanted = segment.parse::<usize>().ok();
        let mut found = None;
        let mut index = 0usize;
        loop {
            if index >= state.limits.max_members {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(state.stop(JsonIssue::TooManyMembers(state.limits.max_members)));
                }
                break;
            }
            state.path.borrow_mut().push(index.to_string());
            let more = if Some(index) == wanted {
                match seq.next_element_seed(Navigate { state, rest })? {
                    Some(f) => {
                        found = f;
                        true
                    }
                    None => false,
                }
            } else {
                seq.next_element_seed(Skip(state))?.is_some()
            };
            state.path.borrow_mut().pop();
            if !more {
                break;
            }
            index += 1;
        }
        Ok(found)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let state = self.state;
        let Some((segment, rest)) = self.rest.split_first() else {
            return self.not_array();
        };
        let mut keys = HashSet::new();
        let mut found = None;
        while let Some(k) = map.next_key::<String>()? {
            if k == NUMBER_TOKEN {
                map.next_value::<IgnoredAny>()?;
                return Ok(None);
            }
            if keys.len() >= state.limits.max_members {
                return Err(state.stop(JsonIssue::TooManyMembers(state.limits.max_members)));
            }
            state.path.borrow_mut().push(k.clone());
            if !keys.insert(k.clone()) {
                return Err(state.stop(JsonIssue::DuplicateKey(k)));
            }
            if k == *segment {
                found = map.next_value_seed(Navigate { state, rest })?;
            } else {
                map.next_value_seed(Skip(state))?;
            }
            state.path.borrow_mut().pop();
        }
        Ok(found)
    }
}

/// Checks a value outside the records (syntax, duplicate keys, members) and keeps nothing.
struct Skip<'s>(&'s State);

impl<'de> DeserializeSeed<'de> for Skip<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut n = 0usize;
        loop {
            if n >= self.0.limits.max_members {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(self
                        .0
                        .stop(JsonIssue::TooManyMembers(self.0.limits.max_members)));
                }
                return Ok(());
            }
            self.0.path.borrow_mut().push(n.to_string());
            let more = seq.next_element_seed(Skip(self.0))?.is_some();
            self.0.path.borrow_mut().pop();
            if !more {
                return Ok(());
            }
            n += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        let mut keys = HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if k == NUMBER_TOKEN {
                map.next_value::<IgnoredAny>()?;
                return Ok(());
            }
            if keys.len() >= state.limits.max_members {
                return Err(state.stop(JsonIssue::TooManyMembers(state.limits.max_members)));
            }
            state.path.borrow_mut().push(k.clone());
            if !keys.insert(k.clone()) {
                return Err(state.stop(JsonIssue::DuplicateKey(k)));
            }
            map.next_value_seed(Skip(state))?;
            state.path.borrow_mut().pop();
        }
        Ok(())
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_records: 3,
            max_members: 4,
            max_values: 40,
            max_string_chars: 10,
        }
    }

    fn read_one(record: &str) -> Record {
        let text = format!("[{record}]");
        let reader = BatchReader::new(&text, limits());
        let records = reader.records("").expect("the document reads");
        reader
            .record(records[0])
            .expect("the batch is within bounds")
    }

    fn found_in(record: &str) -> Vec<Found> {
        match read_one(record) {
            Record::Read { found, .. } => found,
            Record::Refused(f) => vec![f],
        }
    }

    #[test]
    fn a_duplicate_key_at_any_depth_is_named_and_the_first_value_kept() {
        let found = found_in(r#"{"d": {"class": "restricted", "x": 1}, "d": {"class": "public"}}"#);
        assert_eq!(
            found,
            vec![Found {
                path: "d".into(),
                issue: JsonIssue::DuplicateKey("d".into())
            }]
        );
        let found = found_in(r#"{"a": [{"k": 1, "k": 2}]}"#);
        assert_eq!(found[0].path, "a.0.k");
        assert_eq!(found[0].issue, JsonIssue::DuplicateKey("k".into()));
        match read_one(r#"{"d": {"class": "r"}, "d": {"class": "p"}}"#) {
            Record::Read { value, .. } => assert_eq!(value["d"]["class"], "r"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_duplicate_key_outside_the_records_refuses_the_document() {
        let reader = BatchReader::new(r#"{"data": [], "data": [{}]}"#, limits());
        match reader.records("data") {
            Err(Refusal::Found { found, .. }) => {
                assert_eq!(found.issue, JsonIssue::DuplicateKey("data".into()))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            checked_value(r#"{"a": {"b": 1, "b": 1}}"#, limits()),
            Err(Refusal::Found { found, .. }) if found.path == "a.b"
        ));
    }

    #[test]
    fn numbers_are_checked_as_written() {
        assert_eq!(check_number("20000"), Ok(()));
        assert_eq!(check_number("-3.25"), Ok(()));
        assert_eq!(check_number("1e300"), Ok(()));
        assert_eq!(check_number("9223372036854775807"), Ok(()));
        assert_eq!(check_number("18446744073709551615"), Ok(()));
        assert_eq!(check_number("1e+400"), Err(JsonIssue::NotFinite));
        assert_eq!(check_number("-1e400"), Err(JsonIssue::NotFinite));
        assert_eq!(
            check_number("99999999999999999999999999999"),
            Err(JsonIssue::IntegerOutOfRange)
        );
        assert_eq!(
            check_number(&"9".repeat(100_000)),
            Err(JsonIssue::NumberTooLong)
        );
        let found = found_in(r#"{"content": {"fine_yuan": 1e400, "n": 12}}"#);
        assert_eq!(found[0].path, "content.fine_yuan");
        assert_eq!(found[0].issue, JsonIssue::NotFinite);
    }

    #[test]
    fn long_strings_and_keys_are_refused_before_they_are_copied() {
        let found = found_in(r#"{"name": "名名名名名名名名名名名"}"#);
        assert_eq!(found[0].path, "name");
        assert_eq!(found[0].issue, JsonIssue::TooLong(10));
        assert!(found_in(r#"{"name": "名名名名名名名名名名"}"#).is_empty());
    }

    #[test]
    fn members_records_and_values_are_bounded() {
        match read_one(r#"{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}"#) {
            Record::Refused(f) => assert_eq!(f.issue, JsonIssue::TooManyMembers(4)),
            other => panic!("{other:?}"),
        }
        match read_one("[1, 2, 3, 4, 5]") {
            Record::Refused(f) => assert_eq!(f.issue, JsonIssue::TooManyMembers(4)),
            other => panic!("{other:?}"),
        }
        let reader = BatchReader::new("[{}, {}, {}, {}]", limits());
        assert!(matches!(
            reader.records(""),
            Err(Refusal::TooManyRecords(3))
        ));
        let text =
            "[[[1,2,3],[1,2,3],[1,2,3]],[[1,2,3],[1,2,3],[1,2,3]],[[1,2,3],[1,2,3],[1,2,3]]]";
        let reader = BatchReader::new(text, limits());
        let records = reader.records("").unwrap();
        assert!(reader.record(records[0]).is_ok());
        assert!(reader.record(records[1]).is_ok());
        assert!(reader.record(records[2]).is_ok());
        let reader = BatchReader::new(
            text,
            Limits {
                max_values: 30,
                ..limits()
            },
        );
        let records = reader.records("").unwrap();
        let results: Vec<_> = records.iter().map(|r| reader.record(r)).collect();
        assert!(
            matches!(&results[2], Err(Refusal::Found { found, .. }) if found.issue == JsonIssue::TooManyValues(30)),
            "{results:?}"
        );
    }

    #[test]
    fn the_records_are_found_through_objects_and_indices() {
        let text = r#"{"meta": {"n": 1}, "batches": [{"list": [1]}, {"list": [{"a": 1}, 2]}]}"#;
        let reader = BatchReader::new(text, limits());
        let got = reader.records("batches.1.list").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].get(), r#"{"a": 1}"#);
        for missing in ["batches.2.list", "batches.x", "nothing"] {
            assert!(
                matches!(reader.records(missing), Err(Refusal::Shape(_))),
                "{missing}"
            );
        }
        assert!(matches!(
            reader.records("batches.0"),
            Err(Refusal::Shape(_))
        ));
        assert!(matches!(reader.records(""), Err(Refusal::Shape(_))));
        assert!(matches!(
            BatchReader::new("[1,", limits()).records(""),
            Err(Refusal::Syntax { .. })
        ));
    }

    #[test]
    fn numbers_keep_their_written_form() {
        match read_one("{\"n\": 12345678901234567890123.10}") {
            Record::Read { value, found } => {
                assert!(found.is_empty());
                assert_eq!(value["n"].to_string(), "12345678901234567890123.10");
            }
            other => panic!("{other:?}"),
        }
    }
}
