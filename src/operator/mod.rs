//! The operator server: the admin listener and everything a person or the host's CLI does on it.
//!
//! Owns: the listener (plain HTTP on loopback or a management network, or HTTPS), the route
//! table that mounts what the domains export (`crate::{outbox, ledger, objections, repairs,
//! evaluation, audit, rulebook, backup}::ops`), sign-in and sessions ([`session`]), the CSRF and
//! same-site checks, the role check of every request (`crate::operators::Need`), the audit entry
//! of every change and every read of full values ([`trail`]), masking for roles that do not see
//! full values ([`masking`]), and the [`console`] pages.
//!
//! Never does: decide a domain rule (which step a case allows, what a deadline is, what a
//! platform holds): it parses a request, asks the domain, and answers through `crate::answer`.
//! It does not observe either: `/healthz`, `/readyz` and `/metrics` are `crate::telemetry`'s,
//! only served here.
//!
//! Invariants: every request except sign-in, the console's own sign-in page and the
//! observation endpoints is authenticated and role-checked before any domain code runs; every
//! refusal has the one body of `crate::answer`; a read of full values is answered only once it is
//! in the audit chain (GD Art. 12).

pub mod console;
mod masking;
mod routes;
mod session;
mod trail;

use std::convert::Infallible;

use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

pub use masking::mask_value;
pub use session::{csrf_ok, same_site, sign_in};
pub use trail::{audit_request, record_request};

use crate::telemetry::Readiness;
use masking::masked;
use routes::{operator, refuse};
use session::sign_in_json;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

use crate::answer::Refusal;
use crate::telemetry::events;

/// What the operator endpoints work on: the node's shared state (`crate::node::Node`, read
/// through `ops.store`, `ops.live`… by `Deref`) and the operator server's own.
pub struct Ops {
    pub node: Arc<crate::node::Node>,
    /// The rule files in force and the reload (issue #26).
    pub rule_files: std::sync::Arc<crate::rulebook::in_force::Files>,
    pub reloader: std::sync::Arc<crate::rulebook::reload::Reloader>,
    /// Each platform's last failed answer (this node's deliveries).
    pub last_answers: crate::delivery::LastAnswers,
    pub destinations: Vec<String>,
    /// Present only with `corrections.dangerous_manual_clock` (tests).
    pub manual_clock: Option<crate::clock::ManualClock>,
    /// Where the manual clock's last setting is kept, so a restarted test gateway resumes at the
    /// time the test set rather than at the system's.
    pub manual_clock_file: std::path::PathBuf,
    /// Whether the admin listener is HTTPS (cookies are then `Secure`).
    pub admin_tls: bool,
    pub metrics: Option<PrometheusHandle>,
    pub readiness: Arc<Readiness>,
    /// The agency API's state, for files handed in at the console (set once it exists; weak, so
    /// the console never keeps the writer alive at shutdown).
    pub uploads: std::sync::OnceLock<std::sync::Weak<crate::ingest::App>>,
}

impl std::ops::Deref for Ops {
    type Target = crate::node::Node;
    fn deref(&self) -> &crate::node::Node {
        &self.node
    }
}
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    ready: Arc<Readiness>,
    metrics: Option<PrometheusHandle>,
    ops: Arc<Ops>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let ready = ready.clone();
        let metrics = metrics.clone();
        let ops = ops.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let ready = ready.clone();
                let metrics = metrics.clone();
                let ops = ops.clone();
                async move {
                    let path = req.uri().path().to_string();
                    if path == "/openapi.json" {
                        let mut r = Response::new(Full::new(Bytes::from_static(
                            crate::ingest::openapi::SPEC.as_bytes(),
                        )));
                        r.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        return Ok::<_, Infallible>(r);
                    }
                    if matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
                        let mut resp = crate::telemetry::endpoint(&path, &ready, metrics.as_ref());
                        // The calendar's coverage is no readiness failure (deadlines past it are
                        // estimated), but the body says which file to add (issue #26).
                        if path == "/readyz" {
                            let today = ops
                                .clock
                                .now()
                                .to_offset(crate::calendar::CHINA_OFFSET)
                                .date();
                            // Rules ending or ended without a successor: no readiness failure
                            // either, but said in the body (issue #26).
                            let warnings = crate::rulebook::in_force::warnings(
                                &ops.live,
                                &ops.rule_files,
                                today,
                            );
                            let note = ops.live.calendar.current().coverage_note(today);
                            if note.is_some() || !warnings.is_empty() {
                                let mut body = if ready.is_ready() {
                                    "ready\n".to_string()
                                } else {
                                    "not ready\n".to_string()
                                };
                                if let Some(note) = note {
                                    body.push_str(&format!("calendar: {note}\n"));
                                }
                                for w in warnings
                                    .iter()
                                    .filter(|w| w.duty != crate::rulebook::in_force::Duty::Calendar)
                                {
                                    body.push_str(&format!("rules: {}\n", w.message));
                                }
                                *resp.body_mut() = Full::new(Bytes::from(body));
                            }
                        }
                        return Ok::<_, Infallible>(resp);
                    }
                    // Everything else reads the store: off the runtime's worker threads.
                    let answer = crate::ingest::off_runtime(gated(ops, req, peer.ip())).await;
                    Ok::<_, Infallible>(answer.unwrap_or_else(|| {
                        refuse(Refusal::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "storage_unavailable",
                            "",
                        ))
                    }))
                }
            });
            match tls {
                Some(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    let accepted = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await;
                    if let Ok(Ok(stream)) = accepted {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    }
                }
                None => {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                }
            }
        });
    }
}

