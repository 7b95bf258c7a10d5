//! The operator console: server-rendered pages under `/console` on the admin listener, served by
//! the gateway itself (no script, no CDN, no outside network: the one stylesheet is embedded in the
//! binary). Chinese by default, English with `?lang=en` (kept in a cookie).
//!
//! Pages: overview (health, throughput, refused requests by code, certificates expiring within 30
//! days, calendar days left), platforms (outbox depth, oldest pending, retries, dead letters with the
//! platform's answer, replay one, a destination's set or all with a reason), deadlines (corrections,
//! objections and repairs with working-day countdowns, overdue first), search (record id, subject
//! identifier, receipt id, idempotency key: what was received, decided, shared, withdrawn,
//! acknowledged), audit (head, entries by kind, verification while running).
//!
//! Owns: rendering and form handling. Never does: decide who may do what (`operators` does), or
//! change state other than through the same operations the operator API runs (`outbox::ops`).
//! Every form post carries the session's CSRF token; personal identifiers are masked for every
//! role but `auditor`.

mod casework;
mod i18n;
mod pages;
mod subject;
mod upload;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Method, Request, Response, StatusCode};

use crate::operator::Ops;
use crate::operators::{Need, Principal};
pub use i18n::Lang;

const STYLE: &str = include_str!("style.css");

type Resp = Response<Full<Bytes>>;

/// A signed-in operator on a page.
pub struct Viewer {
    pub principal: Principal,
    pub csrf: String,
    pub lang: Lang,
    /// Rules or the calendar ending or ended without a successor: the banner of every page
    /// (issue #26), each naming the file to add.
    pub warnings: Vec<String>,
}

impl Viewer {
    /// Text as this operator may see it: personal identifiers masked unless `auditor`.
    pub fn shown(&self, text: &str) -> String {
        if self.principal.sees_full_values() {
            text.to_string()
        } else {
            crate::disclosure::mask_for_operators(text)
        }
    }
}

