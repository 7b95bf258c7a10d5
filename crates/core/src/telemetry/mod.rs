//! Observation: logs, metrics and readiness. Nothing else.
//!
//! Owns: the tracing subscriber (text or JSON, to stderr or to a file rotated by size, `[log]`),
//! the Prometheus recorder, the named events in [`events`] (each writes its log line and its metric
//! together, so they never drift apart), the [`catalogue`] of every metric's type and `# HELP`
//! line, the [`Readiness`] state and the answers of `/healthz`, `/readyz` and `/metrics`
//! ([`endpoint`]; the operator server, `crate::operator`, serves them on its listener).
//!
//! Never does: import a domain (events take plain values: ids, counts, codes, never a domain
//! type), act on what it observes, or log a personal identifier or a record value. Events take
//! record ids, agency ids, counts and rule names only.

pub mod catalogue;
mod endpoints;
pub mod events;
mod readiness;

pub use endpoints::endpoint;
pub use readiness::Readiness;

use std::path::Path;
use std::sync::Mutex;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rolling_file::{BasicRollingFileAppender, RollingConditionBasic};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `log.max_file_mb`: the size at which the log file (`log.file`) is rotated.
pub const DEFAULT_LOG_MAX_FILE_MB: u64 = 100;
/// `log.max_files`: rotated log files kept beside the current one.
pub const DEFAULT_LOG_MAX_FILES: usize = 10;

/// `[log]`: how and where the gateway logs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `credit_gateway=debug`. `RUST_LOG` overrides it.
    pub filter: String,
    /// Write the log to this file instead of stderr (hosts without journald), rotated by size:
    /// `gateway.log` becomes `gateway.log.1`, the older ones move up, the oldest beyond
    /// `max_files` is deleted. Its folder must exist and be writable. Read at start only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The size (MiB) past which the file is rotated, before the next line (lines are never
    /// split).
    pub max_file_mb: u64,
    /// Rotated files kept beside the current one.
    pub max_files: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            filter: "info".into(),
            file: None,
            max_file_mb: DEFAULT_LOG_MAX_FILE_MB,
            max_files: DEFAULT_LOG_MAX_FILES,
        }
    }
}

/// Install the global tracing subscriber. Logs go to stderr (stdout is for command output; under
/// systemd stderr is the journal), or with `log.file` to that file, rotated by size. Colours only
/// on a terminal: the journal and files get plain text. An error names the file that cannot be
/// opened.
pub fn init_logging(log: &LogConfig) -> Result<(), String> {
    match &log.file {
        None => {
            use std::io::IsTerminal;
            let ansi = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            install(log, std::io::stderr, ansi);
        }
        Some(path) => {
            let file = rotating_file(
                path,
                log.max_file_mb.saturating_mul(1024 * 1024),
                log.max_files,
            )
            .map_err(|e| format!("log.file {}: {e}", path.display()))?;
            install(log, Mutex::new(file), false);
        }
    }
    Ok(())
}

/// The log file, rotated once it has passed `max_bytes` (before the next line is written, so no
/// line is ever split): `name` becomes `name.1`, `name.1` becomes `name.2`, ..., and what would
/// become `name.{max_files + 1}` is deleted. Written through unbuffered: a line is in the file
/// when the event returns, and nothing is lost at a crash. A rotation that fails (the folder
/// became read-only) is reported on stderr and writing goes on in the current file.
pub fn rotating_file(
    path: &Path,
    max_bytes: u64,
    max_files: usize,
) -> std::io::Result<BasicRollingFileAppender> {
    BasicRollingFileAppender::new_with_buffer_capacity(
        path,
        RollingConditionBasic::new().max_size(max_bytes.max(1)),
        max_files.max(1),
        0,
    )
}

fn install<W>(log: &LogConfig, writer: W, ansi: bool)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false);
    let _ = if log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Install the Prometheus recorder and describe every metric ([`catalogue`]: the `# HELP` and
/// `# TYPE` lines); the handle renders `/metrics`.
pub fn init_metrics() -> Option<PrometheusHandle> {
    let handle = prometheus_builder()?.install_recorder().ok()?;
    catalogue::describe_all();
    Some(handle)
}

/// The exporter as `/metrics` renders it: histograms with these buckets (seconds).
fn prometheus_builder() -> Option<PrometheusBuilder> {
    PrometheusBuilder::new()
        .set_buckets(&[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `log.file`: JSON lines written through the subscriber past the size limit are rotated
    /// into `gateway.log.1`, `.2`, ..., never more than `max_files` of them, no line split, the
    /// newest in `gateway.log`; a writer opened again on the same file goes on appending.
    #[test]
    fn the_log_file_is_rotated_by_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.log");
        let limit = 4_000u64;
        let write_events = |from: usize, to: usize| {
            let file = rotating_file(&path, limit, 3).unwrap();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                for i in from..to {
                    tracing::info!(event = i, padding = %"x".repeat(100), "a line of the log");
                }
            });
        };
        write_events(0, 150);
        write_events(150, 200);

        let name = |n: usize| match n {
            0 => path.clone(),
            n => dir.path().join(format!("gateway.log.{n}")),
        };
        assert!(
            !name(4).exists(),
            "at most max_files rotated files are kept"
        );
        let mut seen = Vec::new();
        for n in (0..=3).rev() {
            let text = std::fs::read_to_string(name(n)).unwrap_or_else(|e| panic!("{n}: {e}"));
            let size = text.len() as u64;
            let lines: Vec<&str> = text.lines().collect();
            let last = lines.last().map(|l| l.len() as u64 + 1).unwrap_or(0);
            if n > 0 {
                // Rotated once past the limit, before the next line.
                assert!(
                    size >= limit && size - last < limit,
                    "file {n}: {size} bytes"
                );
            }
            for line in lines {
                let event: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("file {n}: a split or broken line {line:?}: {e}"));
                seen.push(event["fields"]["event"].as_u64().unwrap());
            }
        }
        // Oldest to newest across the files, the newest last, nothing missing in between.
        assert_eq!(seen.last(), Some(&199));
        assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
        assert!(seen[0] > 0, "the oldest lines went with the deleted files");
    }

    #[test]
    fn a_log_file_that_cannot_be_opened_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogConfig {
            file: Some(dir.path().join("missing").join("gateway.log")),
            ..LogConfig::default()
        };
        let err = init_logging(&log).unwrap_err();
        assert!(err.contains("log.file") && err.contains("missing"), "{err}");
    }
}
