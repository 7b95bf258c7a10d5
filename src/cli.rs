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
#[command(name = "credit-gateway", version, about = "Medical-insurance credit information exchange gateway")]
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
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
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
        Command::Check { mapping, agency, file } => check(&config, &mapping, agency, &file),
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
    }
}

fn serve(config: Config) -> ExitCode {
    crate::telemetry::init_logging(&config.log.format, &config.log.filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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

fn check(config: &Config, mapping_id: &str, agency: Option<String>, file: &std::path::Path) -> ExitCode {
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
        exceptions: IdentifierExceptions::new(&config.validation.uscc_exceptions, &config.validation.resident_id_exceptions),
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
    match cmd {
        AuditCommand::Verify => match crate::audit::verify(&store) {
            Ok(head) => {
                println!("audit chain OK: {} entries, head {}", head.seq, head.hash);
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("audit chain BROKEN: {e}");
                ExitCode::from(1)
            }
        },
        AuditCommand::Show { from, limit } => match crate::audit::entries_from(&store, from, limit) {
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
        },
        AuditCommand::Checkpoint => match crate::audit::Head::load(&store) {
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

/// The default configuration as a file with every line commented out.
pub fn example_config() -> String {
    let body = toml::to_string(&Config::default()).unwrap_or_default();
    let mut out = String::from(
        "# credit-gateway configuration. Every setting is shown with its default, commented out.\n\
         # Copy to credit-gateway.toml and uncomment what you change. Unknown keys are refused.\n\
         # Giving any [[agencies]] replaces the whole default list.\n\n",
    );
    for line in body.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
