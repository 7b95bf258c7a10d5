//! End to end: the rulebook governed while the gateway runs (issue #26) through the real binary.
//! SIGHUP (and the operator's reload) puts every kind of rule data in force, agencies and
//! operators included; a broken file changes nothing and is reported; an expired scoring profile
//! (GD Art. 43: in force two years from 2024-07-01) is reported by `rules in-force`, the metrics
//! and `/readyz`, and a successor added at SIGHUP grades the subjects it governs after a
//! re-evaluation run.

mod common;

use std::time::Duration;

use common::{multi_thread_runtime, uscc_in, wait_until, Gateway};
use credit_gateway::config::{OperatorConfig, OperatorRole};
use serde_json::{json, Value};

const MI: &str = "medical_insurance";

fn sign_in(gw: &Gateway, name: &str, password: &str) -> u16 {
    let (status, _, _) = gw.admin_raw(
        "POST",
        "/session",
        &[("content-type", "application/json")],
        serde_json::to_vec(&json!({"name": name, "password": password})).unwrap(),
    );
    status
}

fn penalty(s: &str, record_id: &str, decided: &str) -> Value {
    json!({
        "category": "administrative",
        "subject": {"kind": "institution", "role": "designated_medical_institution",
                    "id_type": "uscc", "id": s, "name": "广州市某某医院"},
        "source": {"record_id": record_id, "region": "440106"},
        "basis": {"doc_type": "penalty_decision", "doc_number": format!("穗医保罚〔2026〕{record_id}号"), "decided_on": decided},
        "disclosure": {"class": "public"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"],
                    "fine_yuan": "20000", "violation_type": "违规收费"}
    })
}

/// The operator's copy of a shipped rules folder, so the test can change it.
fn copy_folder(gw: &Gateway, shipped: &str) -> std::path::PathBuf {
    let from = common::repo().join("mappings").join(shipped);
    let to = gw.dir.path().join(shipped.replace('/', "-"));
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
    to
}

fn wait_log(gw: &Gateway, text: &str, times: usize) -> bool {
    wait_until(Duration::from_secs(15), || {
        gw.log().matches(text).count() >= times
    })
}

#[test]
fn sighup_adds_an_agency_and_an_operator_that_can_then_push_and_sign_in() {
    let mut gw = Gateway::prepare();
    gw.spawn();
    // A county health commission's certificate, from the gateway's CA, before it is configured.
    let certs = gw.certs();
    let (code, _, err) = gw.cli(&[
        "certs",
        "init",
        "--dir",
        certs.to_str().unwrap(),
        "--client",
        "county_health",
    ]);
    assert_eq!(code, 0, "{err}");
    let s = uscc_in("440106", 71);
    let push = |gw: &Gateway| {
        gw.client("county_health").post(
            "/v1/records?mapping=canonical",
            "application/json",
            serde_json::to_vec(&[penalty(&s, "CH-1", "2026-03-02")]).unwrap(),
        )
    };
    let before = push(&gw);
    assert_eq!(
        before.status,
        403,
        "{}",
        String::from_utf8_lossy(&before.body)
    );
    assert_eq!(sign_in(&gw, "zhao", "zhao-pass-1"), 401);

    let mut county = gw.config.agencies[0].clone();
    county.id = "county_health".into();
    county.name = "某县卫生健康局".into();
    county.cert_subject_cn = Some("county_health".into());
    county.cert_sha256 = None;
    county.mappings = vec!["canonical".into()];
    gw.config.agencies.push(county);
    gw.config.operators.push(OperatorConfig {
        name: "zhao".into(),
        role: OperatorRole::Operator,
        password_hash: credit_gateway::operators::hash_password("zhao-pass-1").unwrap(),
    });
    gw.write_config();
    gw.sighup();
    assert!(wait_log(&gw, "rules reloaded", 1), "{}", gw.log());

    let after = push(&gw);
    assert_eq!(
        after.status,
        200,
        "{}",
        String::from_utf8_lossy(&after.body)
    );
    assert_eq!(after.json()["accepted"], 1);
    assert_eq!(sign_in(&gw, "zhao", "zhao-pass-1"), 200);
    // The reload is audited with each changed kind's old and new hash.
    let (_, audit) = gw.admin_get("/audit/entries?limit=200");
    let entries: Value = serde_json::from_str(&audit).unwrap();
    let reload = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "rules_reloaded")
        .unwrap_or_else(|| panic!("no rules_reloaded entry: {audit}"))
        .clone();
    let kinds: Vec<&str> = reload["data"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["agencies", "operators"], "{reload}");
    assert_eq!(reload["data"]["trigger"], "sighup");
    let change = &reload["data"]["changes"][0];
    assert!(change["from"].as_str().unwrap().len() == 16 && change["from"] != change["to"]);

    // Removing the operator again ends the session rights: signing in fails after the reload.
    gw.config.operators.clear();
    gw.write_config();
    let (code, out, err) = gw.cli(&["rules", "reload"]);
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["trigger"], "operator");
    assert_eq!(sign_in(&gw, "zhao", "zhao-pass-1"), 401);
}

