//! What the cryptography reads from outside: an `X-Credit-Signature` header, a signed document (a
//! receipt or checkpoint an agency hands back to `receipt verify`), a sealed value read from the
//! store, and a key file (as JSON: the same fields as its TOML). None may panic.
#![no_main]
use credit_gateway::crypto::keyring::{KeyFile, Keyring};
use credit_gateway::crypto::{sealed, signed, Suite};
use credit_gateway::store::AtRest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = Keyring::ephemeral(Suite::National);
    let text = String::from_utf8_lossy(data);
    if let Ok(signature) = signed::parse_header(&text) {
        let _ = signed::verify_bytes(&keys.public_keys(), &signature, data);
    }
    let current = keys.current();
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = signed::verify_document(&keys.public_keys(), &value);
        let _ = sealed::open(&value, |id| current.sealer_for(id));
    }
    let protection = credit_gateway::privacy::Protection::new(keys.clone());
    let _ = protection.reveal(b"arc/x", data.to_vec());
    let _ = protection.protect(b"arc/x", data.to_vec());
    if let Ok(file) = serde_json::from_slice::<KeyFile>(data) {
        let _ = Keyring::from_file(&file, Suite::National, "fuzz");
    }
});
