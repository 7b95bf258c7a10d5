//! End to end: corrections within three working days (GD Art. 31), on the real binary with a
//! manual clock, reference receivers on loopback.

mod common;

use std::time::Duration;

use common::receiver::{Mode, Receiver};
use common::{multi_thread_runtime, wait_until, AlertRelay, Gateway};
use serde_json::{json, Value};

const MI: &str = "medical_insurance";

fn penalty(record_id: &str, agency: Option<&str>) -> Value {
    let mut r = json!({
        "category": "administrative",
        "subject": {"kind": "institution", "role": "designated_medical_institution",
                    "id_type": "uscc", "id": "91310110666007217T", "name": "广州市某某医院"},
        "source": {"record_id": record_id, "region": "440106"},
        "basis": {"doc_type": "penalty_decision", "doc_number": format!("穗医保罚〔2025〕{record_id}号"), "decided_on": "2025-03-03"},
        "disclosure": {"class": "gov_share"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"], "fine_yuan": "20000"}
    });
    if let Some(a) = agency {
        r["source"]["agency"] = json!(a);
    }
    r
}

fn push(gw: &Gateway, agency: &str, records: Vec<Value>) {
    gw.push_canonical(agency, &records);
}

fn correct(gw: &Gateway, agency: &str, body: Value) -> Value {
    let reply = gw.client(agency).post(
        "/v1/corrections",
        "application/json",
        serde_json::to_vec(&body).unwrap(),
    );
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

fn state_of(gw: &Gateway, id: &str) -> String {
    let list = gw.client(MI).get("/v1/corrections").json();
    list["corrections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .map(|c| c["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn setup(receivers: usize) -> (tokio::runtime::Runtime, Gateway, Vec<Receiver>) {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let rs: Vec<Receiver> = (0..receivers).map(|_| gw.receiver(&rt)).collect();
    gw.add_destination("provincial", "440000", &rs[0]);
    gw.config.corrections.dangerous_manual_clock = true;
    gw.config.corrections.check_interval_ms = 100;
    gw.config.destinations[0].batch_size = 50;
    (rt, gw, rs)
}

#[test]
fn a_correction_overtakes_a_backlog_and_is_reported_on_time() {
    let (_rt, mut gw, rs) = setup(1);
    let province = &rs[0];
    gw.spawn();
    gw.set_clock("2025-03-14T10:00:00+08:00");
    push(&gw, MI, vec![penalty("C-1", None)]);
    assert!(wait_until(Duration::from_secs(20), || province
        .received()
        .len()
        == 1));
    province.set_mode(Mode::Unavailable, None);
    push(
        &gw,
        MI,
        (0..400)
            .map(|i| penalty(&format!("BACKLOG-{i}"), None))
            .collect(),
    );
    let c = correct(
        &gw,
        MI,
        json!({"record_id": "C-1", "kind": "correct", "content": {"fine_yuan": "10000"}, "reason": "罚款金额录入错误"}),
    );
    assert_eq!(
        c["deadline"], "2025-03-19T23:59:59+08:00",
        "three working days after a Friday"
    );
    assert_eq!(c["state"], "pending");
    assert_eq!(c["version"], 2);
    province.set_mode(Mode::Normal, None);
    assert!(
        wait_until(Duration::from_secs(30), || province.received().len() == 402),
        "got {}",
        province.received().len()
    );
    let received = province.received();
    let correction_at = received
        .iter()
        .position(|s| s.kind == "correction")
        .expect("the correction arrived");
    let first_backlog = received
        .iter()
        .position(|s| {
            s.record["source"]["record_id"]
                .as_str()
                .unwrap_or("")
                .starts_with("BACKLOG")
        })
        .unwrap();
    // The correction goes ahead of every share still queued; the batches already read when it
    // was committed may still go first: the one being sent and the next one, which delivery
    // reads while it sends (at most two, batch_size = 50).
    assert!(
        correction_at <= first_backlog + 100,
        "correction at {correction_at}, backlog from {first_backlog}"
    );
    assert_eq!(
        received[correction_at].record["content"]["fine_yuan"],
        "10000"
    );
    assert_eq!(
        received[correction_at].record["correction"]["kind"],
        "correct"
    );
    assert!(wait_until(Duration::from_secs(10), || state_of(
        &gw,
        c["id"].as_str().unwrap()
    )
        == "delivered_on_time"));
    let on_time = gw
        .client(MI)
        .get("/v1/corrections?state=delivered_on_time")
        .json();
    assert_eq!(on_time["corrections"].as_array().unwrap().len(), 1);
    // The archive keeps both versions.
    let archive = gw
        .client(MI)
        .get("/v1/subjects/uscc/91310110666007217T")
        .json();
    let c1 = archive["categories"]["administrative"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["record_id"] == "C-1")
        .unwrap()
        .clone();
    assert_eq!(c1["versions"].as_array().unwrap().len(), 2);
}

#[test]
fn a_correction_that_cannot_be_delivered_becomes_overdue_then_late() {
    let (rt, mut gw, rs) = setup(1);
    let province = &rs[0];
    let relay = AlertRelay::start(&rt);
    gw.config.corrections.alert_webhook = Some(relay.url.clone());
    gw.spawn();
    gw.set_clock("2025-09-26T16:30:00+08:00");
    push(&gw, MI, vec![penalty("L-1", None)]);
    assert!(wait_until(Duration::from_secs(20), || province
        .received()
        .len()
        == 1));
    province.set_mode(Mode::Unavailable, None);
    let c = correct(
        &gw,
        MI,
        json!({"record_id": "L-1", "kind": "invalidate", "reason": "处罚决定已撤销"}),
    );
    let id = c["id"].as_str().unwrap().to_string();
    // Friday 26 September 2025; Sunday 28 is a make-up working day: Sun 28, Mon 29, Tue 30.
    assert_eq!(c["deadline"], "2025-09-30T23:59:59+08:00");
    gw.set_clock("2025-09-30T09:00:00+08:00");
    assert!(
        wait_until(Duration::from_secs(10), || gw
            .log()
            .contains("less than one working day left")),
        "warning before the deadline"
    );
    let alerted = |event: &str| {
        relay.alerts().iter().any(|a| {
            a["event"] == event && a["correction_id"] == id.as_str() && a["record_id"] == "L-1"
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), || alerted("deadline_near")),
        "the webhook hears of the near deadline: {:?}",
        relay.alerts()
    );
    assert!(!alerted("overdue"), "not overdue before the deadline");
    gw.set_clock("2025-10-01T00:00:01+08:00");
    assert!(wait_until(Duration::from_secs(10), || state_of(&gw, &id) == "overdue"));
    assert!(
        wait_until(Duration::from_secs(10), || alerted("overdue")),
        "the webhook hears it is overdue: {:?}",
        relay.alerts()
    );
    assert_eq!(
        relay
            .alerts()
            .iter()
            .filter(|a| a["event"] == "deadline_near")
            .count(),
        1,
        "one near-deadline alert per correction, however many checks run"
    );
    assert!(wait_until(Duration::from_secs(10), || gw
        .admin_get("/metrics")
        .1
        .contains("gateway_corrections_overdue 1")));
    let (code, out, _) = gw.cli(&["corrections", "list", "--state", "overdue"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id), "{out}");
    province.set_mode(Mode::Normal, None);
    assert!(wait_until(Duration::from_secs(30), || state_of(&gw, &id)
        == "delivered_late"));
    let got = province
        .received()
        .into_iter()
        .find(|s| s.kind == "correction")
        .unwrap();
    assert_eq!(got.record["content"]["invalidated"], true);
}

#[test]
fn reading_archives_does_not_allow_correcting_another_agencys_record() {
    let (_rt, mut gw, _rs) = setup(1);
    for a in &mut gw.config.agencies {
        if a.id == "health" {
            a.read_archive = true;
        }
    }
    gw.spawn();
    push(&gw, MI, vec![penalty("OTHER-1", None)]);
    let body = json!({"agency": MI, "record_id": "OTHER-1", "kind": "invalidate"});
    let denied = gw.client("health").post(
        "/v1/corrections",
        "application/json",
        serde_json::to_vec(&body).unwrap(),
    );
    assert_eq!(
        denied.status,
        403,
        "{}",
        String::from_utf8_lossy(&denied.body)
    );
    assert_eq!(denied.json()["error"]["code"], "correction_not_allowed");
    assert_eq!(
        gw.client("health")
            .get("/v1/subjects/uscc/91310110666007217T")
            .status,
        200,
        "it still reads"
    );
    let list = gw.client(MI).get("/v1/corrections").json();
    assert!(
        list["corrections"].as_array().unwrap().is_empty(),
        "nothing was stored"
    );
}

#[test]
fn a_correction_found_in_the_future_is_refused_gd_art_31() {
    let (_rt, mut gw, _rs) = setup(1);
    gw.spawn();
    gw.set_clock("2025-03-14T10:00:00+08:00");
    push(&gw, MI, vec![penalty("FUT-1", None)]);
    let reply = gw.client(MI).post(
        "/v1/corrections",
        "application/json",
        serde_json::to_vec(&json!({"record_id": "FUT-1", "kind": "invalidate", "found_at": "2025-03-20T10:00:00+08:00"})).unwrap(),
    );
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["error"]["code"], "bad_correction");
    assert!(reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("future"));
    // A few minutes of clock skew between agency and gateway is tolerated.
    let ok = gw.client(MI).post(
        "/v1/corrections",
        "application/json",
        serde_json::to_vec(&json!({"record_id": "FUT-1", "kind": "invalidate", "found_at": "2025-03-14T10:02:00+08:00"})).unwrap(),
    );
    assert_eq!(ok.status, 202, "{}", String::from_utf8_lossy(&ok.body));
}

#[test]
fn a_correction_from_the_platform_reaches_the_medical_insurance_platform() {
    let (_rt, mut gw, rs) = setup(2);
    let mi_platform = &rs[1];
    let mut d = gw.config.destinations[0].clone();
    d.id = "medical_insurance_platform".into();
    d.role = credit_gateway::config::DestinationRole::MedicalInsurancePlatform;
    d.url = format!("https://localhost:{}/v1/shares", mi_platform.addr.port());
    gw.config.destinations.push(d);
    gw.spawn();
    gw.set_clock("2025-03-14T10:00:00+08:00");
    let mut judgment = penalty("PLAT-1", Some("provincial_credit_platform"));
    judgment["category"] = json!("dishonest_list");
    judgment["basis"]["doc_type"] = json!("judgment");
    judgment["content"] = json!({"list_name": "失信被执行人名单", "listed_on": "2025-03-01", "authority": "广州市中级人民法院"});
    // Not for government sharing: the medical-insurance platform still gets the corrected record
    // (it is the credit manager, not a disclosure channel), never a bare withdrawal.
    judgment["disclosure"] = json!({"class": "authorized_query"});
    push(&gw, "provincial_credit_platform", vec![judgment]);
    let c = correct(
        &gw,
        "provincial_credit_platform",
        json!({"record_id": "PLAT-1", "kind": "change", "content": {"removed_on": "2025-03-13"}, "reason": "已履行，移出名单"}),
    );
    assert_eq!(c["direction"], "to_medical_insurance");
    assert!(
        c["deadline"].is_null(),
        "GD Art. 31's three working days bind the medical-insurance side's own information: {c}"
    );
    assert!(
        wait_until(Duration::from_secs(20), || mi_platform
            .received()
            .iter()
            .any(|s| s.kind == "correction")),
        "forwarded to the medical-insurance platform"
    );
    let got = mi_platform
        .received()
        .into_iter()
        .find(|s| s.kind == "correction")
        .unwrap();
    assert_eq!(got.record["content"]["removed_on"], "2025-03-13");
    assert!(
        got.record.get("withdrawn").is_none(),
        "the content, not a withdrawal"
    );
    assert_eq!(got.record["content"]["list_name"], "失信被执行人名单");
    assert!(
        wait_until(Duration::from_secs(20), || state_of(
            &gw,
            c["id"].as_str().unwrap()
        ) == "delivered"),
        "no deadline: delivered, never overdue"
    );
    // Another agency may not correct it.
    let denied = gw.client("tax").post("/v1/corrections", "application/json", serde_json::to_vec(&json!({"agency": "provincial_credit_platform", "record_id": "PLAT-1", "kind": "invalidate"})).unwrap());
    assert_eq!(denied.status, 403);
}

#[test]
fn a_missing_calendar_year_gives_a_provisional_deadline_that_sighup_makes_exact_gd_art_31() {
    let (_rt, mut gw, _rs) = setup(1);
    // The operator's calendar folder has 2024 and 2025 only.
    let shipped = common::repo().join("mappings/calendar");
    let dir = gw.dir.path().join("calendar");
    std::fs::create_dir_all(&dir).unwrap();
    for year in ["2024", "2025"] {
        std::fs::copy(
            shipped.join(format!("{year}.toml")),
            dir.join(format!("{year}.toml")),
        )
        .unwrap();
    }
    gw.config.corrections.calendar_dir = Some(dir.clone());
    gw.spawn();
    gw.set_clock("2025-12-29T10:00:00+08:00");
    push(&gw, MI, vec![penalty("Y-1", None)]);
    assert!(
        wait_until(Duration::from_secs(10), || gw
            .admin_get("/metrics")
            .1
            .contains("gateway_calendar_days_left 2")),
        "two days of calendar left on 29 December"
    );
    assert!(wait_until(Duration::from_secs(10), || gw
        .log()
        .contains("the working-day calendar ends 2025-12-31")));
    assert!(gw.log().contains("add mappings/calendar/2026.toml"));
    // Accepted and stored, never refused (issue #26): Tue 30 and Wed 31 December are known, the
    // third day is estimated never later than the truth.
    let body = json!({"record_id": "Y-1", "kind": "invalidate", "reason": "处罚决定已撤销"});
    let c = correct(&gw, MI, body);
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["deadline"], "2026-01-01T23:59:59+08:00");
    assert_eq!(c["deadline_provisional"], true);
    let listed = gw.client(MI).get("/v1/corrections").json();
    assert_eq!(listed["corrections"].as_array().unwrap().len(), 1, "stored");

    // The operator adds 2026 and sends SIGHUP: no restart.
    std::fs::copy(shipped.join("2026.toml"), dir.join("2026.toml")).unwrap();
    gw.sighup();
    assert!(wait_until(Duration::from_secs(10), || gw
        .log()
        .contains("working-day calendar reloaded")));
    // Tue 30, Wed 31 December; 1-3 January 2026 are the New Year holiday; Sunday 4 January is a
    // make-up working day. The tracker makes the stored deadline exact.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let c = gw.client(MI).get("/v1/corrections").json()["corrections"][0].clone();
            c["id"] == id.as_str()
                && c["deadline"] == "2026-01-04T23:59:59+08:00"
                && c.get("deadline_provisional").is_none()
        }),
        "{}",
        gw.client(MI).get("/v1/corrections").json()
    );
    assert!(wait_until(Duration::from_secs(10), || gw
        .admin_get("/metrics")
        .1
        .contains("gateway_calendar_days_left 367")));
}
