//! What is sealed at rest (GB/T 39786-2021 level 3: confidentiality of important data stored;
//! PIPL Art. 51: encryption of personal information), field by field, in every stored value:
//!
//! - a personal subject's identifier and name: any object whose `id_type` is a personal type
//!   (`resident_id`, `passport`, ...) has its `id` and `name` sealed (canonical records, subject
//!   entries, anything that embeds a subject), and a person named by flat fields of one prefix
//!   (`legal_representative_id_type` personal: `legal_representative_id`, `legal_representative`
//!   and `legal_representative_name`);
//! - a person's contact details ([`PERSONAL_CONTACT_FIELDS`]: `contact_phone`, `address`, …)
//!   beside a personal subject's identifier, and in the content of a record about a person;
//! - a record's restricted content (LS Art. 25): the whole `content` of a record classed
//!   `restricted`, and each field its `disclosure.restricted_fields` lists;
//! - any string holding a resident ID number's shape (17 digits and a digit or X), wherever it
//!   appears (a legal representative's number in a registration record, an objection's text):
//!   a number that only looks like one is sealed too, with one exception: an institution's own
//!   code (the `id` beside `"id_type": "uscc"`, its archive key `uscc:…`, or a store key under
//!   it, `arc/uscc:…`) that is a valid unified social credit code and not a valid resident ID
//!   number, which stands in clear in the store's keys anyway.
//!
//! A subject whose identifier is personal is stored under the keyed hash of its identifier
//! ([`crate::subject::SubjectId::archive_key`]), so it is still found without its number lying in
//! any key. Institutions' unified social credit codes are public registration data (GB 32100,
//! 国家企业信用信息公示系统) and stay in clear.
//!
//! Owns: [`Protection`], the [`AtRest`] the store applies to every write and read.
//!
//! The re-encryption of stored values after a key rotation, which goes through the writer and
//! the audit chain, is the domains' (`credit_gateway_domains::reencrypt`).
//!
//! Never does: decide who may read a value (the disclosure filter and the agencies' scopes do);
//! keep a clear value anywhere but memory.
//!
//! Invariant: protection never nests our own seals (a sealed value's plaintext holds no value we
//! sealed), so opening is one pass; a `$sealed` member that arrives in input is itself sealed, so
//! it can never be mistaken for ours.

use serde_json::{Map, Value};

use crate::crypto::{sealed, Keyring, Keys};
use crate::store::{AtRest, StoreError};
use crate::subject::IdType;

/// A person's contact details, sealed wherever they stand beside a personal subject or in the
/// content of a record about a person (PIPL Art. 28 lists none of them as sensitive, but each
/// identifies the person as surely as the ID number).
pub const PERSONAL_CONTACT_FIELDS: &[&str] = &[
    "contact_phone",
    "phone",
    "mobile",
    "telephone",
    "email",
    "address",
    "contact_address",
    "home_address",
];

/// The store's protection at rest with the gateway's keys.
#[derive(Debug, Clone)]
pub struct Protection {
    keys: Keyring,
}

impl Protection {
    pub fn new(keys: Keyring) -> Self {
        Self { keys }
    }

    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    fn seal(&self, key: &[u8], value: &Value) -> Result<Value, StoreError> {
        sealed::seal(self.keys.current().sealer(), value).map_err(|e| failed(key, e))
    }

    /// Seal what is personal or restricted in `value`, top down. True when anything was sealed.
    fn seal_tree(&self, key: &[u8], value: &mut Value) -> Result<bool, StoreError> {
        match value {
            Value::String(s) if holds_resident_id(s) => {
                *value = self.seal(key, value)?;
                Ok(true)
            }
            Value::Array(items) => {
                let mut any = false;
                for item in items {
                    any |= self.seal_tree(key, item)?;
                }
                Ok(any)
            }
            Value::Object(map) => {
                if map.contains_key(sealed::MARKER) {
                    // Ours (sealed above) or sealed in pass one: never look inside.
                    return Ok(false);
                }
                let mut any = self.seal_level(key, map)?;
                let institution = names_an_institution(map);
                for (name, child) in map.iter_mut() {
                    if institution && name == "id" && child.as_str().is_some_and(is_public_code) {
                        continue;
                    }
                    any |= self.seal_tree(key, child)?;
                }
                Ok(any)
            }
            _ => Ok(false),
        }
    }

