//! Issue "audit chain and fault tests": SIGKILL under load loses nothing acknowledged, the audit
//! chain verifies afterwards, and tampering with one entry is found and named.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Gateway;
use serde_json::{json, Value};

const MI: &str = "medical_insurance";

fn record(id: &str) -> Value {
    json!({
        "category": "commitment",
        "subject": {"kind": "institution", "role": "designated_retail_pharmacy", "id_type": "uscc", "id": "91350100M000100Y43", "name": "福州某某药店"},
        "source": {"record_id": id, "region": "350100"},
        "disclosure": {"class": "gov_share"},
        "content": {"commitment_type": "医保基金使用信用承诺", "committed_on": "2025-01-02", "fulfilment": "pending"}
    })
}

#[test]
fn sigkill_under_load_loses_nothing_that_was_acknowledged() {
    let mut gw = Gateway::start();
    // receipts: record id -> outcome the gateway acknowledged
    let acknowledged: Arc<Mutex<HashMap<String, String>>> = Arc::new(Mutex::new(HashMap::new()));
    let seed = std::process::id() as u64;
    for round in 0..4u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let pushers: Vec<_> = (0..3)
            .map(|t| {
                let client = gw.client(MI);
                let stop = stop.clone();
                let acknowledged = acknowledged.clone();
                std::thread::spawn(move || {
                    let mut sent = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        let n = sent / 2;
                        sent += 1;
                        let ids: Vec<String> =
                            (0..20).map(|i| format!("K{round}-{t}-{n}-{i}")).collect();
                        let batch: Vec<Value> = ids.iter().map(|id| record(id)).collect();
                        // Every batch is sent twice: an acknowledged record must never be
                        // acknowledged as new twice.
                        match client.request(
                            "POST",
                            "/v1/records?mapping=canonical",
                            Some("application/json"),
                            serde_json::to_vec(&batch).unwrap(),
                        ) {
                            Ok(reply) if reply.status == 200 => {
                                let receipt = reply.json();
                                let mut acked = acknowledged.lock().unwrap();
                                for r in receipt["records"].as_array().unwrap() {
                                    let id = r["record_id"].as_str().unwrap().to_string();
                                    let outcome = r["outcome"].as_str().unwrap().to_string();
                                    if outcome == "new" {
                                        assert!(
                                            !acked.contains_key(&id),
                                            "{id} acknowledged as new twice"
                                        );
                                    }
                                    acked.entry(id).or_insert(outcome);
                                }
                            }
                            _ => {} // in flight when killed: not acknowledged, may or may not be stored
                        }
                    }
                })
            })
            .collect();
        // A pseudo-random moment between 150 and 550 ms.
        let wait = 150
            + (seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(round * 1442695040888963407)
                >> 33)
                % 400;
        std::thread::sleep(Duration::from_millis(wait));
        gw.kill();
        stop.store(true, Ordering::SeqCst);
        for p in pushers {
            p.join().unwrap();
        }
        gw.spawn();
    }
    let acked = acknowledged.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "the load was real: {} records acknowledged",
        acked.len()
    );
    let archive = gw
        .client(MI)
        .get("/v1/subjects/uscc/91350100M000100Y43")
        .json();
    let stored: std::collections::HashSet<String> = archive["categories"]["commitment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record_id"].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<&String> = acked.keys().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    for r in archive["categories"]["commitment"].as_array().unwrap() {
        assert_eq!(
            r["versions"].as_array().unwrap().len(),
            1,
            "one version per record: {}",
            r["record_id"]
        );
    }
    gw.stop();
    let (code, out, err) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn sigkill_while_shares_wait_keeps_them_in_the_outbox() {
    // No receiver at all: every acknowledged share must still be queued after a crash.
    let mut gw = Gateway::prepare();
    gw.config.destinations = credit_gateway::config::default_destinations();
    for d in &mut gw.config.destinations {
        d.url = "https://localhost:1/v1/shares".into(); // nothing listens there
    }
    gw.spawn();
    let mut ids = Vec::new();
    for b in 0..5 {
        let batch: Vec<Value> = (0..40)
            .map(|i| {
                let mut r = record(&format!("Q{b}-{i}"));
                r["source"]["region"] = json!("440106");
                ids.push(format!("Q{b}-{i}"));
                r
            })
            .collect();
        let reply = gw.client(MI).post(
            "/v1/records?mapping=canonical",
            "application/json",
            serde_json::to_vec(&batch).unwrap(),
        );
        assert_eq!(reply.status, 200);
    }
    gw.kill();
    let (code, out, err) = gw.cli(&[
        "outbox",
        "list",
        "--destination",
        "provincial",
        "--limit",
        "1000",
    ]);
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let queued: std::collections::HashSet<&str> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["record_id"].as_str().unwrap())
        .collect();
    for id in &ids {
        assert!(
            queued.contains(id.as_str()),
            "{id} acknowledged but not in the outbox"
        );
    }
}

#[test]
fn tampering_with_one_audit_entry_is_found_and_named() {
    let mut gw = Gateway::start();
    for i in 0..5 {
        let reply = gw.client(MI).post(
            "/v1/records?mapping=canonical",
            "application/json",
            serde_json::to_vec(&json!([record(&format!("T-{i}"))])).unwrap(),
        );
        assert_eq!(reply.status, 200);
    }
    gw.stop();
    let (code, out, _) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    let (code, checkpoint, _) = gw.cli(&["audit", "checkpoint"]);
    assert_eq!(code, 0);
    assert!(
        checkpoint.contains("\"seq\":6"),
        "five batches and the verify command: {checkpoint}"
    );
    let (_, shown, _) = gw.cli(&["audit", "show", "--from", "6"]);
    assert!(
        shown.contains("operator_command") && shown.contains("audit verify"),
        "operator commands are audited: {shown}"
    );
    {
        let store = common::open_store(&gw.config);
        let key = credit_gateway::audit::entry_key(3);
        let mut entry: Value =
            serde_json::from_slice(&store.get_raw(key.as_bytes()).unwrap().unwrap()).unwrap();
        entry["data"]["accepted"] = json!(0); // someone hides an accepted record
        let mut w = credit_gateway::store::WriteSet::default();
        w.put(key.clone(), serde_json::to_vec(&entry).unwrap());
        store.apply(w).unwrap();
        store.flush().unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let (code, out, _) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("entry 3"),
        "names the first broken entry: {out}"
    );
}
