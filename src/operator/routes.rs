//! The operator API's route table: each path is parsed into the owning domain's command
//! (`crate::<domain>::ops`) and the domain's answer or error is turned into the response here,
//! in one shape (`crate::answer`).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

use crate::answer::Refusal;
use crate::telemetry::events;

use super::{json, Ops};

pub(super) async fn operator(
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
    if path == crate::corrections::ops::route::LIST {
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
    if path == crate::backup::route::BACKUP {
        return backup(&ops, &req, by).await;
    }
    if path.starts_with("/objections/") {
        return objections(&ops, &req, by).await;
    }
    if path.starts_with("/ledger/") || path.starts_with("/subjects/") {
        return ledger(&ops, &req, by).await;
    }
    not_found()
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
        _ => return not_found(),
    };
    match result {
        Ok(Some(v)) => json(StatusCode::OK, v),
        Ok(None) => refuse(Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such entry",
        )),
        Err(_) => refuse_answer(&crate::answer::StorageUnavailable),
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
    use crate::command::OpError;
    use crate::ledger::ops::{command, run, OpContext};
    let query = decoded_query(req);
    let Some(command) = command(req.method().as_str(), req.uri().path(), &query) else {
        return op_error(OpError::NotFound("endpoint"), "standing_unchanged");
    };
    let ctx = OpContext {
        store: &ops.store,
        committer: &ops.committer,
        router: ops.live.router.current(),
        exceptions: &ops.exceptions,
        now: ops.clock.now(),
        by,
    };
    match run(&ctx, command).await {
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
    use crate::objections::ops::{command, run};
    let query = decoded_query(req);
    let Some(command) = command(req.method().as_str(), req.uri().path(), &query) else {
        return not_found();
    };
    let ctx = crate::objections::flow::Context {
        store: &ops.store,
        committer: &ops.committer,
        router: ops.live.router.current(),
        calendar: ops.live.calendar.current(),
        rules: ops.live.objections.current(),
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
    let Some(command) = crate::repairs::ops::command(req.uri().path(), &query) else {
        return not_found();
    };
    let (state, id) = command.into_parts();
    match crate::repairs::ops::run(&ops.store, &ops.committer, ops.clock.now(), state, id).await {
        Ok(v) => json(StatusCode::OK, v),
        Err(e) => op_error(e, "repair_state"),
    }
}

/// `GET /audit/verify`, `/audit/checkpoint`, `/audit/entries?from=N&limit=L&kind=K` while the
/// gateway runs (auditors): `audit::ops`.
fn audit(ops: &Ops, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let query = decoded_query(req);
    let Some(command) = crate::audit::ops::command(req.uri().path(), &query) else {
        return not_found();
    };
    match crate::audit::ops::run(&ops.store, ops.clock.now(), &command) {
        Ok(v) => json(StatusCode::OK, v),
        Err(_) => refuse_answer(&crate::answer::StorageUnavailable),
    }
}

/// `GET /evaluation/show?id_type=T&id=I`, `GET /evaluation/cycles`, `POST /evaluation/publish?year=Y`.
async fn evaluation(
    ops: &Ops,
    req: &Request<hyper::body::Incoming>,
    by: &str,
) -> Response<Full<Bytes>> {
    let Some(engine) = &ops.evaluation else {
        return refuse(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "evaluation_disabled",
            "evaluation.enabled is off",
        ));
    };
    let query = decoded_query(req);
    let command = match crate::evaluation::ops::command(
        req.method().as_str(),
        req.uri().path(),
        &query,
        by,
    ) {
        None => {
            return op_error(
                crate::command::OpError::NotFound("endpoint"),
                "cycle_not_ended",
            )
        }
        Some(Err(e)) => return op_error(e, "cycle_not_ended"),
        Some(Ok(command)) => command,
    };
    let conflict = command.conflict_code();
    let calendar = ops.live.calendar.current();
    match crate::evaluation::ops::run(
        engine,
        &ops.committer,
        &calendar,
        ops.live.objections.current().longest_filing_working_days(),
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
        ("GET", crate::rulebook::ops::route::IN_FORCE) => {
            let today = ops
                .clock
                .now()
                .to_offset(crate::calendar::CHINA_OFFSET)
                .date();
            match crate::rulebook::ops::in_force(&ops.live, &ops.rule_files, &query, today) {
                Ok(v) => json(StatusCode::OK, v),
                Err(e) => refuse_answer(&e),
            }
        }
        ("POST", crate::rulebook::ops::route::RELOAD) => {
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
        _ => not_found(),
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
fn op_error(e: crate::command::OpError, conflict: &'static str) -> Response<Full<Bytes>> {
    use crate::answer::Answer;
    let mut refusal = Refusal::new(e.status(), e.code(), e.message());
    if matches!(e, crate::command::OpError::Conflict(_)) {
        refusal.code = conflict;
    }
    refuse(refusal)
}

/// A path no domain serves.
fn not_found() -> Response<Full<Bytes>> {
    refuse(Refusal::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such operator endpoint (see GET /openapi.json)",
    ))
}

/// Every refusal of the operator API, answered in the one shape (`crate::answer`).
pub(super) fn refuse(refusal: Refusal) -> Response<Full<Bytes>> {
    json(refusal.status, crate::answer::body(&refusal))
}

/// A domain's error, answered as it says (its status, code, message and retry).
fn refuse_answer(e: &dyn crate::answer::Answer) -> Response<Full<Bytes>> {
    json(e.status(), crate::answer::body(e))
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

/// `GET /corrections?state=...` for `credit-gateway corrections list` while the gateway runs:
/// `corrections::ops`.
fn corrections(ops: &Ops, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let query = decoded_query(req);
    crate::telemetry::events::operator_action("corrections_list", "");
    let state = query.get("state").map(String::as_str);
    match crate::corrections::ops::list(&ops.store, ops.clock.now(), state) {
        Ok(v) => json(StatusCode::OK, v),
        Err(e) => refuse_answer(&e),
    }
}