    /// The seals this object's own shape calls for (a personal subject, a record's restrictions).
    fn seal_level(&self, key: &[u8], map: &mut Map<String, Value>) -> Result<bool, StoreError> {
        let mut any = false;
        let personal = map
            .get("id_type")
            .and_then(Value::as_str)
            .and_then(|c| IdType::from_code(c.trim()))
            .is_some_and(IdType::is_personal);
        let mut fields: Vec<String> = Vec::new();
        if personal {
            fields.extend(["id".to_string(), "name".to_string()]);
            fields.extend(PERSONAL_CONTACT_FIELDS.iter().map(|f| f.to_string()));
        }
        // A record about a person: the person's contact details in its content (issue #31: a
        // natural person's `contact_phone` was stored in clear).
        let about_a_person = map
            .get("subject")
            .and_then(|s| s.get("id_type"))
            .and_then(Value::as_str)
            .and_then(|c| IdType::from_code(c.trim()))
            .is_some_and(IdType::is_personal);
        if about_a_person {
            if let Some(Value::Object(content)) = map.get_mut("content") {
                for field in PERSONAL_CONTACT_FIELDS {
                    if let Some(v) = content.get_mut(*field).filter(|v| !is_sealed(v)) {
                        *v = self.seal(key, v)?;
                        any = true;
                    }
                }
            }
        }
        // Flat person fields of a record's content (`legal_representative_id_type`,
        // `legal_representative_id`, `legal_representative`): the same person, named by prefix.
        for (k, v) in map.iter() {
            let Some(prefix) = k.strip_suffix("_id_type") else {
                continue;
            };
            let personal = v
                .as_str()
                .and_then(|c| IdType::from_code(c.trim()))
                .is_some_and(IdType::is_personal);
            if personal {
                fields.extend([
                    format!("{prefix}_id"),
                    format!("{prefix}_name"),
                    prefix.to_string(),
                ]);
            }
        }
        for field in &fields {
            if let Some(v) = map.get_mut(field).filter(|v| !is_sealed(v)) {
                *v = self.seal(key, v)?;
                any = true;
            }
        }
        let (restricted_class, fields) = match map.get("disclosure") {
            Some(d) => (
                d.get("class").and_then(Value::as_str) == Some("restricted"),
                d.get("restricted_fields")
                    .and_then(Value::as_object)
                    .map(|f| f.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
            None => (false, Vec::new()),
        };
        if restricted_class {
            if let Some(v) = map.get_mut("content").filter(|v| !is_sealed(v)) {
                *v = self.seal(key, v)?;
                any = true;
            }
        }
        for path in fields {
            if let Some(v) = at_path(map, &path).filter(|v| !is_sealed(v)) {
                *v = self.seal(key, v)?;
                any = true;
            }
        }
        Ok(any)
    }

    /// Open every sealed value in `value` (one pass: plaintexts hold none of ours).
    fn open_tree(&self, keys: &Keys, key: &[u8], value: &mut Value) -> Result<(), StoreError> {
        match value {
            Value::Array(items) => items
                .iter_mut()
                .try_for_each(|v| self.open_tree(keys, key, v)),
            Value::Object(map) if map.contains_key(sealed::MARKER) => {
                *value =
                    sealed::open(value, |id| keys.sealer_for(id)).map_err(|e| failed(key, e))?;
                Ok(())
            }
            Value::Object(map) => map
                .values_mut()
                .try_for_each(|v| self.open_tree(keys, key, v)),
            _ => Ok(()),
        }
    }

    /// Re-seal under the active key every sealed value that names another key.
    fn reseal_tree(&self, keys: &Keys, key: &[u8], value: &mut Value) -> Result<bool, StoreError> {
        match value {
            Value::Array(items) => {
                let mut any = false;
                for v in items {
                    any |= self.reseal_tree(keys, key, v)?;
                }
                Ok(any)
            }
            Value::Object(map) if map.contains_key(sealed::MARKER) => {
                if sealed::key_id(value) == Some(keys.active_data_key()) {
                    return Ok(false);
                }
                let clear =
                    sealed::open(value, |id| keys.sealer_for(id)).map_err(|e| failed(key, e))?;
                *value = self.seal(key, &clear)?;
                Ok(true)
            }
            Value::Object(map) => {
                let mut any = false;
                for v in map.values_mut() {
                    any |= self.reseal_tree(keys, key, v)?;
                }
                Ok(any)
            }
            _ => Ok(false),
        }
    }
}

impl AtRest for Protection {
    fn protect(&self, key: &[u8], value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        if !worth_a_look(&value) {
            return Ok(value);
        }
        // Values that are not JSON (none today) are stored as they are.
        let Ok(mut json) = serde_json::from_slice::<Value>(&value) else {
            return Ok(value);
        };
        let mut any = false;
        if crate::store::at_rest::is_sealed(&value) {
            // Pass one: a `$sealed` member from input is sealed whole, so that it is never read
            // as one of ours.
            any |= self.seal_foreign(key, &mut json)?;
        }
        any |= self.seal_tree(key, &mut json)?;
        // Never the clear bytes when sealing cannot finish: fail closed.
        Ok(if any {
            serde_json::to_vec(&json).map_err(|e| StoreError::corrupt(key, e))?
        } else {
            value
        })
    }

    fn reveal(&self, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let mut json: Value =
            serde_json::from_slice(&stored).map_err(|e| StoreError::corrupt(key, e))?;
        self.open_tree(&self.keys.current(), key, &mut json)?;
        serde_json::to_vec(&json).map_err(|e| StoreError::corrupt(key, e))
    }

    fn lookup_token(&self, data: &[u8]) -> String {
        self.keys.lookup_token(data)
    }

    fn stale(&self, stored: &[u8]) -> bool {
        let active = self.keys.active_data_key();
        let active = active.as_bytes();
        let finder = memchr::memmem::Finder::new(crate::store::at_rest::MARKER);
        finder.find_iter(stored).any(|at| {
            // `"$sealed":"<key id>.`
            let rest = &stored[at + crate::store::at_rest::MARKER.len()..];
            let rest = rest.strip_prefix(b":\"").unwrap_or(rest);
            !(rest.starts_with(active) && rest.get(active.len()) == Some(&b'.'))
        })
    }

    fn fingerprints(&self) -> std::collections::BTreeMap<String, String> {
        self.keys.fingerprints()
    }

    fn reseal(&self, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let mut json: Value =
            serde_json::from_slice(&stored).map_err(|e| StoreError::corrupt(key, e))?;
        Ok(if self.reseal_tree(&self.keys.current(), key, &mut json)? {
            serde_json::to_vec(&json).map_err(|e| StoreError::corrupt(key, e))?
        } else {
            stored
        })
    }
}

impl Protection {
    fn seal_foreign(&self, key: &[u8], value: &mut Value) -> Result<bool, StoreError> {
        match value {
            Value::Object(map) if map.contains_key(sealed::MARKER) => {
                *value = self.seal(key, value)?;
                Ok(true)
            }
            Value::Object(map) => {
                let mut any = false;
                for v in map.values_mut() {
                    any |= self.seal_foreign(key, v)?;
                }
                Ok(any)
            }
            Value::Array(items) => {
                let mut any = false;
                for v in items {
                    any |= self.seal_foreign(key, v)?;
                }
                Ok(any)
            }
            _ => Ok(false),
        }
    }
}

fn failed(key: &[u8], e: crate::crypto::CryptoError) -> StoreError {
    StoreError::Sealing {
        key: crate::store::printable_key(key),
        message: e.to_string(),
    }
}

fn is_sealed(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| m.contains_key(sealed::MARKER))
}

/// The node at a dotted path below `map` (`content.bank_account`).
fn at_path<'a>(map: &'a mut Map<String, Value>, path: &str) -> Option<&'a mut Value> {
    let mut parts = path.split('.');
    let mut node = map.get_mut(parts.next()?)?;
    for p in parts {
        if is_sealed(node) {
            return None;
        }
        node = node.get_mut(p)?;
    }
    Some(node)
}

