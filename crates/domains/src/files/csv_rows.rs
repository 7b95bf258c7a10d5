//! CSV rows, read with the `csv` crate over a streaming decoder: nothing but the current row (at
//! most [`MAX_ROW_BYTES`](super::MAX_ROW_BYTES)) and two 64 KiB buffers is held.
//!
//! The encoding is the declared charset, else UTF-8 when the file starts with a UTF-8 BOM, else
//! UTF-8 when every byte of it is valid UTF-8; anything else is refused
//! ([`FileError::CharsetRequired`]), never guessed. Bytes invalid in the encoding refuse the file
//! naming their line; a file declared GBK that is valid UTF-8 with Chinese text in it is refused
//! as mislabelled (real GBK text is practically never valid UTF-8; read as GBK it would be stored
//! as mojibake without any error).

use std::cell::{Cell as Shared, RefCell};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use encoding_rs::{Decoder, DecoderResult, Encoding};

use super::{Cell, Charset, FileError, RawRow, MAX_ROW_BYTES};
use crate::mapping::ParseError;

const BUFFER: usize = 64 * 1024;

/// Read every row of a CSV file; returns the encoding it was read in.
pub(super) fn rows(
    file: File,
    charset: Option<Charset>,
    on_row: &mut dyn FnMut(RawRow) -> Result<(), FileError>,
) -> Result<Charset, FileError> {
    let mut inner = BufReader::with_capacity(BUFFER, file);
    let head = inner.fill_buf().map_err(|e| FileError::Io(e.to_string()))?;
    if head.is_empty() {
        return Err(ParseError::Empty.into());
    }
    if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
        return Err(ParseError::UnsupportedEncoding("UTF-16".into()).into());
    }
    let bom = head.starts_with(b"\xEF\xBB\xBF");
    let (encoding, mode, read_as) = match (charset, bom) {
        (Some(Charset::Gbk), true) => {
            return Err(ParseError::MislabeledUtf8("GBK".into()).into());
        }
        (Some(Charset::Gbk), false) => (encoding_rs::GB18030, Mode::Declared, Charset::Gbk),
        (Some(Charset::Utf8), _) | (None, true) => {
            (encoding_rs::UTF_8, Mode::Declared, Charset::Utf8)
        }
        (None, false) => (encoding_rs::UTF_8, Mode::Undeclared, Charset::Utf8),
    };
    if bom {
        inner.consume(3);
    }
    let progress = Rc::new(Progress::default());
    let decoding = Decoding::new(inner, encoding, mode, progress.clone());
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(decoding);
    let mut record = csv::StringRecord::new();
    // Line breaks read so far, and those inside quoted fields: a user opening the file in Excel
    // sees one row per record.
    let mut inner_lines = 0u64;
    let mut lines = 0u64;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(e)),
        }
        // The spreadsheet row: the record's physical line (counted in the bytes it was read
        // from: the csv crate skips empty lines and may leave a CRLF's LF to the next record)
        // less the line breaks inside quoted fields of the records before it.
        let (start, end) = (
            record.position().map(|p| p.byte()).unwrap_or(0),
            reader.position().byte(),
        );
        let (leading, all) = progress.take(start, end);
        let number = (lines + leading + 1).saturating_sub(inner_lines) as usize;
        lines += all;
        inner_lines += record
            .iter()
            .map(|f| f.matches('\n').count() as u64)
            .sum::<u64>();
        let cells = record
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.trim().is_empty())
            .map(|(i, t)| (i, Cell::Text(t.to_string())))
            .collect();
        on_row(RawRow { number, cells })?;
    }
    Ok(read_as)
}

