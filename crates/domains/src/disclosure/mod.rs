//! The disclosure filter (LS Arts. 24-27, GD Art. 12): every outbound share passes the filter of
//! its channel before it is written to the outbox, so nothing that must not leave ever reaches a
//! queue, a log or a receiver.
//!
//! Rules are data (`mappings/disclosure.toml`): per channel, which categories may go out, which
//! fields are masked (resident ID numbers, phone numbers) or dropped, and which penalty types are
//! not publicly noticed. On top of the file, these hold whatever it says:
//! - a record classed `restricted` (state secret, commercial secret, personal privacy, not yet
//!   disclosed by its source agency, legally prohibited: LS Art. 25) never leaves;
//! - a field listed in `disclosure.restricted_fields` never leaves;
//! - a record goes only to channels at least as closed as its class (a `gov_share` record is never
//!   publicly noticed; an `authorized_query` record only answers authorized queries);
//! - on the public channel, a personal subject's ID is masked, and any content text that looks like
//!   a valid resident ID number or a mobile number is masked too (a safety net for unlisted fields).
//!
//! Every withheld record and masked or dropped field is reported by rule name and field path, never
//! with its value ([`Decision`]); callers count it (metric) and audit it.

mod rules;

pub use rules::{ChannelRules, DisclosureRules, RulesError, BUILTIN as BUILTIN_RULES};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::record::{CanonicalRecord, Category, DisclosureClass};
use crate::subject::{mask_middle, IdentifierExceptions, ResidentId};

/// The three disclosure channels (公示公开, 政务共享, 授权查询).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    PublicNotice,
    GovShare,
    AuthorizedQuery,
}

impl Channel {
    pub fn code(self) -> &'static str {
        match self {
            Self::PublicNotice => "public_notice",
            Self::GovShare => "gov_share",
            Self::AuthorizedQuery => "authorized_query",
        }
    }

    /// Whether a record of this class may go out on this channel at all.
    fn admits(self, class: DisclosureClass) -> bool {
        match (self, class) {
            (_, DisclosureClass::Restricted) => false,
            (Self::PublicNotice, DisclosureClass::Public) => true,
            (Self::PublicNotice, _) => false,
            (Self::GovShare, DisclosureClass::Public | DisclosureClass::GovShare) => true,
            (Self::GovShare, _) => false,
            (Self::AuthorizedQuery, _) => true,
        }
    }
}

