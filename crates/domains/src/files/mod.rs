//! Batch files (issue #29): the rows of an `.xlsx` sheet or a CSV file as the source records of
//! a mapping, so a department that keeps its 双公示 penalties in the national template can hand
//! in the spreadsheet itself.
//!
//! Owns: finding the header row and what each column is (a source path of the mapping, by the
//! field's own name such as `CF_WSH` or a header text of the mapping's `[columns]` such as
//! `行政处罚决定书文号`), refusing a file that lacks a column every record needs, reading rows
//! one at a time (CSV through the `csv` crate over a streaming decoder, UTF-8 or GBK; `.xlsx`
//! through calamine's cell reader, one cell at a time), and each cell's text as a rule reads it
//! ([`cells`]).
//!
//! Never does: map or validate (the caller hands each [`Row`] to
//! [`crate::mapping::Mapping::normalize_row`], the same rules and validation as a JSON or XML
//! record), guess an encoding (a CSV that is not UTF-8 must declare its charset), or hold a
//! file's rows: memory follows from one row, except the parts of an `.xlsx` that calamine reads
//! whole (the shared-string table, bounded by `ingest.max_xlsx_unpacked_mb`).
//!
//! Rules a user of the template expects, documented in `docs/integrate/files.md`:
//! - the header row is the first of the first [`HEADER_SEARCH_ROWS`] rows in which at least half
//!   the filled cells name columns of the mapping: title rows above it (often merged across the
//!   sheet) are skipped;
//! - a header naming nothing the mapping reads is ignored (and listed in the receipt); two headers
//!   naming the same field refuse the file;
//! - a row whose columns the mapping reads are all empty is skipped (trailing rows, a blank row in
//!   the middle, a row with only its 序号);
//! - `.xlsx`: the first visible worksheet, or the one named (hidden ones only when named);
//!   formulas give their cached values; a merged region gives its value to every row it covers
//!   in its first column (a vertical merge means "the same for these rows"), the other columns of
//!   the region read empty.

pub mod cells;
pub mod check;
mod csv_rows;
mod xlsx_rows;

use std::collections::HashMap;

use serde::Serialize;

use crate::mapping::{Mapping, ParseError};
pub use cells::Cell;

/// The header is looked for in this many rows from the top.
pub const HEADER_SEARCH_ROWS: usize = 20;
/// The longest CSV row (its bytes as decoded): one more refuses the file (`file_limit`). Bounds
/// what one row may hold in memory; a template row is far below it.
pub const MAX_ROW_BYTES: usize = 1024 * 1024;

/// What kind of file, as the request's `Content-Type` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Xlsx,
    Csv(Option<Charset>),
}

/// The text encodings a CSV may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Charset {
    #[serde(rename = "UTF-8")]
    Utf8,
    /// GBK, GB2312 and GB18030 are all decoded as GB18030 (their superset).
    #[serde(rename = "GBK")]
    Gbk,
}

impl Charset {
    /// The charset a `Content-Type` names, or the unsupported name.
    pub fn from_label(label: &str) -> Result<Charset, String> {
        match label.trim().trim_matches('"').to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Ok(Charset::Utf8),
            "gbk" | "gb2312" | "gb18030" | "x-gbk" | "cp936" | "gb_2312-80" => Ok(Charset::Gbk),
            other => Err(other.to_string()),
        }
    }
}

/// The bounds of one file (`[ingest]`).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Records (non-blank data rows) of one file.
    pub max_rows: usize,
    /// The declared unpacked size of an `.xlsx`'s parts, together.
    pub max_unpacked_bytes: u64,
}

/// Why a whole file is refused; nothing of it is stored.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Encoding, CSV syntax, an empty file: as for JSON and XML bodies.
    #[error("{0}")]
    Document(#[from] ParseError),
    #[error("the CSV is not UTF-8 (line {line}, byte {column} of the line) and its Content-Type declares no charset: send it as text/csv; charset=gbk if it is GBK (Excel's \"CSV\" on a Chinese Windows), or save it as \"CSV UTF-8\"; the gateway never guesses an encoding")]
    CharsetRequired { line: usize, column: usize },
    #[error("{}", missing_message(.0))]
    MissingColumns(Vec<MissingColumn>),
    #[error("the workbook has no sheet named {name:?}; its sheets: {}", .sheets.join(", "))]
    SheetNotFound { name: String, sheets: Vec<String> },
    #[error("{0}")]
    Malformed(String),
    /// A bound of `[ingest]` or of this module.
    #[error("{0}")]
    Limit(String),
    /// The received file could not be read back (the gateway's disk).
    #[error("the received file cannot be read back: {0}")]
    Io(String),
    /// The caller stopped taking rows (its commit failed).
    #[error("stopped")]
    Stopped,
}

