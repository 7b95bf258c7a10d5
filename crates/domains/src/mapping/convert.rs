//! Value conversions of the mapping language: dates in source patterns, exact decimal scaling,
//! integers that must fit, booleans and lists. No floating point anywhere.

/// Parse `raw` with the first of `formats` that matches; returns `YYYY-MM-DD`.
pub fn date(raw: &str, formats: &[String]) -> Option<String> {
    formats.iter().find_map(|f| date_with(raw, f))
}

fn date_with(raw: &str, format: &str) -> Option<String> {
    let mut input = raw.chars().peekable();
    let mut fmt = format.chars().peekable();
    let (mut year, mut month, mut day) = (None, None, None);
    while let Some(fc) = fmt.next() {
        let token = match fc {
            'Y' if fmt.peek() == Some(&'Y') => {
                for _ in 0..3 {
                    if fmt.next() != Some('Y') {
                        return None;
                    }
                }
                'Y'
            }
            'M' if fmt.peek() == Some(&'M') => {
                fmt.next();
                'M'
            }
            'D' if fmt.peek() == Some(&'D') => {
                fmt.next();
                'D'
            }
            literal => {
                if input.next() != Some(literal) {
                    return None;
                }
                continue;
            }
        };
        let (min, max) = match token {
            'Y' => (4, 4),
            // One digit is fine when a separator follows ("2024/3/5"); two when nothing does.
            _ if fmt.peek().is_some()
                && !fmt
                    .peek()
                    .is_some_and(|c| *c == 'Y' || *c == 'M' || *c == 'D') =>
            {
                (1, 2)
            }
            _ if fmt.peek().is_none() => (1, 2),
            _ => (2, 2),
        };
        let mut digits = String::new();
        while digits.len() < max {
            match input.peek() {
                Some(c) if c.is_ascii_digit() => {
                    digits.push(*c);
                    input.next();
                }
                _ => break,
            }
        }
        if digits.len() < min {
            return None;
        }
        let n: u32 = digits.parse().ok()?;
        match token {
            'Y' => year = Some(n as i32),
            'M' => month = Some(n as u8),
            _ => day = Some(n as u8),
        }
    }
    if input.next().is_some() {
        return None;
    }
    let date =
        time::Date::from_calendar_date(year?, time::Month::try_from(month?).ok()?, day?).ok()?;
    Some(crate::record::format_date(date))
}

/// A date written in a source pattern (`YYYY/MM/DD`, `YYYY年MM月DD日`...): how a spreadsheet's
/// date cell is given to a rule that reads that pattern.
pub fn format_date(date: time::Date, pattern: &str) -> String {
    pattern
        .replace("YYYY", &format!("{:04}", date.year()))
        .replace("MM", &format!("{:02}", u8::from(date.month())))
        .replace("DD", &format!("{:02}", date.day()))
}

/// Multiply a decimal text by 10^scale exactly. Accepts an optional sign, digits and one `.`.
pub fn decimal(raw: &str, scale: u32) -> Option<String> {
    let (negative, body) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw.strip_prefix('+').unwrap_or(raw)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if int.len() + frac.len() > 40 {
        return None;
    }
    let scale = scale as usize;
    let mut digits = format!("{int}{frac}");
    let point = int.len() + scale;
    if digits.len() < point {
        digits.push_str(&"0".repeat(point - digits.len()));
    }
    let (mut whole, mut fraction) = (digits[..point].to_string(), digits[point..].to_string());
    whole = whole.trim_start_matches('0').to_string();
    fraction = fraction.trim_end_matches('0').to_string();
    if whole.is_empty() {
        whole = "0".into();
    }
    let text = if fraction.is_empty() {
        whole
    } else {
        format!("{whole}.{fraction}")
    };
    Some(if negative && text != "0" {
        format!("-{text}")
    } else {
        text
    })
}

/// A signed 64-bit integer; anything that does not fit is an error, never a wrap-around.
pub fn integer(raw: &str) -> Option<i64> {
    raw.parse::<i64>().ok()
}

pub fn boolean(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "y" | "yes" | "是" => Some(true),
        "false" | "0" | "n" | "no" | "否" => Some(false),
        _ => None,
    }
}

