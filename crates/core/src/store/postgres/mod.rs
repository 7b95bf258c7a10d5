//! The shared engine: PostgreSQL (15 and later, and the engines that speak its protocol), so
//! several gateway nodes run on one database with no single point of failure.
//!
//! Layout: the same ordered key-value space as the embedded engine, in one table `cg_kv (k bytea
//! primary key, v bytea)` (bytea compares byte by byte, so scans come in the queues' order), plus
//! `cg_writer` (an epoch bumped by every write set), the sequence `cg_ids`, the lease table
//! `cg_leases` and `cg_schema` (the schema version). The schema files in `schema/` ship with the
//! binary and are applied at start, in order, under an advisory lock (two nodes starting at once
//! apply each once).
//!
//! Several nodes, one writer at a time: a node's writer takes the session advisory lock
//! [`WRITER_LOCK`] on a connection of its own in [`Engine::begin_group`], reads and stages, and
//! applies its write set in one transaction on that same connection; [`Engine::end_group`]
//! unlocks. If that connection dies, PostgreSQL drops the lock with it and the transaction fails:
//! nothing is half-written and no two writers ever overlap. So idempotency checks, the audit
//! chain's head and queue order hold across nodes exactly as they do in one process. The epoch
//! tells a writer whether another node wrote since it did (then it reloads what it keeps in
//! memory). Identifiers come from `cg_ids` in blocks of 1024 that a writer drops whenever another
//! node wrote meanwhile, so numbers grow in commit order across nodes.
//!
//! Durability: a write set is acknowledged after its `COMMIT` returns, which with PostgreSQL's
//! default `synchronous_commit = on` means it is in the write-ahead log on disk (and on the
//! synchronous standbys the operator configures). [`Engine::flush`] has nothing left to do.
//!
//! Leases ([`Engine::lease`]) are rows judged by the database's clock, so nodes' clocks need not
//! agree. A node that dies keeps its leases until they expire; another node then takes them.
//!
//! Threads: the engine owns a small tokio runtime for the driver and its pool; the [`Engine`]
//! methods are called from blocking threads (never the server's async workers) and wait on a
//! channel, never on a nested runtime. Every wait is bounded by [`OP_TIMEOUT`].
//!
//! Never does: interpret a key or a value.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::{ManagerConfig, Pool, PoolConfig, RecyclingMethod, Timeouts};
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::engine::{Engine, Exclusive, Pair, Pairs, WriteSet};
use super::StoreError;

/// The advisory lock a node's writer holds from `begin_group` to `end_group`.
pub const WRITER_LOCK: i64 = 0x4347_5752_4954_4552; // "CGWRITER"
/// The advisory lock held while the schema is brought up to date.
const SCHEMA_LOCK: i64 = 0x4347_5343_4845_4d41; // "CGSCHEMA"
/// Longest wait for any one database operation (the writer's lock included).
pub const OP_TIMEOUT: Duration = Duration::from_secs(60);
/// Pairs read per round trip by a scan.
const SCAN_PAGE: i64 = 512;
/// Identifiers taken from `cg_ids` at once (its increment).
const ID_BLOCK: u64 = 1024;

/// The schema files, in order; `cg_schema` records how many are applied.
const SCHEMA: &[(&str, &str)] = &[
    ("0001_key_value", include_str!("schema/0001_key_value.sql")),
    (
        "0002_writer_identity",
        include_str!("schema/0002_writer_identity.sql"),
    ),
];

/// How to reach the database (`storage.postgres_*`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `postgres://user:password@host:port/database` (or key=value form); never logged.
    pub url: String,
    /// Connections in the pool (the writer's own connection comes on top).
    pub pool_size: usize,
    /// The CA (PEM) that signed the database server's certificate: with it, connections use TLS
    /// (rustls, ring), the certificate chain and the host name checked; `sslmode=require` in the
    /// URL then refuses a server that offers no TLS. Without it, no TLS.
    pub ca: Option<std::path::PathBuf>,
}

