//! The operator console in a real browser: Debian's chromium driven through chromedriver with
//! fantoccini (WebDriver). Screenshots are saved under `target/console-screenshots/` for review.

mod common;

use std::time::Duration;

use common::browser::{browser, screenshot, sign_in};
use common::receiver::Mode;
use common::{multi_thread_runtime, resident_id, wait_until, Gateway};
use credit_gateway::config::{OperatorConfig, OperatorRole};
use fantoccini::{Client, Locator};
use serde_json::json;

/// Reload `url` until `css` is on the page.
async fn until_present(c: &Client, url: &str, css: &str) -> bool {
    for _ in 0..60 {
        c.goto(url).await.unwrap();
        if !c.find_all(Locator::Css(css)).await.unwrap().is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

async fn countdown(c: &Client, admin: &str) -> String {
    c.goto(&format!("http://{admin}/console/deadlines"))
        .await
        .unwrap();
    c.find(Locator::Css("#corrections tr.correction td.countdown"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[test]
fn operators_work_the_console_in_a_real_browser() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let platform = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &platform);
    gw.config.corrections.dangerous_manual_clock = true;
    gw.config.corrections.check_interval_ms = 100;
    // No evaluation here: Guangdong's scoring profiles, ended 2026-06-30 (GD Art. 43), would
    // rightly be on the overview's list.
    gw.config.evaluation.enabled = false;
    for (name, role, password) in [
        ("zhang", OperatorRole::Operator, "zhang-pass-1"),
        ("li", OperatorRole::Viewer, "li-pass-1"),
    ] {
        gw.config.operators.push(OperatorConfig {
            name: name.into(),
            role,
            password_hash: credit_gateway::operators::hash_password(password).unwrap(),
        });
    }
    // The Monday before the 2026 National Day holiday.
    gw.start_clock_at("2026-09-28T10:00:00+08:00");
    gw.spawn();
    let admin = gw.admin.clone();
    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = rt.block_on(browser(profile.path()));

    // Sign in as an operator: the overview.
    rt.block_on(async {
        sign_in(&c, &admin, "zhang", "zhang-pass-1").await;
        let health = c
            .find(Locator::Css("#health"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(health, "就绪", "Chinese by default");
        screenshot(&c, "1-overview").await;
    });

    // The platform refuses a share: a dead letter appears, with the platform's answer.
    platform.set_mode(Mode::Refuse(422), None);
    let person = resident_id("44010619800101123");
    let records = json!([{
        "category": "administrative",
        "subject": {"kind": "individual", "role": "physician", "id_type": "resident_id", "id": person, "name": "张医生"},
        "source": {"record_id": "CON-1", "region": "440106"},
        "basis": {"doc_type": "penalty_decision", "doc_number": "穗医保罚〔2026〕8号", "decided_on": "2026-09-20"},
        "disclosure": {"class": "gov_share"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"]}
    }]);
    let reply = gw.client("medical_insurance").post(
        "/v1/records?mapping=canonical",
        "application/json",
        serde_json::to_vec(&records).unwrap(),
    );
    assert_eq!(reply.status, 200);
    rt.block_on(async {
        let url = format!("http://{admin}/console/platforms");
        assert!(
            until_present(&c, &url, "tr.dead-letter").await,
            "the dead letter appears"
        );
        let row = c
            .find(Locator::Css("tr.dead-letter"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(row.contains("CON-1") && row.contains("422"), "{row}");
        screenshot(&c, "2-dead-letter").await;
    });

    // The platform is fixed; the operator replays that one with a reason.
    platform.set_mode(Mode::Normal, None);
    rt.block_on(async {
        let form = c.form(Locator::Css("form.replay-one")).await.unwrap();
        form.set_by_name("reason", "平台已修复，重新推送")
            .await
            .unwrap();
        form.submit().await.unwrap();
        let done = c
            .wait()
            .for_element(Locator::Css("#replayed"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(done.ends_with('1'), "{done}");
    });
    assert!(wait_until(Duration::from_secs(20), || platform
        .received()
        .iter()
        .any(
            |s| s.record.pointer("/source/record_id") == Some(&json!("CON-1"))
        )));
    rt.block_on(async {
        let url = format!("http://{admin}/console/platforms");
        c.goto(&url).await.unwrap();
        assert!(
            c.find_all(Locator::Css("tr.dead-letter"))
                .await
                .unwrap()
                .is_empty(),
            "delivered, gone from the dead letters"
        );
        c.goto(&format!(
            "http://{admin}/console/audit?kind=operator_outbox_replay"
        ))
        .await
        .unwrap();
        let audit = c
            .find(Locator::Css("#audit"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            audit.contains("zhang") && audit.contains("平台已修复，重新推送"),
            "{audit}"
        );
        screenshot(&c, "3-audit").await;
    });

    // A correction before the holiday: its countdown in working days, then after the holiday.
    platform.set_mode(Mode::Unavailable, None);
    let reply = gw.client("medical_insurance").post(
        "/v1/corrections",
        "application/json",
        serde_json::to_vec(&json!({"record_id": "CON-1", "kind": "invalidate", "found_at": "2026-09-28T09:00:00+08:00"})).unwrap(),
    );
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let deadline = time::OffsetDateTime::parse(
        reply.json()["deadline"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let calendar =
        credit_gateway::calendar::Calendar::load_dir(&common::repo().join("mappings/calendar"))
            .unwrap();
    let at = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let before = calendar
        .working_days_left(at("2026-09-28T10:00:00+08:00"), deadline)
        .unwrap();
    let after = calendar
        .working_days_left(at("2026-10-08T10:00:00+08:00"), deadline)
        .unwrap();
    assert!(before > after, "the countdown moves");
    assert!(
        (before - after) < 10,
        "the ten calendar days include the holiday, which does not count"
    );
    rt.block_on(async {
        assert_eq!(countdown(&c, &admin).await, before.to_string());
        screenshot(&c, "4-deadlines-before-holiday").await;
    });
    gw.set_clock("2026-10-08T10:00:00+08:00");
    rt.block_on(async {
        assert_eq!(countdown(&c, &admin).await, after.to_string());
        screenshot(&c, "5-deadlines-after-holiday").await;
    });

    // A viewer: no replay, and masked identifiers.
    rt.block_on(async {
        c.delete_all_cookies().await.unwrap();
        sign_in(&c, &admin, "li", "li-pass-1").await;
        c.goto(&format!("http://{admin}/console/platforms"))
            .await
            .unwrap();
        assert!(
            c.find_all(Locator::Css("form[action='/console/replay']"))
                .await
                .unwrap()
                .is_empty(),
            "a viewer has no replay"
        );
        c.goto(&format!("http://{admin}/console/search?q={person}&lang=en"))
            .await
            .unwrap();
        let page = c.source().await.unwrap();
        assert!(page.contains("CON-1"), "the viewer finds the record");
        assert!(!page.contains(&person), "but never the full identifier");
        assert!(page.contains(&format!("{}*", &person[..6])), "shown masked");
        screenshot(&c, "6-viewer-search-masked").await;
        c.clone().close().await.unwrap();
    });
}

/// Issue #26 in the browser: every page's banner names the scoring profile that ended without a
/// successor (GD Art. 43) and the file to add; the rules page shows what governs each duty for a
/// region; the operator's reload puts a successor in force (a viewer has no reload).
#[test]
fn the_rules_page_shows_what_is_in_force_and_reloads_a_successor_in_a_real_browser() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let scoring = gw.dir.path().join("scoring");
    std::fs::create_dir_all(&scoring).unwrap();
    let shipped =
        std::fs::read_to_string(common::repo().join("mappings/scoring/guangdong.toml")).unwrap();
    std::fs::write(scoring.join("guangdong.toml"), &shipped).unwrap();
    gw.config.evaluation.profiles = Some(scoring.clone());
    gw.config.corrections.dangerous_manual_clock = true;
    for (name, role, password) in [
        ("zhang", OperatorRole::Operator, "zhang-pass-1"),
        ("li", OperatorRole::Viewer, "li-pass-1"),
    ] {
        gw.config.operators.push(OperatorConfig {
            name: name.into(),
            role,
            password_hash: credit_gateway::operators::hash_password(password).unwrap(),
        });
    }
    gw.start_clock_at("2026-12-07T10:00:00+08:00");
    gw.spawn();
    let admin = gw.admin.clone();
    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = rt.block_on(browser(profile.path()));
    rt.block_on(async {
        sign_in(&c, &admin, "zhang", "zhang-pass-1").await;
        let banner = c
            .find(Locator::Css("#rule-warnings"))
            .await
            .expect("the overview carries the banner")
            .text()
            .await
            .unwrap();
        assert!(
            banner.contains("gd-institution") && banner.contains(scoring.to_str().unwrap()),
            "{banner}"
        );
        assert!(
            banner.contains("2027.toml"),
            "the calendar's last year: {banner}"
        );
        c.goto(&format!(
            "http://{admin}/console/rules?region=440106&lang=en"
        ))
        .await
        .unwrap();
        let table = c
            .find(Locator::Css("table.rules"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(table.contains("Scoring profile"), "{table}");
        assert!(table.contains("nothing in force"), "{table}");
        assert!(table.contains("gd-institution"), "{table}");
        screenshot(&c, "7-rules-gap").await;

        // The bureau's successor, then the reload from the page.
        let successor = shipped
            .replace("name = \"gd-", "name = \"gd2026-")
            .replace("effective_from = 2024-07-01", "effective_from = 2026-07-01")
            .replace("effective_until = 2026-06-30\n", "");
        std::fs::write(scoring.join("guangdong-2026.toml"), successor).unwrap();
        c.find(Locator::Css("#reload"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let report = c
            .wait()
            .for_element(Locator::Css("#reload-report"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(report.contains("scoring_profiles"), "{report}");
        c.goto(&format!(
            "http://{admin}/console/rules?region=440106&lang=en"
        ))
        .await
        .unwrap();
        let table = c
            .find(Locator::Css("table.rules"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(table.contains("gd2026-institution"), "{table}");
        let banner = c
            .find(Locator::Css("#rule-warnings"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !banner.contains("gd-institution"),
            "the successor ends the warning: {banner}"
        );
        screenshot(&c, "8-rules-successor").await;

        // A viewer reads the page but has no reload.
        c.delete_all_cookies().await.unwrap();
        sign_in(&c, &admin, "li", "li-pass-1").await;
        c.goto(&format!("http://{admin}/console/rules"))
            .await
            .unwrap();
        assert!(c
            .find_all(Locator::Css("#reload"))
            .await
            .unwrap()
            .is_empty());
        c.clone().close().await.unwrap();
    });
}

/// Issue #27's truthful overview in the browser: a platform answering 503 turns "就绪" into
/// "就绪，但有事项需处理" with the platform's configured name and its answer in plain words,
/// the platforms page shows the last answer beside the stuck queue in China time, and once the
/// platform recovers the overview is plainly ready again. Before any operator exists, the sign-in
/// page says how to add one.
#[test]
fn the_overview_says_what_needs_attention_with_the_platforms_answer_in_a_real_browser() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let platform = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &platform);
    gw.config.destinations[0].name = "广东省公共信用信息平台".into();
    gw.config.sharing.retry_max_ms = 200;
    // No evaluation: the ended scoring profiles (GD Art. 43) would stay on the list.
    gw.config.evaluation.enabled = false;
    gw.spawn();
    let admin = gw.admin.clone();
    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = rt.block_on(browser(profile.path()));
    rt.block_on(async {
        c.goto(&format!("http://{admin}/console/login"))
            .await
            .unwrap();
        let hint = c
            .find(Locator::Css("#error"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            hint.contains("尚未配置任何操作员") && hint.contains("hash-password"),
            "{hint}"
        );
    });
    // The operator is added while the gateway runs.
    gw.config.operators.push(OperatorConfig {
        name: "zhang".into(),
        role: OperatorRole::Operator,
        password_hash: credit_gateway::operators::hash_password("zhang-pass-1").unwrap(),
    });
    gw.write_config();
    let (code, out, err) = gw.cli(&["rules", "reload"]);
    assert_eq!(code, 0, "{out}{err}");

    platform.set_mode(Mode::Unavailable, None);
    gw.push_canonical(
        "medical_insurance",
        &[json!({
            "category": "administrative",
            "subject": {"kind": "institution", "role": "designated_medical_institution",
                        "id_type": "uscc", "id": common::uscc_in("440106", 91), "name": "某某医院"},
            "source": {"record_id": "OV-1", "region": "440106"},
            "basis": {"doc_type": "penalty_decision", "doc_number": "穗医保罚〔2026〕91号", "decided_on": "2026-03-02"},
            "disclosure": {"class": "public"},
            "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"], "fine_yuan": "20000"}
        })],
    );
    rt.block_on(async {
        sign_in(&c, &admin, "zhang", "zhang-pass-1").await;
        assert!(until_present(&c, &format!("http://{admin}/console"), "#problems").await);
        let health = c
            .find(Locator::Css("#health"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(health, "就绪，但有事项需处理");
        let problems = c
            .find(Locator::Css("#problems"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            problems.contains("广东省公共信用信息平台 (provincial)")
                && problems.contains("HTTP 503"),
            "{problems}"
        );
        screenshot(&c, "9-overview-platform-down").await;
        c.goto(&format!("http://{admin}/console/platforms"))
            .await
            .unwrap();
        let answer = c
            .find(Locator::Css("#answer-provincial"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(answer.contains("HTTP 503"), "{answer}");
        let queues = c
            .find(Locator::Css("#queues"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(queues.contains("广东省公共信用信息平台"), "{queues}");
        assert!(
            !queues.contains("T") || !queues.contains("Z"),
            "China time, not RFC 3339 UTC: {queues}"
        );
        screenshot(&c, "10-platforms-last-answer").await;
    });
    platform.set_mode(Mode::Normal, None);
    rt.block_on(async {
        // The platform's problem leaves the list once it recovers; "就绪" alone only when nothing
        // else needs attention (on the real date, the working-day calendar's last year may be
        // ending: that stays on the list, rightly).
        let mut recovered = false;
        for _ in 0..60 {
            c.goto(&format!("http://{admin}/console")).await.unwrap();
            let problems: Vec<String> = {
                let mut out = Vec::new();
                for li in c.find_all(Locator::Css("#problems li")).await.unwrap() {
                    out.push(li.text().await.unwrap());
                }
                out
            };
            if !problems
                .iter()
                .any(|p| p.contains("广东省公共信用信息平台"))
            {
                let health = c
                    .find(Locator::Css("#health"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                assert_eq!(
                    health == "就绪",
                    problems.is_empty(),
                    "plain 就绪 exactly when nothing is listed: {health} {problems:?}"
                );
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let page = c
            .find(Locator::Css("main"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            recovered,
            "the platform's problem leaves once it recovers: {page}"
        );
        c.clone().close().await.unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// Casework at the console (issue #27): each role, each step, each refusal.

const MI: &str = "medical_insurance";

fn operators(gw: &mut Gateway) {
    for (name, role, password) in [
        ("zhang", OperatorRole::Operator, "zhang-pass-1"),
        ("wang", OperatorRole::Reviewer, "wang-pass-1"),
        ("li", OperatorRole::Viewer, "li-pass-1"),
        ("zhao", OperatorRole::Auditor, "zhao-pass-1"),
    ] {
        gw.config.operators.push(OperatorConfig {
            name: name.into(),
            role,
            password_hash: credit_gateway::operators::hash_password(password).unwrap(),
        });
    }
}

fn penalty_of(
    subject: serde_json::Value,
    region: &str,
    record_id: &str,
    decided: &str,
) -> serde_json::Value {
    json!({
        "category": "administrative",
        "subject": subject,
        "source": {"record_id": record_id, "region": region},
        "basis": {"doc_type": "penalty_decision", "doc_number": format!("穗医保罚〔2026〕{record_id}号"), "decided_on": decided},
        "disclosure": {"class": "public"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"],
                    "fine_yuan": "20000", "violation_type": "违规收费"}
    })
}

fn pharmacy() -> serde_json::Value {
    json!({"kind": "institution", "role": "designated_retail_pharmacy",
           "id_type": "uscc", "id": "91310110666007217T", "name": "广州市某某大药房有限公司"})
}

fn received_of(p: &common::receiver::Receiver, record_id: &str) -> Vec<common::receiver::Received> {
    p.received()
        .into_iter()
        .filter(|s| {
            s.record
                .pointer("/source/record_id")
                .and_then(|v| v.as_str())
                == Some(record_id)
        })
        .collect()
}

async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap(),
        Err(_) => panic!(
            "no {css} on {}: {}",
            c.current_url().await.unwrap(),
            c.find(Locator::Css("main"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        ),
    }
}

/// Fill the reason (and click the radio `choice`, if any) of `form.{class}` and submit it.
async fn take_step(c: &Client, class: &str, choice: Option<&str>, reason: &str) {
    if let Some(choice) = choice {
        c.find(Locator::Css(&format!(
            "form.{class} input[value='{choice}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    }
    if !reason.is_empty() {
        c.find(Locator::Css(&format!("form.{class} input[name='reason']")))
            .await
            .unwrap()
            .send_keys(reason)
            .await
            .unwrap();
    }
    let before = c.find(Locator::Css("main")).await.unwrap();
    c.find(Locator::Css(&format!("form.{class} button[type='submit']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The answer's page has replaced this one once the old page's element is gone.
    for _ in 0..100 {
        if before.text().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("posting form.{class} loaded no page");
}

/// A session of the operator API's own sign-in: (cookie, CSRF token).
fn session(gw: &Gateway, name: &str, password: &str) -> (String, String) {
    let (status, headers, body) = gw.admin_raw(
        "POST",
        "/session",
        &[("content-type", "application/json")],
        serde_json::to_vec(&json!({"name": name, "password": password})).unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    let cookie = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("cg_session="))
        .unwrap();
    let csrf = serde_json::from_str::<serde_json::Value>(&body).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    (cookie, csrf)
}

fn console_post(
    gw: &Gateway,
    (cookie, _): &(String, String),
    csrf: &str,
    path: &str,
    form: &str,
) -> (u16, String) {
    let (status, _, body) = gw.admin_raw(
        "POST",
        path,
        &[
            ("cookie", cookie),
            ("content-type", "application/x-www-form-urlencoded"),
            ("sec-fetch-site", "same-origin"),
        ],
        format!("csrf={csrf}&{form}").into_bytes(),
    );
    (status, body)
}

fn objection_state(gw: &Gateway, id: &str) -> String {
    gw.client(MI).get(&format!("/v1/objections/{id}")).json()["state"]
        .as_str()
        .unwrap()
        .to_string()
}

/// GD Arts. 32-34 and LS Arts. 21, 23 at the bureau's desk: the operator resolves an objection
/// (the elimination withdraws the record from the platform), rejects another whose review the
/// level above (reviewer) then decides, accepts a late one; every refusal (missing reason, wrong
/// role, wrong state, a CSRF token of another session) says why and changes nothing; a viewer
/// sees no step and masked identifiers; an auditor follows a case to its audit entries.
#[test]
fn the_bureau_works_objections_at_the_console_each_role_its_own_steps() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let platform = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &platform);
    gw.config.corrections.dangerous_manual_clock = true;
    gw.config.objections.check_interval_ms = 100;
    operators(&mut gw);
    gw.start_clock_at("2026-09-28T10:00:00+08:00");
    gw.spawn();
    let admin = gw.admin.clone();
    let person = resident_id("44010619800101123");
    let physician = json!({"kind": "individual", "role": "physician", "id_type": "resident_id", "id": person, "name": "张医生"});
    gw.push_canonical(
        MI,
        &[
            penalty_of(pharmacy(), "440106", "CW-1", "2026-09-20"),
            penalty_of(pharmacy(), "440106", "CW-2", "2026-09-21"),
            penalty_of(physician, "440106", "CW-3", "2026-09-22"),
        ],
    );
    assert!(wait_until(Duration::from_secs(20), || [
        "CW-1", "CW-2", "CW-3"
    ]
    .iter()
    .all(|r| !received_of(&platform, r).is_empty())));
    let file = |record: &str| {
        let reply = gw.client(MI).post(
            "/v1/objections",
            "application/json",
            serde_json::to_vec(
                &json!({"records": [{"record_id": record}], "ground": "error_or_omission",
                                        "materials": "窗口受理 2026-0928-001"}),
            )
            .unwrap(),
        );
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()["id"].as_str().unwrap().to_string()
    };
    let first = file("CW-1");
    let second = file("CW-2");
    let third = file("CW-3");
    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = rt.block_on(browser(profile.path()));

    rt.block_on(async {
        sign_in(&c, &admin, "zhang", "zhang-pass-1").await;
        c.goto(&format!("http://{admin}/console/objections"))
            .await
            .unwrap();
        let list = text(&c, "#objections").await;
        assert!(list.contains(&first) && list.contains("审核中"), "{list}");
        screenshot(&c, "11-objections").await;
        c.goto(&format!("http://{admin}/console/objections/{first}"))
            .await
            .unwrap();
        assert_eq!(text(&c, "#state").await, "审核中");
        screenshot(&c, "12-objection-case").await;
        // A missing reason: refused, nothing changed.
        take_step(&c, "resolve", Some("eliminate"), "").await;
        let message = text(&c, "#message").await;
        assert!(
            message.contains("请填写原因") && message.contains("未作任何更改"),
            "{message}"
        );
    });
    assert_eq!(
        objection_state(&gw, &first),
        "under_review",
        "nothing changed"
    );

    // Upheld, no bad credit information: eliminated, withdrawn from the platform (LS Art. 23).
    rt.block_on(async {
        c.goto(&format!("http://{admin}/console/objections/{first}"))
            .await
            .unwrap();
        take_step(&c, "resolve", Some("eliminate"), "经核查，处罚决定已被撤销").await;
        assert!(text(&c, "#done").await.contains("已办理"));
        assert_eq!(text(&c, "#state").await, "异议成立");
        let history = text(&c, "#history").await;
        assert!(history.contains("经核查，处罚决定已被撤销"), "{history}");
    });
    assert!(wait_until(Duration::from_secs(20), || received_of(
        &platform, "CW-1"
    )
    .iter()
    .any(
        |s| s.kind == "withdrawal" && s.record["withdrawn"]["reason"] == "objection_upheld"
    )));

    // The second: rejected at the first level, then the level above's review (GD Art. 34).
    rt.block_on(async {
        c.goto(&format!("http://{admin}/console/objections/{second}"))
            .await
            .unwrap();
        take_step(&c, "resolve", Some("reject"), "处罚事实清楚，异议不成立").await;
        assert_eq!(text(&c, "#state").await, "异议不成立");
        take_step(&c, "open-review", None, "主体不服，申请复核").await;
        assert_eq!(text(&c, "#state").await, "审核中");
        // The operator may not decide the level above's review.
        assert!(c
            .find_all(Locator::Css("form.resolve"))
            .await
            .unwrap()
            .is_empty());
        assert!(text(&c, "#no-actions").await.contains("您的角色不能办理"));
    });
    // The rejection took the 异议标注 mark off: a share without it reached the platform before
    // the review marked the record again.
    assert!(wait_until(Duration::from_secs(20), || received_of(
        &platform, "CW-2"
    )
    .iter()
    .any(|s| s.kind != "withdrawal"
        && s.record["marks"].as_array().is_none_or(|m| m
            .iter()
            .all(|m| m["kind"] != "objection")))
        && received_of(&platform, "CW-2").iter().any(|s| s.record
            ["marks"]
            .as_array()
            .is_some_and(|m| m
                .iter()
                .any(|m| m["kind"] == "objection")))));
    let zhang = session(&gw, "zhang", "zhang-pass-1");
    let (status, body) = console_post(
        &gw,
        &zhang,
        &zhang.1,
        &format!("/console/objections/{second}/resolve"),
        "outcome=reject&reason=x",
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("您的角色不能办理此事项"), "{body}");
    // A step the state does not allow: clear, nothing changed.
    let (status, body) = console_post(
        &gw,
        &zhang,
        &zhang.1,
        &format!("/console/objections/{first}/accept_late"),
        "reason=x",
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("当前状态不能办理此事项") && body.contains("异议成立"),
        "{body}"
    );
    // A CSRF token of another session: refused, nothing changed.
    let other = session(&gw, "zhang", "zhang-pass-1");
    let (status, _) = console_post(
        &gw,
        &other,
        &zhang.1,
        &format!("/console/objections/{third}/resolve"),
        "outcome=reject&reason=x",
    );
    assert_eq!(status, 403);
    assert_eq!(objection_state(&gw, &third), "under_review");
    // The reviewer may not do the first level's casework.
    let wang = session(&gw, "wang", "wang-pass-1");
    let (status, _) = console_post(
        &gw,
        &wang,
        &wang.1,
        &format!("/console/objections/{third}/resolve"),
        "outcome=reject&reason=x",
    );
    assert_eq!(status, 403);
    assert_eq!(objection_state(&gw, &third), "under_review");

    rt.block_on(async {
        c.delete_all_cookies().await.unwrap();
        sign_in(&c, &admin, "wang", "wang-pass-1").await;
        c.goto(&format!("http://{admin}/console/objections/{second}"))
            .await
            .unwrap();
        assert!(text(&c, "#case").await.contains("上级复核"));
        take_step(&c, "resolve", Some("reject"), "复核维持原结论").await;
        assert_eq!(text(&c, "#state").await, "异议不成立");
        assert!(
            c.find_all(Locator::Css("#actions form"))
                .await
                .unwrap()
                .is_empty(),
            "no third level"
        );
        screenshot(&c, "13-objection-reviewed").await;
    });

    // A viewer: no step anywhere, identifiers masked.
    rt.block_on(async {
        c.delete_all_cookies().await.unwrap();
        sign_in(&c, &admin, "li", "li-pass-1").await;
        c.goto(&format!("http://{admin}/console/objections/{third}"))
            .await
            .unwrap();
        assert!(c
            .find_all(Locator::Css("#actions form"))
            .await
            .unwrap()
            .is_empty());
        assert!(text(&c, "#no-actions").await.contains("只读"));
        let link = c
            .find(Locator::Css("a.subject-link"))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap()
            .unwrap();
        c.goto(&format!("http://{admin}{link}")).await.unwrap();
        let page = c.source().await.unwrap();
        assert!(page.contains("CW-3"), "the subject page lists the record");
        assert!(!page.contains(&person), "never the full identifier");
        assert!(page.contains(&format!("{}*", &person[..6])), "masked");
        assert!(
            c.find_all(Locator::Css("form.exit"))
                .await
                .unwrap()
                .is_empty(),
            "a viewer has no exit"
        );
        screenshot(&c, "14-subject-viewer-masked").await;
    });

    // An auditor follows a case to its audit entries: the step, by the operator's name.
    rt.block_on(async {
        c.delete_all_cookies().await.unwrap();
        sign_in(&c, &admin, "zhao", "zhao-pass-1").await;
        c.goto(&format!("http://{admin}/console/objections/{first}"))
            .await
            .unwrap();
        let link = c
            .find(Locator::Css("#audit-link"))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap()
            .unwrap();
        c.goto(&format!("http://{admin}{link}")).await.unwrap();
        let audit = text(&c, "#audit").await;
        assert!(audit.contains("objection_resolved"), "{audit}");
        assert!(
            audit.contains("zhang")
                && audit.contains(&format!("/console/objections/{first}/resolve")),
            "{audit}"
        );
        screenshot(&c, "15-audit-of-case").await;
    });

    // A token replayed after its session ended: sent to sign in, nothing changed.
    let (status, _) = console_post(&gw, &zhang, &zhang.1, "/console/logout", "");
    assert_eq!(status, 303);
    let (status, _, _) = gw.admin_raw(
        "POST",
        &format!("/console/objections/{third}/resolve"),
        &[
            ("cookie", &zhang.0),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        format!("csrf={}&outcome=reject&reason=x", zhang.1).into_bytes(),
    );
    assert_eq!(status, 303, "to the sign-in page");
    assert_eq!(objection_state(&gw, &third), "under_review");

    // A correction the record's rules refuse (a negative fine): the page says so in Chinese and
    // names the field, as the API's `problems` do; nothing changed.
    let zhang = session(&gw, "zhang", "zhang-pass-1");
    let (status, body) = console_post(
        &gw,
        &zhang,
        &zhang.1,
        &format!("/console/objections/{third}/resolve"),
        "outcome=correct&record=medical_insurance%2FCW-3&kind=correct&content=fine_yuan%3D-3.5&reason=x",
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("更正后的记录有误") && body.contains("content.fine_yuan"),
        "{body}"
    );
    assert_eq!(objection_state(&gw, &third), "under_review");

    // The third upheld with a correction of the fine (GD Art. 31): the corrected record reaches
    // the platform, and the correction has its own case page.
    rt.block_on(async {
        c.delete_all_cookies().await.unwrap();
        sign_in(&c, &admin, "zhang", "zhang-pass-1").await;
        c.goto(&format!("http://{admin}/console/objections/{third}"))
            .await
            .unwrap();
        c.find(Locator::Css(
            "form.resolve select[name='kind'] option[value='correct']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        c.find(Locator::Css("form.resolve textarea[name='content']"))
            .await
            .unwrap()
            .send_keys("fine_yuan=10000")
            .await
            .unwrap();
        take_step(&c, "resolve", Some("correct"), "罚款金额录入错误，予以更正").await;
        assert_eq!(text(&c, "#state").await, "异议成立");
        let link = c
            .find(Locator::Css("#history a[href^='/console/corrections/']"))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap()
            .unwrap();
        c.goto(&format!("http://{admin}{link}")).await.unwrap();
        assert!(text(&c, "#told").await.contains("provincial"));
        screenshot(&c, "25-correction-case").await;
        c.clone().close().await.unwrap();
    });
    assert!(wait_until(Duration::from_secs(20), || received_of(
        &platform, "CW-3"
    )
    .iter()
    .any(
        |s| s.kind == "correction" && s.record["content"]["fine_yuan"] == "10000"
    )));
}

/// LS Art. 21: a late objection to an evaluation result is accepted by the operator with a reason.
#[test]
fn an_operator_accepts_a_late_objection_at_the_console() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let platform = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &platform);
    gw.config.corrections.dangerous_manual_clock = true;
    operators(&mut gw);
    gw.start_clock_at("2026-09-28T10:00:00+08:00");
    gw.spawn();
    let admin = gw.admin.clone();
    gw.push_canonical(
        MI,
        &[json!({
            "category": "evaluation_result",
            "subject": {"kind": "institution", "role": "designated_medical_institution",
                        "id_type": "uscc", "id": "91350100M000100Y43", "name": "某某医院"},
            "source": {"record_id": "EVAL-C1", "region": "440106"},
            "disclosure": {"class": "public"},
            "valid_from": "2026-09-01",
            "content": {"year": 2026, "points": 80, "grade": "C"}
        })],
    );
    let late = gw.client(MI).post(
        "/v1/objections",
        "application/json",
        serde_json::to_vec(
            &json!({"records": [{"record_id": "EVAL-C1"}], "ground": "error_or_omission",
                                    "materials": "m", "notified_on": "2026-09-01"}),
        )
        .unwrap(),
    );
    assert_eq!(late.status, 422);
    let id = late.json()["error"]["objection_id"]
        .as_str()
        .unwrap()
        .to_string();
    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = rt.block_on(browser(profile.path()));
    rt.block_on(async {
        sign_in(&c, &admin, "zhang", "zhang-pass-1").await;
        c.goto(&format!(
            "http://{admin}/console/objections?state=filed_late"
        ))
        .await
        .unwrap();
        assert!(text(&c, "#objections").await.contains(&id));
        c.goto(&format!("http://{admin}/console/objections/{id}"))
            .await
            .unwrap();
        assert_eq!(text(&c, "#state").await, "逾期提出");
        take_step(&c, "accept-late", None, "主体住院，有证明材料").await;
        assert_eq!(text(&c, "#state").await, "审核中");
        assert!(text(&c, "#history").await.contains("主体住院，有证明材料"));
        screenshot(&c, "16-late-objection-accepted").await;
        c.clone().close().await.unwrap();
    });
    assert_eq!(objection_state(&gw, &id), "under_review");
}

/// GD Arts. 37-38, LS Art. 40 and LS Art. 20 at the desk: a repair decided, through its publicity
/// to completion (the withdrawal reaches the platform); a subject exited (every share withdrawn)
/// and re-entered (shared again); every page photographed.
#[test]
fn a_repair_through_publicity_and_a_subject_exit_and_reentry_at_the_console() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let platform = gw.receiver(&rt);
    gw.add_destination("provincial", "540000", &platform);
    gw.config.corrections.dangerous_manual_clock = true;
    // The tracker would complete the repair by itself once the publicity ends: slowed down so
    // that the operator's step is the one that completes it.
    gw.config.repairs.check_interval_ms = 3_600_000;
    gw.config.lifecycle.check_interval_ms = 100;
    operators(&mut gw);
    // Lhasa in 2025, while LS was in force (its repair rules are Lhasa's for 2024-2025).
    gw.start_clock_at("2025-09-28T10:00:00+08:00");
    gw.spawn();
    let admin = gw.admin.clone();
    gw.push_canonical(
        MI,
        &[penalty_of(pharmacy(), "540102", "REP-C1", "2025-03-20")],
    );
    assert!(wait_until(Duration::from_secs(20), || !received_of(
        &platform, "REP-C1"
    )
    .is_empty()));
    let applied = gw.client(MI).post(
        "/v1/repairs",
        "application/json",
        serde_json::to_vec(
            &json!({"records": [{"record_id": "REP-C1"}], "materials": "修复材料 2025-001",
                                    "commitment": "信用承诺书（已公开）"}),
        )
        .unwrap(),
    );
    assert_eq!(
        applied.status,
        201,
        "{}",
        String::from_utf8_lossy(&applied.body)
    );
    let id = applied.json()["id"].as_str().unwrap().to_string();
    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = rt.block_on(browser(profile.path()));
    rt.block_on(async {
        sign_in(&c, &admin, "zhang", "zhang-pass-1").await;
        c.goto(&format!("http://{admin}/console/repairs"))
            .await
            .unwrap();
        assert!(text(&c, "#repairs").await.contains(&id));
        screenshot(&c, "17-repairs").await;
        c.goto(&format!("http://{admin}/console/repairs/{id}"))
            .await
            .unwrap();
        // No decision chosen: refused, nothing changed.
        take_step(&c, "decide", None, "整改到位").await;
        assert!(text(&c, "#message").await.contains("请选择修复决定"));
        c.goto(&format!("http://{admin}/console/repairs/{id}"))
            .await
            .unwrap();
        take_step(&c, "decide", Some("approve"), "整改到位，符合修复条件").await;
        assert_eq!(text(&c, "#state").await, "公示中");
        let case = text(&c, "#case").await;
        assert!(
            case.contains("公示截止"),
            "the publicity's end, not the old decision deadline: {case}"
        );
        assert!(
            c.find_all(Locator::Css("form.complete"))
                .await
                .unwrap()
                .is_empty(),
            "the publicity runs"
        );
        screenshot(&c, "18-repair-in-publicity").await;
    });
    // After the publicity (5 working days), the operator completes it (GD Art. 38).
    gw.set_clock("2025-10-20T10:00:00+08:00");
    rt.block_on(async {
        c.goto(&format!("http://{admin}/console/repairs/{id}"))
            .await
            .unwrap();
        take_step(&c, "complete", None, "").await;
        assert_eq!(text(&c, "#state").await, "已修复");
        assert!(
            c.find_all(Locator::Css("form.commitment-broken"))
                .await
                .unwrap()
                .len()
                == 1
        );
        screenshot(&c, "19-repair-completed").await;
    });
    assert!(wait_until(Duration::from_secs(20), || received_of(
        &platform, "REP-C1"
    )
    .iter()
    .any(
        |s| s.kind == "withdrawal" && s.record["withdrawn"]["reason"] == "repaired"
    )));

    // A second record of the subject, then its exit (LS Art. 20) and re-entry.
    gw.push_canonical(
        MI,
        &[penalty_of(pharmacy(), "540102", "EXIT-C1", "2025-09-20")],
    );
    assert!(wait_until(Duration::from_secs(20), || !received_of(
        &platform, "EXIT-C1"
    )
    .is_empty()));
    rt.block_on(async {
        c.goto(&format!(
            "http://{admin}/console/search?q=uscc:91310110666007217T"
        ))
        .await
        .unwrap();
        let link = c
            .find(Locator::Css("#subject-link"))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap()
            .unwrap();
        c.goto(&format!("http://{admin}{link}")).await.unwrap();
        assert!(
            text(&c, "#identity").await.contains("91310110666007217T"),
            "not personal: shown"
        );
        let page = c.source().await.unwrap();
        assert!(
            page.contains("EXIT-C1") && page.contains("修复"),
            "records with their marks"
        );
        screenshot(&c, "20-subject").await;
        c.find(Locator::Css("form.exit input[name='on']"))
            .await
            .unwrap()
            .send_keys("2025-10-20")
            .await
            .unwrap();
        take_step(&c, "exit", None, "").await;
        assert_eq!(
            c.find(Locator::Css("#standing"))
                .await
                .unwrap()
                .attr("data-code")
                .await
                .unwrap()
                .as_deref(),
            Some("exited")
        );
    });
    assert!(wait_until(Duration::from_secs(20), || received_of(
        &platform, "EXIT-C1"
    )
    .iter()
    .any(
        |s| s.kind == "withdrawal" && s.record["withdrawn"]["reason"] == "subject_exited"
    )));
    let shares_before = received_of(&platform, "EXIT-C1")
        .iter()
        .filter(|s| s.kind == "share")
        .count();
    rt.block_on(async {
        c.find(Locator::Css("form.reentry input[name='on']"))
            .await
            .unwrap()
            .send_keys("2025-10-21")
            .await
            .unwrap();
        take_step(&c, "reentry", None, "").await;
        assert_eq!(
            c.find(Locator::Css("#standing"))
                .await
                .unwrap()
                .attr("data-code")
                .await
                .unwrap()
                .as_deref(),
            Some("active")
        );
    });
    assert!(wait_until(Duration::from_secs(20), || received_of(
        &platform, "EXIT-C1"
    )
    .iter()
    .filter(|s| s.kind == "share")
    .count()
        > shares_before));
    // Evaluation (GD Arts. 21-22; LS Art. 27): the year's results; publishing the running year
    // is refused (its cycle has not ended), a re-evaluation starts.
    rt.block_on(async {
        c.goto(&format!("http://{admin}/console/evaluation"))
            .await
            .unwrap();
        assert!(text(&c, "#results").await.contains("结果数 1"));
        take_step(&c, "publish", None, "").await;
        let refused = text(&c, "#message").await;
        assert!(refused.contains("2025"), "{refused}");
        c.goto(&format!("http://{admin}/console/evaluation"))
            .await
            .unwrap();
        take_step(&c, "rerun", None, "").await;
        assert!(text(&c, "#done").await.contains("已办理"));
        assert!(text(&c, "#cycles tr.cycle td:nth-child(5)")
            .await
            .starts_with("1 "));
    });
    // The other pages, photographed at the console's size.
    rt.block_on(async {
        for (path, name) in [
            (
                "/console/record?agency=medical_insurance&id=EXIT-C1",
                "21-record",
            ),
            ("/console/corrections", "22-corrections"),
            ("/console/evaluation", "23-evaluation"),
            ("/console/deadlines", "24-deadlines"),
        ] {
            c.goto(&format!("http://{admin}{path}")).await.unwrap();
            c.find(Locator::Css("main h1")).await.unwrap();
            screenshot(&c, name).await;
        }
        c.clone().close().await.unwrap();
    });
}