/// Whether the object is an institution named by its unified social credit code
/// (`"id_type": "uscc"`).
fn names_an_institution(map: &Map<String, Value>) -> bool {
    map.get("id_type").and_then(Value::as_str) == Some(IdType::Uscc.code())
}

/// A unified social credit code of 18 digits, which has a resident ID number's shape, but is a
/// valid code (GB 32100-2015) and not a valid resident ID number (GB 11643-1999). Institutions'
/// codes are public registration data and stand in clear in the archive's keys (`arc/uscc:…`),
/// so sealing one would protect nothing and cost the writer a seal and a re-serialization per
/// value. A number that is also a valid resident ID number, or valid only as an operator's
/// exception, is sealed as before.
fn is_public_code(id: &str) -> bool {
    let strict = crate::subject::IdentifierExceptions::default();
    crate::subject::Uscc::parse(id, &strict).is_ok_and(|u| u.as_str() == id)
        && crate::subject::ResidentId::parse(id, &strict).is_err()
}

/// A cheap test on the bytes: could anything in this value need sealing?
fn worth_a_look(bytes: &[u8]) -> bool {
    names_a_personal_type(bytes)
        || memchr::memmem::find(bytes, b"restricted").is_some()
        || crate::store::at_rest::is_sealed(bytes)
        || digit_run(bytes, Boundary::Any)
}

