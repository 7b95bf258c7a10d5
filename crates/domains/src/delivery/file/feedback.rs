//! The platform's feedback file: its answer to one batch file, per share (docs/integrate/files-out.md).
//!
//! JSON (`{stem}.feedback.json`):
//! ```json
//! {"file": "credit-gateway_guangzhou_20250314090203_0000000042.csv",
//!  "records": [{"idempotency_key": "9f2b…", "result": "accepted"},
//!              {"idempotency_key": "41aa…", "result": "rejected", "reason": "CF_WSH 重复", "retry": false}]}
//! ```
//! or CSV (`{stem}.feedback.csv`, UTF-8, a header row): `idempotency_key,result,reason,retry`.
//! `result` is `accepted` or `rejected` (ASCII case ignored); `retry` (`true`/`false`, `1`/`0`,
//! empty = false) says a rejection is passing (the platform could not take the share now) rather
//! than a refusal of its content. `file`, when given, must name the data file answered. Members
//! and columns the gateway does not know are ignored (a platform may add its own).
//!
//! Invariants: parsed only with `serde_json` and `csv`, never by hand; bounded (the caller reads
//! at most [`MAX_FEEDBACK_BYTES`]); an answer that contradicts itself (one share both accepted and
//! rejected) refuses the whole file, never picks one.
//!
//! Never does: read the disk or decide what an answer does to a share (that is the worker's,
//! through the outbox's transitions).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The largest feedback file read; a larger one is refused unread.
pub const MAX_FEEDBACK_BYTES: u64 = 64 * 1024 * 1024;

/// Why a feedback file cannot be used. Always the platform's fault; it may write a corrected file
/// only while the gateway still waits, so the gateway treats it as an unanswered attempt.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FeedbackError {
    #[error("not valid feedback JSON: {0}")]
    Json(String),
    #[error("not valid feedback CSV: {0}")]
    Csv(String),
    #[error("record {index}: result {result:?} is neither accepted nor rejected")]
    Result { index: usize, result: String },
    #[error("record {index}: retry {value:?} is not true or false")]
    Retry { index: usize, value: String },
    #[error("record {index}: no idempotency_key")]
    NoKey { index: usize },
    #[error("share {0} is both accepted and rejected")]
    Contradiction(String),
    #[error("the feedback answers {found:?}, not {expected:?}")]
    OtherFile { found: String, expected: String },
    #[error("larger than {MAX_FEEDBACK_BYTES} bytes")]
    TooLarge,
}

/// One share's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Rejected { reason: String, retry: bool },
}

/// A parsed feedback file: the answers by idempotency key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Feedback {
    pub answers: BTreeMap<String, Verdict>,
}

#[derive(Deserialize)]
struct JsonFile {
    #[serde(default)]
    file: Option<String>,
    records: Vec<JsonRecord>,
}

