//! Shared test support: start the real `credit-gateway serve` binary on loopback with generated
//! certificates and a fresh sled directory, and talk to it with a mutual-TLS client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use credit_gateway::config::Config;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub const BIN: &str = env!("CARGO_BIN_EXE_credit-gateway");

// The end-to-end tests move time with the test clock, which only a test build has.
#[cfg(not(feature = "test-clock"))]
compile_error!("the end-to-end tests need the test clock: run `cargo test --features test-clock` (see the README)");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo, run from a test in the repository as an operator runs it from a shell: without the
/// variables cargo sets for a test process (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, `OUT_DIR`…).
/// Build scripts such as ring's rerun when those change, so a nested `cargo build --release`
/// that inherited them rebuilt ring and everything above it (about two minutes on 2 cores),
/// and the next build from the shell rebuilt it back.
pub fn cargo() -> std::process::Command {
    const SET_FOR_TESTS: [&str; 7] = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
    ];
    let mut cmd = std::process::Command::new(env!("CARGO"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name == "OUT_DIR" || SET_FOR_TESTS.iter().any(|p| name.starts_with(p)) {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd.current_dir(repo());
    cmd
}

/// A gateway process with its own folder (certificates, data, config).
pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub api: String,
    pub admin: String,
    pub config: Config,
}

/// The gateway's store, whichever engine the configuration names (the gateway stopped, for sled).
pub fn open_store(config: &Config) -> credit_gateway::store::Store {
    credit_gateway::app::open_store(config).expect("the store opens")
}

/// Point a configuration at a PostgreSQL database (small pool, short leases for fail-over tests).
pub fn on_postgres(config: &mut Config, url: &str) {
    config.storage.engine = credit_gateway::config::StorageEngine::Postgres;
    config.storage.postgres_url = Some(url.to_string());
    config.storage.postgres_pool_size = 4;
    config.storage.lease_ttl_ms = 3_000;
}

/// The default configuration pointed at `dir`, on ephemeral ports.
pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.server.admin_listen = "127.0.0.1:0".into();
    config.storage.data_dir = dir.join("data");
    config.tls.certs_dir = dir.join("certs");
    config.mappings.dir = repo().join("mappings");
    for a in &mut config.agencies {
        a.requests_per_second = 10_000;
        a.burst = 10_000;
    }
    config.sharing.retry_base_ms = 50;
    config.sharing.retry_max_ms = 500;
    config.sharing.request_timeout_ms = 2_000;
    config.sharing.poll_interval_ms = 50;
    config
}

impl Gateway {
    pub fn start() -> Gateway {
        Self::start_with(|_| {})
    }

    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> Gateway {
        let mut gw = Self::prepare();
        tweak(&mut gw.config);
        gw.spawn();
        gw
    }

    /// A folder with a default test configuration and generated certificates, not started yet
    /// (so receivers can be started with the same certificates first). The store is sled, or a
    /// fresh PostgreSQL database when the run asks for it (`CREDIT_GATEWAY_TEST_ENGINE=postgres`).
    pub fn prepare() -> Gateway {
        let mut gw = Self::prepare_sled();
        if postgres::requested() {
            on_postgres(&mut gw.config, &postgres::cluster().database());
        }
        gw
    }

