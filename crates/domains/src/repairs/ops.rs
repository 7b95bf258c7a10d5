//! Operator commands on repairs (`credit-gateway repairs list|show`), shared by the admin endpoint
//! and the CLI; audited.

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::State;
use crate::command::OpError;
use crate::exchange::CommitterHandle;
use crate::store::Store;

/// The operator API's paths of these commands (issue #28): the admin server routes them and the
/// CLI calls them by these constants, never by a literal of its own.
pub mod route {
    pub const LIST: &str = "/repairs/list";
    pub const SHOW: &str = "/repairs/show";
}

/// A repairs command: list (optionally by state) or show one.
pub enum Command {
    List { state: Option<String> },
    Show { id: String },
}

/// The command a request names (`None`: no path of this domain): `GET /repairs/list?state=S`,
/// `GET /repairs/show?id=I`.
pub fn command(path: &str, query: &crate::command::Query) -> Option<Command> {
    match path {
        route::LIST => Some(Command::List {
            state: query.get("state").cloned(),
        }),
        route::SHOW => Some(Command::Show {
            id: crate::command::param(query, "id"),
        }),
        _ => None,
    }
}

impl Command {
    /// The state filter and the id `run` takes.
    pub fn into_parts(self) -> (Option<String>, Option<String>) {
        match self {
            Self::List { state } => (state, None),
            Self::Show { id } => (None, Some(id)),
        }
    }
}

/// `id`: show one; else list, optionally by `state`.
pub async fn run(
    store: &Store,
    committer: &CommitterHandle,
    now: OffsetDateTime,
    state: Option<String>,
    id: Option<String>,
) -> Result<Value, OpError> {
    let storage = |e: crate::store::StoreError| OpError::Storage(e.to_string());
    if let Some(id) = id {
        crate::outbox::ops::audit_command(committer, "repairs show", json!({"id": id}))
            .await
            .map_err(storage)?;
        let repair = super::get(store, &id)
            .map_err(storage)?
            .ok_or(OpError::NotFound("repair"))?;
        let open = repair.status == super::Status::InPublicity
            && super::objection_open(store, &repair).map_err(storage)?;
        let mut body = serde_json::to_value(&repair).unwrap_or_default();
        body["state"] = serde_json::to_value(repair.state(now, open)).unwrap_or_default();
        return Ok(body);
    }
    let state = match state.as_deref() {
        None => None,
        Some(s) => Some(State::parse(s).ok_or_else(|| {
            OpError::Invalid(format!(
                "state {s:?}: use under_review, overdue, refused, in_publicity, suspended or completed"
            ))
        })?),
    };
    crate::outbox::ops::audit_command(committer, "repairs list", json!({"state": state}))
        .await
        .map_err(storage)?;
    Ok(json!({ "repairs": super::list(store, now, state).map_err(storage)? }))
}
