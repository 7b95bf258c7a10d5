//! Source documents: JSON and XML parsed into a tree that mapping paths can read.
//!
//! XML: the encoding declared in the prolog is honoured (UTF-8, GBK, GB18030; bytes invalid in it
//! are an error, never replaced); a DOCTYPE is refused outright, so no entity is ever expanded;
//! only the five predefined entities and character references are resolved; nesting depth is
//! bounded, and so are the elements of one document and the children of one element
//! (`ingest.max_values_per_batch`, `ingest.max_object_members`: a tree of elements costs ~40
//! times the bytes of `<a/>`, issue #31). JSON: read through [`super::json`] (duplicate keys
//! refused, numbers checked as written, members and values bounded); serde_json's recursion limit
//! bounds nesting.

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::Value;

use super::json::{self, Found, Limits, Refusal};

/// Deeper documents are refused (JSON is bounded by serde_json's own limit of 128).
pub const MAX_XML_DEPTH: usize = 64;

/// Why a whole document cannot be read. Always the sender's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("malformed {format} at line {line}, column {column}: {message}")]
    Syntax {
        format: &'static str,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("the encoding {0:?} is not supported (use UTF-8, GBK or GB18030)")]
    UnsupportedEncoding(String),
    #[error("bytes at line {line}, column {column} are not valid {encoding}")]
    InvalidEncoding {
        encoding: String,
        line: usize,
        column: usize,
    },
    #[error("the body is declared {0} but is UTF-8: declare UTF-8 or send {0} bytes")]
    MislabeledUtf8(String),
    #[error("XML with a DOCTYPE is refused: entity declarations are never processed")]
    Doctype,
    #[error("XML nesting deeper than {MAX_XML_DEPTH} elements")]
    TooDeep,
    #[error("XML uses the undefined entity &{0};")]
    UndefinedEntity(String),
    #[error("the document is empty")]
    Empty,
    #[error("records not found: {0}")]
    Shape(String),
    #[error("the batch has more than {0} records: split it (ingest.max_records_per_batch)")]
    TooManyRecords(usize),
    #[error("{found} (line {line}, column {column})")]
    Refused {
        found: Found,
        line: usize,
        column: usize,
    },
    #[error("XML with more than {0} elements and attributes in one document: split it")]
    TooManyElements(usize),
    #[error("XML element <{element}> has more than {limit} children")]
    TooManyChildren { element: String, limit: usize },
}

/// A document refused whole is answered with its position (`line`, `column`) and, for a JSON
/// value refused, the field's path, so that the sender finds the fault without the gateway's
/// logs. Always the sender's to fix; a bound of the document is `413`.
impl crate::answer::Answer for ParseError {
    fn status(&self) -> http::StatusCode {
        use super::json::JsonIssue as J;
        match self {
            Self::TooManyRecords(_) | Self::TooManyElements(_) | Self::TooManyChildren { .. } => {
                http::StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Refused { found, .. }
                if matches!(found.issue, J::TooManyMembers(_) | J::TooManyValues(_)) =>
            {
                http::StatusCode::PAYLOAD_TOO_LARGE
            }
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
    fn code(&self) -> &'static str {
        use super::json::JsonIssue as J;
        match self {
            Self::Syntax { .. } => "malformed_document",
            Self::UnsupportedEncoding(_) => "unsupported_encoding",
            Self::InvalidEncoding { .. } => "invalid_encoding",
            Self::MislabeledUtf8(_) => "encoding_mismatch",
            Self::Doctype => "doctype_refused",
            Self::TooDeep => "too_deep",
            Self::UndefinedEntity(_) => "undefined_entity",
            Self::Empty => "empty_document",
            Self::Shape(_) => "unexpected_shape",
            Self::TooManyRecords(_) => "too_many_records",
            Self::TooManyElements(_) | Self::TooManyChildren { .. } => "document_limit",
            Self::Refused { found, .. } => match found.issue {
                J::DuplicateKey(_) => "duplicate_key",
                J::TooManyMembers(_) | J::TooManyValues(_) => "document_limit",
                J::TooLong(_) | J::NumberTooLong | J::IntegerOutOfRange | J::NotFinite => {
                    "invalid_value"
                }
            },
        }
    }
    fn message(&self) -> String {
        self.to_string()
    }
    fn retry(&self) -> bool {
        false
    }
    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut details = serde_json::Map::new();
        if let Self::Syntax { line, column, .. }
        | Self::InvalidEncoding { line, column, .. }
        | Self::Refused { line, column, .. } = self
        {
            // Line 0: the position is not known (a refusal found after the parse).
            if *line > 0 {
                details.insert("line".into(), (*line).into());
                details.insert("column".into(), (*column).into());
            }
        }
        if let Self::Refused { found, .. } = self {
            details.insert("field".into(), found.path.clone().into());
        }
        details
    }
}

impl From<Refusal> for ParseError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Syntax {
                line,
                column,
                message,
            } => ParseError::Syntax {
                format: "JSON",
                line,
                column,
                message,
            },
            Refusal::Found {
                found,
                line,
                column,
            } => ParseError::Refused {
                found,
                line,
                column,
            },
            Refusal::Shape(s) => ParseError::Shape(s),
            Refusal::TooManyRecords(n) => ParseError::TooManyRecords(n),
        }
    }
}

