//! Sign-in and the checks that keep a session's requests its own: the password checked off the
//! async threads (argon2id), the session cookie and its CSRF token, and the same-site check of
//! every state-changing request.
//!
//! Never does: decide what a role may do (`crate::operators`), or record the request itself
//! (`super::trail`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

use crate::answer::Refusal;
use crate::audit::AuditEvent;
use crate::exchange::ApplyJob;
use crate::telemetry::events;

use super::{json, refuse, Ops};

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

/// `POST /session` with `{"name", "password"}`: a session cookie and the CSRF token.
pub(super) async fn sign_in_json(
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
    let gate = ops.live.gate.clone();
    let (n, p) = (name.to_string(), password.to_string());
    let result = tokio::task::spawn_blocking(move || gate.sign_in(&n, &p, peer))
        .await
        .unwrap_or(Err(crate::operators::SignInError::Wrong));
    // A name no operator has may be a password typed in the wrong field: only its hash is kept.
    let shown_name = if ops.live.gate.knows(name) {
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
