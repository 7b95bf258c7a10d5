//! Property tests in the normal suite: parsers never panic on any input, normalized records always
//! validate again, and the outbox keeps its order model (corrections first, then enqueue order).

use std::collections::BTreeMap;
use std::path::PathBuf;

use credit_gateway::mapping::MappingSet;
use credit_gateway::outbox::{self, Entry, Kind};
use credit_gateway::record::{validate, ValidationContext};
use credit_gateway::store::WriteSet;
use proptest::prelude::*;

fn mappings() -> MappingSet {
    MappingSet::builtin().unwrap()
}

fn samples() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/samples");
    let table: toml::Table =
        toml::from_str(&std::fs::read_to_string(dir.join("expected.toml")).unwrap()).unwrap();
    table
        .iter()
        .map(|(m, v)| {
            (
                m.clone(),
                std::fs::read(dir.join(v["file"].as_str().unwrap())).unwrap(),
            )
        })
        .collect()
}

fn ctx() -> ValidationContext {
    ValidationContext {
        authenticated_agency: Some("medical_insurance".into()),
        incoming: true,
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn no_mapping_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for m in mappings().iter() {
            let _ = m.normalize(&bytes, &ctx());
        }
    }

    #[test]
    fn no_mapping_panics_on_mutated_samples(seed in any::<u64>(), edits in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..16)) {
        let set = mappings();
        let all = samples();
        let (mapping, original) = &all[(seed % all.len() as u64) as usize];
        let mut bytes = original.clone();
        for (pos, byte, op) in edits {
            let at = pos as usize % (bytes.len() + 1);
            match op {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => { bytes.remove(at); }
                _ => {}
            }
        }
        let _ = set.get(mapping).unwrap().normalize(&bytes, &ctx());
    }

    #[test]
    fn normalized_records_always_validate_again(pick in 0usize..11) {
        let set = mappings();
        let all = samples();
        let (mapping, bytes) = &all[pick % all.len()];
        let m = set.get(mapping).unwrap();
        let agency_ctx = ValidationContext { authenticated_agency: m.agency.clone(), incoming: true, ..Default::default() };
        for n in m.normalize(bytes, &agency_ctx).unwrap() {
            if let Ok(record) = n.outcome {
                let again = validate(&record.to_json(), &agency_ctx).expect("a normalized record validates");
                prop_assert_eq!(again.content_hash(), record.content_hash());
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Enqueue { correction: bool },
    Take(usize),
    AckFirst(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<bool>().prop_map(|c| Op::Enqueue { correction: c }),
        1 => (1usize..8).prop_map(Op::Take),
        1 => (1usize..8).prop_map(Op::AckFirst),
    ]
}

fn entry(n: usize, correction: bool) -> Entry {
    Entry {
        idempotency_key: format!("k{n}"),
        destination: "d".into(),
        channel: credit_gateway::disclosure::Channel::GovShare,
        kind: if correction {
            Kind::Correction
        } else {
            Kind::Share
        },
        agency: "a".into(),
        record_id: format!("r{n}"),
        version: 1,
        rule: "x".into(),
        enqueued_at: time::OffsetDateTime::UNIX_EPOCH,
        enqueued_unix: 0,
        correction_id: None,
        payload: Some(serde_json::value::to_raw_value(&serde_json::json!({})).unwrap()),
        source: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The outbox against a model: corrections (in enqueue order) before shares (in enqueue
    /// order); taking never removes; acknowledging removes exactly what was taken; nothing is lost
    /// across a reopen.
    #[test]
    fn outbox_follows_its_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = credit_gateway::store::Store::open(dir.path()).unwrap();
        let mut model: BTreeMap<(u8, usize), String> = BTreeMap::new();
        let mut n = 0;
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Enqueue { correction } => {
                    let (key, bytes) = outbox::enqueue_write(&store, &entry(n, *correction)).unwrap();
                    let mut w = WriteSet::default();
                    w.put(key, bytes);
                    store.apply(w).unwrap();
                    model.insert((if *correction { 0 } else { 1 }, n), format!("k{n}"));
                    n += 1;
                }
                Op::Take(k) => {
                    let got: Vec<String> = outbox::pending(&store, "d", *k).unwrap().into_iter().map(|(_, e)| e.idempotency_key).collect();
                    let want: Vec<String> = model.values().take(*k).cloned().collect();
                    prop_assert_eq!(got, want);
                    // With every other entry of the head in flight: the first k of the rest.
                    let head = outbox::pending(&store, "d", 2 * *k).unwrap();
                    let skip: std::collections::HashSet<String> = head.iter().step_by(2).map(|(key, _)| key.clone()).collect();
                    let skipped: std::collections::HashSet<String> = head.iter().step_by(2).map(|(_, e)| e.idempotency_key.clone()).collect();
                    let got: Vec<String> = outbox::pending_except(&store, "d", *k, &skip).unwrap().into_iter().map(|(_, e)| e.idempotency_key).collect();
                    let want: Vec<String> = model.values().filter(|id| !skipped.contains(*id)).take(*k).cloned().collect();
                    prop_assert_eq!(got, want);
                }
                Op::AckFirst(k) => {
                    let mut w = WriteSet::default();
                    for (key, _) in outbox::pending(&store, "d", *k).unwrap() {
                        w.remove(key);
                    }
                    store.apply(w).unwrap();
                    let first: Vec<(u8, usize)> = model.keys().take(*k).cloned().collect();
                    for f in first { model.remove(&f); }
                }
            }
            if i % 20 == 19 {
                store.flush().unwrap();
                drop(store);
                store = loop {
                    match credit_gateway::store::Store::open(dir.path()) {
                        Ok(s) => break s,
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                    }
                };
            }
        }
        let all: Vec<String> = outbox::pending(&store, "d", usize::MAX).unwrap().into_iter().map(|(_, e)| e.idempotency_key).collect();
        prop_assert_eq!(all, model.values().cloned().collect::<Vec<_>>());
    }
}

/// A signed receipt, a sealed value, a delivery header and a key file, as the gateway makes them:
/// the seeds the crypto property mutates.
fn crypto_seeds(keys: &credit_gateway::crypto::keyring::Keyring) -> Vec<Vec<u8>> {
    use credit_gateway::crypto::{keyring::KeyFile, sealed, signed, Suite};
    let mut receipt = serde_json::json!({"receipt_id": "r-1", "accepted": 2, "records": [{"record_id": "A", "version": 1}]});
    signed::sign_document(keys.current().signer(), &mut receipt).unwrap();
    let sealed = sealed::seal(
        keys.current().sealer(),
        &serde_json::json!("440106198506121232"),
    )
    .unwrap();
    let header = signed::header_value(keys.current().signer(), b"{}").unwrap();
    let file = KeyFile::new(Suite::National, time::OffsetDateTime::UNIX_EPOCH);
    vec![
        serde_json::to_vec(&receipt).unwrap(),
        serde_json::to_vec(
            &serde_json::json!({"subject": {"id_type": "resident_id", "id": sealed}}),
        )
        .unwrap(),
        header.into_bytes(),
        serde_json::to_vec(&file).unwrap(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// What the cryptography reads from outside never panics, and an altered signed receipt
    /// never verifies (the fuzz target `crypto_inputs` runs the same readers without end).
    #[test]
    fn crypto_readers_never_panic_and_altered_receipts_never_verify(
        pick in 0usize..4,
        edits in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        use credit_gateway::crypto::keyring::{KeyFile, Keyring};
        use credit_gateway::crypto::{sealed, signed, Suite};
        use credit_gateway::store::AtRest;
        let keys = Keyring::ephemeral(Suite::National);
        let seeds = crypto_seeds(&keys);
        let original = seeds[pick].clone();
        let mut bytes = original.clone();
        for (pos, byte, op) in edits {
            let at = pos as usize % (bytes.len() + 1);
            match op {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => { bytes.remove(at); }
                _ => {}
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(signature) = signed::parse_header(&text) {
            let _ = signed::verify_bytes(&keys.public_keys(), &signature, &bytes);
        }
        let current = keys.current();
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            let verified = signed::verify_document(&keys.public_keys(), &value);
            if pick == 0 {
                let same = serde_json::from_slice::<serde_json::Value>(&original).ok() == Some(value.clone());
                prop_assert!(verified.is_ok() == same, "a receipt verifies exactly when unchanged: {text}");
            }
            let _ = sealed::open(&value, |id| current.sealer_for(id));
        }
        let protection = credit_gateway::privacy::Protection::new(keys.clone());
        let _ = protection.reveal(b"arc/x", bytes.clone());
        let _ = protection.protect(b"arc/x", bytes.clone());
        if let Ok(file) = serde_json::from_slice::<KeyFile>(&bytes) {
            let _ = Keyring::from_file(&file, Suite::National, "property");
        }
    }
}