/// One XML element with its attributes, text and children.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// Follow a `/`-separated path of child names (and a final `@attr`) to a text value.
    pub fn value_at(&self, path: &str) -> Option<&str> {
        let mut node = self;
        for segment in path.split('/') {
            if let Some(attr) = segment.strip_prefix('@') {
                return node
                    .attributes
                    .iter()
                    .find(|(k, _)| k == attr)
                    .map(|(_, v)| v.as_str());
            }
            node = node.children.iter().find(|c| c.name == segment)?;
        }
        Some(node.text.as_str())
    }

    /// Every element reached by a `/`-separated path, starting with this element's own name.
    pub fn select<'a>(&'a self, path: &str) -> Result<Vec<&'a Element>, ParseError> {
        let mut segments = path.split('/');
        let root = segments.next().unwrap_or_default();
        if root != self.name {
            return Err(ParseError::Shape(format!(
                "the root element is <{}>, this mapping expects <{root}>",
                self.name
            )));
        }
        let mut level = vec![self];
        for segment in segments {
            level = level
                .iter()
                .flat_map(|e| e.children.iter().filter(|c| c.name == segment))
                .collect();
        }
        Ok(level)
    }
}

/// Parse a whole JSON body as one checked value (duplicate keys refused, numbers checked, members
/// and values bounded by the default limits). Numbers keep their written form (serde_json
/// `arbitrary_precision`). Batches are read record by record instead ([`json::BatchReader`]).
pub fn parse_json(body: &[u8]) -> Result<Value, ParseError> {
    let text = json_text(body)?;
    let limits = Limits {
        max_string_chars: usize::MAX,
        ..Limits::default()
    };
    Ok(json::checked_value(text, limits)?)
}

/// An agency's JSON request body (a correction, an objection, a repair...) as `T`, after the
/// checks of [`parse_json`]: a key given twice anywhere is refused, not silently the last.
pub fn parse_json_as<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ParseError> {
    parse_json(body)?;
    serde_json::from_slice(body).map_err(|e| ParseError::Syntax {
        format: "JSON",
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })
}

/// The body as UTF-8 text, checked once (parsing from the str does not validate it again).
pub fn json_text(body: &[u8]) -> Result<&str, ParseError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    std::str::from_utf8(body).map_err(|e| {
        let (line, column) = line_column(body, e.valid_up_to());
        ParseError::InvalidEncoding {
            encoding: "UTF-8".into(),
            line,
            column,
        }
    })
}

/// Parse an XML body into its root element, within the default limits.
pub fn parse_xml(body: &[u8]) -> Result<Element, ParseError> {
    parse_xml_bounded(body, &Limits::default())
}

