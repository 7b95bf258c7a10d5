//! What a batch file holds: administrative penalties and licences in the record layout of the
//! national 双公示 standard (CF_* / XK_* columns, CSV, UTF-8 without BOM, a header row, RFC 4180
//! quoting by the `csv` crate), everything else as canonical JSON lines (one share per line, the
//! same object an HTTPS destination receives in `shares`).
//!
//! Which layout a share takes: its payload's `category` is `administrative` and its
//! `content.action` is `penalty` (CF_*) or `licence` (XK_*). Withdrawals carry no content (only
//! the record's identity and the reason), notices are not records: both go as JSON lines, as does
//! every other category. One file holds one layout; the worker cuts a batch where the layout
//! changes, so the queue's order is kept across files.
//!
//! Columns: the standard's, in its order, then the gateway's own (`IDEM` the idempotency key, `LX`
//! the kind, `QD` the channel, `BB` the version, `GZBH` the correction id, `YYBZ` 是 when the
//! record carries an objection mark (异议标注, LS Art. 23), `JLBH` the source record id, `XZQH` the
//! region). Dates are `YYYY/MM/DD`; no end date is written `2099/12/31` (long-term), as the
//! template does; amounts in 万元 (元 ÷ 10,000, exactly). Fields the disclosure filter masked
//! arrive masked; fields it dropped are empty.
//!
//! Never does: decide what may be shared (the payload is the filtered one), or write the disk.

use serde_json::Value;

use super::super::format::{field_value, FieldSpec};
use crate::outbox::{Entry, Kind};

/// The layout of one batch file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// 行政处罚: CF_* columns.
    Penalties,
    /// 行政许可: XK_* columns.
    Licences,
    /// Canonical JSON, one share per line.
    JsonLines,
}

/// Why a batch cannot be rendered: the gateway's own fault (a payload that is not JSON); no
/// retry helps.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("share {0}: its payload is not a JSON object")]
    Payload(String),
    #[error("cannot write the CSV: {0}")]
    Csv(String),
}

impl Layout {
    pub fn code(self) -> &'static str {
        match self {
            Layout::Penalties => "shuanggongshi-penalties-csv",
            Layout::Licences => "shuanggongshi-licences-csv",
            Layout::JsonLines => "canonical-jsonl",
        }
    }

    pub fn ext(self) -> &'static str {
        match self {
            Layout::Penalties | Layout::Licences => "csv",
            Layout::JsonLines => "jsonl",
        }
    }

    /// The layout a share goes in (see the module documentation).
    pub fn of(entry: &Entry) -> Layout {
        if matches!(entry.kind, Kind::Withdrawal | Kind::Notice) {
            return Layout::JsonLines;
        }
        let Ok(payload) = serde_json::from_str::<Value>(entry.body().get()) else {
            return Layout::JsonLines;
        };
        if payload.get("category").and_then(Value::as_str) != Some("administrative") {
            return Layout::JsonLines;
        }
        match payload
            .get("content")
            .and_then(|c| c.get("action"))
            .and_then(Value::as_str)
        {
            Some("penalty") => Layout::Penalties,
            Some("licence") => Layout::Licences,
            _ => Layout::JsonLines,
        }
    }
}