/// How connections are made: in clear, or TLS checked against the configured CA.
#[derive(Clone)]
enum Tls {
    Plain,
    Rustls(MakeRustlsConnect),
}

impl Tls {
    fn from(ca: Option<&std::path::Path>) -> Result<Self, StoreError> {
        use rustls_pki_types::pem::PemObject;
        let Some(ca) = ca else {
            return Ok(Tls::Plain);
        };
        let bad = |e: &dyn std::fmt::Display| {
            StoreError::Database(format!("storage.postgres_ca {}: {e}", ca.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
        if roots.is_empty() {
            return Err(bad(&"holds no certificate"));
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Tls::Rustls(MakeRustlsConnect::new(config)))
    }
}

/// PostgreSQL behind the [`Engine`] seam.
pub struct PostgresEngine {
    runtime: Option<tokio::runtime::Runtime>,
    /// Where the database is (for connections of their own: the writer's, the schema's).
    pg: tokio_postgres::Config,
    tls: Tls,
    pool: Pool,
    writer: Mutex<WriterState>,
    /// The block of identifiers being handed out: `next..end`.
    ids: Mutex<(u64, u64)>,
    /// This process's writer, recorded with every write set it commits (random, per process).
    writer_id: String,
    /// The readiness probe's own connection.
    probe: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PostgresEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresEngine")
    }
}

#[derive(Default)]
struct WriterState {
    /// The writer's own connection (never the pool's: dropping it, even mid-operation, closes
    /// it, so a lock it holds can never be handed on), holding [`WRITER_LOCK`] while `locked`.
    conn: Option<Client>,
    locked: bool,
    /// The epoch this node's writer last wrote (None: none yet).
    epoch: Option<i64>,
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

impl PostgresEngine {
    /// Connect, and bring the schema up to date.
    pub fn open(options: &Options) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database(format!("cannot start the driver's runtime: {e}")))?;
        let mut pg: tokio_postgres::Config = options
            .url
            .parse()
            .map_err(|e| StoreError::Database(format!("storage.postgres_url: {e}")))?;
        // With a CA given, TLS is required: `prefer` would fall back to clear text for anyone
        // who strips TLS off the connection.
        if options.ca.is_some() && pg.get_ssl_mode() == tokio_postgres::config::SslMode::Prefer {
            pg.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        // The client side notices a vanished server too.
        pg.keepalives(true);
        pg.keepalives_idle(Duration::from_secs(30));
        pg.connect_timeout(Duration::from_secs(10));
        let tls = Tls::from(options.ca.as_deref())?;
        let recycling = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Tls::Plain => deadpool_postgres::Manager::from_config(pg.clone(), NoTls, recycling()),
            Tls::Rustls(t) => {
                deadpool_postgres::Manager::from_config(pg.clone(), t.clone(), recycling())
            }
        };
        let timeouts = Timeouts {
            wait: Some(OP_TIMEOUT),
            create: Some(Duration::from_secs(10)),
            recycle: Some(Duration::from_secs(10)),
        };
        let pool = {
            let _enter = runtime.enter();
            Pool::builder(manager)
                .config(PoolConfig {
                    max_size: options.pool_size.max(2),
                    timeouts,
                    ..Default::default()
                })
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(db)?
        };
        let engine = Self {
            runtime: Some(runtime),
            pg,
            tls,
            pool,
            writer: Mutex::new(WriterState::default()),
            ids: Mutex::new((0, 0)),
            writer_id: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            probe: Mutex::new(None),
        };
        engine.migrate_schema()?;
        Ok(engine)
    }

    /// Run `fut` on the driver's runtime and wait for it (bounded by [`OP_TIMEOUT`]).
    fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| StoreError::Database("the engine is closed".into()))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let out = match tokio::time::timeout(OP_TIMEOUT, fut).await {
                Ok(out) => out,
                Err(_) => Err(StoreError::Database(format!(
                    "no answer within {} s",
                    OP_TIMEOUT.as_secs()
                ))),
            };
            let _ = tx.send(out);
        });
        rx.recv()
            .map_err(|_| StoreError::Database("the driver's runtime stopped".into()))?
    }

    fn migrate_schema(&self) -> Result<(), StoreError> {
        let (pg, tls) = (self.pg.clone(), self.tls.clone());
        let applied = self.block(async move {
            // A connection of its own: the session lock goes with it.
            let mut conn = connect(&pg, &tls).await?;
            conn.execute("SELECT pg_advisory_lock($1)", &[&SCHEMA_LOCK])
                .await
                .map_err(db)?;
            apply_schema(&mut conn).await
        })?;
        for name in applied {
            tracing::info!(schema = name, "database schema applied");
        }
        Ok(())
    }

    /// The writer's connection, opened when missing.
    fn writer_conn(&self, state: &mut WriterState) -> Result<(), StoreError> {
        if state.conn.as_ref().is_some_and(|c| c.is_closed()) {
            state.conn = None;
        }
        if state.conn.is_none() {
            let (pg, tls) = (self.pg.clone(), self.tls.clone());
            state.conn = Some(self.block(async move { connect(&pg, &tls).await })?);
        }
        Ok(())
    }

    /// Run `op` on the writer's connection: it is kept on success, and dropped (with any lock it
    /// holds) on error, since an error leaves its state in doubt.
    fn on_writer<T, Fut>(
        &self,
        state: &mut WriterState,
        op: impl FnOnce(Client) -> Fut,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Fut: Future<Output = (Client, Result<T, StoreError>)> + Send + 'static,
    {
        let Some(conn) = state.conn.take() else {
            state.locked = false;
            return Err(StoreError::Database(
                "the writer's connection is gone".into(),
            ));
        };
        let fut = op(conn);
        match self.block(async move { Ok(fut.await) }) {
            Ok((conn, Ok(value))) => {
                state.conn = Some(conn);
                Ok(value)
            }
            Ok((_, Err(e))) | Err(e) => {
                Self::discard_writer(state);
                Err(e)
            }
        }
    }

    /// Drop the writer's connection (an error left it in doubt): PostgreSQL releases its lock.
    fn discard_writer(state: &mut WriterState) {
        state.conn = None;
        state.locked = false;
    }

    fn next_block(&self) -> Result<(u64, u64), StoreError> {
        let pool = self.pool.clone();
        let first = self.block(async move {
            let conn = pool.get().await.map_err(db)?;
            let row = conn
                .query_one("SELECT nextval('cg_ids')", &[])
                .await
                .map_err(db)?;
            Ok(row.get::<_, i64>(0))
        })?;
        let first = u64::try_from(first).map_err(db)?;
        Ok((first, first + ID_BLOCK))
    }

    fn page(
        &self,
        from: Vec<u8>,
        inclusive: bool,
        end: Option<Vec<u8>>,
    ) -> Result<Vec<Pair>, StoreError> {
        let pool = self.pool.clone();
        self.block(async move {
            let conn = pool.get().await.map_err(db)?;
            let op = if inclusive { ">=" } else { ">" };
            let rows = match &end {
                Some(end) => {
                    conn.query(
                        &format!(
                            "SELECT k, v FROM cg_kv WHERE k {op} $1 AND k < $2 ORDER BY k LIMIT $3"
                        ),
                        &[&from, end, &SCAN_PAGE],
                    )
                    .await
                }
                None => {
                    conn.query(
                        &format!("SELECT k, v FROM cg_kv WHERE k {op} $1 ORDER BY k LIMIT $2"),
                        &[&from, &SCAN_PAGE],
                    )
                    .await
                }
            }
            .map_err(db)?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
}

/// A connection outside the pool, driven on the current runtime; dropping the client closes it.
async fn connect(pg: &tokio_postgres::Config, tls: &Tls) -> Result<Client, StoreError> {
    let client = open(pg, tls).await?;
    // These connections hold session locks: let the server notice a node that vanished without
    // closing them (a dead host, a cut network) in about a minute, not the kernel's two hours.
    client
        .batch_execute(
            "SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3",
        )
        .await
        .map_err(db)?;
    Ok(client)
}

async fn open(pg: &tokio_postgres::Config, tls: &Tls) -> Result<Client, StoreError> {
    match tls {
        Tls::Plain => {
            let (client, connection) = pg.connect(NoTls).await.map_err(db)?;
            tokio::spawn(drive(connection));
            Ok(client)
        }
        Tls::Rustls(t) => {
            let (client, connection) = pg.connect(t.clone()).await.map_err(db)?;
            tokio::spawn(drive(connection));
            Ok(client)
        }
    }
}

async fn drive(connection: impl Future<Output = Result<(), tokio_postgres::Error>>) {
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "database connection closed");
    }
}

async fn apply_schema(conn: &mut Client) -> Result<Vec<&'static str>, StoreError> {
    conn.batch_execute("CREATE TABLE IF NOT EXISTS cg_schema (version integer NOT NULL)")
        .await
        .map_err(db)?;
    let version: i32 = conn
        .query_opt("SELECT version FROM cg_schema", &[])
        .await
        .map_err(db)?
        .map(|r| r.get(0))
        .unwrap_or(0);
    if version as usize > SCHEMA.len() {
        return Err(StoreError::NewerFormat {
            found: version as u32,
            known: SCHEMA.len() as u32,
        });
    }
    let mut applied = Vec::new();
    for (i, (name, sql)) in SCHEMA.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().await.map_err(db)?;
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Database(format!("schema {name}: {e}")))?;
        tx.execute("DELETE FROM cg_schema", &[]).await.map_err(db)?;
        tx.execute(
            "INSERT INTO cg_schema (version) VALUES ($1)",
            &[&((i + 1) as i32)],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        applied.push(*name);
    }
    Ok(applied)
}

