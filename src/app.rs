//! Wiring for `credit-gateway serve`: load everything, bind, run until a signal, drain.
//! No domain logic lives here.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::identity::{certs, tls, Registry};
use crate::ingest::{self, App};
use crate::mapping::MappingSet;
use crate::store::{Committer, Store};
use crate::subject::IdentifierExceptions;
use crate::telemetry::{self, admin};

/// Why the gateway could not start. The operator's to fix; every message names the file or
/// setting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("certificates: {0}")]
    Certs(#[from] certs::CertError),
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("mappings:\n  {}", .0.join("\n  "))]
    Mappings(Vec<String>),
    #[error("storage at {path}: {message}")]
    Storage { path: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// Create development certificates when the certificates folder has none (and the config allows).
pub fn ensure_dev_certs(config: &Config) -> Result<Option<certs::InitReport>, certs::CertError> {
    if !config.tls.generate_dev_certs {
        return Ok(None);
    }
    let agencies: Vec<String> = config.agencies.iter().map(|a| a.id.clone()).collect();
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    certs::init(&config.tls.certs_dir, &agencies, &names).map(Some)
}

pub fn load_mappings(config: &Config) -> Result<MappingSet, StartError> {
    let to_strings = |errs: Vec<crate::mapping::MappingError>| errs.into_iter().map(|e| e.to_string()).collect();
    if config.mappings.dir.is_dir() {
        MappingSet::load_dir(&config.mappings.dir).map_err(|e| StartError::Mappings(to_strings(e)))
    } else {
        tracing::warn!(dir = %config.mappings.dir.display(), "mappings folder not found; using the built-in mappings");
        MappingSet::builtin().map_err(|e| StartError::Mappings(to_strings(e)))
    }
}

pub fn open_store(config: &Config) -> Result<Store, StartError> {
    Store::open(&config.storage.data_dir).map_err(|e| StartError::Storage {
        path: config.storage.data_dir.display().to_string(),
        message: e.to_string(),
    })
}

/// Run the gateway until SIGTERM or ctrl-c.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let metrics = telemetry::init_metrics();
    if let Some(report) = ensure_dev_certs(&config)? {
        for path in &report.created {
            tracing::info!(path = %path.display(), "created development certificate material");
        }
    }
    let server_tls = tls::server_config(&config.client_ca_path(), &config.server_cert_path(), &config.server_key_path())?;
    let mappings = load_mappings(&config)?;
    let store = open_store(&config)?;
    let (committer, handle) = Committer::start(store.clone())
        .map_err(|e| StartError::Storage { path: config.storage.data_dir.display().to_string(), message: e.to_string() })?;
    let exceptions =
        IdentifierExceptions::new(&config.validation.uscc_exceptions, &config.validation.resident_id_exceptions);
    let clock: SharedClock = Arc::new(SystemClock);
    let (api_listener, api_addr) = ingest::bind(&config.server.listen)
        .await
        .map_err(|source| StartError::Bind { addr: config.server.listen.clone(), source })?;
    let admin_listener = tokio::net::TcpListener::bind(&config.server.admin_listen)
        .await
        .map_err(|source| StartError::Bind { addr: config.server.admin_listen.clone(), source })?;
    let admin_addr = admin_listener.local_addr().map_err(|source| StartError::Bind { addr: config.server.admin_listen.clone(), source })?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let readiness = Arc::new(admin::Readiness::default());
    let admin_task = tokio::spawn(admin::serve(admin_listener, readiness.clone(), metrics, stop_rx.clone()));
    let app = Arc::new(App {
        registry: Registry::new(&config.agencies),
        mappings,
        store: store.clone(),
        committer: handle,
        exceptions,
        clock,
        config,
    });
    let api_task = tokio::spawn(ingest::serve(app.clone(), server_tls, api_listener, stop_rx));
    drop(app);
    readiness.set(true);
    tracing::info!(api = %api_addr, admin = %admin_addr, "credit-gateway ready");
    println!("credit-gateway ready: api=https://{api_addr} admin=http://{admin_addr}");

    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    readiness.set(false);
    let _ = stop_tx.send(true);
    let _ = api_task.await;
    let _ = admin_task.await;
    // Every App clone is gone once the connections are; the writer then drains and stops.
    let joined = tokio::task::spawn_blocking(move || committer.join());
    if tokio::time::timeout(Duration::from_secs(10), joined).await.is_err() {
        tracing::warn!("writer still busy after 10 s; flushing what is committed");
    }
    if let Err(e) = store.flush() {
        tracing::error!(error = %e, "final flush failed");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
