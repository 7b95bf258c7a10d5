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
    #[error("calendar: {0}")]
    Calendar(String),
    #[error("sharing: {0}")]
    Sharing(String),
    #[error("delivery: {0}")]
    Delivery(#[from] crate::delivery::SetupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// File in the data directory holding a running gateway's admin address.
pub const ADMIN_ADDR_FILE: &str = "admin.addr";

/// Create development certificates when the certificates folder has none (and the config allows).
pub fn ensure_dev_certs(config: &Config) -> Result<Option<certs::InitReport>, certs::CertError> {
    if !config.tls.generate_dev_certs {
        return Ok(None);
    }
    let mut agencies: Vec<String> = config.agencies.iter().map(|a| a.id.clone()).collect();
    agencies.push(crate::config::GATEWAY_CLIENT_CN.to_string());
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    certs::init(&config.tls.certs_dir, &agencies, &names).map(Some)
}

pub fn load_mappings(config: &Config) -> Result<MappingSet, StartError> {
    let to_strings =
        |errs: Vec<crate::mapping::MappingError>| errs.into_iter().map(|e| e.to_string()).collect();
    if config.mappings.dir.is_dir() {
        MappingSet::load_dir(&config.mappings.dir).map_err(|e| StartError::Mappings(to_strings(e)))
    } else {
        tracing::warn!(dir = %config.mappings.dir.display(), "mappings folder not found; using the built-in mappings");
        MappingSet::builtin().map_err(|e| StartError::Mappings(to_strings(e)))
    }
}

pub fn open_store(config: &Config) -> Result<Store, StartError> {
    Store::open_tuned(
        &config.storage.data_dir,
        config.storage.durability,
        config.storage.cache_mb,
    )
    .map_err(|e| StartError::Storage {
        path: config.storage.data_dir.display().to_string(),
        message: e.to_string(),
    })
}

/// The working-day calendar: the configured folder when it exists, else the built-in years.
pub fn load_calendar(config: &Config) -> Result<crate::calendar::Calendar, StartError> {
    let dir = config.calendar_dir();
    let loaded = if dir.is_dir() {
        crate::calendar::Calendar::load_dir(&dir).map_err(|errs| {
            errs.into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
    } else {
        crate::calendar::Calendar::builtin().map_err(|e| e.to_string())
    };
    loaded.map_err(StartError::Calendar)
}

/// After a platform acknowledges correction shares, record when (first acknowledgement counts).
fn correction_acknowledger(
    store: Store,
    clock: crate::clock::SharedClock,
) -> crate::delivery::OnDelivered {
    Arc::new(move |entries, _now| {
        let at = crate::clock::rfc3339(clock.now().to_offset(crate::calendar::CHINA_OFFSET));
        let mut writes = Vec::new();
        for e in entries {
            let Some(id) = &e.correction_id else { continue };
            let key = crate::corrections::delivered_key(id, &e.destination);
            if writes.iter().any(|(k, _): &(String, Vec<u8>)| *k == key)
                || store.raw().get(key.as_bytes()).ok().flatten().is_some()
            {
                continue;
            }
            let on_time = store
                .get_json::<crate::corrections::Correction>(&crate::corrections::correction_key(id))
                .ok()
                .flatten()
                .map(|c| deadline_not_passed(&c.deadline, &at))
                .unwrap_or(true);
            crate::telemetry::events::correction_delivered(id, &e.destination, on_time);
            writes.push((
                key,
                crate::store::to_bytes(&serde_json::json!({ "at": at })),
            ));
        }
        writes
    })
}

fn deadline_not_passed(deadline: &str, at: &str) -> bool {
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    matches!((parse(deadline), parse(at)), (Some(d), Some(a)) if a <= d)
}

pub fn build_router(config: &Config) -> Result<crate::sharing::Router, StartError> {
    let disclosure = crate::disclosure::DisclosureRules::load(&config.disclosure_rules_path())
        .map_err(|e| StartError::Sharing(e.to_string()))?;
    crate::sharing::Router::new(
        &config.sharing_rules_path(),
        disclosure,
        &config.destinations,
    )
    .map_err(|e| StartError::Sharing(e.to_string()))
}

/// Run the gateway until SIGTERM or ctrl-c.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let metrics = telemetry::init_metrics();
    if let Some(report) = ensure_dev_certs(&config)? {
        for path in &report.created {
            tracing::info!(path = %path.display(), "created development certificate material");
        }
    }
    let server_tls = Arc::new(tls::Reloadable::new(server_tls_config(&config)?));
    let mappings = load_mappings(&config)?;
    let store = open_store(&config)?;
    let (committer, handle) = Committer::start(store.clone()).map_err(|e| StartError::Storage {
        path: config.storage.data_dir.display().to_string(),
        message: e.to_string(),
    })?;
    let exceptions = IdentifierExceptions::new(
        &config.validation.uscc_exceptions,
        &config.validation.resident_id_exceptions,
    );
    let manual_clock = config
        .corrections
        .dangerous_manual_clock
        .then(|| crate::clock::ManualClock::new(time::OffsetDateTime::now_utc()));
    let clock: SharedClock = match &manual_clock {
        Some(m) => {
            tracing::warn!("corrections.dangerous_manual_clock is on: time is set through the admin port (tests only)");
            Arc::new(m.clone())
        }
        None => Arc::new(SystemClock),
    };
    let calendar = crate::calendar::SharedCalendar::new(load_calendar(&config)?);
    let router = Arc::new(build_router(&config)?);
    let formats = crate::delivery::format::Formats::load(&config.mappings.dir.join("outbound"))
        .map_err(StartError::Sharing)?;
    let destinations = config
        .destinations
        .iter()
        .map(|d| crate::delivery::Destination::new(&config, d, &formats).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let (api_listener, api_addr) = ingest::bind(&config.server.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.server.listen.clone(),
            source,
        })?;
    let admin_listener = tokio::net::TcpListener::bind(&config.server.admin_listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.server.admin_listen.clone(),
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.server.admin_listen.clone(),
            source,
        })?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let readiness = Arc::new(admin::Readiness::default());
    let ops = Arc::new(admin::Ops {
        store: store.clone(),
        committer: handle.clone(),
        destinations: config.destinations.iter().map(|d| d.id.clone()).collect(),
        manual_clock: manual_clock.clone(),
        clock: clock.clone(),
    });
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        readiness.clone(),
        metrics,
        ops,
        stop_rx.clone(),
    ));
    let addr_file = config.storage.data_dir.join(ADMIN_ADDR_FILE);
    let mut workers = Vec::new();
    for destination in destinations {
        let worker = crate::delivery::Worker {
            destination,
            store: store.clone(),
            committer: handle.clone(),
            sharing: config.sharing.clone(),
            clock: clock.clone(),
            on_delivered: Some(correction_acknowledger(store.clone(), clock.clone())),
        };
        workers.push(tokio::spawn(worker.run(stop_rx.clone())));
    }
    let tracker = crate::corrections::tracker::Tracker {
        store: store.clone(),
        calendar: calendar.clone(),
        clock: clock.clone(),
        interval: Duration::from_millis(config.corrections.check_interval_ms),
        webhook: config.corrections.alert_webhook.clone(),
    };
    workers.push(tokio::spawn(tracker.run(stop_rx.clone())));
    let app = Arc::new(App {
        calendar,
        router,
        registry: Registry::new(&config.agencies),
        mappings,
        store: store.clone(),
        committer: handle,
        exceptions,
        clock,
        config,
    });
    let api_task = tokio::spawn(ingest::serve(
        app.clone(),
        server_tls.clone(),
        api_listener,
        stop_rx,
    ));
    let reload_config = config_for_reload(&app.config);
    let reload_committer = handle_for_reload(&app);
    let reload_calendar = app.calendar.clone();
    drop(app);
    // Operator commands find a running gateway's admin endpoint here (its port may be ephemeral).
    if let Err(e) = std::fs::write(&addr_file, admin_addr.to_string()) {
        tracing::warn!(error = %e, "cannot write the admin address file");
    }
    readiness.set(true);
    tracing::info!(api = %api_addr, admin = %admin_addr, "credit-gateway ready");
    println!("credit-gateway ready: api=https://{api_addr} admin=http://{admin_addr}");

    wait_for_signal(|| {
        reload(
            &reload_config,
            &server_tls,
            &reload_calendar,
            &reload_committer,
        )
    })
    .await;
    drop(reload_committer);
    tracing::info!("shutting down: finishing in-flight requests");
    readiness.set(false);
    let _ = stop_tx.send(true);
    let _ = api_task.await;
    let _ = admin_task.await;
    for w in workers {
        let _ = w.await;
    }
    // Every App clone is gone once the connections are; the writer then drains and stops.
    let joined = tokio::task::spawn_blocking(move || committer.join());
    if tokio::time::timeout(Duration::from_secs(10), joined)
        .await
        .is_err()
    {
        tracing::warn!("writer still busy after 10 s; flushing what is committed");
    }
    if let Err(e) = store.flush() {
        tracing::error!(error = %e, "final flush failed");
    }
    let _ = std::fs::remove_file(&addr_file);
    tracing::info!("stopped");
    Ok(())
}