/// Parse an XML body into its root element: at most `limits.max_values` elements and attributes
/// in all, and `limits.max_members` children per element.
pub fn parse_xml_bounded(body: &[u8], limits: &Limits) -> Result<Element, ParseError> {
    let text = decode_xml(body)?;
    let mut nodes = 0usize;
    // The element holding the records may have as many children as a batch has records; the
    // bound per element is for everything else (a record's fields).
    let max_children = limits.max_members.max(limits.max_records);
    let mut count = |element: &Element, parent: Option<&Element>| {
        nodes += 1 + element.attributes.len();
        if nodes > limits.max_values {
            return Err(ParseError::TooManyElements(limits.max_values));
        }
        match parent {
            Some(p) if p.children.len() >= max_children => Err(ParseError::TooManyChildren {
                element: p.name.clone(),
                limit: max_children,
            }),
            _ => Ok(()),
        }
    };
    let mut reader = Reader::from_str(&text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let syntax = |reader: &Reader<&[u8]>, message: String| {
        let (line, column) = line_column(text.as_bytes(), reader.error_position() as usize);
        ParseError::Syntax {
            format: "XML",
            line,
            column,
            message,
        }
    };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| syntax(&reader, e.to_string()))?;
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() && stack.is_empty() => {
                let _ = start;
                return Err(syntax(&reader, "more than one root element".into()));
            }
            Event::Start(start) => {
                if stack.len() >= MAX_XML_DEPTH {
                    return Err(ParseError::TooDeep);
                }
                let element = element_from(&start).map_err(|m| syntax(&reader, m))?;
                count(&element, stack.last())?;
                stack.push(element);
            }
            Event::Empty(start) => {
                let element = element_from(&start).map_err(|m| syntax(&reader, m))?;
                count(&element, stack.last())?;
                attach(element, &mut stack, &mut root);
            }
            Event::End(_) => {
                if let Some(mut element) = stack.pop() {
                    let trimmed = element.text.trim();
                    if trimmed.len() != element.text.len() {
                        element.text = trimmed.to_string();
                    }
                    attach(element, &mut stack, &mut root);
                }
            }
            Event::Text(t) => append_text(&mut stack, &t.xml10_content()),
            Event::CData(c) => append_text(&mut stack, &c.xml10_content()),
            Event::GeneralRef(r) => {
                let resolved: Cow<str> = match r.resolve_char_ref() {
                    Ok(Some(c)) => Cow::Owned(c.to_string()),
                    Ok(None) => match predefined_entity(&r.xml10_content()) {
                        Some(s) => Cow::Borrowed(s),
                        None => {
                            return Err(ParseError::UndefinedEntity(r.xml10_content().into_owned()))
                        }
                    },
                    Err(e) => return Err(syntax(&reader, e.to_string())),
                };
                append_text(&mut stack, &resolved);
            }
            Event::DocType(_) => return Err(ParseError::Doctype),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        let (line, column) = line_column(text.as_bytes(), text.len());
        return Err(ParseError::Syntax {
            format: "XML",
            line,
            column,
            message: format!(
                "document ends inside <{}>",
                stack.last().map(|e| e.name.as_str()).unwrap_or("")
            ),
        });
    }
    root.ok_or(ParseError::Empty)
}

fn element_from(start: &quick_xml::events::BytesStart<'_>) -> Result<Element, String> {
    let mut element = Element {
        name: start.name().as_ref().to_string(),
        ..Element::default()
    };
    for attr in start.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| e.to_string())?;
        element
            .attributes
            .push((attr.key.as_ref().to_string(), value.trim().to_string()));
    }
    Ok(element)
}

fn attach(element: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn append_text(stack: &mut [Element], text: &str) {
    if let Some(current) = stack.last_mut() {
        current.text.push_str(text);
    }
}

fn predefined_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        _ => return None,
    })
}

/// Decode the body to UTF-8 following the encoding its prolog declares (UTF-8 when none).
fn decode_xml(body: &[u8]) -> Result<Cow<'_, str>, ParseError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    if body.starts_with(b"\xFF\xFE") || body.starts_with(b"\xFE\xFF") {
        return Err(ParseError::UnsupportedEncoding("UTF-16".into()));
    }
    let label = declared_encoding(body);
    let encoding = match &label {
        None => encoding_rs::UTF_8,
        Some(l) => match encoding_rs::Encoding::for_label(l.as_bytes()) {
            Some(e)
                if e == encoding_rs::UTF_8
                    || e == encoding_rs::GBK
                    || e == encoding_rs::GB18030 =>
            {
                e
            }
            _ => return Err(ParseError::UnsupportedEncoding(l.clone())),
        },
    };
    if encoding == encoding_rs::UTF_8 {
        return match std::str::from_utf8(body) {
            Ok(s) => Ok(Cow::Borrowed(s)),
            Err(e) => {
                let (line, column) = line_column(body, e.valid_up_to());
                Err(ParseError::InvalidEncoding {
                    encoding: "UTF-8".into(),
                    line,
                    column,
                })
            }
        };
    }
    // A GBK declaration on a body that is valid UTF-8 with non-ASCII text is a mislabelled file:
    // real GBK Chinese text is practically never valid UTF-8, and decoding it as GBK would store
    // mojibake without any error.
    if !body.is_ascii() && std::str::from_utf8(body).is_ok() {
        return Err(ParseError::MislabeledUtf8(label.unwrap_or_default()));
    }
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(body.len() * 3 / 2 + 16);
    let (result, read) = decoder.decode_to_string_without_replacement(body, &mut out, true);
    match result {
        encoding_rs::DecoderResult::InputEmpty => Ok(Cow::Owned(out)),
        encoding_rs::DecoderResult::Malformed(bad, _) => {
            let at = read.saturating_sub(bad as usize);
            let (line, column) = line_column(body, at);
            Err(ParseError::InvalidEncoding {
                encoding: encoding.name().into(),
                line,
                column,
            })
        }
        encoding_rs::DecoderResult::OutputFull => Err(ParseError::InvalidEncoding {
            encoding: encoding.name().into(),
            line: 0,
            column: 0,
        }),
    }
}

