//! Micro-benchmarks of the hot paths: mapping + validation (canonical JSON, GBK XML), outbox
//! append and pop, audit append. `cargo bench --bench hot_paths` prints records/s per core.

use std::path::PathBuf;

use credit_gateway::mapping::MappingSet;
use credit_gateway::record::ValidationContext;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

// The allocator the gateway binary runs with (src/main.rs), so the figures are the gateway's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn canonical_batch(n: usize) -> Vec<u8> {
    let sample: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(samples().join("canonical.json")).unwrap()).unwrap();
    let valid: Vec<serde_json::Value> = sample
        .into_iter()
        .filter(|r| {
            !r["source"]["record_id"]
                .as_str()
                .unwrap_or("")
                .starts_with("CAN-")
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut r = valid[i % valid.len()].clone();
        r["source"]["record_id"] = serde_json::json!(format!("B-{i}"));
        r["source"].as_object_mut().unwrap().remove("agency");
        out.push(r);
    }
    serde_json::to_vec(&out).unwrap()
}

/// The GBK tax sample repeated to `n` records (valid ones only).
fn tax_batch(n: usize) -> Vec<u8> {
    let text = encoding_rs::GBK
        .decode(&std::fs::read(samples().join("tax-major-violations.xml")).unwrap())
        .0
        .into_owned();
    let first = text.find("<ZT>").unwrap();
    let second_end = text[first..].match_indices("</ZT>").nth(1).unwrap().0 + first + "</ZT>".len();
    let two = &text[first..second_end];
    let mut body = String::from("<?xml version=\"1.0\" encoding=\"GBK\"?>\n<ZDSSWFSXZTQD>\n");
    for i in 0..n / 2 {
        body.push_str(&two.replace("<AJBH>", &format!("<AJBH>{i}-")));
    }
    body.push_str("</ZDSSWFSXZTQD>\n");
    encoding_rs::GBK.encode(&body).0.into_owned()
}

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/samples")
}

fn mapping_and_validation(c: &mut Criterion) {
    let set = MappingSet::builtin().unwrap();
    let mut group = c.benchmark_group("mapping+validation");
    let n = 1000;
    group.throughput(Throughput::Elements(n as u64));
    let body = canonical_batch(n);
    let ctx = ValidationContext {
        authenticated_agency: Some("medical_insurance".into()),
        incoming: true,
        ..Default::default()
    };
    let canonical = set.get("canonical").unwrap();
    group.bench_function("canonical JSON", |b| {
        b.iter(|| {
            let out = canonical.normalize(&body, &ctx).unwrap();
            assert!(out.iter().all(|r| r.outcome.is_ok()));
        })
    });
    let tax = set.get("tax-major-violations").unwrap();
    let body = tax_batch(n);
    let ctx = ValidationContext {
        authenticated_agency: Some("tax".into()),
        incoming: true,
        ..Default::default()
    };
    group.bench_function("GBK XML (tax)", |b| {
        b.iter(|| {
            let out = tax.normalize(&body, &ctx).unwrap();
            assert_eq!(out.len(), n);
        })
    });
    group.finish();
}

fn entry(i: u64) -> credit_gateway::outbox::Entry {
    credit_gateway::outbox::Entry {
        idempotency_key: format!("{i:032x}"),
        destination: "provincial".into(),
        channel: credit_gateway::disclosure::Channel::GovShare,
        kind: credit_gateway::outbox::Kind::Share,
        agency: "medical_insurance".into(),
        record_id: format!("R-{i}"),
        version: 1,
        rule: "mi-gov-share".into(),
        enqueued_at: time::macros::datetime!(2025-01-01 00:00 +8),
        enqueued_unix: 0,
        correction_id: None,
        payload: Some(serde_json::value::to_raw_value(&serde_json::json!({"category": "commitment", "content": {"commitment_text": "本单位承诺严格遵守医疗保障服务协议，规范诊疗和收费行为。"}})).unwrap()),
        source: None,
    }
}