/// What the filter decided for one record on one channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Withheld {
        rule: &'static str,
    },
    Share {
        record: Value,
        masked: Vec<(String, &'static str)>,
        dropped: Vec<(String, &'static str)>,
    },
}

/// Filter one record for one channel.
pub fn filter(record: &CanonicalRecord, channel: Channel, rules: &DisclosureRules) -> Decision {
    if record.disclosure.class == DisclosureClass::Restricted {
        return Decision::Withheld {
            rule: "restricted_record",
        };
    }
    if !channel.admits(record.disclosure.class) {
        return Decision::Withheld {
            rule: "class_not_for_channel",
        };
    }
    let channel_rules = rules.channel(channel);
    let Some(channel_rules) = channel_rules else {
        return Decision::Withheld {
            rule: "channel_not_configured",
        };
    };
    if !channel_rules.categories.contains(&record.category) {
        return Decision::Withheld {
            rule: "category_not_for_channel",
        };
    }
    if is_withheld_penalty(record, channel_rules) {
        return Decision::Withheld {
            rule: "minor_penalty_not_publicly_noticed",
        };
    }
    let mut json = record.to_json();
    let mut masked = Vec::new();
    let mut dropped = Vec::new();
    for field in record.disclosure.restricted_fields.keys() {
        if remove_path(&mut json, field) {
            dropped.push((field.clone(), "restricted_field"));
        }
    }
    for field in &channel_rules.drop_fields {
        if remove_path(&mut json, field) {
            dropped.push((field.clone(), "channel_drops_field"));
        }
    }
    let personal_subject = record.subject.id.id_type().is_personal();
    for field in &channel_rules.mask_resident_id {
        if field == "subject.id" && !personal_subject {
            continue;
        }
        if mask_path(&mut json, field, |s| mask_middle(s, 6, 2)) {
            masked.push((field.clone(), "mask_personal_id"));
        }
    }
    for field in &channel_rules.mask_phone {
        if mask_path(&mut json, field, |s| mask_middle(s, 3, 4)) {
            masked.push((field.clone(), "mask_phone"));
        }
    }
    if channel_rules.scan_personal_data {
        // The legal basis too: a document number may carry the person's number (issue #31).
        for part in ["content", "basis"] {
            if let Some(Value::Object(obj)) = json.get_mut(part) {
                scan_content(obj, part, &mut masked);
            }
        }
    }
    // The record's own disclosure metadata says nothing a receiver needs beyond the class.
    if let Some(d) = json.get_mut("disclosure").and_then(Value::as_object_mut) {
        d.remove("restricted_fields");
    }
    Decision::Share {
        record: json,
        masked,
        dropped,
    }
}

/// A recorded decision names a rule this release does not know: the payload cannot be rebuilt
/// faithfully, so it is not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the recorded filter decision names an unknown rule `{0}`")]
pub struct UnknownRule(pub String);

/// Re-apply a decision [`filter`] made (the `masked` and `dropped` fields with their rules) to a
/// record's JSON: the same removals, then the same masks, so the payload is what the filter
/// produced at the time whatever the rules say now. A record shared by reference (the outbox
/// keeps the archived version and this decision, not a copy) is rebuilt with it at delivery.
pub fn reapply(json: &mut Value, decision: &[(String, String)]) -> Result<(), UnknownRule> {
    let is_drop = |rule: &str| rule == "restricted_field" || rule == "channel_drops_field";
    for (field, _) in decision.iter().filter(|(_, rule)| is_drop(rule)) {
        remove_path(json, field);
    }
    for (field, rule) in decision.iter().filter(|(_, rule)| !is_drop(rule)) {
        match rule.as_str() {
            "mask_personal_id" => {
                mask_path(json, field, |s| mask_middle(s, 6, 2));
            }
            "mask_phone" => {
                mask_path(json, field, |s| mask_middle(s, 3, 4));
            }
            "mask_personal_data_in_text" => mask_text_at(json, field),
            other => return Err(UnknownRule(other.to_string())),
        }
    }
    if let Some(d) = json.get_mut("disclosure").and_then(Value::as_object_mut) {
        d.remove("restricted_fields");
    }
    Ok(())
}

/// Mask personal numbers in the text at `path` (a string, or every string of an array).
fn mask_text_at(json: &mut Value, path: &str) {
    let mut node = json;
    for p in path.split('.') {
        match node.get_mut(p) {
            Some(n) => node = n,
            None => return,
        }
    }
    let mask = |s: &mut String| *s = mask_personal_numbers(s).0;
    match node {
        Value::String(s) => mask(s),
        Value::Array(items) => items.iter_mut().for_each(|item| {
            if let Value::String(s) = item {
                mask(s)
            }
        }),
        _ => {}
    }
}

/// LS Art. 27 and the national credit-repair rules: penalties that are only warnings or notices of
/// criticism are not publicly noticed.
fn is_withheld_penalty(record: &CanonicalRecord, rules: &ChannelRules) -> bool {
    if record.category != Category::Administrative || rules.withhold_penalties_only_of.is_empty() {
        return false;
    }
    if record.content.get("action").and_then(Value::as_str) != Some("penalty") {
        return false;
    }
    let types: Vec<&str> = record
        .content
        .get("penalty_types")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::trim).collect())
        .unwrap_or_default();
    !types.is_empty()
        && types
            .iter()
            .all(|t| rules.withhold_penalties_only_of.iter().any(|w| w == t))
}

