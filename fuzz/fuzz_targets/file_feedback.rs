//! A file destination's feedback file (JSON and CSV): never panics, bounded, whatever a
//! platform writes into its feedback folder.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = credit_gateway::delivery::file::feedback::parse_json(data, "a.csv");
    let _ = credit_gateway::delivery::file::feedback::parse_csv(data);
});
