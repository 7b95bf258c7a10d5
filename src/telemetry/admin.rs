//! The admin server: plain HTTP, meant for loopback or a management network only.
//! `/healthz` answers while the process runs; `/readyz` once storage, mappings and the API
//! listener are up (and 503 while shutting down); `/metrics` is the Prometheus text format.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::answer::Refusal;
use crate::audit::AuditEvent;
use crate::exchange::ApplyJob;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use super::events;

#[derive(Debug, Default)]
pub struct Readiness {
    up: AtomicBool,
    /// Free disk space below the reserve (`storage.min_free_mb`).
    disk_low: AtomicBool,
    /// A commit or flush has run longer than `storage.commit_stuck_ms`.
    stuck: AtomicBool,
    /// The shared database (PostgreSQL) does not answer.
    database_unreachable: AtomicBool,
}

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.up.store(ready, Ordering::SeqCst);
    }
    pub fn set_disk_low(&self, low: bool) {
        self.disk_low.store(low, Ordering::SeqCst);
    }
    pub fn set_stuck(&self, stuck: bool) {
        self.stuck.store(stuck, Ordering::SeqCst);
    }
    pub fn set_database_unreachable(&self, unreachable: bool) {
        self.database_unreachable
            .store(unreachable, Ordering::SeqCst);
    }
    /// Why the gateway is not ready, in plain words; `None` when it is.
    pub fn why_not(&self) -> Option<&'static str> {
        if !self.up.load(Ordering::SeqCst) {
            Some("starting or stopping")
        } else if self.disk_low.load(Ordering::SeqCst) {
            Some("free disk space is below the reserve (storage.min_free_mb): free space")
        } else if self.stuck.load(Ordering::SeqCst) {
            Some("a commit has run longer than storage.commit_stuck_ms: check the disk")
        } else if self.database_unreachable.load(Ordering::SeqCst) {
            Some("the PostgreSQL database does not answer")
        } else {
            None
        }
    }

    pub fn is_ready(&self) -> bool {
        self.up.load(Ordering::SeqCst)
            && !self.disk_low.load(Ordering::SeqCst)
            && !self.stuck.load(Ordering::SeqCst)
            && !self.database_unreachable.load(Ordering::SeqCst)
    }
}

