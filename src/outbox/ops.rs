//! Operator commands on the outbox (`credit-gateway outbox ...`), shared by the CLI (gateway
//! stopped: it opens the data directory itself) and the admin API (gateway running: the CLI asks
//! it). Every command is logged and appended to the audit chain (GD Art. 12, LS Art. 43).

use serde_json::{json, Map, Value};

use super::{list, replay_writes, show, stats};
use crate::store::{CommitterHandle, Store, StoreError};
use crate::telemetry::events;

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
        .apply("operator_command", data, Vec::new(), Vec::new(), Vec::new())
        .await
        .map(|_| ())
}

pub async fn stats_all(
    store: &Store,
    committer: &CommitterHandle,
    destinations: &[String],
) -> Result<Value, StoreError> {
    events::operator_action("outbox_stats", "");
    audit_command(committer, "outbox stats", json!({})).await?;
    let mut out = Vec::new();
    for d in destinations {
        out.push(serde_json::to_value(stats(store, d)?).unwrap_or_default());
    }
    Ok(json!({ "destinations": out }))
}

pub async fn list_entries(
    store: &Store,
    committer: &CommitterHandle,
    destination: Option<&str>,
    dead: bool,
    limit: usize,
) -> Result<Value, StoreError> {
    events::operator_action("outbox_list", destination.unwrap_or("*"));
    audit_command(
        committer,
        "outbox list",
        json!({"destination": destination, "dead": dead}),
    )
    .await?;
    Ok(json!({ "entries": list(store, destination, dead, limit)? }))
}

pub async fn show_entry(
    store: &Store,
    committer: &CommitterHandle,
    key: &str,
) -> Result<Option<Value>, StoreError> {
    events::operator_action("outbox_show", key);
    audit_command(committer, "outbox show", json!({"key": key})).await?;
    show(store, key)
}

/// Move dead letters back into the queue (same idempotency keys), durably and audited.
pub async fn replay(
    store: &Store,
    committer: &CommitterHandle,
    destination: Option<&str>,
) -> Result<Value, StoreError> {
    let (writes, removes, count) = replay_writes(store, destination)?;
    events::operator_action("outbox_replay", destination.unwrap_or("*"));
    let mut data = Map::new();
    data.insert("destination".into(), json!(destination.unwrap_or("*")));
    data.insert("replayed".into(), json!(count));
    let head = committer
        .apply("operator_outbox_replay", data, writes, removes, Vec::new())
        .await?;
    committer.outbox_notify.notify_waiters();
    Ok(json!({ "replayed": count, "audit": head }))
}
