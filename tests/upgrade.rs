//! Upgrades are real: a data directory written by the release before the publication ledger
//! (`tests/fixtures/data-before-ledger.tar.gz`, see its README) opens in this one, its queued
//! shares are delivered, and what the old release noted about where records went seeds the ledger,
//! so a correction still reaches every platform that holds the record.

mod common;

use std::time::Duration;

use common::{multi_thread_runtime, wait_until, Gateway};
use serde_json::{json, Value};

const MI: &str = "medical_insurance";

/// A gateway started on a data directory written by an earlier release, with the platforms
/// `provincial` (440000) and `guangzhou` (440100) that release shared with.
fn upgraded(
    rt: &tokio::runtime::Runtime,
    fixture: &str,
) -> (
    Gateway,
    common::receiver::Receiver,
    common::receiver::Receiver,
) {
    let mut gw = Gateway::prepare_sled();
    let provincial = gw.receiver(rt);
    let guangzhou = gw.receiver(rt);
    gw.add_destination("provincial", "440000", &provincial);
    gw.add_destination("guangzhou", "440100", &guangzhou);
    unpack(&gw, fixture);
    gw.spawn();
    (gw, provincial, guangzhou)
}

/// Unpack a data directory written by an earlier release into the gateway's folder.
fn unpack(gw: &Gateway, fixture: &str) {
    let status = std::process::Command::new("tar")
        .arg("xzf")
        .arg(common::repo().join("tests/fixtures").join(fixture))
        .arg("-C")
        .arg(gw.dir.path())
        .status()
        .expect("tar runs");
    assert!(status.success());
}

#[test]
fn a_data_directory_from_before_the_ledger_opens_and_keeps_its_guarantees() {
    let rt = multi_thread_runtime();
    let (mut gw, provincial, guangzhou) = upgraded(&rt, "data-before-ledger.tar.gz");
    // The six shares the old release queued are delivered.
    for r in [&provincial, &guangzhou] {
        assert!(
            wait_until(Duration::from_secs(20), || r.received().len() == 3),
            "{}",
            r.received().len()
        );
    }
    let archive = gw.client(MI).get("/v1/subjects/uscc/91310110666007217T");
    assert_eq!(archive.status, 200);
    assert!(String::from_utf8_lossy(&archive.body).contains("UPG-1"));
    // The ledger of a record untouched since the upgrade is what the old release noted.
    let view = gw
        .client(MI)
        .get(&format!("/v1/ledger/records/{MI}/UPG-2"))
        .json();
    let holdings = view["holdings"].as_array().unwrap();
    assert_eq!(holdings.len(), 2, "{view}");
    assert!(holdings
        .iter()
        .all(|h| h["state"] == "held" && h["events"][0]["legacy"] == true));
    // A correction reaches every platform and channel the old release shared the record with.
    let reply = gw.client(MI).post(
        "/v1/corrections",
        "application/json",
        serde_json::to_vec(
            &json!({"record_id": "UPG-1", "kind": "correct", "content": {"fine_yuan": "10000"}}),
        )
        .unwrap(),
    );
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    for r in [&provincial, &guangzhou] {
        assert!(wait_until(Duration::from_secs(20), || r.received().len() == 5));
        let mut channels: Vec<String> = r
            .received()
            .into_iter()
            .filter(|s| s.record["correction"].is_object())
            .map(|s| s.channel)
            .collect();
        channels.sort();
        assert_eq!(channels, vec!["gov_share", "public_notice"]);
    }
    let corrected: Value = provincial
        .received()
        .into_iter()
        .find(|s| s.kind == "correction" && s.channel == "gov_share")
        .unwrap()
        .record;
    assert_eq!(corrected["content"]["fine_yuan"], "10000");
    // The first new version of a record shared by the old release reaches every platform.
    let v2 = json!([{
        "category": "agreement_performance",
        "subject": {"kind": "institution", "role": "designated_medical_institution", "id_type": "uscc", "id": "91350100M000100Y43", "name": "某某医院"},
        "source": {"record_id": "UPG-2", "region": "440106"},
        "disclosure": {"class": "gov_share"},
        "content": {"item": "agreement", "status": "performed", "agreement_number": "YB-2026-001"}
    }]);
    let reply = gw.client(MI).post(
        "/v1/records?mapping=canonical",
        "application/json",
        serde_json::to_vec(&v2).unwrap(),
    );
    assert_eq!(reply.status, 200);
    for r in [&provincial, &guangzhou] {
        assert!(
            wait_until(Duration::from_secs(20), || r
                .received()
                .iter()
                .any(|s| s.record["source"]["record_id"] == "UPG-2"
                    && s.record["content"]["status"] == "performed")),
            "version 2 of a record shared before the upgrade reaches the platform"
        );
    }
    gw.stop();
    let (code, out, err) = gw.cli(&["audit", "verify"]);
    assert_eq!(
        code, 0,
        "the old chain and the new entries verify as one: {out}{err}"
    );
}

