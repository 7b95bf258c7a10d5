//! End to end: credit evaluation through the real binary with the manual clock and the shipped
//! scoring profiles (`mappings/scoring/`): grades at each boundary (LS Art. 19), a serious listing
//! makes E (GD Art. 20), validity (GD Art. 19), the yearly cycle and its carry-over (LS Art. 20),
//! grade notices (GD Art. 22), authorized queries (GD Art. 21), joint punishment (GD Art. 29) and
//! the yearly publication (LS Art. 27).

mod common;

use std::time::Duration;

use common::receiver::{Received, Receiver};
use common::{multi_thread_runtime, resident_id, uscc_in, wait_until, Gateway};
use serde_json::{json, Value};

const MI: &str = "medical_insurance";

fn penalty(
    uscc: &str,
    region: &str,
    record_id: &str,
    decided: &str,
    severity: Option<&str>,
) -> Value {
    let mut content = json!({"action": "penalty", "authority": "医疗保障局", "penalty_types": ["罚款"],
                             "fine_yuan": "20000", "violation_type": "违规收费"});
    if let Some(s) = severity {
        content["severity"] = json!(s);
    }
    json!({
        "category": "administrative",
        "subject": {"kind": "institution", "role": "designated_retail_pharmacy",
                    "id_type": "uscc", "id": uscc, "name": format!("药房{uscc}")},
        "source": {"record_id": record_id, "region": region},
        "basis": {"doc_type": "penalty_decision", "doc_number": format!("医保罚〔2025〕{record_id}号"), "decided_on": decided},
        "disclosure": {"class": "public"},
        "content": content
    })
}

fn push_as(gw: &Gateway, agency: &str, records: Vec<Value>) {
    gw.push_canonical(agency, &records);
}

fn push(gw: &Gateway, records: Vec<Value>) {
    push_as(gw, MI, records)
}

/// The subject's results (newest first) as the operator sees them.
fn results(gw: &Gateway, id_type: &str, id: &str) -> Vec<Value> {
    let (status, body) = gw.admin_get(&format!("/evaluation/show?id_type={id_type}&id={id}"));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("grade").is_some())
        .cloned()
        .collect()
}

/// Wait until the subject's result of `year` satisfies `check`; returns it.
fn wait_result(
    gw: &Gateway,
    id_type: &str,
    id: &str,
    year: i64,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(Duration::from_secs(20), || {
        if let Some(r) = results(gw, id_type, id)
            .into_iter()
            .find(|r| r["year"] == year)
        {
            last = r;
            check(&last)
        } else {
            false
        }
    });
    assert!(
        ok,
        "result of {year} never satisfied the check; last: {last}"
    );
    last
}

/// Grade notices to the medical-insurance platform about one subject, one per idempotency key.
fn notices(mi: &Receiver, id: &str) -> Vec<Received> {
    let mut seen = std::collections::HashSet::new();
    mi.received()
        .into_iter()
        .filter(|s| {
            s.kind == "notice"
                && s.record["type"] == "evaluation_result"
                && s.record["subject"]["id"] == id
        })
        .filter(|s| seen.insert(s.idempotency_key.clone()))
        .collect()
}

fn setup(
    platform_region: &str,
    start: &str,
    tweak: impl FnOnce(&mut credit_gateway::config::Config),
) -> (tokio::runtime::Runtime, Gateway, Receiver, Receiver) {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let platform = gw.receiver(&rt);
    let mi_platform = gw.receiver(&rt);
    gw.add_destination("provincial", platform_region, &platform);
    gw.add_destination("medical_insurance_platform", platform_region, &mi_platform);
    gw.config.destinations[1].role =
        credit_gateway::config::DestinationRole::MedicalInsurancePlatform;
    gw.config.corrections.dangerous_manual_clock = true;
    gw.config.evaluation.check_interval_ms = 100;
    gw.config.lifecycle.check_interval_ms = 100;
    gw.config.repairs.check_interval_ms = 100;
    gw.config.objections.check_interval_ms = 100;
    tweak(&mut gw.config);
    gw.start_clock_at(start);
    gw.spawn();
    (rt, gw, platform, mi_platform)
}