/// What the operator endpoints work on.
pub struct Ops {
    /// The rule data in force, its files, and the reload (issue #26).
    pub live: crate::rulebook::Live,
    pub rule_files: std::sync::Arc<crate::rulebook::in_force::Files>,
    pub reloader: std::sync::Arc<crate::rulebook::reload::Reloader>,
    /// Each platform's last failed answer (this node's deliveries).
    pub last_answers: crate::delivery::LastAnswers,
    pub store: crate::store::Store,
    pub committer: crate::exchange::CommitterHandle,
    pub destinations: Vec<String>,
    /// Present only with `corrections.dangerous_manual_clock` (tests).
    pub manual_clock: Option<crate::clock::ManualClock>,
    pub clock: crate::clock::SharedClock,
    pub router: crate::sharing::SharedRouter,
    pub exceptions: crate::subject::IdentifierExceptions,
    pub calendar: crate::calendar::SharedCalendar,
    pub objection_rules: crate::swap::Swap<crate::objections::rules::ObjectionRules>,
    pub evaluation: Option<crate::evaluation::engine::Engine>,
    /// Where the manual clock's last setting is kept, so a restarted test gateway resumes at the
    /// time the test set rather than at the system's.
    pub manual_clock_file: std::path::PathBuf,
    /// Operators, sessions and the CLI's token.
    pub gate: Arc<crate::operators::Gate>,
    /// Whether the admin listener is HTTPS (cookies are then `Secure`).
    pub admin_tls: bool,
    pub config: crate::config::Config,
    pub metrics: Option<PrometheusHandle>,
    pub readiness: Arc<Readiness>,
    /// The agency API's state, for files handed in at the console (set once it exists; weak, so
    /// the console never keeps the writer alive at shutdown).
    pub uploads: std::sync::OnceLock<std::sync::Weak<crate::ingest::App>>,
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
                        let mut resp = respond(&path, &ready, metrics.as_ref());
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
                            let note = ops.calendar.current().coverage_note(today);
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
        return crate::console::serve(ops, req, peer).await;
    }
    let Some(auth) = ops.gate.authenticate(req.headers()) else {
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
            ops.gate.sign_out(s);
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

/// A state-changing request made with a session cookie must carry the session's CSRF token (the
/// `x-csrf-token` header, or the form's `csrf` field) and must not come from another site.
pub fn csrf_ok(
    headers: &hyper::HeaderMap,
    expected: Option<&str>,
    form_field: Option<&str>,
) -> Result<(), &'static str> {
    let Some(expected) = expected else {
        // The CLI's bearer token: no cookie, so no cross-site request can carry it.
        return Ok(());
    };
    same_site(headers)?;
    let given = headers
        .get(crate::operators::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .or(form_field);
    match given {
        Some(t) if crate::operators::same(t, expected) => Ok(()),
        _ => Err("the request lacks the session's CSRF token"),
    }
}

/// A browser's request from another site (`Sec-Fetch-Site`, `Origin`) is refused: also for
/// sign-in, so no page elsewhere can sign a desk in as someone else or lock an operator out.
pub fn same_site(headers: &hyper::HeaderMap) -> Result<(), &'static str> {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return Err("a request from another site");
    }
    if let (Some(origin), Some(host)) = (
        headers
            .get(hyper::header::ORIGIN)
            .and_then(|v| v.to_str().ok()),
        headers
            .get(hyper::header::HOST)
            .and_then(|v| v.to_str().ok()),
    ) {
        let origin_host = origin.split("://").nth(1).unwrap_or(origin);
        if origin_host != host {
            return Err("a request from another origin");
        }
    }
    Ok(())
}

/// Record who did what in the audit chain (the path only: query values may be identifiers),
/// for a caller whose answer is already decided (a refusal, a change made): a failure is logged
/// at error level and counted (`gateway_audit_write_failures_total`), never dropped. A caller
/// that can still refuse to answer uses [`record_request`].
pub async fn audit_request(
    ops: &Ops,
    principal: &crate::operators::Principal,
    method: &hyper::Method,
    path: &str,
    status: u16,
) {
    if let Err(e) = record_request(ops, principal, method, path, status).await {
        events::audit_write_failed("operator_request", &e);
    }
}

/// [`audit_request`], returning the failure to the caller.
pub async fn record_request(
    ops: &Ops,
    principal: &crate::operators::Principal,
    method: &hyper::Method,
    path: &str,
    status: u16,
) -> Result<(), crate::store::StoreError> {
    let mut data = serde_json::Map::new();
    data.insert("operator".into(), serde_json::json!(principal.name()));
    data.insert("role".into(), serde_json::json!(principal.role()));
    data.insert("method".into(), serde_json::json!(method.as_str()));
    data.insert("path".into(), serde_json::json!(path));
    data.insert("status".into(), serde_json::json!(status));
    ops.committer
        .apply(ApplyJob::new(AuditEvent::OperatorRequest, data))
        .await
        .map(|_| ())
        .map_err(Into::into)
}

/// Resident ID and phone numbers masked in every string of a JSON answer (viewers, operators).
async fn masked(resp: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let (parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(never) => match never {},
    };
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, Full::new(bytes));
    };
    mask_value(&mut value);
    Response::from_parts(
        parts,
        Full::new(Bytes::from(serde_json::to_vec(&value).unwrap_or_default())),
    )
}

