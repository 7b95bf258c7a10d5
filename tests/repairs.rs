//! End to end: credit repair (信用修复) through the real binary with the manual clock, across the
//! 2026 National Day holiday (GD Arts. 35-39; LS Arts. 36-42; NDRC Order No. 36).

mod common;

use std::time::Duration;

use common::receiver::{Received, Receiver};
use common::{multi_thread_runtime, wait_until, Gateway};
use serde_json::{json, Value};

const MI: &str = "medical_insurance";

fn penalty(record_id: &str, decided: &str, violation: &str) -> Value {
    penalty_in("440106", record_id, decided, violation)
}

/// LS's repair rules are Lhasa's, for records decided 2024-2025.
fn lhasa(record_id: &str, decided: &str, violation: &str) -> Value {
    penalty_in("540102", record_id, decided, violation)
}

fn penalty_in(region: &str, record_id: &str, decided: &str, violation: &str) -> Value {
    json!({
        "category": "administrative",
        "subject": {"kind": "institution", "role": "designated_retail_pharmacy",
                    "id_type": "uscc", "id": "91310110666007217T", "name": "广州市某某大药房有限公司"},
        "source": {"record_id": record_id, "region": region},
        "basis": {"doc_type": "penalty_decision", "doc_number": format!("穗医保罚〔2026〕{record_id}号"), "decided_on": decided},
        "disclosure": {"class": "public"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"],
                    "fine_yuan": "20000", "violation_type": violation}
    })
}

fn push(gw: &Gateway, records: Vec<Value>) {
    gw.push_canonical(MI, &records);
}

fn post(gw: &Gateway, path: &str, body: Value) -> common::Reply {
    gw.client(MI)
        .post(path, "application/json", serde_json::to_vec(&body).unwrap())
}

