//! One cell of a spreadsheet or CSV file as the text a mapping rule reads: numbers as a person
//! sees them in Excel, Excel serial dates (the 1900 date system, or 1904 when the workbook says
//! so) as dates in the pattern of the rule reading the column, error cells as a problem of the
//! row.

use crate::mapping::json::MAX_STRING_CHARS;

/// A cell's value, owned (calamine's cells borrow the workbook).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Int(i64),
    /// A number without a date format.
    Number(f64),
    /// A number with a date format: an Excel serial date (days, time as the fraction).
    Date(f64),
    Bool(bool),
    /// `#N/A`, `#DIV/0!`...: a formula that failed, or was never calculated.
    Error(String),
}

impl Cell {
    /// Whether the cell holds nothing a rule could read (absent, or only whitespace).
    pub fn is_blank(&self) -> bool {
        matches!(self, Cell::Text(t) if t.trim().is_empty())
    }
}

/// The last serial date Excel shows: 9999-12-31.
pub const MAX_SERIAL: f64 = 2_958_465.0;

/// The date of an Excel serial number (its time of day, the fraction, is dropped). 1900 system:
/// day 1 is 1900-01-01 and day 60 is the 1900-02-29 that Lotus 1-2-3 invented and Excel kept
/// (no such date: `None`), so from day 61 on the epoch is 1899-12-30. 1904 system (Mac
/// workbooks that say so): day 0 is 1904-01-01.
pub fn serial_date(serial: f64, is_1904: bool) -> Option<time::Date> {
    if !serial.is_finite() || serial > MAX_SERIAL {
        return None;
    }
    let days = serial.floor();
    let (epoch, days) = if is_1904 {
        if days < 0.0 {
            return None;
        }
        (time::macros::date!(1904 - 01 - 01), days as i64)
    } else if days < 1.0 || days == 60.0 {
        return None;
    } else if days < 60.0 {
        (time::macros::date!(1899 - 12 - 31), days as i64)
    } else {
        (time::macros::date!(1899 - 12 - 30), days as i64)
    };
    epoch.checked_add(time::Duration::days(days))
}

/// A number as Excel shows it in a General cell, at most 15 significant digits (Excel's own
/// precision): `18.9` stays `18.9` even when the file holds `18.899999999999999`, `0.1 + 0.2`
/// is `0.3`, integers have no `.0`, and there is never an exponent. So a numeric cell gives the
/// same text as the same amount typed as text (`decimal` with `scale = 4` turns either into
/// 元).
pub fn number_text(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value == 0.0 {
        return "0".into();
    }
    // `d.dddddddddddddde±x`: 15 significant digits, rounded.
    let sci = format!("{:.14e}", value.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    // The decimal point sits after `exponent + 1` digits.
    let point = exponent + 1;
    let text = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    };
    if value < 0.0 {
        format!("-{text}")
    } else {
        text
    }
}