pub fn mask_value(v: &mut serde_json::Value) {
    use crate::disclosure::mask_for_operators;
    match v {
        serde_json::Value::String(s) => {
            let m = mask_for_operators(s);
            if m != *s {
                *s = m;
            }
        }
        // A phone number sent as a JSON number is still a phone number.
        serde_json::Value::Number(n) => {
            let text = n.to_string();
            let m = mask_for_operators(&text);
            if m != text {
                *v = serde_json::Value::String(m);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(mask_value),
        serde_json::Value::Object(o) => {
            let entries = std::mem::take(o);
            for (key, mut value) in entries {
                mask_value(&mut value);
                o.insert(mask_for_operators(&key), value);
            }
        }
        _ => {}
    }
}

/// `POST /session` with `{"name", "password"}`: a session cookie and the CSRF token.
async fn sign_in_json(
    ops: &Ops,
    req: Request<hyper::body::Incoming>,
    peer: std::net::IpAddr,
) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    #[derive(serde::Deserialize)]
    struct Body {
        name: String,
        password: String,
    }
    let read = http_body_util::Limited::new(req.into_body(), 4096).collect();
    let body = match tokio::time::timeout(std::time::Duration::from_secs(10), read).await {
        Ok(Ok(b)) => b.to_bytes(),
        _ => {
            return refuse(Refusal::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body could not be read",
            ))
        }
    };
    let Ok(body) = serde_json::from_slice::<Body>(&body) else {
        return refuse(Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "send {\"name\", \"password\"}",
        ));
    };
    match sign_in(ops, &body.name, &body.password, peer).await {
        Ok((cookie, csrf, role)) => {
            let mut resp = json(
                StatusCode::OK,
                serde_json::json!({"operator": body.name, "role": role, "csrf": csrf}),
            );
            if let Ok(v) = cookie.parse() {
                resp.headers_mut().insert(hyper::header::SET_COOKIE, v);
            }
            resp
        }
        Err(crate::operators::SignInError::Locked) => refuse(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "sign_in_locked",
            "too many failed sign-ins: try again later",
        )),
        Err(crate::operators::SignInError::Wrong) => refuse(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "sign_in_failed",
            "wrong name or password",
        )),
    }
}

/// Check a password off the async threads and audit the outcome. Returns the `Set-Cookie` value,
/// the CSRF token and the role.
pub async fn sign_in(
    ops: &Ops,
    name: &str,
    password: &str,
    peer: std::net::IpAddr,
) -> Result<(String, String, crate::config::OperatorRole), crate::operators::SignInError> {
    let gate = ops.gate.clone();
    let (n, p) = (name.to_string(), password.to_string());
    let result = tokio::task::spawn_blocking(move || gate.sign_in(&n, &p, peer))
        .await
        .unwrap_or(Err(crate::operators::SignInError::Wrong));
    // A name no operator has may be a password typed in the wrong field: only its hash is kept.
    let shown_name = if ops.gate.knows(name) {
        name.to_string()
    } else {
        format!("unknown:{}", ops.store.private_token(name.as_bytes()))
    };
    let mut data = serde_json::Map::new();
    data.insert("operator".into(), serde_json::json!(shown_name));
    data.insert("address".into(), serde_json::json!(peer.to_string()));
    // Attempts while locked are counted, not chained: the lock bounds what reaches the chain.
    let kind = match &result {
        Ok(_) => Some(AuditEvent::OperatorSignIn),
        Err(crate::operators::SignInError::Wrong) => Some(AuditEvent::OperatorSignInFailed),
        Err(crate::operators::SignInError::Locked) => None,
    };
    let action = kind.map_or("operator_sign_in_locked", |k| k.as_str());
    crate::telemetry::events::operator_action(action, &shown_name);
    if let Some(kind) = kind {
        // The attempt is decided already (the session exists, or was refused): a failure is
        // logged and counted, never dropped.
        if let Err(e) = ops.committer.apply(ApplyJob::new(kind, data)).await {
            events::audit_write_failed("operator_sign_in", &e);
        }
    }
    result.map(|(token, csrf, role)| {
        let secure = if ops.admin_tls { "; Secure" } else { "" };
        (
            format!(
                "{}={token}; Path=/; HttpOnly; SameSite=Strict{secure}",
                crate::operators::SESSION_COOKIE
            ),
            csrf,
            role,
        )
    })
}

