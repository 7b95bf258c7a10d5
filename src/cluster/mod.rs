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
use std::time::Duration;

use tokio::sync::watch;

use crate::store::Store;

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
        match tokio::task::spawn_blocking(move || store.lease(&lease, &name, ttl)).await {
            Ok(Ok(held)) => held,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot take or renew a lease; the work waits");
                false
            }
            Err(_) => false,
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
pub async fn while_held<F, Fut>(
    node: Node,
    lease: String,
    mut stop: watch::Receiver<bool>,
    mut make: F,
) where
    F: FnMut(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if !node.store.shared() {
        let _ = crate::ingest::spawn_off_runtime(make(stop)).await;
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
        tracing::info!(lease = %lease, node = %node.name, "lease taken: this node does the work");
        metrics::gauge!("gateway_lease_held", "lease" => lease.clone()).set(1.0);
        let (worker_stop, worker_stop_rx) = watch::channel(false);
        let mut worker = crate::ingest::spawn_off_runtime(make(worker_stop_rx));
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
        metrics::gauge!("gateway_lease_held", "lease" => lease.clone()).set(0.0);
        if lost {
            tracing::warn!(lease = %lease, node = %node.name, "lease lost: the work stopped here; the node holding it now goes on");
        } else {
            node.release(&lease).await;
            tracing::info!(lease = %lease, node = %node.name, "lease released");
        }
    }
}
