//! End to end: personal numbers where no field rule names them (issue #31). A resident ID
//! number inside a record id is refused (a record id lives in the store's keys, the log and every
//! platform's copy, where nothing can be sealed or masked); inside a document number it is sealed
//! at rest and masked on the public channel; a person's contact phone is sealed at rest.

mod common;

use std::time::Duration;

use common::receiver::Receiver;
use common::{days_ago, multi_thread_runtime, resident_id, wait_until, Gateway};
use serde_json::{json, Value};

const MI: &str = "medical_insurance";

fn penalty(record_id: &str, doc_number: &str) -> Value {
    json!({
        "category": "administrative",
        "subject": {"kind": "institution", "role": "designated_retail_pharmacy",
                    "id_type": "uscc", "id": "91310110666007217T", "name": "广州市某某大药房有限公司"},
        "source": {"record_id": record_id, "region": "440106"},
        "basis": {"doc_type": "penalty_decision", "doc_number": doc_number, "decided_on": days_ago(10)},
        "disclosure": {"class": "public"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"], "fine_yuan": "20000"}
    })
}

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_resident_id_in_a_record_id_is_refused_and_in_a_document_number_is_never_stored_or_noticed_in_clear(
) {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare_sled();
    let platform: Receiver = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &platform);
    gw.spawn();
    let person = resident_id("44010619850315123");
    let client = gw.client(MI);

    let reply = client.post(
        "/v1/records?mapping=canonical",
        "application/json",
        serde_json::to_vec(&vec![penalty(&format!("R{person}-1"), "医保罚〔2026〕1号")]).unwrap(),
    );
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let receipt = reply.json();
    assert_eq!(receipt["accepted"], 0, "{receipt}");
    assert_eq!(receipt["rejected"][0]["field"], "source.record_id", "{receipt}");
    let text = receipt.to_string();
    assert!(text.contains("source.record_id") && text.contains("resident ID"), "{text}");
    assert!(!text.contains(&person), "the refusal does not echo the number: {text}");

    // The legal representative's number inside the document number: accepted, noticed masked.
    gw.push_canonical(MI, &vec![penalty("DOC-1", &format!("医保罚〔2026〕{person}号"))]);
    let public = |platform: &Receiver| {
        platform
            .received()
            .into_iter()
            .find(|s| s.channel == "public_notice" && s.record.pointer("/source/record_id") == Some(&json!("DOC-1")))
    };
    assert!(wait_until(Duration::from_secs(20), || public(&platform).is_some()));
    let noticed = public(&platform).unwrap().record;
    let doc = noticed["basis"]["doc_number"].as_str().unwrap();
    assert!(!doc.contains(&person) && doc.contains("440106"), "masked: {doc}");

    // A person's contact phone.
    let mut physician = penalty("PHONE-1", "医保罚〔2026〕2号");
    physician["subject"] = json!({"kind": "individual", "role": "physician", "id_type": "resident_id",
                                  "id": resident_id("44010619900101456"), "name": "王五"});
    physician["content"]["contact_phone"] = json!("13912345678");
    gw.push_canonical(MI, &vec![physician]);

    gw.stop();
    let data = gw.config.storage.data_dir.clone();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data directory is its owner's only");
    assert_eq!(files_holding(&data, &person), Vec::<std::path::PathBuf>::new(), "the ID number in clear");
    assert_eq!(files_holding(&data, "13912345678"), Vec::<std::path::PathBuf>::new(), "the phone in clear");
    assert!(!files_holding(&data, "DOC-1").is_empty(), "the search itself finds clear text");
}
