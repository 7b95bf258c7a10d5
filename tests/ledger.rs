//! End to end: the publication ledger through the real binary, with the manual clock and
//! reference receivers whose every byte is searched. What each platform may still hold, for how
//! long, and what must be withdrawn (LS Arts. 20, 25, 27; GD Arts. 25, 38; the national
//! credit-repair measures).

mod common;

use std::time::Duration;

use common::receiver::{Received, Receiver};
use common::{days_ago, multi_thread_runtime, wait_until, Gateway};
use serde_json::{json, Value};

const MI: &str = "medical_insurance";

fn penalty(record_id: &str, region: &str, decided_on: &str) -> Value {
    json!({
        "category": "administrative",
        "subject": {"kind": "institution", "role": "designated_retail_pharmacy",
                    "id_type": "uscc", "id": "91310110666007217T", "name": "广州市某某大药房有限公司"},
        "source": {"record_id": record_id, "region": region},
        "basis": {"doc_type": "penalty_decision", "doc_number": format!("医保罚〔2026〕{record_id}号"), "decided_on": decided_on},
        "disclosure": {"class": "public"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"], "fine_yuan": "20000"}
    })
}

fn push(gw: &Gateway, records: Vec<Value>) -> Value {
    gw.push_canonical(MI, &records)
}

/// Shares of one record as received, in order.
fn of(r: &Receiver, record_id: &str) -> Vec<Received> {
    r.received()
        .into_iter()
        .filter(|s| {
            s.record
                .pointer("/source/record_id")
                .and_then(Value::as_str)
                == Some(record_id)
                || s.record.get("JLBH").and_then(Value::as_str) == Some(record_id)
        })
        .collect()
}

fn kinds(r: &Receiver, record_id: &str) -> Vec<(String, String)> {
    of(r, record_id)
        .into_iter()
        .map(|s| (s.kind, s.channel))
        .collect()
}

fn all_bytes(r: &Receiver) -> String {
    r.bodies()
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn gateway(dests: &[(&str, &str)]) -> (tokio::runtime::Runtime, Gateway, Vec<Receiver>) {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let receivers: Vec<Receiver> = dests.iter().map(|_| gw.receiver(&rt)).collect();
    for ((id, region), r) in dests.iter().zip(&receivers) {
        gw.add_destination(id, region, r);
    }
    gw.config.corrections.dangerous_manual_clock = true;
    gw.config.lifecycle.check_interval_ms = 100;
    (rt, gw, receivers)
}

fn ledger(gw: &Gateway, record_id: &str, as_of: Option<&str>) -> Value {
    let q = as_of
        .map(|t| format!("?as_of={}", t.replace('+', "%2B")))
        .unwrap_or_default();
    let reply = gw
        .client(MI)
        .get(&format!("/v1/ledger/records/{MI}/{record_id}{q}"));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

/// Waits until the provincial platform's holdings of `record_id` on every channel named are in
/// `state`: the platform's answer is acknowledged in the ledger by a commit after the receiver
/// has the share, so what the receiver saw is not yet what the ledger says.
fn until_state(gw: &Gateway, record_id: &str, channels: &[&str], state: &str) {
    assert!(
        wait_until(Duration::from_secs(20), || {
            let view = ledger(gw, record_id, None);
            channels
                .iter()
                .all(|c| holding(&view, "provincial", c)["state"] == state)
        }),
        "{}",
        ledger(gw, record_id, None)
    );
}

fn holding<'a>(view: &'a Value, destination: &str, channel: &str) -> &'a Value {
    view["holdings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["destination"] == destination && h["channel"] == channel)
        .unwrap_or_else(|| panic!("no holding {destination}/{channel} in {view}"))
}

/// Issue #26 item 4: a 2019 penalty, decided before every notice period in the rules (the first
/// runs from 2023-05-01), with its own notice end 2020-10-10 (CF_GSJZQ), pushed today: it was
/// noticed with no end. Now its own end is honoured: never noticed, shared with government only.
#[test]
fn a_penalty_decided_before_every_notice_period_is_never_noticed_past_its_own_end() {
    let (_rt, mut gw, rs) = gateway(&[("provincial", "440000")]);
    gw.spawn();
    let mut old = penalty("Y2019-1", "440106", "2019-10-10");
    old["content"]["notice_until"] = json!("2020-10-10");
    push(&gw, vec![old]);
    assert!(wait_until(Duration::from_secs(20), || !of(
        &rs[0], "Y2019-1"
    )
    .is_empty()));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        kinds(&rs[0], "Y2019-1"),
        vec![("share".into(), "gov_share".into())]
    );
    assert!(!all_bytes(&rs[0]).contains("public_notice"));
}

#[test]
fn a_penalty_decided_two_years_ago_is_shared_with_government_and_never_noticed() {
    let (_rt, mut gw, rs) = gateway(&[("provincial", "440000")]);
    gw.spawn();
    // General misconduct: noticed at most one year from the decision (national measures).
    push(&gw, vec![penalty("OLD-1", "440106", &days_ago(730))]);
    assert!(wait_until(Duration::from_secs(20), || !of(&rs[0], "OLD-1").is_empty()));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        kinds(&rs[0], "OLD-1"),
        vec![("share".into(), "gov_share".into())]
    );
    assert!(
        !all_bytes(&rs[0]).contains("public_notice"),
        "no byte of a public notice was sent"
    );
    until_state(&gw, "OLD-1", &["gov_share"], "held");
}

