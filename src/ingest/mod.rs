//! The inbound exchange: agencies push batches over mutual-TLS HTTPS; each record is mapped,
//! validated and, when valid, stored durably in the archive before the agency gets its receipt.
//!
//! Owns: the API listener (TLS handshake with a timeout, bounds on handshakes and open
//! connections, a maximum connection age, see `admission`; header and body read timeouts, body
//! size limit), routing, and the accept path
//! `authenticate -> rate limit -> permission -> read body -> map + validate -> group commit -> receipt`.
//!
//! Never does: answer 200 before the batch is flushed (accept = durable), read a body larger than
//! the limit into memory, or take an agency's identity from anything but its certificate.
//!
//! API (all JSON; errors are `{"error": {"code", "message", "retry"}}`, see `respond`):
//! - `POST /v1/records?mapping=ID` a batch in the mapping's format -> receipt
//! - `POST /v1/files?mapping=ID[&sheet=NAME]` a batch as an `.xlsx` or CSV file -> file receipt
//!   (`files`)
//! - `GET /v1/receipts/{id}` a receipt of the calling agency
//! - `GET /v1/subjects/{id_type}/{id}` a subject's archive (agencies with `read_archive`)
//! - `GET /v1/mappings` the mappings the calling agency may use
//! - `POST /v1/corrections` a correction of an accepted record (GD Art. 31) -> its deadline
//! - `GET /v1/corrections?state=...` corrections with deadlines and states

mod admission;
pub mod batch;
mod body;
pub mod files;
mod folder;
mod mount;
pub mod openapi;
mod push;
pub mod receipt;
pub mod respond;
mod routes;

pub(crate) use routes::percent_decode;

pub use folder::spawn_all as spawn_folders;

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;
use tokio::io::AsyncBufReadExt;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::telemetry::events;

/// Everything a request needs: the node's shared state (`crate::node::Node`, read through
/// `app.store`, `app.live`… by `Deref`) and the agency API's own bounds and token authority.
pub struct App {
    pub node: Arc<crate::node::Node>,
    /// KiB of request bodies in flight (`server.max_inflight_mb`); `None`: unbounded.
    pub inflight: Option<Arc<Semaphore>>,
    /// Files received and read at once (`ingest.files_at_once`).
    pub files: Arc<Semaphore>,
    /// The free-space reserve of the data directory.
    pub disk: Arc<crate::store::space::DiskGuard>,
    /// Verifies authorized-query tokens (GD Art. 21).
    pub authority: crate::evaluation::authz::Authority,
}

impl std::ops::Deref for App {
    type Target = crate::node::Node;
    fn deref(&self) -> &crate::node::Node {
        &self.node
    }
}

/// How long a connection whose request was on its way when shutdown began may take to show its
/// first bytes.
const LATE_FIRST_BYTES: Duration = Duration::from_millis(500);

