//! The admin server: plain HTTP, meant for loopback or a management network only.
//! `/healthz` answers while the process runs; `/readyz` once storage, mappings and the API
//! listener are up (and 503 while shutting down); `/metrics` is the Prometheus text format.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub async fn serve(listener: TcpListener, ready: Arc<Readiness>, metrics: Option<PrometheusHandle>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let ready = ready.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let ready = ready.clone();
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(req.uri().path(), &ready, metrics.as_ref())) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn respond(path: &str, ready: &Readiness, metrics: Option<&PrometheusHandle>) -> Response<Full<Bytes>> {
    let (status, body, content_type) = match path {
        "/healthz" => (StatusCode::OK, "ok\n".to_string(), "text/plain"),
        "/readyz" if ready.is_ready() => (StatusCode::OK, "ready\n".to_string(), "text/plain"),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string(), "text/plain"),
        "/metrics" => (
            StatusCode::OK,
            metrics.map(|m| m.render()).unwrap_or_default(),
            "text/plain; version=0.0.4",
        ),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string(), "text/plain"),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}