#[test]
fn a_general_penalty_is_withdrawn_from_public_notice_exactly_when_its_window_ends() {
    let (_rt, mut gw, rs) = gateway(&[("provincial", "440000")]);
    gw.spawn();
    // Decided 300 days ago: the one-year window ends about two months from now, whenever this runs.
    let decided = days_ago(300);
    let date = credit_gateway::record::parse_date(&decided).unwrap();
    let last_day = credit_gateway::lifecycle::notice::add_months(date, 12);
    let end = credit_gateway::lifecycle::notice::start_of(last_day.next_day().unwrap());
    let rfc = |t: time::OffsetDateTime| credit_gateway::clock::rfc3339(t);
    push(&gw, vec![penalty("WIN-1", "440106", &decided)]);
    assert!(wait_until(Duration::from_secs(20), || of(&rs[0], "WIN-1")
        .len()
        == 2));
    let held_at = rfc(time::OffsetDateTime::now_utc());

    // A restart in between: the timer is in the store, not in memory.
    gw.restart();
    gw.set_clock(&rfc(end - time::Duration::seconds(2)));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(of(&rs[0], "WIN-1").len(), 2, "not one second early");

    gw.set_clock(&rfc(end + time::Duration::seconds(1)));
    assert!(
        wait_until(Duration::from_secs(20), || of(&rs[0], "WIN-1").len() == 3),
        "{:?}",
        kinds(&rs[0], "WIN-1")
    );
    let last = of(&rs[0], "WIN-1").pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.channel.as_str()),
        ("withdrawal", "public_notice")
    );
    assert_eq!(last.record["withdrawn"]["reason"], "notice_period_ended");
    gw.set_clock(&rfc(end + time::Duration::hours(30)));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        of(&rs[0], "WIN-1").len(),
        3,
        "withdrawn once; government sharing continues"
    );

    // The as-of answer comes from history: held before the withdrawal, withdrawn after.
    let before = ledger(&gw, "WIN-1", Some(&held_at));
    assert_eq!(
        holding(&before, "provincial", "public_notice")["state"],
        "held"
    );
    assert_eq!(
        holding(&before, "provincial", "public_notice")["showing_version"],
        1
    );
    until_state(&gw, "WIN-1", &["public_notice"], "withdrawn");
    let after = ledger(&gw, "WIN-1", None);
    assert_eq!(
        holding(&after, "provincial", "public_notice")["state"],
        "withdrawn"
    );
    assert!(holding(&after, "provincial", "public_notice")["showing_version"].is_null());
    assert_eq!(holding(&after, "provincial", "gov_share")["state"], "held");
    let events = holding(&after, "provincial", "public_notice")["events"]
        .as_array()
        .unwrap();
    assert_eq!(events[0]["rule"], "mi-public-notice");
    assert!(events[0]["rules_hash"].as_str().unwrap().len() == 32);
    assert!(events[0]["basis"].as_str().unwrap().contains("WIN-1"));
    assert_eq!(events[1]["reason"], "notice_period_ended");
}