/// Accept connections until `stop` flips, then let in-flight requests finish within the grace
/// period. See [`admission`] for the bounds a connection meets and how long it may live.
pub async fn serve(
    app: Arc<App>,
    tls: Arc<crate::identity::tls::Reloadable>,
    listener: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let server = &app.config.server;
    let limits = Arc::new(Semaphore::new(server.max_connections));
    let handshakes = admission::Handshakes::new(server.max_handshakes);
    let handshake_timeout = Duration::from_millis(server.tls_handshake_timeout_ms);
    let max_age = Duration::from_millis(server.max_connection_age_ms);
    let drain_bound = Duration::from_millis(server.shutdown_grace_ms);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own ceilings sit at twice ours (`routes::MAX_HEADER_BYTES`): a head between the
    // two reaches our code and gets the JSON 431; only beyond hyper's does hyper answer itself.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(server.header_read_timeout_ms))
        .max_buf_size(2 * routes::MAX_HEADER_BYTES)
        .max_headers(2 * routes::MAX_HEADER_FIELDS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(2 * routes::MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(64)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    // Connections whose first request arrived just after shutdown began: served once, without
    // keep-alive, and waited for below within the same grace period.
    let mut late_builder = builder.clone();
    late_builder.http1().keep_alive(false);
    let late_builder = Arc::new(late_builder);
    // Every connection task holds a clone: shutdown waits for them within the grace period.
    let open_connections = Arc::new(());
    let builder = Arc::new(builder);
    let slots = Arc::new(admission::AgencySlots::new(
        server.max_connections_per_agency,
        admission::UNKNOWN_AGENCY_SLOTS,
    ));
    let first_byte_timeout = Duration::from_millis(server.header_read_timeout_ms);
    loop {
        // Accepting never waits for a permit: silent sockets must not keep agencies in the
        // kernel's queue (issue #31 item 8). The handshake set bounds them instead.
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let (ticket, evicted) = handshakes.admit(peer);
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let app = app.clone();
        let builder = builder.clone();
        let late_builder = late_builder.clone();
        let held = open_connections.clone();
        let slots = slots.clone();
        let limits = limits.clone();
        let mut conn_stop = stop.clone();
        tokio::spawn(async move {
            let _held = held;
            // Until here a connection is one of `max_handshakes`, evicted when newer ones need
            // its place; then it holds one of `max_connections`.
            // One deadline from the accept for the first byte and the handshake together.
            let deadline = tokio::time::Instant::now() + handshake_timeout;
            let established = async {
                tokio::time::timeout_at(deadline, stream.readable())
                    .await
                    .map_err(|_| "timed out before its first byte".to_string())?
                    .map_err(|e| e.to_string())?;
                ticket.speaking();
                // The verifiers first: a reload between the two then makes the connection check
                // itself again, never skip a reload it did not handshake under.
                let verifiers = tls.verifiers();
                let acceptor = TlsAcceptor::from(tls.current());
                let tls = tokio::time::timeout_at(deadline, acceptor.accept(stream))
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .map_err(|e| crate::identity::tls::describe_handshake_error(&e))?;
                let permit = tokio::time::timeout(first_byte_timeout, limits.acquire_owned())
                    .await
                    .map_err(|_| "max_connections reached".to_string())?
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((tls, verifiers, permit))
            };
            let (tls, verifiers, _permit) = tokio::select! {
                r = established => match r {
                    Ok(ok) => ok,
                    Err(e) => return events::handshake_failed(peer, &e),
                },
                _ = evicted => return,
            };
            drop(ticket);
            let chain: Vec<_> = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.to_vec())
                .unwrap_or_default();
            let agency = chain
                .first()
                .and_then(|cert| app.live.registry.current().identify(cert.as_ref()));
            let who = agency.as_ref().map(|a| a.id.clone());
            let Some(_slot) = slots.take(who.as_deref()) else {
                events::connection_refused(
                    who.as_deref().unwrap_or("unknown"),
                    "agency_slots_full",
                );
                // Answer the one request it sends (503, Retry-After) rather than just closing, so
                // a client backs off instead of reconnecting in a loop; then close.
                let svc = hyper::service::service_fn(|_req| async {
                    let mut resp = respond::ApiError::AgencyConnectionsFull.into_response();
                    resp.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc);
                let _ = tokio::time::timeout(first_byte_timeout, conn).await;
                return;
            };
            // hyper's header timeout starts at the first byte: a client that completes TLS and
            // then says nothing is cut off here instead of holding its slot for ever.
            let mut io = tokio::io::BufReader::new(tls);
            // A connection that has sent nothing when shutdown begins is closed. Bytes already
            // waiting win over the stop signal (`biased`), and bytes still on their way get a
            // short moment: a request sent before the stop is served, whatever order the stop
            // and its bytes reach this task in (under load, the stop can come first).
            let first = tokio::select! {
                biased;
                r = tokio::time::timeout(first_byte_timeout, io.fill_buf()) => Some(r),
                _ = conn_stop.changed() => None,
            };
            let (sent, late) = match first {
                Some(r) => (matches!(r, Ok(Ok(bytes)) if !bytes.is_empty()), false),
                None => {
                    let late = tokio::time::timeout(LATE_FIRST_BYTES, io.fill_buf()).await;
                    if !matches!(late, Ok(Ok(bytes)) if !bytes.is_empty()) {
                        return;
                    }
                    (true, true)
                }
            };
            // The stop came while this connection was being set up (its handshake, its first
            // bytes): the request already here is served once, as a late connection.
            let late = late || *conn_stop.borrow();
            if !sent {
                return events::connection_refused(
                    who.as_deref().unwrap_or("unknown"),
                    "silent_client",
                );
            }
            events::connection_opened();
            let svc = routes::service(app, agency, peer);
            if late {
                let conn = late_builder.serve_connection(TokioIo::new(io), svc);
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return events::connection_closed();
            }
            let conn = builder.serve_connection(TokioIo::new(io), svc).into_owned();
            tokio::pin!(conn);
            let lifetime = admission::Lifetime {
                stop: conn_stop,
                // A certificate naming no agency only ever gets 403: its connection lives no
                // longer than one header timeout.
                max_age: if who.is_some() {
                    max_age
                } else {
                    first_byte_timeout
                },
                verifiers,
                chain,
            };
            // The connection first: its first poll reads the request already buffered, so a stop
            // that lands between the check above and here meets a request in progress (kept to its
            // end) rather than one still choosing its protocol, which a graceful shutdown cancels
            // outright, closing a connection whose request had already arrived.
            let result = tokio::select! {
                biased;
                r = conn.as_mut() => r,
                close = lifetime.ends() => {
                    if close != admission::Close::Shutdown {
                        events::connection_closing(who.as_deref().unwrap_or("unknown"), close.why());
                    }
                    // In-flight requests finish (HTTP/2: GOAWAY; HTTP/1.1: `Connection: close`),
                    // within a bound.
                    conn.as_mut().graceful_shutdown();
                    tokio::time::timeout(drain_bound, conn.as_mut())
                        .await
                        .unwrap_or(Ok(()))
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            events::connection_closed();
        });
    }
    drop(listener);
    let grace = Duration::from_millis(app.config.server.shutdown_grace_ms);
    let deadline = tokio::time::Instant::now() + grace;
    while Arc::strong_count(&open_connections) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if Arc::strong_count(&open_connections) > 1 {
        tracing::warn!("grace period over; closing remaining connections");
    } else {
        tracing::info!("all connections closed");
    }
}

/// Run a future on the blocking pool, driven by the current runtime: every storage call (sled) it
/// makes happens there, never on the runtime's worker threads, so TLS handshakes, `/healthz`,
/// `/readyz` and `/metrics` answer whatever the store does. `None` if the task panicked.
///
/// At most [`BLOCKING_REQUESTS`] run at once; the rest wait here, on the runtime, holding no
/// thread. Each may start one more blocking task of its own (parsing, a scan), so requests,
/// their nested tasks and the background workers together stay far below tokio's 512 blocking
/// threads: a request never waits for a thread that other requests hold.
pub(crate) async fn off_runtime<T: Send + 'static>(
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> Option<T> {
    let permit = BLOCKING_SLOTS.acquire().await.ok()?;
    let handle = tokio::runtime::Handle::current();
    let out = tokio::task::spawn_blocking(move || handle.block_on(fut))
        .await
        .ok();
    drop(permit);
    out
}

/// Requests handled on the blocking pool at once (see [`off_runtime`]).
pub const BLOCKING_REQUESTS: usize = 128;
static BLOCKING_SLOTS: Semaphore = Semaphore::const_new(BLOCKING_REQUESTS);

/// A background task on a blocking thread of its own for its whole life (see [`off_runtime`]).
pub use crate::cluster::spawn_off_runtime;

/// Bind the API port.
pub async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
