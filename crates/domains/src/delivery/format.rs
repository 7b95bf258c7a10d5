//! Outbound formats: a destination may name an outbound mapping in `mappings/outbound/` that
//! renders its batches instead of canonical JSON, e.g. an XML envelope with a header (sender,
//! receiver, message id, record type, time) and a body of 双公示 field codes, as provincial
//! exchange platforms use (GB/T 39443-2020, service interface).
//!
//! File format:
//! ```toml
//! id = "shuanggongshi-xml"
//! root = "XYXXJH"                              # envelope root element
//! [header]                                     # element -> value: a $variable or literal text
//! FSF = "$sender"                              # $sender $receiver $message_id $record_type $time
//! [record]
//! element = "JL"
//! attributes = { IDEM = "$idempotency_key", LX = "$kind", QD = "$channel" }
//! [record.fields]                              # element -> canonical path, or a table
//! CF_XDR_MC = "subject.name"
//! CF_NR_FK = { path = "content.fine_yuan", scale = -4 }        # 元 -> 万元, exactly
//! CF_JDRQ = { path = "basis.decided_on", date = "YYYY/MM/DD" }
//! ```
//! Absent values are left out; lists are joined with `;`.

use std::collections::BTreeMap;
use std::path::Path;

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use serde::Deserialize;
use serde_json::Value;

use crate::config::DestinationConfig;
use crate::outbox::Entry;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outbound {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub root: String,
    #[serde(default)]
    pub header: BTreeMap<String, String>,
    pub record: RecordSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSpec {
    pub element: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub fields: BTreeMap<String, FieldSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FieldSpec {
    Path(String),
    Rule {
        path: String,
        #[serde(default)]
        scale: i32,
        #[serde(default)]
        date: Option<String>,
    },
}

/// Every outbound format, by id.
#[derive(Debug, Clone, Default)]
pub struct Formats(BTreeMap<String, Outbound>);

const BUILTIN: [(&str, &str); 1] = [(
    "shuanggongshi-xml.toml",
    include_str!("../../../../mappings/outbound/shuanggongshi-xml.toml"),
)];

impl Formats {
    /// `dir` when it exists, else the built-in copies.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let mut files = Vec::new();
        if dir.is_dir() {
            let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) == Some("toml") {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    files.push((path.display().to_string(), text));
                }
            }
        } else {
            files = BUILTIN
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect();
        }
        let mut formats = BTreeMap::new();
        for (name, text) in files {
            let f: Outbound = toml::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
            formats.insert(f.id.clone(), f);
        }
        Ok(Self(formats))
    }

    pub fn get(&self, id: &str) -> Option<&Outbound> {
        self.0.get(id)
    }
}