#[test]
fn a_version_that_becomes_restricted_is_withdrawn_from_every_channel() {
    let (_rt, mut gw, rs) = gateway(&[("provincial", "440000")]);
    gw.spawn();
    push(&gw, vec![penalty("RES-1", "440106", &days_ago(10))]);
    assert!(wait_until(Duration::from_secs(20), || of(&rs[0], "RES-1")
        .len()
        == 2));
    let mut restricted = penalty("RES-1", "440106", &days_ago(10));
    restricted["disclosure"] = json!({"class": "restricted", "restriction": "state_secret"});
    restricted["content"]["facts"] = json!("绝密-RES-9931");
    push(&gw, vec![restricted]);
    assert!(wait_until(Duration::from_secs(20), || of(&rs[0], "RES-1")
        .len()
        == 4));
    let mut withdrawn: Vec<String> = of(&rs[0], "RES-1")
        .into_iter()
        .filter(|s| s.kind == "withdrawal")
        .map(|s| s.channel)
        .collect();
    withdrawn.sort();
    assert_eq!(withdrawn, vec!["gov_share", "public_notice"]);
    assert!(
        !all_bytes(&rs[0]).contains("绝密-RES-9931"),
        "the restricted version never left"
    );
    until_state(&gw, "RES-1", &["gov_share", "public_notice"], "withdrawn");
    let view = ledger(&gw, "RES-1", None);
    for channel in ["gov_share", "public_notice"] {
        let h = holding(&view, "provincial", channel);
        assert_eq!(h["state"], "withdrawn");
        assert_eq!(h["events"][1]["reason"], "restricted_record");
    }
}

#[test]
fn a_region_change_reaches_the_new_city_and_is_withdrawn_from_the_old() {
    let (_rt, mut gw, rs) = gateway(&[("guangzhou", "440100"), ("shenzhen", "440300")]);
    gw.spawn();
    push(&gw, vec![penalty("MOVE-1", "440106", &days_ago(10))]);
    assert!(wait_until(Duration::from_secs(20), || of(&rs[0], "MOVE-1")
        .len()
        == 2));
    let mut moved = penalty("MOVE-1", "440305", &days_ago(10));
    moved["source"]["agency"] = json!(MI);
    let reply = gw.client(MI).post(
        "/v1/corrections",
        "application/json",
        serde_json::to_vec(&json!({"record_id": "MOVE-1", "kind": "correct", "record": moved, "reason": "区划有误"})).unwrap(),
    );
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let mut dests: Vec<String> = reply.json()["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    dests.sort();
    assert_eq!(
        dests,
        vec!["guangzhou", "shenzhen"],
        "the correction tracks both platforms"
    );
    assert!(wait_until(Duration::from_secs(20), || of(&rs[1], "MOVE-1")
        .len()
        == 2));
    assert!(of(&rs[1], "MOVE-1").iter().all(|s| s.kind == "correction"));
    assert!(wait_until(Duration::from_secs(20), || of(&rs[0], "MOVE-1")
        .len()
        == 4));
    let old: Vec<Received> = of(&rs[0], "MOVE-1").into_iter().skip(2).collect();
    assert!(
        old.iter().all(|s| s.kind == "withdrawal"),
        "{:?}",
        kinds(&rs[0], "MOVE-1")
    );
    assert!(old
        .iter()
        .all(|s| s.record["withdrawn"]["reason"] == "not_routed"));
    assert!(old
        .iter()
        .all(|s| s.record["correction"]["reason"] == "区划有误"));
}

#[test]
fn a_b_grade_under_the_lhasa_rules_reaches_no_public_channel_ls_art_27() {
    let (_rt, mut gw, rs) = gateway(&[("lhasa", "540100")]);
    gw.spawn();
    let evaluation = |id: &str, grade: &str, points: u32| {
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
    push(
        &gw,
        vec![
            evaluation("EV-B", "B", 90),
            evaluation("EV-C", "C", 80),
            evaluation("EV-A", "A", 97),
        ],
    );
    assert!(wait_until(Duration::from_secs(20), || rs[0]
        .received()
        .len()
        == 3));
    std::thread::sleep(Duration::from_millis(500));
    assert!(of(&rs[0], "EV-B").is_empty());
    assert!(
        !all_bytes(&rs[0]).contains("EV-B"),
        "no byte of the B grade reached the platform"
    );
    assert_eq!(
        kinds(&rs[0], "EV-C"),
        vec![("share".into(), "public_notice".into())]
    );
    let mut a = kinds(&rs[0], "EV-A");
    a.sort();
    assert_eq!(
        a,
        vec![
            ("share".into(), "gov_share".into()),
            ("share".into(), "public_notice".into())
        ]
    );
}

#[test]
fn exit_withdraws_everything_and_reentry_restores_it_ls_art_20() {
    let (_rt, mut gw, rs) = gateway(&[("provincial", "440000")]);
    gw.spawn();
    push(&gw, vec![penalty("EXIT-1", "440106", &days_ago(10))]);
    assert!(wait_until(Duration::from_secs(20), || of(&rs[0], "EXIT-1")
        .len()
        == 2));
    let client = gw.client(MI);
    let path = "/v1/subjects/uscc/91310110666007217T";
    let reply = client.post(
        &format!("{path}/exit"),
        "application/json",
        br#"{"reason": "left_service", "on": "2026-11-01"}"#.to_vec(),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(wait_until(Duration::from_secs(20), || of(&rs[0], "EXIT-1")
        .len()
        == 4));
    assert!(of(&rs[0], "EXIT-1")[2..]
        .iter()
        .all(|s| s.kind == "withdrawal" && s.record["withdrawn"]["reason"] == "subject_exited"));
    assert_eq!(client.get(path).status, 404, "hidden from reads");
    let again = client.post(
        &format!("{path}/exit"),
        "application/json",
        br#"{"reason": "death", "on": "2026-11-02"}"#.to_vec(),
    );
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["error"]["code"], "standing_unchanged");
    // Nothing new of an exited subject is shared.
    push(&gw, vec![penalty("EXIT-2", "440106", &days_ago(5))]);
    std::thread::sleep(Duration::from_millis(800));
    assert!(of(&rs[0], "EXIT-2").is_empty());
    // Others may not mark exits.
    let health = gw.client("health").post(
        &format!("{path}/reentry"),
        "application/json",
        br#"{"on": "2026-11-20"}"#.to_vec(),
    );
    assert_eq!(health.status, 403);
    let reply = client.post(
        &format!("{path}/reentry"),
        "application/json",
        br#"{"on": "2026-11-20"}"#.to_vec(),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(wait_until(Duration::from_secs(20), || of(&rs[0], "EXIT-1")
        .len()
        == 6
        && of(&rs[0], "EXIT-2").len() == 2));
    assert!(of(&rs[0], "EXIT-1")[4..].iter().all(|s| s.kind == "share"));
    assert_eq!(client.get(path).status, 200, "visible again");
}