/// A refused file is answered like a refused document (its position, the columns it lacks, the
/// sheets it has), so that the sender fixes the file; only the gateway's own disk failing to
/// read it back is worth a retry.
impl crate::answer::Answer for FileError {
    fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::Document(p) => p.status(),
            Self::CharsetRequired { .. }
            | Self::MissingColumns(_)
            | Self::SheetNotFound { .. }
            | Self::Malformed(_) => S::BAD_REQUEST,
            Self::Limit(_) => S::PAYLOAD_TOO_LARGE,
            Self::Io(_) | Self::Stopped => crate::answer::StorageUnavailable.status(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::Document(p) => p.code(),
            Self::CharsetRequired { .. } => "charset_required",
            Self::MissingColumns(_) => "missing_columns",
            Self::SheetNotFound { .. } => "sheet_not_found",
            Self::Malformed(_) => "malformed_file",
            Self::Limit(_) => "file_limit",
            Self::Io(_) | Self::Stopped => crate::answer::StorageUnavailable.code(),
        }
    }
    fn message(&self) -> String {
        match self {
            Self::Io(_) | Self::Stopped => crate::answer::StorageUnavailable.message(),
            _ => self.to_string(),
        }
    }
    fn retry(&self) -> bool {
        matches!(self, Self::Io(_) | Self::Stopped)
    }
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Io(_) | Self::Stopped => crate::answer::StorageUnavailable.retry_after(),
            _ => None,
        }
    }
    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut details = serde_json::Map::new();
        match self {
            Self::Document(p) => return p.details(),
            Self::CharsetRequired { line, column } => {
                details.insert("line".into(), (*line).into());
                details.insert("column".into(), (*column).into());
            }
            Self::MissingColumns(columns) => {
                details.insert(
                    "columns".into(),
                    serde_json::to_value(columns).unwrap_or_default(),
                );
            }
            Self::SheetNotFound { sheets, .. } => {
                details.insert("sheets".into(), sheets.clone().into());
            }
            _ => {}
        }
        details
    }
}

/// A column every record needs that the file lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingColumn {
    /// The canonical field it gives (`subject.name`).
    pub canonical_field: String,
    /// The header texts any of which would do (`CF_XDR_MC`, `行政相对人名称`).
    pub headers: Vec<String>,
}

fn missing_message(missing: &[MissingColumn]) -> String {
    let each: Vec<String> = missing
        .iter()
        .map(|m| format!("{} (for {})", m.headers.join(" or "), m.canonical_field))
        .collect();
    format!(
        "the file has no column for {}: every record needs it; add the column (any of the header texts named) to the header row",
        each.join("; ")
    )
}

/// One column the mapping reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    /// The header text as the file has it.
    pub header: String,
    /// The source path it gives (`CF_WSH`).
    pub field: String,
    /// 0-based position in the row.
    #[serde(skip)]
    pub position: usize,
}

/// What a read found, for the receipt.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileInfo {
    /// `xlsx` or `csv`.
    pub format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Charset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    /// The header's row number (1 unless title rows sit above it); none for a document.
    #[serde(skip_serializing_if = "is_zero")]
    pub header_row: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<Column>,
    /// Headers naming nothing the mapping reads.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_columns: Vec<String>,
    /// Rows taken as records.
    pub rows: usize,
    /// Blank rows between the header and the last record, skipped.
    pub blank_rows_skipped: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One data row: its number in the spreadsheet, its place among the file's records, and the
/// cells of the columns the mapping reads.
pub struct Row<'a> {
    /// The row number as the user sees it (the header is row 1 when it is the first row).
    pub number: usize,
    /// 0-based among the file's records (blank rows not counted).
    pub index: usize,
    cells: Vec<Option<Cell>>,
    columns: &'a Columns,
}

/// The columns of a file and what each is read as.
struct Columns {
    list: Vec<Column>,
    by_field: HashMap<String, usize>,
    /// Per column: the first pattern of the date rule reading it.
    date_formats: Vec<Option<String>>,
    by_position: HashMap<usize, usize>,
    is_1904: bool,
}