fn remove_path(json: &mut Value, path: &str) -> bool {
    let parts: Vec<&str> = path.split('.').collect();
    let Some((last, parents)) = parts.split_last() else {
        return false;
    };
    let mut node = json;
    for p in parents {
        match node.get_mut(*p) {
            Some(n) => node = n,
            None => return false,
        }
    }
    node.as_object_mut()
        .is_some_and(|o| o.remove(*last).is_some())
}

fn mask_path(json: &mut Value, path: &str, mask: impl Fn(&str) -> String) -> bool {
    let mut node = json;
    for p in path.split('.') {
        match node.get_mut(p) {
            Some(n) => node = n,
            None => return false,
        }
    }
    match node {
        Value::String(s) if !s.is_empty() => {
            *s = mask(s);
            true
        }
        _ => false,
    }
}

/// Mask resident-ID numbers and mobile numbers found in any content text.
fn scan_content(
    obj: &mut Map<String, Value>,
    prefix: &str,
    masked: &mut Vec<(String, &'static str)>,
) {
    for (key, value) in obj.iter_mut() {
        let path = format!("{prefix}.{key}");
        match value {
            Value::String(s) => {
                let (text, hits) = mask_personal_numbers(s);
                if hits > 0 {
                    *s = text;
                    masked.push((path, "mask_personal_data_in_text"));
                }
            }
            Value::Object(inner) => scan_content(inner, &path, masked),
            Value::Array(items) => {
                for item in items.iter_mut() {
                    if let Value::String(s) = item {
                        let (text, hits) = mask_personal_numbers(s);
                        if hits > 0 {
                            *s = text;
                            masked.push((path.clone(), "mask_personal_data_in_text"));
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Replace every run of 18 ID characters that is a valid resident ID, and every 11-digit mobile
/// number (1[3-9]x), with a masked form. Returns the text and the number of replacements.
pub fn mask_personal_numbers(text: &str) -> (String, usize) {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut hits = 0;
    let mut i = 0;
    let none = IdentifierExceptions::default();
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let run_end = chars[i..]
                .iter()
                .position(|c| !(c.is_ascii_digit() || *c == 'X' || *c == 'x'))
                .map(|p| i + p)
                .unwrap_or(chars.len());
            let run: String = chars[i..run_end].iter().collect();
            if run.len() == 18 && ResidentId::parse(&run, &none).is_ok() {
                out.push_str(&mask_middle(&run, 6, 2));
                hits += 1;
                i = run_end;
                continue;
            }
            if run.len() == 11
                && run.starts_with('1')
                && run.as_bytes()[1] >= b'3'
                && run.bytes().all(|b| b.is_ascii_digit())
            {
                out.push_str(&mask_middle(&run, 3, 4));
                hits += 1;
                i = run_end;
                continue;
            }
            out.push_str(&run);
            i = run_end;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    (out, hits)
}

/// For operators below `auditor`: like [`mask_personal_numbers`], but without validating: any
/// 17 digits followed by a digit or X (a resident ID the exception list accepts fails the check),
/// and any 11-digit mobile number, wherever they stand (after `+86`, after letters). Over-masking
/// an all-digit code is the safe side for a screen.
pub fn mask_for_operators(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_digit()) {
            let digits_end = chars[i..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .map(|p| i + p)
                .unwrap_or(chars.len());
            let mut end = digits_end;
            if digits_end - i == 17 && matches!(chars.get(digits_end), Some('X' | 'x')) {
                end += 1;
            }
            let run: String = chars[i..end].iter().collect();
            let mobile = |s: &str| s.len() == 11 && s.starts_with('1') && s.as_bytes()[1] >= b'3';
            let masked = match run.len() {
                18 => Some(mask_middle(&run, 6, 2)),
                11 if mobile(&run) => Some(mask_middle(&run, 3, 4)),
                // +86 and the mobile number written together.
                13 if run.starts_with("86") && mobile(&run[2..]) => {
                    Some(format!("86{}", mask_middle(&run[2..], 3, 4)))
                }
                _ => None,
            };
            out.push_str(masked.as_deref().unwrap_or(&run));
            i = end;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;