    /// As [`Gateway::prepare`], always on sled (tests of the embedded engine's own data
    /// directory: upgrades of sled directories, its full-disk handling).
    pub fn prepare_sled() -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        config.destinations.clear();
        let certs = config.tls.certs_dir.to_str().unwrap().to_string();
        let (code, _, err) = run_cli(
            dir.path(),
            &[
                "certs",
                "init",
                "--dir",
                &certs,
                "--client",
                "credit-gateway",
            ],
        );
        assert_eq!(code, 0, "certs init: {err}");
        Gateway {
            dir,
            child: None,
            api: String::new(),
            admin: String::new(),
            config,
        }
    }

    /// Start a reference receiver (in `rt`) with this gateway's certificates.
    pub fn receiver(&self, rt: &tokio::runtime::Runtime) -> receiver::Receiver {
        let certs = self.certs();
        rt.block_on(receiver::Receiver::start(
            "127.0.0.1:0",
            &certs.join("ca.pem"),
            &certs.join("server.pem"),
            &certs.join("server-key.pem"),
        ))
        .expect("receiver starts")
    }

    /// Add a destination platform served by `receiver`.
    pub fn add_destination(&mut self, id: &str, region: &str, receiver: &receiver::Receiver) {
        let mut d = credit_gateway::config::default_destinations().remove(0);
        d.id = id.into();
        d.name = id.into();
        d.region = region.into();
        d.url = format!("https://localhost:{}/v1/shares", receiver.addr.port());
        d.requests_per_second = 1000;
        self.config.destinations.push(d);
    }

    /// Run the CLI against this gateway's configuration.
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let cfg = self.config_path();
        let mut all = vec!["--config", cfg.to_str().unwrap()];
        all.extend_from_slice(args);
        run_cli(self.dir.path(), &all)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("credit-gateway.toml")
    }

    /// Push canonical records as `agency`, asserting they are accepted (200); the receipt.
    pub fn push_canonical(
        &self,
        agency: &str,
        records: &impl serde::Serialize,
    ) -> serde_json::Value {
        let reply = self.client(agency).post(
            "/v1/records?mapping=canonical",
            "application/json",
            serde_json::to_vec(records).unwrap(),
        );
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
    }

    /// Write the config where `cli` and `spawn` read it.
    pub fn write_config(&self) {
        std::fs::write(
            self.config_path(),
            toml::to_string(&self.config).expect("config serializes"),
        )
        .unwrap();
    }

    /// Write the config and start the process; wait for its ready line.
    pub fn spawn(&mut self) {
        // `CREDIT_GATEWAY_TEST_BIN` runs a test against another build (a release binary, to
        // reproduce what a report saw on one); the suite itself always runs `BIN`.
        let bin = std::env::var_os("CREDIT_GATEWAY_TEST_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(BIN));
        self.spawn_bin(&bin)
    }

    /// `spawn` with another build of the binary (the release build's tests).
    pub fn spawn_bin(&mut self, bin: &Path) {
        self.write_config();
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(self.config_path())
            .arg("serve")
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.path().join("gateway.log")).unwrap(),
            ))
            .spawn()
            .expect("gateway starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("credit-gateway ready:") => break line,
                Some(Ok(_)) => continue,
                _ => {
                    let log = std::fs::read_to_string(self.dir.path().join("gateway.log"))
                        .unwrap_or_default();
                    panic!("gateway exited before it was ready:\n{log}");
                }
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let api = ready
            .split("api=https://")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        let admin = ready
            .split("admin=http://")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        self.api = api;
        self.admin = admin;
        self.child = Some(child);
    }

    /// SIGTERM and wait: a graceful stop.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        wait_with_timeout(&mut child, Duration::from_secs(30))
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Restart on the same data, certificates and ports chosen anew.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// Send SIGHUP (reload certificates and the calendar).
    pub fn sighup(&self) {
        let pid = self.child.as_ref().expect("gateway running").id();
        assert!(Command::new("kill")
            .arg("-HUP")
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn certs(&self) -> PathBuf {
        self.config.tls.certs_dir.clone()
    }

    /// A client with the named agency's generated certificate.
    /// A raw mutual-TLS connection to the API as `agency`, for tests that write HTTP by hand;
    /// use the stream inside the returned runtime.
    pub fn raw_tls(
        &self,
        agency: &str,
    ) -> (
        tokio::runtime::Runtime,
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    ) {
        let port: u16 = self.api.rsplit(':').next().unwrap().parse().unwrap();
        let certs = self.certs();
        let cfg = credit_gateway::identity::tls::client_config(
            &certs.join("ca.pem"),
            &certs.join(format!("clients/{agency}.pem")),
            &certs.join(format!("clients/{agency}-key.pem")),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tls = rt.block_on(async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .unwrap()
        });
        (rt, tls)
    }

    pub fn client(&self, agency: &str) -> ApiClient {
        let certs = self.certs();
        let cfg = credit_gateway::identity::tls::client_config(
            &certs.join("ca.pem"),
            &certs.join("clients").join(format!("{agency}.pem")),
            &certs.join("clients").join(format!("{agency}-key.pem")),
        )
        .expect("client TLS config");
        ApiClient::new(cfg, &self.api)
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "https://{}{}",
            self.api.replace("127.0.0.1", "localhost"),
            path
        )
    }

    /// POST on the admin port (plain HTTP).
    pub fn admin_post(&self, path: &str) -> (u16, String) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let req = hyper::Request::post(format!("http://{}{}", self.admin, path))
                .header("authorization", format!("Bearer {}", self.local_token()))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = client.request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        })
    }

    /// The token the gateway writes for the CLI on its host (see `credit_gateway::operators`).
    pub fn local_token(&self) -> String {
        std::fs::read_to_string(self.config.storage.data_dir.join("admin.token"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// A request to the admin port with the given headers and body, no credentials added.
    pub fn admin_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, hyper::HeaderMap, String) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(format!("http://{}{}", self.admin, path));
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let resp = client
                .request(req.body(Full::new(Bytes::from(body))).unwrap())
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, headers, String::from_utf8_lossy(&body).into_owned())
        })
    }

    /// Start the manual clock at this time (before `spawn`): the gateway never sees the real date.
    pub fn start_clock_at(&self, rfc3339: &str) {
        std::fs::create_dir_all(&self.config.storage.data_dir).unwrap();
        std::fs::write(
            self.config.storage.data_dir.join("dangerous-manual-clock"),
            rfc3339,
        )
        .unwrap();
    }

    /// Set the gateway's manual clock (needs `corrections.dangerous_manual_clock`).
    pub fn set_clock(&self, rfc3339: &str) {
        let (status, body) = self.admin_post(&format!(
            "/dangerous/clock?set={}",
            rfc3339.replace('+', "%2B")
        ));
        assert_eq!(status, 200, "{body}");
    }

    /// GET on the admin port (plain HTTP).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let req = hyper::Request::get(format!("http://{}{}", self.admin, path))
                .header("authorization", format!("Bearer {}", self.local_token()))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = client.request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTPS client (mutual TLS) on its own small runtime, so tests stay synchronous.
