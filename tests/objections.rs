//! End to end: objections (异议) through the real binary with the manual clock, across the 2026
//! National Day holiday (GD Arts. 32-34; LS Arts. 21-23).

mod common;

use std::time::Duration;

use common::receiver::{Received, Receiver};
use common::{multi_thread_runtime, wait_until, AlertRelay, Gateway};
use serde_json::{json, Value};

const MI: &str = "medical_insurance";

fn penalty(record_id: &str) -> Value {
    json!({
        "category": "administrative",
        "subject": {"kind": "institution", "role": "designated_retail_pharmacy",
                    "id_type": "uscc", "id": "91310110666007217T", "name": "广州市某某大药房有限公司"},
        "source": {"record_id": record_id, "region": "440106"},
        "basis": {"doc_type": "penalty_decision", "doc_number": format!("穗医保罚〔2026〕{record_id}号"), "decided_on": "2026-09-20"},
        "disclosure": {"class": "public"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"], "fine_yuan": "20000"}
    })
}

fn push(gw: &Gateway, records: Vec<Value>) {
    gw.push_canonical(MI, &records);
}

fn post(gw: &Gateway, agency: &str, path: &str, body: Value) -> common::Reply {
    gw.client(agency)
        .post(path, "application/json", serde_json::to_vec(&body).unwrap())
}

fn of(r: &Receiver, record_id: &str) -> Vec<Received> {
    r.received()
        .into_iter()
        .filter(|s| {
            s.record
                .pointer("/source/record_id")
                .and_then(Value::as_str)
                == Some(record_id)
        })
        .collect()
}

fn marked(s: &Received) -> bool {
    s.record["marks"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["kind"] == "objection"))
}

struct Setup {
    _rt: tokio::runtime::Runtime,
    gw: Gateway,
    platform: Receiver,
    mi_platform: Receiver,
    relay: AlertRelay,
}

fn setup() -> Setup {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let platform = gw.receiver(&rt);
    let mi_platform = gw.receiver(&rt);
    let relay = AlertRelay::start(&rt);
    gw.add_destination("provincial", "440000", &platform);
    gw.add_destination("medical_insurance_platform", "440000", &mi_platform);
    gw.config.destinations[1].role =
        credit_gateway::config::DestinationRole::MedicalInsurancePlatform;
    gw.config.corrections.dangerous_manual_clock = true;
    gw.config.objections.check_interval_ms = 100;
    gw.config.objections.alert_webhook = Some(relay.url.clone());
    gw.config.lifecycle.check_interval_ms = 100;
    gw.spawn();
    gw.set_clock("2026-09-28T10:00:00+08:00");
    Setup {
        _rt: rt,
        gw,
        platform,
        mi_platform,
        relay,
    }
}

/// The review deadline the calendar gives: 15 working days counted from the day after.
fn calendar_deadline(gw: &Gateway, from: &str, days: &str) -> String {
    let (code, out, err) = gw.cli(&[
        "calendar",
        "deadline",
        "--from",
        from,
        "--working-days",
        days,
    ]);
    assert_eq!(code, 0, "{err}");
    out.lines().next().unwrap().trim().to_string()
}

