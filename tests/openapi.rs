//! schemathesis (PyPI; property-based API testing that nobody here wrote) against the live gateway
//! from `src/ingest/openapi.json`: the agency API with a client certificate, and the operator API
//! with the CLI's token. No 5xx, no undocumented status, no response outside its schema.

mod common;

use std::process::Command;

use common::Gateway;

fn schemathesis(args: &[&str]) -> (bool, String) {
    // Its cache of crashes goes to a folder of its own, never into the repository.
    let scratch = tempfile::tempdir().expect("temp dir");
    let out = Command::new("schemathesis")
        .args(args)
        .current_dir(scratch.path())
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis is installed (pip install schemathesis; .ci/run installs it)");
    (
        out.status.success(),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn schemathesis_finds_no_server_error_and_no_response_outside_the_description() {
    let keys = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run_cli(
        keys.path(),
        &["authz", "keygen", "--dir", keys.path().to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let gw = Gateway::start_with(|c| {
        c.evaluation.authorization_keys = vec![keys.path().join("authz-issuer.pem")];
    });
    let spec = common::repo().join("src/ingest/openapi.json");
    let certs = gw.certs();
    let port = gw.api.rsplit(':').next().unwrap().to_string();
    let checks = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
    let (ok, report) = schemathesis(&[
        "run",
        spec.to_str().unwrap(),
        "--url",
        &format!("https://localhost:{port}"),
        "--request-cert",
        certs
            .join("clients/medical_insurance.pem")
            .to_str()
            .unwrap(),
        "--request-cert-key",
        certs
            .join("clients/medical_insurance-key.pem")
            .to_str()
            .unwrap(),
        "--tls-verify",
        certs.join("ca.pem").to_str().unwrap(),
        "--include-path-regex",
        "^/v1/",
        "--checks",
        checks,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "15",
        "--seed",
        "20261125",
        // One worker: hypothesis's lambda cache is not safe across schemathesis's threads
        // (seen here as a KeyError inside the tool, not a finding about the gateway).
        "--workers",
        "1",
    ]);
    assert!(ok, "agency API:\n{report}");
    let token = gw.local_token();
    let (ok, report) = schemathesis(&[
        "run",
        spec.to_str().unwrap(),
        "--url",
        &format!("http://{}", gw.admin),
        "-H",
        &format!("Authorization: Bearer {token}"),
        "--exclude-path-regex",
        "^/v1/|^/session",
        "--checks",
        checks,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "10",
        "--seed",
        "20261125",
        "--workers",
        "1",
    ]);
    assert!(ok, "operator API:\n{report}");
}