pub struct ApiClient {
    rt: tokio::runtime::Runtime,
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    base: String,
}

pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl ApiClient {
    pub fn new(cfg: rustls::ClientConfig, api: &str) -> ApiClient {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(cfg)
            .https_only()
            .enable_http1()
            .build();
        let client = {
            let _guard = rt.enter();
            Client::builder(TokioExecutor::new()).build(connector)
        };
        ApiClient {
            rt,
            client,
            base: format!("https://localhost:{}", api.rsplit(':').next().unwrap()),
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        self.request_with(method, path, content_type, &[], body)
    }

    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        self.request_within(
            method,
            path,
            content_type,
            headers,
            body,
            Duration::from_secs(30),
        )
    }

    /// A request that may take longer than the usual 30 s (a large file).
    pub fn request_within(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        within: Duration,
    ) -> Result<Reply, String> {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        let req = builder.body(Full::new(Bytes::from(body))).unwrap();
        self.rt.block_on(async {
            let resp = tokio::time::timeout(within, self.client.request(req))
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| format!("{e:?}"))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes()
                .to_vec();
            Ok(Reply {
                status,
                headers,
                body,
            })
        })
    }

    pub fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        self.request("POST", path, Some(content_type), body)
            .expect("request completes")
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None, Vec::new())
            .expect("request completes")
    }
}

/// Run the binary with arguments; returns (exit code, stdout, stderr).
pub fn run_cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Poll until `check` holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

pub fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A plain-HTTP alert relay on loopback (what `corrections.alert_webhook` points at): answers 200
/// to every POST and keeps the JSON bodies it received.
pub struct AlertRelay {
    pub url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl AlertRelay {
    pub fn start(rt: &tokio::runtime::Runtime) -> AlertRelay {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the alert relay");
        let url = format!("http://{}/alerts", listener.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = bodies.clone();
        rt.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let kept = kept.clone();
                            async move {
                                let body = req.into_body().collect().await?.to_bytes();
                                if let Ok(v) = serde_json::from_slice(&body) {
                                    kept.lock().unwrap().push(v);
                                }
                                Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::new())))
                            }
                        },
                    );
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        AlertRelay { url, bodies }
    }

    /// The alerts received so far.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// The date `days` days before today, China time, as `YYYY-MM-DD`: penalties in tests are decided
/// recently enough to be within their public-notice period whenever the suite runs.
pub fn days_ago(days: i64) -> String {
    let d = (time::OffsetDateTime::now_utc().to_offset(credit_gateway::calendar::CHINA_OFFSET)
        - time::Duration::days(days))
    .date();
    credit_gateway::record::format_date(d)
}

#[path = "../support/browser.rs"]
pub mod browser;
#[path = "../support/identifiers.rs"]
mod identifiers;
#[path = "../support/postgres.rs"]
pub mod postgres;
#[path = "../support/receiver.rs"]
pub mod receiver;
#[allow(unused_imports)]
pub use identifiers::{resident_id, uscc_in};

/// The shipped samples and what each must get (`examples/samples/expected.toml`).
pub mod samples {
    use super::{repo, Gateway};

    /// Mapping -> its sample's expectations.
    pub fn expected() -> toml::Table {
        toml::from_str(
            &std::fs::read_to_string(repo().join("examples/samples/expected.toml")).unwrap(),
        )
        .unwrap()
    }

    /// Push every shipped sample as its agency, asserting each is answered 200; the mapping,
    /// its expectations and the receipt, in the order of `expected.toml`.
    pub fn push_all(gw: &Gateway) -> Vec<(String, toml::Value, serde_json::Value)> {
        let mut out = Vec::new();
        for (mapping, exp) in expected() {
            let file = exp["file"].as_str().unwrap();
            let body = std::fs::read(repo().join("examples/samples").join(file)).unwrap();
            let reply = gw.client(exp["agency"].as_str().unwrap()).post(
                &format!("/v1/records?mapping={mapping}"),
                exp["content_type"].as_str().unwrap(),
                body,
            );
            assert_eq!(
                reply.status,
                200,
                "{mapping}: {}",
                String::from_utf8_lossy(&reply.body)
            );
            let receipt = reply.json();
            out.push((mapping, exp, receipt));
        }
        out
    }
}
