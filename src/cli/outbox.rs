//! `credit-gateway outbox` and `corrections list`: on the data directory when the gateway is
//! stopped, through its admin endpoint (address in `data/admin.addr`) when it runs.

use std::process::ExitCode;

use super::OutboxCommand;
use crate::config::Config;

pub(super) fn corrections_list(config: &Config, state: Option<String>) -> ExitCode {
    if let Some(None) = state.as_deref().map(crate::corrections::State::parse) {
        eprintln!("--state: use pending, overdue, delivered_on_time, delivered_late, delivered or no_platform");
        return ExitCode::from(2);
    }
    let result = match super::open_local(config) {
        Ok(store) => {
            use crate::answer::Answer;
            let now = crate::app::clock(config).now();
            let listed = crate::corrections::ops::list(&store, now, state.as_deref())
                .map_err(|e| e.message());
            // A read the chain does not record is not shown (as through the admin endpoint).
            super::audit::record_offline(&store, crate::app::clock(config), "corrections list")
                .and(listed)
        }
        Err(local) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => rt
                    .block_on(admin_get(
                        config,
                        &format!(
                            "{}{}",
                            crate::corrections::ops::route::LIST,
                            state.map(|s| format!("?state={s}")).unwrap_or_default()
                        ),
                    ))
                    .map_err(|remote| format!("{local}; and through the admin endpoint: {remote}")),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match result {
        Ok(v) => {
            say!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("corrections: {e}");
            ExitCode::from(2)
        }
    }
}

async fn admin_get(config: &Config, path: &str) -> Result<serde_json::Value, String> {
    admin_request(config, "GET", path).await.map(|(_, v)| v)
}

/// One request to the running gateway's admin endpoint (loopback, plain HTTP): status and JSON.
pub(super) async fn admin_request(
    config: &Config,
    method: &str,
    path: &str,
) -> Result<(hyper::StatusCode, serde_json::Value), String> {
    use http_body_util::BodyExt;
    // With `server.admin_tls` the admin listener speaks HTTPS with the server certificate, which the
    // gateway's CA (`tls.client_ca`, the development CA by default) signed.
    let tls = if config.server.admin_tls {
        crate::identity::tls::client_config_without_cert(&config.client_ca_path())
            .map_err(|e| e.to_string())?
    } else {
        // Plain HTTP on loopback: the TLS settings are never used.
        rustls::ClientConfig::builder_with_provider(crate::identity::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    };
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let scheme = if config.server.admin_tls {
        "https"
    } else {
        "http"
    };
    // The gateway's own token for the CLI on its host (see `crate::operators`).
    let token = std::fs::read_to_string(
        config
            .storage
            .data_dir
            .join(crate::operators::LOCAL_TOKEN_FILE),
    )
    .map_err(|e| format!("cannot read the gateway's local token: {e}"))?;
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("{scheme}://{}{path}", running_admin_addr(config)))
        .header("authorization", format!("Bearer {}", token.trim()))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok((status, value))
}

pub(super) fn outbox(config: &Config, cmd: OutboxCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match super::open_local(config) {
        Ok(store) => runtime.block_on(outbox_local(config, store, cmd)),
        Err(local) => runtime
            .block_on(outbox_remote(config, cmd))
            .map_err(|remote| format!("{local}; and through the admin endpoint: {remote}")),
    };
    match result {
        Ok(Some(v)) => {
            say!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("no such entry");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("outbox: {e}");
            ExitCode::from(2)
        }
    }
}

async fn outbox_local(
    config: &Config,
    store: crate::store::Store,
    cmd: OutboxCommand,
) -> Result<Option<serde_json::Value>, String> {
    use crate::outbox::ops;
    let dests: Vec<String> = config.destinations.iter().map(|d| d.id.clone()).collect();
    let e = |e: crate::store::StoreError| e.to_string();
    let (committer, handle) =
        crate::exchange::start(store.clone(), crate::app::clock(config)).map_err(e)?;
    let out = match cmd {
        OutboxCommand::List {
            destination,
            dead,
            limit,
        } => ops::list_entries(&store, &handle, destination.as_deref(), dead, limit)
            .await
            .map(Some),
        OutboxCommand::Show { key } => ops::show_entry(&store, &handle, &key).await,
        OutboxCommand::Stats => ops::stats_all(&store, &handle, &dests).await.map(Some),
        OutboxCommand::Replay {
            destination,
            key,
            reason,
        } => ops::replay(
            &store,
            &handle,
            destination.as_deref(),
            key.as_deref(),
            "local-cli",
            &reason,
        )
        .await
        .map(Some),
    };
    drop(handle);
    committer.join();
    out.map_err(e)
}

/// The running gateway's admin address: from the file it writes at start, else the configured one.
/// Where this host reaches the running gateway's admin listener: a listener on every address is
/// reached on loopback, and under TLS loopback is named `localhost` (the name the server
/// certificate carries); a listener on one management address is reached there.
fn running_admin_addr(config: &Config) -> String {
    let bound = std::fs::read_to_string(config.storage.data_dir.join(crate::app::ADMIN_ADDR_FILE))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| config.server.admin_listen.clone());
    match bound.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() || addr.ip().is_loopback() => {
            if config.server.admin_tls {
                format!("localhost:{}", addr.port())
            } else {
                format!("127.0.0.1:{}", addr.port())
            }
        }
        _ => bound,
    }
}

/// Ask the running gateway's admin endpoint.
async fn outbox_remote(
    config: &Config,
    cmd: OutboxCommand,
) -> Result<Option<serde_json::Value>, String> {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    let (method, path) = match &cmd {
        OutboxCommand::List {
            destination,
            dead,
            limit,
        } => (
            "GET",
            format!(
                "{}?limit={limit}{}{}",
                crate::outbox::ops::route::LIST,
                if *dead { "&dead=1" } else { "" },
                destination
                    .as_ref()
                    .map(|d| format!("&destination={}", enc(d)))
                    .unwrap_or_default()
            ),
        ),
        OutboxCommand::Show { key } => (
            "GET",
            format!("{}?key={}", crate::outbox::ops::route::SHOW, enc(key)),
        ),
        OutboxCommand::Stats => ("GET", crate::outbox::ops::route::STATS.to_string()),
        OutboxCommand::Replay {
            destination,
            key,
            reason,
        } => (
            "POST",
            format!(
                "{}?reason={}{}{}",
                crate::outbox::ops::route::REPLAY,
                enc(reason),
                destination
                    .as_ref()
                    .map(|d| format!("&destination={}", enc(d)))
                    .unwrap_or_default(),
                key.as_ref()
                    .map(|k| format!("&key={}", enc(k)))
                    .unwrap_or_default()
            ),
        ),
    };
    let (status, value) = admin_request(config, method, &path).await?;
    if status == hyper::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(value.to_string());
    }
    Ok(Some(value))
}