pub fn list(raw: &str, separator: &str) -> Vec<String> {
    raw.split(|c: char| separator.contains(c) || c == '；')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A path with a character range, `CF_CFJGDM[2..8]`: the path and the 0-based range (end
/// exclusive). A path without a well-formed range is returned whole.
pub fn char_range(path: &str) -> (&str, Option<(usize, usize)>) {
    let Some(open) = path.rfind('[') else {
        return (path, None);
    };
    let Some(inner) = path[open + 1..].strip_suffix(']') else {
        return (path, None);
    };
    let Some((a, b)) = inner.split_once("..") else {
        return (path, None);
    };
    match (a.parse::<usize>(), b.parse::<usize>()) {
        (Ok(a), Ok(b)) if a < b => (&path[..open], Some((a, b))),
        _ => (path, None),
    }
}

/// Characters `start..end` of a value; `None` when it is shorter (the next path is tried).
pub fn chars_of(value: &str, (start, end): (usize, usize)) -> Option<String> {
    let chars: Vec<char> = value.chars().collect();
    (chars.len() >= end).then(|| chars[start..end].iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_can_take_a_character_range() {
        assert_eq!(char_range("CF_CFJGDM[2..8]"), ("CF_CFJGDM", Some((2, 8))));
        assert_eq!(char_range("CF_CFJGDM"), ("CF_CFJGDM", None));
        assert_eq!(char_range("A[8..2]"), ("A[8..2]", None));
        assert_eq!(
            chars_of("11440100MB2C12345X", (2, 8)).as_deref(),
            Some("440100")
        );
        assert_eq!(chars_of("1144", (2, 8)), None);
    }

    fn f(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dates_in_source_patterns() {
        assert_eq!(
            date("2024/03/05", &f(&["YYYY/MM/DD"])).as_deref(),
            Some("2024-03-05")
        );
        assert_eq!(
            date("2024/3/5", &f(&["YYYY/MM/DD"])).as_deref(),
            Some("2024-03-05")
        );
        assert_eq!(
            date("20240305", &f(&["YYYYMMDD"])).as_deref(),
            Some("2024-03-05")
        );
        assert_eq!(
            date("2024年3月5日", &f(&["YYYY年MM月DD日"])).as_deref(),
            Some("2024-03-05")
        );
        assert_eq!(date("2024-02-30", &f(&["YYYY-MM-DD"])), None);
        assert_eq!(date("2023/13/01", &f(&["YYYY/MM/DD"])), None);
        assert_eq!(date("2024-03-05x", &f(&["YYYY-MM-DD"])), None);
        assert_eq!(
            date("2024-03-05", &f(&["YYYY/MM/DD", "YYYY-MM-DD"])).as_deref(),
            Some("2024-03-05")
        );
    }

    #[test]
    fn dates_are_written_in_a_source_pattern() {
        let d = time::macros::date!(2099 - 12 - 31);
        assert_eq!(format_date(d, "YYYY/MM/DD"), "2099/12/31");
        assert_eq!(
            format_date(time::macros::date!(2025 - 03 - 05), "YYYY年MM月DD日"),
            "2025年03月05日"
        );
        assert_eq!(format_date(d, "YYYYMMDD"), "20991231");
    }

    #[test]
    fn wan_yuan_to_yuan_exactly() {
        assert_eq!(decimal("0.5", 4).as_deref(), Some("5000"));
        assert_eq!(decimal("1.23456", 4).as_deref(), Some("12345.6"));
        assert_eq!(decimal("12", 4).as_deref(), Some("120000"));
        assert_eq!(decimal("0.00001", 4).as_deref(), Some("0.1"));
        assert_eq!(decimal("-3.5", 0).as_deref(), Some("-3.5"));
        assert_eq!(decimal("1e5", 0), None);
        assert_eq!(decimal("12,5", 0), None);
        assert_eq!(decimal("NaN", 0), None);
        assert_eq!(decimal(".", 0), None);
    }

    #[test]
    fn integers_do_not_wrap() {
        assert_eq!(integer("9223372036854775807"), Some(i64::MAX));
        assert_eq!(integer("9223372036854775808"), None);
    }

    #[test]
    fn lists_split_on_both_semicolons() {
        assert_eq!(
            list("警告；罚款; 没收违法所得;", ";"),
            vec!["警告", "罚款", "没收违法所得"]
        );
    }
}