fn csv_error(e: csv::Error) -> FileError {
    let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
    match e.into_kind() {
        csv::ErrorKind::Io(io) => match io.into_inner().map(|b| b.downcast::<FileError>()) {
            Some(Ok(refusal)) => *refusal,
            Some(Err(other)) => FileError::Io(other.to_string()),
            None => FileError::Io("read failed".into()),
        },
        csv::ErrorKind::Utf8 { .. } => ParseError::InvalidEncoding {
            encoding: "UTF-8".into(),
            line,
            column: 0,
        }
        .into(),
        other => ParseError::Syntax {
            format: "CSV",
            line,
            column: 0,
            message: format!("{other:?}"),
        }
        .into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The charset was declared (or a BOM said UTF-8): invalid bytes are invalid.
    Declared,
    /// Nothing declared: UTF-8 if every byte is; else the sender must declare.
    Undeclared,
}

/// The file's bytes as UTF-8, decoded as they are read, checked as they go.
struct Decoding {
    inner: BufReader<File>,
    decoder: Decoder,
    encoding: &'static Encoding,
    mode: Mode,
    /// For a file declared GBK: still valid UTF-8 so far (a mislabelled file), and any byte
    /// beyond ASCII seen.
    probe: Option<Decoder>,
    non_ascii: bool,
    out: Vec<u8>,
    out_at: usize,
    scratch: Vec<u8>,
    /// Input lines consumed and bytes since the last newline, for error positions.
    lines: usize,
    column: usize,
    progress: Rc<Progress>,
    done: bool,
}

/// What the decoder and the row loop share: the decoded bytes of the current record (at most a
/// row's bound: see [`Decoding::read`]), from `base` on.
#[derive(Default)]
struct Progress {
    window: RefCell<Vec<u8>>,
    base: Shared<u64>,
}

impl Progress {
    /// The record read from `start` to `end` (decoded byte offsets): the line breaks before its
    /// first character, and all of them; the window moves on to `end`.
    fn take(&self, start: u64, end: u64) -> (u64, u64) {
        let mut window = self.window.borrow_mut();
        let base = self.base.get();
        let from = (start.saturating_sub(base) as usize).min(window.len());
        let to = (end.saturating_sub(base) as usize).min(window.len());
        let bytes = &window[from..to];
        let newline = |b: &&u8| **b == b'\n';
        let leading = bytes
            .iter()
            .take_while(|b| **b == b'\n' || **b == b'\r')
            .filter(newline)
            .count() as u64;
        let all = bytes.iter().filter(newline).count() as u64;
        window.drain(..to);
        self.base.set(base + to as u64);
        (leading, all)
    }
}

impl Decoding {
    fn new(
        inner: BufReader<File>,
        encoding: &'static Encoding,
        mode: Mode,
        progress: Rc<Progress>,
    ) -> Self {
        Self {
            inner,
            decoder: encoding.new_decoder_without_bom_handling(),
            encoding,
            mode,
            probe: (encoding != encoding_rs::UTF_8)
                .then(|| encoding_rs::UTF_8.new_decoder_without_bom_handling()),
            non_ascii: false,
            out: Vec::with_capacity(BUFFER * 2),
            out_at: 0,
            scratch: Vec::new(),
            lines: 0,
            column: 0,
            progress,
            done: false,
        }
    }

    fn advance_position(&mut self, consumed: &[u8]) {
        for &b in consumed {
            if b == b'\n' {
                self.lines += 1;
                self.column = 0;
            } else {
                self.column += 1;
            }
        }
    }

    fn refusal(e: FileError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    /// Decode the next buffer of input into `out`.
    fn fill(&mut self) -> io::Result<()> {
        let input = self.inner.fill_buf()?;
        let last = input.is_empty();
        let input = input.to_vec();
        self.out.clear();
        self.out_at = 0;
        let room = self
            .decoder
            .max_utf8_buffer_length_without_replacement(input.len())
            .unwrap_or(input.len() * 4 + 16);
        self.out.resize(room, 0);
        // A file declared GBK that is UTF-8 throughout (with text beyond ASCII) is mislabelled:
        // watched chunk by chunk, ahead of the GBK decoder, so its failure on UTF-8 bytes is
        // reported as the mislabelling it is; a file valid in both is refused at its end.
        if let Some(probe) = self.probe.as_mut() {
            self.non_ascii |= !input.is_ascii();
            let room = probe
                .max_utf8_buffer_length_without_replacement(input.len())
                .unwrap_or(input.len() * 4 + 16);
            self.scratch.resize(room, 0);
            let (r, _, _) =
                probe.decode_to_utf8_without_replacement(&input, &mut self.scratch, last);
            if matches!(r, DecoderResult::Malformed(..)) {
                self.probe = None;
            } else if last && self.non_ascii {
                return Err(Self::refusal(
                    ParseError::MislabeledUtf8("GBK".into()).into(),
                ));
            }
        }
        let (result, read, written) =
            self.decoder
                .decode_to_utf8_without_replacement(&input, &mut self.out, last);
        self.out.truncate(written);
        if let DecoderResult::Malformed(bad, after) = result {
            let at = read.saturating_sub(bad as usize + after as usize);
            self.advance_position(&input[..at]);
            let (line, column) = (self.lines + 1, self.column + 1);
            return Err(Self::refusal(match self.mode {
                Mode::Undeclared => FileError::CharsetRequired { line, column },
                // Not GBK, but UTF-8 so far: the label is wrong.
                Mode::Declared if self.probe.is_some() && self.non_ascii => {
                    ParseError::MislabeledUtf8("GBK".into()).into()
                }
                Mode::Declared => ParseError::InvalidEncoding {
                    encoding: if self.encoding == encoding_rs::UTF_8 {
                        "UTF-8".into()
                    } else {
                        "GBK".into()
                    },
                    line,
                    column,
                }
                .into(),
            }));
        }
        self.advance_position(&input[..read]);
        self.inner.consume(read);
        if last {
            self.done = true;
        }
        Ok(())
    }
}

impl Read for Decoding {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out_at >= self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.fill()?;
        }
        // One row may hold at most MAX_ROW_BYTES (plus what the CSV reader reads ahead): a file
        // of one endless quoted field is refused, not held.
        if self.progress.window.borrow().len() > MAX_ROW_BYTES + 2 * BUFFER {
            return Err(Self::refusal(FileError::Limit(format!(
                "a row near line {} is longer than {} bytes: is a quote left open?",
                self.lines + 1,
                MAX_ROW_BYTES
            ))));
        }
        let n = buf.len().min(self.out.len() - self.out_at);
        buf[..n].copy_from_slice(&self.out[self.out_at..self.out_at + n]);
        self.progress
            .window
            .borrow_mut()
            .extend_from_slice(&self.out[self.out_at..self.out_at + n]);
        self.out_at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(bytes: &[u8]) -> File {
        let path = std::env::temp_dir().join(format!("csv-rows-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, bytes).unwrap();
        let f = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    fn numbers(bytes: &[u8]) -> Vec<(usize, Vec<String>)> {
        let mut out = Vec::new();
        rows(file_of(bytes), None, &mut |r| {
            out.push((
                r.number,
                r.cells
                    .into_iter()
                    .map(|(_, c)| match c {
                        Cell::Text(t) => t,
                        other => format!("{other:?}"),
                    })
                    .collect(),
            ));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn row_numbers_are_the_spreadsheet_rows() {
        // An empty line is a row in Excel; a quoted field's line break is not.
        let rows = numbers(b"h1,h2\na,b\n\nc,\"two\nlines\"\nd,e\n");
        let n: Vec<usize> = rows.iter().map(|r| r.0).collect();
        assert_eq!(n, vec![1, 2, 4, 5]);
        assert_eq!(rows[2].1, vec!["c", "two\nlines"]);
        let rows = numbers(b"h1,h2\r\na,b\r\n\r\nc,\"two\r\nlines\"\r\nd,e");
        let n: Vec<usize> = rows.iter().map(|r| r.0).collect();
        assert_eq!(n, vec![1, 2, 4, 5], "CRLF, and no line break at the end");
    }

    #[test]
    fn an_open_quote_is_refused_not_held() {
        let mut body = b"h\n\"".to_vec();
        body.extend(std::iter::repeat_n(b'x', MAX_ROW_BYTES + 4 * BUFFER));
        let err = rows(file_of(&body), None, &mut |_| Ok(())).unwrap_err();
        assert!(matches!(err, FileError::Limit(_)), "{err}");
    }

    #[test]
    fn invalid_bytes_name_their_line() {
        let err = rows(file_of(b"a\nb\n\xFFc\n"), Some(Charset::Utf8), &mut |_| {
            Ok(())
        })
        .unwrap_err();
        assert!(
            matches!(
                err,
                FileError::Document(ParseError::InvalidEncoding {
                    line: 3,
                    column: 1,
                    ..
                })
            ),
            "{err}"
        );
    }
}
