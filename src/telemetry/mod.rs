//! Logs, metrics and the admin endpoints.
//!
//! Owns: the tracing subscriber (text or JSON), the Prometheus recorder, the named events in
//! [`events`] (each writes its log line and its metric together, so they never drift apart), the
//! [`catalogue`] of every metric's type and `# HELP` line, and the admin HTTP server (`/healthz`,
//! `/readyz`, `/metrics`).
//!
//! Never does: log a personal identifier or a record value. Events take record ids, agency ids,
//! counts and rule names only.

pub mod admin;
pub mod catalogue;
pub mod events;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Install the global tracing subscriber. Logs go to stderr (stdout is for command output).
pub fn init_logging(format: &str, filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if format == "json" {
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
