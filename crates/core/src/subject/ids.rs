//! The identifier value types and their check algorithms.

use std::collections::HashSet;
use std::fmt;

use serde::{Serialize, Serializer};

use super::IdType;

/// Why an identifier is not valid. Always the sender's fault; a retry does not help.
/// Messages name the rule, never the value (it may be personal information).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("must be {expected} characters, got {got}")]
    Length { expected: &'static str, got: usize },
    #[error("character {position} is not allowed here ({allowed})")]
    Character {
        position: usize,
        allowed: &'static str,
    },
    #[error("check character does not match ({standard})")]
    CheckCharacter { standard: &'static str },
    #[error("embedded organization code check character does not match (GB 11714)")]
    OrganizationCodeCheck,
    #[error("birth date in positions 7-14 is not a real date")]
    BirthDate,
    #[error("administrative division code must be 6 digits with a known province prefix")]
    Region,
}

const USCC_CHARSET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
const RESIDENT_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const RESIDENT_CHECK: &[u8; 11] = b"10X98765432";

/// Province-level prefixes of GB/T 2260 division codes.
const PROVINCE_PREFIXES: [u8; 34] = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71, 81, 82,
];

/// Codes the operator accepts although they fail the check (configured, see `validation` config).
#[derive(Debug, Clone, Default)]
pub struct IdentifierExceptions {
    uscc: HashSet<String>,
    resident_id: HashSet<String>,
}

impl IdentifierExceptions {
    pub fn new<'a>(
        uscc: impl IntoIterator<Item = &'a String>,
        resident_id: impl IntoIterator<Item = &'a String>,
    ) -> Self {
        Self {
            uscc: uscc
                .into_iter()
                .map(|s| s.trim().to_ascii_uppercase())
                .collect(),
            resident_id: resident_id
                .into_iter()
                .map(|s| s.trim().to_ascii_uppercase())
                .collect(),
        }
    }
}

/// A unified social credit code (GB 32100-2015), check character and embedded organization code
/// check verified, or listed as an exception by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Uscc(String);