#[test]
fn an_objection_marks_every_copy_is_tracked_across_a_holiday_and_closes_both_ways() {
    let Setup {
        _rt,
        gw,
        platform,
        mi_platform,
        relay,
    } = setup();
    push(&gw, vec![penalty("OBJ-1")]);
    assert!(wait_until(Duration::from_secs(20), || of(
        &platform, "OBJ-1"
    )
    .len()
        == 2));

    // A notified_on given for any record is a date, and not after the day of filing (LS Art.
    // 21 counts the window from it): refused with the field named, nothing filed.
    for (notified, says) in [
        ("28 September", "notified_on must be YYYY-MM-DD"),
        (
            "2026-09-29",
            "notified_on is after the day the objection was filed",
        ),
    ] {
        let refused = post(
            &gw,
            MI,
            "/v1/objections",
            json!({"records": [{"record_id": "OBJ-1"}], "ground": "error_or_omission",
                   "materials": "m", "notified_on": notified}),
        );
        assert_eq!(refused.status, 422, "{notified}");
        assert_eq!(refused.json()["error"]["code"], "invalid_objection");
        assert!(
            refused.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(says),
            "{}",
            refused.json()
        );
    }

    let reply = post(
        &gw,
        MI,
        "/v1/objections",
        json!({"records": [{"record_id": "OBJ-1"}], "ground": "error_or_omission",
               "materials": "窗口受理 2026-0928-001", "notified_on": "2026-09-28"}),
    );
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let objection = reply.json();
    let id = objection["id"].as_str().unwrap().to_string();
    assert_eq!(objection["state"], "under_review");
    // LS Art. 23: 15 working days; the National Day holiday (1-7 October) does not count.
    let deadline = calendar_deadline(&gw, "2026-09-28T10:00:00+08:00", "15");
    assert_eq!(objection["review_deadline"], deadline.as_str());
    assert!(
        deadline.as_str() > "2026-10-19",
        "the holiday pushes it out: {deadline}"
    );

    // The mark reaches every platform that holds the record, ahead of ordinary traffic...
    assert!(wait_until(Duration::from_secs(20), || of(
        &platform, "OBJ-1"
    )
    .len()
        == 4));
    let marking: Vec<Received> = of(&platform, "OBJ-1").into_iter().skip(2).collect();
    assert!(
        marking.iter().all(|s| s.kind == "marking"),
        "the mark travels ahead of ordinary shares"
    );
    assert!(
        marking.iter().all(marked),
        "{:?}",
        marking.iter().map(|s| &s.record).collect::<Vec<_>>()
    );
    // ...and every later share carries it.
    let mut v2 = penalty("OBJ-1");
    v2["content"]["fine_yuan"] = json!("30000");
    push(&gw, vec![v2]);
    assert!(wait_until(Duration::from_secs(20), || of(
        &platform, "OBJ-1"
    )
    .len()
        == 6));
    assert!(of(&platform, "OBJ-1")[4..].iter().all(marked));

    // Still open after 15 working days: warning, metric and webhook.
    gw.set_clock(&deadline.replace("23:59:59", "23:59:00"));
    assert!(wait_until(Duration::from_secs(10), || relay
        .alerts()
        .iter()
        .any(
            |a| a["event"] == "objection_deadline_near" && a["objection_id"] == id.as_str()
        )));
    gw.set_clock("2026-11-30T09:00:00+08:00");
    assert!(wait_until(Duration::from_secs(10), || relay
        .alerts()
        .iter()
        .any(
            |a| a["event"] == "objection_overdue" && a["objection_id"] == id.as_str()
        )));
    // The gauges are set once the scan's alerts have been answered.
    assert!(
        wait_until(Duration::from_secs(10), || gw
            .admin_get("/metrics")
            .1
            .contains("gateway_objections{state=\"overdue\"} 1")),
        "{}",
        gw.admin_get("/metrics").1
    );
    assert!(gw.log().contains("objection review is overdue"));
    let overdue = gw.client(MI).get("/v1/objections?state=overdue").json();
    assert_eq!(overdue["objections"].as_array().unwrap().len(), 1);

    // Only the agency that provided the information resolves it.
    let denied = post(
        &gw,
        "health",
        &format!("/v1/objections/{id}/resolve"),
        json!({"outcome": "rejected", "reason": "x"}),
    );
    assert_eq!(denied.status, 403);
    // Rejected: the mark is removed everywhere; the medical-insurance platform is told.
    let reply = post(
        &gw,
        MI,
        &format!("/v1/objections/{id}/resolve"),
        json!({"outcome": "rejected", "reason": "经核实信息无误"}),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["state"], "rejected");
    assert!(wait_until(Duration::from_secs(20), || of(
        &platform, "OBJ-1"
    )
    .len()
        == 8));
    assert!(of(&platform, "OBJ-1")[6..].iter().all(|s| !marked(s)));
    assert!(wait_until(Duration::from_secs(20), || mi_platform
        .received()
        .iter()
        .any(
            |s| s.kind == "notice" && s.record["result"]["outcome"] == "rejected"
        )));

    // Review by the level above (GD Art. 34): marked again, a new deadline.
    let reply = post(
        &gw,
        MI,
        &format!("/v1/objections/{id}/review"),
        json!({"reason": "申请复核"}),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["level"], 2);
    assert!(wait_until(Duration::from_secs(20), || of(
        &platform, "OBJ-1"
    )
    .len()
        == 10));
    assert!(of(&platform, "OBJ-1")[8..].iter().all(marked));

    // A correction the record's rules refuse (a negative fine): the resolution is refused with
    // every field's problem (GD Art. 31's corrected record must be valid), nothing changed.
    let refused = post(
        &gw,
        MI,
        &format!("/v1/objections/{id}/resolve"),
        json!({"outcome": "upheld", "action": "correct", "reason": "罚款金额有误",
               "correction": {"record_id": "OBJ-1", "kind": "correct", "content": {"fine_yuan": "-3.5"}, "reason": "异议成立"}}),
    );
    assert_eq!(
        refused.status,
        422,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    let error = &refused.json()["error"];
    assert_eq!(error["code"], "invalid_objection", "{error}");
    assert!(
        error["problems"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["field"] == "content.fine_yuan")),
        "{error}"
    );

    // Upheld with a correction: the correction flow, its own GD Art. 31 deadline, mark removed.
    let reply = post(
        &gw,
        MI,
        &format!("/v1/objections/{id}/resolve"),
        json!({"outcome": "upheld", "action": "correct", "reason": "罚款金额有误",
               "correction": {"record_id": "OBJ-1", "kind": "correct", "content": {"fine_yuan": "10000"}, "reason": "异议成立"}}),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = reply.json();
    assert_eq!(body["state"], "upheld");
    assert!(body["correction"]["deadline"].is_string(), "{body}");
    assert_eq!(
        body["resolutions"][1]["correction_id"],
        body["correction"]["id"]
    );
    assert!(wait_until(Duration::from_secs(20), || of(
        &platform, "OBJ-1"
    )
    .iter()
    .any(
        |s| s.kind == "correction" && s.record["content"]["fine_yuan"] == "10000"
    )));
    let last = of(&platform, "OBJ-1").pop().unwrap();
    assert!(!marked(&last), "the closed objection's mark is gone");
}

#[test]
fn an_upheld_objection_that_finds_no_bad_information_withdraws_the_record_ls_art_23() {
    let Setup {
        _rt, gw, platform, ..
    } = setup();
    push(&gw, vec![penalty("OBJ-2")]);
    assert!(wait_until(Duration::from_secs(20), || of(
        &platform, "OBJ-2"
    )
    .len()
        == 2));
    let reply = post(
        &gw,
        "provincial_credit_platform",
        "/v1/objections",
        json!({"records": [{"agency": MI, "record_id": "OBJ-2"}], "ground": "otherwise_unlawful", "materials": "平台转办 2026-77"}),
    );
    assert_eq!(
        reply.status,
        201,
        "a credit platform forwards it: {}",
        String::from_utf8_lossy(&reply.body)
    );
    let id = reply.json()["id"].as_str().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(20), || of(
        &platform, "OBJ-2"
    )
    .len()
        == 4));
    let reply = post(
        &gw,
        MI,
        &format!("/v1/objections/{id}/resolve"),
        json!({"outcome": "upheld", "action": "eliminate", "reason": "经核实无不良信用信息"}),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(wait_until(Duration::from_secs(20), || of(
        &platform, "OBJ-2"
    )
    .len()
        == 6));
    let withdrawn: Vec<Received> = of(&platform, "OBJ-2").into_iter().skip(4).collect();
    assert!(withdrawn
        .iter()
        .all(|s| s.kind == "withdrawal" && s.record["withdrawn"]["reason"] == "objection_upheld"));
    // A new version of an eliminated record is shared nowhere.
    let mut v2 = penalty("OBJ-2");
    v2["content"]["fine_yuan"] = json!("1");
    push(&gw, vec![v2]);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(of(&platform, "OBJ-2").len(), 6);
    let again = post(
        &gw,
        MI,
        &format!("/v1/objections/{id}/resolve"),
        json!({"outcome": "rejected", "reason": "x"}),
    );
    assert_eq!(again.status, 409);
}

