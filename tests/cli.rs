//! End to end: the operator and agency commands of the real binary, their output and exit
//! statuses (issue "Corrections": `calendar deadline` and `calendar is-working-day`; issue
//! "Inbound": `config example`, `mappings check`; issue "Outbound": `outbox list/show/stats`).

mod common;

use std::time::Duration;

use common::receiver::Mode;
use common::{multi_thread_runtime, repo, run_cli, wait_until, Gateway, BIN};
use serde_json::{json, Value};

fn in_empty_dir(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    run_cli(dir.path(), args)
}

#[test]
fn calendar_deadline_prints_the_deadline_first_and_marks_an_estimate_past_the_known_years() {
    // GD Art. 31: three working days; National Day 2025 (Oct 1-8) then Thu 9, Fri 10 and the
    // make-up Saturday 11.
    let (code, out, err) = in_empty_dir(&[
        "calendar",
        "deadline",
        "--from",
        "2025-09-30T18:00:00+08:00",
        "--working-days",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().next(), Some("2025-10-11T23:59:59+08:00"));
    // The day found is the China-time day: 16:30 UTC on Thursday is Friday in Beijing, so the
    // count is Mon 17, Tue 18, Wed 19 (a UTC day would give Tue 18).
    let (_, out, _) = in_empty_dir(&["calendar", "deadline", "--from", "2025-03-13T16:30:00Z"]);
    assert_eq!(out.lines().next(), Some("2025-03-19T23:59:59+08:00"));

    let (code, out, err) = in_empty_dir(&[
        "calendar",
        "deadline",
        "--from",
        "2026-12-29T10:00:00+08:00",
    ]);
    // Past the last known year (issue #26): an estimate, said to be one. As the gateway's own
    // duty (the default) every day counts: Wed 30, Thu 31 (known), then Fri 1 January.
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("2027-01-01T23:59:59+08:00"));
    let note = lines.next().unwrap_or_default();
    assert!(
        note.starts_with("provisional") && note.contains("2027.toml"),
        "{out}"
    );
    // As a window given to a subject, never earlier: weekdays plus the holiday margin.
    let (code, out, _) = in_empty_dir(&[
        "calendar",
        "deadline",
        "--from",
        "2026-12-29T10:00:00+08:00",
        "--estimate",
        "window",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.lines().next().unwrap() > "2027-01-01T23:59:59+08:00",
        "{out}"
    );
    // Before the first known year there is nothing to estimate from.
    let (code, out, err) = in_empty_dir(&[
        "calendar",
        "deadline",
        "--from",
        "2023-12-29T10:00:00+08:00",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("2023"), "{err}");

    let (code, _, err) = in_empty_dir(&["calendar", "deadline", "--from", "yesterday"]);
    assert_eq!(code, 2, "an unreadable time: {err}");
}

#[test]
fn calendar_is_working_day_prints_working_or_rest() {
    for (date, want) in [
        ("2025-09-28", "working"), // make-up Sunday
        ("2025-10-08", "rest"),    // National Day
        ("2025-10-09", "working"),
        ("2026-02-14", "working"), // make-up Saturday before Spring Festival 2026
        ("2026-02-23", "rest"),
        ("2024-06-10", "rest"), // Dragon Boat 2024
    ] {
        let (code, out, err) = in_empty_dir(&["calendar", "is-working-day", date]);
        assert_eq!(code, 0, "{date}: {err}");
        assert_eq!(out.trim(), want, "{date}");
    }
    let (code, out, err) = in_empty_dir(&["calendar", "is-working-day", "2023-05-01"]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(
        err.contains("outside the known working-day calendar"),
        "{err}"
    );
}

#[test]
fn config_example_is_the_shipped_file_and_a_valid_configuration() {
    let (code, out, err) = in_empty_dir(&["config", "example"]);
    assert_eq!(code, 0, "{err}");
    let shipped = std::fs::read_to_string(repo().join("credit-gateway.example.toml")).unwrap();
    assert_eq!(
        out, shipped,
        "regenerate with `credit-gateway config example`"
    );
    // Uncommented, it is the defaults; `config show` accepts it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("credit-gateway.toml"), &out).unwrap();
    let (code, shown, err) = run_cli(dir.path(), &["config", "show"]);
    assert_eq!(code, 0, "{err}");
    assert!(shown.contains("127.0.0.1:8443"), "{shown}");

    std::fs::write(
        dir.path().join("credit-gateway.toml"),
        "[server]\nlisten = \"not an address\"\nmax_body_byte = 1\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(dir.path(), &["config", "show"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("max_body_byte"),
        "unknown keys are named: {err}"
    );
}

#[test]
fn mappings_check_reports_every_problem() {
    let (code, out, err) = in_empty_dir(&["mappings", "check"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mappings OK"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    std::fs::create_dir_all(&mappings).unwrap();
    std::fs::write(
        mappings.join("broken.toml"),
        "id = \"broken\"\nformat = \"yaml\"\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(dir.path(), &["mappings", "check"]);
    assert_eq!(code, 1);
    assert!(err.contains("broken.toml"), "names the file: {err}");
}

#[test]
fn outbox_commands_work_on_a_stopped_gateway_and_are_audited() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let province = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &province);
    province.set_mode(Mode::Unavailable, None);
    gw.spawn();
    let record = json!({
        "category": "agreement_performance",
        "subject": {"kind": "institution", "role": "designated_medical_institution",
                    "id_type": "uscc", "id": "91350100M000100Y43", "name": "某某医院"},
        "source": {"record_id": "CLI-1", "region": "440106"},
        "disclosure": {"class": "gov_share"},
        "content": {"item": "agreement", "status": "breached", "agreement_number": "YB-2025-001"}
    });
    let reply = gw.client("medical_insurance").post(
        "/v1/records?mapping=canonical",
        "application/json",
        serde_json::to_vec(&vec![record]).unwrap(),
    );
    assert_eq!(reply.status, 200);
    assert!(wait_until(Duration::from_secs(10), || province.requests() > 0));
    gw.stop();

    let (code, out, err) = gw.cli(&["outbox", "list", "--destination", "provincial"]);
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let entries = listed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{out}");
    let key = entries[0]["key"].as_str().expect("entries name their key");

    let (code, out, err) = gw.cli(&["outbox", "show", key]);
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        shown.pointer("/entry/record_id").or(shown.get("record_id")),
        Some(&json!("CLI-1")),
        "{out}"
    );
    let (code, _, _) = gw.cli(&["outbox", "show", "no-such-key"]);
    assert_eq!(code, 1, "an unknown key");

    let (code, out, err) = gw.cli(&["outbox", "stats"]);
    assert_eq!(code, 0, "{err}");
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["destinations"][0]["pending"], 1, "{out}");

    // Every operator command is in the audit chain, and the chain still verifies.
    let (code, out, err) = gw.cli(&["audit", "show", "--from", "1"]);
    assert_eq!(code, 0, "{err}");
    for command in ["outbox list", "outbox show", "outbox stats"] {
        assert!(out.contains(command), "{command} audited: {out}");
    }
    let (code, _, err) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{err}");
}

/// `credit-gateway check FILE | head` used to panic on the broken pipe (exit 101).
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let record = |i: usize| {
        serde_json::json!({
            "category": "commitment",
            "subject": {"kind": "institution", "role": "designated_retail_pharmacy", "id_type": "uscc", "id": "91310110666007217T", "name": "某药房"},
            "source": {"agency": "medical_insurance", "record_id": format!("PIPE-{i}"), "region": "440104"},
            "disclosure": {"class": "gov_share"},
            "content": {"commitment_type": "信用承诺", "committed_on": "2026-01-06", "fulfilment": "pending"}
        })
    };
    let records: Vec<_> = (0..3000).map(record).collect();
    let file = dir.path().join("big.json");
    std::fs::write(&file, serde_json::to_vec(&records).unwrap()).unwrap();
    let script = format!(
        "{} check --mapping canonical {} | head -c 10 >/dev/null; echo \"status=${{PIPESTATUS[0]}}\"",
        BIN,
        file.display()
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("status=0"), "{stdout}{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Issue #30: `config check` passes on a good tree (the shipped mappings and rules, development
/// certificates, a destination) and on a broken one names every error at once, exit 1.
#[test]
fn config_check_passes_on_a_good_tree_and_names_every_error_of_a_broken_one() {
    let rt = multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let platform = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &platform);
    gw.write_config();
    let (code, out, err) = gw.cli(&["config", "check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 error(s)"), "{out}");
    assert!(
        out.contains("ok: rules:") && out.contains("ok: destination provincial"),
        "{out}"
    );
    // The shipped Guangdong profile ended 2026-06-30 (GD Art. 43): a warning, not an error.
    assert!(out.contains("warning:"), "{out}");

    // Three broken parts: an objection rules file, a scoring profile, a destination's CA file.
    let rules = gw.dir.path().join("objections.toml");
    std::fs::write(
        &rules,
        "[[review]]\nname = \"r\"\nworking_days = \"fifteen\"\n",
    )
    .unwrap();
    gw.config.objections.rules = Some(rules);
    let scoring = gw.dir.path().join("scoring");
    std::fs::create_dir_all(&scoring).unwrap();
    std::fs::write(scoring.join("bad.toml"), "[[profiles]]\nname = 3\n").unwrap();
    gw.config.evaluation.profiles = Some(scoring);
    gw.config.destinations[0].ca = Some(gw.dir.path().join("no-such-ca.pem"));
    gw.write_config();
    let (code, out, _) = gw.cli(&["config", "check"]);
    assert_eq!(code, 1, "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 3, "{out}");
    assert!(
        errors[0].contains("objections") && errors[0].contains("objections.toml"),
        "{out}"
    );
    assert!(
        errors[1].contains("scoring_profiles") && errors[1].contains("bad.toml"),
        "{out}"
    );
    assert!(
        errors[2].contains("destination provincial") && errors[2].contains("no-such-ca.pem"),
        "{out}"
    );
    assert!(out.contains("3 error(s)"), "{out}");
}

/// Issue #30: an operator command run where no data directory exists refuses, naming the folder
/// it looked in, and creates neither a store nor a key file there.
#[test]
fn a_command_run_from_the_wrong_folder_refuses_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["outbox", "stats"][..],
        &["audit", "verify"][..],
        &["objections", "list"][..],
    ] {
        let (code, out, err) = run_cli(dir.path(), args);
        assert_ne!(code, 0, "{args:?}: {out}");
        let looked = std::fs::canonicalize(dir.path()).unwrap().join("data");
        assert!(
            err.contains(&looked.display().to_string()) && err.contains("no data directory here"),
            "{args:?}: {err}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing created: {left:?}");
}
