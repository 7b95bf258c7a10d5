//! One function per thing that happens: the log line and the metric together.

use std::time::Duration;

pub fn batch_received(agency: &str, mapping: &str, receipt_id: &str, accepted: usize, rejected: usize, new: usize, elapsed: Duration) {
    tracing::info!(agency, mapping, receipt_id, accepted, rejected, new, elapsed_ms = elapsed.as_millis() as u64, "batch received");
    metrics::counter!("gateway_batches_total", "agency" => agency.to_string(), "mapping" => mapping.to_string()).increment(1);
    metrics::counter!("gateway_records_accepted_total", "agency" => agency.to_string(), "mapping" => mapping.to_string()).increment(accepted as u64);
    metrics::counter!("gateway_records_rejected_total", "agency" => agency.to_string(), "mapping" => mapping.to_string()).increment(rejected as u64);
    metrics::histogram!("gateway_batch_seconds").record(elapsed.as_secs_f64());
}

/// A rejected record: its index and source id and the field, never the value.
pub fn record_rejected(agency: &str, mapping: &str, index: usize, record_id: Option<&str>, field: &str) {
    tracing::debug!(agency, mapping, index, record_id, field, "record rejected");
}

pub fn request_refused(agency: &str, code: &'static str, status: u16) {
    tracing::info!(agency, code, status, "request refused");
    metrics::counter!("gateway_requests_refused_total", "code" => code).increment(1);
}

pub fn handshake_failed(peer: std::net::SocketAddr, error: &str) {
    tracing::info!(%peer, error, "TLS handshake failed");
    metrics::counter!("gateway_tls_handshake_failures_total").increment(1);
}

pub fn connection_opened() {
    metrics::gauge!("gateway_open_connections").increment(1.0);
}

pub fn connection_closed() {
    metrics::gauge!("gateway_open_connections").decrement(1.0);
}

pub fn archive_read(agency: &str, found: bool) {
    tracing::info!(agency, found, "subject archive read");
    metrics::counter!("gateway_archive_reads_total", "agency" => agency.to_string()).increment(1);
}
