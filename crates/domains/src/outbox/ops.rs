//! Operator commands on the outbox (`credit-gateway outbox ...`), shared by the CLI (gateway
//! stopped: it opens the data directory itself) and the admin API (gateway running: the CLI asks
//! it). Every command is logged and appended to the audit chain (GD Art. 12, LS Art. 43).

use serde_json::{json, Map, Value};

use super::{list, replay_writes, show, stats};
use crate::audit::AuditEvent;
use crate::exchange::ApplyJob;
use crate::exchange::CommitterHandle;
use crate::store::{Store, StoreError};
use crate::telemetry::events;

/// The operator API's paths of these commands (issue #28): the admin server routes them and the
/// CLI calls them by these constants, never by a literal of its own.
pub mod route {
    pub const STATS: &str = "/outbox/stats";
    pub const LIST: &str = "/outbox/list";
    pub const SHOW: &str = "/outbox/show";
    pub const REPLAY: &str = "/outbox/replay";
}

/// Record an operator command in the audit chain.
pub async fn audit_command(
    committer: &CommitterHandle,
    command: &str,
    detail: Value,
) -> Result<(), StoreError> {
    let mut data = Map::new();
    data.insert("command".into(), json!(command));
    data.insert("detail".into(), detail);
    committer
        .apply(ApplyJob::new(AuditEvent::OperatorCommand, data))
        .await
        .map(|_| ())
        .map_err(StoreError::from)
}

pub async fn stats_all(
    store: &Store,
    committer: &CommitterHandle,
    destinations: &[String],
) -> Result<Value, StoreError> {
    events::operator_action("outbox_stats", "");
    audit_command(committer, "outbox stats", json!({})).await?;
    let (store, destinations) = (store.clone(), destinations.to_vec());
    blocking(move || {
        let mut out = Vec::new();
        for d in &destinations {
            out.push(serde_json::to_value(stats(&store, d)?).unwrap_or_default());
        }
        Ok(json!({ "destinations": out }))
    })
    .await
}

/// Most entries one `list` answers: an answer's size (and the memory behind it) stays bounded.
pub const MAX_LIST: usize = 1000;

pub async fn list_entries(
    store: &Store,
    committer: &CommitterHandle,
    destination: Option<&str>,
    dead: bool,
    limit: usize,
) -> Result<Value, StoreError> {
    let limit = limit.min(MAX_LIST);
    events::operator_action("outbox_list", destination.unwrap_or("*"));
    audit_command(
        committer,
        "outbox list",
        json!({"destination": destination, "dead": dead}),
    )
    .await?;
    let (store, destination) = (store.clone(), destination.map(String::from));
    blocking(move || Ok(json!({ "entries": list(&store, destination.as_deref(), dead, limit)? })))
        .await
}

/// One outbox entry or dead letter, by its display key (`out/...`, `dlq/...`) or its idempotency
/// key. Nothing else of the database: any other key is "no such entry". What the operator typed
/// reaches the log and the audit chain only when it is such a key; anything else (which could be
/// an identifier) only as a hash.
pub async fn show_entry(
    store: &Store,
    committer: &CommitterHandle,
    key: &str,
) -> Result<Option<Value>, StoreError> {
    let is_entry_key = key.starts_with("out/") || key.starts_with("dlq/");
    let is_idempotency_key = key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit());
    let shown = if is_entry_key || is_idempotency_key {
        key.to_string()
    } else {
        store.private_token(key.as_bytes())
    };
    events::operator_action("outbox_show", &shown);
    audit_command(committer, "outbox show", json!({"key": shown})).await?;
    if !is_entry_key && !is_idempotency_key {
        return Ok(None);
    }
    let (store, key) = (store.clone(), key.to_string());
    blocking(move || show(&store, &key)).await
}

/// Scans of the queue run on a blocking thread, never on the threads that serve agencies.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::CommitFailed(e.to_string()))?
}

/// Move dead letters back into the queue (same idempotency keys), durably and audited.
/// `key`: only the dead letter with this idempotency key; `by` and `reason` are recorded with it.
pub async fn replay(
    store: &Store,
    committer: &CommitterHandle,
    destination: Option<&str>,
    key: Option<&str>,
    by: &str,
    reason: &str,
) -> Result<Value, StoreError> {
    let replay = {
        let (store, destination) = (store.clone(), destination.map(String::from));
        let key = key.map(String::from);
        blocking(move || {
            replay_writes(
                &store,
                destination.as_deref(),
                |entry| key.as_deref().is_none_or(|k| entry.idempotency_key == k),
                |entry| !crate::ledger::is_superseded(&store, entry),
            )
        })
        .await?
    };
    events::operator_action("outbox_replay", destination.unwrap_or("*"));
    let mut data = Map::new();
    data.insert("destination".into(), json!(destination.unwrap_or("*")));
    data.insert("replayed".into(), json!(replay.replayed));
    data.insert("superseded".into(), json!(replay.superseded));
    data.insert("key".into(), json!(key));
    data.insert("by".into(), json!(by));
    data.insert("reason".into(), json!(reason));
    let head = committer
        .apply(
            ApplyJob::new(AuditEvent::OperatorOutboxReplay, data)
                .removes(replay.removes)
                .enqueue(replay.enqueue),
        )
        .await?;
    committer.outbox_notify.notify_waiters();
    Ok(json!({ "replayed": replay.replayed, "superseded": replay.superseded, "audit": head }))
}
