//! End to end: outbound sharing through the real binary to reference receivers on loopback.
//! Issue "Outbound sharing": routing by region and channel, durability across receiver outages and
//! SIGKILL, dead letters and replay, and the disclosure filter (LS Arts. 24-27).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::receiver::{Mode, Receiver};
use common::{multi_thread_runtime, wait_until, Gateway};
use serde_json::{json, Value};

const MI: &str = "medical_insurance";

fn penalty(record_id: &str, region: &str, types: &[&str]) -> Value {
    json!({
        "category": "administrative",
        "subject": {"kind": "institution", "role": "designated_retail_pharmacy",
                    "id_type": "uscc", "id": "91310110666007217T", "name": "广州市某某大药房有限公司"},
        "source": {"record_id": record_id, "region": region},
        "basis": {"doc_type": "penalty_decision", "doc_number": format!("医保罚〔2025〕{record_id}号"), "decided_on": common::days_ago(30)},
        "disclosure": {"class": "public"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": types, "fine_yuan": "20000"}
    })
}

fn agreement(record_id: &str, region: &str) -> Value {
    json!({
        "category": "agreement_performance",
        "subject": {"kind": "institution", "role": "designated_medical_institution",
                    "id_type": "uscc", "id": "91350100M000100Y43", "name": "某某医院"},
        "source": {"record_id": record_id, "region": region},
        "disclosure": {"class": "gov_share"},
        "content": {"item": "agreement", "status": "breached", "agreement_number": "YB-2025-001"}
    })
}

fn push(gw: &Gateway, records: Vec<Value>) -> Value {
    gw.push_canonical(MI, &records)
}

/// `outbox list --dead` through the CLI.
fn dead_letters(gw: &Gateway) -> Value {
    let (code, out, err) = gw.cli(&["outbox", "list", "--dead"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Value>(&out).unwrap()
}

/// The one dead letter, once it is there.
fn one_dead_letter(gw: &Gateway) -> Value {
    assert!(wait_until(Duration::from_secs(10), || dead_letters(gw)
        ["entries"]
        .as_array()
        .unwrap()
        .len()
        == 1));
    dead_letters(gw)["entries"][0].clone()
}

fn keys(r: &Receiver) -> HashSet<String> {
    r.received()
        .into_iter()
        .map(|s| s.idempotency_key)
        .collect()
}

fn channels_of(r: &Receiver, record_id: &str) -> Vec<String> {
    let mut c: Vec<String> = r
        .received()
        .into_iter()
        .filter(|s| {
            s.record
                .pointer("/source/record_id")
                .and_then(Value::as_str)
                == Some(record_id)
        })
        .map(|s| s.channel)
        .collect();
    c.sort();
    c
}

#[test]
fn records_reach_the_right_platforms_on_the_right_channels() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let (province, guangzhou, shenzhen) = (gw.receiver(&rt), gw.receiver(&rt), gw.receiver(&rt));
    gw.add_destination("provincial", "440000", &province);
    gw.add_destination("guangzhou", "440100", &guangzhou);
    gw.add_destination("shenzhen", "440300", &shenzhen);
    gw.spawn();
    let receipt = push(
        &gw,
        vec![
            penalty("GZ-1", "440106", &["罚款"]),
            penalty("SZ-1", "440305", &["罚款"]),
            agreement("GZ-A", "440106"),
        ],
    );
    assert_eq!(receipt["accepted"], 3);
    // Province: both penalties on two channels, the agreement on government sharing only.
    assert!(
        wait_until(Duration::from_secs(20), || province.received().len() == 5),
        "province got {}",
        province.received().len()
    );
    assert!(wait_until(Duration::from_secs(20), || guangzhou
        .received()
        .len()
        == 3));
    assert!(wait_until(Duration::from_secs(20), || shenzhen
        .received()
        .len()
        == 2));
    assert_eq!(
        channels_of(&province, "GZ-1"),
        vec!["gov_share", "public_notice"]
    );
    assert_eq!(
        channels_of(&province, "GZ-A"),
        vec!["gov_share"],
        "a gov_share record is never publicly noticed"
    );
    assert!(
        channels_of(&guangzhou, "SZ-1").is_empty(),
        "Guangzhou does not get Shenzhen's records"
    );
    assert_eq!(
        channels_of(&shenzhen, "SZ-1"),
        vec!["gov_share", "public_notice"]
    );
    // Sending the same batch again shares nothing new.
    push(&gw, vec![penalty("GZ-1", "440106", &["罚款"])]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(province.received().len(), 5);
    let (code, out, _) = gw.cli(&["outbox", "stats"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"pending\": 0"), "{out}");
}

#[test]
fn a_platform_that_is_down_gets_everything_once_it_is_back() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let province = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &province);
    gw.config.sharing.request_timeout_ms = 500;
    gw.spawn();
    for (i, mode) in [Mode::Unavailable, Mode::Close, Mode::Hang]
        .into_iter()
        .enumerate()
    {
        province.set_mode(mode.clone(), Some(Duration::from_millis(1500)));
        let batch: Vec<Value> = (0..20)
            .map(|n| agreement(&format!("DOWN-{i}-{n}"), "440106"))
            .collect();
        push(&gw, batch);
        let expected = 20 * (i + 1);
        assert!(
            wait_until(Duration::from_secs(30), || keys(&province).len()
                == expected),
            "{mode:?}: got {} of {expected}",
            keys(&province).len()
        );
    }
    assert_eq!(province.received().len(), 60, "nothing stored twice");
    assert!(province.requests() > 3, "the outage forced retries");
    let (_, metrics) = gw.admin_get("/metrics");
    assert!(
        metrics.contains("gateway_delivery_retries_total"),
        "{metrics}"
    );
}

#[test]
fn the_outbox_depth_is_published_per_destination() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let province = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &province);
    province.set_mode(Mode::Unavailable, None);
    gw.spawn();
    let batch: Vec<Value> = (0..7)
        .map(|n| agreement(&format!("DEPTH-{n}"), "440106"))
        .collect();
    assert_eq!(push(&gw, batch)["accepted"], 7);
    // The queue is counted when the gateway starts and every 30 s after.
    gw.restart();
    let depth = "gateway_outbox_depth{destination=\"provincial\"} 7";
    assert!(
        wait_until(Duration::from_secs(10), || gw
            .admin_get("/metrics")
            .1
            .contains(depth)),
        "{}",
        gw.admin_get("/metrics").1
    );
    // Counting never holds up delivery: the queue drains once the platform is back.
    province.set_mode(Mode::Normal, None);
    assert!(wait_until(Duration::from_secs(20), || keys(&province)
        .len()
        == 7));
}

