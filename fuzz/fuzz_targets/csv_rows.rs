//! CSV files (`files::csv_rows` under `files::read`): undeclared, UTF-8 and GBK, with the
//! header search, blank rows and the row bound. The first byte picks the declared charset.
#![no_main]
use credit_gateway::files::{Charset, FileKind};
use libfuzzer_sys::fuzz_target;

#[path = "file_support.rs"]
mod file_support;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let charset = match selector % 3 {
        0 => None,
        1 => Some(Charset::Utf8),
        _ => Some(Charset::Gbk),
    };
    file_support::read_as(rest, FileKind::Csv(charset));
});
