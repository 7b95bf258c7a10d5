//! TLS posture: TLS 1.2 and 1.3, revocation lists, and certificate reload on SIGHUP without
//! dropping open connections.

mod common;

use std::time::Duration;

use common::{wait_until, Gateway};

/// The SHA-256 of the certificate the server presents on a new connection.
fn server_cert_fingerprint(gw: &Gateway) -> String {
    use sha2::Digest;
    let (_rt, tls) = gw.raw_tls("medical_insurance");
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    hex::encode(sha2::Sha256::digest(der.as_ref()))
}

#[test]
fn tls_1_2_clients_are_served_too() {
    let gw = Gateway::start();
    let certs = gw.certs();
    let cfg =
        rustls::ClientConfig::builder_with_provider(credit_gateway::identity::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates({
                let mut roots = rustls::RootCertStore::empty();
                for c in credit_gateway::identity::tls::load_certs(&certs.join("ca.pem")).unwrap() {
                    roots.add(c).unwrap();
                }
                roots
            })
            .with_client_auth_cert(
                credit_gateway::identity::tls::load_certs(
                    &certs.join("clients/medical_insurance.pem"),
                )
                .unwrap(),
                credit_gateway::identity::tls::load_key(
                    &certs.join("clients/medical_insurance-key.pem"),
                )
                .unwrap(),
            )
            .unwrap();
    let client = common::ApiClient::new(cfg, &gw.api);
    assert_eq!(client.get("/v1/mappings").status, 200);
}

/// `credit-gateway certs <command> --dir <the gateway's certs> --client <client>`.
fn certs_cli(gw: &Gateway, command: &str, client: &str) -> (i32, String, String) {
    let certs = gw.certs();
    common::run_cli(
        gw.dir.path(),
        &[
            "certs",
            command,
            "--dir",
            certs.to_str().unwrap(),
            "--client",
            client,
        ],
    )
}

#[test]
fn a_revoked_certificate_fails_after_reload() {
    let mut gw = Gateway::prepare();
    let certs = gw.certs();
    // Start with an empty revocation list in force.
    let (code, _, err) = certs_cli(&gw, "revoke", "nobody-yet");
    assert_ne!(
        code, 0,
        "revoking an unknown certificate is an error: {err}"
    );
    let (code, _, err) = certs_cli(&gw, "init", "retired_agency");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = certs_cli(&gw, "revoke", "retired_agency");
    assert_eq!(code, 0, "{err}");
    gw.config.tls.crl = Some(certs.join("crl.pem"));
    gw.spawn();
    assert_eq!(
        gw.client("health").get("/v1/mappings").status,
        200,
        "health is not revoked yet"
    );
    let (code, _, err) = certs_cli(&gw, "revoke", "health");
    assert_eq!(code, 0, "{err}");
    gw.sighup();
    assert!(
        wait_until(Duration::from_secs(10), || gw
            .client("health")
            .request("GET", "/v1/mappings", None, vec![])
            .is_err()),
        "a revoked certificate fails the handshake after SIGHUP"
    );
    assert_eq!(
        gw.client("medical_insurance").get("/v1/mappings").status,
        200,
        "others still work"
    );
}

#[test]
fn sighup_reloads_the_server_certificate_without_dropping_connections() {
    let gw = Gateway::start();
    let before = server_cert_fingerprint(&gw);
    let kept = gw.client("medical_insurance");
    assert_eq!(kept.get("/v1/mappings").status, 200);
    // Issue a new server certificate from the same CA.
    let certs = gw.certs();
    std::fs::remove_file(certs.join("server.pem")).unwrap();
    std::fs::remove_file(certs.join("server-key.pem")).unwrap();
    let (code, _, err) = common::run_cli(
        gw.dir.path(),
        &["certs", "init", "--dir", certs.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    gw.sighup();
    assert!(
        wait_until(Duration::from_secs(10), || server_cert_fingerprint(&gw)
            != before),
        "new connections get the new certificate"
    );
    assert_eq!(
        kept.get("/v1/mappings").status,
        200,
        "the open keep-alive connection still works"
    );
    assert!(gw.log().contains("reloaded"));

    // A broken file keeps the previous certificate in use.
    std::fs::write(certs.join("server.pem"), "not a certificate").unwrap();
    gw.sighup();
    assert!(wait_until(Duration::from_secs(10), || gw
        .log()
        .contains("TLS reload failed")));
    assert_eq!(
        gw.client("medical_insurance").get("/v1/mappings").status,
        200
    );
}