/// Whether an `id_type` (or `…_id_type`) member in the bytes may name a personal type. The
/// writer protects every value of every record: an institution's values (most of them) are told
/// apart here without parsing.
fn names_a_personal_type(bytes: &[u8]) -> bool {
    memchr::memmem::find_iter(bytes, b"id_type\"").any(|at| {
        let rest = &bytes[at + b"id_type\"".len()..];
        let Some(code) = rest.strip_prefix(b":\"") else {
            // Not the compact form the gateway writes: look.
            return true;
        };
        let end = memchr::memchr(b'"', code).unwrap_or(code.len());
        std::str::from_utf8(&code[..end])
            .ok()
            .and_then(|c| IdType::from_code(c.trim()))
            .is_none_or(IdType::is_personal)
    })
}

/// What may stand beside a digit run that counts.
#[derive(Clone, Copy, PartialEq)]
enum Boundary {
    /// Anything: the pre-filter on serialized bytes, where `\n1101…` (an escape) puts a letter
    /// before a number that the parsed string has after a newline.
    Any,
    /// No ASCII letter or digit on either side.
    NotAlphanumeric,
}

/// Whether the bytes hold a resident ID number's shape: exactly 18 digits, or 17 and an X, with
/// no ASCII letter or digit on either side (so hex digests and longer account numbers do not
/// count; a number inside Chinese text does).
fn digit_run(bytes: &[u8], boundary: Boundary) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let digits = i - start;
        let mut end = i;
        if digits == 17 && matches!(bytes.get(i), Some(b'X' | b'x')) {
            end = i + 1;
        } else if digits != 18 {
            continue;
        }
        let before = start.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(end).copied();
        let free = |b: Option<u8>| !b.is_some_and(|b| b.is_ascii_alphanumeric());
        let counts = match boundary {
            Boundary::Any => true,
            Boundary::NotAlphanumeric => free(before) && free(after),
        };
        if counts && !is_institution_key_code(bytes, start, end, boundary == Boundary::Any) {
            return true;
        }
        i = end;
    }
    false
}

