//! Operator commands on the outbox (`credit-gateway outbox ...`), shared by the CLI (gateway
//! stopped: it opens the data directory itself) and the admin API (gateway running: the CLI asks
//! it). Every command is logged; replay, which changes the queue, is also audited.

use serde_json::{json, Map, Value};

use super::{list, replay_writes, show, stats};
use crate::store::{CommitterHandle, Store, StoreError};
use crate::telemetry::events;

pub fn stats_all(store: &Store, destinations: &[String]) -> Result<Value, StoreError> {
    events::operator_action("outbox_stats", "");
    let mut out = Vec::new();
    for d in destinations {
        out.push(serde_json::to_value(stats(store, d)?).unwrap_or_default());
    }
    Ok(json!({ "destinations": out }))
}

pub fn list_entries(store: &Store, destination: Option<&str>, dead: bool, limit: usize) -> Result<Value, StoreError> {
    events::operator_action("outbox_list", destination.unwrap_or("*"));
    Ok(json!({ "entries": list(store, destination, dead, limit)? }))
}

pub fn show_entry(store: &Store, key: &str) -> Result<Option<Value>, StoreError> {
    events::operator_action("outbox_show", key);
    show(store, key)
}

/// Move dead letters back into the queue (same idempotency keys), durably and audited.
pub async fn replay(store: &Store, committer: &CommitterHandle, destination: Option<&str>) -> Result<Value, StoreError> {
    let (writes, removes, count) = replay_writes(store, destination)?;
    events::operator_action("outbox_replay", destination.unwrap_or("*"));
    let mut data = Map::new();
    data.insert("destination".into(), json!(destination.unwrap_or("*")));
    data.insert("replayed".into(), json!(count));
    let head = committer.apply("operator_outbox_replay", data, writes, removes, Vec::new()).await?;
    committer.outbox_notify.notify_waiters();
    Ok(json!({ "replayed": count, "audit": head }))
}
