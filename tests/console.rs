//! The operator console in a real browser: Debian's chromium driven through chromedriver with
//! fantoccini (WebDriver). Screenshots are saved under `target/console-screenshots/` for review.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::receiver::Mode;
use common::{multi_thread_runtime, resident_id, wait_until, Gateway};
use credit_gateway::config::{OperatorConfig, OperatorRole};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn browser(profile: &std::path::Path) -> (Driver, Client) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (Debian: chromium-driver; .ci/run installs it)");
    let driver = Driver(child);
    assert!(
        wait_until(Duration::from_secs(20), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "chromedriver did not start"
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1400,1000",
                     format!("--user-data-dir={}", profile.display())]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a chromium session");
    (driver, client)
}

async fn screenshot(c: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn sign_in(c: &Client, admin: &str, name: &str, password: &str) {
    c.goto(&format!("http://{admin}/console/login"))
        .await
        .unwrap();
    let form = c
        .form(Locator::Css("form[action='/console/login']"))
        .await
        .unwrap();
    form.set_by_name("name", name).await.unwrap();
    form.set_by_name("password", password).await.unwrap();
    form.submit().await.unwrap();
    c.wait().for_element(Locator::Css("#who")).await.unwrap();
}

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
        let mut plain = false;
        for _ in 0..60 {
            c.goto(&format!("http://{admin}/console")).await.unwrap();
            let health = c
                .find(Locator::Css("#health"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if health == "就绪" {
                plain = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert!(plain, "ready again once the platform recovers");
        c.clone().close().await.unwrap();
    });
}