#[test]
fn a_gateway_killed_while_delivering_delivers_the_rest_after_restart() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let province = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &province);
    gw.config.destinations[0].batch_size = 10;
    gw.spawn();
    province.set_mode(Mode::Slow(150), None);
    let batch: Vec<Value> = (0..300)
        .map(|n| agreement(&format!("KILL-{n}"), "440106"))
        .collect();
    assert_eq!(push(&gw, batch)["accepted"], 300);
    assert!(wait_until(Duration::from_secs(20), || !province
        .received()
        .is_empty()));
    gw.kill();
    let before = keys(&province).len();
    assert!(before < 300, "killed in the middle ({before} delivered)");
    province.set_mode(Mode::Normal, None);
    gw.spawn();
    assert!(
        wait_until(Duration::from_secs(60), || keys(&province).len() == 300),
        "got {}",
        keys(&province).len()
    );
    let ids: HashSet<String> = province
        .received()
        .iter()
        .filter_map(|s| {
            s.record
                .pointer("/source/record_id")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect();
    assert_eq!(ids.len(), 300, "every record exactly once after dedup");
}

#[test]
fn a_refused_share_goes_to_dead_letters_and_replay_delivers_it() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let province = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &province);
    gw.spawn();
    province.set_mode(Mode::RefuseRecord("POISON".into()), None);
    push(
        &gw,
        vec![
            agreement("OK-1", "440106"),
            agreement("POISON-1", "440106"),
            agreement("OK-2", "440106"),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(20), || keys(&province).len() == 2),
        "the good ones still arrive"
    );
    let dead = || dead_letters(&gw);
    let entry = &one_dead_letter(&gw);
    assert_eq!(entry["record_id"], "POISON-1");
    assert_eq!(entry["status"], 422);
    assert!(
        entry["answer"].as_str().unwrap().contains("POISON"),
        "the receiver's answer is kept"
    );

    province.set_mode(Mode::Normal, None);
    let (code, out, err) = gw.cli(&["outbox", "replay"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"replayed\": 1"), "{out}");
    assert!(wait_until(Duration::from_secs(20), || keys(&province)
        .len()
        == 3));
    assert!(dead()["entries"].as_array().unwrap().is_empty());
    assert!(
        gw.log().contains("operator action"),
        "operator actions are logged"
    );
}