/// The standard's columns of a layout, each with where its value comes from.
fn columns(layout: Layout) -> Vec<(&'static str, Column)> {
    use Column::*;
    match layout {
        Layout::Penalties => vec![
            ("CF_XDR_MC", Path("subject.name")),
            ("CF_XDR_LB", SubjectClass),
            ("CF_XDR_SHXYM", Uscc),
            ("CF_XDR_GSZC", Path("content.business_registration_number")),
            ("CF_XDR_ZZJG", Path("content.organization_code")),
            ("CF_XDR_SWDJ", Path("content.tax_registration_number")),
            ("CF_XDR_SYDW", Path("content.public_institution_number")),
            ("CF_XDR_SHZZ", Path("content.social_organization_number")),
            ("CF_FRDB", Path("content.legal_representative")),
            ("CF_FR_ZJLX", IdType("content.legal_representative_id_type")),
            ("CF_FR_ZJHM", Path("content.legal_representative_id")),
            ("CF_XDR_ZJLX", PersonIdType),
            ("CF_XDR_ZJHM", PersonId),
            ("CF_WSH", Path("basis.doc_number")),
            ("CF_WFXW", Path("content.violation_type")),
            ("CF_SY", Path("content.facts")),
            ("CF_YJ", Path("content.legal_grounds")),
            ("CF_CFLB", Path("content.penalty_types")),
            ("CF_NR", Path("content.decision_content")),
            ("CF_NR_FK", WanYuan("content.fine_yuan")),
            ("CF_NR_WFFF", WanYuan("content.confiscation_yuan")),
            ("CF_NR_ZKDX", Path("content.licence_affected")),
            ("CF_JDRQ", Date("basis.decided_on")),
            ("CF_YXQ", EndDate("valid_until")),
            ("CF_GSJZQ", Date("content.notice_until")),
            ("CF_CFJG", Path("content.authority")),
            ("CF_CFJGDM", Path("content.authority_uscc")),
            ("CF_SJLY", Path("content.data_source")),
            ("CF_SJLYDM", Path("content.data_source_uscc")),
            ("BZ", Path("content.remarks")),
        ],
        Layout::Licences => vec![
            ("XK_XDR_MC", Path("subject.name")),
            ("XK_XDR_LB", SubjectClass),
            ("XK_XDR_SHXYM", Uscc),
            ("XK_FRDB", Path("content.legal_representative")),
            ("XK_FR_ZJLX", IdType("content.legal_representative_id_type")),
            ("XK_FR_ZJHM", Path("content.legal_representative_id")),
            ("XK_XDR_ZJLX", PersonIdType),
            ("XK_XDR_ZJHM", PersonId),
            ("XK_XKWS", Path("content.document_name")),
            ("XK_WSH", Path("basis.doc_number")),
            ("XK_XKLB", Path("content.licence_type")),
            ("XK_XKZS", Path("content.certificate_name")),
            ("XK_XKBH", Path("content.licence_number")),
            ("XK_NR", Path("content.decision_content")),
            ("XK_JDRQ", Date("basis.decided_on")),
            ("XK_YXQZ", Date("valid_from")),
            ("XK_YXQJZ", EndDate("valid_until")),
            ("XK_XKJG", Path("content.authority")),
            ("XK_XKJGDM", Path("content.authority_uscc")),
            ("XK_ZT", Path("content.status")),
            ("XK_LYDW", Path("content.data_source")),
            ("XK_LYDWDM", Path("content.data_source_uscc")),
            ("BZ", Path("content.remarks")),
        ],
        Layout::JsonLines => Vec::new(),
    }
}

/// The gateway's columns after the standard's.
const GATEWAY_COLUMNS: [&str; 8] = ["IDEM", "LX", "QD", "BB", "GZBH", "YYBZ", "JLBH", "XZQH"];

/// The template's "long-term" end date.
const LONG_TERM: &str = "2099/12/31";