#[test]
fn a_rules_change_on_sighup_withdraws_what_the_new_rules_forbid() {
    let (_rt, mut gw, rs) = gateway(&[("provincial", "440000")]);
    let rules = gw.dir.path().join("sharing.toml");
    let shipped =
        std::fs::read_to_string(common::repo().join("mappings/rules/sharing.toml")).unwrap();
    std::fs::write(&rules, &shipped).unwrap();
    gw.config.sharing.rules = Some(rules.clone());
    gw.spawn();
    push(&gw, vec![penalty("HUP-1", "440106", &days_ago(10))]);
    assert!(wait_until(Duration::from_secs(20), || of(&rs[0], "HUP-1")
        .len()
        == 2));
    // The operator stops publicly noticing penalties.
    let without_public = shipped.replace(
        "name = \"mi-public-notice\"\nfrom_agencies = [\"medical_insurance\", \"credit_evaluation\"]\ncategories = [\"administrative\", \"dishonest_list\"]",
        "name = \"mi-public-notice\"\nfrom_agencies = [\"medical_insurance\", \"credit_evaluation\"]\ncategories = [\"dishonest_list\"]",
    );
    assert_ne!(without_public, shipped);
    std::fs::write(&rules, without_public).unwrap();
    gw.sighup();
    assert!(
        wait_until(Duration::from_secs(20), || of(&rs[0], "HUP-1").len() == 3),
        "{:?}\n{}",
        kinds(&rs[0], "HUP-1"),
        gw.log()
    );
    let last = of(&rs[0], "HUP-1").pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.channel.as_str()),
        ("withdrawal", "public_notice")
    );
    assert_eq!(last.record["withdrawn"]["reason"], "not_routed");
    // A broken rules file keeps the rules in force and changes nothing.
    std::fs::write(&rules, "[[rules]]\nname = 1\n").unwrap();
    gw.sighup();
    assert!(
        wait_until(Duration::from_secs(20), || gw
            .log()
            .contains("rules reload failed")),
        "{}",
        gw.log()
    );
    assert_eq!(of(&rs[0], "HUP-1").len(), 3);
}