#[test]
fn nothing_restricted_ever_reaches_a_platform() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let province = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &province);
    gw.spawn();
    let secret_record = {
        let mut r = penalty("SECRET-1", "440106", &["罚款"]);
        r["disclosure"] = json!({"class": "restricted", "restriction": "state_secret"});
        r["content"]["facts"] = json!("绝密-ALPHA-7731");
        r
    };
    let mut with_secret_fields = penalty("FIELDS-1", "440106", &["罚款"]);
    with_secret_fields["disclosure"] = json!({"class": "public", "restricted_fields": {
        "content.bank_account": "commercial_secret",
        "content.patient_list": "personal_privacy",
        "content.pending_case": "not_yet_disclosed",
        "content.classified_note": "state_secret",
        "content.sealed_detail": "legally_prohibited"}});
    for (field, value) in [
        ("bank_account", "6222-SECRET-0001"),
        ("patient_list", "患者-SECRET-0002"),
        ("pending_case", "案件-SECRET-0003"),
        ("classified_note", "SECRET-0004"),
        ("sealed_detail", "SECRET-0005"),
    ] {
        with_secret_fields["content"][field] = json!(value);
    }
    let physician = json!({
        "category": "administrative",
        "subject": {"kind": "individual", "role": "physician", "id_type": "resident_id", "id": "440104199003071239", "name": "王医生"},
        "source": {"record_id": "DOC-1", "region": "440106"},
        "basis": {"doc_type": "penalty_decision", "doc_number": "穗医保罚〔2025〕99号", "decided_on": common::days_ago(20)},
        "disclosure": {"class": "public"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"], "contact_phone": "13812345678"}
    });
    let warning = penalty("WARN-1", "440106", &["警告"]);
    let criticism = penalty("CRIT-1", "440106", &["通报批评"]);
    push(
        &gw,
        vec![
            secret_record,
            with_secret_fields,
            physician,
            warning,
            criticism,
        ],
    );
    // FIELDS-1 x2 channels, DOC-1 x2, WARN-1 and CRIT-1 on gov_share only.
    assert!(
        wait_until(Duration::from_secs(20), || province.received().len() == 6),
        "got {}",
        province.received().len()
    );
    std::thread::sleep(Duration::from_millis(300));
    let all_bytes: Vec<u8> = province.bodies().concat();
    let all = String::from_utf8_lossy(&all_bytes);
    for secret in [
        "绝密-ALPHA-7731",
        "SECRET-1",
        "6222-SECRET-0001",
        "SECRET-0002",
        "SECRET-0003",
        "SECRET-0004",
        "SECRET-0005",
    ] {
        assert!(!all.contains(secret), "{secret} reached the platform");
    }
    let public_doc = province
        .received()
        .into_iter()
        .find(|s| s.channel == "public_notice" && s.record["source"]["record_id"] == "DOC-1")
        .expect("the physician's penalty is publicly noticed");
    assert_eq!(
        public_doc.record["subject"]["id"], "440104**********39",
        "masked on the public channel"
    );
    assert_eq!(public_doc.record["content"]["contact_phone"], "138****5678");
    assert_eq!(
        channels_of(&province, "WARN-1"),
        vec!["gov_share"],
        "a warning is never publicly noticed (LS Art. 27)"
    );
    assert_eq!(
        channels_of(&province, "CRIT-1"),
        vec!["gov_share"],
        "nor a notice of criticism"
    );
    let (_, metrics) = gw.admin_get("/metrics");
    assert!(
        metrics.contains("gateway_disclosure_withheld_total"),
        "withheld records are counted"
    );
    let log = gw.log();
    assert!(
        log.contains("minor_not_publicly_noticed") && log.contains("restricted_record"),
        "withheld records are logged with their rule"
    );
    assert!(
        !log.contains("SECRET-0004") && !log.contains("440104199003071239"),
        "never with the value"
    );
}