#[test]
fn a_data_directory_from_a_newer_release_is_refused_with_a_clear_message() {
    let gw = Gateway::prepare_sled();
    {
        let store = credit_gateway::store::Store::open(&gw.config.storage.data_dir).unwrap();
        assert_eq!(
            &*store.get_raw(b"meta/format").unwrap().unwrap(),
            credit_gateway::store::format::CURRENT
                .to_string()
                .as_bytes(),
            "a new directory records its format"
        );
        let mut w = credit_gateway::store::WriteSet::default();
        w.put("meta/format", "99");
        store.apply(w).unwrap();
        store.flush().unwrap();
    }
    gw.write_config();
    let (code, _, err) = common::run_cli(
        gw.dir.path(),
        &["--config", gw.config_path().to_str().unwrap(), "serve"],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("format 99") && err.contains("newer release"),
        "{err}"
    );
    // Nothing was changed: the directory still says 99.
    let store = credit_gateway::store::Store::open(&gw.config.storage.data_dir);
    assert!(store.is_err());
}

/// The release before format 3 (`tests/fixtures/data-format-2.tar.gz`, see its README): its
/// queued shares carry their payload and are delivered as they are; its per-subject change keys
/// become the change log; a new record is shared by reference and arrives whole.
#[test]
fn a_format_2_data_directory_is_migrated_and_its_queued_shares_still_arrive() {
    let rt = multi_thread_runtime();
    let (mut gw, provincial, guangzhou) = upgraded(&rt, "data-format-2.tar.gz");
    for (r, queued) in [(&provincial, 11), (&guangzhou, 7)] {
        assert!(
            wait_until(Duration::from_secs(20), || r.received().len() == queued),
            "{} of {queued}",
            r.received().len()
        );
        assert!(r
            .received()
            .iter()
            .all(|s| s.record["subject"]["id"].is_string() && s.record["category"].is_string()));
    }
    let record = json!([{
        "category": "agreement_performance",
        "subject": {"kind": "institution", "role": "designated_medical_institution", "id_type": "uscc", "id": "91350100M000100Y43", "name": "某某医院"},
        "source": {"record_id": "FMT3-1", "region": "440106"},
        "disclosure": {"class": "gov_share"},
        "content": {"item": "agreement", "status": "performed", "agreement_number": "YB-2026-003"}
    }]);
    let reply = gw.client(MI).post(
        "/v1/records?mapping=canonical",
        "application/json",
        serde_json::to_vec(&record).unwrap(),
    );
    assert_eq!(reply.status, 200);
    assert!(
        wait_until(Duration::from_secs(20), || provincial
            .received()
            .iter()
            .any(|s| s.record["source"]["record_id"] == "FMT3-1"
                && s.record["content"]["agreement_number"] == "YB-2026-003"
                && s.record["subject"]["name"] == "某某医院")),
        "a share queued by reference arrives whole"
    );
    gw.stop();
    let store = credit_gateway::store::Store::open(&gw.config.storage.data_dir).unwrap();
    assert_eq!(
        &*store.get_raw(b"meta/format").unwrap().unwrap(),
        credit_gateway::store::format::CURRENT
            .to_string()
            .as_bytes()
    );
    for key in store.keys_under(b"chg/") {
        let key = String::from_utf8(key.unwrap()).unwrap();
        assert!(
            credit_gateway::archive::is_change_log_key(&key),
            "no per-subject change key is left: {key}"
        );
    }
    drop(store);
    let (code, out, err) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// The results (`evaluation/show`) a subject holds.
fn results(gw: &Gateway, id: &str) -> Vec<Value> {
    let (status, body) = gw.admin_get(&format!("/evaluation/show?id_type=resident_id&id={id}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("grade").is_some())
        .cloned()
        .collect()
}

/// Format 3 -> 5 (issue "Commercial cryptography"): a directory from the release before sealing,
/// with two persons evaluated (one penalized, one a legal representative linked to an
/// institution's serious listing, GD Art. 29), is sealed in place: no resident ID number is left
/// in any stored value, both are still found by their number, and when they are evaluated again
/// their results and linked record keep the ids the platforms know (no second result, no linked
/// record ended and made anew).
#[test]
fn a_format_3_directory_is_sealed_in_place_and_persons_keep_their_evaluation_records() {
    const PENALIZED: &str = "440106198001011230";
    const LEGAL_REP: &str = "440106197503154560";
    // The ids the release before sealing gave them (tests/fixtures/README.md).
    const PENALIZED_RESULT: &str = "EVAL-2026-6e8d8c8fc638c5ae";
    const LEGAL_REP_RESULT: &str = "EVAL-2026-baf6366f83f775b9";
    const LINK: &str = "LINK-b4b8f4bf2f1ee63a";
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare_sled();
    let provincial = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &provincial);
    gw.config.corrections.dangerous_manual_clock = true;
    gw.config.evaluation.check_interval_ms = 100;
    unpack(&gw, "data-format-3.tar.gz");
    gw.spawn();
    gw.set_clock("2026-03-02T10:00:00+08:00");
    // The person's share the old release queued by reference (its version key named the person in
    // clear) still finds its version and arrives whole.
    assert!(
        wait_until(Duration::from_secs(20), || provincial
            .received()
            .iter()
            .any(|s| {
                s.record["source"]["record_id"] == "UPG5-P1"
                    && s.record["subject"]["name"] == "张医生"
            })),
        "{:?}",
        provincial
            .received()
            .iter()
            .map(|s| s.record["source"]["record_id"].clone())
            .collect::<Vec<_>>()
    );
    for (id, result) in [(PENALIZED, PENALIZED_RESULT), (LEGAL_REP, LEGAL_REP_RESULT)] {
        let held = results(&gw, id);
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(held[0]["record"]["record_id"], result);
    }
    // New facts: a second penalty for one person, a commitment of the listed institution (its
    // subjects and the persons its listing reaches are evaluated again).
    let records = json!([
        {"category": "administrative",
         "subject": {"kind": "individual", "role": "physician", "id_type": "resident_id", "id": PENALIZED, "name": "张医生"},
         "source": {"record_id": "UPG5-P2", "region": "440106"},
         "basis": {"doc_type": "penalty_decision", "doc_number": "穗医保罚〔2026〕32号", "decided_on": "2026-02-20"},
         "disclosure": {"class": "public"},
         "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"], "fine_yuan": "3000"}},
        {"category": "commitment",
         "subject": {"kind": "institution", "role": "designated_medical_institution", "id_type": "uscc", "id": "91350100M000100Y43", "name": "某某医院"},
         "source": {"record_id": "UPG5-C1", "region": "440106"},
         "disclosure": {"class": "gov_share"},
         "content": {"commitment_type": "医保基金使用信用承诺", "committed_on": "2026-02-20", "fulfilment": "pending"}}
    ]);
    gw.push_canonical(MI, &records);
    assert!(
        wait_until(Duration::from_secs(20), || results(&gw, PENALIZED)
            .iter()
            .any(|r| r["reasons"].to_string().contains("UPG5-P2"))),
        "{:?}",
        results(&gw, PENALIZED)
    );
    let held = results(&gw, PENALIZED);
    assert_eq!(held.len(), 1, "one result for the year: {held:?}");
    assert_eq!(held[0]["record"]["record_id"], PENALIZED_RESULT);
    assert_eq!(
        held[0]["record"]["version"], 2,
        "a new version of the same record"
    );
    // The institution changed in the same commit, so it was evaluated again with the person (one
    // change-log entry; a second to be sure): its listing still reaches its legal representative
    // through the same linked record, never ended.
    std::thread::sleep(Duration::from_secs(1));
    let archive = gw
        .client(MI)
        .get(&format!("/v1/subjects/resident_id/{LEGAL_REP}"))
        .json();
    let listed = archive["categories"]["dishonest_list"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{archive}");
    assert_eq!(listed[0]["record_id"], LINK);
    assert!(
        !listed[0].to_string().contains("eliminated"),
        "the linked record is not ended: {archive}"
    );
    let held = results(&gw, LEGAL_REP);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["record"]["record_id"], LEGAL_REP_RESULT);
    assert_eq!(held[0]["grade"], "E");
    // Format 6: the ledger the old release kept in the person's record head answers from its own
    // key: the share it queued, acknowledged since by the platform.
    let view = gw
        .client(MI)
        .get(&format!("/v1/ledger/records/{MI}/UPG5-P1"))
        .json();
    let provincial_holding = view["holdings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["destination"] == "provincial")
        .cloned();
    assert!(
        provincial_holding.is_some_and(|h| h["events"][0]["version"] == 1 && h["state"] == "held"),
        "{view}"
    );
    gw.stop();
    // No value the store holds names either person in clear.
    let store = credit_gateway::store::Store::open(&gw.config.storage.data_dir).unwrap();
    assert_eq!(
        &*store.get_raw(b"meta/format").unwrap().unwrap(),
        credit_gateway::store::format::CURRENT
            .to_string()
            .as_bytes()
    );
    let mut values = 0;
    let mut ledgers = 0;
    for item in store.range_stored(b"", None) {
        let (k, v) = item.unwrap();
        // The ledger left the heads for its own key space.
        if k.starts_with(b"rec/") {
            assert!(
                memchr_find(&v, b"\"publication\"").is_none(),
                "a head still carries its ledger: {}",
                String::from_utf8_lossy(&k)
            );
        }
        ledgers += usize::from(k.starts_with(b"led/"));
        for id in [PENALIZED, LEGAL_REP] {
            let (k, v) = (String::from_utf8_lossy(&k), String::from_utf8_lossy(&v));
            assert!(!k.contains(id) && !v.contains(id), "{id} in clear at {k}");
        }
        values += 1;
    }
    assert!(values > 20, "{values}");
    assert!(ledgers >= 2, "{ledgers} records with a ledger");
    drop(store);
    let (code, out, err) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    // sled keeps the pages of older values until it cleans them: `compact` rewrites the
    // directory with its live values, after which no file under it holds either number.
    let (code, out, err) = gw.cli(&["compact"]);
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(report["keys"].as_u64().unwrap() > 20, "{report}");
    for file in files_under(&gw.config.storage.data_dir) {
        let bytes = std::fs::read(&file).unwrap();
        for id in [PENALIZED, LEGAL_REP] {
            assert!(
                memchr_find(&bytes, id.as_bytes()).is_none(),
                "{id} in clear in {}",
                file.display()
            );
        }
    }
    // The compacted directory opens, finds both persons and takes new records.
    gw.spawn();
    let reply = gw
        .client(MI)
        .get(&format!("/v1/subjects/resident_id/{PENALIZED}"));
    assert_eq!(reply.status, 200);
    let again = json!([{"category": "administrative",
         "subject": {"kind": "individual", "role": "physician", "id_type": "resident_id", "id": PENALIZED, "name": "张医生"},
         "source": {"record_id": "UPG5-P3", "region": "440106"},
         "basis": {"doc_type": "penalty_decision", "doc_number": "穗医保罚〔2026〕33号", "decided_on": "2026-02-21"},
         "disclosure": {"class": "public"},
         "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"], "fine_yuan": "1000"}}]);
    gw.push_canonical(MI, &again);
    assert!(wait_until(Duration::from_secs(20), || provincial
        .received()
        .iter()
        .any(|s| s.record["source"]["record_id"] == "UPG5-P3")));
    gw.stop();
    let (code, out, err) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