impl Outbound {
    pub fn render(
        &self,
        dest: &DestinationConfig,
        message_id: &str,
        entries: &[Entry],
        now: &str,
    ) -> Result<Vec<u8>, String> {
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
        let io = |e: std::io::Error| e.to_string();
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
            .map_err(io)?;
        w.write_event(Event::Start(BytesStart::new(self.root.as_str())))
            .map_err(io)?;
        let payloads: Vec<Value> = entries
            .iter()
            .map(|e| serde_json::from_str(e.body().get()).unwrap_or(Value::Null))
            .collect();
        let record_type = payloads
            .first()
            .and_then(|p| p.get("category"))
            .and_then(Value::as_str)
            .unwrap_or("");
        w.write_event(Event::Start(BytesStart::new("Header")))
            .map_err(io)?;
        for (element, source) in &self.header {
            let value = match source.as_str() {
                "$sender" => "credit-gateway".to_string(),
                "$receiver" => dest.id.clone(),
                "$message_id" => message_id.to_string(),
                "$record_type" => record_type.to_string(),
                "$time" => now.to_string(),
                "$count" => entries.len().to_string(),
                literal => literal.to_string(),
            };
            text_element(&mut w, element, &value).map_err(io)?;
        }
        w.write_event(Event::End(BytesEnd::new("Header")))
            .map_err(io)?;
        w.write_event(Event::Start(BytesStart::new("Body")))
            .map_err(io)?;
        for (entry, payload) in entries.iter().zip(&payloads) {
            let mut start = BytesStart::new(self.record.element.as_str());
            for (attr, source) in &self.record.attributes {
                let value = match source.as_str() {
                    "$idempotency_key" => entry.idempotency_key.clone(),
                    "$kind" => serde_json::to_value(entry.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default(),
                    "$channel" => entry.channel.code().to_string(),
                    "$version" => entry.version.to_string(),
                    literal => literal.to_string(),
                };
                start.push_attribute((attr.as_str(), value.as_str()));
            }
            w.write_event(Event::Start(start)).map_err(io)?;
            for (element, spec) in &self.record.fields {
                if let Some(value) = field_value(payload, spec) {
                    text_element(&mut w, element, &value).map_err(io)?;
                }
            }
            w.write_event(Event::End(BytesEnd::new(self.record.element.as_str())))
                .map_err(io)?;
        }
        w.write_event(Event::End(BytesEnd::new("Body")))
            .map_err(io)?;
        w.write_event(Event::End(BytesEnd::new(self.root.as_str())))
            .map_err(io)?;
        Ok(w.into_inner())
    }
}

fn text_element(w: &mut Writer<Vec<u8>>, name: &str, value: &str) -> std::io::Result<()> {
    w.write_event(Event::Start(BytesStart::new(name)))?;
    w.write_event(Event::Text(BytesText::new(value)))?;
    w.write_event(Event::End(BytesEnd::new(name)))
}

pub(crate) fn field_value(payload: &Value, spec: &FieldSpec) -> Option<String> {
    let (path, scale, date) = match spec {
        FieldSpec::Path(p) => (p.as_str(), 0, None),
        FieldSpec::Rule { path, scale, date } => (path.as_str(), *scale, date.as_deref()),
    };
    let mut node = payload;
    for part in path.split('.') {
        node = node.get(part)?;
    }
    let text = match node {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(";"),
        _ => return None,
    };
    if let Some(pattern) = date {
        let (y, rest) = text.split_once('-')?;
        let (m, d) = rest.split_once('-')?;
        return Some(pattern.replace("YYYY", y).replace("MM", m).replace("DD", d));
    }
    if scale != 0 {
        return shift_decimal(&text, scale);
    }
    Some(text)
}

/// Multiply a decimal text by 10^scale exactly (negative scale divides).
fn shift_decimal(text: &str, scale: i32) -> Option<String> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int}{frac}");
    let point = int.len() as i64 + scale as i64;
    let (whole, fraction) = if point <= 0 {
        (
            "0".to_string(),
            format!("{}{digits}", "0".repeat((-point) as usize)),
        )
    } else if point as usize >= digits.len() {
        (
            format!("{digits}{}", "0".repeat(point as usize - digits.len())),
            String::new(),
        )
    } else {
        (
            digits[..point as usize].to_string(),
            digits[point as usize..].to_string(),
        )
    };
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let fraction = fraction.trim_end_matches('0');
    let out = if fraction.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{fraction}")
    };
    Some(if neg && out != "0" {
        format!("-{out}")
    } else {
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_to_wan_yuan() {
        assert_eq!(shift_decimal("50000", -4).as_deref(), Some("5"));
        assert_eq!(shift_decimal("12345.6", -4).as_deref(), Some("1.23456"));
        assert_eq!(shift_decimal("5", -4).as_deref(), Some("0.0005"));
        assert_eq!(shift_decimal("0.5", 4).as_deref(), Some("5000"));
    }

    #[test]
    fn the_shipped_format_renders_an_envelope() {
        let formats = Formats::load(Path::new("/nonexistent")).unwrap();
        let f = formats.get("shuanggongshi-xml").expect("shipped");
        let entry = Entry {
            idempotency_key: "k1".into(),
            destination: "provincial".into(),
            channel: crate::disclosure::Channel::GovShare,
            kind: crate::outbox::Kind::Share,
            agency: "medical_insurance".into(),
            record_id: "r1".into(),
            version: 1,
            rule: "x".into(),
            enqueued_at: time::macros::datetime!(2025-01-01 00:00 UTC),
            enqueued_unix: 0,
            correction_id: None,
            source: None,
            payload: Some(serde_json::value::to_raw_value(&serde_json::json!({"category": "administrative", "subject": {"name": "某医院 & 药房", "id": "91310110666007217T"},
                "basis": {"doc_number": "穗医保罚〔2025〕1号", "decided_on": "2025-03-04"}, "content": {"fine_yuan": "50000", "penalty_types": ["警告", "罚款"]}})).unwrap()),
        };
        let dest = crate::config::default_destinations().remove(0);
        let xml = String::from_utf8(
            f.render(&dest, "m1", &[entry], "2025-01-01T08:00:00+08:00")
                .unwrap(),
        )
        .unwrap();
        assert!(xml.contains("<CF_NR_FK>5</CF_NR_FK>"), "{xml}");
        assert!(xml.contains("<CF_JDRQ>2025/03/04</CF_JDRQ>"), "{xml}");
        assert!(xml.contains("某医院 &amp; 药房"), "{xml}");
        assert!(xml.contains("警告;罚款"), "{xml}");
        // It parses back with the gateway's own XML reader.
        let root = crate::mapping::source::parse_xml(xml.as_bytes()).unwrap();
        assert_eq!(
            root.select(&format!("{}/Body/JL", f.root)).unwrap().len(),
            1
        );
    }
}
