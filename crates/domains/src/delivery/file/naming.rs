//! The names and the manifest of outgoing batch files (docs/integrate/files-out.md).
//!
//! Rule: `{sender}_{destination}_{yyyyMMddHHmmss}_{seq}.{ext}`, the time in China time (+08:00)
//! when the file was written, `seq` the store's persistent sequence number (ten digits or more,
//! never reused, also across restarts and nodes), `ext` `csv` or `jsonl`. Beside it
//! `{stem}.manifest.json` ([`Manifest`]); the platform answers with `{stem}.feedback.json` or
//! `{stem}.feedback.csv` in the feedback folder. While a file is being written it is named
//! `.{name}.tmp` (hidden, never a final name): a platform takes a data file only once its
//! manifest exists, and the manifest is renamed into place after the data file.
//!
//! Never does: touch the disk (the caller writes what this module names and describes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;

/// The stem every name of one batch file shares.
pub fn stem(sender: &str, destination: &str, at: OffsetDateTime, seq: u64) -> String {
    let t = at.to_offset(crate::calendar::CHINA_OFFSET);
    format!(
        "{sender}_{destination}_{:04}{:02}{:02}{:02}{:02}{:02}_{seq:010}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

pub fn data_name(stem: &str, ext: &str) -> String {
    format!("{stem}.{ext}")
}

pub fn manifest_name(stem: &str) -> String {
    format!("{stem}.manifest.json")
}

/// The feedback file names the gateway looks for, in order of preference.
pub fn feedback_names(stem: &str) -> [String; 2] {
    [
        format!("{stem}.feedback.json"),
        format!("{stem}.feedback.csv"),
    ]
}

/// The hidden name a file has while it is written.
pub fn temp_name(name: &str) -> String {
    format!(".{name}.tmp")
}

/// The stem of a data file name (`…_0000000042.csv` → `…_0000000042`).
pub fn stem_of(data_name: &str) -> &str {
    data_name
        .rsplit_once('.')
        .map(|(stem, _)| stem)
        .unwrap_or(data_name)
}

/// What the manifest beside each data file says: enough for the platform to check it took the
/// whole file, unaltered, before it reads a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The data file's name.
    pub file: String,
    /// `shuanggongshi-penalties-csv`, `shuanggongshi-licences-csv` or `canonical-jsonl`.
    pub layout: String,
    pub encoding: String,
    pub sender: String,
    pub receiver: String,
    /// When the file was written, RFC 3339 in China time.
    pub created_at: String,
    /// Data rows (CSV: without the header row; JSON lines: lines).
    pub records: usize,
    pub bytes: u64,
    /// Lower-case hex digests of the data file's bytes.
    pub sha256: String,
    pub sm3: String,
    /// Shares by kind (`share`, `correction`, `withdrawal`, `marking`, `notice`).
    pub kinds: BTreeMap<String, usize>,
    /// The name the platform writes its answer under (JSON; `.feedback.csv` is read as well).
    pub feedback: String,
}

/// The two digests of `bytes`, lower-case hex.
pub fn digests(bytes: &[u8]) -> (String, String) {
    use sha2::Digest as _;
    (
        hex::encode(Sha256::digest(bytes)),
        hex::encode(sm3::Sm3::digest(bytes)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_rule() {
        let at = time::macros::datetime!(2025-03-14 01:02:03 UTC);
        let s = stem("credit-gateway", "guangzhou_files", at, 42);
        assert_eq!(
            s,
            "credit-gateway_guangzhou_files_20250314090203_0000000042"
        );
        assert_eq!(
            data_name(&s, "csv"),
            "credit-gateway_guangzhou_files_20250314090203_0000000042.csv"
        );
        assert_eq!(stem_of(&data_name(&s, "jsonl")), s);
        assert_eq!(
            manifest_name(&s),
            "credit-gateway_guangzhou_files_20250314090203_0000000042.manifest.json"
        );
        assert_eq!(feedback_names(&s)[0], format!("{s}.feedback.json"));
        assert!(temp_name("a.csv").starts_with('.'));
        // Names sort in the order files were written (the time, then the sequence).
        let later = stem("credit-gateway", "x", at + time::Duration::seconds(1), 7);
        assert!(stem("credit-gateway", "x", at, 8) < later);
    }

    #[test]
    fn digests_are_the_known_answers() {
        let (sha, sm3) = digests(b"abc");
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // GB/T 32905-2016, example 1.
        assert_eq!(
            sm3,
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }

    #[test]
    fn a_manifest_round_trips() {
        let m = Manifest {
            file: "a.csv".into(),
            layout: "canonical-jsonl".into(),
            encoding: "UTF-8".into(),
            sender: "credit-gateway".into(),
            receiver: "x".into(),
            created_at: "2025-03-14T09:02:03+08:00".into(),
            records: 2,
            bytes: 10,
            sha256: "00".into(),
            sm3: "11".into(),
            kinds: [("share".to_string(), 2)].into_iter().collect(),
            feedback: "a.feedback.json".into(),
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
    }
}
