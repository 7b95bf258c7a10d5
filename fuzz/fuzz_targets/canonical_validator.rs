//! The canonical record validator on any JSON value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let ctx = credit_gateway::record::ValidationContext::default();
    if let Ok(record) = credit_gateway::record::validate(&value, &ctx) {
        let again = credit_gateway::record::validate(&record.to_json(), &ctx).expect("canonical form validates");
        assert_eq!(again.content_hash(), record.content_hash());
    }
});