/// Apply a write set inside a transaction and bump the epoch; returns the new epoch.
async fn write_set(
    tx: &tokio_postgres::Transaction<'_>,
    writer: &str,
    removes: Vec<Vec<u8>>,
    puts: Vec<Pair>,
) -> Result<i64, StoreError> {
    if !removes.is_empty() {
        tx.execute("DELETE FROM cg_kv WHERE k = ANY($1)", &[&removes])
            .await
            .map_err(db)?;
    }
    if !puts.is_empty() {
        let (keys, values): (Vec<Vec<u8>>, Vec<Vec<u8>>) = puts.into_iter().unzip();
        tx.execute(
            "INSERT INTO cg_kv (k, v) SELECT * FROM UNNEST($1::bytea[], $2::bytea[]) \
             ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
            &[&keys, &values],
        )
        .await
        .map_err(db)?;
    }
    let row = tx
        .query_one(
            "UPDATE cg_writer SET epoch = epoch + 1, writer = $1 WHERE id = 1 RETURNING epoch",
            &[&writer],
        )
        .await
        .map_err(db)?;
    Ok(row.get(0))
}

/// The advisory lock of a named exclusive section (never the writer's or the schema's).
fn section_key(name: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// The smallest key greater than every key starting with `prefix` (None: there is none).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A lazy scan: one page per round trip.
struct Scan<'a> {
    engine: &'a PostgresEngine,
    next: Option<(Vec<u8>, bool)>,
    end: Option<Vec<u8>>,
    buffered: std::vec::IntoIter<Pair>,
}

