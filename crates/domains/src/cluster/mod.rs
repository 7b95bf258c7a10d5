//! Several nodes, one store: which node does the work that must be done once.
//!
//! Owns: the loop [`while_held`] that runs a background worker (a destination's deliveries, the
//! ledger's timers, evaluation, the deadline trackers) only while this node holds the worker's
//! named lease in the store, renewing it every third of its lifetime, and stops the worker (it
//! drains) as soon as a renewal fails or is refused, before the lease can expire and another node
//! take it. On a clean stop the lease is released, so another node takes over at once; a node
//! that dies keeps its leases until they expire (`storage.lease_ttl_ms`), then another node takes
//! them and resends what the dead node had not seen acknowledged (the idempotency keys make that
//! safe).
//!
//! With an engine only one process opens (sled) every lease is this node's: the worker simply
//! runs.
//!
//! Never does: decide what a worker does, or anything about the writer (the writer's mutual
//! exclusion is the engine's, see `store::engine`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::Store;

/// A background task on a blocking thread of its own for its whole life: workers read the store,
/// which blocks, so they never run on the runtime's worker threads.
pub fn spawn_off_runtime<T: Send + 'static>(
    fut: impl Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(fut))
}

/// How often a node checks that the shared database answers.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A database that has not answered a probe by then counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Check every second that the shared database answers (on a connection of the probe's own, so
/// a busy pool does not count as an outage), and report it through
/// `reachable`: a node that cannot reach the database is not ready, so a load balancer sends the
/// agencies to a node that can (their pushes would fail here anyway). Logged once per change.
/// Does nothing for an engine only this process opens.
pub async fn watch_database(
    store: Store,
    reachable: impl Fn(bool) + Send,
    mut stop: watch::Receiver<bool>,
) {
    if !store.shared() {
        return;
    }
    let mut was = true;
    // A probe still waiting (a database that hangs rather than refuses) is not started again.
    let mut pending: Option<tokio::task::JoinHandle<bool>> = None;
    while !*stop.borrow() {
        let mut probe = pending.take().unwrap_or_else(|| {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.ping().is_ok())
        });
        let now = match tokio::time::timeout(PROBE_TIMEOUT, &mut probe).await {
            Ok(answer) => answer.unwrap_or(false),
            Err(_) => {
                pending = Some(probe);
                false
            }
        };
        if now != was {
            if now {
                tracing::warn!("the database answers again: ready");
            } else {
                tracing::error!("the database does not answer: not ready until it does");
            }
            was = now;
        }
        metrics::gauge!("gateway_database_reachable").set(if now { 1.0 } else { 0.0 });
        reachable(now);
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {},
            _ = stop.changed() => {},
        }
    }
}

/// Builds a worker for one term of its lease; the worker ends when its stop signal flips.
pub type MakeWorker =
    Box<dyn FnMut(watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What happened to a lease on this node.
#[derive(Debug, Clone, Copy)]
enum Change {
    Taken,
    Lost,
    Released,
}

/// The log line and the metrics of a lease change, together.
fn lease_changed(lease: &str, node: &str, change: Change) {
    let held = matches!(change, Change::Taken);
    match change {
        Change::Taken => tracing::info!(lease, node, "lease taken: this node does the work"),
        Change::Lost => tracing::warn!(
            lease,
            node,
            "lease lost: the work stopped here; the node holding it now goes on"
        ),
        Change::Released => tracing::info!(lease, node, "lease released"),
    }
    metrics::gauge!("gateway_lease_held", "lease" => lease.to_string()).set(if held {
        1.0
    } else {
        0.0
    });
    let label = match change {
        Change::Taken => "taken",
        Change::Lost => "lost",
        Change::Released => "released",
    };
    metrics::counter!("gateway_lease_changes_total", "lease" => lease.to_string(), "change" => label).increment(1);
}

/// This node's identity and lease lifetime.
#[derive(Debug, Clone)]
pub struct Node {
    pub store: Store,
    /// The name this node holds leases under (unique per process).
    pub name: String,
    pub ttl: Duration,
}

impl Node {
    /// Take or renew `lease` (off the async workers: the store blocks).
    async fn hold(&self, lease: &str) -> bool {
        let (store, lease, name, ttl) = (
            self.store.clone(),
            lease.to_string(),
            self.name.clone(),
            self.ttl,
        );
        // An answer later than a third of the lifetime counts as a refusal: the work stops well
        // before the lease could expire and another node take it.
        let asked = tokio::task::spawn_blocking(move || store.lease(&lease, &name, ttl));
        match tokio::time::timeout(self.ttl / 3, asked).await {
            Ok(Ok(Ok(held))) => held,
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "cannot take or renew a lease; the work waits");
                false
            }
            Ok(Err(_)) => false,
            Err(_) => {
                tracing::warn!("taking or renewing a lease took too long; the work waits");
                false
            }
        }
    }

    async fn release(&self, lease: &str) {
        let (store, lease, name) = (self.store.clone(), lease.to_string(), self.name.clone());
        let _ = tokio::task::spawn_blocking(move || store.release(&lease, &name)).await;
    }
}

/// Run the worker `make` builds only while this node holds `lease`, until `stop` flips. Each time
/// the lease is (re)taken a new worker is built; when it is lost the worker gets its own stop
/// signal and is waited for.
pub async fn while_held(
    node: Node,
    lease: String,
    mut stop: watch::Receiver<bool>,
    mut make: MakeWorker,
) {
    if !node.store.shared() {
        let _ = spawn_off_runtime(make(stop)).await;
        return;
    }
    let renew_every = node.ttl / 3;
    while !*stop.borrow() {
        if !node.hold(&lease).await {
            tokio::select! {
                _ = tokio::time::sleep(renew_every) => {},
                _ = stop.changed() => {},
            }
            continue;
        }
        lease_changed(&lease, &node.name, Change::Taken);
        let (worker_stop, worker_stop_rx) = watch::channel(false);
        let mut worker = spawn_off_runtime(make(worker_stop_rx));
        let (lost, finished) = loop {
            tokio::select! {
                _ = tokio::time::sleep(renew_every) => {
                    if !node.hold(&lease).await {
                        break (true, false);
                    }
                }
                _ = stop.changed() => break (false, false),
                _ = &mut worker => break (false, true),
            }
        };
        let _ = worker_stop.send(true);
        if !finished {
            let _ = worker.await;
        }
        if lost {
            lease_changed(&lease, &node.name, Change::Lost);
        } else {
            node.release(&lease).await;
            lease_changed(&lease, &node.name, Change::Released);
        }
    }
}
