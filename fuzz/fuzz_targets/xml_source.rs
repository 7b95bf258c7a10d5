//! The XML reader (encodings, DOCTYPE refusal, depth bound, entities).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(root) = credit_gateway::mapping::source::parse_xml(data) {
        let _ = root.select(&root.name.clone());
    }
});