#[test]
fn a_platform_can_take_xml_envelopes_with_shuanggongshi_codes() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let province = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &province);
    gw.config.destinations[0].format = Some("shuanggongshi-xml".into());
    gw.spawn();
    push(&gw, vec![penalty("XML-1", "440106", &["罚款"])]);
    assert!(
        wait_until(Duration::from_secs(20), || province.received().len() == 2),
        "got {}",
        province.received().len()
    );
    let body = String::from_utf8(province.bodies()[0].clone()).unwrap();
    assert!(
        body.starts_with("<?xml")
            && body.contains("<XYXXJH>")
            && body.contains("<FSF>credit-gateway</FSF>")
            && body.contains("<JSF>provincial</JSF>"),
        "{body}"
    );
    let share = &province.received()[0];
    assert_eq!(share.record["CF_XDR_MC"], "广州市某某大药房有限公司");
    assert_eq!(share.record["CF_NR_FK"], "2", "20000 元 = 2 万元");
    assert_eq!(
        share.record["CF_JDRQ"],
        common::days_ago(30).replace('-', "/")
    );
    assert!(!share.idempotency_key.is_empty());
}

/// Format 3 queues shares by reference. If the archived version a share points to no longer
/// gives the payload recorded at enqueue time (here: changed behind the gateway's back while it
/// was stopped), the share is dead-lettered with the reason and never reaches the platform.
#[test]
fn a_share_whose_archived_version_changed_is_dead_lettered_never_sent() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let province = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &province);
    gw.spawn();
    province.set_mode(Mode::Unavailable, None);
    push(
        &gw,
        vec![
            agreement("TAMPER-1", "440106"),
            agreement("KEEP-1", "440106"),
        ],
    );
    gw.stop();
    {
        let store = common::open_store(&gw.config);
        let mut tampered = credit_gateway::store::WriteSet::default();
        for pair in store.scan_raw(b"arc/") {
            let (k, v) = pair.unwrap();
            if String::from_utf8_lossy(&k).contains("TAMPER-1") {
                let text = String::from_utf8(v)
                    .unwrap()
                    .replace("breached", "performed");
                tampered.put(k, text.into_bytes());
            }
        }
        assert_eq!(tampered.len(), 1);
        store.apply(tampered).unwrap();
        store.flush().unwrap();
    }
    province.set_mode(Mode::Normal, None);
    gw.spawn();
    assert!(
        wait_until(Duration::from_secs(20), || keys(&province).len() == 1),
        "the untouched share arrives"
    );
    let entry = &one_dead_letter(&gw);
    assert_eq!(entry["record_id"], "TAMPER-1");
    assert!(
        entry["answer"]
            .as_str()
            .unwrap()
            .contains("does not match the hash"),
        "{entry}"
    );
    assert!(province
        .received()
        .iter()
        .all(|s| s.record["source"]["record_id"] != "TAMPER-1"));
}
