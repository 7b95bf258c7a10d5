//! Operator operations on the ledger and on subjects' standing (LS Art. 20), shared by the admin
//! endpoint (gateway running) and the CLI (gateway stopped). Each is an audited operator command;
//! a subject appears in the audit chain only as a hash of its identifier.

use std::sync::Arc;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{query, recheck};
use crate::command::{param, OpError, Query};
use crate::exchange::CommitterHandle;
use crate::sharing::Router;
use crate::store::Store;
use crate::subject::{IdType, IdentifierExceptions, SubjectId};

/// The operator API's paths of these commands (issue #28): the admin server routes them and the
/// CLI calls them by these constants, never by a literal of its own.
pub mod route {
    pub const RECORD: &str = "/ledger/record";
    pub const SUBJECT: &str = "/ledger/subject";
    pub const EXIT: &str = "/subjects/exit";
    pub const REENTRY: &str = "/subjects/reentry";
}

/// A ledger or standing command, parsed from the operator API's method, path and query.
pub enum Command {
    Record {
        agency: String,
        record_id: String,
        as_of: Option<String>,
        destination: Option<String>,
    },
    Subject {
        id_type: String,
        id: String,
        as_of: Option<String>,
        destination: Option<String>,
    },
    Standing {
        id_type: String,
        id: String,
        exited: bool,
        request: recheck::StandingRequest,
    },
}

/// The command a request names (`None`: no path of this domain). `GET /ledger/record?agency=A&
/// record_id=R[&as_of=T][&destination=D]`, `GET /ledger/subject?id_type=uscc&id=X[&as_of=T]
/// [&destination=D]`, `POST /subjects/exit?id_type=uscc&id=X&reason=left_service&on=2026-11-01
/// [&note=N]`, `POST /subjects/reentry?id_type=uscc&id=X&on=2026-11-20`.
pub fn command(method: &str, path: &str, query: &Query) -> Option<Command> {
    let q = |k: &str| query.get(k).cloned();
    let standing = |exited| Command::Standing {
        id_type: param(query, "id_type"),
        id: param(query, "id"),
        exited,
        request: recheck::StandingRequest {
            reason: q("reason"),
            on: param(query, "on"),
            note: q("note"),
        },
    };
    Some(match (method, path) {
        ("GET", route::RECORD) => Command::Record {
            agency: param(query, "agency"),
            record_id: param(query, "record_id"),
            as_of: q("as_of"),
            destination: q("destination"),
        },
        ("GET", route::SUBJECT) => Command::Subject {
            id_type: param(query, "id_type"),
            id: param(query, "id"),
            as_of: q("as_of"),
            destination: q("destination"),
        },
        ("POST", route::EXIT) => standing(true),
        ("POST", route::REENTRY) => standing(false),
        _ => return None,
    })
}

/// Run a ledger or standing command.
pub async fn run(ctx: &OpContext<'_>, command: Command) -> Result<Value, OpError> {
    match command {
        Command::Record {
            agency,
            record_id,
            as_of,
            destination,
        } => {
            record_holdings(
                ctx,
                &agency,
                &record_id,
                as_of.as_deref(),
                destination.as_deref(),
            )
            .await
        }
        Command::Subject {
            id_type,
            id,
            as_of,
            destination,
        } => subject_holdings(ctx, &id_type, &id, as_of.as_deref(), destination.as_deref()).await,
        Command::Standing {
            id_type,
            id,
            exited,
            request,
        } => set_standing(ctx, &id_type, &id, exited, request).await,
    }
}

/// What every operation works with.
pub struct OpContext<'a> {
    pub store: &'a Store,
    pub committer: &'a CommitterHandle,
    pub router: Arc<Router>,
    pub exceptions: &'a IdentifierExceptions,
    pub now: OffsetDateTime,
    /// Who acts: `operator` (admin endpoint or CLI).
    pub by: &'a str,
}