impl Uscc {
    pub fn parse(raw: &str, exceptions: &IdentifierExceptions) -> Result<Self, IdentifierError> {
        let code = raw.trim().to_ascii_uppercase();
        if exceptions.uscc.contains(&code) {
            return Ok(Self(code));
        }
        let bytes = code.as_bytes();
        if bytes.len() != 18 {
            return Err(IdentifierError::Length {
                expected: "18",
                got: code.chars().count(),
            });
        }
        let mut values = [0u32; 18];
        for (i, b) in bytes.iter().enumerate() {
            values[i] =
                USCC_CHARSET
                    .iter()
                    .position(|c| c == b)
                    .ok_or(IdentifierError::Character {
                        position: i + 1,
                        allowed: "0-9 and A-Y without I, O, S, V, Z",
                    })? as u32;
        }
        if !bytes[2..8].iter().all(u8::is_ascii_digit) {
            return Err(IdentifierError::Region);
        }
        if org_code_check(&bytes[8..16]) != bytes[16] {
            return Err(IdentifierError::OrganizationCodeCheck);
        }
        let sum: u32 = values[..17]
            .iter()
            .zip(USCC_WEIGHTS)
            .map(|(v, w)| v * w)
            .sum();
        let check = USCC_CHARSET[((31 - sum % 31) % 31) as usize];
        if check != bytes[17] {
            return Err(IdentifierError::CheckCharacter {
                standard: "GB 32100-2015",
            });
        }
        Ok(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// GB 11714 organization code check over the first 8 characters (digits, letters A=10 .. Z=35).
fn org_code_check(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .zip(ORG_WEIGHTS)
        .map(|(b, w)| {
            let v = if b.is_ascii_digit() {
                (b - b'0') as u32
            } else {
                (b - b'A') as u32 + 10
            };
            v * w
        })
        .sum();
    match 11 - sum % 11 {
        10 => b'X',
        11 => b'0',
        n => b'0' + n as u8,
    }
}

/// A resident ID number (GB 11643-1999): 18 characters, a real birth date, check digit verified.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResidentId(String);

impl ResidentId {
    pub fn parse(raw: &str, exceptions: &IdentifierExceptions) -> Result<Self, IdentifierError> {
        let id = raw.trim().to_ascii_uppercase();
        if exceptions.resident_id.contains(&id) {
            return Ok(Self(id));
        }
        let bytes = id.as_bytes();
        if bytes.len() != 18 {
            return Err(IdentifierError::Length {
                expected: "18",
                got: id.chars().count(),
            });
        }
        if let Some(pos) = bytes[..17].iter().position(|b| !b.is_ascii_digit()) {
            return Err(IdentifierError::Character {
                position: pos + 1,
                allowed: "digits",
            });
        }
        if !(bytes[17].is_ascii_digit() || bytes[17] == b'X') {
            return Err(IdentifierError::Character {
                position: 18,
                allowed: "a digit or X",
            });
        }
        if RegionCode::parse(&id[..6]).is_err() {
            return Err(IdentifierError::Region);
        }
        if !is_real_birth_date(&bytes[6..14]) {
            return Err(IdentifierError::BirthDate);
        }
        let sum: u32 = bytes[..17]
            .iter()
            .zip(RESIDENT_WEIGHTS)
            .map(|(b, w)| (b - b'0') as u32 * w)
            .sum();
        if RESIDENT_CHECK[(sum % 11) as usize] != bytes[17] {
            return Err(IdentifierError::CheckCharacter {
                standard: "GB 11643-1999",
            });
        }
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` holds a valid resident ID number as a run of exactly 18 ID characters
    /// (17 digits and a digit or X), whatever stands around it: a letter-prefixed `R1101…`
    /// counts, a longer run of digits (a serial number) does not.
    pub fn found_in(text: &str) -> bool {
        !Self::spans_in(text).is_empty()
    }

    /// `text` with every resident ID number [`Self::found_in`] finds masked (first 6 and last 2
    /// kept): what a log, a receipt or an error may say of an identifier that held one.
    pub fn masked_in(text: &str) -> String {
        let mut out = text.to_string();
        for (start, end) in Self::spans_in(text).into_iter().rev() {
            out.replace_range(start..end, &mask_middle(&text[start..end], 6, 2));
        }
        out
    }

    /// Byte ranges of the valid resident ID numbers in `text`.
    fn spans_in(text: &str) -> Vec<(usize, usize)> {
        let none = IdentifierExceptions::default();
        let bytes = text.as_bytes();
        let mut spans = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if !bytes[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            let mut end = i + digits;
            if digits == 17 && matches!(bytes.get(end), Some(b'X' | b'x')) {
                end += 1;
            }
            if end - i == 18 && Self::parse(&text[i..end], &none).is_ok() {
                spans.push((i, end));
            }
            i = end;
        }
        spans
    }

    /// The number masked for public channels: region prefix and last character kept
    /// (`440104**********1X` style: first 6, last 2 kept).
    pub fn masked(&self) -> String {
        mask_middle(&self.0, 6, 2)
    }
}

/// Never print a resident ID, not even in debug output.
impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResidentId({})", self.masked())
    }
}

fn is_real_birth_date(digits: &[u8]) -> bool {
    let num = |r: std::ops::Range<usize>| -> u32 {
        digits[r]
            .iter()
            .fold(0, |acc, b| acc * 10 + (b - b'0') as u32)
    };
    let (year, month, day) = (num(0..4), num(4..6), num(6..8));
    if !(1880..=2100).contains(&year) {
        return false;
    }
    let Ok(month) = time::Month::try_from(month as u8) else {
        return false;
    };
    time::Date::from_calendar_date(year as i32, month, day as u8).is_ok()
}

/// Keep `head` leading and `tail` trailing characters, replace the rest with `*`.
pub fn mask_middle(text: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= head + tail {
        return "*".repeat(chars.len());
    }
    let mut out: String = chars[..head].iter().collect();
    out.extend(std::iter::repeat_n('*', chars.len() - head - tail));
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// A personal identifier of the other 双公示 types (passport 02, HK/Macao permit 03, Taiwan
/// permit 04, foreign permanent resident ID 05): checked for shape only, since these documents have
/// no published check algorithm the gateway could verify.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OtherPersonalId(String);

impl OtherPersonalId {
    pub fn parse(id_type: IdType, raw: &str) -> Result<Self, IdentifierError> {
        let id = raw.trim().to_ascii_uppercase();
        let len = id.chars().count();
        let (min, max, expected) = match id_type {
            IdType::Passport => (5, 20, "5 to 20"),
            IdType::HkMacaoPermit => (9, 11, "9 to 11"),
            IdType::TaiwanPermit => (8, 10, "8 to 10"),
            IdType::ForeignPermanentResident => (15, 18, "15 to 18"),
            IdType::Uscc | IdType::ResidentId => (0, 0, "0"),
        };
        if len < min || len > max {
            return Err(IdentifierError::Length { expected, got: len });
        }
        if let Some(pos) = id.bytes().position(|b| !b.is_ascii_alphanumeric()) {
            return Err(IdentifierError::Character {
                position: pos + 1,
                allowed: "letters and digits",
            });
        }
        Ok(Self(id))
    }
}

impl fmt::Debug for OtherPersonalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OtherPersonalId({})", mask_middle(&self.0, 1, 1))
    }
}

/// A subject's identifier: the archive key of LS Art. 14.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectId {
    Uscc(Uscc),
    Resident(ResidentId),
    Other(IdType, OtherPersonalId),
}

impl SubjectId {
    pub fn parse(
        id_type: IdType,
        raw: &str,
        exceptions: &IdentifierExceptions,
    ) -> Result<Self, IdentifierError> {
        Ok(match id_type {
            IdType::Uscc => Self::Uscc(Uscc::parse(raw, exceptions)?),
            IdType::ResidentId => Self::Resident(ResidentId::parse(raw, exceptions)?),
            other => Self::Other(other, OtherPersonalId::parse(other, raw)?),
        })
    }

    pub fn id_type(&self) -> IdType {
        match self {
            Self::Uscc(_) => IdType::Uscc,
            Self::Resident(_) => IdType::ResidentId,
            Self::Other(t, _) => *t,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Uscc(u) => u.as_str(),
            Self::Resident(r) => r.as_str(),
            Self::Other(_, o) => &o.0,
        }
    }

    /// The key the store knows the subject by: `uscc:91310110666007217T` for an institution;
    /// for a person, the keyed hash of the identifier (`resident_id:k:3fa9...`, see `privacy`),
    /// so no personal identifier lies in a key. In clear only in a store without protection at
    /// rest (unit tests of lower layers).
    pub fn archive_key(&self, store: &crate::store::Store) -> String {
        let clear = self.clear_key();
        if !self.id_type().is_personal() {
            return clear;
        }
        match store.lookup_token(clear.as_bytes()) {
            Some(token) => format!("{}:k:{token}", self.id_type().code()),
            None => clear,
        }
    }

    /// `type:identifier`, in clear: never stored or logged.
    fn clear_key(&self) -> String {
        format!("{}:{}", self.id_type().code(), self.as_str())
    }

    /// A form safe for logs and audit entries: a person becomes the keyed hash the store names
    /// them by (`resident_id:k:…`, 128 bits of HMAC-SM3 or HMAC-SHA-256).
    pub fn log_safe(&self, store: &crate::store::Store) -> String {
        if !self.id_type().is_personal() {
            return self.clear_key();
        }
        // The keyed hash the store names the person by (an auditor can follow the entry to the
        // archive; nobody can test a guessed number against it).
        format!(
            "{}:{}",
            self.id_type().code(),
            store.private_token(self.clear_key().as_bytes())
        )
    }
}

/// A 6-digit administrative division code (GB/T 2260) with a known province prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionCode([u8; 6]);

impl RegionCode {
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        let raw = raw.trim();
        let bytes = raw.as_bytes();
        if bytes.len() != 6 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(IdentifierError::Region);
        }
        let province = (bytes[0] - b'0') * 10 + (bytes[1] - b'0');
        if !PROVINCE_PREFIXES.contains(&province) {
            return Err(IdentifierError::Region);
        }
        let mut code = [0u8; 6];
        code.copy_from_slice(bytes);
        Ok(Self(code))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("000000")
    }

    /// The province this division belongs to (`440100` -> `440000`).
    pub fn province(&self) -> RegionCode {
        Self([self.0[0], self.0[1], b'0', b'0', b'0', b'0'])
    }

    /// The prefecture-level city (`440106` -> `440100`); `None` for a province-level code.
    pub fn city(&self) -> Option<RegionCode> {
        if &self.0[2..4] == b"00" {
            return None;
        }
        Some(Self([
            self.0[0], self.0[1], self.0[2], self.0[3], b'0', b'0',
        ]))
    }
}

impl Serialize for RegionCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn none() -> IdentifierExceptions {
        IdentifierExceptions::default()
    }

    #[test]
    fn a_resident_id_is_found_inside_identifiers_but_not_inside_longer_serials() {
        assert!(ResidentId::found_in("R11010519491231002X-2025"));
        assert!(ResidentId::found_in("11010519491231002x"));
        assert!(
            !ResidentId::found_in("911010519491231002X"),
            "19 characters: a serial"
        );
        assert!(
            !ResidentId::found_in("110105194912310021"),
            "check character wrong"
        );
        assert!(!ResidentId::found_in("穗医保罚〔2025〕12号"));
        assert_eq!(
            ResidentId::masked_in("R11010519491231002X-2025"),
            "R110105**********2X-2025"
        );
    }

    #[test]
    fn uscc_examples_from_gb_32100() {
        assert!(Uscc::parse("91310110666007217T", &none()).is_ok());
        assert!(Uscc::parse("91350100M000100Y43", &none()).is_ok());
        assert!(
            Uscc::parse(" 91350100m000100y43 ", &none()).is_ok(),
            "trimmed, upper-cased"
        );
    }

    #[test]
    fn uscc_pilot_code_needs_the_exception_list() {
        let code = "91350211M00013FA1N";
        assert_eq!(
            Uscc::parse(code, &none()),
            Err(IdentifierError::CheckCharacter {
                standard: "GB 32100-2015"
            })
        );
        let list = vec![code.to_string()];
        let exceptions = IdentifierExceptions::new(&list, &[]);
        assert!(Uscc::parse(code, &exceptions).is_ok());
    }

    #[test]
    fn uscc_rejects_forbidden_letters_and_length() {
        assert!(matches!(
            Uscc::parse("91310110666007217I", &none()),
            Err(IdentifierError::Character { position: 18, .. })
        ));
        assert!(matches!(
            Uscc::parse("9131011066600721", &none()),
            Err(IdentifierError::Length { .. })
        ));
    }

    #[test]
    fn resident_id_check_digit_and_birth_date() {
        let valid = resident_id_with_check("44010419900307123");
        assert!(ResidentId::parse(&valid, &none()).is_ok());
        let mut wrong = valid.clone().into_bytes();
        wrong[17] = if wrong[17] == b'1' { b'2' } else { b'1' };
        assert_eq!(
            ResidentId::parse(std::str::from_utf8(&wrong).unwrap(), &none()),
            Err(IdentifierError::CheckCharacter {
                standard: "GB 11643-1999"
            })
        );
        let feb30 = resident_id_with_check("44010419900230123");
        assert_eq!(
            ResidentId::parse(&feb30, &none()),
            Err(IdentifierError::BirthDate)
        );
    }

    #[test]
    fn resident_id_debug_is_masked() {
        let valid = resident_id_with_check("44010419900307123");
        let id = ResidentId::parse(&valid, &none()).unwrap();
        let shown = format!("{id:?}");
        assert!(!shown.contains(&valid), "{shown}");
        assert!(shown.contains("440104"));
    }

    #[test]
    fn region_codes() {
        assert_eq!(
            RegionCode::parse("440106")
                .unwrap()
                .city()
                .unwrap()
                .as_str(),
            "440100"
        );
        assert_eq!(
            RegionCode::parse("440106").unwrap().province().as_str(),
            "440000"
        );
        assert!(RegionCode::parse("440000").unwrap().city().is_none());
        assert!(RegionCode::parse("990100").is_err());
        assert!(RegionCode::parse("44010").is_err());
        assert!(RegionCode::parse("4401OO").is_err());
    }

    /// Test-side generator, written independently of the parser above.
    pub(crate) fn resident_id_with_check(first17: &str) -> String {
        let w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        let s: u32 = first17
            .bytes()
            .zip(w)
            .map(|(b, w)| (b - b'0') as u32 * w)
            .sum();
        format!(
            "{first17}{}",
            "10X98765432".as_bytes()[(s % 11) as usize] as char
        )
    }

    pub(crate) fn uscc_with_checks(prefix8: &str, org8: &str) -> String {
        let org9 = format!("{org8}{}", org_code_check(org8.as_bytes()) as char);
        let body = format!("{prefix8}{org9}");
        let cs = "0123456789ABCDEFGHJKLMNPQRTUWXY";
        let w = [
            1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
        ];
        let s: usize = body
            .chars()
            .zip(w)
            .map(|(c, w)| cs.find(c).unwrap() * w)
            .sum();
        format!("{body}{}", cs.as_bytes()[(31 - s % 31) % 31] as char)
    }

    const ORG_CHARS: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";

    fn uscc_strategy() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["91", "92", "12", "52", "11"]),
            prop::sample::select(vec!["440100", "440300", "540100", "310110"]),
            prop::collection::vec(
                prop::sample::select(ORG_CHARS.chars().collect::<Vec<_>>()),
                8,
            ),
        )
            .prop_map(|(kind, region, org)| {
                uscc_with_checks(
                    &format!("{kind}{region}"),
                    &org.into_iter().collect::<String>(),
                )
            })
    }

    fn resident_strategy() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["440104", "440305", "540102", "110101"]),
            1900i32..2020,
            1u8..=12,
            1u8..=28,
            0u32..1000,
        )
            .prop_map(|(region, y, m, d, seq)| {
                resident_id_with_check(&format!("{region}{y:04}{m:02}{d:02}{seq:03}"))
            })
    }

    proptest! {
        #[test]
        fn every_generated_uscc_passes(code in uscc_strategy()) {
            prop_assert!(Uscc::parse(&code, &none()).is_ok(), "{}", code);
        }

        #[test]
        fn every_single_character_change_of_a_uscc_fails(
            code in uscc_strategy(),
            pos in 0usize..18,
            replacement in prop::sample::select(USCC_CHARSET.to_vec()),
        ) {
            let mut bytes = code.clone().into_bytes();
            prop_assume!(bytes[pos] != replacement);
            bytes[pos] = replacement;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(Uscc::parse(&changed, &none()).is_err(), "{} -> {}", code, changed);
        }

        #[test]
        fn every_generated_resident_id_passes(id in resident_strategy()) {
            prop_assert!(ResidentId::parse(&id, &none()).is_ok());
        }

        #[test]
        fn every_single_character_change_of_a_resident_id_fails(
            id in resident_strategy(),
            pos in 0usize..18,
            replacement in prop::sample::select(b"0123456789X".to_vec()),
        ) {
            let mut bytes = id.clone().into_bytes();
            prop_assume!(bytes[pos] != replacement);
            bytes[pos] = replacement;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(ResidentId::parse(&changed, &none()).is_err());
        }

        #[test]
        fn identifier_parsers_never_panic(s in "\\PC{0,40}") {
            let _ = Uscc::parse(&s, &none());
            let _ = ResidentId::parse(&s, &none());
            let _ = RegionCode::parse(&s);
            for t in IdType::ALL { let _ = SubjectId::parse(t, &s, &none()); }
        }
    }
}