async fn operator(
    ops: Arc<Ops>,
    req: Request<hyper::body::Incoming>,
    by: &str,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    #[cfg(feature = "test-clock")]
    if path == "/dangerous/clock" {
        // A state change: POST only, audited; the host's CLI token only (see the caller).
        if req.method() != hyper::Method::POST {
            return refuse(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "",
            ));
        }
        return dangerous_clock(&ops, &req);
    }
    if path == "/corrections" {
        // Audited before it is answered, like every other operator read (`outbox stats`).
        if let Err(e) = crate::outbox::ops::audit_command(
            &ops.committer,
            "corrections list",
            serde_json::json!({}),
        )
        .await
        {
            events::audit_write_failed("operator_command", &e);
            return refuse(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the command could not be recorded in the audit chain, so it is not answered; retry later",
            ));
        }
        return corrections(&ops, &req);
    }
    if path.starts_with("/outbox/") {
        return outbox(&ops, &req, by).await;
    }
    if path.starts_with("/audit/") {
        return audit(&ops, &req);
    }
    if path.starts_with("/repairs/") {
        return repairs(&ops, &req).await;
    }
    if path.starts_with("/evaluation/") {
        return evaluation(&ops, &req, by).await;
    }
    if path.starts_with("/rules/") {
        return rules(&ops, &req, by).await;
    }
    if path == "/backup" {
        return backup(&ops, &req, by).await;
    }
    if path.starts_with("/objections/") {
        return objections(&ops, &req, by).await;
    }
    if path.starts_with("/ledger/") || path.starts_with("/subjects/") {
        return ledger(&ops, &req, by).await;
    }
    refuse(Refusal::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such operator endpoint (see GET /openapi.json)",
    ))
}

/// `/outbox/stats`, `/outbox/list?destination=D&dead=1&limit=N`, `/outbox/show?key=K`,
/// `POST /outbox/replay?destination=D`.
async fn outbox(
    ops: &Ops,
    req: &Request<hyper::body::Incoming>,
    by: &str,
) -> Response<Full<Bytes>> {
    use crate::outbox::ops;
    let query = decoded_query(req);
    let dest = query.get("destination").map(String::as_str);
    let result = match (req.method().as_str(), req.uri().path()) {
        ("GET", crate::outbox::ops::route::STATS) => {
            ops::stats_all(&ops.store, &ops.committer, &ops.destinations)
                .await
                .map(Some)
        }
        ("GET", crate::outbox::ops::route::LIST) => {
            let limit = query
                .get("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(100);
            ops::list_entries(
                &ops.store,
                &ops.committer,
                dest,
                query.get("dead").is_some_and(|d| d == "1"),
                limit,
            )
            .await
            .map(Some)
        }
        ("GET", crate::outbox::ops::route::SHOW) => {
            ops::show_entry(
                &ops.store,
                &ops.committer,
                query.get("key").map(String::as_str).unwrap_or(""),
            )
            .await
        }
        ("POST", crate::outbox::ops::route::REPLAY) => {
            let reason = query.get("reason").cloned().unwrap_or_default();
            if reason.trim().is_empty() {
                return refuse(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "reason_required",
                    "a replay needs a reason (recorded with who did it)",
                ));
            }
            ops::replay(
                &ops.store,
                &ops.committer,
                dest,
                query.get("key").map(String::as_str),
                by,
                &reason,
            )
            .await
            .map(Some)
        }
        _ => {
            return refuse(Refusal::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such operator endpoint (see GET /openapi.json)",
            ))
        }
    };
    match result {
        Ok(Some(v)) => json(StatusCode::OK, v),
        Ok(None) => refuse(Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such entry",
        )),
        Err(e) => refuse(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            e.to_string(),
        )),
    }
}

