//! The command line: one subcommand per operational task. Command output goes to stdout (JSON
//! where a program reads it), logs and errors to stderr. Exit codes: 0 success, 1 a finding (a
//! rejected record, a broken audit chain), 2 a usage or input problem.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::config::Config;
use crate::record::ValidationContext;
use crate::subject::IdentifierExceptions;

#[derive(Debug, Parser)]
#[command(
    name = "credit-gateway",
    version,
    about = "Medical-insurance credit information exchange gateway"
)]
pub struct Cli {
    /// Configuration file (default: ./credit-gateway.toml when present, else built-in defaults).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (API and admin listeners) until SIGTERM or ctrl-c.
    Serve,
    /// Development certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Run a mapping and the full validation on a file, offline; prints one JSON object.
    Check {
        /// Mapping id (a file stem in mappings/).
        #[arg(long)]
        mapping: String,
        /// Agency id to use as source.agency when the records do not name one.
        #[arg(long)]
        agency: Option<String>,
        file: PathBuf,
    },
    /// Mapping files.
    #[command(subcommand)]
    Mappings(MappingsCommand),
    /// Configuration.
    #[command(subcommand, name = "config")]
    ConfigCmd(ConfigCommand),
    /// The audit chain (works on the data directory; stop the gateway first).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The outbox of shares per destination platform. Works on the data directory when the
    /// gateway is stopped, and through the admin endpoint when it runs.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// The working-day calendar (State Council holiday schedule, China time).
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// Corrections and their deadlines (GD Art. 31).
    #[command(subcommand)]
    Corrections(CorrectionsCommand),
}

#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// Print the deadline (RFC 3339, +08:00) N working days after a time: counting starts the day
    /// after, the deadline is the end of the Nth working day.
    Deadline {
        #[arg(long)]
        from: String,
        #[arg(long = "working-days", default_value_t = 3)]
        working_days: u32,
    },
    /// Print `working` or `rest` for a date.
    IsWorkingDay { date: String },
}

