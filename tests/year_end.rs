//! End to end: the year's end (issue #26 item 1) through the real binary with the manual clock.
//! On 29 December 2026 the calendar knows 2024-2026 only: a correction (GD Art. 31), an objection
//! (LS Art. 23, its 异议标注 mark reaching the platform) and a repair (LS Art. 40) are accepted with
//! provisional deadlines, never refused; once the operator adds `2027.toml` and sends SIGHUP, the
//! trackers make every deadline exact.

mod common;

use std::time::Duration;

use common::receiver::{Received, Receiver};
use common::{multi_thread_runtime, wait_until, Gateway};
use serde_json::{json, Value};

const MI: &str = "medical_insurance";

/// A plausible 2027 schedule written by the test: the State Council has not published it yet.
/// 元旦 Friday 1 to Sunday 3 January; 春节 Saturday 6 to Saturday 13 February, with Saturday 20
/// February a make-up working day.
const Y2027: &str = r#"# test schedule, not the State Council notice
year = 2027
source = "test: plausible 2027 schedule"
holidays = [
  { name = "元旦", from = 2027-01-01, to = 2027-01-03 },
  { name = "春节", from = 2027-02-06, to = 2027-02-13 },
]
make_up_working_days = [2027-02-20]
"#;

fn penalty(region: &str, record_id: &str, decided: &str) -> Value {
    json!({
        "category": "administrative",
        "subject": {"kind": "institution", "role": "designated_retail_pharmacy",
                    "id_type": "uscc", "id": "91310110666007217T", "name": "广州市某某大药房有限公司"},
        "source": {"record_id": record_id, "region": region},
        "basis": {"doc_type": "penalty_decision", "doc_number": format!("穗医保罚〔2026〕{record_id}号"), "decided_on": decided},
        "disclosure": {"class": "public"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"],
                    "fine_yuan": "20000", "violation_type": "违规收费"}
    })
}

fn post(gw: &Gateway, path: &str, body: Value) -> common::Reply {
    gw.client(MI)
        .post(path, "application/json", serde_json::to_vec(&body).unwrap())
}