/// `GET /ledger/record?agency=A&record_id=R[&as_of=T][&destination=D]`,
/// `GET /ledger/subject?id_type=uscc&id=X[&as_of=T][&destination=D]`,
/// `POST /subjects/exit?id_type=uscc&id=X&reason=left_service&on=2026-11-01[&note=N]`,
/// `POST /subjects/reentry?id_type=uscc&id=X&on=2026-11-20`: the CLI's `ledger` and `subjects`
/// commands while the gateway runs.
async fn ledger(
    ops: &Ops,
    req: &Request<hyper::body::Incoming>,
    by: &str,
) -> Response<Full<Bytes>> {
    use crate::ledger::ops::{record_holdings, set_standing, subject_holdings, OpContext, OpError};
    let query = decoded_query(req);
    let q = |k: &str| query.get(k).map(String::as_str);
    let ctx = OpContext {
        store: &ops.store,
        committer: &ops.committer,
        router: ops.router.current(),
        exceptions: &ops.exceptions,
        now: ops.clock.now(),
        by,
    };
    let standing = || crate::ledger::recheck::StandingRequest {
        reason: q("reason").map(String::from),
        on: q("on").unwrap_or("").to_string(),
        note: q("note").map(String::from),
    };
    let result = match (req.method().as_str(), req.uri().path()) {
        ("GET", crate::ledger::ops::route::RECORD) => {
            record_holdings(
                &ctx,
                q("agency").unwrap_or(""),
                q("record_id").unwrap_or(""),
                q("as_of"),
                q("destination"),
            )
            .await
        }
        ("GET", crate::ledger::ops::route::SUBJECT) => {
            subject_holdings(
                &ctx,
                q("id_type").unwrap_or(""),
                q("id").unwrap_or(""),
                q("as_of"),
                q("destination"),
            )
            .await
        }
        ("POST", crate::ledger::ops::route::EXIT) => {
            set_standing(
                &ctx,
                q("id_type").unwrap_or(""),
                q("id").unwrap_or(""),
                true,
                standing(),
            )
            .await
        }
        ("POST", crate::ledger::ops::route::REENTRY) => {
            set_standing(
                &ctx,
                q("id_type").unwrap_or(""),
                q("id").unwrap_or(""),
                false,
                standing(),
            )
            .await
        }
        _ => Err(OpError::NotFound("endpoint")),
    };
    match result {
        Ok(v) => json(StatusCode::OK, v),
        Err(e) => op_error(e, "standing_unchanged"),
    }
}

/// `GET /objections/list?state=S`, `GET /objections/show?id=I`,
/// `POST /objections/accept-late?id=I&reason=R`: the CLI's `objections` commands while running.
async fn objections(
    ops: &Ops,
    req: &Request<hyper::body::Incoming>,
    by: &str,
) -> Response<Full<Bytes>> {
    use crate::objections::ops::{run, Command};
    let query = decoded_query(req);
    let q = |k: &str| query.get(k).cloned().unwrap_or_default();
    let command = match (req.method().as_str(), req.uri().path()) {
        ("GET", crate::objections::ops::route::LIST) => Command::List {
            state: query.get("state").cloned(),
        },
        ("GET", crate::objections::ops::route::SHOW) => Command::Show { id: q("id") },
        ("POST", crate::objections::ops::route::ACCEPT_LATE) => Command::AcceptLate {
            id: q("id"),
            reason: q("reason"),
        },
        _ => {
            return refuse(Refusal::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such operator endpoint (see GET /openapi.json)",
            ))
        }
    };
    let ctx = crate::objections::flow::Context {
        store: &ops.store,
        committer: &ops.committer,
        router: ops.router.current(),
        calendar: ops.calendar.current(),
        rules: ops.objection_rules.current(),
        exceptions: &ops.exceptions,
        destinations: &[],
        now: ops.clock.now(),
    };
    match run(&ctx, by, command).await {
        Ok(v) => json(StatusCode::OK, v),
        Err(e) => op_error(e, "objection_state"),
    }
}