fn apply(gw: &Gateway, record_id: &str) -> common::Reply {
    post(
        gw,
        "/v1/repairs",
        json!({"records": [{"record_id": record_id}], "materials": "修复材料 2026-001",
               "commitment": "信用承诺书（已公开）"}),
    )
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

fn refused_rules(reply: &common::Reply) -> Vec<(String, String)> {
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = reply.json();
    assert_eq!(body["error"]["code"], "repair_ineligible");
    body["error"]["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["rule"].as_str().unwrap().to_string(),
                r["article"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn setup() -> (tokio::runtime::Runtime, Gateway, Receiver, Receiver) {
    setup_for("440000")
}

fn setup_for(platform_region: &str) -> (tokio::runtime::Runtime, Gateway, Receiver, Receiver) {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let platform = gw.receiver(&rt);
    let mi_platform = gw.receiver(&rt);
    gw.add_destination("provincial", platform_region, &platform);
    gw.add_destination("medical_insurance_platform", "440000", &mi_platform);
    gw.config.destinations[1].role =
        credit_gateway::config::DestinationRole::MedicalInsurancePlatform;
    gw.config.corrections.dangerous_manual_clock = true;
    gw.config.repairs.check_interval_ms = 100;
    gw.config.objections.check_interval_ms = 100;
    gw.config.lifecycle.check_interval_ms = 100;
    gw.spawn();
    gw.set_clock("2026-09-28T10:00:00+08:00");
    (rt, gw, platform, mi_platform)
}

#[test]
fn each_eligibility_rule_refuses_with_its_article() {
    let (_rt, gw, _platform, mi_platform) = setup_for("540000");
    gw.set_clock("2026-03-02T10:00:00+08:00");
    push(
        &gw,
        vec![
            // Decided 2025-12-01: not six months yet, nor Lhasa's 6-month minimum notice.
            lhasa("R-EARLY", "2025-12-01", "超量开药"),
            // The same type again two months after R-TYPE.
            lhasa("R-TYPE", "2025-01-10", "串换项目"),
            lhasa("R-TYPE-2", "2025-03-10", "串换项目"),
            lhasa("R-FALSE", "2025-02-01", "虚假材料"),
            lhasa("R-AFTER", "2025-02-02", "其他"),
            // Guangdong: LS's rules do not apply, only the national minimum notice period.
            penalty("R-GD", "2026-02-20", "超量开药"),
        ],
    );
    let gd = refused_rules(&apply(&gw, "R-GD"));
    assert_eq!(gd.len(), 1, "{gd:?}");
    assert_eq!(gd[0].0, "minimum-notice-period");
    let early = refused_rules(&apply(&gw, "R-EARLY"));
    assert!(
        early.contains(&("six-months-since-confirmed".into(), "LS Art. 38(3)".into())),
        "{early:?}"
    );
    assert!(early
        .iter()
        .any(|(rule, article)| rule == "minimum-notice-period" && article.contains("第36号")));
    let same = refused_rules(&apply(&gw, "R-TYPE"));
    assert_eq!(
        same,
        vec![(
            "no-same-type-within-six-months".to_string(),
            "LS Art. 38(2)".to_string()
        )]
    );
    // The medical-insurance platform is told of a refusal, with its reasons.
    assert!(wait_until(Duration::from_secs(20), || mi_platform
        .received()
        .iter()
        .any(
            |s| s.kind == "notice" && s.record["repair"]["result"] == "refused"
        )));
    // False materials (LS Art. 41): refused, and no repair for three years.
    let accepted = apply(&gw, "R-FALSE");
    assert_eq!(
        accepted.status,
        201,
        "{}",
        String::from_utf8_lossy(&accepted.body)
    );
    let id = accepted.json()["id"].as_str().unwrap().to_string();
    let decided = post(
        &gw,
        &format!("/v1/repairs/{id}/decide"),
        json!({"approve": false, "reason": "承诺书系伪造", "false_materials": true}),
    );
    assert_eq!(
        decided.status,
        200,
        "{}",
        String::from_utf8_lossy(&decided.body)
    );
    assert_eq!(decided.json()["state"], "refused");
    // GD Art. 39: the finding is recorded in the subject's credit archive, not only in the repair.
    let finding = format!("FALSE-MATERIALS-{id}");
    let archive = gw
        .client(MI)
        .get("/v1/subjects/uscc/91310110666007217T")
        .json();
    let other = archive["categories"]["other_public"]
        .as_array()
        .unwrap_or_else(|| panic!("no other_public record: {archive}"));
    assert!(
        other.iter().any(|h| h["record_id"] == finding.as_str()),
        "{archive}"
    );
    let barred = refused_rules(&apply(&gw, "R-AFTER"));
    assert_eq!(
        barred,
        vec![(
            "false-materials-three-years".to_string(),
            "LS Art. 41".to_string()
        )]
    );
}

#[test]
fn an_approved_repair_is_publicised_then_withdrawn_everywhere_and_marked_repaired() {
    // Lhasa in 2025, while LS was in force: its repeat rule (Art. 40) can be shown too.
    let (_rt, gw, platform, mi_platform) = setup_for("540000");
    gw.set_clock("2025-09-28T10:00:00+08:00");
    push(&gw, vec![lhasa("R-OK", "2025-03-20", "违规收费")]);
    assert!(wait_until(Duration::from_secs(20), || of(
        &platform, "R-OK"
    )
    .len()
        == 2));
    let accepted = apply(&gw, "R-OK");
    assert_eq!(
        accepted.status,
        201,
        "{}",
        String::from_utf8_lossy(&accepted.body)
    );
    let repair = accepted.json();
    let id = repair["id"].as_str().unwrap().to_string();
    assert_eq!(repair["state"], "under_review");
    // LS Art. 40: decided within 10 working days (the holiday does not count).
    let (_, out, _) = gw.cli(&[
        "calendar",
        "deadline",
        "--from",
        "2025-09-28T10:00:00+08:00",
        "--working-days",
        "10",
    ]);
    assert_eq!(
        repair["decision_deadline"],
        out.lines().next().unwrap().trim()
    );
    let approved = post(
        &gw,
        &format!("/v1/repairs/{id}/decide"),
        json!({"approve": true, "reason": "整改到位，符合修复条件"}),
    );
    assert_eq!(
        approved.status,
        200,
        "{}",
        String::from_utf8_lossy(&approved.body)
    );
    let approved = approved.json();
    assert_eq!(approved["state"], "in_publicity");
    let until = approved["publicity_until"].as_str().unwrap().to_string();
    let (_, out, _) = gw.cli(&[
        "calendar",
        "deadline",
        "--from",
        "2025-09-28T10:00:00+08:00",
        "--working-days",
        "5",
    ]);
    assert_eq!(
        until,
        out.lines().next().unwrap().trim(),
        "5 working days (GD Art. 37, LS Art. 40)"
    );
    // The publicity itself goes to the public channel of the platform holding the record.
    assert!(wait_until(Duration::from_secs(20), || platform
        .received()
        .iter()
        .any(|s| s.kind == "notice"
            && s.channel == "public_notice"
            && s.record["repair_publicity"]["id"] == id.as_str())));
    // Not one day earlier...
    gw.set_clock(&until.replace("23:59:59", "23:58:00"));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        of(&platform, "R-OK").len(),
        2,
        "still shown during the publicity"
    );
    // ...then withdrawn from every channel (终止公示, 停止共享), the record kept and marked 修复.
    let after = time::OffsetDateTime::parse(&until, &time::format_description::well_known::Rfc3339)
        .unwrap()
        + time::Duration::seconds(2);
    gw.set_clock(&credit_gateway::clock::rfc3339(after));
    assert!(
        wait_until(Duration::from_secs(20), || of(&platform, "R-OK").len() == 4),
        "{:?}",
        of(&platform, "R-OK")
            .iter()
            .map(|s| (&s.kind, &s.channel))
            .collect::<Vec<_>>()
    );
    let withdrawn: Vec<Received> = of(&platform, "R-OK").into_iter().skip(2).collect();
    assert!(withdrawn
        .iter()
        .all(|s| s.kind == "withdrawal" && s.record["withdrawn"]["reason"] == "repaired"));
    let shown = gw.client(MI).get(&format!("/v1/repairs/{id}")).json();
    assert_eq!(shown["state"], "completed");
    let archive = gw
        .client(MI)
        .get("/v1/subjects/uscc/91310110666007217T")
        .json();
    let history = &archive["categories"]["administrative"][0];
    assert_eq!(
        history["marks"][0]["kind"], "repaired",
        "marked 修复: {archive}"
    );
    assert_eq!(
        history["versions"].as_array().unwrap().len(),
        1,
        "不撤销其失信记录"
    );
    let (code, out, err) = gw.cli(&["repairs", "list", "--state", "completed"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id), "{out}");
    let (code, out, _) = gw.cli(&["repairs", "show", &id]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["state"],
        "completed"
    );
    let view = gw
        .client(MI)
        .get(&format!("/v1/ledger/records/{MI}/R-OK"))
        .json();
    assert!(view["holdings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["events"].as_array().unwrap().last().unwrap()["reason"] == "repaired"));
    assert!(wait_until(Duration::from_secs(20), || mi_platform
        .received()
        .iter()
        .any(
            |s| s.kind == "notice" && s.record["repair"]["result"] == "completed"
        )));
    // A repeat of the same type after the repair bars repair of that type the next year (LS Art. 40).
    push(&gw, vec![lhasa("R-REPEAT", "2025-10-20", "违规收费")]);
    gw.set_clock("2026-05-01T10:00:00+08:00");
    let repeat = refused_rules(&apply(&gw, "R-REPEAT"));
    assert_eq!(
        repeat,
        vec![("repeat-after-repair".to_string(), "LS Art. 40".to_string())]
    );
}

#[test]
fn an_objection_during_the_publicity_suspends_the_repair() {
    let (_rt, gw, platform, _mi) = setup();
    push(&gw, vec![penalty("R-SUS", "2026-03-20", "违规收费")]);
    assert!(wait_until(Duration::from_secs(20), || of(
        &platform, "R-SUS"
    )
    .len()
        == 2));
    let id = apply(&gw, "R-SUS").json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let approved = post(
        &gw,
        &format!("/v1/repairs/{id}/decide"),
        json!({"approve": true, "reason": "符合条件"}),
    )
    .json();
    let until = approved["publicity_until"].as_str().unwrap().to_string();
    gw.set_clock("2026-09-29T09:00:00+08:00");
    let objection = post(
        &gw,
        "/v1/objections",
        json!({"records": [{"record_id": "R-SUS"}], "ground": "otherwise_unlawful", "materials": "公示期内异议"}),
    );
    assert_eq!(
        objection.status,
        201,
        "{}",
        String::from_utf8_lossy(&objection.body)
    );
    let objection_id = objection.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        gw.client(MI).get(&format!("/v1/repairs/{id}")).json()["state"],
        "suspended"
    );
    let after = time::OffsetDateTime::parse(&until, &time::format_description::well_known::Rfc3339)
        .unwrap()
        + time::Duration::hours(30);
    gw.set_clock(&credit_gateway::clock::rfc3339(after));
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        of(&platform, "R-SUS")
            .iter()
            .all(|s| s.kind != "withdrawal"),
        "suspended: not repaired while the objection is open"
    );
    let rejected = post(
        &gw,
        &format!("/v1/objections/{objection_id}/resolve"),
        json!({"outcome": "rejected", "reason": "异议不成立"}),
    );
    assert_eq!(rejected.status, 200);
    assert!(wait_until(Duration::from_secs(20), || of(
        &platform, "R-SUS"
    )
    .iter()
    .any(
        |s| s.kind == "withdrawal" && s.record["withdrawn"]["reason"] == "repaired"
    )));
    assert_eq!(
        gw.client(MI).get(&format!("/v1/repairs/{id}")).json()["state"],
        "completed"
    );
}

/// LS Art. 41: "信用承诺不实或者不履行承诺等弄虚作假行为，将取消其3年内申请信用修复的资格". A
/// commitment found broken after a completed repair is recorded by the agency that made the
/// finding, reaches the subject's archive, and refuses every new application of the subject for
/// three years from the day it was found, not one day longer.
#[test]
fn ls_art_41_a_broken_commitment_after_a_completed_repair_bars_repair_for_three_years() {
    let (_rt, gw, _platform, mi_platform) = setup_for("540000");
    gw.set_clock("2025-09-28T10:00:00+08:00");
    push(
        &gw,
        vec![
            lhasa("R-KEPT", "2025-03-20", "违规收费"),
            lhasa("R-LATER", "2025-04-10", "超量开药"),
        ],
    );
    let accepted = apply(&gw, "R-KEPT");
    assert_eq!(
        accepted.status,
        201,
        "{}",
        String::from_utf8_lossy(&accepted.body)
    );
    let id = accepted.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/repairs/{id}/commitment-broken");
    let finding = json!({"reason": "修复后再次违规收费，未履行信用承诺", "found_on": "2025-10-17"});
    // Only a completed repair: under review, then in publicity, it is a state conflict.
    for expected in ["under_review", "in_publicity"] {
        let early = post(&gw, &path, finding.clone());
        assert_eq!(
            early.status,
            409,
            "{}",
            String::from_utf8_lossy(&early.body)
        );
        assert_eq!(early.json()["error"]["code"], "repair_state");
        let message = early.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            message.contains(expected) && message.contains("completed"),
            "{message}"
        );
        if expected == "under_review" {
            let approved = post(
                &gw,
                &format!("/v1/repairs/{id}/decide"),
                json!({"approve": true, "reason": "整改到位，符合修复条件"}),
            );
            assert_eq!(approved.status, 200);
        }
    }
    let until = gw.client(MI).get(&format!("/v1/repairs/{id}")).json()["publicity_until"]
        .as_str()
        .unwrap()
        .to_string();
    let after = time::OffsetDateTime::parse(&until, &time::format_description::well_known::Rfc3339)
        .unwrap()
        + time::Duration::seconds(2);
    gw.set_clock(&credit_gateway::clock::rfc3339(after));
    assert!(wait_until(Duration::from_secs(20), || gw
        .client(MI)
        .get(&format!("/v1/repairs/{id}"))
        .json()["state"]
        == "completed"));
    gw.set_clock("2025-10-20T10:00:00+08:00");
    // The agency that made the finding records it (as it decides the repair), nobody else.
    let other = gw.client("health").post(
        &path,
        "application/json",
        serde_json::to_vec(&finding).unwrap(),
    );
    assert_eq!(
        other.status,
        403,
        "{}",
        String::from_utf8_lossy(&other.body)
    );
    assert_eq!(other.json()["error"]["code"], "repair_not_allowed");
    // A reason and a real day, not in the future.
    for bad in [
        json!({"reason": " ", "found_on": "2025-10-17"}),
        json!({"reason": "未履行承诺", "found_on": "2025-10-21"}),
        json!({"reason": "未履行承诺", "found_on": "17/10/2025"}),
    ] {
        let refused = post(&gw, &path, bad.clone());
        assert_eq!(refused.status, 422, "{bad}");
        assert_eq!(refused.json()["error"]["code"], "invalid_repair", "{bad}");
    }
    let recorded = post(&gw, &path, finding.clone());
    assert_eq!(
        recorded.status,
        200,
        "{}",
        String::from_utf8_lossy(&recorded.body)
    );
    let recorded = recorded.json();
    let record_id = format!("BROKEN-COMMITMENT-{id}");
    assert_eq!(recorded["state"], "completed", "the repair itself stands");
    assert_eq!(recorded["commitment_broken"]["found_on"], "2025-10-17");
    assert_eq!(recorded["commitment_broken"]["by"], MI);
    assert_eq!(
        recorded["commitment_broken"]["record_id"],
        record_id.as_str()
    );
    // Sent twice: the same answer, nothing written again; a different finding is a conflict.
    let again = post(&gw, &path, finding.clone());
    assert_eq!(again.status, 200);
    assert_eq!(
        again.json()["commitment_broken"],
        recorded["commitment_broken"]
    );
    let different = post(
        &gw,
        &path,
        json!({"reason": "另一事由", "found_on": "2025-10-18"}),
    );
    assert_eq!(different.status, 409);
    assert_eq!(different.json()["error"]["code"], "repair_state");
    let (_, audit) = gw.admin_get("/audit/entries?kind=repair_commitment_broken&limit=1000");
    let audit: Value = serde_json::from_str(&audit).unwrap();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "audited once: {audit}");
    assert_eq!(entries[0]["data"]["repair_id"], id.as_str());
    assert_eq!(
        entries[0]["data"]["commitment_broken"]["found_on"],
        "2025-10-17"
    );
    // The finding is a record of the subject's own, in its archive (like false materials).
    let archive = gw
        .client(MI)
        .get("/v1/subjects/uscc/91310110666007217T")
        .json();
    let found = archive["categories"]["other_public"]
        .as_array()
        .unwrap_or_else(|| panic!("no other_public record: {archive}"))
        .iter()
        .find(|h| h["record_id"] == record_id.as_str())
        .unwrap_or_else(|| panic!("no {record_id}: {archive}"))
        .clone();
    let record = &found["versions"][0]["record"];
    assert_eq!(record["content"]["finding"], "commitment_broken", "{found}");
    assert_eq!(record["content"]["legal_basis"], "LS Art. 41");
    assert_eq!(record["basis"]["decided_on"], "2025-10-17");
    // The repaired record keeps its 修复 mark: the article bars new repairs, it undoes none.
    let repaired = archive["categories"]["administrative"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["record_id"] == "R-KEPT")
        .unwrap()
        .clone();
    assert_eq!(repaired["marks"][0]["kind"], "repaired", "{repaired}");
    // The medical-insurance platform is told, so the subject learns it.
    assert!(wait_until(Duration::from_secs(20), || mi_platform
        .received()
        .iter()
        .any(|s| s.kind == "notice"
            && s.record["repair"]["result"] == "commitment_broken"
            && s.record["repair"]["commitment_broken"]["found_on"]
                == "2025-10-17")));
    // Any new application of the subject within the three years is refused by LS Art. 41...
    let barred = apply(&gw, "R-LATER");
    let body = barred.json();
    assert_eq!(
        refused_rules(&barred),
        vec![(
            "false-materials-three-years".to_string(),
            "LS Art. 41".to_string()
        )]
    );
    let reason = body["error"]["refusals"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("broken") && reason.contains("2028-10-17"),
        "{reason}"
    );
    // ...to its last minute...
    gw.set_clock("2028-10-16T23:59:00+08:00");
    assert_eq!(
        refused_rules(&apply(&gw, "R-LATER")),
        vec![(
            "false-materials-three-years".to_string(),
            "LS Art. 41".to_string()
        )]
    );
    // ...and not on this ground once they have passed.
    gw.set_clock("2028-10-17T00:00:01+08:00");
    let free = apply(&gw, "R-LATER");
    if free.status != 201 {
        let refusals = refused_rules(&free);
        assert!(
            refusals.iter().all(|(_, article)| article != "LS Art. 41"),
            "{refusals:?}"
        );
    }
    assert_eq!(free.status, 201, "{}", String::from_utf8_lossy(&free.body));
}
