//! End to end on the release build (`cargo build --release`, without the `test-clock` feature
//! the rest of the suite is built with): nothing that moves legal deadlines exists there
//! (issue #31). The test builds it (a no-op when `.ci/run` already has).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Gateway;

/// The release build of the binary, built now if it is not up to date.
fn release_binary() -> PathBuf {
    let out = common::cargo()
        .args([
            "build",
            "--release",
            "--bin",
            "credit-gateway",
            "--message-format=json-render-diagnostics",
        ])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "the release build fails:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "credit-gateway")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the release executable")
}

#[test]
fn the_release_build_refuses_the_test_clock_and_has_no_route_to_move_time() {
    let bin = release_binary();
    let mut gw = Gateway::prepare_sled();

    // The setting is refused at start, naming it, for the server and every command.
    gw.config.corrections.dangerous_manual_clock = true;
    gw.write_config();
    for args in [vec!["serve"], vec!["corrections", "list"]] {
        let out = Command::new(&bin)
            .arg("--config")
            .arg(gw.config_path())
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("dangerous_manual_clock") && err.contains("no test clock"),
            "{args:?}: {err}"
        );
    }

    // Without it the release build runs on the system clock: a clock file left in the data
    // directory is never read, and the admin port has no route to move time.
    gw.config.corrections.dangerous_manual_clock = false;
    gw.start_clock_at("2031-01-06T10:00:00+08:00");
    gw.spawn_bin(&bin);
    let (status, body) = gw.admin_post("/dangerous/clock?set=2031-01-06T10:00:00%2B08:00");
    assert_eq!(status, 404, "{body}");
    let receipt = gw.push_canonical(
        "medical_insurance",
        &serde_json::json!([{
            "category": "commitment",
            "subject": {"kind": "institution", "role": "designated_retail_pharmacy", "id_type": "uscc", "id": "91310110666007217T", "name": "某药房"},
            "source": {"record_id": "REL-1", "region": "440104"},
            "disclosure": {"class": "gov_share"},
            "content": {"commitment_type": "信用承诺", "committed_on": "2026-01-06", "fulfilment": "pending"}
        }]),
    );
    let received = receipt["received_at"].as_str().unwrap().to_string();
    let this_year = time::OffsetDateTime::now_utc().year().to_string();
    assert!(
        received.starts_with(&this_year),
        "stamped by the system clock, not the file: {received}"
    );
    let (_, metrics) = gw.admin_get("/metrics");
    assert!(
        !metrics.contains("gateway_test_clock"),
        "no test clock metric"
    );
}