/// `GET /repairs/list?state=S`, `GET /repairs/show?id=I`: the CLI's `repairs` commands.
async fn repairs(ops: &Ops, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let query = decoded_query(req);
    let (state, id) = match req.uri().path() {
        crate::repairs::ops::route::LIST => (query.get("state").cloned(), None),
        crate::repairs::ops::route::SHOW => {
            (None, Some(query.get("id").cloned().unwrap_or_default()))
        }
        _ => {
            return refuse(Refusal::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such operator endpoint (see GET /openapi.json)",
            ))
        }
    };
    match crate::repairs::ops::run(&ops.store, &ops.committer, ops.clock.now(), state, id).await {
        Ok(v) => json(StatusCode::OK, v),
        Err(e) => op_error(e, "repair_state"),
    }
}

/// The query string as a map, values percent-decoded.
/// `GET /audit/verify`, `/audit/checkpoint`, `/audit/entries?from=N&limit=L&kind=K` while the
/// gateway runs (auditors). `/audit/entries` looks at most `limit` (≤ 1,000) entries from `from`
/// and answers at most `audit::PAGE_MAX_BYTES` of them, with `next`: the `from` of the next page
/// (`null` at the end of the chain).
fn audit(ops: &Ops, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let query = decoded_query(req);
    match req.uri().path() {
        "/audit/verify" => match crate::audit::verify(&ops.store) {
            Ok(head) => json(
                StatusCode::OK,
                serde_json::json!({"ok": true, "head": head}),
            ),
            Err(e) => json(
                StatusCode::OK,
                serde_json::json!({"ok": false, "broken": e.to_string()}),
            ),
        },
        "/audit/checkpoint" => match crate::audit::checkpoint(&ops.store, ops.clock.now()) {
            Ok(doc) => json(StatusCode::OK, doc),
            Err(e) => refuse(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                e.to_string(),
            )),
        },
        "/audit/entries" => {
            let from = query.get("from").and_then(|v| v.parse().ok()).unwrap_or(1);
            let limit: usize = query
                .get("limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100)
                .min(1000);
            let kind = query.get("kind").filter(|k| !k.is_empty());
            // Bounded in bytes too: `next` is where the following page starts.
            match crate::audit::page(
                &ops.store,
                from,
                limit,
                crate::audit::PAGE_MAX_BYTES,
                kind.map(String::as_str),
            ) {
                Ok(page) => json(
                    StatusCode::OK,
                    serde_json::json!({"entries": page.entries, "next": page.next}),
                ),
                Err(e) => refuse(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    e.to_string(),
                )),
            }
        }
        _ => refuse(Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such operator endpoint (see GET /openapi.json)",
        )),
    }
}

