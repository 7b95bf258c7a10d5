//! Wiring for `credit-gateway serve`: load everything, bind, run until a signal, drain.
//! No domain logic lives here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditEvent;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::exchange::ApplyJob;
use crate::identity::{certs, tls};
use crate::ingest::{self, App};
use crate::mapping::MappingSet;
use crate::store::Store;
use crate::subject::IdentifierExceptions;
use crate::telemetry;

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
    #[error("keys: {0}")]
    Keys(String),
    #[error("{0}")]
    DiskFull(String),
    /// A setting this build does not have (the test clock in a release build).
    #[error("configuration: {0}")]
    Config(String),
    /// A write to the data directory failed while serving: the gateway stopped so that the next
    /// start recovers from what is durable (see `store::sled`).
    #[error("stopped after a failed write to the data directory ({0}); nothing unacknowledged was answered as stored: free the disk or fix the device, then start again")]
    Fenced(String),
    #[error("sharing: {0}")]
    Sharing(String),
    /// Rule data that does not load: every problem of every kind at once.
    #[error("rules:\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Rules(Vec<crate::rulebook::RuleError>),
    #[error("objections or repairs rules: {0}")]
    Objections(String),
    #[error("evaluation: {0}")]
    Evaluation(String),
    #[error("delivery: {0}")]
    Delivery(#[from] crate::delivery::SetupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// File in the data directory holding the manual clock's last setting (tests only).
pub const MANUAL_CLOCK_FILE: &str = "dangerous-manual-clock";

/// File in the data directory holding a running gateway's admin address.
pub const ADMIN_ADDR_FILE: &str = "admin.addr";

/// The manual clock when the configuration asks for one (tests only), resumed from the time it was
/// last set to, so a restart (or a CLI command on the stopped data directory) keeps that time.
/// Only a build with the `test-clock` feature has it: a release build never reads the setting's
/// file, and refuses to start with the setting on ([`test_clock_refused`]).
#[cfg(feature = "test-clock")]
pub fn manual_clock(config: &Config) -> Option<crate::clock::ManualClock> {
    config.corrections.dangerous_manual_clock.then(|| {
        let resumed = std::fs::read_to_string(config.storage.data_dir.join(MANUAL_CLOCK_FILE))
            .ok()
            .and_then(|s| {
                time::OffsetDateTime::parse(
                    s.trim(),
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()
            });
        crate::clock::ManualClock::new(resumed.unwrap_or_else(time::OffsetDateTime::now_utc))
    })
}

/// A build without the `test-clock` feature has no manual clock.
#[cfg(not(feature = "test-clock"))]
pub fn manual_clock(_config: &Config) -> Option<crate::clock::ManualClock> {
    None
}

/// Why this configuration may not run in this build: the test clock asked of a build that has
/// none (every legal deadline would silently follow the wall clock instead of what the operator
/// believes is set). `None` when it may run.
pub fn test_clock_refused(config: &Config) -> Option<String> {
    (config.corrections.dangerous_manual_clock && !cfg!(feature = "test-clock")).then(|| {
        "corrections.dangerous_manual_clock is a test setting, and this build has no test clock \
         (it exists only in builds with the test-clock feature): remove the setting"
            .to_string()
    })
}

fn clock_of(manual: &Option<crate::clock::ManualClock>) -> SharedClock {
    match manual {
        Some(m) => Arc::new(m.clone()),
        None => Arc::new(SystemClock),
    }
}

/// The one clock of this configuration: the system's, or the manual clock of the tests. The
/// server and every CLI command that stamps anything use it.
pub fn clock(config: &Config) -> SharedClock {
    clock_of(&manual_clock(config))
}

/// Create development certificates when the certificates folder has none (and the config allows).
pub fn ensure_dev_certs(config: &Config) -> Result<Option<certs::InitReport>, certs::CertError> {
    if !config.tls.generate_dev_certs {
        return Ok(None);
    }
    let mut agencies: Vec<String> = config.agencies.iter().map(|a| a.id.clone()).collect();
    agencies.push(crate::config::GATEWAY_CLIENT_CN.to_string());
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    // Issued against the system clock: rustls checks them against it.
    certs::init(
        &config.tls.certs_dir,
        &agencies,
        &names,
        ::time::OffsetDateTime::now_utc(),
    )
    .map(Some)
}

pub fn load_mappings(config: &Config) -> Result<MappingSet, StartError> {
    crate::rulebook::load_mappings(config).map_err(StartError::Mappings)
}

/// The gateway's keys (`[crypto]`), created on first start by the embedded defaults.
pub fn load_keys(config: &Config) -> Result<crate::crypto::Keyring, StartError> {
    crate::crypto::Keyring::load(
        &config.key_source(),
        config.crypto.suite,
        config.crypto.generate_keys,
        clock(config).now(),
    )
    .map_err(|e| StartError::Keys(e.to_string()))
}

pub fn open_store(config: &Config) -> Result<Store, StartError> {
    open_store_with(config, load_keys(config)?)
}

/// The store an operator command works on: it must already exist (issue #30: a command run from
/// the wrong folder used to create an empty store and a new key file there). Only `serve` creates
/// a data directory and keys, on its first start.
pub fn open_existing_store(config: &Config) -> Result<Store, StartError> {
    if config.storage.engine == crate::config::StorageEngine::Sled {
        let dir = &config.storage.data_dir;
        let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        if !dir.join("conf").is_file() && !dir.join("db").is_file() {
            return Err(StartError::Storage {
                path: shown.display().to_string(),
                message: "no data directory here: run the command with the gateway's configuration (--config FILE, whose storage.data_dir names the gateway's data), or start the gateway once (serve) to create one".into(),
            });
        }
    }
    let keys = crate::crypto::Keyring::load(
        &config.key_source(),
        config.crypto.suite,
        false,
        clock(config).now(),
    )
    .map_err(|e| StartError::Keys(e.to_string()))?;
    open_store_with(config, keys)
}

fn open_store_with(config: &Config, keys: crate::crypto::Keyring) -> Result<Store, StartError> {
    let protection: Arc<dyn crate::store::AtRest> =
        Arc::new(crate::privacy::Protection::new(keys.clone()));
    let store = match config.storage.engine {
        crate::config::StorageEngine::Sled => Store::open_tuned(
            &config.storage.data_dir,
            config.storage.durability,
            config.storage.cache_mb,
            Some(protection),
        )
        .map_err(|e| StartError::Storage {
            path: config.storage.data_dir.display().to_string(),
            message: e.to_string(),
        }),
        crate::config::StorageEngine::Postgres => {
            let options = crate::store::postgres::Options {
                url: config.storage.postgres_url().unwrap_or_default(),
                pool_size: config.storage.postgres_pool_size,
                ca: config.storage.postgres_ca.clone(),
            };
            // (Never the URL in a message: it may hold the password.)
            Store::open_postgres(&options, Some(protection)).map_err(|e| StartError::Storage {
                path: "the PostgreSQL database (storage.postgres_url)".into(),
                message: e.to_string(),
            })
        }
    }?;
    Ok(store.with_keys(keys))
}

/// Before sled opens the data directory: refuse to start below the free-space reserve (a start on
/// a full disk is what leaves sled a partial snapshot), and remove such a leftover, saying so.
fn prepare_data_dir(config: &Config) -> Result<crate::store::space::DiskGuard, StartError> {
    let dir = &config.storage.data_dir;
    let storage = |message: String| StartError::Storage {
        path: dir.display().to_string(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| storage(e.to_string()))?;
    // The data directory holds sealed values, but also keys, tokens and sled's files: its owner
    // only (sled creates its files 0644; the directory's mode is what keeps others out).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| storage(format!("cannot make the data directory private: {e}")))?;
    }
    let guard = crate::store::space::DiskGuard::new(dir, config.storage.min_free_mb);
    if guard.check() {
        return Err(StartError::DiskFull(format!(
            "{}: {} MiB free, below storage.min_free_mb = {}: free space, then start again",
            dir.display(),
            guard.free() / (1024 * 1024),
            config.storage.min_free_mb
        )));
    }
    for path in
        crate::store::space::remove_partial_snapshots(dir).map_err(|e| storage(e.to_string()))?
    {
        tracing::warn!(path = %path.display(), "removed a partial snapshot left by an interrupted start; the log it summarised is kept and replayed");
    }
    Ok(guard)
}

/// The commit watchdog: a commit or flush stuck past `storage.commit_stuck_ms` makes the gateway
/// not ready, with an error log and a metric, until it finishes. Reads no storage.
async fn watch_commits(
    progress: Arc<crate::store::Progress>,
    bound: Duration,
    readiness: Arc<crate::telemetry::Readiness>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut stuck = false;
    while !*stop.borrow() {
        let running = progress.stuck_for().unwrap_or_default();
        metrics::gauge!("gateway_commit_stuck_seconds").set(if running > bound {
            running.as_secs_f64()
        } else {
            0.0
        });
        let now_stuck = running > bound;
        if now_stuck != stuck {
            if now_stuck {
                tracing::error!(
                    running_ms = running.as_millis() as u64,
                    "a commit is stuck: not ready until it finishes"
                );
            } else {
                tracing::warn!("the stuck commit finished: ready again");
            }
            readiness.set_stuck(now_stuck);
            stuck = now_stuck;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
            _ = stop.changed() => {},
        }
    }
}

/// Measure free space every second; below the reserve the gateway is not ready and refuses work.
async fn watch_disk(
    disk: Arc<crate::store::space::DiskGuard>,
    readiness: Arc<crate::telemetry::Readiness>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let guard = disk.clone();
        if let Ok(low) = tokio::task::spawn_blocking(move || guard.check()).await {
            readiness.set_disk_low(low);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
            _ = stop.changed() => {},
        }
    }
}

/// The working-day calendar: the configured folder when it exists, else the built-in years.
pub fn load_calendar(config: &Config) -> Result<crate::calendar::Calendar, StartError> {
    crate::rulebook::load_calendar(config).map_err(StartError::Calendar)
}

/// After a platform acknowledges shares: the publication ledger's acknowledgements and the
/// corrections' (GD Art. 31) are written with the removal from the outbox.
fn acknowledger(store: Store, clock: crate::clock::SharedClock) -> crate::delivery::OnDelivered {
    Arc::new(move |entries, _now| {
        let at = clock.now();
        let mut writes = crate::ledger::acknowledgement_writes(entries, at);
        writes.extend(crate::corrections::acknowledgement_writes(
            &store, entries, at,
        ));
        writes
    })
}

/// After a file destination picks up a batch file: the pick-up time of each correction in it
/// (GD Art. 31's deadline view shows it).
fn pick_up_recorder(store: Store, clock: crate::clock::SharedClock) -> crate::delivery::OnPickedUp {
    Arc::new(move |entries, file| {
        crate::corrections::pickup_writes(&store, entries, clock.now(), file)
    })
}

/// The sharing, disclosure and public-notice rules, checked together.
pub fn build_router(config: &Config) -> Result<crate::sharing::Router, StartError> {
    crate::rulebook::load_router(config).map_err(StartError::Sharing)
}

/// Run the gateway until SIGTERM or ctrl-c. `config_file` is where `config` was read from (as
/// given to [`Config::load`]): SIGHUP reads its `[tls]` section again.
pub async fn serve(config: Config, config_file: Option<PathBuf>) -> Result<(), StartError> {
    if let Some(why) = test_clock_refused(&config) {
        return Err(StartError::Config(why));
    }
    raise_open_files(config.server.max_connections + config.server.max_handshakes);
    let metrics = telemetry::init_metrics();
    if let Some(report) = ensure_dev_certs(&config)? {
        for path in &report.created {
            tracing::info!(path = %path.display(), "created development certificate material");
        }
    }
    let server_tls = Arc::new(tls::Reloadable::new(server_tls_config(&config.tls)?));
    let disk = Arc::new(prepare_data_dir(&config)?);
    let (parts, committer) = Parts::open(&config, disk.clone())?;
    let listeners = Listeners::bind(&config).await?;
    write_private(
        &config
            .storage
            .data_dir
            .join(crate::operators::LOCAL_TOKEN_FILE),
        &parts.local_token,
    )
    .map_err(|e| StartError::Storage {
        path: config.storage.data_dir.display().to_string(),
        message: format!("cannot write the local operator token: {e}"),
    })?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let readiness = Arc::new(crate::telemetry::Readiness::default());
    let rule_files = Arc::new(crate::rulebook::in_force::Files::of(&config));
    let reloader = Arc::new(crate::rulebook::reload::Reloader {
        live: parts.live.clone(),
        config_file: config_file.clone(),
        applied: std::sync::Mutex::new(config.clone()),
        committer: parts.handle.clone(),
        store: parts.store.clone(),
        exceptions: parts.exceptions.clone(),
        clock: parts.clock.clone(),
        evaluation: config.evaluation.enabled,
        serial: tokio::sync::Mutex::new(()),
    });
    let node = parts.node(&config);
    let ops = Arc::new(parts.ops(&node, &rule_files, &reloader, &metrics, &readiness));
    let admin_tls = if config.server.admin_tls {
        Some(tls::admin_server_config(
            &config.server_cert_path(),
            &config.server_key_path(),
        )?)
    } else {
        None
    };
    let admin_task = tokio::spawn(crate::operator::serve(
        listeners.admin,
        admin_tls,
        readiness.clone(),
        metrics,
        ops.clone(),
        stop_rx.clone(),
    ));
    let addr_file = config.storage.data_dir.join(ADMIN_ADDR_FILE);
    let mut workers = spawn_watchers(&config, &parts, &disk, &readiness, &rule_files, &stop_rx);
    workers.extend(spawn_work_done_once(&config, &parts, &stop_rx));
    let store = parts.store.clone();
    let app = Arc::new(parts.into_app(node, disk));
    let _ = ops.uploads.set(Arc::downgrade(&app));
    drop(ops);
    // Agencies' exchange folders: each node looks at the folders it is configured with (a file
    // is claimed by an atomic rename, so two nodes sharing one folder never take it twice).
    workers.extend(ingest::spawn_folders(&app, &stop_rx));
    let api_task = tokio::spawn(ingest::serve(
        app.clone(),
        server_tls.clone(),
        listeners.api,
        stop_rx,
    ));
    let mut reload = Reload {
        config: app.config.clone(),
        config_file,
        tls: server_tls.clone(),
        committer: app.committer.clone(),
        store: store.clone(),
        clock: app.clock.clone(),
        rules: reloader,
    };
    drop(app);
    // Operator commands find a running gateway's admin endpoint here (its port may be ephemeral).
    if let Err(e) = std::fs::write(&addr_file, listeners.admin_addr.to_string()) {
        tracing::warn!(error = %e, "cannot write the admin address file");
    }
    let signals = Signals::install();
    readiness.set(true);
    tracing::info!(api = %listeners.api_addr, admin = %listeners.admin_addr, "credit-gateway ready");
    println!(
        "credit-gateway ready: api=https://{} admin=http://{}",
        listeners.api_addr, listeners.admin_addr
    );

    let fenced = tokio::select! {
        () = wait_for_signal(signals, || reload.run()) => None,
        why = watch_fence(store.clone(), readiness.clone()) => Some(why),
    };
    drop(reload);
    tracing::info!("shutting down: finishing in-flight requests");
    readiness.set(false);
    let _ = stop_tx.send(true);
    let _ = api_task.await;
    let _ = admin_task.await;
    for w in workers {
        let _ = w.await;
    }
    drain(committer, &store).await;
    let _ = std::fs::remove_file(&addr_file);
    tracing::info!("stopped");
    match fenced {
        Some(why) => Err(StartError::Fenced(why)),
        None => Ok(()),
    }
}

/// What the gateway runs on, opened once at start and shared by the agency API, the operator
/// server and the background work: the store and its writer, the clock, the rule data in force.
struct Parts {
    store: Store,
    handle: crate::exchange::CommitterHandle,
    clock: SharedClock,
    manual_clock: Option<crate::clock::ManualClock>,
    exceptions: IdentifierExceptions,
    live: crate::rulebook::Live,
    /// The token the CLI on this host signs its requests with (only the data directory's owner
    /// reads it).
    local_token: String,
    evaluation: Option<crate::evaluation::engine::Engine>,
    authority: crate::evaluation::authz::Authority,
    destinations: Vec<Arc<crate::delivery::Destination>>,
    last_answers: crate::delivery::LastAnswers,
}

impl Parts {
    /// Open the store, start its writer, load every kind of rule data as one whole (issue #26),
    /// the evaluation's authorities and the platforms' senders. Returns the writer's thread apart:
    /// it is joined last, once everything that could submit to it has stopped.
    fn open(
        config: &Config,
        disk: Arc<crate::store::space::DiskGuard>,
    ) -> Result<(Self, crate::store::Committer), StartError> {
        let store = match config.storage.engine {
            // Every write set is measured against the reserve before sled sees it.
            crate::config::StorageEngine::Sled => open_store(config)?.with_reserve(disk),
            crate::config::StorageEngine::Postgres => open_store(config)?,
        };
        let exceptions = IdentifierExceptions::new(
            &config.validation.uscc_exceptions,
            &config.validation.resident_id_exceptions,
        );
        let manual_clock = manual_clock(config);
        if manual_clock.is_some() {
            tracing::warn!("corrections.dangerous_manual_clock is on: time is set through the admin port (test build only)");
            metrics::gauge!("gateway_test_clock").set(1.0);
        }
        let clock = clock_of(&manual_clock);
        let (committer, handle) =
            crate::exchange::start(store.clone(), clock.clone()).map_err(|e| {
                StartError::Storage {
                    path: config.storage.data_dir.display().to_string(),
                    message: e.to_string(),
                }
            })?;
        let book = crate::rulebook::Rulebook::load(config).map_err(StartError::Rules)?;
        tracing::info!(hashes = ?book.hashes, profiles = book.profiles.len(), "rules loaded");
        let local_token = crate::operators::random_token();
        let live = crate::rulebook::Live::new(book, local_token.clone());
        let evaluation = config
            .evaluation
            .enabled
            .then(|| crate::evaluation::engine::Engine {
                store: store.clone(),
                profiles: live.profiles.clone(),
                router: live.router.clone(),
                exceptions: exceptions.clone(),
                destinations: config.destinations.clone(),
                agency: config.evaluation.agency.clone(),
            });
        let authority = crate::evaluation::authz::Authority::load(
            &config.evaluation.authorization_keys,
            &config.evaluation.authorization_issuers,
        )
        .map_err(|e| StartError::Evaluation(e.to_string()))?;
        let formats = crate::delivery::format::Formats::load(&config.mappings.dir.join("outbound"))
            .map_err(StartError::Sharing)?;
        let destinations = config
            .destinations
            .iter()
            .map(|d| {
                crate::delivery::Destination::new(config, d, &formats, store.keys().cloned())
                    .map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let parts = Self {
            store,
            handle,
            clock,
            manual_clock,
            exceptions,
            live,
            local_token,
            evaluation,
            authority,
            destinations,
            last_answers: crate::delivery::LastAnswers::default(),
        };
        Ok((parts, committer))
    }

    /// The operator server's state.
    /// The state the agency API and the operator server share (`crate::node::Node`).
    fn node(&self, config: &Config) -> Arc<crate::node::Node> {
        Arc::new(crate::node::Node {
            config: config.clone(),
            store: self.store.clone(),
            committer: self.handle.clone(),
            clock: self.clock.clone(),
            exceptions: self.exceptions.clone(),
            live: self.live.clone(),
            evaluation: self.evaluation.clone(),
        })
    }

    fn ops(
        &self,
        node: &Arc<crate::node::Node>,
        rule_files: &Arc<crate::rulebook::in_force::Files>,
        reloader: &Arc<crate::rulebook::reload::Reloader>,
        metrics: &Option<metrics_exporter_prometheus::PrometheusHandle>,
        readiness: &Arc<crate::telemetry::Readiness>,
    ) -> crate::operator::Ops {
        let config = &node.config;
        crate::operator::Ops {
            node: node.clone(),
            rule_files: rule_files.clone(),
            reloader: reloader.clone(),
            last_answers: self.last_answers.clone(),
            destinations: config.destinations.iter().map(|d| d.id.clone()).collect(),
            manual_clock: self.manual_clock.clone(),
            manual_clock_file: config.storage.data_dir.join(MANUAL_CLOCK_FILE),
            admin_tls: config.server.admin_tls,
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            uploads: std::sync::OnceLock::new(),
        }
    }

    /// The agency API's state (the parts are dropped here: the writer stops once the last holder
    /// of the node is gone).
    fn into_app(
        self,
        node: Arc<crate::node::Node>,
        disk: Arc<crate::store::space::DiskGuard>,
    ) -> App {
        let config = &node.config;
        let inflight = (config.server.max_inflight_mb > 0).then(|| {
            Arc::new(tokio::sync::Semaphore::new(
                (config.server.max_inflight_mb * 1024) as usize,
            ))
        });
        App {
            files: Arc::new(tokio::sync::Semaphore::new(config.ingest.files_at_once)),
            authority: self.authority,
            disk,
            inflight,
            node,
        }
    }
}

/// The two listeners, bound before anything is served (a port in use is a start error).
struct Listeners {
    api: tokio::net::TcpListener,
    api_addr: std::net::SocketAddr,
    admin: tokio::net::TcpListener,
    admin_addr: std::net::SocketAddr,
}

impl Listeners {
    async fn bind(config: &Config) -> Result<Self, StartError> {
        let (api, api_addr) = ingest::bind(&config.server.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.server.listen.clone(),
                source,
            })?;
        let admin_error = |source| StartError::Bind {
            addr: config.server.admin_listen.clone(),
            source,
        };
        let admin = tokio::net::TcpListener::bind(&config.server.admin_listen)
            .await
            .map_err(admin_error)?;
        let admin_addr = admin.local_addr().map_err(admin_error)?;
        Ok(Self {
            api,
            api_addr,
            admin,
            admin_addr,
        })
    }
}

/// What every node watches for itself: free disk space, the shared database, stuck commits, rules
/// ending without a successor, certificates about to expire.
fn spawn_watchers(
    config: &Config,
    parts: &Parts,
    disk: &Arc<crate::store::space::DiskGuard>,
    readiness: &Arc<crate::telemetry::Readiness>,
    rule_files: &Arc<crate::rulebook::in_force::Files>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let database = {
        let readiness = readiness.clone();
        tokio::spawn(crate::cluster::watch_database(
            parts.store.clone(),
            move |up| readiness.set_database_unreachable(!up),
            stop.clone(),
        ))
    };
    vec![
        tokio::spawn(watch_disk(disk.clone(), readiness.clone(), stop.clone())),
        database,
        tokio::spawn(watch_commits(
            parts.handle.progress.clone(),
            Duration::from_millis(config.storage.commit_stuck_ms),
            readiness.clone(),
            stop.clone(),
        )),
        tokio::spawn(crate::rulebook::in_force::watch(
            parts.live.clone(),
            rule_files.clone(),
            parts.clock.clone(),
            Duration::from_millis(config.lifecycle.check_interval_ms),
            stop.clone(),
        )),
        tokio::spawn(crate::identity::expiry::watch(
            config.clone(),
            Duration::from_secs(3600),
            stop.clone(),
        )),
    ]
}

/// Work done once per store: with several nodes on one database, by the node holding its lease
/// (`cluster::while_held`). Each runs on blocking threads of its own, never on the runtime's
/// worker threads (which serve TLS, health and metrics).
fn spawn_work_done_once(
    config: &Config,
    parts: &Parts,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let node = crate::cluster::Node {
        store: parts.store.clone(),
        name: config.storage.node_name(),
        ttl: Duration::from_millis(config.storage.lease_ttl_ms),
    };
    let mut workers = Vec::new();
    let mut once = |lease: String, make: crate::cluster::MakeWorker| {
        workers.push(tokio::spawn(crate::cluster::while_held(
            node.clone(),
            lease,
            stop.clone(),
            make,
        )));
    };
    let (store, handle, clock) = (&parts.store, &parts.handle, &parts.clock);
    let (router, calendar) = (&parts.live.router, &parts.live.calendar);
    let exceptions = &parts.exceptions;
    for destination in &parts.destinations {
        let worker = crate::delivery::Worker {
            destination: destination.clone(),
            store: store.clone(),
            committer: handle.clone(),
            sharing: config.sharing.clone(),
            clock: clock.clone(),
            on_delivered: Some(acknowledger(store.clone(), clock.clone())),
            on_picked_up: Some(pick_up_recorder(store.clone(), clock.clone())),
            last_answers: parts.last_answers.clone(),
        };
        let lease = format!("delivery/{}", worker.destination.config.id);
        once(
            lease,
            Box::new(move |stop| Box::pin(worker.clone().run(stop))),
        );
    }
    let tracker = crate::corrections::tracker::Tracker {
        store: store.clone(),
        committer: handle.clone(),
        calendar: calendar.clone(),
        clock: clock.clone(),
        interval: Duration::from_millis(config.corrections.check_interval_ms),
        webhook: config.corrections.alert_webhook.clone(),
    };
    once(
        "corrections-tracker".into(),
        Box::new(move |stop| Box::pin(tracker.clone().run(stop))),
    );
    let timers = crate::ledger::timers::Timers {
        store: store.clone(),
        committer: handle.clone(),
        router: router.clone(),
        exceptions: exceptions.clone(),
        clock: clock.clone(),
        interval: Duration::from_millis(config.lifecycle.check_interval_ms),
    };
    once(
        "ledger-timers".into(),
        Box::new(move |stop| Box::pin(timers.clone().run(stop))),
    );
    let objection_tracker = crate::objections::tracker::Tracker {
        store: store.clone(),
        committer: handle.clone(),
        router: router.clone(),
        rules: parts.live.objections.clone(),
        exceptions: exceptions.clone(),
        destinations: config.destinations.clone(),
        calendar: calendar.clone(),
        clock: clock.clone(),
        interval: Duration::from_millis(config.objections.check_interval_ms),
        webhook: config.objections.alert_webhook.clone(),
    };
    once(
        "objections-tracker".into(),
        Box::new(move |stop| Box::pin(objection_tracker.clone().run(stop))),
    );
    let repair_tracker = crate::repairs::tracker::Tracker {
        store: store.clone(),
        committer: handle.clone(),
        router: router.clone(),
        calendar: calendar.clone(),
        rules: parts.live.repairs.clone(),
        exceptions: exceptions.clone(),
        destinations: config.destinations.clone(),
        clock: clock.clone(),
        interval: Duration::from_millis(config.repairs.check_interval_ms),
        webhook: config.repairs.alert_webhook.clone(),
    };
    once(
        "repairs-tracker".into(),
        Box::new(move |stop| Box::pin(repair_tracker.clone().run(stop))),
    );
    let reencryption = crate::reencrypt::Worker {
        store: store.clone(),
        committer: handle.clone(),
        batch: config.crypto.reencrypt_batch,
        pace: Duration::from_millis(config.crypto.reencrypt_pace_ms),
    };
    once(
        "reencryption".into(),
        Box::new(move |stop| Box::pin(reencryption.clone().run(stop))),
    );
    if let Some(engine) = &parts.evaluation {
        let worker = crate::evaluation::worker::Worker {
            engine: engine.clone(),
            committer: handle.clone(),
            clock: clock.clone(),
            interval: Duration::from_millis(config.evaluation.check_interval_ms),
            cycle_batch: config.evaluation.cycle_batch,
            cycle_pace: Duration::from_millis(config.evaluation.cycle_pace_ms),
        };
        once(
            "evaluation".into(),
            Box::new(move |stop| Box::pin(worker.clone().run(stop))),
        );
    }
    workers
}

/// After every task has stopped: let the writer drain what it holds (every `App` clone is gone
/// once the connections are), then flush what is committed.
async fn drain(committer: crate::store::Committer, store: &Store) {
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
}

/// Raise the soft limit of open files to the hard one: every connection and every handshake is a
/// descriptor, and with the common soft limit of 1,024 a flood of silent sockets fills the table
/// before the handshake bound can evict any (accept fails with EMFILE, and agencies wait in the
/// kernel's queue again). Warns when even the hard limit is below what the bounds allow.
fn raise_open_files(connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if limit.current != limit.maximum {
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
        }
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    // Sled, the log, listeners and delivery connections need some of their own.
    let needed = connections as u64 + 256;
    if soft < needed {
        tracing::warn!(
            open_files = soft,
            needed,
            "the open-files limit is below server.max_connections + server.max_handshakes: raise LimitNOFILE (systemd) or ulimit -n"
        );
    }
}

/// Returns once the store is fenced (a write failed; see `store::sled`): not ready at once, and
/// the caller stops the gateway so that a restart recovers from what is durable. Nothing of a
/// fenced store is acknowledged meanwhile: every write is refused.
async fn watch_fence(store: Store, readiness: Arc<crate::telemetry::Readiness>) -> String {
    loop {
        let probe = store.clone();
        if let Ok(Some(why)) = tokio::task::spawn_blocking(move || probe.fenced()).await {
            readiness.set(false);
            tracing::error!(error = %why, "the data directory is fenced after a failed write: stopping; start again once the cause is fixed");
            return why;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Write a file only its owner may read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

fn server_tls_config(section: &crate::config::TlsConfig) -> Result<tls::ServerTls, tls::TlsError> {
    tls::server_tls(
        &section.client_ca_path(),
        &section.server_cert_path(),
        &section.server_key_path(),
        section.crl.as_deref(),
    )
}

/// What SIGHUP reloads: TLS material and keys, each kept as it was when its files are broken, and
/// the whole rulebook (`rulebook::reload`: every kind of rule data, agencies and operators, put
/// in force together or not at all). Audited.
struct Reload {
    /// The configuration in force; its `[tls]` section is the last one that loaded.
    config: Config,
    /// Where the configuration was read from: SIGHUP reads its `[tls]` section again, so a
    /// revocation list (or other certificate paths) added to the file take effect without a
    /// restart (issue #31: only the paths captured at start used to be reloaded).
    config_file: Option<PathBuf>,
    tls: Arc<tls::Reloadable>,
    committer: crate::exchange::CommitterHandle,
    store: Store,
    clock: SharedClock,
    rules: Arc<crate::rulebook::reload::Reloader>,
}

impl Reload {
    /// Reload the key file (or key command): a data or signing key added by `keys rotate` takes
    /// effect without a restart, so every node of a database can be given the new file and
    /// reloaded in turn. Checked against the keys the store records first (a file lacking a key
    /// stored values need is refused), recorded, then put in force; the lookup key and the suite
    /// never change here. Returns what the audit entry says of it.
    fn reload_keys(&self) -> impl std::future::Future<Output = serde_json::Value> {
        let (store, config, now) = (self.store.clone(), self.config.clone(), self.clock.now());
        let committer = self.committer.clone();
        async move {
            let done = async {
                let keys = store.keys().cloned().ok_or("no keys in use")?;
                let reloaded = tokio::task::spawn_blocking(move || {
                    crate::crypto::Keyring::load(
                        &config.key_source(),
                        config.crypto.suite,
                        false,
                        now,
                    )
                    .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())??;
                crate::reencrypt::record_reloaded_keys(&committer, reloaded.fingerprints()).await?;
                keys.replace_with(&reloaded).map_err(|e| e.to_string())?;
                Ok::<_, String>(keys.active_data_key())
            }
            .await;
            match done {
                Ok(active) => {
                    tracing::info!(active_data_key = %active, "keys reloaded (SIGHUP)");
                    serde_json::json!({"active_data_key": active})
                }
                Err(e) => {
                    tracing::error!(error = %e, "key reload failed; the keys in use stay");
                    serde_json::json!({"error": e})
                }
            }
        }
    }

    /// The `[tls]` section of the configuration file as it is now; the one in force when the file
    /// does not load (logged).
    fn tls_section(&self) -> crate::config::TlsConfig {
        match Config::load(self.config_file.as_deref()) {
            Ok(file) => file.tls,
            Err(errs) => {
                let errors: Vec<String> = errs.iter().map(ToString::to_string).collect();
                tracing::error!(errors = ?errors, "the configuration file does not load; TLS reloads from the [tls] settings in force");
                self.config.tls.clone()
            }
        }
    }

    fn run(&mut self) {
        let section = self.tls_section();
        let result = server_tls_config(&section);
        let ok = result.is_ok();
        match result {
            Ok(new) => {
                self.tls.replace(new);
                tracing::info!(
                    crl = ?section.crl.as_ref().map(|p| p.display().to_string()),
                    "TLS certificates, keys and revocation list reloaded (SIGHUP); open connections whose certificate no longer passes are being closed"
                );
                self.config.tls = section;
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS reload failed; the previous certificates stay in use")
            }
        }
        let committer = self.committer.clone();
        let keys = self.reload_keys();
        let rules = self.rules.clone();
        tokio::spawn(async move {
            let keys = keys.await;
            let mut data = serde_json::Map::new();
            data.insert("ok".into(), serde_json::Value::Bool(ok));
            data.insert("keys".into(), keys);
            if let Err(e) = committer
                .apply(ApplyJob::new(AuditEvent::OperatorTlsReload, data))
                .await
            {
                crate::telemetry::events::audit_write_failed("tls_reload", &e);
            }
            rules
                .reload(crate::rulebook::reload::Trigger::Sighup, "sighup")
                .await;
        });
    }
}

/// SIGTERM and SIGHUP, listened for from before the gateway says it is ready: a signal sent
/// right after the ready line is handled, never the default action (which ends the process).
struct Signals {
    #[cfg(unix)]
    term_hup: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let term_hup = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(term), Ok(hup)) => Some((term, hup)),
                _ => None,
            };
            Signals { term_hup }
        }
        #[cfg(not(unix))]
        Signals {}
    }
}

async fn wait_for_signal(signals: Signals, mut on_hangup: impl FnMut()) {
    #[cfg(unix)]
    {
        let Some((mut term, mut hup)) = signals.term_hup else {
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
        let _ = (signals, &mut on_hangup);
        let _ = tokio::signal::ctrl_c().await;
    }
}