/// How a string that names an institution by its archive key starts: the key itself
/// (`uscc:{code}`, a record head's subject) or a store key under it (`arc/uscc:{code}\x1f…`, an
/// outbox entry's version).
const INSTITUTION_KEY_STARTS: [&[u8]; 2] = [b"uscc:", b"arc/uscc:"];

/// Whether the digit run at `start..end` is an institution's code standing in its archive key: a
/// string that starts with one of [`INSTITUTION_KEY_STARTS`] right before the run, the run ending
/// the string or followed by the key separator, and the run [`is_public_code`]. Such a code
/// stands in clear in the store's keys anyway, so it is not sealed inside values either.
///
/// `json`: `bytes` are serialized JSON (the pre-filter), where the string must open a member's
/// value or an array element (a quote after `:`, `[` or `,`; a quote inside a string is always
/// escaped, so no string that merely contains these bytes matches) and the separator is the
/// escape `\u001f`. Otherwise `bytes` are one parsed string.
fn is_institution_key_code(bytes: &[u8], start: usize, end: usize, json: bool) -> bool {
    let head = &bytes[..start];
    let opened = INSTITUTION_KEY_STARTS.iter().any(|p| {
        if !json {
            return head == *p;
        }
        head.ends_with(p) && {
            let after_quote = head.len() - p.len();
            after_quote >= 2
                && head[after_quote - 1] == b'"'
                && matches!(head[after_quote - 2], b':' | b'[' | b',')
        }
    });
    let rest = &bytes[end..];
    let closed = if json {
        rest.starts_with(b"\"") || rest.starts_with(b"\\u001f")
    } else {
        rest.first().is_none_or(|b| *b == crate::store::SEP as u8)
    };
    opened && closed && std::str::from_utf8(&bytes[start..end]).is_ok_and(is_public_code)
}