#[test]
fn scores_at_each_grade_boundary_with_reasons_and_one_notice_per_grade_change() {
    // Lhasa, 2025 (LS in force): the institution profile deducts 5 for a penalty without a
    // severity class, 2 for a minor one and 8 for a general one (documented examples).
    let (_rt, gw, _platform, mi) = setup("540000", "2025-06-02T10:00:00+08:00", |_| {});
    let s = uscc_in("540102", 1);
    // LS Art. 19: A >= 95 > B >= 85 > C >= 75 > D >= 65 > E.
    let steps: [(Option<&str>, i64, &str); 8] = [
        (None, 95, "A"),
        (Some("minor"), 93, "B"),
        (Some("general"), 85, "B"),
        (Some("minor"), 83, "C"),
        (Some("general"), 75, "C"),
        (Some("minor"), 73, "D"),
        (Some("general"), 65, "D"),
        (Some("minor"), 63, "E"),
    ];
    let mut told: Option<&str> = None;
    for (i, (severity, points, grade)) in steps.iter().enumerate() {
        let before = notices(&mi, &s).len();
        push(
            &gw,
            vec![penalty(
                &s,
                "540102",
                &format!("LS-P{i}"),
                "2025-03-01",
                *severity,
            )],
        );
        let r = wait_result(&gw, "uscc", &s, 2025, |r| r["points"] == *points);
        assert_eq!(r["grade"], *grade, "{points} points: {r}");
        let reasons = r["reasons"].as_array().unwrap();
        assert_eq!(
            reasons.len(),
            i + 1,
            "each record that moved the score is a reason: {r}"
        );
        let last = reasons
            .iter()
            .find(|x| x["record_id"] == format!("LS-P{i}"))
            .unwrap();
        assert_eq!(last["agency"], MI);
        assert!(last["item"].as_str().unwrap().starts_with("penalty"));
        assert_eq!(r["profile"], "ls-institution");
        assert_eq!(r["method"], "deduction");
        // GD Art. 22: exactly one notice per change of grade (the first result is notified too).
        let changed = told != Some(*grade);
        let expected = before + usize::from(changed);
        assert!(
            wait_until(Duration::from_secs(20), || notices(&mi, &s).len()
                >= expected),
            "step {i}: {} notices, expected {expected}",
            notices(&mi, &s).len()
        );
        std::thread::sleep(Duration::from_millis(400));
        let all = notices(&mi, &s);
        assert_eq!(
            all.len(),
            expected,
            "step {i}: no second notice for one change"
        );
        if changed {
            let n = &all.last().unwrap().record;
            assert_eq!(n["grade"], *grade);
            assert_eq!(n["previous_grade"], json!(told));
            assert_eq!(n["points"], *points);
            assert_eq!(n["reasons"].as_array().unwrap().len(), i + 1);
            assert!(n["basis"]
                .as_array()
                .unwrap()
                .contains(&json!("GD Art. 22")));
            // The notice date starts the objection window of LS Art. 21.
            assert_eq!(r["notified_on"], "2025-06-02");
        }
        told = Some(grade);
    }
}

#[test]
fn a_serious_listing_makes_e_at_100_points_and_is_named_as_the_reason_gd_arts_20_22() {
    // Guangdong, 2025. Market supervision's serious-dishonesty list moves no point of the
    // medical-insurance indicator table, yet the grade is E.
    let (_rt, gw, _platform, _mi) = setup("440000", "2025-05-06T10:00:00+08:00", |c| {
        for a in &mut c.agencies {
            if a.id == "market_supervision" {
                a.mappings.push("canonical".into());
            }
        }
    });
    let s = uscc_in("440106", 2);
    push_as(
        &gw,
        "market_supervision",
        vec![json!({
            "category": "dishonest_list",
            "subject": {"kind": "institution", "role": "other_enterprise", "id_type": "uscc", "id": s, "name": "某公司"},
            "source": {"record_id": "SX-1", "region": "440106"},
            "basis": {"doc_type": "other", "doc_number": "粤市监信〔2025〕1号", "decided_on": "2025-04-01"},
            "disclosure": {"class": "public"},
            "content": {"list_name": "严重违法失信名单", "listed_on": "2025-04-01", "authority": "广东省市场监督管理局",
                        "serious_dishonesty": true}
        })],
    );
    let r = wait_result(&gw, "uscc", &s, 2025, |r| r["grade"] == "E");
    assert_eq!(r["points"], 100, "{r}");
    assert_eq!(r["serious_dishonesty"], true);
    // No point moved, yet the change of grade names its reason and basis (GD Art. 22; issue #26
    // found `"reasons": []` here): the listing, with no points of its own.
    let reasons = r["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{r}");
    assert_eq!(reasons[0]["record_id"], "SX-1");
    assert_eq!(reasons[0]["points"], 0);
    assert!(
        reasons[0]["item"].as_str().unwrap().contains("GD Art. 20"),
        "{r}"
    );
    assert!(r["grade_rule"].as_str().unwrap().contains("GD Art. 20"));
}

#[test]
fn a_record_past_its_validity_stops_counting_gd_art_19() {
    let (_rt, gw, _platform, mi) = setup("540000", "2025-06-20T10:00:00+08:00", |_| {});
    let s = uscc_in("540102", 3);
    let mut p = penalty(&s, "540102", "V-1", "2025-03-01", Some("serious"));
    p["valid_until"] = json!("2025-06-30");
    push(&gw, vec![p]);
    let r = wait_result(&gw, "uscc", &s, 2025, |r| r["points"] == 85);
    assert_eq!(r["grade"], "B");
    // The last day of its validity it still counts...
    gw.set_clock("2025-06-30T23:00:00+08:00");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(results(&gw, "uscc", &s)[0]["points"], 85);
    // ...the next day it does not: an evaluation timer brings the subject back by itself.
    gw.set_clock("2025-07-01T00:00:05+08:00");
    let r = wait_result(&gw, "uscc", &s, 2025, |r| r["points"] == 100);
    assert_eq!(r["grade"], "A");
    assert!(r["reasons"].as_array().unwrap().is_empty());
    assert!(wait_until(Duration::from_secs(20), || notices(&mi, &s)
        .iter()
        .any(
            |n| n.record["previous_grade"] == "B" && n.record["grade"] == "A"
        )));
}