impl Row<'_> {
    /// The text of the cell holding `path`: `None` when the file has no such column or the cell
    /// is empty; why not when the cell cannot be read.
    pub fn read(&self, path: &str) -> Result<Option<String>, String> {
        let Some(&i) = self.columns.by_field.get(path) else {
            return Ok(None);
        };
        match &self.cells[i] {
            None => Ok(None),
            Some(cell) => cells::cell_text(
                cell,
                self.columns.date_formats[i].as_deref(),
                self.columns.is_1904,
            ),
        }
    }

    /// The header texts of the columns holding a rejection's source field (`CF_JDRQ`, or
    /// `CF_XDR_SHXYM | CF_XDR_GSZC` for a field read from the first present of several).
    pub fn column_of(&self, field: &str) -> Option<String> {
        let headers: Vec<&str> = field
            .split(" | ")
            .filter_map(|f| self.columns.by_field.get(f))
            .map(|&i| self.columns.list[i].header.as_str())
            .collect();
        (!headers.is_empty()).then(|| headers.join(" | "))
    }
}

/// A raw row from a source: its 1-based number and its non-empty cells by 0-based position.
pub(crate) struct RawRow {
    pub number: usize,
    pub cells: Vec<(usize, Cell)>,
}

/// Read a received file row by row: find its header, check its columns, hand every non-blank row
/// to `on_row`. The first error stops the read.
pub fn read(
    file: std::fs::File,
    kind: FileKind,
    sheet: Option<&str>,
    mapping: &Mapping,
    bounds: Bounds,
    mut on_row: impl FnMut(Row<'_>) -> Result<(), FileError>,
) -> Result<FileInfo, FileError> {
    let mut reading = Reading {
        mapping,
        bounds,
        info: FileInfo::default(),
        columns: None,
        rows_looked: 0,
        pending_blank: 0,
    };
    match kind {
        FileKind::Csv(charset) => {
            reading.info.format = "csv";
            let encoding =
                csv_rows::rows(file, charset, &mut |raw| reading.take(raw, &mut on_row))?;
            reading.info.encoding = Some(encoding);
        }
        FileKind::Xlsx => {
            reading.info.format = "xlsx";
            let name = xlsx_rows::rows(file, sheet, bounds, &mut |raw, is_1904| {
                if let Some(c) = reading.columns.as_mut() {
                    c.is_1904 = is_1904;
                }
                reading.take(raw, &mut on_row)
            })?;
            reading.info.sheet = Some(name);
        }
    }
    if reading.columns.is_none() {
        return Err(if reading.rows_looked == 0 {
            FileError::Document(ParseError::Empty)
        } else {
            FileError::Malformed(format!(
                "no header row: none of the first {HEADER_SEARCH_ROWS} rows names the columns of mapping {:?} (its field names such as {} or the header texts of its [columns])",
                mapping.id,
                mapping.source_paths().into_iter().take(3).collect::<Vec<_>>().join(", ")
            ))
        });
    }
    Ok(reading.info)
}

struct Reading<'m> {
    mapping: &'m Mapping,
    bounds: Bounds,
    info: FileInfo,
    columns: Option<Columns>,
    rows_looked: usize,
    pending_blank: usize,
}