#[test]
fn a_broken_rule_file_at_sighup_changes_nothing_and_is_reported() {
    let mut gw = Gateway::prepare();
    let rules = copy_folder(&gw, "rules");
    let scoring = copy_folder(&gw, "scoring");
    gw.config.objections.rules = Some(rules.join("objections.toml"));
    gw.config.evaluation.profiles = Some(scoring.clone());
    gw.spawn();
    let in_force = |gw: &Gateway| -> Value {
        let (code, out, err) = gw.cli(&[
            "rules",
            "in-force",
            "--region",
            "440106",
            "--date",
            "2026-12-07",
        ]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let before = in_force(&gw);
    let review = |v: &Value| {
        v["regions"][0]["duties"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["duty"] == "objection_review")
            .cloned()
            .unwrap()
    };
    assert_eq!(review(&before)["rule"], "default-15", "{before}");
    assert_eq!(review(&before)["status"], "in_force");

    // Two broken files at once: a review rule of 14 days with a typo beside it, and a profile
    // that does not parse. Neither may take effect, and both are reported.
    let text = std::fs::read_to_string(rules.join("objections.toml")).unwrap();
    std::fs::write(
        rules.join("objections.toml"),
        text.replace("working_days = 15", "working_days = 14\nworkng_days = 1"),
    )
    .unwrap();
    std::fs::write(scoring.join("zz-broken.toml"), "[[profiles]]\nname = 3\n").unwrap();
    gw.sighup();
    assert!(wait_log(&gw, "rules reload failed", 2), "{}", gw.log());
    let log = gw.log();
    assert!(
        log.contains("objections.toml") && log.contains("zz-broken.toml"),
        "{log}"
    );
    let after = in_force(&gw);
    assert_eq!(review(&after), review(&before), "nothing changed");
    assert_eq!(after["hashes"], before["hashes"]);

    // The operator's reload says the same, every error at once, as a 422.
    let (status, body) = gw.admin_post("/rules/reload");
    assert_eq!(status, 422, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["error"]["code"], "rules_invalid");
    let kinds: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["objections", "scoring_profiles"], "{report}");
    let (_, audit) = gw.admin_get("/audit/entries?limit=200");
    assert!(audit.contains("rules_reload_refused"), "{audit}");

    // Fixed, the reload takes: the 14-day review rule is in force.
    std::fs::write(
        rules.join("objections.toml"),
        text.replace("working_days = 15", "working_days = 14"),
    )
    .unwrap();
    std::fs::remove_file(scoring.join("zz-broken.toml")).unwrap();
    let (status, body) = gw.admin_post("/rules/reload");
    assert_eq!(status, 200, "{body}");
    let fixed = in_force(&gw);
    assert_eq!(review(&fixed)["scope"], "14 working days", "{fixed}");
}

#[test]
fn an_expired_scoring_profile_is_reported_and_a_successor_grades_after_a_rerun_gd_art_43() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let platform = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &platform);
    let scoring = copy_folder(&gw, "scoring");
    gw.config.evaluation.profiles = Some(scoring.clone());
    gw.config.corrections.dangerous_manual_clock = true;
    gw.config.evaluation.check_interval_ms = 100;
    gw.config.lifecycle.check_interval_ms = 100;
    gw.start_clock_at("2026-12-07T10:00:00+08:00");
    gw.spawn();

    // Two 2026 penalties of a Guangdong institution: GD ended 2026-06-30 (Art. 43), no grade.
    let s = uscc_in("440106", 72);
    gw.push_canonical(
        MI,
        &[
            penalty(&s, "GD-1", "2026-08-03"),
            penalty(&s, "GD-2", "2026-09-07"),
        ],
    );

    // rules in-force: nothing governs evaluation of Guangdong institutions, and says since when.
    let (code, out, err) = gw.cli(&["rules", "in-force", "--region", "440106"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let evaluation = v["regions"][0]["duties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["duty"] == "evaluation" && d["scope"] == "institution")
        .cloned()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(evaluation["status"], "gap", "{evaluation}");
    assert_eq!(evaluation["ended"], "gd-institution");
    assert_eq!(evaluation["until"], "2026-06-30");
    assert_eq!(evaluation["days_left"], -160);
    assert!(evaluation["gap_policy"].as_str().unwrap().contains("stops"));
    // The metrics count the days since, and /readyz stays ready but says so.
    assert!(wait_until(Duration::from_secs(10), || {
        let (_, m) = gw.admin_get("/metrics");
        m.lines().any(|l| {
            l.starts_with("gateway_rule_days_left{")
                && l.contains("rule=\"gd-institution\"")
                && l.contains("duty=\"evaluation\"")
                && l.ends_with(" -160")
        })
    }));
    let (code, ready) = gw.admin_get("/readyz");
    assert_eq!(code, 200, "{ready}");
    assert!(
        ready.starts_with("ready\n")
            && ready.contains("gd-institution")
            && ready.contains("nothing is in force since 2026-07-01"),
        "{ready}"
    );
    // A re-evaluation run says the subject was not evaluated, and by which ended profile.
    let (code, out, err) = gw.cli(&["evaluation", "rerun", "--year", "2026"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(wait_until(Duration::from_secs(10), || {
        let (_, c) = gw.admin_get("/evaluation/cycles");
        let c: Value = serde_json::from_str(&c).unwrap();
        c["cycles"].as_array().unwrap().iter().any(|c| {
            c["year"] == 2026
                && c["finished_at"].is_string()
                && c["not_evaluated"]["gd-institution"].as_u64() >= Some(1)
        })
    }));
    let (_, shown) = gw.admin_get(&format!("/evaluation/show?id_type=uscc&id={s}"));
    assert!(
        !shown.contains("\"grade\""),
        "no profile, no grade: {shown}"
    );

    // The bureau's successor, from 2026-07-01, without an end yet.
    let shipped = std::fs::read_to_string(scoring.join("guangdong.toml")).unwrap();
    let successor = shipped
        .replace("name = \"gd-", "name = \"gd2026-")
        .replace("effective_from = 2024-07-01", "effective_from = 2026-07-01")
        .replace("effective_until = 2026-06-30\n", "");
    std::fs::write(scoring.join("guangdong-2026.toml"), successor).unwrap();
    gw.sighup();
    assert!(wait_log(&gw, "rules reloaded", 1), "{}", gw.log());
    // The profile change started a re-evaluation by itself; the operator's run is the same.
    let (code, out, err) = gw.cli(&["evaluation", "rerun", "--year", "2026", "--region", "44"]);
    assert_eq!(code, 0, "{out}{err}");
    let started: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(started["started"]["region"], "44");
    assert!(started["started"]["reruns"].as_u64() >= Some(1));
    let (code, _, err) = gw.cli(&["evaluation", "rerun", "--year", "2025"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("only the running year's cycle (2026)"),
        "{err}"
    );

    let graded = wait_until(Duration::from_secs(20), || {
        let (_, shown) = gw.admin_get(&format!("/evaluation/show?id_type=uscc&id={s}"));
        let v: Value = serde_json::from_str(&shown).unwrap();
        v["results"].as_array().unwrap().iter().any(|r| {
            r["year"] == 2026 && r["profile"] == "gd2026-institution" && r["grade"].is_string()
        })
    });
    let (_, shown) = gw.admin_get(&format!("/evaluation/show?id_type=uscc&id={s}"));
    assert!(graded, "{shown}");
    let (_, out, _) = gw.cli(&["rules", "in-force", "--region", "440106"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let evaluation = v["regions"][0]["duties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["duty"] == "evaluation" && d["scope"] == "institution")
        .cloned()
        .unwrap();
    assert_eq!(evaluation["status"], "in_force");
    assert_eq!(evaluation["rule"], "gd2026-institution");
}