#[derive(Deserialize)]
struct JsonRecord {
    #[serde(default)]
    idempotency_key: String,
    result: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    retry: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct CsvRecord {
    #[serde(default)]
    idempotency_key: String,
    result: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    retry: Option<String>,
}

/// Parse a JSON feedback file answering `expected` (the data file's name).
pub fn parse_json(bytes: &[u8], expected: &str) -> Result<Feedback, FeedbackError> {
    if bytes.len() as u64 > MAX_FEEDBACK_BYTES {
        return Err(FeedbackError::TooLarge);
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let file: JsonFile =
        serde_json::from_slice(bytes).map_err(|e| FeedbackError::Json(e.to_string()))?;
    if let Some(found) = file.file.filter(|f| f != expected) {
        return Err(FeedbackError::OtherFile {
            found,
            expected: expected.to_string(),
        });
    }
    let mut feedback = Feedback::default();
    for (index, r) in file.records.into_iter().enumerate() {
        let retry = match r.retry {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => b,
            Some(serde_json::Value::String(s)) => bool_text(&s).ok_or(FeedbackError::Retry {
                index,
                value: s.clone(),
            })?,
            Some(other) => bool_text(&other.to_string()).ok_or(FeedbackError::Retry {
                index,
                value: other.to_string(),
            })?,
        };
        feedback.add(index, r.idempotency_key, &r.result, r.reason, retry)?;
    }
    Ok(feedback)
}

/// Parse a CSV feedback file (UTF-8, with or without a BOM, a header row).
pub fn parse_csv(bytes: &[u8]) -> Result<Feedback, FeedbackError> {
    if bytes.len() as u64 > MAX_FEEDBACK_BYTES {
        return Err(FeedbackError::TooLarge);
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(bytes);
    let mut feedback = Feedback::default();
    for (index, row) in reader.deserialize::<CsvRecord>().enumerate() {
        let r = row.map_err(|e| FeedbackError::Csv(e.to_string()))?;
        let retry = match r.retry.as_deref() {
            None => false,
            Some(s) => bool_text(s).ok_or(FeedbackError::Retry {
                index,
                value: s.to_string(),
            })?,
        };
        feedback.add(index, r.idempotency_key, &r.result, r.reason, retry)?;
    }
    Ok(feedback)
}

fn bool_text(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "false" | "0" | "no" => Some(false),
        "true" | "1" | "yes" => Some(true),
        _ => None,
    }
}

impl Feedback {
    fn add(
        &mut self,
        index: usize,
        key: String,
        result: &str,
        reason: Option<String>,
        retry: bool,
    ) -> Result<(), FeedbackError> {
        let key = key.trim().to_string();
        if key.is_empty() {
            return Err(FeedbackError::NoKey { index });
        }
        let verdict = match result.trim().to_ascii_lowercase().as_str() {
            "accepted" => Verdict::Accepted,
            "rejected" => Verdict::Rejected {
                reason: reason.unwrap_or_default(),
                retry,
            },
            _ => {
                return Err(FeedbackError::Result {
                    index,
                    result: result.chars().take(40).collect(),
                })
            }
        };
        match self.answers.get(&key) {
            // The same answer twice is harmless; two different answers are not.
            Some(earlier)
                if std::mem::discriminant(earlier) != std::mem::discriminant(&verdict) =>
            {
                Err(FeedbackError::Contradiction(key))
            }
            Some(_) => Ok(()),
            None => {
                self.answers.insert(key, verdict);
                Ok(())
            }
        }
    }

    pub fn get(&self, idempotency_key: &str) -> Option<&Verdict> {
        self.answers.get(idempotency_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_feedback_reads_each_answer() {
        let fb = parse_json(
            r#"{"file": "a.csv", "platform_batch": 7, "records": [
                {"idempotency_key": "k1", "result": "accepted"},
                {"idempotency_key": "k2", "result": "REJECTED", "reason": "CF_WSH 重复"},
                {"idempotency_key": "k3", "result": "rejected", "reason": "busy", "retry": true},
                {"idempotency_key": "k1", "result": "accepted", "extra": 1}]}"#
                .as_bytes(),
            "a.csv",
        )
        .unwrap();
        assert_eq!(fb.get("k1"), Some(&Verdict::Accepted));
        assert_eq!(
            fb.get("k2"),
            Some(&Verdict::Rejected {
                reason: "CF_WSH 重复".into(),
                retry: false
            })
        );
        assert_eq!(
            fb.get("k3"),
            Some(&Verdict::Rejected {
                reason: "busy".into(),
                retry: true
            })
        );
        assert_eq!(fb.get("k4"), None);
    }

    #[test]
    fn csv_feedback_reads_each_answer_with_or_without_a_bom() {
        let text = "idempotency_key,result,reason,retry\nk1,accepted,,\nk2,rejected,\"缺少 CF_JDRQ, 处罚决定日期\",0\nk3,rejected,稍后,1\n";
        for bytes in [
            text.as_bytes().to_vec(),
            [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat(),
        ] {
            let fb = parse_csv(&bytes).unwrap();
            assert_eq!(fb.get("k1"), Some(&Verdict::Accepted));
            assert_eq!(
                fb.get("k2"),
                Some(&Verdict::Rejected {
                    reason: "缺少 CF_JDRQ, 处罚决定日期".into(),
                    retry: false
                })
            );
            assert!(matches!(
                fb.get("k3"),
                Some(Verdict::Rejected { retry: true, .. })
            ));
        }
        // Only the needed columns, in another order, is fine.
        let fb = parse_csv(b"result,idempotency_key\naccepted,k9\n").unwrap();
        assert_eq!(fb.get("k9"), Some(&Verdict::Accepted));
    }

    #[test]
    fn bad_feedback_is_refused_whole() {
        assert!(matches!(
            parse_json(b"{\"records\": [", "a"),
            Err(FeedbackError::Json(_))
        ));
        assert!(matches!(
            parse_json(
                br#"{"records": [{"idempotency_key": "k", "result": "maybe"}]}"#,
                "a"
            ),
            Err(FeedbackError::Result { index: 0, .. })
        ));
        assert_eq!(
            parse_json(
                br#"{"records": [{"idempotency_key": "k", "result": "accepted"}, {"idempotency_key": "k", "result": "rejected"}]}"#,
                "a"
            ),
            Err(FeedbackError::Contradiction("k".into()))
        );
        assert!(matches!(
            parse_json(br#"{"file": "b.csv", "records": []}"#, "a.csv"),
            Err(FeedbackError::OtherFile { .. })
        ));
        assert!(matches!(
            parse_json(br#"{"records": [{"result": "accepted"}]}"#, "a"),
            Err(FeedbackError::NoKey { index: 0 })
        ));
        assert!(matches!(
            parse_csv(b"idempotency_key,result,retry\nk,rejected,perhaps\n"),
            Err(FeedbackError::Retry { index: 0, .. })
        ));
        assert!(matches!(
            parse_csv(b"idempotency_key,result\nk,accepted,extra\n"),
            Err(FeedbackError::Csv(_))
        ));
        assert!(matches!(
            parse_csv(b"idempotency_key\nk\n"),
            Err(FeedbackError::Csv(_))
        ));
    }
}
