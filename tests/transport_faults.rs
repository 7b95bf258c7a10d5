//! Issue #31, the transport items, end to end through the real binary: a revocation put in force
//! at SIGHUP (new handshakes refused, open connections closed) and the maximum connection age;
//! a flood of silent TCP connections that must not keep an agency waiting; refusals that reach
//! HTTP/2 clients as the JSON error; certificates with two common names; the validity of
//! development certificates.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{wait_until, Gateway};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

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

/// The shipped tax sample: (path with mapping, content type, body).
fn tax_sample() -> (String, String, Vec<u8>) {
    let expected = common::samples::expected();
    let exp = &expected["tax-major-violations"];
    let body = std::fs::read(
        common::repo()
            .join("examples/samples")
            .join(exp["file"].as_str().unwrap()),
    )
    .unwrap();
    (
        "/v1/records?mapping=tax-major-violations".into(),
        exp["content_type"].as_str().unwrap().into(),
        body,
    )
}

/// One HTTP/1.1 request written by hand on an open TLS connection; the status and body of the
/// answer (read up to its Content-Length).
async fn exchange<S>(tls: &mut S, request: &[u8]) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(request).await.unwrap();
    tls.flush().await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), tls.read(&mut buf))
            .await
            .expect("an answer within 30 s")
            .expect("readable");
        assert!(n > 0, "closed before the answer was complete");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                let status = text[9..12].parse().unwrap();
                return (status, text[end + 4..].to_string());
            }
        }
    }
}

/// Whether the server closes this connection within `within` (end of stream or an error).
async fn closed_within<S>(tls: &mut S, within: Duration) -> bool
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tls.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

fn push_request(host: &str) -> Vec<u8> {
    let (path, content_type, body) = tax_sample();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

#[test]
fn a_revocation_first_configured_at_sighup_refuses_new_handshakes_and_closes_open_connections() {
    let mut gw = Gateway::start();
    assert!(
        gw.config.tls.crl.is_none(),
        "started without a revocation list"
    );
    // tax pushes on a connection it keeps open (HTTP/1.1 keep-alive).
    let (rt, mut kept) = gw.raw_tls("tax");
    let (status, body) = rt.block_on(exchange(&mut kept, &push_request("localhost")));
    assert_eq!(status, 200, "{body}");
    // And on an HTTP/2 connection it keeps open.
    let (h2_rt, mut h2_conn) = h2_connection(&gw, "tax");
    let h2_status = h2_rt.block_on(async {
        let req = hyper::Request::get("https://localhost/v1/mappings")
            .body(Full::new(Bytes::new()))
            .unwrap();
        h2_conn.sender.send_request(req).await.unwrap().status()
    });
    assert_eq!(h2_status, 200);

    let (code, _, err) = certs_cli(&gw, "revoke", "tax");
    assert_eq!(code, 0, "{err}");
    gw.config.tls.crl = Some(gw.certs().join("crl.pem"));
    gw.write_config();
    gw.sighup();

    assert!(
        wait_until(Duration::from_secs(10), || gw
            .client("tax")
            .request("GET", "/v1/mappings", None, vec![])
            .is_err()),
        "a new connection of the revoked agency is refused after SIGHUP"
    );
    assert!(
        rt.block_on(closed_within(&mut kept, Duration::from_secs(10))),
        "the open HTTP/1.1 connection of the revoked certificate is closed"
    );
    let driver_ended = h2_rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), &mut h2_conn.driver)
            .await
            .is_ok()
    });
    assert!(
        driver_ended,
        "the open HTTP/2 connection of the revoked certificate is closed"
    );
    assert!(gw.log().contains("certificate_no_longer_trusted"));
    assert_eq!(
        gw.client("medical_insurance").get("/v1/mappings").status,
        200,
        "others are still served"
    );
}

