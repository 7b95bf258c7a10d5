//! `.xlsx` files (`files::xlsx_rows` under `files::read`): the ZIP bomb check, calamine's cell
//! reader, merged regions, date cells and serial dates. Seed with real workbooks (the tests'
//! template, `seed.sh`): random bytes rarely make a ZIP.
#![no_main]
use credit_gateway::files::FileKind;
use libfuzzer_sys::fuzz_target;

#[path = "file_support.rs"]
mod file_support;

fuzz_target!(|data: &[u8]| {
    file_support::read_as(data, FileKind::Xlsx);
});