impl Iterator for Scan<'_> {
    type Item = Result<Pair, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(pair) = self.buffered.next() {
            return Some(Ok(pair));
        }
        let (from, inclusive) = self.next.take()?;
        match self.engine.page(from, inclusive, self.end.clone()) {
            Err(e) => Some(Err(e)),
            Ok(page) => {
                if page.len() as i64 == SCAN_PAGE {
                    self.next = page.last().map(|(k, _)| (k.clone(), false));
                }
                self.buffered = page.into_iter();
                self.buffered.next().map(Ok)
            }
        }
    }
}

impl Engine for PostgresEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let (pool, key) = (self.pool.clone(), key.to_vec());
        self.block(async move {
            let conn = pool.get().await.map_err(db)?;
            let row = conn
                .query_opt("SELECT v FROM cg_kv WHERE k = $1", &[&key])
                .await
                .map_err(db)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (pool, asked) = (self.pool.clone(), keys.to_vec());
        let found = self.block(async move {
            let conn = pool.get().await.map_err(db)?;
            let rows = conn
                .query("SELECT k, v FROM cg_kv WHERE k = ANY($1)", &[&asked])
                .await
                .map_err(db)?;
            Ok(rows
                .into_iter()
                .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
                .collect::<std::collections::HashMap<_, _>>())
        })?;
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Pairs<'_> {
        Box::new(Scan {
            engine: self,
            next: Some((prefix.to_vec(), true)),
            end: prefix_end(prefix),
            buffered: Vec::new().into_iter(),
        })
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>) -> Pairs<'_> {
        Box::new(Scan {
            engine: self,
            next: Some((start.to_vec(), true)),
            end: end.map(<[u8]>::to_vec),
            buffered: Vec::new().into_iter(),
        })
    }

    fn last_under(&self, prefix: &[u8]) -> Result<Option<Pair>, StoreError> {
        let (pool, start, end) = (self.pool.clone(), prefix.to_vec(), prefix_end(prefix));
        self.block(async move {
            let conn = pool.get().await.map_err(db)?;
            let row = match &end {
                Some(end) => {
                    conn.query_opt(
                        "SELECT k, v FROM cg_kv WHERE k >= $1 AND k < $2 ORDER BY k DESC LIMIT 1",
                        &[&start, end],
                    )
                    .await
                }
                None => {
                    conn.query_opt(
                        "SELECT k, v FROM cg_kv WHERE k >= $1 ORDER BY k DESC LIMIT 1",
                        &[&start],
                    )
                    .await
                }
            }
            .map_err(db)?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })
    }

    fn apply(&self, writes: WriteSet) -> Result<(), StoreError> {
        let (removes, puts) = writes.into_ops();
        let mut state = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if state.locked {
            // The writer's group: on the connection that holds the lock.
            let writer = self.writer_id.clone();
            let epoch = self.on_writer(&mut state, |mut conn| async move {
                let out = async {
                    let tx = conn.transaction().await.map_err(db)?;
                    let epoch = write_set(&tx, &writer, removes, puts).await?;
                    tx.commit().await.map_err(db)?;
                    Ok(epoch)
                }
                .await;
                (conn, out)
            })?;
            state.epoch = Some(epoch);
            return Ok(());
        }
        drop(state);
        // Outside the writer (start-up migrations, the copy from sled): wait for any writer.
        // Recorded as no writer's, so every writer reloads after it.
        let pool = self.pool.clone();
        self.block(async move {
            let mut conn = pool.get().await.map_err(db)?;
            let tx = conn.transaction().await.map_err(db)?;
            // (A transaction lock: it ends with the transaction, whatever happens.)
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITER_LOCK])
                .await
                .map_err(db)?;
            write_set(&tx, "", removes, puts).await?;
            tx.commit().await.map_err(db)
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every write set is durable when its COMMIT returns.
        Ok(())
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.0 >= ids.1 {
            *ids = self.next_block()?;
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    fn size_on_disk(&self) -> u64 {
        let pool = self.pool.clone();
        self.block(async move {
            let conn = pool.get().await.map_err(db)?;
            let row = conn
                .query_one("SELECT pg_total_relation_size('cg_kv')", &[])
                .await
                .map_err(db)?;
            Ok(row.get::<_, i64>(0))
        })
        .map(|n| n.max(0) as u64)
        .unwrap_or(0)
    }

    fn begin_group(&self) -> Result<bool, StoreError> {
        let mut state = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if state.locked {
            return Ok(false);
        }
        self.writer_conn(&mut state)?;
        let epoch = self.on_writer(&mut state, |conn| async move {
            let out = async {
                conn.execute("SELECT pg_advisory_lock($1)", &[&WRITER_LOCK])
                    .await
                    .map_err(db)?;
                let row = conn
                    .query_one("SELECT epoch, writer FROM cg_writer WHERE id = 1", &[])
                    .await
                    .map_err(db)?;
                Ok((row.get::<_, i64>(0), row.get::<_, String>(1)))
            }
            .await;
            (conn, out)
        })?;
        let (epoch, last_writer) = epoch;
        state.locked = true;
        // Stale unless this writer wrote last: the epoch alone can repeat after a fail-over to a
        // standby that missed the last commits.
        let stale = state.epoch != Some(epoch) || last_writer != self.writer_id;
        if stale {
            // Another node wrote: its numbers may be above this node's block.
            *self.ids.lock().unwrap_or_else(|p| p.into_inner()) = (0, 0);
        }
        Ok(stale)
    }

    fn end_group(&self) {
        let mut state = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if !state.locked {
            return;
        }
        let unlocked = self.on_writer(&mut state, |conn| async move {
            let out = conn
                .execute("SELECT pg_advisory_unlock($1)", &[&WRITER_LOCK])
                .await
                .map(|_| ())
                .map_err(db);
            (conn, out)
        });
        match unlocked {
            Ok(()) => state.locked = false,
            // The connection is dropped with its lock.
            Err(e) => {
                tracing::error!(error = %e, "cannot release the writer's lock; its connection was dropped")
            }
        }
    }

    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (pool, name, holder) = (self.pool.clone(), name.to_string(), holder.to_string());
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.block(async move {
            let conn = pool.get().await.map_err(db)?;
            let row = conn
                .query_opt(
                    "INSERT INTO cg_leases (name, holder, expires_at) \
                     VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond') \
                     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
                     WHERE cg_leases.holder = EXCLUDED.holder OR cg_leases.expires_at < now() \
                     RETURNING holder",
                    &[&name, &holder, &ttl_ms],
                )
                .await
                .map_err(db)?;
            Ok(row.is_some())
        })
    }

    fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (pool, name, holder) = (self.pool.clone(), name.to_string(), holder.to_string());
        self.block(async move {
            let conn = pool.get().await.map_err(db)?;
            conn.execute(
                "DELETE FROM cg_leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn raise_ids(&self, floor: u64) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        let floor = i64::try_from(floor).map_err(db)?;
        self.block(async move {
            let conn = pool.get().await.map_err(db)?;
            conn.execute(
                "SELECT setval('cg_ids', GREATEST($1, (SELECT last_value FROM cg_ids)))",
                &[&floor],
            )
            .await
            .map_err(db)?;
            Ok(())
        })?;
        *self.ids.lock().unwrap_or_else(|p| p.into_inner()) = (0, 0);
        Ok(())
    }

    fn exclusive(&self, name: &str) -> Result<Exclusive, StoreError> {
        let (pg, tls) = (self.pg.clone(), self.tls.clone());
        let key = section_key(name);
        let client = self.block(async move {
            // A connection of its own: closing it (the guard dropped) releases the lock.
            let client = connect(&pg, &tls).await?;
            client
                .execute("SELECT pg_advisory_lock($1)", &[&key])
                .await
                .map_err(db)?;
            Ok(client)
        })?;
        Ok(Exclusive::holding(client))
    }

    fn ping(&self) -> Result<(), StoreError> {
        let mut probe = self.probe.lock().unwrap_or_else(|p| p.into_inner());
        let held = probe.take().filter(|c| !c.is_closed());
        let (pg, tls) = (self.pg.clone(), self.tls.clone());
        let client = self.block(async move {
            let client = match held {
                Some(c) => c,
                None => connect(&pg, &tls).await?,
            };
            client.simple_query("SELECT 1").await.map_err(db)?;
            Ok(client)
        })?;
        *probe = Some(client);
        Ok(())
    }

    fn name(&self) -> &'static str {
        "postgres"
    }
}

impl Drop for PostgresEngine {
    fn drop(&mut self) {
        // Dropping a runtime from async code panics; this never waits.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_its_successor() {
        assert_eq!(prefix_end(b"out/"), Some(b"out0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
