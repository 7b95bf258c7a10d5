//! The check file of an exchange folder (`files::check`): any bytes parse or are refused, never
//! panic; what parses is self-consistent.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(check) = credit_gateway::files::check::CheckFile::parse(data) {
        assert_eq!(check.digest.len(), 64);
        assert!(check.digest_matches(&check.digest.to_uppercase()));
    }
});