#[test]
fn a_late_objection_to_an_evaluation_result_is_refused_until_an_operator_accepts_it_ls_art_21() {
    let Setup {
        _rt,
        mut gw,
        platform,
        ..
    } = setup();
    let evaluation = json!({
        "category": "evaluation_result",
        "subject": {"kind": "institution", "role": "designated_medical_institution",
                    "id_type": "uscc", "id": "91350100M000100Y43", "name": "某某医院"},
        "source": {"record_id": "EVAL-1", "region": "440106"},
        "disclosure": {"class": "public"},
        "valid_from": "2026-09-01",
        "content": {"year": 2026, "points": 80, "grade": "C"}
    });
    push(&gw, vec![evaluation]);
    assert!(wait_until(Duration::from_secs(20), || of(
        &platform, "EVAL-1"
    )
    .len()
        == 1));
    let body = |notified: &str| json!({"records": [{"record_id": "EVAL-1"}], "ground": "error_or_omission", "materials": "m", "notified_on": notified});
    // Told on 1 September: the 10 working days ended mid-September.
    let late = post(&gw, MI, "/v1/objections", body("2026-09-01"));
    assert_eq!(late.status, 422, "{}", String::from_utf8_lossy(&late.body));
    let error = &late.json()["error"];
    assert_eq!(error["code"], "objection_late");
    assert!(error["message"].as_str().unwrap().contains("LS Art. 21"));
    let id = error["objection_id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(of(&platform, "EVAL-1").len(), 1, "nothing marked");
    // Without notified_on: refused with a clear error.
    let missing = post(
        &gw,
        MI,
        "/v1/objections",
        json!({"records": [{"record_id": "EVAL-1"}], "ground": "error_or_omission", "materials": "m"}),
    );
    assert_eq!(missing.status, 422);
    assert_eq!(missing.json()["error"]["code"], "invalid_objection");
    // Told on 25 September: in time (the window runs over the holiday).
    let in_time = post(&gw, MI, "/v1/objections", body("2026-09-25"));
    assert_eq!(
        in_time.status,
        201,
        "{}",
        String::from_utf8_lossy(&in_time.body)
    );
    // The operator accepts the late one with a reason, through the CLI (audited).
    let (code, out, err) = gw.cli(&["objections", "list", "--state", "filed_late"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id));
    let (code, out, err) = gw.cli(&[
        "objections",
        "accept-late",
        &id,
        "--reason",
        "主体住院，有证明材料",
    ]);
    assert_eq!(code, 0, "{err}");
    let accepted: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(accepted["state"], "under_review");
    assert_eq!(accepted["late_accepted"]["reason"], "主体住院，有证明材料");
    let (code, _, _) = gw.cli(&["objections", "accept-late", &id, "--reason", "again"]);
    assert_eq!(code, 2, "only a late objection can be accepted");
    gw.stop();
    let (_, chain, _) = gw.cli(&["audit", "show", "--limit", "1000"]);
    assert!(chain.contains("objection_late_accepted") && chain.contains("objection_filed_late"));
}