impl Reading<'_> {
    fn take(
        &mut self,
        raw: RawRow,
        on_row: &mut impl FnMut(Row<'_>) -> Result<(), FileError>,
    ) -> Result<(), FileError> {
        let Some(columns) = &self.columns else {
            return self.look_for_header(raw);
        };
        let mut cells: Vec<Option<Cell>> = vec![None; columns.list.len()];
        for (position, cell) in raw.cells {
            if let Some(&i) = columns.by_position.get(&position) {
                if !cell.is_blank() {
                    cells[i] = Some(cell);
                }
            }
        }
        if cells.iter().all(Option::is_none) {
            self.pending_blank += 1;
            return Ok(());
        }
        if self.info.rows >= self.bounds.max_rows {
            return Err(FileError::Limit(format!(
                "the file has more than {} records (row {} is one more): split it (ingest.max_file_rows)",
                self.bounds.max_rows, raw.number
            )));
        }
        self.info.blank_rows_skipped += std::mem::take(&mut self.pending_blank);
        let index = self.info.rows;
        self.info.rows += 1;
        on_row(Row {
            number: raw.number,
            index,
            cells,
            columns,
        })
    }

    fn look_for_header(&mut self, raw: RawRow) -> Result<(), FileError> {
        self.rows_looked += 1;
        if self.rows_looked > HEADER_SEARCH_ROWS {
            return Err(FileError::Malformed(format!(
                "no header row: none of the first {HEADER_SEARCH_ROWS} rows names the columns of mapping {:?}",
                self.mapping.id
            )));
        }
        let filled: Vec<(usize, String)> = raw
            .cells
            .iter()
            .filter_map(|(p, c)| match c {
                Cell::Text(t) if !t.trim().is_empty() => Some((*p, t.trim().to_string())),
                _ => None,
            })
            .collect();
        let named: Vec<(usize, &String, String)> = filled
            .iter()
            .filter_map(|(p, h)| self.mapping.column_for_header(h).map(|f| (*p, h, f)))
            .collect();
        if named.is_empty() || named.len() * 2 < filled.len() {
            return Ok(()); // a title or a note above the header
        }
        let mut list: Vec<Column> = Vec::new();
        for (position, header, field) in named {
            if let Some(other) = list.iter().find(|c| c.field == field) {
                return Err(FileError::Malformed(format!(
                    "the columns {:?} and {:?} (row {}) both give {field}: keep one",
                    other.header, header, raw.number
                )));
            }
            list.push(Column {
                header: header.clone(),
                field,
                position,
            });
        }
        let missing: Vec<MissingColumn> = self
            .mapping
            .required_sources()
            .into_iter()
            .filter(|(_, paths)| !paths.iter().any(|p| list.iter().any(|c| &c.field == p)))
            .map(|(canonical_field, paths)| MissingColumn {
                canonical_field,
                headers: paths
                    .iter()
                    .flat_map(|p| std::iter::once(p.clone()).chain(self.mapping.headers_of(p)))
                    .collect(),
            })
            .collect();
        if !missing.is_empty() {
            return Err(FileError::MissingColumns(missing));
        }
        self.info.ignored_columns = filled
            .iter()
            .filter(|(p, _)| !list.iter().any(|c| c.position == *p))
            .map(|(_, h)| h.clone())
            .collect();
        self.info.header_row = raw.number;
        self.info.columns = list.clone();
        self.columns = Some(Columns {
            by_field: list
                .iter()
                .enumerate()
                .map(|(i, c)| (c.field.clone(), i))
                .collect(),
            by_position: list
                .iter()
                .enumerate()
                .map(|(i, c)| (c.position, i))
                .collect(),
            date_formats: list
                .iter()
                .map(|c| self.mapping.date_format_of(&c.field).map(str::to_string))
                .collect(),
            list,
            is_1904: false,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::MappingSet;

    fn penalties() -> Mapping {
        MappingSet::builtin()
            .unwrap()
            .get("mi-penalties")
            .unwrap()
            .clone()
    }

    fn csv_file(text: &str) -> std::fs::File {
        let dir = std::env::temp_dir().join(format!("files-test-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, text).unwrap();
        let file = std::fs::File::open(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        file
    }

    fn bounds() -> Bounds {
        Bounds {
            max_rows: 100,
            max_unpacked_bytes: 1 << 20,
        }
    }

    #[test]
    fn chinese_and_field_name_headers_map_to_the_same_fields() {
        let m = penalties();
        assert_eq!(
            m.column_for_header("行政处罚决定书文号").as_deref(),
            Some("CF_WSH")
        );
        assert_eq!(m.column_for_header("CF_WSH").as_deref(), Some("CF_WSH"));
        assert_eq!(m.column_for_header("cf_wsh").as_deref(), Some("CF_WSH"));
        // Spaces, line breaks, full-width brackets and a required mark do not matter.
        assert_eq!(
            m.column_for_header("*罚款金额\n(万元)").as_deref(),
            Some("CF_NR_FK")
        );
        assert_eq!(
            m.column_for_header("罚款金额（万元）").as_deref(),
            Some("CF_NR_FK")
        );
        assert_eq!(m.column_for_header("序号"), None);
        assert_eq!(m.column_for_header(""), None);
    }

    #[test]
    fn header_below_a_title_and_blank_rows_skipped() {
        let text = "医保行政处罚信息（双公示）,,\n\
                    序号,行政处罚决定书文号,CF_XDR_MC,统一社会信用代码,处罚决定日期,处罚类别,备注\n\
                    1,X-1,某医院,91440104931661018F,2025/03/14,警告,\n\
                    2,,,,,,\n\
                    3,X-2,某药店,91440104931661018F,2025-03-15,警告,\n\
                    ,,,,,,\n";
        // Not every column the mapping needs: refused before any row.
        let err = read(
            csv_file(text),
            FileKind::Csv(None),
            None,
            &penalties(),
            bounds(),
            |_| Ok(()),
        )
        .unwrap_err();
        match err {
            FileError::MissingColumns(m) => {
                let fields: Vec<&str> = m.iter().map(|c| c.canonical_field.as_str()).collect();
                assert_eq!(fields, vec!["content.authority"]);
                assert_eq!(
                    m[0].headers,
                    vec!["CF_CFJG".to_string(), "处罚机关".to_string()]
                );
            }
            other => panic!("{other}"),
        }
        let text = text
            .replace("处罚类别,备注", "处罚类别,处罚机关")
            .replace("警告,\n", "警告,某局\n");
        let mut seen = Vec::new();
        let info = read(
            csv_file(&text),
            FileKind::Csv(None),
            None,
            &penalties(),
            bounds(),
            |row| {
                seen.push((
                    row.number,
                    row.index,
                    row.read("CF_WSH").unwrap(),
                    row.read("CF_JDRQ").unwrap(),
                ));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(info.header_row, 2);
        assert_eq!(info.ignored_columns, vec!["序号".to_string()]);
        assert_eq!(info.rows, 2);
        assert_eq!(
            info.blank_rows_skipped, 1,
            "the trailing blank row is not counted"
        );
        assert_eq!(
            seen,
            vec![
                (3, 0, Some("X-1".into()), Some("2025/03/14".into())),
                (5, 1, Some("X-2".into()), Some("2025-03-15".into())),
            ]
        );
    }

    #[test]
    fn two_headers_for_one_field_refuse_the_file() {
        let text = "CF_WSH,行政处罚决定书文号\nA,B\n";
        let err = read(
            csv_file(text),
            FileKind::Csv(None),
            None,
            &penalties(),
            bounds(),
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(matches!(err, FileError::Malformed(m) if m.contains("both give CF_WSH")));
    }

    #[test]
    fn undeclared_gbk_is_refused_and_declared_gbk_is_read() {
        let text = "CF_WSH,CF_XDR_MC\n穗医保罚〔2025〕3号,某医院\n";
        let (gbk, _, _) = encoding_rs::GBK.encode(text);
        // A mapping reading just these two columns.
        let set = crate::mapping::MappingSet::from_sources(&[(
            "t.toml".into(),
            "id = \"t\"\nname = \"t\"\nformat = \"json\"\ncategory = \"other_public\"\nrecords = \"\"\n[fields]\n\"source.record_id\" = { path = \"CF_WSH\" }\n\"content.name\" = { path = \"CF_XDR_MC\" }\n".into(),
        )])
        .unwrap();
        let m = set.get("t").unwrap();
        let err = read(
            csv_file_bytes(&gbk),
            FileKind::Csv(None),
            None,
            m,
            bounds(),
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(
            matches!(err, FileError::CharsetRequired { line: 2, .. }),
            "{err}"
        );
        let mut names = Vec::new();
        let info = read(
            csv_file_bytes(&gbk),
            FileKind::Csv(Some(Charset::Gbk)),
            None,
            m,
            bounds(),
            |row| {
                names.push(row.read("CF_XDR_MC").unwrap());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(info.encoding, Some(Charset::Gbk));
        assert_eq!(names, vec![Some("某医院".to_string())]);
        // Declared GBK, but the bytes are UTF-8: refused, never read as mojibake.
        let err = read(
            csv_file(text),
            FileKind::Csv(Some(Charset::Gbk)),
            None,
            m,
            bounds(),
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(
            matches!(err, FileError::Document(ParseError::MislabeledUtf8(_))),
            "{err}"
        );
        // A UTF-8 BOM says UTF-8.
        let with_bom = format!("\u{feff}{text}");
        let info = read(
            csv_file(&with_bom),
            FileKind::Csv(None),
            None,
            m,
            bounds(),
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(
            info.columns[0].field, "CF_WSH",
            "the BOM is not part of the first header"
        );
    }

    fn csv_file_bytes(bytes: &[u8]) -> std::fs::File {
        let path = std::env::temp_dir().join(format!("files-test-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }

    #[test]
    fn rows_beyond_the_bound_refuse_the_file() {
        let mut text = String::from("CF_WSH\n");
        for i in 0..5 {
            text.push_str(&format!("X-{i}\n"));
        }
        let m = crate::mapping::MappingSet::from_sources(&[(
            "t.toml".into(),
            "id = \"t\"\nname = \"t\"\nformat = \"json\"\ncategory = \"other_public\"\nrecords = \"\"\n[fields]\n\"source.record_id\" = { path = \"CF_WSH\" }\n".into(),
        )])
        .unwrap();
        let m = m.get("t").unwrap();
        let b = Bounds {
            max_rows: 4,
            ..bounds()
        };
        let err = read(csv_file(&text), FileKind::Csv(None), None, m, b, |_| Ok(())).unwrap_err();
        assert!(
            matches!(err, FileError::Limit(ref s) if s.contains("row 6")),
            "{err}"
        );
    }
}
