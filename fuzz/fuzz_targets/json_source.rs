//! The JSON reader (UTF-8 check, positions, recursion bound).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = credit_gateway::mapping::source::parse_json(data);
});