#[test]
fn the_xml_destination_can_tell_a_withdrawal_from_a_publication() {
    let (_rt, mut gw, rs) = gateway(&[("provincial", "440000")]);
    gw.config.destinations[0].format = Some("shuanggongshi-xml".into());
    gw.spawn();
    push(&gw, vec![penalty("XMLW-1", "440106", &days_ago(10))]);
    assert!(wait_until(Duration::from_secs(20), || of(&rs[0], "XMLW-1")
        .len()
        == 2));
    let mut restricted = penalty("XMLW-1", "440106", &days_ago(10));
    restricted["disclosure"] = json!({"class": "restricted", "restriction": "legally_prohibited"});
    push(&gw, vec![restricted]);
    assert!(wait_until(Duration::from_secs(20), || of(&rs[0], "XMLW-1")
        .len()
        == 4));
    let shares = of(&rs[0], "XMLW-1");
    assert!(shares[..2].iter().all(|s| s.kind == "share"));
    assert!(
        shares[2..].iter().all(|s| s.kind == "withdrawal"),
        "LX tells them apart"
    );
    let bodies = all_bytes(&rs[0]);
    assert!(bodies.contains("LX=\"withdrawal\""), "{bodies}");
    assert_eq!(
        shares[2].record["CXYY"], "restricted_record",
        "the reason travels too"
    );
}

#[test]
fn operators_ask_the_ledger_and_mark_exits_from_the_cli_running_or_stopped() {
    let (_rt, mut gw, rs) = gateway(&[("provincial", "440000")]);
    gw.spawn();
    push(&gw, vec![penalty("CLI-1", "440106", &days_ago(10))]);
    assert!(wait_until(Duration::from_secs(20), || of(&rs[0], "CLI-1")
        .len()
        == 2));
    // Running: through the admin endpoint.
    let (code, out, err) = gw.cli(&["ledger", "record", "--agency", MI, "--record-id", "CLI-1"]);
    assert_eq!(code, 0, "{err}");
    let view: Value = serde_json::from_str(&out).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let (_, out, _) = gw.cli(&["ledger", "record", "--agency", MI, "--record-id", "CLI-1"]);
            let v: Value = serde_json::from_str(&out).unwrap();
            holding(&v, "provincial", "public_notice")["state"] == "held"
        }),
        "{view}"
    );
    let (code, out, err) = gw.cli(&[
        "subjects",
        "exit",
        "--id-type",
        "uscc",
        "--id",
        "91310110666007217T",
        "--reason",
        "death",
        "--on",
        "2026-11-01",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["changes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(wait_until(Duration::from_secs(20), || of(&rs[0], "CLI-1")
        .len()
        == 4));
    let (code, _, err) = gw.cli(&[
        "subjects",
        "exit",
        "--id-type",
        "uscc",
        "--id",
        "91310110666007217T",
        "--reason",
        "death",
        "--on",
        "2026-11-01",
    ]);
    assert_eq!(code, 2, "already exited: {err}");
    let (code, out, _) = gw.cli(&[
        "ledger",
        "subject",
        "--id-type",
        "uscc",
        "--id",
        "91310110666007217T",
    ]);
    assert_eq!(code, 0);
    let subject: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(subject["status"], "exited");
    assert_eq!(subject["standing_change"]["reason"], "death");
    // Stopped: on the data directory; the restarted gateway delivers what it queued.
    gw.stop();
    let (code, out, err) = gw.cli(&[
        "subjects",
        "reentry",
        "--id-type",
        "uscc",
        "--id",
        "91310110666007217T",
        "--on",
        "2026-11-20",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["status"],
        "active"
    );
    gw.spawn();
    assert!(wait_until(Duration::from_secs(20), || of(&rs[0], "CLI-1")
        .len()
        == 6));
    let (code, _, _) = gw.cli(&["ledger", "record", "--agency", MI, "--record-id", "NOPE"]);
    assert_eq!(code, 1, "no such record");
    // The chain still verifies, and names the subject only by a hash.
    gw.stop();
    let (code, out, err) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, chain, _) = gw.cli(&["audit", "show", "--limit", "1000"]);
    let standing: Vec<&str> = chain
        .lines()
        .filter(|l| l.contains("subject_exited") || l.contains("subject_reentered"))
        .collect();
    assert_eq!(standing.len(), 2, "{chain}");
    for line in standing {
        assert!(
            line.contains("subject_sha256") && !line.contains("91310110666007217T"),
            "{line}"
        );
    }
}