#[test]
fn an_established_connection_is_closed_gracefully_after_its_maximum_age() {
    let gw = Gateway::start_with(|c| c.server.max_connection_age_ms = 1_000);
    let (rt, mut kept) = gw.raw_tls("tax");
    let started = Instant::now();
    let (status, body) = rt.block_on(exchange(&mut kept, &push_request("localhost")));
    assert_eq!(status, 200, "{body}");
    assert!(
        rt.block_on(closed_within(&mut kept, Duration::from_secs(10))),
        "closed after its maximum age"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(wait_until(Duration::from_secs(5), || gw
        .log()
        .contains("max_age")));
}

/// A kept-open HTTP/2 connection: its request sender and the task driving it.
struct H2 {
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

fn client_tls(gw: &Gateway, agency: &str, http2: bool) -> rustls::ClientConfig {
    let certs = gw.certs();
    let mut cfg = credit_gateway::identity::tls::client_config(
        &certs.join("ca.pem"),
        &certs.join(format!("clients/{agency}.pem")),
        &certs.join(format!("clients/{agency}-key.pem")),
    )
    .unwrap();
    cfg.alpn_protocols = vec![if http2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    cfg
}

fn h2_connection(gw: &Gateway, agency: &str) -> (tokio::runtime::Runtime, H2) {
    let port: u16 = gw.api.rsplit(':').next().unwrap().parse().unwrap();
    let cfg = client_tls(gw, agency, true);
    let rt = common::multi_thread_runtime();
    let h2 = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        H2 { sender, driver }
    });
    (rt, h2)
}

use hyper_util::rt::TokioIo;

#[test]
fn a_flood_of_silent_tcp_connections_does_not_keep_an_agency_waiting() {
    let gw = Gateway::start();
    let port: u16 = gw.api.rsplit(':').next().unwrap().parse().unwrap();
    let open = || {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nonblocking(true).unwrap();
        s
    };
    // A reopening must not stall the test's own loop: while the gateway's accept queue is full a
    // blocking connect waits for the kernel's SYN retries (seconds on a loaded machine), so a
    // slot whose reopening times out is tried again next round.
    let reopen = || {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    };
    // More silent connections than `max_connections` (1024) and `max_handshakes` (1024).
    let mut silent: Vec<Option<std::net::TcpStream>> = (0..1_100).map(|_| Some(open())).collect();
    let flood_started = Instant::now();
    let mut rounds = 0;
    let mut reopened = 0;
    // Past the handshake timeout (5 s), so the gateway has closed and we have reopened some.
    while rounds < 20 && flood_started.elapsed() < Duration::from_secs(7) {
        // Reopen what the gateway closed: the flood stays at 1,100.
        for slot in silent.iter_mut() {
            let closed = match slot {
                None => true,
                // Anything to read (data or the end of the stream) means the gateway closed it.
                Some(s) => match s.peek(&mut [0u8; 1]) {
                    Ok(_) => true,
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                },
            };
            if closed {
                if slot.is_some() {
                    reopened += 1;
                }
                *slot = reopen();
            }
        }
        // A new connection each round: its handshake is part of what is timed.
        let client = gw.client("medical_insurance");
        let started = Instant::now();
        let reply = client.get("/v1/mappings");
        let took = started.elapsed();
        assert_eq!(reply.status, 200);
        assert!(
            took < Duration::from_secs(1),
            "round {rounds}: the agency waited {took:?} behind silent connections"
        );
        rounds += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(rounds >= 5, "only {rounds} rounds");
    assert!(
        reopened >= 76,
        "the gateway closed silent connections (beyond max_handshakes, then timed out): {reopened}"
    );
    let (_, metrics) = gw.admin_get("/metrics");
    assert!(
        metrics.contains("gateway_connections_refused_total{why=\"silent_handshake_evicted\"}"),
        "{metrics}"
    );
    drop(silent);
}

/// A request over HTTP/2 (`http2`) or HTTP/1.1 with a client of its own: status and body, or
/// the client's error.
fn request(
    gw: &Gateway,
    http2: bool,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    let mut cfg = client_tls(gw, "tax", http2);
    // The connector sets the protocols it is built for.
    cfg.alpn_protocols.clear();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = gw.api.rsplit(':').next().unwrap().to_string();
    rt.block_on(async move {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(cfg)
            .https_only();
        let connector = if http2 {
            builder.enable_http2().build()
        } else {
            builder.enable_http1().build()
        };
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(http2)
            .build(connector);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("https://localhost:{port}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| format!("{e:?}"))?;
        assert_eq!(
            resp.version(),
            if http2 {
                hyper::Version::HTTP_2
            } else {
                hyper::Version::HTTP_11
            }
        );
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{e:?}"))?
            .to_bytes()
            .to_vec();
        Ok((status, body))
    })
}

/// The JSON error's code.
fn code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    v["error"]["code"].as_str().unwrap_or_default().to_string()
}

/// A refusal sent before the body is read: path, headers, status, error code.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str);

#[test]
fn refusals_before_the_body_is_read_reach_http2_and_http1_clients_as_json() {
    let gw = Gateway::start();
    let large = vec![b'x'; 900 * 1024];
    let xml = [("content-type", "application/xml")];
    let cases: [Case; 3] = [
        (
            "/v1/records?mapping=canonical",
            &[("content-type", "application/json")],
            403,
            "mapping_not_allowed",
        ),
        ("/v1/nowhere", &xml, 404, "not_found"),
        (
            "/v1/records?mapping=tax-major-violations",
            &[("content-type", "text/plain")],
            415,
            "unsupported_media_type",
        ),
    ];
    for http2 in [true, false] {
        for (path, headers, status, expected) in cases {
            // It failed now and then (6 in 10 with 900 KB): ten tries each.
            for attempt in 0..10 {
                let got = request(&gw, http2, "POST", path, headers, large.clone());
                let (s, body) = got.unwrap_or_else(|e| {
                    panic!("http2={http2} {path} attempt {attempt}: no answer: {e}")
                });
                assert_eq!(
                    (s, code(&body).as_str()),
                    (status, expected),
                    "http2={http2}"
                );
            }
        }
        // Over max_body_bytes (16 MiB): 413 with the JSON error, not a reset.
        let oversized = vec![b'x'; 17 * 1024 * 1024];
        let (s, body) = request(
            &gw,
            http2,
            "POST",
            "/v1/records?mapping=tax-major-violations",
            &xml,
            oversized,
        )
        .unwrap_or_else(|e| panic!("http2={http2}: 17 MB: no answer: {e}"));
        assert_eq!((s, code(&body).as_str()), (413, "payload_too_large"));
        // Headers over 64 KiB: 431 with the JSON error.
        let pad = "a".repeat(80 * 1024);
        let (s, body) = request(
            &gw,
            http2,
            "GET",
            "/v1/mappings",
            &[("x-pad", &pad)],
            vec![],
        )
        .unwrap_or_else(|e| panic!("http2={http2}: 80 KiB of headers: no answer: {e}"));
        assert_eq!((s, code(&body).as_str()), (431, "headers_too_large"));
    }
    // Beyond hyper's own ceiling (twice ours), HTTP/1.1 gets hyper's bare 431 (documented).
    let pad = "a".repeat(200 * 1024);
    let (s, _) = request(
        &gw,
        false,
        "GET",
        "/v1/mappings",
        &[("x-pad", &pad)],
        vec![],
    )
    .expect("an answer");
    assert_eq!(s, 431);
    // The gateway is still serving.
    let (s, _) = request(&gw, true, "GET", "/v1/mappings", &[], vec![]).unwrap();
    assert_eq!(s, 200);
}

#[test]
fn a_certificate_with_two_common_names_is_refused_in_the_handshake() {
    let gw = Gateway::start();
    let certs = gw.certs();
    let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(certs.join("ca-key.pem")).unwrap())
        .unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(certs.join("ca.pem")).unwrap(),
        key,
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tax");
    // rcgen keeps one value per type: the second CN goes in under its bare OID (2.5.4.3).
    params.distinguished_name.push(
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 3]),
        "medical_insurance",
    );
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(certs.join("clients/two-cns.pem"), cert.pem()).unwrap();
    std::fs::write(
        certs.join("clients/two-cns-key.pem"),
        leaf_key.serialize_pem(),
    )
    .unwrap();
    let (_, subject) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
    assert_eq!(
        subject.subject().iter_common_name().count(),
        2,
        "the certificate holds two CNs"
    );

    let refused = gw
        .client("two-cns")
        .request("GET", "/v1/mappings", None, vec![]);
    assert!(refused.is_err(), "served: {:?}", refused.map(|r| r.status));
    assert!(wait_until(Duration::from_secs(5), || gw
        .log()
        .contains("holds 2 common names")));
    assert_eq!(gw.client("tax").get("/v1/mappings").status, 200);
}

#[test]
fn development_certificates_are_valid_from_an_hour_before_issue_for_a_bounded_time() {
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let gw = Gateway::prepare();
    let after = time::OffsetDateTime::now_utc().unix_timestamp();
    let certs = gw.certs();
    let day = 86_400;
    for (file, days) in [
        ("ca.pem", 3_650),
        ("server.pem", 825),
        ("clients/tax.pem", 825),
    ] {
        let der = credit_gateway::identity::tls::load_certs(&certs.join(file)).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der[0].as_ref()).unwrap();
        let (from, until) = (
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        );
        assert!(
            from >= before - 3_600 && from <= after - 3_600,
            "{file}: valid from {from}, issued between {before} and {after}"
        );
        assert_eq!(until - from, days * day + 3_600, "{file}");
    }
}