enum Column {
    Path(&'static str),
    Date(&'static str),
    /// An end date: none is long-term.
    EndDate(&'static str),
    WanYuan(&'static str),
    /// A code-list value (`resident_id` …) as the standard's 01-05.
    IdType(&'static str),
    /// 法人及非法人组织 / 自然人.
    SubjectClass,
    /// The subject's id when it is a unified social credit code.
    Uscc,
    PersonIdType,
    PersonId,
}

fn id_type_code(id_type: &str) -> Option<&'static str> {
    Some(match id_type {
        "resident_id" => "01",
        "passport" => "02",
        "hk_macao_permit" => "03",
        "taiwan_permit" => "04",
        "foreign_permanent_resident" => "05",
        _ => return None,
    })
}

fn text_at(payload: &Value, path: &str) -> Option<String> {
    field_value(payload, &FieldSpec::Path(path.to_string()))
}

fn value(payload: &Value, column: &Column) -> Option<String> {
    let individual = payload.pointer("/subject/kind").and_then(Value::as_str) == Some("individual");
    match column {
        Column::Path(p) => text_at(payload, p),
        Column::Date(p) => field_value(
            payload,
            &FieldSpec::Rule {
                path: p.to_string(),
                scale: 0,
                date: Some("YYYY/MM/DD".into()),
            },
        ),
        Column::EndDate(p) => value(payload, &Column::Date(p)).or(Some(LONG_TERM.into())),
        Column::WanYuan(p) => field_value(
            payload,
            &FieldSpec::Rule {
                path: p.to_string(),
                scale: -4,
                date: None,
            },
        ),
        Column::IdType(p) => text_at(payload, p).and_then(|t| id_type_code(&t).map(String::from)),
        Column::SubjectClass => payload
            .pointer("/subject/kind")
            .and_then(Value::as_str)
            .map(|k| {
                if k == "individual" {
                    "自然人"
                } else {
                    "法人及非法人组织"
                }
                .to_string()
            }),
        Column::Uscc => (!individual
            && payload.pointer("/subject/id_type").and_then(Value::as_str) == Some("uscc"))
        .then(|| text_at(payload, "subject.id"))
        .flatten(),
        Column::PersonIdType => individual
            .then(|| text_at(payload, "subject.id_type"))
            .flatten()
            .and_then(|t| id_type_code(&t).map(String::from)),
        Column::PersonId => individual.then(|| text_at(payload, "subject.id")).flatten(),
    }
}

fn objection_marked(payload: &Value) -> bool {
    payload
        .get("marks")
        .and_then(Value::as_array)
        .is_some_and(|marks| {
            marks
                .iter()
                .any(|m| m.get("kind").and_then(Value::as_str) == Some("objection"))
        })
}

/// The file's bytes and its number of records.
pub fn render(layout: Layout, entries: &[Entry]) -> Result<(Vec<u8>, usize), LayoutError> {
    match layout {
        Layout::JsonLines => {
            let mut out = Vec::new();
            for e in entries {
                let line = serde_json::json!({
                    "idempotency_key": e.idempotency_key,
                    "kind": e.kind,
                    "channel": e.channel,
                    "version": e.version,
                    "correction_id": e.correction_id,
                    "record": e.body(),
                });
                let mut line = line;
                if e.correction_id.is_none() {
                    if let Some(o) = line.as_object_mut() {
                        o.remove("correction_id");
                    }
                }
                serde_json::to_writer(&mut out, &line)
                    .map_err(|_| LayoutError::Payload(e.idempotency_key.clone()))?;
                out.push(b'\n');
            }
            Ok((out, entries.len()))
        }
        Layout::Penalties | Layout::Licences => {
            let cols = columns(layout);
            let mut w = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(Vec::new());
            let header: Vec<&str> = cols
                .iter()
                .map(|(name, _)| *name)
                .chain(GATEWAY_COLUMNS)
                .collect();
            w.write_record(&header)
                .map_err(|e| LayoutError::Csv(e.to_string()))?;
            for e in entries {
                let payload: Value = serde_json::from_str(e.body().get())
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| LayoutError::Payload(e.idempotency_key.clone()))?;
                let mut row: Vec<String> = cols
                    .iter()
                    .map(|(_, c)| value(&payload, c).unwrap_or_default())
                    .collect();
                row.extend([
                    e.idempotency_key.clone(),
                    e.kind.code().to_string(),
                    e.channel.code().to_string(),
                    e.version.to_string(),
                    e.correction_id.clone().unwrap_or_default(),
                    if objection_marked(&payload) {
                        "是".to_string()
                    } else {
                        String::new()
                    },
                    text_at(&payload, "source.record_id").unwrap_or_default(),
                    text_at(&payload, "source.region").unwrap_or_default(),
                ]);
                w.write_record(&row)
                    .map_err(|e| LayoutError::Csv(e.to_string()))?;
            }
            let bytes = w
                .into_inner()
                .map_err(|e| LayoutError::Csv(e.to_string()))?;
            Ok((bytes, entries.len()))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn entry(kind: Kind, key: &str, payload: Value) -> Entry {
        Entry {
            idempotency_key: key.into(),
            destination: "files".into(),
            channel: crate::disclosure::Channel::GovShare,
            kind,
            agency: "medical_insurance".into(),
            record_id: "r1".into(),
            version: 1,
            rule: "x".into(),
            enqueued_at: time::macros::datetime!(2025-01-01 00:00 UTC),
            enqueued_unix: 0,
            correction_id: (kind == Kind::Correction).then(|| "C1".to_string()),
            source: None,
            payload: Some(serde_json::value::to_raw_value(&payload).unwrap()),
        }
    }

    fn penalty() -> Value {
        serde_json::json!({"category": "administrative",
            "subject": {"kind": "institution", "id_type": "uscc", "id": "91310110666007217T", "name": "某医院, \"总院\""},
            "source": {"agency": "medical_insurance", "record_id": "穗医保罚〔2025〕1号", "region": "440100"},
            "basis": {"doc_number": "穗医保罚〔2025〕1号", "decided_on": "2025-03-04"},
            "marks": [{"kind": "objection"}],
            "content": {"action": "penalty", "authority": "广州市医疗保障局", "fine_yuan": "50000", "penalty_types": ["警告", "罚款"]}})
    }

    #[test]
    fn penalties_are_written_in_the_shuanggongshi_layout_and_read_back() {
        let e = entry(Kind::Correction, "k1", penalty());
        assert_eq!(Layout::of(&e), Layout::Penalties);
        let (bytes, n) = render(Layout::Penalties, &[e]).unwrap();
        assert_eq!(n, 1);
        let mut r = csv::Reader::from_reader(bytes.as_slice());
        let header = r.headers().unwrap().clone();
        let row = r.records().next().unwrap().unwrap();
        let get = |name: &str| {
            row.get(header.iter().position(|h| h == name).unwrap())
                .unwrap()
                .to_string()
        };
        assert_eq!(get("CF_XDR_MC"), "某医院, \"总院\"");
        assert_eq!(get("CF_XDR_LB"), "法人及非法人组织");
        assert_eq!(get("CF_XDR_SHXYM"), "91310110666007217T");
        assert_eq!(get("CF_NR_FK"), "5");
        assert_eq!(get("CF_JDRQ"), "2025/03/04");
        assert_eq!(get("CF_YXQ"), "2099/12/31", "no end: long-term");
        assert_eq!(get("CF_CFLB"), "警告;罚款");
        assert_eq!(
            get("CF_XDR_ZJHM"),
            "",
            "an institution has no personal number"
        );
        assert_eq!(get("IDEM"), "k1");
        assert_eq!(get("LX"), "correction");
        assert_eq!(get("GZBH"), "C1");
        assert_eq!(get("YYBZ"), "是");
        assert_eq!(get("XZQH"), "440100");
        assert_eq!(
            header.get(0),
            Some("CF_XDR_MC"),
            "the standard's columns first"
        );
    }

    #[test]
    fn withdrawals_other_categories_and_licences_take_their_layouts() {
        let w = entry(
            Kind::Withdrawal,
            "k2",
            serde_json::json!({"category": "administrative", "source": {"record_id": "r"}, "withdrawn": {"version": 1, "reason": "notice_period_ended"}}),
        );
        assert_eq!(Layout::of(&w), Layout::JsonLines);
        let mut licence = penalty();
        licence["content"]["action"] = "licence".into();
        assert_eq!(
            Layout::of(&entry(Kind::Share, "k3", licence)),
            Layout::Licences
        );
        let other = entry(
            Kind::Share,
            "k4",
            serde_json::json!({"category": "commitment"}),
        );
        assert_eq!(Layout::of(&other), Layout::JsonLines);
        let (bytes, n) = render(Layout::JsonLines, &[w, other]).unwrap();
        assert_eq!(n, 2);
        let lines: Vec<Value> = bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines[0]["kind"], "withdrawal");
        assert_eq!(
            lines[0]["record"]["withdrawn"]["reason"],
            "notice_period_ended"
        );
        assert_eq!(lines[1]["idempotency_key"], "k4");
        assert!(lines[1].get("correction_id").is_none());
    }
}