/// Whether a string holds a resident ID number's shape anywhere in it.
pub fn holds_resident_id(s: &str) -> bool {
    s.len() >= 18 && digit_run(s.as_bytes(), Boundary::NotAlphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Suite;
    use serde_json::json;

    fn protection() -> Protection {
        Protection::new(Keyring::ephemeral(Suite::National))
    }

    fn round_trip(p: &Protection, value: &Value) -> Vec<u8> {
        let stored = p
            .protect(b"arc/x", serde_json::to_vec(value).unwrap())
            .unwrap();
        let back: Value =
            serde_json::from_slice(&p.reveal(b"arc/x", stored.clone()).unwrap()).unwrap();
        assert_eq!(&back, value);
        stored
    }

    #[test]
    fn a_persons_contact_phone_is_sealed_in_a_record_about_them_and_an_institutions_is_not() {
        let p = protection();
        let person = json!({
            "subject": {"id_type": "passport", "id": "E12345678", "name": "李四", "kind": "individual"},
            "content": {"contact_phone": "13800138000", "address": "广州市某路1号", "action": "penalty"}
        });
        let stored = String::from_utf8(round_trip(&p, &person)).unwrap();
        assert!(
            !stored.contains("13800138000") && !stored.contains("某路"),
            "{stored}"
        );
        assert!(stored.contains("penalty"), "other content stays in clear");
        let institution = json!({
            "subject": {"id_type": "uscc", "id": "91310110666007217T", "name": "某公司"},
            "content": {"contact_phone": "020-12345678"}
        });
        let stored = String::from_utf8(round_trip(&p, &institution)).unwrap();
        assert!(
            stored.contains("020-12345678"),
            "an institution's switchboard is public"
        );
    }

    #[test]
    fn personal_subjects_restricted_fields_and_id_numbers_are_sealed_and_come_back() {
        let p = protection();
        let record = json!({
            "subject": {"id_type": "resident_id", "id": "11010519491231002X", "name": "张三", "kind": "individual"},
            "disclosure": {"class": "gov_share", "restricted_fields": {"content.bank_account": "commercial_secret"}},
            "content": {"bank_account": "6222020200112233", "legal_rep_id": "44010619800101123X", "note": "public"},
        });
        let stored = round_trip(&p, &record);
        let text = String::from_utf8_lossy(&stored);
        for secret in [
            "11010519491231002X",
            "张三",
            "6222020200112233",
            "44010619800101123X",
        ] {
            assert!(!text.contains(secret), "{secret} in clear: {text}");
        }
        assert!(text.contains("public"));
        let restricted =
            json!({"disclosure": {"class": "restricted"}, "content": {"x": "secret words"}});
        assert!(!String::from_utf8_lossy(&round_trip(&p, &restricted)).contains("secret words"));
        // Institutions stay in clear.
        let inst =
            json!({"subject": {"id_type": "uscc", "id": "91310110666007217T", "name": "某公司"}});
        let stored = round_trip(&p, &inst);
        assert_eq!(stored, serde_json::to_vec(&inst).unwrap());
    }

    #[test]
    fn only_values_naming_a_personal_type_are_parsed() {
        assert!(!names_a_personal_type(
            br#"{"subject":{"id_type":"uscc","id":"91310110666007217T"}}"#
        ));
        assert!(names_a_personal_type(
            br#"{"subject":{"id_type":"uscc"},"content":{"legal_representative_id_type":"passport"}}"#
        ));
        assert!(
            names_a_personal_type(br#"{"id_type": "uscc"}"#),
            "other spacing: looked at"
        );
        assert!(
            names_a_personal_type(br#"{"id_type":"unknown_code"}"#),
            "unknown: looked at"
        );
    }

    #[test]
    fn a_person_in_flat_fields_and_a_number_after_an_escape_are_sealed() {
        let p = protection();
        let listing = json!({"content": {
            "legal_representative": "李四",
            "legal_representative_id_type": "passport",
            "legal_representative_id": "E12345678",
            "materials": "身份证复印件\n110105194912310021",
            "authority": "广东省医疗保障局",
        }});
        let stored = round_trip(&p, &listing);
        let text = String::from_utf8_lossy(&stored);
        for secret in ["李四", "E12345678", "110105194912310021"] {
            assert!(!text.contains(secret), "{secret} in clear: {text}");
        }
        assert!(text.contains("广东省医疗保障局"), "the rest stays in clear");
        // An institution's representative named by a USCC-typed field is not a person.
        let inst = json!({"content": {"parent": "某集团", "parent_id_type": "uscc", "parent_id": "91310110666007217T"}});
        assert_eq!(round_trip(&p, &inst), serde_json::to_vec(&inst).unwrap());
    }

    /// A code valid both as a unified social credit code and as a resident ID number.
    fn code_valid_as_both() -> String {
        let strict = crate::subject::IdentifierExceptions::default();
        for date in ["19900101", "19851231", "20000229", "19770615"] {
            for seq in 0..1000 {
                for check in "0123456789X".chars() {
                    let id = format!("114401{date}{seq:03}{check}");
                    if crate::subject::ResidentId::parse(&id, &strict).is_ok()
                        && crate::subject::Uscc::parse(&id, &strict).is_ok()
                    {
                        return id;
                    }
                }
            }
        }
        panic!("no code valid as both found");
    }

    #[test]
    fn an_institutions_code_of_18_digits_stays_in_clear_and_the_value_is_not_rewritten() {
        let p = protection();
        // Valid unified social credit code, all digits: a resident ID number's shape, not one.
        let code = "914401041000000082";
        assert!(is_public_code(code));
        let version = json!({
            "record": {"subject": {"id_type": "uscc", "id": code, "name": "某药房"}},
            "subject": format!("uscc:{code}"),
        });
        let bytes = serde_json::to_vec(&version).unwrap();
        let stored = p.protect(b"arc/x", bytes.clone()).unwrap();
        assert_eq!(stored, bytes, "nothing sealed, the bytes kept as they came");
        // A record head names the subject by its archive key, an outbox entry its version by a
        // store key under it, the change log lists archive keys: not even parsed.
        let sep = crate::store::SEP;
        for named in [
            json!({"subject": format!("uscc:{code}"), "version": 1}),
            json!({"source": {"version_key": format!("arc/uscc:{code}{sep}08{sep}mi{sep}LG-1{sep}00000000001")}}),
            json!([format!("uscc:{code}"), format!("uscc:{code}")]),
        ] {
            let bytes = serde_json::to_vec(&named).unwrap();
            assert!(!worth_a_look(&bytes), "{named}");
            assert_eq!(p.protect(b"out/x", bytes.clone()).unwrap(), bytes);
        }
        for looked_at in [
            format!(r#"{{"subject":"uscc:{code} "}}"#),
            format!(r#"{{"note":"\"uscc:{code}\""}}"#),
            format!(r#"{{"subject":"passport:{code}"}}"#),
            format!(r#"{{"k":"arc/uscc:{code}x"}}"#),
            format!(r#"{{"k":"xarc/uscc:{code}"}}"#),
            format!(r#"{{"k":"uscc:{code}\\u001f"}}"#),
            format!(r#"{{"subject":"uscc:{}"}}"#, code_valid_as_both()),
        ] {
            assert!(worth_a_look(looked_at.as_bytes()), "{looked_at}");
        }

        // The same number anywhere else is sealed as before.
        for elsewhere in [
            json!({"content": {"note": code}}),
            json!({"content": {"id": code}}),
            json!({"subject": {"id_type": "passport", "id": code}}),
            json!({"subject": format!("uscc:{code} 附件")}),
            json!({"k": format!("arc/uscc:{code} x")}),
            json!({"k": format!("note arc/uscc:{code}")}),
        ] {
            let text = String::from_utf8_lossy(&round_trip(&p, &elsewhere)).into_owned();
            assert!(!text.contains(code), "{code} in clear: {text}");
        }
    }

    #[test]
    fn a_code_that_is_also_a_valid_resident_id_number_is_sealed_even_as_an_institutions_id() {
        let p = protection();
        let both = code_valid_as_both();
        assert!(!is_public_code(&both));
        for value in [
            json!({"subject": {"id_type": "uscc", "id": both}}),
            json!({"subject": format!("uscc:{both}")}),
        ] {
            let text = String::from_utf8_lossy(&round_trip(&p, &value)).into_owned();
            assert!(!text.contains(&both), "{both} in clear: {text}");
        }
    }

    #[test]
    fn a_sealed_marker_in_input_is_sealed_itself_and_comes_back_as_sent() {
        let p = protection();
        let hostile = json!({"content": {"x": {"$sealed": "k1.AAAA"}, "y": {"$sealed": 3}}});
        round_trip(&p, &hostile);
    }

    #[test]
    fn rotation_reseals_stale_values_and_old_values_stay_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let source = crate::crypto::keyring::KeySource::File(path.clone());
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let old = Protection::new(Keyring::load(&source, Suite::National, true, now).unwrap());
        let value = json!({"subject": {"id_type": "passport", "id": "E12345678", "name": "李四"}});
        let stored = old
            .protect(b"k", serde_json::to_vec(&value).unwrap())
            .unwrap();
        assert!(!old.stale(&stored));
        let mut file = crate::crypto::keyring::read_file(&path).unwrap().unwrap();
        file.add_data_key(Suite::National, now);
        crate::crypto::keyring::write_file(&path, &file).unwrap();
        let new = Protection::new(Keyring::load(&source, Suite::National, false, now).unwrap());
        assert!(new.stale(&stored));
        let resealed = new.reseal(b"k", stored.clone()).unwrap();
        assert!(!new.stale(&resealed));
        for bytes in [stored, resealed] {
            let back: Value = serde_json::from_slice(&new.reveal(b"k", bytes).unwrap()).unwrap();
            assert_eq!(back, value);
        }
    }

    #[test]
    fn digit_runs() {
        assert!(holds_resident_id("11010519491231002X"));
        assert!(holds_resident_id("id 110105194912310021 here"));
        assert!(!holds_resident_id("1101051949123100"));
        assert!(!holds_resident_id("2026-12-05T10:00:00Z"));
        assert!(holds_resident_id("身份证110105194912310021。"));
        assert!(!holds_resident_id("ab110105194912310021cd"));
        assert!(!holds_resident_id("44050146010900000123"));
    }

    /// One set of keys per store: a store opened with other keys is refused; the same file with
    /// a rotated-in data key opens, and the new key is recorded.
    #[test]
    fn a_store_sealed_under_some_keys_refuses_others_and_records_a_rotation() {
        use crate::crypto::keyring::KeyFile;
        use crate::store::{Store, StoreError};
        let dir = tempfile::tempdir().unwrap();
        let epoch = time::OffsetDateTime::UNIX_EPOCH;
        let mut file = KeyFile::new(Suite::National, epoch);
        let open = |file: &KeyFile| {
            let keys = Keyring::from_file(file, Suite::National, "test").unwrap();
            let p: std::sync::Arc<dyn AtRest> = std::sync::Arc::new(Protection::new(keys));
            Store::open_tuned(dir.path(), Default::default(), 16, Some(p))
        };
        drop(open(&file).unwrap());
        let other = KeyFile::new(Suite::National, epoch);
        match open(&other) {
            Err(StoreError::KeysDiffer { message }) => {
                assert!(message.contains("lookup key differs"), "{message}")
            }
            other => panic!("opened with other keys: {other:?}"),
        }
        let added = file.add_data_key(Suite::National, epoch + time::Duration::days(1));
        drop(open(&file).unwrap());
        let mut without = file.clone();
        without.data_key.retain(|k| k.id != added);
        without.active_data_key = without.data_key[0].id.clone();
        match open(&without) {
            Err(StoreError::KeysDiffer { message }) => {
                assert!(message.contains(&added), "{message}")
            }
            other => panic!("opened without the rotated key: {other:?}"),
        }
    }

    /// A directory sealed by the release before keys were recorded (no `meta/keys`): other keys
    /// are refused because a sealed value does not open with them; its own keys are accepted and
    /// recorded.
    #[test]
    fn a_directory_sealed_before_the_record_must_open_with_the_keys_given() {
        use crate::crypto::keyring::KeyFile;
        use crate::store::{at_rest::KEYS_KEY, Store, StoreError, WriteSet};
        let dir = tempfile::tempdir().unwrap();
        let epoch = time::OffsetDateTime::UNIX_EPOCH;
        let own = KeyFile::new(Suite::National, epoch);
        let protection = |file: &KeyFile| -> std::sync::Arc<dyn AtRest> {
            let keys = Keyring::from_file(file, Suite::National, "test").unwrap();
            std::sync::Arc::new(Protection::new(keys))
        };
        let store =
            Store::open_tuned(dir.path(), Default::default(), 16, Some(protection(&own))).unwrap();
        let mut w = WriteSet::default();
        w.put(
            "sub/resident_id:k:aa",
            r#"{"id_type":"resident_id","name":"张三"}"#,
        );
        store.apply(w).unwrap();
        // As the previous release left it: sealed, nothing recorded.
        let mut w = WriteSet::default();
        w.remove(KEYS_KEY.to_vec());
        store.apply_stored(w).unwrap();
        store.flush().unwrap();
        drop(store);
        let other = KeyFile::new(Suite::National, epoch);
        match Store::open_tuned(dir.path(), Default::default(), 16, Some(protection(&other))) {
            Err(StoreError::KeysDiffer { message }) => {
                assert!(message.contains("does not open"), "{message}")
            }
            other => panic!("opened with other keys: {other:?}"),
        }
        let store =
            Store::open_tuned(dir.path(), Default::default(), 16, Some(protection(&own))).unwrap();
        assert!(store.get_stored(KEYS_KEY).unwrap().is_some(), "recorded");
    }
}