/// The text a rule reads from `cell`, or why the cell cannot be read. `date_format` is the first
/// pattern of the date rule reading the column, if a date rule reads it: a date cell is written
/// in it (so `long_term = ["2099/12/31"]` still matches a date cell of 2099-12-31), and a plain
/// number in such a column is taken as a serial date. Elsewhere a date cell is `YYYY-MM-DD`.
pub fn cell_text(
    cell: &Cell,
    date_format: Option<&str>,
    is_1904: bool,
) -> Result<Option<String>, String> {
    let as_date = |serial: f64| -> Result<Option<String>, String> {
        let date = serial_date(serial, is_1904)
            .ok_or_else(|| format!("{} is not a date Excel can show", number_text(serial)))?;
        Ok(Some(crate::mapping::format_date(
            date,
            date_format.unwrap_or("YYYY-MM-DD"),
        )))
    };
    // A plain number in a date column is a serial date when it can be one; an 8-digit number
    // such as 20250314 (a date typed without separators) is past the last serial and stays text.
    let serial_in_date_column =
        |v: f64| date_format.is_some() && (1.0..=MAX_SERIAL).contains(&v.floor());
    match cell {
        Cell::Text(t) => {
            let t = t.trim();
            if t.is_empty() {
                Ok(None)
            } else if t.chars().count() > MAX_STRING_CHARS {
                Err(format!("longer than {MAX_STRING_CHARS} characters"))
            } else {
                Ok(Some(t.to_string()))
            }
        }
        Cell::Int(i) if serial_in_date_column(*i as f64) => as_date(*i as f64),
        Cell::Int(i) => Ok(Some(i.to_string())),
        Cell::Number(v) if serial_in_date_column(*v) => as_date(*v),
        Cell::Number(v) => Ok(Some(number_text(*v))),
        Cell::Date(serial) => as_date(*serial),
        Cell::Bool(b) => Ok(Some(b.to_string())),
        Cell::Error(e) => Err(format!("the cell holds the error {e}, not a value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn serial_dates_in_the_1900_system() {
        assert_eq!(serial_date(1.0, false), Some(date!(1900 - 01 - 01)));
        assert_eq!(serial_date(59.0, false), Some(date!(1900 - 02 - 28)));
        assert_eq!(serial_date(60.0, false), None, "Lotus' 1900-02-29");
        assert_eq!(serial_date(61.0, false), Some(date!(1900 - 03 - 01)));
        assert_eq!(serial_date(45730.0, false), Some(date!(2025 - 03 - 14)));
        assert_eq!(
            serial_date(45730.75, false),
            Some(date!(2025 - 03 - 14)),
            "the time of day is dropped"
        );
        assert_eq!(serial_date(73050.0, false), Some(date!(2099 - 12 - 31)));
        assert_eq!(serial_date(MAX_SERIAL, false), Some(date!(9999 - 12 - 31)));
        assert_eq!(serial_date(MAX_SERIAL + 1.0, false), None);
        assert_eq!(serial_date(0.0, false), None);
        assert_eq!(serial_date(f64::NAN, false), None);
        assert_eq!(serial_date(0.0, true), Some(date!(1904 - 01 - 01)));
        assert_eq!(serial_date(44268.0, true), Some(date!(2025 - 03 - 14)));
    }

    #[test]
    fn numbers_read_as_excel_shows_them() {
        assert_eq!(number_text(18.9), "18.9");
        let stored: f64 = "18.899999999999999".parse().unwrap();
        assert_eq!(number_text(stored), "18.9");
        assert_eq!(number_text(0.1 + 0.2), "0.3");
        assert_eq!(number_text(12.0), "12");
        assert_eq!(number_text(0.5), "0.5");
        assert_eq!(number_text(-3.25), "-3.25");
        assert_eq!(number_text(1234567.891), "1234567.891");
        assert_eq!(number_text(1e-7), "0.0000001");
        assert_eq!(number_text(1e21), "1000000000000000000000");
        assert_eq!(number_text(0.0), "0");
        assert_eq!(number_text(100.0), "100");
    }

    #[test]
    fn a_numeric_amount_reads_as_its_text_form_would() {
        // 万元 -> 元 through the same rule, whether the cell is a number or text.
        let n = cell_text(&Cell::Number(18.9), None, false)
            .unwrap()
            .unwrap();
        let t = cell_text(&Cell::Text("18.9".into()), None, false)
            .unwrap()
            .unwrap();
        assert_eq!(n, t);
    }

    #[test]
    fn dates_follow_the_rule_reading_the_column() {
        let d = Cell::Date(73050.0);
        assert_eq!(
            cell_text(&d, Some("YYYY/MM/DD"), false).unwrap().as_deref(),
            Some("2099/12/31")
        );
        assert_eq!(
            cell_text(&d, None, false).unwrap().as_deref(),
            Some("2099-12-31")
        );
        // A plain number in a date column is a serial date; elsewhere a number.
        assert_eq!(
            cell_text(&Cell::Int(45730), Some("YYYY-MM-DD"), false)
                .unwrap()
                .as_deref(),
            Some("2025-03-14")
        );
        assert_eq!(
            cell_text(&Cell::Int(45730), None, false)
                .unwrap()
                .as_deref(),
            Some("45730")
        );
        // Typed without separators: past the last serial, read as written.
        assert_eq!(
            cell_text(&Cell::Int(20250314), Some("YYYYMMDD"), false)
                .unwrap()
                .as_deref(),
            Some("20250314")
        );
        assert!(cell_text(&Cell::Date(60.0), None, false).is_err());
    }

    #[test]
    fn blanks_errors_and_long_texts() {
        assert_eq!(cell_text(&Cell::Text("  ".into()), None, false), Ok(None));
        assert!(cell_text(&Cell::Error("#DIV/0!".into()), None, false)
            .unwrap_err()
            .contains("#DIV/0!"));
        let long = "字".repeat(MAX_STRING_CHARS + 1);
        assert!(cell_text(&Cell::Text(long), None, false).is_err());
        assert_eq!(
            cell_text(&Cell::Bool(true), None, false)
                .unwrap()
                .as_deref(),
            Some("true")
        );
    }
}
