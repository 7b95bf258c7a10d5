//! End to end: the real binary on loopback, generated certificates, real sled on disk.
//! Issue "Inbound exchange": receipts, per-record errors, identity and permissions, limits,
//! durability across restarts, idempotency.

mod common;

use common::{run_cli, Gateway};
use serde_json::{json, Value};

const MI: &str = "medical_insurance";

fn penalty(record_id: &str, uscc: &str) -> Value {
    json!({
        "category": "administrative",
        "subject": {"kind": "institution", "role": "designated_medical_institution",
                    "id_type": "uscc", "id": uscc, "name": "广州市白云区某某医院有限公司"},
        "source": {"record_id": record_id, "region": "440111"},
        "basis": {"doc_type": "penalty_decision", "doc_number": format!("穗医保罚〔2025〕{record_id}号"), "decided_on": "2025-06-03"},
        "disclosure": {"class": "public"},
        "valid_from": "2025-06-03",
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"], "fine_yuan": "20000"}
    })
}

fn push(gw: &Gateway, agency: &str, records: &Value) -> common::Reply {
    gw.client(agency).post(
        "/v1/records?mapping=canonical",
        "application/json",
        serde_json::to_vec(records).unwrap(),
    )
}

#[test]
fn a_batch_gets_a_receipt_with_per_record_errors() {
    let gw = Gateway::start();
    let mut bad_check = penalty("BAD-CHECK", "91310110666007217U");
    bad_check["subject"]["name"] = json!("校验位错误的医院");
    let mut bad_date = penalty("BAD-DATE", "91350100M000100Y43");
    bad_date["basis"]["decided_on"] = json!("2025-02-30");
    let mut no_basis = penalty("NO-BASIS", "91350100M000100Y43");
    no_basis.as_object_mut().unwrap().remove("basis");
    let batch = json!([
        penalty("1", "91310110666007217T"),
        bad_check,
        bad_date,
        no_basis,
        penalty("2", "91350100M000100Y43")
    ]);
    let reply = push(&gw, MI, &batch);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let receipt = reply.json();
    assert_eq!(receipt["accepted"], 2);
    assert_eq!(receipt["new"], 2);
    assert_eq!(receipt["total"], 5);
    assert!(receipt["receipt_id"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert!(receipt["audit"]["seq"].as_u64().unwrap() >= 1);
    let rejected = receipt["rejected"].as_array().unwrap();
    let by_id = |id: &str| {
        rejected
            .iter()
            .find(|r| r["record_id"] == id)
            .unwrap_or_else(|| panic!("{id} not rejected: {receipt}"))
    };
    assert_eq!(by_id("BAD-CHECK")["index"], 1);
    assert_eq!(by_id("BAD-CHECK")["field"], "subject.id");
    assert!(by_id("BAD-CHECK")["reason"]
        .as_str()
        .unwrap()
        .contains("check character"));
    assert_eq!(by_id("BAD-DATE")["field"], "basis.decided_on");
    assert_eq!(by_id("NO-BASIS")["field"], "basis");
    assert!(by_id("NO-BASIS")["reason"]
        .as_str()
        .unwrap()
        .contains("GD Art. 26"));

    // The receipt can be fetched again by the agency that sent it, not by another.
    let id = receipt["receipt_id"].as_str().unwrap();
    assert_eq!(gw.client(MI).get(&format!("/v1/receipts/{id}")).status, 200);
    assert_eq!(
        gw.client("tax").get(&format!("/v1/receipts/{id}")).status,
        404
    );
}

#[test]
fn the_archive_is_readable_by_the_medical_insurance_platform_only() {
    let gw = Gateway::start();
    assert_eq!(
        push(&gw, MI, &json!([penalty("A-1", "91310110666007217T")])).status,
        200
    );
    let reply = gw.client(MI).get("/v1/subjects/uscc/91310110666007217T");
    assert_eq!(reply.status, 200);
    let archive = reply.json();
    assert_eq!(archive["subject"]["name"], "广州市白云区某某医院有限公司");
    let records = archive["categories"]["administrative"].as_array().unwrap();
    assert_eq!(records[0]["record_id"], "A-1");
    assert_eq!(records[0]["versions"][0]["record"]["source"]["agency"], MI);

    let denied = gw
        .client("health")
        .get("/v1/subjects/uscc/91310110666007217T");
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json()["error"]["code"], "archive_not_allowed");
    assert_eq!(
        gw.client(MI)
            .get("/v1/subjects/uscc/91350100M000100Y43")
            .status,
        404
    );
    assert_eq!(
        gw.client(MI)
            .get("/v1/subjects/uscc/91350100M000100Y44")
            .json()["error"]["code"],
        "invalid_subject_id"
    );
}

#[test]
fn the_same_record_twice_is_stored_once_and_a_change_is_a_new_version() {
    let gw = Gateway::start();
    let batch = json!([penalty("V-1", "91310110666007217T")]);
    assert_eq!(push(&gw, MI, &batch).json()["new"], 1);
    let again = push(&gw, MI, &batch).json();
    assert_eq!(
        (again["new"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(1))
    );
    let mut changed = penalty("V-1", "91310110666007217T");
    changed["content"]["fine_yuan"] = json!("30000");
    let updated = push(&gw, MI, &json!([changed])).json();
    assert_eq!(updated["updated"], 1);
    assert_eq!(updated["records"][0]["version"], 2);
    let archive = gw
        .client(MI)
        .get("/v1/subjects/uscc/91310110666007217T")
        .json();
    let history = &archive["categories"]["administrative"][0];
    assert_eq!(history["current_version"], 2);
    assert_eq!(
        history["versions"].as_array().unwrap().len(),
        2,
        "one version per distinct content: {history}"
    );
    assert_eq!(
        history["versions"][0]["record"]["content"]["fine_yuan"], "20000",
        "history kept"
    );
}

#[test]
fn restarting_loses_nothing() {
    restart_keeps_everything(Gateway::start());
}

#[test]
fn restarting_loses_nothing_with_power_loss_durability() {
    restart_keeps_everything(Gateway::start_with(|c| {
        c.storage.durability = credit_gateway::store::Durability::PowerLoss
    }));
}

fn restart_keeps_everything(mut gw: Gateway) {
    let batch: Vec<Value> = (0..50)
        .map(|i| penalty(&format!("R-{i}"), "91310110666007217T"))
        .collect();
    let receipt = push(&gw, MI, &json!(batch)).json();
    assert_eq!(receipt["accepted"], 50);
    let status = gw.stop();
    assert!(
        status.success(),
        "graceful stop exits 0: {status:?}\n{}",
        gw.log()
    );
    gw.spawn();
    let archive = gw
        .client(MI)
        .get("/v1/subjects/uscc/91310110666007217T")
        .json();
    assert_eq!(
        archive["categories"]["administrative"]
            .as_array()
            .unwrap()
            .len(),
        50
    );
    // The audit chain continues across the restart.
    let next = push(&gw, MI, &json!([penalty("R-after", "91310110666007217T")])).json();
    assert_eq!(
        next["audit"]["seq"].as_u64(),
        receipt["audit"]["seq"].as_u64().map(|s| s + 1)
    );
    gw.stop();
    let (code, out, err) = run_cli(
        gw.dir.path(),
        &[
            "--config",
            gw.config_path().to_str().unwrap(),
            "audit",
            "verify",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn an_agency_cannot_push_a_mapping_it_is_not_allowed() {
    let gw = Gateway::start();
    let reply = gw.client("tax").post(
        "/v1/records?mapping=canonical",
        "application/json",
        b"[]".to_vec(),
    );
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"]["code"], "mapping_not_allowed");
    let reply = gw.client("tax").post(
        "/v1/records?mapping=nope",
        "application/json",
        b"[]".to_vec(),
    );
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["code"], "unknown_mapping");
    let reply = gw
        .client(MI)
        .post("/v1/records", "application/json", b"[]".to_vec());
    assert_eq!(reply.json()["error"]["code"], "missing_mapping");
}

#[test]
fn an_agency_cannot_speak_for_another() {
    let gw = Gateway::start();
    let mut rec = penalty("SPOOF", "91310110666007217T");
    rec["source"]["agency"] = json!("court");
    let receipt = push(&gw, "provincial_credit_platform", &json!([rec])).json();
    assert_eq!(receipt["accepted"], 0);
    assert_eq!(receipt["rejected"][0]["field"], "source.agency");
}

#[test]
fn the_handshake_fails_without_a_certificate_or_with_a_foreign_one() {
    let gw = Gateway::start();
    let ca = gw.certs().join("ca.pem");
    let no_cert = credit_gateway::identity::tls::client_config_without_cert(&ca).unwrap();
    let client = common::ApiClient::new(no_cert, &gw.api);
    assert!(
        client.request("GET", "/v1/mappings", None, vec![]).is_err(),
        "no client certificate: the request fails"
    );

    let other = tempfile::tempdir().unwrap();
    let (code, _, err) = run_cli(other.path(), &["certs", "init", "--dir", "other-ca"]);
    assert_eq!(code, 0, "{err}");
    let foreign = other.path().join("other-ca/clients");
    let cfg = credit_gateway::identity::tls::client_config(
        &ca,
        &foreign.join("medical_insurance.pem"),
        &foreign.join("medical_insurance-key.pem"),
    )
    .unwrap();
    let client = common::ApiClient::new(cfg, &gw.api);
    assert!(
        client.request("GET", "/v1/mappings", None, vec![]).is_err(),
        "certificate from another CA: the request fails"
    );
    // And the right one works.
    assert_eq!(gw.client(MI).get("/v1/mappings").status, 200);
}

#[test]
fn oversized_bodies_get_413() {
    let gw = Gateway::start_with(|c| c.server.max_body_bytes = 4096);
    let big: Vec<Value> = (0..100)
        .map(|i| penalty(&format!("B-{i}"), "91310110666007217T"))
        .collect();
    let reply = push(&gw, MI, &json!(big));
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], "payload_too_large");
    assert_eq!(
        push(&gw, MI, &json!([penalty("small", "91310110666007217T")])).status,
        200,
        "still serving"
    );
}

#[test]
fn over_the_rate_limit_gets_429_with_retry_after() {
    let gw = Gateway::start_with(|c| {
        for a in &mut c.agencies {
            if a.id == "health" {
                a.requests_per_second = 1;
                a.burst = 2;
            }
        }
    });
    let client = gw.client("health");
    let statuses: Vec<(u16, Option<String>)> = (0..5)
        .map(|_| {
            let r = client.post(
                "/v1/records?mapping=health-practitioner-qualifications",
                "application/json",
                b"{}".to_vec(),
            );
            (
                r.status,
                r.headers
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string()),
            )
        })
        .collect();
    let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!limited.is_empty(), "{statuses:?}");
    assert!(limited.iter().all(|(_, ra)| ra
        .as_deref()
        .is_some_and(|v| v.parse::<u64>().unwrap() >= 1)));
}