/// `GET /evaluation/show?id_type=T&id=I`, `GET /evaluation/cycles`, `POST /evaluation/publish?year=Y`.
async fn evaluation(
    ops: &Ops,
    req: &Request<hyper::body::Incoming>,
    by: &str,
) -> Response<Full<Bytes>> {
    use crate::evaluation::ops::Command;
    let Some(engine) = &ops.evaluation else {
        return refuse(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "evaluation_disabled",
            "evaluation.enabled is off",
        ));
    };
    let query = decoded_query(req);
    let q = |k: &str| query.get(k).cloned().unwrap_or_default();
    let command = match (req.method().as_str(), req.uri().path()) {
        ("GET", crate::evaluation::ops::route::SHOW) => Command::Show {
            id_type: q("id_type"),
            id: q("id"),
        },
        ("GET", crate::evaluation::ops::route::CYCLES) => Command::Cycles,
        ("POST", crate::evaluation::ops::route::RERUN) => match q("year").parse() {
            Ok(year) => Command::Rerun {
                year,
                region: query.get("region").filter(|r| !r.is_empty()).cloned(),
                by: by.to_string(),
            },
            Err(_) => {
                return op_error(
                    crate::ledger::ops::OpError::Invalid("year must be a number".into()),
                    "not_running_year",
                )
            }
        },
        ("POST", crate::evaluation::ops::route::PUBLISH) => match q("year").parse() {
            Ok(year) => Command::Publish { year },
            Err(_) => {
                return op_error(
                    crate::ledger::ops::OpError::Invalid("year must be a number".into()),
                    "cycle_not_ended",
                )
            }
        },
        _ => {
            return op_error(
                crate::ledger::ops::OpError::NotFound("endpoint"),
                "cycle_not_ended",
            )
        }
    };
    let conflict = if matches!(command, Command::Rerun { .. }) {
        "not_running_year"
    } else {
        "cycle_not_ended"
    };
    let calendar = ops.calendar.current();
    match crate::evaluation::ops::run(
        engine,
        &ops.committer,
        &calendar,
        ops.objection_rules.current().longest_filing_working_days(),
        ops.clock.now(),
        command,
    )
    .await
    {
        Ok(v) => json(StatusCode::OK, v),
        Err(e) => op_error(e, conflict),
    }
}

/// `POST /backup?dir=ABSOLUTE_FOLDER`: an online backup of the embedded store as of one commit
/// (`crate::backup`), written by the gateway into a new (or empty) folder on its host.
async fn backup(
    ops: &Ops,
    req: &Request<hyper::body::Incoming>,
    by: &str,
) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::POST {
        return refuse(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "",
        ));
    }
    let query = decoded_query(req);
    let dir = std::path::PathBuf::from(query.get("dir").cloned().unwrap_or_default());
    if !dir.is_absolute() {
        return refuse(Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "dir must be an absolute folder on the gateway's host",
        ));
    }
    let key_file = ops.config.key_file().display().to_string();
    match crate::backup::online(&ops.committer, &ops.store, &dir, &key_file, by).await {
        Ok(manifest) => json(StatusCode::OK, serde_json::json!(manifest)),
        Err(e @ crate::backup::BackupError::Postgres) => refuse(Refusal::new(
            StatusCode::CONFLICT,
            "backup_postgres",
            e.to_string(),
        )),
        Err(e @ crate::backup::BackupError::TargetExists(_)) => refuse(Refusal::new(
            StatusCode::CONFLICT,
            "backup_target_exists",
            e.to_string(),
        )),
        Err(e) => refuse(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backup_failed",
            e.to_string(),
        )),
    }
}

/// `GET /rules/in-force?region=R&date=YYYY-MM-DD` (default: every region a rule names, today),
/// `POST /rules/reload` (the whole rulebook, as SIGHUP does; 422 with every error when refused).
async fn rules(ops: &Ops, req: &Request<hyper::body::Incoming>, by: &str) -> Response<Full<Bytes>> {
    let query = decoded_query(req);
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/rules/in-force") => {
            let region = match query.get("region").filter(|r| !r.is_empty()) {
                Some(r) => match crate::rulebook::in_force::parse_region(r) {
                    Ok(r) => Some(r),
                    Err(message) => {
                        return refuse(Refusal::new(
                            StatusCode::BAD_REQUEST,
                            "invalid_query",
                            message,
                        ))
                    }
                },
                None => None,
            };
            let day = match query.get("date").filter(|d| !d.is_empty()) {
                Some(d) => match crate::record::parse_date(d) {
                    Some(d) => d,
                    None => {
                        return refuse(Refusal::new(
                            StatusCode::BAD_REQUEST,
                            "invalid_query",
                            "date must be YYYY-MM-DD",
                        ))
                    }
                },
                None => ops
                    .clock
                    .now()
                    .to_offset(crate::calendar::CHINA_OFFSET)
                    .date(),
            };
            json(
                StatusCode::OK,
                crate::rulebook::in_force::view(&ops.live, &ops.rule_files, region.as_deref(), day),
            )
        }
        ("POST", "/rules/reload") => {
            let report = ops
                .reloader
                .reload(crate::rulebook::reload::Trigger::Operator, by)
                .await;
            let status = if report.ok {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            let mut body = crate::rulebook::reload::report_json(&report);
            if !report.ok {
                body["error"] = serde_json::json!({"code": "rules_invalid", "message": "a rule file does not load; nothing changed", "retry": false});
            }
            json(status, body)
        }
        _ => refuse(Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such operator endpoint (see GET /openapi.json)",
        )),
    }
}