#[derive(Debug, Subcommand)]
pub enum CorrectionsCommand {
    /// Corrections with their deadlines and states.
    List {
        /// pending, overdue, delivered_on_time or delivered_late
        #[arg(long)]
        state: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Entries waiting (or, with --dead, dead letters), oldest first.
    List {
        #[arg(long)]
        destination: Option<String>,
        #[arg(long)]
        dead: bool,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One entry or dead letter, by key (as `list` prints it) or idempotency key.
    Show { key: String },
    /// Put dead letters back into the queue (same idempotency keys).
    Replay {
        #[arg(long)]
        destination: Option<String>,
    },
    /// Depth, corrections waiting, oldest entry and dead letters per destination.
    Stats,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Revoke development client certificates: writes `<certs_dir>/crl.pem` (set `tls.crl` to it
    /// and send SIGHUP to a running gateway).
    Revoke {
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Subject names (agency ids) whose certificates are revoked.
        #[arg(long = "client", required = true)]
        clients: Vec<String>,
    },
    /// Create a development CA, server certificate and one client certificate per configured
    /// agency where absent (existing files are kept).
    Init {
        /// Folder (default: tls.certs_dir of the configuration, `certs`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Extra client certificate subject names to issue (e.g. for a test agency).
        #[arg(long = "client")]
        clients: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MappingsCommand {
    /// Load every mapping file and report every problem; exit 1 when any.
    Check,
    /// List the mappings.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a configuration file with every default, commented out.
    Example,
    /// Validate the configuration and print it as the gateway sees it.
    Show,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the whole chain; exit 1 naming the first entry that does not match.
    Verify,
    /// Print entries as JSON lines.
    Show {
        #[arg(long, default_value_t = 1)]
        from: u64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Print the head sequence number and hash, for anchoring outside the gateway.
    Checkpoint,
}

pub fn run(cli: Cli) -> ExitCode {
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(errs) => {
            for e in errs {
                eprintln!("configuration: {e}");
            }
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve => serve(config),
        Command::Certs(CertsCommand::Init { dir, clients }) => certs_init(config, dir, clients),
        Command::Certs(CertsCommand::Revoke { dir, clients }) => {
            let dir = dir.unwrap_or_else(|| config.tls.certs_dir.clone());
            match crate::identity::certs::revoke(&dir, &clients, time::OffsetDateTime::now_utc()) {
                Ok(path) => {
                    crate::telemetry::events::operator_action("certs_revoke", &clients.join(","));
                    println!("wrote {}", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("certs revoke: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Check {
            mapping,
            agency,
            file,
        } => check(&config, &mapping, agency, &file),
        Command::Mappings(MappingsCommand::Check) => match crate::app::load_mappings(&config) {
            Ok(set) => {
                println!("{} mappings OK", set.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Command::Mappings(MappingsCommand::List) => match crate::app::load_mappings(&config) {
            Ok(set) => {
                for m in set.iter() {
                    let cat = m.category.map(|c| c.code()).unwrap_or("(per record)");
                    println!("{}\t{:?}\t{}\t{}", m.id, m.format, cat, m.name);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::ConfigCmd(ConfigCommand::Example) => {
            print!("{}", example_config());
            ExitCode::SUCCESS
        }
        Command::ConfigCmd(ConfigCommand::Show) => {
            print!("{}", toml::to_string(&config).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Command::Audit(cmd) => audit(&config, cmd),
        Command::Outbox(cmd) => outbox(&config, cmd),
        Command::Calendar(cmd) => calendar(&config, cmd),
        Command::Corrections(CorrectionsCommand::List { state }) => {
            corrections_list(&config, state)
        }
    }
}

fn calendar(config: &Config, cmd: CalendarCommand) -> ExitCode {
    let cal = match crate::app::load_calendar(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match cmd {
        CalendarCommand::Deadline { from, working_days } => {
            let Ok(from) =
                time::OffsetDateTime::parse(&from, &time::format_description::well_known::Rfc3339)
            else {
                eprintln!("--from must be an RFC 3339 time, e.g. 2025-09-30T10:00:00+08:00");
                return ExitCode::from(2);
            };
            match cal.deadline(from, working_days) {
                Ok(d) => {
                    println!("{}", crate::clock::rfc3339(d));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        CalendarCommand::IsWorkingDay { date } => {
            let Some(date) = crate::record::parse_date(&date) else {
                eprintln!("give a date as YYYY-MM-DD");
                return ExitCode::from(2);
            };
            match cal.is_working_day(date) {
                Ok(true) => {
                    println!("working");
                    ExitCode::SUCCESS
                }
                Ok(false) => {
                    println!("rest");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn corrections_list(config: &Config, state: Option<String>) -> ExitCode {
    let parsed = match state.as_deref().map(crate::corrections::State::parse) {
        Some(None) => {
            eprintln!("--state: use pending, overdue, delivered_on_time or delivered_late");
            return ExitCode::from(2);
        }
        Some(Some(s)) => Some(s),
        None => None,
    };
    let result = match crate::app::open_store(config) {
        Ok(store) => {
            let listed = crate::corrections::list(&store, time::OffsetDateTime::now_utc(), parsed)
                .map(|l| serde_json::json!({"corrections": l}))
                .map_err(|e| e.to_string());
            record_offline(&store, "corrections list");
            listed
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
                            "/corrections{}",
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
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("corrections: {e}");
            ExitCode::from(2)
        }
    }
}

async fn admin_get(config: &Config, path: &str) -> Result<serde_json::Value, String> {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let uri = format!("http://{}{path}", running_admin_addr(config))
        .parse::<hyper::Uri>()
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(30), client.get(uri))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

fn outbox(config: &Config, cmd: OutboxCommand) -> ExitCode {
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
    let result = match crate::app::open_store(config) {
        Ok(store) => runtime.block_on(outbox_local(config, store, cmd)),
        Err(local) => runtime
            .block_on(outbox_remote(config, cmd))
            .map_err(|remote| format!("{local}; and through the admin endpoint: {remote}")),
    };
    match result {
        Ok(Some(v)) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
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
    let (committer, handle) = crate::store::Committer::start(store.clone()).map_err(e)?;
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
        OutboxCommand::Replay { destination } => {
            ops::replay(&store, &handle, destination.as_deref())
                .await
                .map(Some)
        }
    };
    drop(handle);
    committer.join();
    out.map_err(e)
}

/// The running gateway's admin address: from the file it writes at start, else the configured one.
fn running_admin_addr(config: &Config) -> String {
    std::fs::read_to_string(config.storage.data_dir.join(crate::app::ADMIN_ADDR_FILE))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| config.server.admin_listen.clone())
}

/// Ask the running gateway's admin endpoint.
async fn outbox_remote(
    config: &Config,
    cmd: OutboxCommand,
) -> Result<Option<serde_json::Value>, String> {
    use http_body_util::BodyExt;
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
                "/outbox/list?limit={limit}{}{}",
                if *dead { "&dead=1" } else { "" },
                destination
                    .as_ref()
                    .map(|d| format!("&destination={}", enc(d)))
                    .unwrap_or_default()
            ),
        ),
        OutboxCommand::Show { key } => ("GET", format!("/outbox/show?key={}", enc(key))),
        OutboxCommand::Stats => ("GET", "/outbox/stats".to_string()),
        OutboxCommand::Replay { destination } => (
            "POST",
            format!(
                "/outbox/replay{}",
                destination
                    .as_ref()
                    .map(|d| format!("?destination={}", enc(d)))
                    .unwrap_or_default()
            ),
        ),
    };
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", running_admin_addr(config)))
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
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    if status == hyper::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(value.to_string());
    }
    Ok(Some(value))
}

fn serve(config: Config) -> ExitCode {
    crate::telemetry::init_logging(&config.log.format, &config.log.filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(crate::app::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("credit-gateway cannot start: {e}");
            ExitCode::from(2)
        }
    }
}

fn certs_init(mut config: Config, dir: Option<PathBuf>, clients: Vec<String>) -> ExitCode {
    if let Some(dir) = dir {
        config.tls.certs_dir = dir;
    }
    let mut agencies: Vec<String> = config.agencies.iter().map(|a| a.id.clone()).collect();
    agencies.push(crate::config::GATEWAY_CLIENT_CN.to_string());
    agencies.extend(clients);
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    match crate::identity::certs::init(&config.tls.certs_dir, &agencies, &names) {
        Ok(report) => {
            for p in &report.created {
                println!("created {}", p.display());
            }
            for p in &report.kept {
                println!("kept    {}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("certs init: {e}");
            ExitCode::from(2)
        }
    }
}

fn check(
    config: &Config,
    mapping_id: &str,
    agency: Option<String>,
    file: &std::path::Path,
) -> ExitCode {
    let mappings = match crate::app::load_mappings(config) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(mapping) = mappings.get(mapping_id) else {
        eprintln!("no mapping {mapping_id:?} (see `credit-gateway mappings list`)");
        return ExitCode::from(2);
    };
    let body = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let ctx = ValidationContext {
        exceptions: IdentifierExceptions::new(
            &config.validation.uscc_exceptions,
            &config.validation.resident_id_exceptions,
        ),
        authenticated_agency: agency.or_else(|| mapping.agency.clone()),
    };
    let normalized = match mapping.normalize(&body, &ctx) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let mut records = Vec::new();
    let mut rejected = Vec::new();
    for n in normalized {
        match n.outcome {
            Ok(r) => records.push(r.to_json()),
            Err(r) => rejected.push(serde_json::to_value(r).unwrap_or_default()),
        }
    }
    let any_rejected = !rejected.is_empty();
    let out = json!({"accepted": records.len(), "rejected": rejected, "records": records});
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    if any_rejected {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn audit(config: &Config, cmd: AuditCommand) -> ExitCode {
    let store = match crate::app::open_store(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e} (is the gateway running? the data directory is locked while it runs)");
            return ExitCode::from(2);
        }
    };
    let code = audit_command(&store, &cmd);
    // The command itself is an operator action: recorded after it ran, so `verify` and
    // `checkpoint` report the chain as it was when asked.
    record_offline(
        &store,
        &format!(
            "audit {}",
            match cmd {
                AuditCommand::Verify => "verify",
                AuditCommand::Show { .. } => "show",
                AuditCommand::Checkpoint => "checkpoint",
            }
        ),
    );
    code
}

/// Append an operator command to the audit chain when the gateway is stopped.
fn record_offline(store: &crate::store::Store, command: &str) {
    crate::telemetry::events::operator_action(command, "");
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let Ok((committer, handle)) = crate::store::Committer::start(store.clone()) else {
        return;
    };
    let _ = rt.block_on(crate::outbox::ops::audit_command(
        &handle,
        command,
        serde_json::json!({}),
    ));
    drop(handle);
    committer.join();
}

fn audit_command(store: &crate::store::Store, cmd: &AuditCommand) -> ExitCode {
    match *cmd {
        AuditCommand::Verify => match crate::audit::verify(store) {
            Ok(head) => {
                println!("audit chain OK: {} entries, head {}", head.seq, head.hash);
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("audit chain BROKEN: {e}");
                ExitCode::from(1)
            }
        },
        AuditCommand::Show { from, limit } => {
            match crate::audit::entries_from(store, from, limit) {
                Ok(entries) => {
                    for e in entries {
                        println!("{}", serde_json::to_string(&e).unwrap_or_default());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        AuditCommand::Checkpoint => match crate::audit::Head::load(store) {
            Ok(head) => {
                println!("{}", json!({"seq": head.seq, "hash": head.hash}));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
    }
}

/// One line of documentation per setting, shown above it in the example file.
const SETTING_DOCS: &[(&str, &str)] = &[
    ("server", "The agency API (HTTPS, client certificate required) and the admin endpoints."),
    ("server.listen", "Agency API address."),
    ("server.admin_listen", "Plain-HTTP /healthz, /readyz, /metrics and operator endpoints: keep it on loopback."),
    ("server.max_body_bytes", "Larger request bodies get 413 without being read whole."),
    ("server.max_connections", "Open connections beyond this wait in the kernel's accept queue."),
    ("server.header_read_timeout_ms", "A client that has not sent its request headers by then is disconnected."),
    ("server.body_read_timeout_ms", "A request body not received by then gets 408."),
    ("server.tls_handshake_timeout_ms", "A TLS handshake not finished by then is dropped."),
    ("server.shutdown_grace_ms", "On SIGTERM/ctrl-c, in-flight requests get this long to finish."),
    ("storage", "sled, the embedded store."),
    ("storage.data_dir", "The database folder."),
    ("storage.durability", "process_crash (sled flush, survives kill -9) or power_loss (also fsync every group commit)."),
    ("storage.cache_mb", "sled's page cache, most of the gateway's memory."),
    ("tls", "Certificates. crl = \"certs/crl.pem\" adds a revocation list; SIGHUP reloads them all."),
    ("tls.certs_dir", "Development certificates are created here when absent, and read from here."),
    ("tls.generate_dev_certs", "Create a development CA and certificates when absent; false in production."),
    ("validation", "Identifiers."),
    ("validation.uscc_exceptions", "Real unified social credit codes that fail the GB 32100 check but must be accepted."),
    ("validation.resident_id_exceptions", "Real resident ID numbers that fail the GB 11643 check but must be accepted."),
    ("mappings", "Mapping files (mappings/README.md); the built-in copies are used when the folder is absent."),
    ("mappings.dir", "Also holds rules/ (sharing, disclosure), outbound/ (formats) and calendar/."),
    ("log", "Logs go to stderr."),
    ("log.format", "text or json."),
    ("log.filter", "A tracing filter such as info or credit_gateway=debug; RUST_LOG overrides it."),
    ("sharing", "Delivery to the platforms; rules = and disclosure = override mappings/rules/*.toml."),
    ("sharing.retry_base_ms", "First retry delay; doubles with jitter on every failure."),
    ("sharing.retry_max_ms", "Longest retry delay."),
    ("sharing.request_timeout_ms", "A delivery not answered by then is retried."),
    ("sharing.poll_interval_ms", "How often an idle worker looks for shares (new shares also wake it)."),
    ("corrections", "GD Art. 31; calendar_dir = and alert_webhook = (plain HTTP) are optional."),
    ("corrections.working_days", "Corrections must reach the platforms within this many working days."),
    ("corrections.medical_insurance_agencies", "Whose information travels along the chain; others' corrections go to the medical-insurance platform."),
    ("corrections.check_interval_ms", "How often deadlines are checked (metrics, warnings)."),
    ("corrections.dangerous_manual_clock", "TESTS ONLY: time is set through POST /dangerous/clock on the admin port."),
    ("agencies", "Who may connect. Giving any [[agencies]] replaces the whole default list."),
    ("agencies.id", "Becomes source.agency of every record the agency sends."),
    ("agencies.cert_subject_cn", "Identify by client certificate subject CN (or cert_sha256 = \"<hex fingerprint>\")."),
    ("agencies.mappings", "Mapping ids the agency may push."),
    ("agencies.read_archive", "May read subject archives (GET /v1/subjects/...)."),
    ("agencies.requests_per_second", "Rate limit; over it, 429 with Retry-After."),
    ("destinations", "Platforms shares go to. Giving any [[destinations]] replaces the defaults."),
    ("destinations.role", "credit_platform (by region and rules) or medical_insurance_platform (corrections of outside information)."),
    ("destinations.url", "HTTPS endpoint; ca =, client_cert =, client_key = default to the development certificates."),
    ("destinations.region", "A province code receives the whole province, a city code its city."),
    ("destinations.batch_size", "Shares per delivery request."),
    ("destinations.format", "An outbound format in mappings/outbound/ instead of canonical JSON (e.g. shuanggongshi-xml)."),
];

/// The default configuration as a file with every line commented out, each setting documented.
pub fn example_config() -> String {
    let body = toml::to_string(&Config::default()).unwrap_or_default();
    let mut out = String::from(
        "# credit-gateway configuration. Every setting is shown with its default, commented out.\n\
         # Copy to credit-gateway.toml and uncomment what you change. Unknown keys are refused.\n\
         # Printed by `credit-gateway config example`.\n\n",
    );
    let mut section = String::new();
    let mut documented_sections = std::collections::HashSet::new();
    for line in body.lines() {
        if line.is_empty() {
            out.push('\n');
            continue;
        }
        let header = line.trim_matches(|c| c == '[' || c == ']');
        if line.starts_with('[') {
            section = header.to_string();
            if documented_sections.insert(section.clone()) {
                if let Some((_, doc)) = SETTING_DOCS.iter().find(|(k, _)| *k == section) {
                    out.push_str(&format!("## {doc}\n"));
                }
            }
        } else if let Some((key, _)) = line.split_once(" = ") {
            let path = format!("{section}.{}", key.trim());
            if let Some((_, doc)) = SETTING_DOCS.iter().find(|(k, _)| *k == path) {
                // Repeated tables ([[agencies]]) are documented at their first entry only.
                if documented_sections.insert(path) {
                    out.push_str(&format!("#   {doc}\n"));
                }
            }
        }
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out
}