#[test]
fn malformed_json_gets_400_with_line_and_column() {
    let gw = Gateway::start();
    let reply = gw.client(MI).post(
        "/v1/records?mapping=canonical",
        "application/json",
        b"[\n  {\"category\": }\n]".to_vec(),
    );
    assert_eq!(reply.status, 400);
    let err = &reply.json()["error"];
    assert_eq!(err["code"], "malformed_document");
    assert_eq!(err["line"], 2);
    assert!(err["column"].as_u64().unwrap() > 1);
    let wrong_type = gw.client(MI).post(
        "/v1/records?mapping=canonical",
        "text/plain",
        b"[]".to_vec(),
    );
    assert_eq!(wrong_type.status, 415);
}

#[test]
fn admin_endpoints_answer() {
    let gw = Gateway::start();
    assert_eq!(gw.admin_get("/healthz").0, 200);
    assert_eq!(gw.admin_get("/readyz").0, 200);
    push(&gw, MI, &json!([penalty("M-1", "91310110666007217T")]));
    let (status, metrics) = gw.admin_get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("gateway_records_accepted_total"),
        "{metrics}"
    );
}

#[test]
fn logs_never_contain_a_resident_id() {
    let gw = Gateway::start();
    let resident = "440104199003071239";
    let mut rec = penalty("P-1", "91310110666007217T");
    rec["category"] = json!("qualification");
    rec["subject"] = json!({"kind": "individual", "role": "physician", "id_type": "resident_id", "id": resident, "name": "张三"});
    rec.as_object_mut().unwrap().remove("basis");
    rec["content"] =
        json!({"qualification_type": "医师资格", "certificate_number": "110440100000123"});
    let mut bad = rec.clone();
    bad["subject"]["id"] = json!("440104199003071238");
    bad["source"]["record_id"] = json!("P-2");
    let receipt = push(&gw, MI, &json!([rec, bad])).json();
    assert_eq!(receipt["accepted"], 1, "{receipt}");
    assert!(
        !serde_json::to_string(&receipt)
            .unwrap()
            .contains("440104199003071238"),
        "the receipt does not echo the bad ID"
    );
    let log = gw.log();
    assert!(
        !log.contains(resident) && !log.contains("440104199003071238"),
        "{log}"
    );
}