fn outbox_and_audit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = credit_gateway::store::Store::open(dir.path()).unwrap();
    let mut group = c.benchmark_group("storage");
    let n = 1000u64;
    group.throughput(Throughput::Elements(n));
    group.bench_function("outbox append (batch of 1000, one flush)", |b| {
        let mut i = 0;
        b.iter(|| {
            let mut batch = credit_gateway::store::WriteSet::default();
            for _ in 0..n {
                let (k, v) = credit_gateway::outbox::enqueue_write(&store, &entry(i)).unwrap();
                batch.put(k, v);
                i += 1;
            }
            store.apply(batch).unwrap();
            store.flush().unwrap();
        })
    });
    group.bench_function("outbox pop (take 1000, remove)", |b| {
        b.iter_batched(
            || {
                let mut batch = credit_gateway::store::WriteSet::default();
                for i in 0..n {
                    let (k, v) = credit_gateway::outbox::enqueue_write(&store, &entry(i)).unwrap();
                    batch.put(k, v);
                }
                store.apply(batch).unwrap();
            },
            |_| {
                let taken =
                    credit_gateway::outbox::pending(&store, "provincial", n as usize).unwrap();
                let mut batch = credit_gateway::store::WriteSet::default();
                for (k, _) in taken {
                    batch.remove(k);
                }
                store.apply(batch).unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("audit append (1000 entries, one flush)", |b| {
        let mut head = credit_gateway::audit::Head::load(&store).unwrap();
        b.iter(|| {
            let mut batch = credit_gateway::store::WriteSet::default();
            for i in 0..n {
                let mut data = serde_json::Map::new();
                data.insert("receipt_id".into(), serde_json::json!(i));
                let (k, v, next) = head.append(
                    "2025-01-01T00:00:00+08:00",
                    credit_gateway::audit::AuditEvent::BatchReceived,
                    data,
                );
                batch.put(k, v);
                head = next;
            }
            store.apply(batch).unwrap();
            store.flush().unwrap();
        })
    });
    group.finish();
}

/// Each suite's cost per operation the gateway makes, side by side: the chain hash of an audit
/// entry, the keyed hash of a lookup, sealing and opening a canonical record's personal fields,
/// and signing and verifying a receipt.
fn crypto_suites(c: &mut Criterion) {
    use credit_gateway::crypto::{Keyring, Suite};
    use credit_gateway::store::AtRest;
    let record = serde_json::json!({"version": 1, "record": {
        "subject": {"id_type": "resident_id", "id": "440106198506121232", "name": "张三", "kind": "individual"},
        "disclosure": {"class": "gov_share", "restricted_fields": {"content.bank_account": "commercial_secret"}},
        "content": {"bank_account": "44050146010900000123", "item": "payment", "amount_yuan": "1200"}}});
    let bytes = serde_json::to_vec(&record).unwrap();
    let receipt = vec![b'r'; 600];
    for suite in Suite::ALL {
        let keys = Keyring::ephemeral(suite);
        let protection = credit_gateway::privacy::Protection::new(keys.clone());
        let mut g = c.benchmark_group(format!("crypto/{suite}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("chain hash (600 B)", |b| {
            b.iter(|| suite.digest(&[&[0u8; 32], &receipt]))
        });
        g.bench_function("lookup keyed hash", |b| {
            b.iter(|| keys.lookup_token(b"resident_id:440106198506121232"))
        });
        g.bench_function("seal a record's personal fields", |b| {
            b.iter(|| protection.protect(b"arc/x", bytes.clone()).unwrap())
        });
        let sealed = protection.protect(b"arc/x", bytes.clone()).unwrap();
        g.bench_function("open a sealed record", |b| {
            b.iter(|| protection.reveal(b"arc/x", sealed.clone()).unwrap())
        });
        g.bench_function("sign a receipt", |b| {
            b.iter(|| keys.current().signer().sign(&receipt).unwrap())
        });
        let signature = keys.current().signer().sign(&receipt).unwrap();
        let public = keys.current().signer().public_key();
        g.bench_function("verify a receipt", |b| {
            b.iter(|| credit_gateway::crypto::verify(suite, &public, &receipt, &signature))
        });
        g.finish();
    }
}

criterion_group!(
    benches,
    mapping_and_validation,
    outbox_and_audit,
    crypto_suites
);
criterion_main!(benches);