fn storage(e: impl std::fmt::Display) -> OpError {
    OpError::Storage(e.to_string())
}

fn as_of(ctx: &OpContext<'_>, as_of: Option<&str>) -> Result<OffsetDateTime, OpError> {
    match as_of {
        None => Ok(ctx.now),
        Some(t) => query::parse_as_of(t).map_err(OpError::Invalid),
    }
}

fn subject_id(ctx: &OpContext<'_>, id_type: &str, id: &str) -> Result<SubjectId, OpError> {
    let id_type = IdType::from_code(id_type)
        .ok_or_else(|| OpError::Invalid(format!("unknown id type {id_type:?}")))?;
    SubjectId::parse(id_type, id, ctx.exceptions).map_err(|e| OpError::Invalid(e.to_string()))
}

async fn audit(ctx: &OpContext<'_>, command: &str, detail: Value) -> Result<(), OpError> {
    crate::outbox::ops::audit_command(ctx.committer, command, detail)
        .await
        .map_err(storage)
}

/// What each platform holds (or held at `as_of`) of one record.
pub async fn record_holdings(
    ctx: &OpContext<'_>,
    agency: &str,
    record_id: &str,
    at: Option<&str>,
    destination: Option<&str>,
) -> Result<Value, OpError> {
    let at = as_of(ctx, at)?;
    audit(
        ctx,
        "ledger record",
        json!({"agency": agency, "record_id": record_id, "as_of": crate::clock::rfc3339(at)}),
    )
    .await?;
    query::record(ctx.store, agency, record_id, at, destination)
        .map_err(storage)?
        .ok_or(OpError::NotFound("record"))
}

/// What each platform holds (or held at `as_of`) of every record of a subject.
pub async fn subject_holdings(
    ctx: &OpContext<'_>,
    id_type: &str,
    id: &str,
    at: Option<&str>,
    destination: Option<&str>,
) -> Result<Value, OpError> {
    let subject = subject_id(ctx, id_type, id)?;
    let at = as_of(ctx, at)?;
    let key = subject.archive_key(ctx.store);
    audit(
        ctx,
        "ledger subject",
        json!({"subject_sha256": recheck::subject_hash(&key), "as_of": crate::clock::rfc3339(at)}),
    )
    .await?;
    query::subject(ctx.store, &key, at, destination)
        .map_err(storage)?
        .ok_or(OpError::NotFound("subject"))
}

/// Mark a subject exited (`exit`) or re-entered, withdrawing or restoring what platforms hold.
pub async fn set_standing(
    ctx: &OpContext<'_>,
    id_type: &str,
    id: &str,
    exit: bool,
    request: recheck::StandingRequest,
) -> Result<Value, OpError> {
    let subject = subject_id(ctx, id_type, id)?;
    let change = recheck::standing_change(exit, request, ctx.by).map_err(OpError::Invalid)?;
    let reason = change.reason.clone();
    let queued = recheck::change_standing(
        ctx.store.clone(),
        ctx.committer,
        ctx.router.clone(),
        ctx.exceptions.clone(),
        subject.archive_key(ctx.store),
        exit,
        change,
        ctx.now,
    )
    .await
    .map_err(|e| match e {
        recheck::StandingError::NotFound => OpError::NotFound("subject"),
        recheck::StandingError::Already(_) => OpError::Conflict(e.to_string()),
        recheck::StandingError::Storage(e) => storage(e),
    })?;
    crate::ledger::report_queued(
        if exit {
            "subject_exited"
        } else {
            "subject_reentered"
        },
        &queued,
    );
    let withdrawals = queued
        .iter()
        .filter(|q| q.action == super::Action::Withdraw)
        .count();
    crate::telemetry::events::subject_standing_changed(
        exit,
        &reason,
        withdrawals,
        queued.len() - withdrawals,
    );
    Ok(
        json!({"status": if exit { "exited" } else { "active" }, "reason": reason, "changes": queued}),
    )
}