fn ok(reply: common::Reply, status: u16) -> Value {
    assert_eq!(
        reply.status,
        status,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
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

fn listed(gw: &Gateway, what: &str, id: &str) -> Value {
    gw.client(MI).get(&format!("/v1/{what}")).json()[what]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn past_the_last_calendar_year_work_is_accepted_provisionally_and_made_exact_gd_art_31_ls_art_21_23_40(
) {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let platform = gw.receiver(&rt);
    let mi_platform = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &platform);
    gw.add_destination("medical_insurance_platform", "440000", &mi_platform);
    gw.config.destinations[1].role =
        credit_gateway::config::DestinationRole::MedicalInsurancePlatform;
    // The operator's calendar folder: the shipped 2024-2026 files.
    let shipped = common::repo().join("mappings/calendar");
    let dir = gw.dir.path().join("calendar");
    std::fs::create_dir_all(&dir).unwrap();
    for year in ["2024", "2025", "2026"] {
        let file = format!("{year}.toml");
        std::fs::copy(shipped.join(&file), dir.join(&file)).unwrap();
    }
    gw.config.corrections.calendar_dir = Some(dir.clone());
    gw.config.corrections.dangerous_manual_clock = true;
    gw.config.corrections.check_interval_ms = 100;
    gw.config.objections.check_interval_ms = 100;
    gw.config.repairs.check_interval_ms = 100;
    gw.config.lifecycle.check_interval_ms = 100;
    gw.spawn();
    gw.set_clock("2026-12-29T10:00:00+08:00");

    // /readyz stays ready and says which file to add.
    assert!(wait_until(Duration::from_secs(10), || {
        let (code, body) = gw.admin_get("/readyz");
        code == 200
            && body.contains("add mappings/calendar/2027.toml")
            && body.contains("provisional")
    }));
    assert!(wait_until(Duration::from_secs(10), || gw
        .log()
        .contains("add mappings/calendar/2027.toml")));

    gw.push_canonical(
        MI,
        &[
            penalty("440106", "YE-COR", "2026-09-20"),
            penalty("440106", "YE-OBJ", "2026-09-20"),
            penalty("540102", "YE-REP", "2025-03-20"),
            json!({
                "category": "evaluation_result",
                "subject": {"kind": "institution", "role": "designated_medical_institution",
                            "id_type": "uscc", "id": "91350100M000100Y43", "name": "某某医院"},
                "source": {"record_id": "YE-EVAL", "region": "440106"},
                "disclosure": {"class": "public"},
                "valid_from": "2026-09-01",
                "content": {"year": 2026, "points": 80, "grade": "C"}
            }),
        ],
    );
    assert!(wait_until(Duration::from_secs(20), || of(
        &platform, "YE-OBJ"
    )
    .len()
        == 2
        && !of(&platform, "YE-COR").is_empty()));

    // GD Art. 31: Wed 30 and Thu 31 December are known; the third day is estimated never later
    // than the truth (every day past 2026 counted as a working day).
    let c = ok(
        post(
            &gw,
            "/v1/corrections",
            json!({"record_id": "YE-COR", "kind": "invalidate", "reason": "处罚决定已撤销"}),
        ),
        202,
    );
    let cid = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["deadline"], "2027-01-01T23:59:59+08:00");
    assert_eq!(c["deadline_provisional"], true);
    assert_eq!(c["state"], "pending");

    // LS Art. 23: 15 working days, 13 of them estimated.
    let o = ok(
        post(
            &gw,
            "/v1/objections",
            json!({"records": [{"record_id": "YE-OBJ"}], "ground": "error_or_omission",
                   "materials": "窗口受理 2026-1229-001"}),
        ),
        201,
    );
    let oid = o["id"].as_str().unwrap().to_string();
    assert_eq!(o["state"], "under_review");
    assert_eq!(o["review_deadline"], "2027-01-13T23:59:59+08:00");
    assert_eq!(o["review_deadline_provisional"], true);
    // The 异议标注 mark reaches the platform as usual.
    assert!(
        wait_until(Duration::from_secs(20), || of(&platform, "YE-OBJ")
            .iter()
            .any(marked)),
        "{:?}",
        of(&platform, "YE-OBJ")
            .iter()
            .map(|s| &s.record)
            .collect::<Vec<_>>()
    );

    // LS Art. 21: told on Tuesday 22 December, 7 of the 10 working days are known; the other 3
    // are estimated never earlier than the truth: weekdays plus a margin of 8, the 11th weekday
    // after 31 December. Filed in time, not late.
    let e = ok(
        post(
            &gw,
            "/v1/objections",
            json!({"records": [{"record_id": "YE-EVAL"}], "ground": "error_or_omission",
                   "materials": "m", "notified_on": "2026-12-22"}),
        ),
        201,
    );
    let eid = e["id"].as_str().unwrap().to_string();
    assert_eq!(e["state"], "under_review");
    assert_eq!(e["filing_deadline"], "2027-01-15T23:59:59+08:00");
    assert_eq!(e["filing_deadline_provisional"], true);

    // LS Art. 40: decided within 10 working days, 8 of them estimated; the publicity (5 working
    // days) likewise.
    let r = ok(
        post(
            &gw,
            "/v1/repairs",
            json!({"records": [{"record_id": "YE-REP"}], "materials": "修复材料 2026-009",
                   "commitment": "信用承诺书（已公开）"}),
        ),
        201,
    );
    let rid = r["id"].as_str().unwrap().to_string();
    assert_eq!(r["decision_deadline"], "2027-01-08T23:59:59+08:00");
    assert_eq!(r["decision_deadline_provisional"], true);
    let approved = ok(
        post(
            &gw,
            &format!("/v1/repairs/{rid}/decide"),
            json!({"approve": true, "reason": "整改到位，符合修复条件"}),
        ),
        200,
    );
    assert_eq!(approved["state"], "in_publicity");
    // The publicity is a window the public is given (anyone may object while it runs): never
    // ended early, so weekdays from 2027 plus the holiday margin (8 weekdays): 30, 31 December,
    // then 1, 4, 5 January, then 8 more weekdays.
    assert_eq!(approved["publicity_until"], "2027-01-15T23:59:59+08:00");
    assert_eq!(approved["publicity_until_provisional"], true);
    assert!(gw
        .log()
        .contains("deadline counted past the last known calendar year"));

    // The console shows them as provisional.
    let (code, page) = gw.admin_get("/console/deadlines");
    if code == 200 {
        assert!(
            page.contains("provisional") || page.contains("暂估"),
            "{page}"
        );
    }

    // The operator adds 2027 and sends SIGHUP: every deadline becomes exact.
    std::fs::write(dir.join("2027.toml"), Y2027).unwrap();
    gw.sighup();
    // GD Art. 31: 1-3 January are the New Year holiday: Monday 4 January.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let c = listed(&gw, "corrections", &cid);
            c["deadline"] == "2027-01-04T23:59:59+08:00" && c.get("deadline_provisional").is_none()
        }),
        "{}",
        listed(&gw, "corrections", &cid)
    );
    // LS Art. 23: 30, 31 December, 4-8, 11-15 and 18-20 January.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let o = listed(&gw, "objections", &oid);
            o["review_deadline"] == "2027-01-20T23:59:59+08:00"
                && o.get("review_deadline_provisional").is_none()
        }),
        "{}",
        listed(&gw, "objections", &oid)
    );
    // LS Art. 21: 23-25, 28-31 December, 4-6 January; the objection filed in time stays so.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let e = listed(&gw, "objections", &eid);
            e["filing_deadline"] == "2027-01-06T23:59:59+08:00"
                && e.get("filing_deadline_provisional").is_none()
                && e["state"] == "under_review"
        }),
        "{}",
        listed(&gw, "objections", &eid)
    );
    // LS Art. 40: 30, 31 December, 4-8 and 11-13 January; publicity 30, 31 December, 4-6 January.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let r = gw.client(MI).get(&format!("/v1/repairs/{rid}")).json();
            r["decision_deadline"] == "2027-01-13T23:59:59+08:00"
                && r.get("decision_deadline_provisional").is_none()
                && r["publicity_until"] == "2027-01-06T23:59:59+08:00"
                && r.get("publicity_until_provisional").is_none()
        }),
        "{}",
        gw.client(MI).get(&format!("/v1/repairs/{rid}")).json()
    );
    // The state the flows set is kept: the repair is still in publicity, the objection open.
    assert_eq!(listed(&gw, "objections", &oid)["state"], "under_review");
    assert_eq!(
        gw.client(MI).get(&format!("/v1/repairs/{rid}")).json()["state"],
        "in_publicity"
    );
    // The calendar covers 2027 now: no more note.
    let (code, body) = gw.admin_get("/readyz");
    assert_eq!(code, 200);
    assert!(!body.contains("2028.toml"), "{body}");
    drop(mi_platform);
    // Made exact as steps of their flows: written and audited by the writer.
    gw.stop();
    let (_, chain, _) = gw.cli(&["audit", "show", "--limit", "1000"]);
    assert!(
        chain.contains("objection_deadline_exact")
            && chain.contains("repair_deadline_exact")
            && chain.contains("correction_deadlines_exact"),
        "{chain}"
    );
}
