//! Every shipped mapping on arbitrary input: the first byte picks the mapping. Nothing may panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

static SET: std::sync::OnceLock<Option<credit_gateway::mapping::MappingSet>> = std::sync::OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some(set) = SET.get_or_init(|| credit_gateway::mapping::MappingSet::builtin().ok()) else { return };
    let mappings: Vec<_> = set.iter().collect();
    if data.is_empty() || mappings.is_empty() {
        return;
    }
    let m = mappings[data[0] as usize % mappings.len()];
    let ctx = credit_gateway::record::ValidationContext { authenticated_agency: m.agency.clone(), incoming: true, ..Default::default() };
    if let Ok(records) = m.normalize(&data[1..], &ctx) {
        for r in records {
            if let Ok(record) = r.outcome {
                // A normalized record always validates again.
                assert!(credit_gateway::record::validate(&record.to_json(), &ctx).is_ok());
            }
        }
    }
});