fn decoded_query(
    req: &Request<hyper::body::Incoming>,
) -> std::collections::HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), crate::ingest::percent_decode(v)))
        .collect()
}

/// An operator operation's error as the admin endpoint answers it; `conflict` names the 409.
/// An operator command's error as its answer; `conflict` is the stable code of a step refused in
/// the state it found (each domain names its own: `objection_state`, `repair_state`…).
fn op_error(e: crate::ledger::ops::OpError, conflict: &'static str) -> Response<Full<Bytes>> {
    use crate::answer::Answer;
    let mut refusal = Refusal::new(e.status(), e.code(), e.to_string());
    if matches!(e, crate::ledger::ops::OpError::Conflict(_)) {
        refusal.code = conflict;
    }
    refuse(refusal)
}

/// Every refusal of the operator API, answered in the one shape (`crate::answer`).
fn refuse(refusal: Refusal) -> Response<Full<Bytes>> {
    json(refusal.status, crate::answer::body(&refusal))
}

/// Test builds only: `POST /dangerous/clock?set=2025-03-14T10:00:00%2B08:00` sets the manual
/// clock.
#[cfg(feature = "test-clock")]
fn dangerous_clock(ops: &Ops, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let Some(clock) = &ops.manual_clock else {
        return refuse(Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "manual clock is off",
        ));
    };
    let value = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("set="))
        .unwrap_or("")
        .replace("%2B", "+")
        .replace("%3A", ":");
    match time::OffsetDateTime::parse(&value, &time::format_description::well_known::Rfc3339) {
        Ok(t) => {
            clock.set(t);
            let _ = std::fs::write(&ops.manual_clock_file, &value);
            crate::telemetry::events::operator_action("dangerous_clock_set", &value);
            json(StatusCode::OK, serde_json::json!({"now": value}))
        }
        Err(_) => refuse(Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_time",
            "set= must be an RFC 3339 time, e.g. 2026-10-08T10:00:00+08:00",
        )),
    }
}

/// `GET /corrections?state=...` for `credit-gateway corrections list` while the gateway runs.
fn corrections(ops: &Ops, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let state = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("state="))
        .and_then(crate::corrections::State::parse);
    crate::telemetry::events::operator_action("corrections_list", "");
    match crate::corrections::list(&ops.store, ops.clock.now(), state) {
        Ok(list) => json(StatusCode::OK, serde_json::json!({"corrections": list})),
        Err(e) => refuse(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            e.to_string(),
        )),
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
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

fn respond(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_reaches_numbers_and_keys() {
        let mut v = serde_json::json!({
            "phone": 13812345678u64,
            "440106198001011230": "x",
            "nested": ["id 440106198001011230", 12],
        });
        mask_value(&mut v);
        let text = v.to_string();
        assert!(
            !text.contains("13812345678") && !text.contains("198001011230"),
            "{text}"
        );
        assert_eq!(v["nested"][1], 12, "other numbers stay numbers");
    }
}
