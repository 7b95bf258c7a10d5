//! The observation endpoints: `/healthz` (the process runs), `/readyz` ([`super::Readiness`])
//! and `/metrics` (the Prometheus text format). Served by the operator listener, answered here.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;

use super::Readiness;

/// The answer to one of the observation paths (anything else is 404).
pub fn endpoint(
    path: &str,
    ready: &Readiness,
    metrics: Option<&PrometheusHandle>,
) -> Response<Full<Bytes>> {
    let (status, body, content_type) = match path {
        "/healthz" => (StatusCode::OK, "ok\n".to_string(), "text/plain"),
        "/readyz" if ready.is_ready() => (StatusCode::OK, "ready\n".to_string(), "text/plain"),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready\n".to_string(),
            "text/plain",
        ),
        "/metrics" => (
            StatusCode::OK,
            metrics.map(|m| m.render()).unwrap_or_default(),
            "text/plain; version=0.0.4",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "not found\n".to_string(),
            "text/plain",
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}