/// Whether a platform got a withdrawal on every channel it was shared on.
fn withdrawn_everywhere(received: &[Received]) -> bool {
    let channels = |kind: &str| -> std::collections::HashSet<String> {
        received
            .iter()
            .filter(|x| x.kind == kind)
            .map(|x| x.channel.clone())
            .collect()
    };
    let shared = channels("share");
    !shared.is_empty() && shared == channels("withdrawal")
}

/// Apply for, approve and complete the repair of one record (GD Arts. 35-39).
fn repair(gw: &Gateway, record_id: &str, from: &str) {
    let post = |path: &str, body: Value| {
        gw.client(MI)
            .post(path, "application/json", serde_json::to_vec(&body).unwrap())
    };
    let applied = post(
        "/v1/repairs",
        json!({"records": [{"record_id": record_id}], "materials": "修复材料", "commitment": "信用承诺书"}),
    );
    assert_eq!(
        applied.status,
        201,
        "{}",
        String::from_utf8_lossy(&applied.body)
    );
    let id = applied.json()["id"].as_str().unwrap().to_string();
    let approved = post(
        &format!("/v1/repairs/{id}/decide"),
        json!({"approve": true, "reason": "整改到位"}),
    );
    assert_eq!(
        approved.status,
        200,
        "{}",
        String::from_utf8_lossy(&approved.body)
    );
    let until = approved.json()["publicity_until"]
        .as_str()
        .unwrap()
        .to_string();
    let after = time::OffsetDateTime::parse(&until, &time::format_description::well_known::Rfc3339)
        .unwrap()
        + time::Duration::seconds(2);
    gw.set_clock(&credit_gateway::clock::rfc3339(after));
    assert!(
        wait_until(Duration::from_secs(20), || gw
            .client(MI)
            .get(&format!("/v1/repairs/{id}"))
            .json()["state"]
            == "completed"),
        "repair of {record_id} from {from} never completed"
    );
}

