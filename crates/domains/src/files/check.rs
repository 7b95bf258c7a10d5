//! The check file (校验文件) that may accompany a data file dropped in an exchange folder: the
//! data file's digest (SM3 or SHA-256) and its record count, so the gateway takes a file only
//! when it is complete and the one the department meant to send.
//!
//! Owns: parsing a check file's text ([`CheckFile::parse`]) and comparing it with what the
//! gateway found ([`CheckFile::digest_matches`]). The format, in `docs/integrate/files.md`:
//!
//! ```text
//! # 行政处罚.xlsx 的校验文件
//! file=行政处罚.xlsx
//! sha256=9f2b…(64 hex digits)        or   sm3=…(64 hex digits)
//! records=6
//! ```
//!
//! One `key=value` per line, UTF-8 (a BOM is allowed), `#` starts a comment line, blank lines
//! and spaces around keys and values are ignored; keys are ASCII, any case. `records` counts the
//! data rows as the receipt does (`file.rows`: blank rows not counted; an XML file's records);
//! `file`, when given, must be the data file's name; `bytes` (optional) its size.
//!
//! Never does: read the data file, or decide what to do on a mismatch (the folder refuses the
//! file). Invariants: at most [`MAX_CHECK_FILE_BYTES`] are parsed; every line is understood or
//! the check file is refused (a typo never silently disables a check).

/// A check file larger than this is refused unread: it holds a few short lines.
pub const MAX_CHECK_FILE_BYTES: usize = 4096;

/// The digest algorithms a check file may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    /// GB/T 32905-2016, the national hash.
    Sm3,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sm3 => "sm3",
        }
    }
}

/// A parsed check file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFile {
    /// The data file's name, when the check file names it.
    pub file: Option<String>,
    pub algorithm: Algorithm,
    /// Lower-case hex.
    pub digest: String,
    /// The data file's records (its non-blank data rows).
    pub records: u64,
    /// The data file's size in bytes, when given.
    pub bytes: Option<u64>,
}

/// Why a check file is refused: always the sender's to fix (write it again); a retry of the same
/// bytes cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckFileError {
    #[error("the check file is larger than {MAX_CHECK_FILE_BYTES} bytes")]
    TooLarge,
    #[error("the check file is not UTF-8 text")]
    NotUtf8,
    #[error("line {line} of the check file: {message}")]
    Line { line: usize, message: String },
    #[error("the check file lacks {0}")]
    Missing(&'static str),
}

impl CheckFile {
    /// Parse a check file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<CheckFile, CheckFileError> {
        if bytes.len() > MAX_CHECK_FILE_BYTES {
            return Err(CheckFileError::TooLarge);
        }
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let text = std::str::from_utf8(bytes).map_err(|_| CheckFileError::NotUtf8)?;
        let mut file = None;
        let mut digest: Option<(Algorithm, String)> = None;
        let mut records = None;
        let mut size = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let bad = |message: String| CheckFileError::Line { line, message };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((key, value)) = trimmed.split_once('=') else {
                return Err(bad("expected key=value".into()));
            };
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            let once = |taken: bool| {
                if taken {
                    Err(bad(format!("{key} is given twice")))
                } else {
                    Ok(())
                }
            };
            match key.as_str() {
                "file" => {
                    once(file.is_some())?;
                    if value.is_empty() {
                        return Err(bad("file is empty".into()));
                    }
                    file = Some(value.to_string());
                }
                "sha256" | "sm3" => {
                    once(digest.is_some())?;
                    let algorithm = if key == "sm3" {
                        Algorithm::Sm3
                    } else {
                        Algorithm::Sha256
                    };
                    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(bad(format!("{key} must be 64 hex digits")));
                    }
                    digest = Some((algorithm, value.to_ascii_lowercase()));
                }
                "records" => {
                    once(records.is_some())?;
                    records = Some(number(value).ok_or_else(|| {
                        bad("records must be a whole number (the data rows)".into())
                    })?);
                }
                "bytes" => {
                    once(size.is_some())?;
                    size = Some(
                        number(value).ok_or_else(|| bad("bytes must be a whole number".into()))?,
                    );
                }
                other => {
                    return Err(bad(format!(
                        "unknown key {other:?}: the keys are file, sha256 or sm3, records, bytes"
                    )))
                }
            }
        }
        let (algorithm, digest) = digest.ok_or(CheckFileError::Missing("sha256= or sm3="))?;
        Ok(CheckFile {
            file,
            algorithm,
            digest,
            records: records.ok_or(CheckFileError::Missing("records="))?,
            bytes: size,
        })
    }

    /// Whether the data file's digest (hex, in this check file's algorithm) is the one named.
    pub fn digest_matches(&self, found_hex: &str) -> bool {
        self.digest.eq_ignore_ascii_case(found_hex)
    }
}

fn number(text: &str) -> Option<u64> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "9f2b8f6e4c1d0a7b3e5f9c2d8a1b4e6f7c0d3a5b9e2f8c1d4a7b0e3f6c9d2a5b";

    #[test]
    fn a_check_file_is_read_with_comments_bom_and_any_key_case() {
        let text = format!(
            "\u{feff}# 行政处罚.xlsx 的校验文件\r\nfile = 行政处罚.xlsx\r\nSHA256={}\r\n\r\nrecords=6\r\nbytes=18342\r\n",
            HEX.to_uppercase()
        );
        let c = CheckFile::parse(text.as_bytes()).unwrap();
        assert_eq!(c.file.as_deref(), Some("行政处罚.xlsx"));
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.digest, HEX);
        assert_eq!(c.records, 6);
        assert_eq!(c.bytes, Some(18342));
        assert!(c.digest_matches(&HEX.to_uppercase()));
        let c = CheckFile::parse(format!("sm3={HEX}\nrecords=0").as_bytes()).unwrap();
        assert_eq!(c.algorithm, Algorithm::Sm3);
        assert_eq!(c.file, None);
    }

    #[test]
    fn every_line_is_understood_or_the_check_file_is_refused() {
        let refused = |text: &str| CheckFile::parse(text.as_bytes()).unwrap_err();
        assert_eq!(
            refused("records=6"),
            CheckFileError::Missing("sha256= or sm3=")
        );
        assert_eq!(
            refused(&format!("sha256={HEX}")),
            CheckFileError::Missing("records=")
        );
        assert!(matches!(
            refused(&format!("sha256={HEX}\nrecords=6\nrecord=7")),
            CheckFileError::Line { line: 3, .. }
        ));
        assert!(matches!(
            refused(&format!("sha256={HEX}\nsm3={HEX}\nrecords=1")),
            CheckFileError::Line { line: 2, .. }
        ));
        assert!(matches!(
            refused("sha256=abc\nrecords=1"),
            CheckFileError::Line { line: 1, .. }
        ));
        assert!(matches!(
            refused(&format!("sha256={HEX}\nrecords=-1")),
            CheckFileError::Line { line: 2, .. }
        ));
        assert!(matches!(
            refused(&format!("{HEX}  行政处罚.xlsx")),
            CheckFileError::Line { line: 1, .. }
        ));
        assert_eq!(
            CheckFile::parse(b"\xff\xfe").unwrap_err(),
            CheckFileError::NotUtf8
        );
        assert_eq!(
            CheckFile::parse(&vec![b'#'; MAX_CHECK_FILE_BYTES + 1]).unwrap_err(),
            CheckFileError::TooLarge
        );
    }
}