pub async fn serve(
    ops: Arc<Ops>,
    req: Request<hyper::body::Incoming>,
    peer: std::net::IpAddr,
) -> Resp {
    let path = req.uri().path().to_string();
    let query = query_map(req.uri().query().unwrap_or(""));
    let lang = match query.get("lang").map(String::as_str) {
        Some("en") => Lang::En,
        Some("zh") => Lang::Zh,
        _ => match crate::operators::cookie(req.headers(), "lang").as_deref() {
            Some("en") => Lang::En,
            _ => Lang::Zh,
        },
    };
    let set_lang = query.get("lang").cloned();
    let mut resp = route(&ops, req, peer, &path, &query, lang).await;
    if let Some(l) = set_lang.filter(|l| l == "en" || l == "zh") {
        if let Ok(v) = format!("lang={l}; Path=/console; SameSite=Strict").parse() {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    resp.headers_mut().insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    resp
}

async fn route(
    ops: &Arc<Ops>,
    req: Request<hyper::body::Incoming>,
    peer: std::net::IpAddr,
    path: &str,
    query: &std::collections::HashMap<String, String>,
    lang: Lang,
) -> Resp {
    let method = req.method().clone();
    match (&method, path) {
        (&Method::GET, "/console/style.css") => {
            return with_type(StatusCode::OK, "text/css; charset=utf-8", STYLE.to_string())
        }
        (&Method::GET, "/console/login") => {
            // Said on the page itself: nobody can sign in until an operator is configured.
            let hint = ops
                .live
                .gate
                .is_empty()
                .then(|| i18n::t(lang, "no_operator"));
            return html(StatusCode::OK, pages::login(lang, hint));
        }
        (&Method::POST, "/console/login") => {
            if crate::operator::same_site(req.headers()).is_err() {
                return html(
                    StatusCode::FORBIDDEN,
                    pages::login(lang, Some(i18n::t(lang, "refused"))),
                );
            }
            let form = form_body(req).await;
            let name = form.get("name").cloned().unwrap_or_default();
            let password = form.get("password").cloned().unwrap_or_default();
            return match crate::operator::sign_in(ops, &name, &password, peer).await {
                Ok((cookie, _, _)) => {
                    let mut r = redirect("/console");
                    if let Ok(v) = cookie.parse() {
                        r.headers_mut().insert(header::SET_COOKIE, v);
                    }
                    r
                }
                Err(crate::operators::SignInError::Locked) => html(
                    StatusCode::TOO_MANY_REQUESTS,
                    pages::login(lang, Some(i18n::t(lang, "locked"))),
                ),
                Err(crate::operators::SignInError::Wrong) => html(
                    StatusCode::UNAUTHORIZED,
                    pages::login(lang, Some(i18n::t(lang, "wrong_password"))),
                ),
            };
        }
        _ => {}
    }
    let Some(auth) = ops.live.gate.authenticate(req.headers()) else {
        return redirect("/console/login");
    };
    let today = ops
        .clock
        .now()
        .to_offset(crate::calendar::CHINA_OFFSET)
        .date();
    let viewer = Viewer {
        principal: auth.principal.clone(),
        csrf: auth.csrf.clone().unwrap_or_default(),
        lang,
        warnings: crate::rulebook::in_force::warnings(&ops.live, &ops.rule_files, today)
            .into_iter()
            .map(|w| {
                if lang == Lang::Zh {
                    w.message_zh
                } else {
                    w.message
                }
            })
            .collect(),
    };
    if method == Method::POST && path == "/console/files" {
        // A file: multipart, read as it arrives (its CSRF token is its first field).
        let (status, page) = upload::upload(ops, &viewer, auth.csrf.as_deref(), req).await;
        return html(status, page);
    }
    if method == Method::POST {
        let headers = req.headers().clone();
        let form = form_body(req).await;
        if let Err(why) = crate::operator::csrf_ok(
            &headers,
            auth.csrf.as_deref(),
            form.get("csrf").map(String::as_str),
        ) {
            crate::operator::audit_request(ops, &viewer.principal, &method, path, 403).await;
            return html(
                StatusCode::FORBIDDEN,
                pages::message(&viewer, i18n::t(lang, "refused"), why),
            );
        }
        return post(ops, &viewer, auth.session.as_deref(), path, &form).await;
    }
    let body = match path {
        "/console" | "/console/" => pages::overview(ops, &viewer),
        "/console/platforms" => pages::platforms(ops, &viewer, query),
        "/console/deadlines" => pages::deadlines(ops, &viewer),
        "/console/search" => {
            pages::search(
                ops,
                &viewer,
                query.get("q").map(String::as_str).unwrap_or(""),
            )
            .await
        }
        "/console/audit" => pages::audit(ops, &viewer, query, None),
        "/console/rules" => pages::rules(ops, &viewer, query, None),
        "/console/objections" => casework::objections(ops, &viewer, query),
        "/console/repairs" => casework::repairs(ops, &viewer, query),
        "/console/corrections" => casework::corrections(ops, &viewer, query),
        "/console/files" => upload::page(ops, &viewer, None),
        "/console/evaluation" => subject::evaluation(ops, &viewer, query, done(lang, query)),
        _ => match case_page(ops, &viewer, path, query) {
            Some(page) => page,
            None => {
                return html(
                    StatusCode::NOT_FOUND,
                    pages::message(&viewer, "404", i18n::t(lang, "not_found")),
                )
            }
        },
    };
    if viewer.principal.sees_full_values() {
        // Full values shown: each such view is recorded (auditors).
        crate::operator::audit_request(ops, &viewer.principal, &method, path, 200).await;
    }
    html(StatusCode::OK, body)
}

/// The notice of a step just taken (`?done=resolve` after the redirect).
fn done(lang: Lang, query: &std::collections::HashMap<String, String>) -> Option<&'static str> {
    query.get("done").map(|_| i18n::t(lang, "step_done"))
}

/// `/console/{objections|repairs|corrections}/{id}`, `/console/subject`, `/console/record`.
fn case_page(
    ops: &Ops,
    viewer: &Viewer,
    path: &str,
    query: &std::collections::HashMap<String, String>,
) -> Option<String> {
    let lang = viewer.lang;
    if let Some(id) = path.strip_prefix("/console/objections/") {
        return casework::objection(ops, viewer, id, done(lang, query));
    }
    if let Some(id) = path.strip_prefix("/console/repairs/") {
        return casework::repair(ops, viewer, id, done(lang, query));
    }
    if let Some(id) = path.strip_prefix("/console/corrections/") {
        return casework::correction(ops, viewer, id);
    }
    match path {
        "/console/subject" => subject::subject(ops, viewer, query, done(lang, query)),
        "/console/record" => subject::record(ops, viewer, query),
        _ => None,
    }
}

async fn post(
    ops: &Arc<Ops>,
    viewer: &Viewer,
    session: Option<&str>,
    path: &str,
    form: &std::collections::HashMap<String, String>,
) -> Resp {
    let lang = viewer.lang;
    // A case's step checks the role its duty needs itself (a review by the level above needs
    // `reviewer`, GD Art. 34), after the flow says the step is open.
    if let Some((status, outcome)) = match casework::act(ops, viewer, path, form).await {
        Some(done) => Some(done),
        None => subject::act(ops, viewer, path, form).await,
    } {
        return match outcome {
            casework::Outcome::Done(to) => redirect(&to),
            casework::Outcome::Refused(_, why) => html(
                status,
                pages::message(viewer, i18n::t(lang, "refused"), &why),
            ),
        };
    }
    let need = match path {
        "/console/logout" => Need::Read,
        "/console/audit/verify" => Need::Audit,
        _ => Need::Act,
    };
    if !viewer.principal.may(need) {
        crate::operator::audit_request(ops, &viewer.principal, &Method::POST, path, 403).await;
        return html(
            StatusCode::FORBIDDEN,
            pages::message(
                viewer,
                i18n::t(lang, "refused"),
                i18n::t(lang, "role_may_not"),
            ),
        );
    }
    match path {
        "/console/logout" => {
            if let Some(s) = session {
                ops.live.gate.sign_out(s);
            }
            crate::operator::audit_request(ops, &viewer.principal, &Method::POST, path, 303).await;
            let mut r = redirect("/console/login");
            if let Ok(v) =
                format!("{}=; Path=/; Max-Age=0", crate::operators::SESSION_COOKIE).parse()
            {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        "/console/replay" => {
            let reason = form
                .get("reason")
                .map(|r| r.trim().to_string())
                .unwrap_or_default();
            if reason.is_empty() {
                return html(
                    StatusCode::BAD_REQUEST,
                    pages::message(
                        viewer,
                        i18n::t(lang, "refused"),
                        i18n::t(lang, "reason_required"),
                    ),
                );
            }
            let destination = form.get("destination").filter(|d| !d.is_empty());
            let key = form.get("key").filter(|k| !k.is_empty());
            let done = crate::outbox::ops::replay(
                &ops.store,
                &ops.committer,
                destination.map(String::as_str),
                key.map(String::as_str),
                &viewer.principal.name(),
                &reason,
            )
            .await;
            let status = if done.is_ok() { 303 } else { 503 };
            crate::operator::audit_request(ops, &viewer.principal, &Method::POST, path, status)
                .await;
            match done {
                Ok(v) => redirect(&format!("/console/platforms?replayed={}", v["replayed"])),
                Err(e) => html(
                    StatusCode::SERVICE_UNAVAILABLE,
                    pages::message(viewer, i18n::t(lang, "refused"), &e.to_string()),
                ),
            }
        }
        "/console/rules/reload" => {
            let report = ops
                .reloader
                .reload(
                    crate::rulebook::reload::Trigger::Operator,
                    &viewer.principal.name(),
                )
                .await;
            let status = if report.ok { 200 } else { 422 };
            crate::operator::audit_request(ops, &viewer.principal, &Method::POST, path, status)
                .await;
            // The page as it is after the reload (its banner too), with the report on top.
            let today = ops
                .clock
                .now()
                .to_offset(crate::calendar::CHINA_OFFSET)
                .date();
            let after = Viewer {
                principal: viewer.principal.clone(),
                csrf: viewer.csrf.clone(),
                lang,
                warnings: crate::rulebook::in_force::warnings(&ops.live, &ops.rule_files, today)
                    .into_iter()
                    .map(|w| {
                        if lang == Lang::Zh {
                            w.message_zh
                        } else {
                            w.message
                        }
                    })
                    .collect(),
            };
            html(
                if report.ok {
                    StatusCode::OK
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                },
                pages::rules(ops, &after, &Default::default(), Some(&report)),
            )
        }
        "/console/audit/verify" => {
            let result = crate::audit::verify(&ops.store);
            crate::operator::audit_request(ops, &viewer.principal, &Method::POST, path, 200).await;
            html(
                StatusCode::OK,
                pages::audit(ops, viewer, &Default::default(), Some(result)),
            )
        }
        _ => html(
            StatusCode::NOT_FOUND,
            pages::message(viewer, "404", i18n::t(lang, "not_found")),
        ),
    }
}

async fn form_body(
    req: Request<hyper::body::Incoming>,
) -> std::collections::HashMap<String, String> {
    let read = http_body_util::Limited::new(req.into_body(), 64 * 1024).collect();
    let bytes = match tokio::time::timeout(std::time::Duration::from_secs(10), read).await {
        Ok(Ok(b)) => b.to_bytes(),
        _ => Bytes::new(),
    };
    query_map(&String::from_utf8_lossy(&bytes))
}

/// `application/x-www-form-urlencoded` or a query string.
pub fn query_map(s: &str) -> std::collections::HashMap<String, String> {
    s.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                crate::ingest::percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

fn html(status: StatusCode, body: String) -> Resp {
    with_type(status, "text/html; charset=utf-8", body)
}

fn with_type(status: StatusCode, content_type: &'static str, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

fn redirect(to: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = to.parse() {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// HTML-escape text.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_forms_decoded() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let m = query_map("reason=%E9%87%8D%E6%94%BE+now&key=ab");
        assert_eq!(m["reason"], "重放 now");
        assert_eq!(m["key"], "ab");
    }
}