#[test]
fn a_lhasa_dishonesty_record_is_withdrawn_everywhere_and_marked_expired_after_three_years_ls_art_20(
) {
    let (_rt, mut gw, rs) = gateway(&[("lhasa", "540100")]);
    gw.spawn();
    let mut record = penalty("RET-1", "540102", "2025-12-01");
    record["subject"]["name"] = json!("拉萨市某药房");
    push(&gw, vec![record]);
    assert!(wait_until(Duration::from_secs(20), || !of(&rs[0], "RET-1").is_empty()));
    std::thread::sleep(Duration::from_millis(300));
    let held = of(&rs[0], "RET-1").len();
    gw.set_clock("2028-11-30T23:59:00+08:00");
    std::thread::sleep(Duration::from_millis(600));
    let before = of(&rs[0], "RET-1");
    assert!(
        before
            .iter()
            .all(|s| s.record["withdrawn"]["reason"] != "retention_ended"),
        "not before three years"
    );
    let still_held = before.iter().filter(|s| s.kind == "share").count()
        - before.iter().filter(|s| s.kind == "withdrawal").count();
    gw.set_clock("2028-12-01T00:00:01+08:00");
    assert!(
        wait_until(Duration::from_secs(20), || of(&rs[0], "RET-1").len()
            == before.len() + still_held),
        "{held} then {:?}",
        kinds(&rs[0], "RET-1")
    );
    let last = of(&rs[0], "RET-1").pop().unwrap();
    assert_eq!(last.kind, "withdrawal");
    assert_eq!(last.record["withdrawn"]["reason"], "retention_ended");
    let archive = gw
        .client(MI)
        .get("/v1/subjects/uscc/91310110666007217T")
        .json();
    let history = &archive["categories"]["administrative"][0];
    assert!(history["expired_at"].is_string(), "{archive}");
    assert_eq!(
        history["versions"].as_array().unwrap().len(),
        1,
        "kept for audit"
    );
}

/// A publication that was dead-lettered and then withdrawn must never be sent by a replay: only
/// what still stands is replayed.
#[test]
fn a_replay_never_sends_a_publication_superseded_while_it_was_dead() {
    let (_rt, mut gw, rs) = gateway(&[("provincial", "440000")]);
    gw.spawn();
    rs[0].set_mode(common::receiver::Mode::RefuseRecord("STALE-1".into()), None);
    push(&gw, vec![penalty("STALE-1", "440106", &days_ago(10))]);
    let dead = |gw: &Gateway| {
        let (_, out, _) = gw.cli(&["outbox", "list", "--dead"]);
        serde_json::from_str::<Value>(&out).unwrap()["entries"]
            .as_array()
            .unwrap()
            .len()
    };
    assert!(wait_until(Duration::from_secs(20), || dead(&gw) == 2));
    let mut restricted = penalty("STALE-1", "440106", &days_ago(10));
    restricted["disclosure"] = json!({"class": "restricted", "restriction": "state_secret"});
    push(&gw, vec![restricted]);
    assert!(
        wait_until(Duration::from_secs(20), || dead(&gw) == 4),
        "the withdrawals are refused too"
    );
    rs[0].set_mode(common::receiver::Mode::Normal, None);
    let (code, out, err) = gw.cli(&["outbox", "replay"]);
    assert_eq!(code, 0, "{err}");
    let replay: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (replay["replayed"].as_u64(), replay["superseded"].as_u64()),
        (Some(2), Some(2)),
        "{replay}"
    );
    assert!(wait_until(Duration::from_secs(20), || of(
        &rs[0], "STALE-1"
    )
    .len()
        == 2));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        of(&rs[0], "STALE-1").iter().all(|s| s.kind == "withdrawal"),
        "{:?}",
        kinds(&rs[0], "STALE-1")
    );
}
