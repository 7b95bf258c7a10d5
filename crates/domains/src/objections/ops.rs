//! Operator commands on objections (`credit-gateway objections ...`), shared by the admin endpoint
//! (gateway running) and the CLI (gateway stopped). Every one is an audited operator command.

use serde_json::{json, Value};

use super::flow::{self, Context, ObjectionError};
use super::State;
use crate::command::OpError;

/// The operator API's paths of these commands (issue #28): the admin server routes them and the
/// CLI calls them by these constants, never by a literal of its own.
pub mod route {
    pub const LIST: &str = "/objections/list";
    pub const SHOW: &str = "/objections/show";
    pub const ACCEPT_LATE: &str = "/objections/accept-late";
}

/// What an operator asks.
pub enum Command {
    List { state: Option<String> },
    Show { id: String },
    AcceptLate { id: String, reason: String },
}

/// The command a request names (`None`: no path of this domain): `GET /objections/list?state=S`,
/// `GET /objections/show?id=I`, `POST /objections/accept-late?id=I&reason=R`.
pub fn command(method: &str, path: &str, query: &crate::command::Query) -> Option<Command> {
    use crate::command::param;
    Some(match (method, path) {
        ("GET", route::LIST) => Command::List {
            state: query.get("state").cloned(),
        },
        ("GET", route::SHOW) => Command::Show {
            id: param(query, "id"),
        },
        ("POST", route::ACCEPT_LATE) => Command::AcceptLate {
            id: param(query, "id"),
            reason: param(query, "reason"),
        },
        _ => return None,
    })
}

pub async fn run(ctx: &Context<'_>, by: &str, cmd: Command) -> Result<Value, OpError> {
    let storage = |e: crate::store::StoreError| OpError::Storage(e.to_string());
    match cmd {
        Command::List { state } => {
            let state = match state.as_deref() {
                None => None,
                Some(s) => Some(State::parse(s).ok_or_else(|| {
                    OpError::Invalid(format!(
                        "state {s:?}: use filed_late, under_review, overdue, upheld or rejected"
                    ))
                })?),
            };
            crate::outbox::ops::audit_command(
                ctx.committer,
                "objections list",
                json!({"state": state}),
            )
            .await
            .map_err(storage)?;
            let listed = super::list(ctx.store, ctx.now, state).map_err(storage)?;
            Ok(json!({ "objections": listed }))
        }
        Command::Show { id } => {
            crate::outbox::ops::audit_command(ctx.committer, "objections show", json!({"id": id}))
                .await
                .map_err(storage)?;
            let objection = super::get(ctx.store, &id)
                .map_err(storage)?
                .ok_or(OpError::NotFound("objection"))?;
            let mut body = serde_json::to_value(&objection).unwrap_or_default();
            body["state"] = serde_json::to_value(objection.state(ctx.now)).unwrap_or_default();
            Ok(body)
        }
        Command::AcceptLate { id, reason } => {
            let objection =
                flow::accept_late(ctx, &id, by, &reason)
                    .await
                    .map_err(|e| match e {
                        ObjectionError::NotFound(what) => OpError::NotFound(what),
                        ObjectionError::WrongState(_) => OpError::Conflict(e.to_string()),
                        ObjectionError::Storage(m) => OpError::Storage(m),
                        other => OpError::Invalid(other.to_string()),
                    })?;
            let mut body = serde_json::to_value(&objection).unwrap_or_default();
            body["state"] = serde_json::to_value(objection.state(ctx.now)).unwrap_or_default();
            Ok(body)
        }
    }
}