#[test]
fn across_the_year_a_d_subject_carries_its_points_a_b_subject_returns_to_base_and_repaired_points_are_not_carried(
) {
    // Guangdong (its profile takes LS Art. 20's cycle as the documented example).
    let (_rt, gw, _platform, _mi) = setup("440000", "2025-10-09T10:00:00+08:00", |_| {});
    let d = uscc_in("440106", 4);
    let b = uscc_in("440106", 5);
    push(
        &gw,
        vec![
            penalty(&d, "440106", "D-1", "2025-01-10", Some("serious")),
            penalty(&d, "440106", "D-2", "2025-02-10", Some("serious")),
            penalty(&d, "440106", "D-3", "2025-03-10", Some("general")),
            penalty(&b, "440106", "B-1", "2025-03-10", Some("general")),
        ],
    );
    let r = wait_result(&gw, "uscc", &d, 2025, |r| r["points"] == 62);
    assert_eq!(r["grade"], "E");
    wait_result(&gw, "uscc", &b, 2025, |r| r["points"] == 92);
    // The general penalty is repaired (its 3-month minimum notice has run): 8 points come back.
    repair(&gw, "D-3", "2025-10-09");
    let r = wait_result(&gw, "uscc", &d, 2025, |r| r["points"] == 70);
    assert_eq!(r["grade"], "D");
    // A new natural year (LS Art. 20): the cycle runs over every subject.
    gw.set_clock("2026-01-05T09:00:00+08:00");
    let r = wait_result(&gw, "uscc", &d, 2026, |_| true);
    assert_eq!(
        r["points"], 70,
        "D carries its unrepaired points, not the repaired one: {r}"
    );
    assert_eq!(r["grade"], "D");
    assert_eq!(r["carried_since"], 2025);
    let reasons = r["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 2);
    assert!(reasons
        .iter()
        .all(|x| x["carried"] == true && x["record_id"] != "D-3"));
    let r = wait_result(&gw, "uscc", &b, 2026, |_| true);
    assert_eq!(r["points"], 100, "B returns to the base score: {r}");
    assert_eq!(r["grade"], "A");
    assert_eq!(r["carried_since"], 2026);
    let (status, body) = gw.admin_get("/evaluation/cycles");
    assert_eq!(status, 200);
    let cycles: Value = serde_json::from_str(&body).unwrap();
    let c2026 = cycles["cycles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["year"] == 2026)
        .unwrap()
        .clone();
    assert!(c2026["finished_at"].is_string(), "{c2026}");
    assert_eq!(c2026["done"], c2026["total"]);
}

#[test]
fn a_cycle_killed_half_way_resumes_and_finishes_with_the_same_result() {
    let (_rt, mut gw, _platform, mi) = setup("440000", "2025-11-03T10:00:00+08:00", |c| {
        c.evaluation.cycle_batch = 2;
        c.evaluation.cycle_pace_ms = 150;
    });
    let n = 40;
    let ids: Vec<String> = (0..n).map(|i| uscc_in("440106", 100 + i)).collect();
    let mut records = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        records.push(penalty(
            id,
            "440106",
            &format!("K-{i}-a"),
            "2025-03-10",
            Some("general"),
        ));
        if i % 2 == 1 {
            // 100 - 8 - 15 - 15 = 62: E, which carries.
            records.push(penalty(
                id,
                "440106",
                &format!("K-{i}-b"),
                "2025-04-10",
                Some("serious"),
            ));
            records.push(penalty(
                id,
                "440106",
                &format!("K-{i}-c"),
                "2025-05-10",
                Some("serious"),
            ));
        }
    }
    push(&gw, records);
    for id in &ids {
        wait_result(&gw, "uscc", id, 2025, |_| true);
    }
    gw.set_clock("2026-01-05T09:00:00+08:00");
    let cycle = |gw: &Gateway| -> Option<Value> {
        let (_, body) = gw.admin_get("/evaluation/cycles");
        let v: Value = serde_json::from_str(&body).ok()?;
        v["cycles"]
            .as_array()?
            .iter()
            .find(|c| c["year"] == 2026)
            .cloned()
    };
    assert!(
        wait_until(Duration::from_secs(30), || cycle(&gw).is_some_and(|c| c
            ["done"]
            .as_u64()
            .unwrap()
            >= 6)),
        "the cycle never progressed"
    );
    let at_kill = cycle(&gw).unwrap();
    assert!(
        at_kill["finished_at"].is_null(),
        "killed before the end: {at_kill}"
    );
    gw.kill();
    gw.spawn();
    assert!(
        wait_until(Duration::from_secs(60), || cycle(&gw)
            .is_some_and(|c| c["finished_at"].is_string())),
        "the cycle never finished after the restart"
    );
    let done = cycle(&gw).unwrap();
    assert_eq!(done["done"], done["total"]);
    assert!(done["done"].as_u64().unwrap() >= n as u64);
    for (i, id) in ids.iter().enumerate() {
        let r = wait_result(&gw, "uscc", id, 2026, |_| true);
        if i % 2 == 1 {
            assert_eq!(
                (r["points"].as_i64(), r["grade"].as_str()),
                (Some(62), Some("E")),
                "{id}: {r}"
            );
        } else {
            assert_eq!(
                (r["points"].as_i64(), r["grade"].as_str()),
                (Some(100), Some("A")),
                "{id}: {r}"
            );
        }
    }
    // One 2026 result each, so one notice each: none doubled by the crash.
    assert!(wait_until(Duration::from_secs(30), || ids.iter().all(
        |id| notices(&mi, id)
            .iter()
            .filter(|n| n.record["year"] == 2026)
            .count()
            == 1
    )));
    std::thread::sleep(Duration::from_millis(500));
    for id in &ids {
        let of_2026 = notices(&mi, id)
            .into_iter()
            .filter(|n| n.record["year"] == 2026)
            .count();
        assert_eq!(of_2026, 1, "{id}");
    }
}

#[test]
fn authorized_queries_are_answered_for_the_authorized_subject_only_gd_art_21() {
    let keys = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run_cli(
        keys.path(),
        &["authz", "keygen", "--dir", keys.path().to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let public = keys.path().join("authz-issuer.pem");
    let private = keys.path().join("authz-issuer-key.pem");
    let (_rt, gw, _platform, _mi) = setup("540000", "2025-06-02T10:00:00+08:00", |c| {
        c.evaluation.authorization_keys = vec![public.clone()];
    });
    let s = uscc_in("540102", 6);
    let other = uscc_in("540102", 7);
    push(
        &gw,
        vec![
            penalty(&s, "540102", "Q-1", "2025-03-01", Some("general")),
            penalty(&other, "540102", "Q-2", "2025-03-01", None),
        ],
    );
    wait_result(&gw, "uscc", &s, 2025, |r| r["points"] == 92);
    wait_result(&gw, "uscc", &other, 2025, |r| r["points"] == 95);
    let issue = |id: &str, at: &str, minutes: &str| -> String {
        let (code, out, err) = common::run_cli(
            keys.path(),
            &[
                "authz",
                "issue",
                "--key",
                private.to_str().unwrap(),
                "--id-type",
                "uscc",
                "--id",
                id,
                "--at",
                at,
                "--minutes",
                minutes,
            ],
        );
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    };
    // Any agency with a certificate may ask (a bank, a platform), with the subject's token.
    let ask = |token: Option<&str>, id: &str| {
        let header = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = header
            .iter()
            .map(|h| ("authorization", h.as_str()))
            .collect();
        gw.client("provincial_credit_platform")
            .request_with(
                "GET",
                &format!("/v1/evaluations/uscc/{id}"),
                None,
                &headers,
                Vec::new(),
            )
            .unwrap()
    };
    let token = issue(&s, "2025-06-02T09:58:00+08:00", "10");
    let ok = ask(Some(&token), &s);
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let answer = ok.json();
    assert_eq!(answer["evaluation"]["grade"], "B");
    assert_eq!(answer["evaluation"]["points"], 92);
    assert_eq!(answer["evaluation"]["reasons"][0]["record_id"], "Q-1");
    // Expired on the gateway's clock.
    let old = issue(&s, "2025-06-02T09:00:00+08:00", "10");
    let r = ask(Some(&old), &s);
    assert_eq!(
        (
            r.status,
            r.json()["error"]["code"].as_str().map(String::from)
        ),
        (401, Some("authorization_expired".into()))
    );
    // Tampered: the payload changed to name the other subject, the signature kept.
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let other_token = issue(&other, "2025-06-02T09:58:00+08:00", "10");
    parts[1] = other_token.split('.').nth(1).unwrap().to_string();
    let tampered = parts.join(".");
    let r = ask(Some(&tampered), &other);
    assert_eq!(
        (
            r.status,
            r.json()["error"]["code"].as_str().map(String::from)
        ),
        (401, Some("authorization_invalid".into()))
    );
    // A valid token for one subject does not open another.
    let r = ask(Some(&token), &other);
    assert_eq!(
        (
            r.status,
            r.json()["error"]["code"].as_str().map(String::from)
        ),
        (403, Some("authorization_other_subject".into()))
    );
    let r = ask(None, &s);
    assert_eq!(
        (
            r.status,
            r.json()["error"]["code"].as_str().map(String::from)
        ),
        (401, Some("authorization_missing".into()))
    );
    // Every query is in the audit chain, answered or refused, without the token.
    let mut gw = gw;
    gw.stop();
    let (code, out, err) = gw.cli(&["audit", "show", "--limit", "100000"]);
    assert_eq!(code, 0, "{err}");
    let queries: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "evaluation_query")
        .collect();
    assert_eq!(queries.len(), 5, "{queries:?}");
    assert_eq!(
        queries
            .iter()
            .filter(|q| q["data"]["outcome"] == "answered")
            .count(),
        1
    );
    assert!(
        !out.contains(&token),
        "a token never reaches the audit chain"
    );
}

#[test]
fn an_institutions_serious_listing_reaches_its_legal_representative_and_leaves_with_its_repair() {
    // Guangdong, 2026 before GD's end (Art. 43: to 2026-06-30); the listing is over a year old,
    // past the minimum notice of serious misconduct, so it can be repaired.
    let (_rt, gw, platform, _mi) = setup("440000", "2026-02-02T10:00:00+08:00", |_| {});
    let s = uscc_in("440106", 8);
    let person = resident_id("44010619800101123");
    push(
        &gw,
        vec![json!({
            "category": "dishonest_list",
            "subject": {"kind": "institution", "role": "designated_medical_institution", "id_type": "uscc", "id": s, "name": "某医院"},
            "source": {"record_id": "L-1", "region": "440106"},
            "basis": {"doc_type": "penalty_decision", "doc_number": "粤医保罚〔2025〕9号", "decided_on": "2025-01-06"},
            "disclosure": {"class": "public"},
            "content": {"list_name": "医疗保障领域严重失信主体名单", "listed_on": "2025-01-06", "authority": "广东省医疗保障局",
                        "serious_dishonesty": true, "severity": "serious",
                        "legal_representative": "张三", "legal_representative_id_type": "resident_id",
                        "legal_representative_id": person}
        })],
    );
    let r = wait_result(&gw, "uscc", &s, 2026, |r| r["grade"] == "E");
    assert_eq!(r["serious_dishonesty"], true);
    // GD Art. 29: the person's own archive holds a linked record, shared as the rules say.
    let person_result = wait_result(&gw, "resident_id", &person, 2026, |r| r["grade"] == "E");
    let link_id = person_result["reasons"][0]["record_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(link_id.starts_with("LINK-"), "{person_result}");
    let archive = gw
        .client(MI)
        .get(&format!("/v1/subjects/resident_id/{person}"))
        .json();
    let linked = &archive["categories"]["dishonest_list"][0];
    assert_eq!(linked["record_id"], link_id.as_str());
    let content =
        serde_json::from_str::<Value>(&linked["versions"][0]["record"].to_string()).unwrap();
    assert_eq!(content["content"]["linked_to"]["record_id"], "L-1");
    assert_eq!(
        content["content"]["linked_to"]["role"],
        "legal_representative"
    );
    let of = |id: &str| -> Vec<Received> {
        platform
            .received()
            .into_iter()
            .filter(|x| {
                x.record
                    .pointer("/source/record_id")
                    .and_then(Value::as_str)
                    == Some(id)
            })
            .collect()
    };
    assert!(wait_until(Duration::from_secs(20), || of(&link_id)
        .iter()
        .any(|x| x.kind == "share")));
    // The listing is repaired: the linked record is withdrawn with it, and the person's grade
    // no longer counts it.
    repair(&gw, "L-1", "2026-02-02");
    assert!(
        wait_until(Duration::from_secs(20), || withdrawn_everywhere(&of(
            &link_id
        ))),
        "{:?}",
        of(&link_id)
            .iter()
            .map(|x| (&x.kind, &x.channel))
            .collect::<Vec<_>>()
    );
    let r = wait_result(&gw, "resident_id", &person, 2026, |r| r["grade"] == "A");
    assert_eq!(r["points"], 100);
}

#[test]
fn results_are_published_once_a_year_after_the_objection_window_by_grade_ls_art_27() {
    let (_rt, gw, platform, _mi) = setup("540000", "2025-12-22T10:00:00+08:00", |_| {});
    let a = uscc_in("540102", 9);
    let b = uscc_in("540102", 10);
    push(
        &gw,
        vec![
            penalty(&a, "540102", "PUB-A", "2025-03-01", None),
            penalty(&b, "540102", "PUB-B", "2025-03-01", Some("general")),
        ],
    );
    wait_result(&gw, "uscc", &a, 2025, |r| r["grade"] == "A");
    wait_result(&gw, "uscc", &b, 2025, |r| r["grade"] == "B");
    let publish = || {
        gw.client(MI).post(
            "/v1/evaluations/2025/publish",
            "application/json",
            Vec::new(),
        )
    };
    // Not during its own year.
    let r = publish();
    assert_eq!(
        (
            r.status,
            r.json()["error"]["code"].as_str().map(String::from)
        ),
        (409, Some("cycle_not_ended".into()))
    );
    // Only the publishing department.
    let r = gw.client("tax").post(
        "/v1/evaluations/2025/publish",
        "application/json",
        Vec::new(),
    );
    assert_eq!(r.status, 403);
    // 2026-01-05: the objection window (10 working days from the 2025-12-22 notice, New Year's
    // Day off) is still open.
    gw.set_clock("2026-01-05T10:00:00+08:00");
    let r = publish().json();
    assert_eq!(r["published"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(r["held"].as_array().unwrap().len(), 2);
    assert!(r["held"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("LS Art. 21"));
    gw.set_clock("2026-01-12T10:00:00+08:00");
    let r = publish().json();
    assert_eq!(r["published"].as_array().unwrap().len(), 2, "{r}");
    // LS Art. 27: A is noticed publicly and shared with government; B neither.
    let published = |grade: &str| -> Vec<Received> {
        platform
            .received()
            .into_iter()
            .filter(|x| {
                x.record.pointer("/content/grade") == Some(&json!(grade))
                    && x.record
                        .pointer("/source/record_id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id.starts_with("PUB-2025-"))
            })
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(20), || {
            let mut channels: Vec<String> =
                published("A").iter().map(|x| x.channel.clone()).collect();
            channels.sort();
            channels.dedup();
            channels == ["gov_share", "public_notice"]
        }),
        "{:?}",
        published("A")
            .iter()
            .map(|x| &x.channel)
            .collect::<Vec<_>>()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(published("B").is_empty());
    // Once a year: publishing again changes nothing.
    let r = publish().json();
    assert_eq!(r["published"].as_array().unwrap().len(), 0);
    assert_eq!(r["already_published"], 2);
}

#[test]
fn an_objection_to_a_result_runs_from_its_notice_and_the_medical_insurance_department_resolves_it_ls_art_21(
) {
    let (_rt, gw, _platform, _mi) = setup("540000", "2025-06-03T10:00:00+08:00", |_| {});
    let s = uscc_in("540102", 11);
    push(
        &gw,
        vec![penalty(&s, "540102", "OB-1", "2025-03-01", Some("general"))],
    );
    let r = wait_result(&gw, "uscc", &s, 2025, |r| r["points"] == 92);
    assert_eq!(r["notified_on"], "2025-06-03");
    let record_id = r["record"]["record_id"].as_str().unwrap().to_string();
    let filed = gw.client(MI).post(
        "/v1/objections",
        "application/json",
        serde_json::to_vec(
            &json!({"records": [{"agency": "credit_evaluation", "record_id": record_id}],
                                   "ground": "error_or_omission", "materials": "评价结果异议申诉"}),
        )
        .unwrap(),
    );
    assert_eq!(
        filed.status,
        201,
        "{}",
        String::from_utf8_lossy(&filed.body)
    );
    let objection = filed.json();
    // The 10 working days run from the notice the gateway sent, not from a date the filer gives.
    let (_, out, _) = gw.cli(&[
        "calendar",
        "deadline",
        "--from",
        "2025-06-03T10:00:00+08:00",
        "--working-days",
        "10",
    ]);
    assert_eq!(
        objection["filing_deadline"],
        out.lines().next().unwrap().trim()
    );
    let id = objection["id"].as_str().unwrap();
    let resolved = gw.client(MI).post(
        &format!("/v1/objections/{id}/resolve"),
        "application/json",
        serde_json::to_vec(&json!({"outcome": "rejected", "reason": "评价依据的处罚决定有效"}))
            .unwrap(),
    );
    assert_eq!(
        resolved.status,
        200,
        "{}",
        String::from_utf8_lossy(&resolved.body)
    );
    // Another agency may not decide on the department's result.
    let other = gw.client("tax").post(
        &format!("/v1/objections/{id}/resolve"),
        "application/json",
        serde_json::to_vec(&json!({"outcome": "rejected", "reason": "x"})).unwrap(),
    );
    assert_ne!(other.status, 200);
}

#[test]
fn a_listing_corrected_to_no_longer_serious_takes_its_linked_records_with_it() {
    let (_rt, gw, platform, _mi) = setup("440000", "2026-02-02T10:00:00+08:00", |_| {});
    let s = uscc_in("440106", 12);
    let person = resident_id("44010619850505123");
    let listing = |serious: bool| {
        json!({
            "category": "dishonest_list",
            "subject": {"kind": "institution", "role": "designated_medical_institution", "id_type": "uscc", "id": s, "name": "某诊所"},
            "source": {"record_id": "L-2", "region": "440106"},
            "basis": {"doc_type": "penalty_decision", "doc_number": "粤医保罚〔2025〕10号", "decided_on": "2025-12-01"},
            "disclosure": {"class": "public"},
            "content": {"list_name": "医疗保障领域严重失信主体名单", "listed_on": "2025-12-01", "authority": "广东省医疗保障局",
                        "serious_dishonesty": serious,
                        "responsible_persons": [{"role": "principal", "id_type": "resident_id", "id": person, "name": "李四"}]}
        })
    };
    push(&gw, vec![listing(true)]);
    let r = wait_result(&gw, "resident_id", &person, 2026, |r| r["grade"] == "E");
    let link_id = r["reasons"][0]["record_id"].as_str().unwrap().to_string();
    let of = |id: &str| -> Vec<Received> {
        platform
            .received()
            .into_iter()
            .filter(|x| {
                x.record
                    .pointer("/source/record_id")
                    .and_then(Value::as_str)
                    == Some(id)
            })
            .collect()
    };
    assert!(wait_until(Duration::from_secs(20), || of(&link_id)
        .iter()
        .any(|x| x.kind == "share")));
    // GD Art. 31: the department corrects its listing; the person's linked record goes with it.
    push(&gw, vec![listing(false)]);
    assert!(
        wait_until(Duration::from_secs(20), || withdrawn_everywhere(&of(
            &link_id
        ))),
        "{:?}",
        of(&link_id)
            .iter()
            .map(|x| (&x.kind, &x.channel))
            .collect::<Vec<_>>()
    );
    let r = wait_result(&gw, "resident_id", &person, 2026, |r| r["grade"] == "A");
    assert_eq!(r["points"], 100);
    // Listed again: the link stands again and is published again (its mark change travels ahead
    // of ordinary traffic, as a `marking`).
    let published = |all: Vec<Received>| all.iter().filter(|x| x.kind != "withdrawal").count();
    let before = published(of(&link_id));
    push(&gw, vec![listing(true)]);
    assert!(wait_until(Duration::from_secs(20), || published(of(
        &link_id
    )) > before));
    wait_result(&gw, "resident_id", &person, 2026, |r| r["grade"] == "E");
}

/// Issue #31: a record sent again for another subject (a corrected attribution) moves: the first
/// subject's archive, evaluation and exit no longer see it, the second's do, the move is
/// audited, and the first subject's exit withdraws nothing of the second's from the platforms.
#[test]
fn a_record_moved_to_another_subject_belongs_only_to_it_in_archives_evaluations_and_exits() {
    let (_rt, gw, platform, _mi) = setup("540000", "2025-06-02T10:00:00+08:00", |_| {});
    let (a, b) = (uscc_in("540102", 31), uscc_in("540102", 32));
    push(
        &gw,
        vec![penalty(&a, "540102", "MOVE-1", "2025-03-01", None)],
    );
    push(
        &gw,
        vec![penalty(&a, "540102", "STAY-1", "2025-03-01", None)],
    );
    wait_result(&gw, "uscc", &a, 2025, |r| r["points"] == 90);
    // The same record id, now attributed to B.
    let receipt = gw.push_canonical(
        MI,
        &vec![penalty(&b, "540102", "MOVE-1", "2025-03-01", None)],
    );
    assert_eq!(receipt["records"][0]["version"], 2);

    // Evaluations: A keeps only its own record, B has the moved one.
    let ra = wait_result(&gw, "uscc", &a, 2025, |r| r["points"] == 95);
    assert!(
        ra["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["record_id"] != "MOVE-1"),
        "{ra}"
    );
    let rb = wait_result(&gw, "uscc", &b, 2025, |r| r["points"] == 95);
    assert!(
        rb["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["record_id"] == "MOVE-1"),
        "{rb}"
    );

    // Archives: A lists it apart, as no longer its own; B lists it as current.
    let client = gw.client(MI);
    let arc_a = client.get(&format!("/v1/subjects/uscc/{a}")).json();
    let current_a: Vec<&Value> = arc_a["categories"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|l| l.as_array().unwrap())
        .collect();
    assert!(
        current_a.iter().all(|h| h["record_id"] != "MOVE-1"),
        "{arc_a}"
    );
    assert!(
        current_a.iter().any(|h| h["record_id"] == "STAY-1"),
        "{arc_a}"
    );
    assert_eq!(
        arc_a["no_longer_current"][0]["record_id"], "MOVE-1",
        "{arc_a}"
    );
    assert!(
        !arc_a.to_string().contains(&b),
        "A's archive never names B: {arc_a}"
    );
    let arc_b = client.get(&format!("/v1/subjects/uscc/{b}")).json();
    assert_eq!(
        arc_b["categories"]["administrative"][0]["record_id"],
        "MOVE-1"
    );
    assert_eq!(
        arc_b["categories"]["administrative"][0]["current_version"],
        2
    );

    // The move is audited as such.
    let (_, audit) = gw.admin_get("/audit/entries?limit=50");
    assert!(
        audit.contains("\"moved\"") && audit.contains(&format!("uscc:{b}")),
        "the batch entry names the move: {audit}"
    );

    // A's exit (LS Art. 20) withdraws A's record and nothing of B's.
    let exit = client.post(
        &format!("/v1/subjects/uscc/{a}/exit"),
        "application/json",
        br#"{"reason": "left_service", "on": "2025-06-02"}"#.to_vec(),
    );
    assert_eq!(exit.status, 200, "{}", String::from_utf8_lossy(&exit.body));
    let withdrawn = |id: &str| {
        platform
            .received()
            .into_iter()
            .filter(|s| {
                s.kind == "withdrawal"
                    && s.record
                        .pointer("/source/record_id")
                        .and_then(Value::as_str)
                        == Some(id)
            })
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(20), || withdrawn("STAY-1") > 0),
        "A's own record is withdrawn"
    );
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(withdrawn("MOVE-1"), 0, "B's record stays published");
    let last = platform
        .received()
        .into_iter()
        .rfind(|s| {
            s.record
                .pointer("/source/record_id")
                .and_then(Value::as_str)
                == Some("MOVE-1")
        })
        .expect("MOVE-1 reached the platform");
    assert_eq!(
        last.kind, "share",
        "what the platform holds last is B's version"
    );
    assert_eq!(last.record["subject"]["id"], json!(b));
    assert_eq!(
        client.get(&format!("/v1/subjects/uscc/{b}")).status,
        200,
        "B stays active"
    );
}

/// Issue #26: points are compared as written, never through a binary float: 94.99999999999999999
/// points is a B under LS Art. 19 (an f64 reads it as 95.0, an A), as a JSON number and as text.
#[test]
fn points_just_below_95_are_a_b_never_rounded_to_an_a_ls_art_19() {
    let gw = Gateway::start();
    let result = |id: &str, points: Value, grade: &str| {
        json!({
            "category": "evaluation_result",
            "subject": {"kind": "institution", "role": "designated_medical_institution",
                        "id_type": "uscc", "id": "91350100M000100Y43", "name": "拉萨市某医院"},
            "source": {"record_id": id, "region": "540102"},
            "disclosure": {"class": "public"},
            "valid_from": "2025-03-01",
            "content": {"year": 2025, "points": points, "grade": grade}
        })
    };
    let number: Value = serde_json::from_str("94.99999999999999999").unwrap();
    let body = serde_json::to_vec(&vec![
        result("PTS-1", number.clone(), "A"),
        result("PTS-2", json!("94.99999999999999999"), "A"),
        result("PTS-3", number, "B"),
        result("PTS-4", json!("95.00"), "A"),
    ])
    .unwrap();
    let reply = gw
        .client(MI)
        .post("/v1/records?mapping=canonical", "application/json", body);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let receipt = reply.json();
    let rejected: Vec<(u64, String)> = receipt["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        vec![
            (0, "content.grade".to_string()),
            (1, "content.grade".to_string())
        ],
        "{receipt}"
    );
    assert_eq!(receipt["accepted"], 2, "{receipt}");
}

/// Issue #26 item 5: a legal representative named only in a 双公示 penalty of the institution
/// (CF_FRDB, CF_FR_ZJLX 01, CF_FR_ZJHM through the mi-penalties mapping), not in the listing nor
/// in a registration record, is reached by the institution's serious listing (GD Art. 29).
#[test]
fn a_legal_representative_named_only_in_a_penalty_gets_the_linked_record_gd_art_29() {
    let (_rt, gw, _platform, _mi) = setup("440000", "2026-02-02T10:00:00+08:00", |_| {});
    let s = uscc_in("440106", 9);
    let person = resident_id("44010619750505123");
    // The shipped sample's first penalty, made this institution's, with its representative.
    let sample: Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("examples/samples/mi-penalties.json"))
            .unwrap(),
    )
    .unwrap();
    let mut row = sample["data"][0].clone();
    row["CF_XDR_SHXYM"] = json!(s);
    row["CF_WSH"] = json!("粤医保罚〔2025〕29号");
    row["CF_FRDB"] = json!("李四");
    row["CF_FR_ZJLX"] = json!("01");
    row["CF_FR_ZJHM"] = json!(person);
    let reply = gw.client(MI).post(
        "/v1/records?mapping=mi-penalties",
        "application/json",
        serde_json::to_vec(&json!({"data": [row]})).unwrap(),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["accepted"], 1, "{}", reply.json());
    push(
        &gw,
        vec![json!({
            "category": "dishonest_list",
            "subject": {"kind": "institution", "role": "designated_medical_institution", "id_type": "uscc", "id": s, "name": "某医院"},
            "source": {"record_id": "L-29", "region": "440106"},
            "basis": {"doc_type": "penalty_decision", "doc_number": "粤医保罚〔2025〕21号", "decided_on": "2025-03-01"},
            "disclosure": {"class": "public"},
            "content": {"list_name": "医疗保障领域严重失信主体名单", "listed_on": "2025-03-01", "authority": "广东省医疗保障局",
                        "serious_dishonesty": true, "severity": "serious"}
        })],
    );
    wait_result(&gw, "uscc", &s, 2026, |r| r["grade"] == "E");
    let person_result = wait_result(&gw, "resident_id", &person, 2026, |r| r["grade"] == "E");
    let link = person_result["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["record_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("LINK-"))
        })
        .cloned();
    assert!(link.is_some(), "{person_result}");
}
