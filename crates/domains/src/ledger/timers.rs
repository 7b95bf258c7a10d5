//! Durable timers: a record whose public-notice window or retention ends has a `tmr/` key for
//! that instant, written with the ledger change that scheduled it. A worker wakes every
//! `lifecycle.check_interval_ms`, takes every timer due on the one clock, re-plans those records
//! and has the writer apply the difference and remove the timers in one atomic step. A timer that
//! fires twice (a crash between the two) does nothing the second time: the ledger already shows
//! the withdrawal. Timers survive restarts because they are in the store.

use std::time::Duration;

use serde_json::{json, Map};

use super::recheck;
use crate::audit::AuditEvent;
use crate::clock::SharedClock;
use crate::exchange::CommitterHandle;
use crate::ledger::stage::{Reconcile, ReconcileJob};
use crate::sharing::SharedRouter;
use crate::store::{Store, StoreError, SEP};
use crate::subject::IdentifierExceptions;
use crate::telemetry::events;

/// Timers fired per writer job.
const BATCH: usize = 256;

#[derive(Clone)]
pub struct Timers {
    pub store: Store,
    pub committer: CommitterHandle,
    pub router: SharedRouter,
    pub exceptions: IdentifierExceptions,
    pub clock: SharedClock,
    pub interval: Duration,
}

impl Timers {
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        while !*stop.borrow() {
            if let Err(e) = self.fire_due().await {
                tracing::error!(error = %e, "lifecycle timers: cannot fire; trying again");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {},
                _ = stop.changed() => {},
            }
        }
    }

    /// Fire every timer due now; returns how many fired.
    pub async fn fire_due(&self) -> Result<usize, StoreError> {
        let mut fired = 0;
        loop {
            let now = self.clock.now();
            let (store, router, exceptions) = (
                self.store.clone(),
                self.router.current(),
                self.exceptions.clone(),
            );
            let (timer_keys, items) = tokio::task::spawn_blocking(move || {
                let due = due(&store, now.unix_timestamp(), BATCH)?;
                let mut items = Vec::new();
                for (_, agency, record_id) in &due {
                    // One unreadable record must not hold back every other timer: it is
                    // reported (and counted) and its timer consumed.
                    match recheck::item(&store, &router, &exceptions, agency, record_id, None, now)
                    {
                        Ok(Some(item)) => items.push(item),
                        Ok(None) => {}
                        Err(e) => events::recheck_failed(record_id, &e.to_string()),
                    }
                }
                Ok::<_, StoreError>((
                    due.into_iter().map(|(k, _, _)| k).collect::<Vec<_>>(),
                    items,
                ))
            })
            .await
            .map_err(|e| StoreError::CommitFailed(e.to_string()))??;
            if timer_keys.is_empty() {
                return Ok(fired);
            }
            let n = timer_keys.len();
            let mut data = Map::new();
            data.insert("timers".into(), json!(n));
            let (queued, _) = self
                .committer
                .reconcile(
                    ReconcileJob::new(AuditEvent::LifecycleTimer, data)
                        .items(items)
                        .removes(timer_keys),
                )
                .await?;
            crate::ledger::report_queued("timer", &queued);
            fired += n;
            if n < BATCH {
                return Ok(fired);
            }
        }
    }
}

/// Timers due at or before `now` (Unix seconds): (key, agency, record id), oldest first.
fn due(store: &Store, now: i64, limit: usize) -> Result<Vec<(String, String, String)>, StoreError> {
    use crate::store::keys::{due_bound, parse_instant_key};
    let end = due_bound(super::TIMER_PREFIX, now);
    let mut out = Vec::new();
    for item in store.range_raw(super::TIMER_PREFIX.as_bytes(), Some(end.as_bytes())) {
        let (k, _) = item?;
        let key = String::from_utf8_lossy(&k).into_owned();
        let parsed = parse_instant_key(super::TIMER_PREFIX, &key)
            .and_then(|(_, rest)| rest.split_once(SEP))
            .map(|(agency, record_id)| (agency.to_string(), record_id.to_string()));
        if parsed.is_none() {
            return Err(StoreError::corrupt(&k, "not a timer key"));
        }
        if let Some((agency, record_id)) = parsed {
            out.push((key.clone(), agency, record_id));
        }
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}