/// The `encoding="..."` of an `<?xml ...?>` prolog, read as ASCII (valid for every supported
/// encoding).
fn declared_encoding(body: &[u8]) -> Option<String> {
    let head = &body[..body.len().min(256)];
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let prolog = std::str::from_utf8(&head[..end]).ok()?;
    let at = prolog.find("encoding")?;
    let rest = prolog[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?
        .trim_start();
    let quote = rest.chars().next()?;
    if quote != '"' && quote != '\'' {
        return None;
    }
    let value = &rest[1..];
    Some(value[..value.find(quote)?].to_string())
}

/// 1-based line and column (in characters of the line, counting bytes for undecodable input).
pub fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let offset = offset.min(bytes.len());
    let before = &bytes[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(0);
    let column = match std::str::from_utf8(&before[line_start..]) {
        Ok(s) => s.chars().count() + 1,
        Err(_) => offset - line_start + 1,
    };
    (line, column)
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_element_holding_the_records_may_have_as_many_children_as_a_batch_has_records() {
        let limits = super::super::json::Limits {
            max_members: 10,
            max_records: 100,
            ..Default::default()
        };
        let rows: String = (0..50).map(|i| format!("<R><ID>{i}</ID></R>")).collect();
        let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Records>{rows}</Records>");
        assert!(parse_xml_bounded(body.as_bytes(), &limits).is_ok());
        let fields: String = (0..150).map(|i| format!("<F{i}>x</F{i}>")).collect();
        let body =
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Records><R>{fields}</R></Records>");
        assert!(parse_xml_bounded(body.as_bytes(), &limits).is_err());
    }

    use super::*;

    #[test]
    fn gbk_declared_and_sent_is_decoded() {
        let utf8 = "<?xml version=\"1.0\" encoding=\"GBK\"?><根><名称>广州市某某药房</名称></根>";
        let (gbk, _, bad) = encoding_rs::GBK.encode(utf8);
        assert!(!bad);
        let root = parse_xml(&gbk).expect("GBK decodes");
        assert_eq!(root.value_at("名称"), Some("广州市某某药房"));
    }

    #[test]
    fn gbk_declared_but_utf8_sent_is_refused() {
        let utf8 = "<?xml version=\"1.0\" encoding=\"GBK\"?><根><名称>广州</名称></根>";
        assert_eq!(
            parse_xml(utf8.as_bytes()),
            Err(ParseError::MislabeledUtf8("GBK".into()))
        );
    }

    #[test]
    fn invalid_utf8_names_line_and_column() {
        let body = b"<a>\n<b>ok</b>\n<c>\xFF</c></a>";
        assert_eq!(
            parse_xml(body),
            Err(ParseError::InvalidEncoding {
                encoding: "UTF-8".into(),
                line: 3,
                column: 4
            })
        );
    }

    #[test]
    fn doctype_is_refused_without_expansion() {
        let body = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><a>&lol2;</a>"#;
        assert_eq!(parse_xml(body), Err(ParseError::Doctype));
    }

    #[test]
    fn entities_and_attributes() {
        let root = parse_xml(br#"<r><x id="A&amp;B">A &amp; B &#x4E2D;</x></r>"#).unwrap();
        assert_eq!(root.value_at("x"), Some("A & B \u{4E2D}"));
        assert_eq!(root.value_at("x/@id"), Some("A&B"));
        assert_eq!(
            parse_xml(b"<r>&foo;</r>"),
            Err(ParseError::UndefinedEntity("foo".into()))
        );
    }

    #[test]
    fn malformed_xml_has_a_position() {
        match parse_xml(b"<a>\n  <b></c>\n</a>") {
            Err(ParseError::Syntax { line, .. }) => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_xml(b"<a><b>"),
            Err(ParseError::Syntax { .. })
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
        assert_eq!(parse_xml(deep.as_bytes()), Err(ParseError::TooDeep));
        let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            parse_json(deep_json.as_bytes()),
            Err(ParseError::Syntax { .. })
        ));
    }

    #[test]
    fn malformed_json_has_a_position() {
        match parse_json(b"[\n {\"a\": 1,}\n]") {
            Err(ParseError::Syntax { line, column, .. }) => assert_eq!((line, column), (2, 10)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_numbers_keep_their_written_form() {
        let v = parse_json(b"[12345678901234567890123.10]").unwrap();
        assert_eq!(v[0].to_string(), "12345678901234567890123.10");
    }
}
