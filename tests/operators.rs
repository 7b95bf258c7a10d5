//! End to end, without a browser: operators sign in, every operator route needs credentials and the
//! right role, cross-site requests are refused, failed sign-ins are limited and audited, identifiers
//! are masked below `auditor`, and the audit chain verifies while the gateway runs.

mod common;

use common::{resident_id, Gateway};
use credit_gateway::config::{OperatorConfig, OperatorRole};
use serde_json::{json, Value};

pub fn with_operators(gw: &mut Gateway) {
    for (name, role, password) in [
        ("zhang", OperatorRole::Operator, "zhang-pass-1"),
        ("li", OperatorRole::Viewer, "li-pass-1"),
        ("wang", OperatorRole::Auditor, "wang-pass-1"),
    ] {
        gw.config.operators.push(OperatorConfig {
            name: name.into(),
            role,
            password_hash: credit_gateway::operators::hash_password(password).unwrap(),
        });
    }
}

/// Sign in through `POST /session`: (cookie header value, CSRF token).
fn sign_in(gw: &Gateway, name: &str, password: &str) -> (String, String) {
    let (status, headers, body) = gw.admin_raw(
        "POST",
        "/session",
        &[("content-type", "application/json")],
        serde_json::to_vec(&json!({"name": name, "password": password})).unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    let cookie = headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_string();
    let csrf = serde_json::from_str::<Value>(&body).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    (cookie, csrf)
}

const ROUTES: [(&str, &str); 21] = [
    ("GET", "/outbox/stats"),
    ("GET", "/outbox/list"),
    ("GET", "/outbox/show?key=x"),
    ("POST", "/outbox/replay?reason=x"),
    ("GET", "/ledger/record?agency=a&record_id=r"),
    ("GET", "/ledger/subject?id_type=uscc&id=91310110666007217T"),
    (
        "POST",
        "/subjects/exit?id_type=uscc&id=91310110666007217T&reason=death&on=2026-01-01",
    ),
    (
        "POST",
        "/subjects/reentry?id_type=uscc&id=91310110666007217T&on=2026-01-01",
    ),
    ("GET", "/objections/list"),
    ("GET", "/objections/show?id=x"),
    ("POST", "/objections/accept-late?id=x&reason=y"),
    ("GET", "/repairs/list"),
    ("GET", "/repairs/show?id=x"),
    ("GET", "/evaluation/show?id_type=uscc&id=91310110666007217T"),
    ("GET", "/evaluation/cycles"),
    ("POST", "/evaluation/publish?year=2025"),
    ("GET", "/audit/verify"),
    ("GET", "/audit/checkpoint"),
    ("GET", "/audit/entries"),
    ("GET", "/corrections"),
    ("POST", "/dangerous/clock?set=2026-01-01T00:00:00Z"),
];

#[test]
fn every_operator_route_needs_credentials_and_the_right_role() {
    let mut gw = Gateway::prepare();
    with_operators(&mut gw);
    gw.spawn();
    for (method, path) in ROUTES {
        let (status, _, body) = gw.admin_raw(method, path, &[], Vec::new());
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert!(body.contains("unauthenticated"));
        // A cookie that is no session is no better.
        let (status, _, _) =
            gw.admin_raw(method, path, &[("cookie", "cg_session=forged")], Vec::new());
        assert_eq!(status, 401, "{method} {path} with a forged cookie");
        let (status, _, _) = gw.admin_raw(
            method,
            path,
            &[("authorization", "Bearer forged")],
            Vec::new(),
        );
        assert_eq!(status, 401, "{method} {path} with a forged token");
    }
    // The console sends the unauthenticated to its sign-in page.
    for page in [
        "/console",
        "/console/platforms",
        "/console/deadlines",
        "/console/search",
        "/console/audit",
    ] {
        let (status, headers, _) = gw.admin_raw("GET", page, &[], Vec::new());
        assert_eq!(status, 303, "{page}");
        assert_eq!(headers["location"], "/console/login");
    }
    // Health and metrics stay open to monitoring.
    assert_eq!(gw.admin_raw("GET", "/healthz", &[], Vec::new()).0, 200);
    // Wrong roles: 403 with the role named, and audited.
    let (viewer, viewer_csrf) = sign_in(&gw, "li", "li-pass-1");
    let (operator, operator_csrf) = sign_in(&gw, "zhang", "zhang-pass-1");
    let (auditor, auditor_csrf) = sign_in(&gw, "wang", "wang-pass-1");
    for (method, path) in ROUTES.iter().filter(|(m, _)| *m == "POST") {
        for (cookie, csrf) in [(&viewer, &viewer_csrf), (&auditor, &auditor_csrf)] {
            let (status, _, body) = gw.admin_raw(
                method,
                path,
                &[("cookie", cookie), ("x-csrf-token", csrf)],
                Vec::new(),
            );
            assert_eq!(status, 403, "{method} {path}: {body}");
            assert!(body.contains("forbidden_role"), "{body}");
        }
    }
    let (status, _, body) =
        gw.admin_raw("GET", "/audit/verify", &[("cookie", &operator)], Vec::new());
    assert_eq!(status, 403, "only auditors verify: {body}");
    let (status, _, body) =
        gw.admin_raw("GET", "/audit/verify", &[("cookie", &auditor)], Vec::new());
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["ok"], true);
    // Reads are open to every role.
    let (status, _, _) = gw.admin_raw("GET", "/outbox/stats", &[("cookie", &viewer)], Vec::new());
    assert_eq!(status, 200);
    // The right role with its CSRF token acts, and the chain says who and why.
    let (status, _, body) = gw.admin_raw(
        "POST",
        "/outbox/replay?reason=%E5%B9%B3%E5%8F%B0%E5%B7%B2%E6%81%A2%E5%A4%8D",
        &[("cookie", &operator), ("x-csrf-token", &operator_csrf)],
        Vec::new(),
    );
    assert_eq!(status, 200, "{body}");
    let (_, entries) = gw.admin_get("/audit/entries?kind=operator_outbox_replay&limit=1000");
    let entries: Value = serde_json::from_str(&entries).unwrap();
    let last = entries["entries"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["data"]["by"], "zhang");
    assert_eq!(last["data"]["reason"], "平台已恢复");
    let (_, requests) = gw.admin_get("/audit/entries?kind=operator_request&limit=1000");
    let requests: Value = serde_json::from_str(&requests).unwrap();
    assert!(requests["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["data"]["operator"] == "li" && e["data"]["status"] == 403));
}

#[test]
fn cross_site_requests_are_refused() {
    let mut gw = Gateway::prepare();
    with_operators(&mut gw);
    gw.spawn();
    let (operator, csrf) = sign_in(&gw, "zhang", "zhang-pass-1");
    // Sign-in itself from another site, or as a form that is not JSON, is refused.
    let body = serde_json::to_vec(&json!({"name": "zhang", "password": "zhang-pass-1"})).unwrap();
    let (status, _, _) = gw.admin_raw(
        "POST",
        "/session",
        &[
            ("content-type", "application/json"),
            ("sec-fetch-site", "cross-site"),
        ],
        body.clone(),
    );
    assert_eq!(status, 403);
    let (status, _, _) = gw.admin_raw("POST", "/session", &[("content-type", "text/plain")], body);
    assert_eq!(status, 415);
    let replay = "/outbox/replay?reason=x";
    // No CSRF token: what a forged form on another site would send with the cookie.
    let (status, _, body) = gw.admin_raw("POST", replay, &[("cookie", &operator)], Vec::new());
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("csrf_refused"));
    let (status, _, _) = gw.admin_raw(
        "POST",
        replay,
        &[("cookie", &operator), ("x-csrf-token", "0000")],
        Vec::new(),
    );
    assert_eq!(status, 403);
    // The right token, but from another site or origin.
    let (status, _, _) = gw.admin_raw(
        "POST",
        replay,
        &[
            ("cookie", &operator),
            ("x-csrf-token", &csrf),
            ("sec-fetch-site", "cross-site"),
        ],
        Vec::new(),
    );
    assert_eq!(status, 403);
    let host = gw.admin.clone();
    let (status, _, _) = gw.admin_raw(
        "POST",
        replay,
        &[
            ("cookie", &operator),
            ("x-csrf-token", &csrf),
            ("origin", "http://evil.example"),
            ("host", &host),
        ],
        Vec::new(),
    );
    assert_eq!(status, 403);
    // The console's forms: the hidden field must match too.
    let (status, _, body) = gw.admin_raw(
        "POST",
        "/console/replay",
        &[
            ("cookie", &operator),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        b"reason=forged".to_vec(),
    );
    assert_eq!(status, 403, "{body}");
    let (status, _, _) = gw.admin_raw(
        "POST",
        "/console/replay",
        &[
            ("cookie", &operator),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        format!("reason=ok&csrf={csrf}").into_bytes(),
    );
    assert_eq!(status, 303, "the genuine form goes through");
    let (status, _, _) = gw.admin_raw(
        "POST",
        replay,
        &[("cookie", &operator), ("x-csrf-token", &csrf)],
        Vec::new(),
    );
    assert_eq!(status, 200);
}

#[test]
fn failed_sign_ins_are_limited_and_audited() {
    let mut gw = Gateway::prepare();
    with_operators(&mut gw);
    gw.spawn();
    let attempt = |password: &str| {
        gw.admin_raw(
            "POST",
            "/session",
            &[("content-type", "application/json")],
            serde_json::to_vec(&json!({"name": "li", "password": password})).unwrap(),
        )
    };
    for _ in 0..5 {
        let (status, _, body) = attempt("guess");
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("sign_in_failed"));
    }
    let (status, _, body) = attempt("li-pass-1");
    assert_eq!(status, 429, "locked even with the right password: {body}");
    assert!(body.contains("sign_in_locked"));
    let (_, entries) = gw.admin_get("/audit/entries?kind=operator_sign_in_failed&limit=1000");
    let entries: Value = serde_json::from_str(&entries).unwrap();
    let failed = entries["entries"].as_array().unwrap();
    assert_eq!(failed.len(), 5);
    assert!(failed
        .iter()
        .all(|e| e["data"]["operator"] == "li" && e["data"]["address"] == "127.0.0.1"));
    assert!(
        !serde_json::to_string(&entries).unwrap().contains("guess"),
        "passwords never reach the chain"
    );
}

/// Issue #31: failures of unknown names no longer lock every unknown name at once, so the
/// answer to a configured name and to an unknown one is the same, before and after failures.
#[test]
fn the_sign_in_answer_is_identical_for_known_and_unknown_names() {
    let mut gw = Gateway::prepare();
    with_operators(&mut gw);
    gw.spawn();
    let attempt = |name: &str| {
        let (status, _, body) = gw.admin_raw(
            "POST",
            "/session",
            &[("content-type", "application/json")],
            serde_json::to_vec(&json!({"name": name, "password": "guess"})).unwrap(),
        );
        let code = serde_json::from_str::<Value>(&body).unwrap()["error"]["code"].clone();
        (status, code)
    };
    for i in 0..5 {
        assert_eq!(attempt(&format!("probe{i}")), (401, json!("sign_in_failed")));
    }
    let unknown = attempt("probe-next");
    let known = attempt("li");
    assert_eq!(unknown, known, "an unknown name answers as a configured one");
    assert_eq!(known, (401, json!("sign_in_failed")));
    // Five failures of one name lock that name, known or unknown alike.
    for _ in 0..4 {
        attempt("li");
        attempt("probe-next");
    }
    assert_eq!(attempt("li"), attempt("probe-next"));
    assert_eq!(attempt("li").0, 429);
}

#[test]
fn identifiers_are_masked_below_auditor_and_the_chain_verifies_while_running() {
    let mut gw = Gateway::prepare();
    with_operators(&mut gw);
    gw.spawn();
    let person = resident_id("44010619800101123");
    let record = json!({
        "category": "administrative",
        "subject": {"kind": "individual", "role": "physician", "id_type": "resident_id", "id": person, "name": "张医生"},
        "source": {"record_id": "MASK-1", "region": "440106"},
        "basis": {"doc_type": "penalty_decision", "doc_number": "穗医保罚〔2026〕1号", "decided_on": common::days_ago(5)},
        "disclosure": {"class": "gov_share"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"]}
    });
    let reply = gw.client("medical_insurance").post(
        "/v1/records?mapping=canonical",
        "application/json",
        serde_json::to_vec(&json!([record])).unwrap(),
    );
    assert_eq!(reply.status, 200);
    let path = format!("/ledger/subject?id_type=resident_id&id={person}");
    let (viewer, _) = sign_in(&gw, "li", "li-pass-1");
    let (status, _, body) = gw.admin_raw("GET", &path, &[("cookie", &viewer)], Vec::new());
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains(&person),
        "a viewer never sees the full number: {body}"
    );
    let (status, _, body) = gw.admin_raw(
        "GET",
        &format!("/console/search?q={person}"),
        &[("cookie", &viewer)],
        Vec::new(),
    );
    assert_eq!(status, 200);
    assert!(body.contains("MASK-1") && !body.contains(&person), "{body}");
    let (auditor, _) = sign_in(&gw, "wang", "wang-pass-1");
    let (_, _, body) = gw.admin_raw(
        "GET",
        &format!("/console/search?q={person}"),
        &[("cookie", &auditor)],
        Vec::new(),
    );
    assert!(body.contains(&person), "the auditor sees full values");
    let (_, entries) = gw.admin_get("/audit/entries?kind=operator_request&limit=1000");
    assert!(
        entries.contains("\"wang\"") && entries.contains("/console/search"),
        "each full-value view is recorded"
    );
    // `audit verify` and `audit checkpoint` work while the gateway runs.
    let (code, out, err) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("audit chain OK"), "{out}");
    let (code, out, _) = gw.cli(&["audit", "checkpoint"]);
    assert_eq!(code, 0);
    assert!(
        serde_json::from_str::<Value>(out.trim()).unwrap()["seq"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn the_admin_listener_takes_tls_before_it_leaves_loopback() {
    // Off loopback without TLS: the configuration is refused, naming the setting.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[server]\nadmin_listen = \"0.0.0.0:9090\"\n").unwrap();
    let (code, _, err) = common::run_cli(
        dir.path(),
        &["--config", config.to_str().unwrap(), "config", "show"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("admin_tls"), "{err}");
    std::fs::write(
        &config,
        "[server]\nadmin_listen = \"0.0.0.0:9090\"\nadmin_tls = true\n",
    )
    .unwrap();
    let (code, _, err) = common::run_cli(
        dir.path(),
        &["--config", config.to_str().unwrap(), "config", "show"],
    );
    assert_eq!(code, 0, "{err}");

    // With TLS: HTTPS answers with the server certificate, plain HTTP gets nothing, the CLI works.
    let mut gw = Gateway::prepare();
    with_operators(&mut gw);
    gw.config.server.admin_tls = true;
    gw.spawn();
    {
        use std::io::{Read, Write};
        let mut plain = std::net::TcpStream::connect(&gw.admin).unwrap();
        plain
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        plain
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        let mut buf = Vec::new();
        let _ = plain.read_to_end(&mut buf);
        assert!(
            !String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
            "no plain HTTP"
        );
    }
    let rt = common::multi_thread_runtime();
    let tls = credit_gateway::identity::tls::client_config_without_cert(&gw.certs().join("ca.pem"))
        .unwrap();
    let status = rt.block_on(async {
        use http_body_util::Full;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        let port = gw.admin.rsplit(':').next().unwrap();
        let uri: hyper::Uri = format!("https://localhost:{port}/healthz").parse().unwrap();
        client.get(uri).await.unwrap().status().as_u16()
    });
    assert_eq!(status, 200);
    let (code, out, err) = gw.cli(&["audit", "checkpoint"]);
    assert_eq!(code, 0, "{out}{err}");
}