#[test]
fn an_agency_can_be_identified_by_its_certificate_fingerprint() {
    use rustls::pki_types::pem::PemObject;
    use sha2::Digest;
    let mut gw = Gateway::prepare();
    let certs = gw.certs();
    let (code, _, err) = run_cli(
        gw.dir.path(),
        &[
            "certs",
            "init",
            "--dir",
            certs.to_str().unwrap(),
            "--client",
            "fp-client",
            "--client",
            "stranger",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let der = rustls::pki_types::CertificateDer::from_pem_file(certs.join("clients/fp-client.pem"))
        .unwrap();
    let fingerprint: Vec<String> = sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let mut drug = gw.config.agencies[0].clone();
    drug.id = "drug_administration".into();
    drug.name = "药品监督管理局".into();
    drug.cert_subject_cn = None;
    drug.cert_sha256 = Some(fingerprint.join(":"));
    drug.mappings = vec!["canonical".into()];
    drug.read_archive = false;
    gw.config.agencies.push(drug);
    gw.spawn();
    let reply = gw.client("fp-client").get("/v1/mappings");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["agency"], "drug_administration");
    let stranger = gw.client("stranger").get("/v1/mappings");
    assert_eq!(
        stranger.status, 403,
        "a certificate of the CA that names no agency"
    );
    assert_eq!(stranger.json()["error"]["code"], "unknown_agency");
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_and_keeps_what_it_acknowledged() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut gw = Gateway::start();
    let body = serde_json::to_vec(&json!([penalty("TERM-1", "91310110666007217T")])).unwrap();
    let (half, rest) = body.split_at(body.len() / 2);
    let (rt, mut tls) = gw.raw_tls(MI);
    rt.block_on(async {
        let head = format!(
            "POST /v1/records?mapping=canonical HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(half).await.unwrap();
        tls.flush().await.unwrap();
    });
    // SIGTERM while the body is half sent.
    let pid = gw.child.as_ref().unwrap().id();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    assert!(
        common::wait_until(std::time::Duration::from_secs(10), || gw
            .log()
            .contains("shutting down")),
        "{}",
        gw.log()
    );
    let answer = rt.block_on(async {
        if let Err(e) = tls.write_all(rest).await {
            let log = gw.log();
            panic!("the gateway closed a connection whose request was in flight: {e}\n{log}");
        }
        tls.flush().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&buf).contains("\"receipt_id\"") {
            match tokio::time::timeout(std::time::Duration::from_secs(10), tls.read(&mut chunk))
                .await
            {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    });
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}\n{}", gw.log());
    assert!(answer.contains("\"accepted\":1"), "{answer}");
    let mut child = gw.child.take().unwrap();
    let status = common::wait_with_timeout(&mut child, std::time::Duration::from_secs(30));
    assert!(
        status.success(),
        "graceful stop exits 0: {status:?}\n{}",
        gw.log()
    );
    gw.spawn();
    let archive = gw
        .client(MI)
        .get("/v1/subjects/uscc/91310110666007217T")
        .json();
    assert_eq!(
        archive["categories"]["administrative"][0]["record_id"], "TERM-1",
        "what was acknowledged during shutdown is there after it"
    );
}