fn server_tls_config(config: &Config) -> Result<Arc<rustls::ServerConfig>, tls::TlsError> {
    tls::server_config_with_crl(
        &config.client_ca_path(),
        &config.server_cert_path(),
        &config.server_key_path(),
        config.tls.crl.as_deref(),
    )
}

fn config_for_reload(config: &Config) -> Config {
    config.clone()
}

fn handle_for_reload(app: &App) -> crate::store::CommitterHandle {
    app.committer.clone()
}

/// SIGHUP: rebuild the TLS configuration and the working-day calendar from their files; keep
/// the old ones when the files are broken. Audited.
fn reload(
    config: &Config,
    current: &tls::Reloadable,
    calendar: &crate::calendar::SharedCalendar,
    committer: &crate::store::CommitterHandle,
) {
    let result = server_tls_config(config);
    let ok = result.is_ok();
    match result {
        Ok(new) => {
            current.replace(new);
            tracing::info!("TLS certificates, keys and revocation list reloaded (SIGHUP)");
        }
        Err(e) => {
            tracing::error!(error = %e, "TLS reload failed; the previous certificates stay in use")
        }
    }
    let calendar_years = match load_calendar(config) {
        Ok(new) => {
            let years = new.known_years();
            calendar.replace(new);
            tracing::info!(
                first = years.start(),
                last = years.end(),
                "working-day calendar reloaded (SIGHUP)"
            );
            serde_json::json!([years.start(), years.end()])
        }
        Err(e) => {
            tracing::error!(error = %e, "calendar reload failed; the previous calendar stays in use");
            serde_json::Value::Null
        }
    };
    let committer = committer.clone();
    tokio::spawn(async move {
        let mut data = serde_json::Map::new();
        data.insert("ok".into(), serde_json::Value::Bool(ok));
        data.insert("calendar_years".into(), calendar_years);
        let _ = committer
            .apply(
                "operator_tls_reload",
                data,
                Vec::new(),
                Vec::new(),
                Vec::new(),
            )
            .await;
    });
}

async fn wait_for_signal(mut on_hangup: impl FnMut()) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = tokio::signal::ctrl_c() => return,
                _ = hup.recv() => on_hangup(),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = &mut on_hangup;
        let _ = tokio::signal::ctrl_c().await;
    }
}