/// The operator endpoints.
/// Every operator request: sign-in, the console, or an authenticated and authorized API call.
async fn gated(
    ops: Arc<Ops>,
    req: Request<hyper::body::Incoming>,
    peer: std::net::IpAddr,
) -> Response<Full<Bytes>> {
    use crate::answer::Refusal;
    use crate::operators::Need;
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if path == "/session" && method == hyper::Method::POST {
        if let Err(why) = same_site(req.headers()) {
            return refuse(Refusal::new(StatusCode::FORBIDDEN, "csrf_refused", why));
        }
        let is_json = req
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return refuse(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_request",
                "send application/json",
            ));
        }
        return sign_in_json(&ops, req, peer).await;
    }
    if path == "/console" || path.starts_with("/console/") {
        return console::serve(ops, req, peer).await;
    }
    let Some(auth) = ops.live.gate.authenticate(req.headers()) else {
        return refuse(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in first (POST /session), or use the CLI on the gateway's host",
        ));
    };
    if path == "/session/logout" {
        if method != hyper::Method::POST {
            return refuse(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "",
            ));
        }
        if let Err(why) = csrf_ok(req.headers(), auth.csrf.as_deref(), None) {
            return refuse(Refusal::new(StatusCode::FORBIDDEN, "csrf_refused", why));
        }
        if let Some(s) = &auth.session {
            ops.live.gate.sign_out(s);
        }
        audit_request(&ops, &auth.principal, &method, &path, 200).await;
        let mut resp = json(StatusCode::OK, serde_json::json!({"signed_out": true}));
        if let Ok(v) = format!("{}=; Path=/; Max-Age=0", crate::operators::SESSION_COOKIE).parse() {
            resp.headers_mut().insert(hyper::header::SET_COOKIE, v);
        }
        return resp;
    }
    let need = if path == "/audit/verify" {
        Need::Audit
    } else if method == hyper::Method::GET {
        Need::Read
    } else {
        Need::Act
    };
    let principal = auth.principal.clone();
    // The test clock (test builds only) is the harness's, on the host: never an operator's
    // session, whatever its role.
    if path == "/dangerous/clock" && !matches!(principal, crate::operators::Principal::Local) {
        audit_request(&ops, &principal, &method, &path, 403).await;
        return refuse(Refusal::new(
            StatusCode::FORBIDDEN,
            "forbidden_role",
            "the test clock is moved by the host's CLI token only",
        ));
    }
    if !principal.may(need) {
        audit_request(&ops, &principal, &method, &path, 403).await;
        return refuse(Refusal::new(
            StatusCode::FORBIDDEN,
            "forbidden_role",
            format!("the {} role may not do this", principal.role()),
        ));
    }
    if method != hyper::Method::GET {
        if let Err(why) = csrf_ok(req.headers(), auth.csrf.as_deref(), None) {
            audit_request(&ops, &principal, &method, &path, 403).await;
            return refuse(Refusal::new(StatusCode::FORBIDDEN, "csrf_refused", why));
        }
    }
    let resp = operator(ops.clone(), req, &principal.name()).await;
    let status = resp.status().as_u16();
    if method != hyper::Method::GET || principal.sees_full_values() {
        if let Err(e) = record_request(&ops, &principal, &method, &path, status).await {
            events::audit_write_failed("operator_request", &e);
            // A read of full values is answered only once it is in the chain (GD Art. 12); a
            // change has already happened and is answered as it went, the failure logged.
            if method == hyper::Method::GET {
                return refuse(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "audit_unavailable",
                    "the read could not be recorded in the audit chain, so it is not answered; retry later",
                ));
            }
        }
    }
    if principal.sees_full_values() {
        resp
    } else {
        masked(resp).await
    }
}

/// A JSON answer with its content type.
pub(crate) fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(&body).unwrap_or_default(),
    )));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}
