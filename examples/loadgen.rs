//! The benchmark: drives the real `credit-gateway serve` on loopback with generated certificates,
//! then the raw bound (`examples/bound.rs`) with the same load, and prints the figures.
//!
//! ```sh
//! cargo build --release --bins --examples
//! target/release/examples/loadgen --clients 16 --batch 100 --duration 60        # closed loop: the maximum
//! target/release/examples/loadgen --rate 20000 --duration 30 --skip-bound        # open loop: latency at a load
//! target/release/examples/loadgen --engine postgres --nodes 2 --skip-bound       # two nodes on one PostgreSQL
//! target/release/examples/loadgen --suite international --skip-bound            # the other crypto suite
//! ```
//!
//! With `--engine postgres` the gateway runs on a throwaway PostgreSQL cluster (`tests/support`:
//! initdb into a temporary folder, removed afterwards); `--nodes N` starts N gateway processes
//! on that one database, and client `c` pushes to node `c % N`.
//!
//! Phases: (1) ingest: C agency clients (mutual TLS, keep-alive) push batches of B canonical
//! records of about 600 bytes (Chinese text, valid identifiers) while the platform receiver is
//! down, so every acknowledged record also leaves a share in the outbox; (2) a correction is posted
//! behind that backlog and the receiver comes back: time for the correction to arrive, then the
//! drain rate; (3) the bound, same load. It prints records/s, batch latency p50/p90/p99/max,
//! rejected and failed counts, the gateway's peak RSS and CPU seconds (from /proc) and disk bytes
//! per record.

#[path = "../tests/support/identifiers.rs"]
mod identifiers;

#[path = "../tests/support/receiver.rs"]
mod receiver;

#[path = "../tests/support/postgres.rs"]
mod postgres;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use receiver::{Mode, Receiver};

#[derive(Parser, Clone)]
struct Args {
    /// Concurrent agency clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Seconds of load per phase.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Stop each phase after this many records instead.
    #[arg(long)]
    records: Option<u64>,
    /// Open loop: offered load in records per second (default: closed loop, as fast as possible).
    #[arg(long)]
    rate: Option<u64>,
    #[arg(long, default_value = "target/release/credit-gateway")]
    gateway: PathBuf,
    #[arg(long, default_value = "target/release/examples/bound")]
    bound: PathBuf,
    #[arg(long)]
    skip_bound: bool,
    /// Measure only the bound.
    #[arg(long)]
    skip_gateway: bool,
    /// Configure no destination platform: ingest without any outbox writes.
    #[arg(long)]
    no_share: bool,
    #[arg(long)]
    skip_delivery: bool,
    /// `server.max_inflight_mb` of the gateway (0: unbounded); default: the gateway's default.
    #[arg(long)]
    max_inflight_mb: Option<u64>,
    /// `storage.cache_mb` of the gateway (sled's page cache); default: the gateway's default.
    #[arg(long)]
    cache_mb: Option<u64>,
    /// `process_crash` or `power_loss`.
    #[arg(long, default_value = "process_crash")]
    durability: String,
    /// Where the data goes (default: a fresh folder under target/).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Footprint mode: write this many records straight into the archive (no HTTP), then time
    /// the gateway's start to ready and its memory on that data set.
    #[arg(long)]
    bulk: Option<u64>,
    /// `sled` (embedded) or `postgres` (a throwaway local cluster).
    #[arg(long, default_value = "sled")]
    engine: String,
    /// Gateway processes on the one database (PostgreSQL only).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Credit evaluation during the run: `off` (evaluation.enabled = false), `idle` (the shipped
    /// profiles, none of which is in force today: changes are taken up, nothing is scored) or
    /// `active` (a copy of the Guangdong profiles in force from 2026-07-01: every changed subject is
    /// re-evaluated while the load runs).
    #[arg(long, default_value = "idle")]
    evaluation: String,
    /// `crypto.suite` of the gateway: `national` (SM3, SM2, SM4-GCM; the default) or
    /// `international` (SHA-256, Ed25519, AES-256-GCM). Run once with each to compare them.
    #[arg(long, default_value = "national")]
    suite: String,
}

#[derive(Default)]
struct Totals {
    accepted: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

/// `--cache-mb`, for every gateway configuration written.
static CACHE_MB: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
/// `--suite`, for every gateway configuration written.
static SUITE: std::sync::OnceLock<credit_gateway::crypto::Suite> = std::sync::OnceLock::new();
/// The PostgreSQL database of this run, when `--engine postgres`.
static DATABASE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let _ = CACHE_MB.set(args.cache_mb);
    let suite = match args.suite.as_str() {
        "national" => credit_gateway::crypto::Suite::National,
        "international" => credit_gateway::crypto::Suite::International,
        other => return Err(format!("--suite {other}: national or international").into()),
    };
    let _ = SUITE.set(suite);
    println!("crypto suite: {}", args.suite);
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/loadgen-{}", std::process::id())));
    std::fs::create_dir_all(&dir)?;
    let certs = dir.join("certs");
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    credit_gateway::identity::certs::init(
        &certs,
        &["medical_insurance".into(), "credit-gateway".into()],
        &names,
        time::OffsetDateTime::now_utc(),
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(n) = args.bulk {
        return footprint(&args, &dir, &certs, n, &rt);
    }
    let postgres = args.engine == "postgres";
    if args.nodes > 1 && !postgres {
        return Err("--nodes above 1 needs --engine postgres".into());
    }
    let _ = DATABASE.set(postgres.then(|| postgres::cluster().database()));
    println!(
        "# credit-gateway benchmark  ({} clients, batches of {}, {}, durability {}, engine {}, {} node{})",
        args.clients,
        args.batch,
        args.rate
            .map(|r| format!("open loop at {r} records/s"))
            .unwrap_or_else(|| "closed loop".into()),
        args.durability,
        args.engine,
        args.nodes,
        if args.nodes == 1 { "" } else { "s" }
    );
    println!("machine: {} cores, {}", num_cpus(), cpu_model());

    // Phase 1: the gateway, with the platform down so every share waits in the outbox.
    let mut result = LoadResult {
        accepted: 0,
        rejected: 0,
        failed: 0,
        elapsed: Duration::from_secs(1),
        latencies_us: Vec::new(),
    };
    if !args.skip_gateway {
        let receiver = start_receiver(&rt, &certs)?;
        receiver.set_mode(Mode::Unavailable, None);
        let config_path = write_config_with(
            &args.evaluation,
            &dir,
            &certs,
            &receiver,
            &args.durability,
            args.max_inflight_mb,
        )?;
        let mut gateways = Vec::new();
        let mut apis = Vec::new();
        for node in 0..args.nodes {
            let path = node_config(&config_path, &dir, node)?;
            let started = Instant::now();
            let (gateway, api, _admin) = spawn_ready(
                Command::new(&args.gateway)
                    .arg("--config")
                    .arg(&path)
                    .arg("serve"),
                "credit-gateway ready:",
            )?;
            println!(
                "gateway node {node} ready in {:.0} ms",
                started.elapsed().as_secs_f64() * 1000.0
            );
            gateways.push(gateway);
            apis.push(api);
        }
        let pids: Vec<u32> = gateways.iter().map(Child::id).collect();
        let cpu_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
        result = rt.block_on(load(&args, &apis, &certs));
        let cpu = pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - cpu_before;
        let rss: u64 = pids.iter().map(|p| peak_rss_kib(*p)).sum();
        report("gateway", &result, Some((rss, cpu)));
        if pids.len() > 1 {
            let each: Vec<String> = pids
                .iter()
                .map(|p| format!("{} MiB", peak_rss_kib(*p) / 1024))
                .collect();
            println!("gateway: peak RSS per node {}", each.join(", "));
        }
        let data_bytes = match DATABASE.get() {
            Some(Some(url)) => database_size(url),
            _ => dir_size(&dir.join("data")),
        };
        let accepted = result.accepted;
        if accepted > 0 {
            println!("disk: {:.0} bytes per record ({} MiB for {accepted} records, archive + outbox + audit)", data_bytes as f64 / accepted as f64, data_bytes / (1 << 20));
        }

        // Phase 2: a correction behind the backlog, then the drain.
        if !args.skip_delivery && accepted > 0 {
            rt.block_on(delivery(&apis[0], &certs, &receiver, accepted));
        }
        for gateway in &mut gateways {
            stop(gateway);
        }
    }

    // Phase 3: the bound.
    if !args.skip_bound {
        let bound_data = dir.join("bound-data");
        let (mut bound, bound_api, _) = spawn_ready(
            Command::new(&args.bound)
                .arg("--certs")
                .arg(&certs)
                .arg("--data")
                .arg(&bound_data),
            "bound ready:",
        )?;
        let bpid = bound.id();
        let cpu_before = cpu_seconds(bpid);
        let bound_result = rt.block_on(load(&args, &[bound_api], &certs));
        report(
            "bound",
            &bound_result,
            Some((peak_rss_kib(bpid), cpu_seconds(bpid) - cpu_before)),
        );
        stop(&mut bound);
        if result.failed > 0 || bound_result.failed > 0 {
            // A side whose requests failed (a full disk, say) did not measure what it claims.
            println!("gateway / bound: not computed, a side had failed requests");
        } else if bound_result.rate() > 0.0 {
            println!(
                "gateway / bound: {:.2}",
                result.rate() / bound_result.rate()
            );
        }
    }
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// The reference platform receiver on loopback with the benchmark's certificates.
fn start_receiver(
    rt: &tokio::runtime::Runtime,
    certs: &Path,
) -> Result<Receiver, Box<dyn std::error::Error>> {
    Ok(rt.block_on(Receiver::start_with(
        "127.0.0.1:0",
        &certs.join("ca.pem"),
        &certs.join("server.pem"),
        &certs.join("server-key.pem"),
        false,
    ))?)
}

/// Bulk-load `n` records through the gateway's own commit path, then start the gateway on them.
fn footprint(
    args: &Args,
    dir: &Path,
    certs: &Path,
    n: u64,
    rt: &tokio::runtime::Runtime,
) -> Result<(), Box<dyn std::error::Error>> {
    use credit_gateway::ingest::batch::{AcceptedInput, BatchJob};
    use credit_gateway::store::Store;
    let data = dir.join("data");
    let existing = credit_gateway::archive::count_versions(&Store::open(&data)?)?;
    if (existing as u64) < n {
        let store = Store::open(&data)?;
        let (committer, handle) = credit_gateway::exchange::start(
            store.clone(),
            std::sync::Arc::new(credit_gateway::clock::SystemClock),
        )?;
        let mapping = credit_gateway::mapping::MappingSet::builtin()
            .map_err(|_| "mappings")?
            .get("canonical")
            .cloned()
            .ok_or("canonical")?;
        let ctx = credit_gateway::record::ValidationContext {
            authenticated_agency: Some("medical_insurance".into()),
            incoming: true,
            ..Default::default()
        };
        let started = Instant::now();
        let per_job = 5000u64;
        let mut done = existing as u64;
        while done < n {
            let body = batch_body(
                1_000_000 + (done / per_job) as usize,
                done / per_job,
                per_job as usize,
            );
            let accepted: Vec<AcceptedInput> = mapping
                .normalize(&body, &ctx)
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter_map(|r| {
                    r.outcome.ok().map(|record| {
                        Ok::<_, credit_gateway::store::StoreError>(AcceptedInput {
                            prepared: credit_gateway::archive::Prepared::new(
                                &store,
                                &record.canonical_bytes(),
                            )?,
                            index: r.index,
                            record,
                            plan: Default::default(),
                        })
                    })
                })
                .collect::<Result<_, _>>()?;
            let total = accepted.len();
            rt.block_on(credit_gateway::ingest::batch::commit(
                &handle,
                BatchJob {
                    receipt_id: format!("bulk-{done}"),
                    agency: "medical_insurance".into(),
                    mapping: "canonical".into(),
                    received_at: time::macros::datetime!(2025-01-06 00:00 +8),
                    body_sha256: String::new(),
                    total,
                    accepted,
                    rejected: Default::default(),
                    filter: Default::default(),
                    file: None,
                },
            ))?;
            done += per_job;
            if done.is_multiple_of(500_000) {
                println!(
                    "bulk-loaded {done} records ({:.0}/s)",
                    done as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
        drop(handle);
        committer.join();
        store.flush()?;
        println!(
            "bulk load: {n} records in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    drop(Store::open(&data).ok());
    std::thread::sleep(Duration::from_millis(500));
    let receiver = start_receiver(rt, certs)?;
    let config_path = write_config(dir, certs, &receiver, &args.durability, None)?;
    let started = Instant::now();
    let (mut gateway, api, _) = spawn_ready(
        Command::new(&args.gateway)
            .arg("--config")
            .arg(&config_path)
            .arg("serve"),
        "credit-gateway ready:",
    )?;
    let ready = started.elapsed();
    let rss_ready = peak_rss_kib(gateway.id());
    // A real request on the big archive: one subject's history.
    let c = client(certs, "medical_insurance");
    let port = api.rsplit(':').next().unwrap_or("0");
    let uri: hyper::Uri =
        format!("https://localhost:{port}/v1/subjects/uscc/{}", uscc_for(17)).parse()?;
    let q = Instant::now();
    let status = rt.block_on(async { c.get(uri).await.map(|r| r.status().as_u16()).unwrap_or(0) });
    println!("footprint with {n} archived records: ready in {:.0} ms, RSS at ready {} MiB, peak after a subject query {} MiB (query {} in {:.0} ms), data {} MiB",
        ready.as_secs_f64() * 1000.0, rss_ready / 1024, peak_rss_kib(gateway.id()) / 1024, status, q.elapsed().as_secs_f64() * 1000.0, dir_size(&data) / (1 << 20));
    stop(&mut gateway);
    Ok(())
}

struct LoadResult {
    accepted: u64,
    rejected: u64,
    failed: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn report(what: &str, r: &LoadResult, process: Option<(u64, f64)>) {
    let mut l = r.latencies_us.clone();
    l.sort_unstable();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "{what}: {:.0} records/s accepted ({} in {:.1} s); batch latency ms p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}; rejected {} failed {}",
        r.rate(), r.accepted, r.elapsed.as_secs_f64(), pct(0.5), pct(0.9), pct(0.99), l.last().copied().unwrap_or(0) as f64 / 1000.0, r.rejected, r.failed
    );
    if let Some((rss, cpu)) = process {
        println!(
            "{what}: peak RSS {} MiB, CPU {:.1} s ({:.2} cores)",
            rss / 1024,
            cpu,
            cpu / r.elapsed.as_secs_f64().max(1e-9)
        );
    }
}

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn client(certs: &Path, agency: &str) -> HttpsClient {
    let cfg = credit_gateway::identity::tls::client_config(
        &certs.join("ca.pem"),
        &certs.join("clients").join(format!("{agency}.pem")),
        &certs.join("clients").join(format!("{agency}-key.pem")),
    )
    .expect("client TLS");
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(cfg)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(4)
        .build(connector)
}

/// Client `c` pushes to `apis[c % apis.len()]` (several nodes on one database).
async fn load(args: &Args, apis: &[String], certs: &Path) -> LoadResult {
    let totals = Arc::new(Totals::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sent_records = Arc::new(AtomicU64::new(0));
    let uris: Vec<hyper::Uri> = apis
        .iter()
        .map(|api| {
            let port = api.rsplit(':').next().unwrap_or("0");
            format!("https://localhost:{port}/v1/records?mapping=canonical")
                .parse()
                .expect("uri")
        })
        .collect();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let uri = &uris[c % uris.len()];
        let client = client(certs, "medical_insurance");
        let (totals, stop, sent) = (totals.clone(), stop.clone(), sent_records.clone());
        let (uri, batch, limit) = (uri.clone(), args.batch, args.records);
        // Open loop: this client's share of the offered load, on a fixed schedule.
        let interval = args
            .rate
            .map(|r| Duration::from_secs_f64(args.clients as f64 * batch as f64 / r as f64));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n: u64 = 0;
            let mut next = Instant::now()
                + interval
                    .map(|i| i.mul_f64(c as f64 / 16.0))
                    .unwrap_or_default();
            loop {
                if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                if let Some(limit) = limit {
                    if sent.fetch_add(batch as u64, Ordering::Relaxed) >= limit {
                        break;
                    }
                }
                let scheduled = match interval {
                    Some(i) => {
                        let now = Instant::now();
                        if next > now {
                            tokio::time::sleep(next - now).await;
                        }
                        let s = next;
                        next += i;
                        s
                    }
                    None => Instant::now(),
                };
                let body = batch_body(c, n, batch);
                n += 1;
                let req = hyper::Request::post(uri.clone())
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .expect("request");
                match client.request(req).await {
                    Ok(resp) if resp.status() == 200 => {
                        let bytes = resp
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        latencies.push(scheduled.elapsed().as_micros() as u64);
                        let v: serde_json::Value =
                            serde_json::from_slice(&bytes).unwrap_or_default();
                        totals
                            .accepted
                            .fetch_add(v["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                        totals.rejected.fetch_add(
                            v["rejected"]
                                .as_array()
                                .map(|a| a.len() as u64)
                                .unwrap_or(0),
                            Ordering::Relaxed,
                        );
                    }
                    _ => {
                        totals.failed.fetch_add(batch as u64, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies_us = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            latencies_us.extend(l);
        }
    }
    stop.store(true, Ordering::Relaxed);
    LoadResult {
        accepted: totals.accepted.load(Ordering::Relaxed),
        rejected: totals.rejected.load(Ordering::Relaxed),
        failed: totals.failed.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        latencies_us,
    }
}

async fn delivery(api: &str, certs: &Path, receiver: &Receiver, backlog: u64) {
    let port = api.rsplit(':').next().unwrap_or("0");
    let c = client(certs, "medical_insurance");
    let body = serde_json::json!({"record_id": "LG-0-0-0", "kind": "correct", "content": {"fulfilment": "fulfilled"}, "reason": "benchmark"});
    let req = hyper::Request::post(format!("https://localhost:{port}/v1/corrections"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let ok = matches!(c.request(req).await, Ok(r) if r.status() == 202);
    let started = Instant::now();
    receiver.set_mode(Mode::Normal, None);
    if ok {
        while !receiver.received().iter().any(|s| s.kind == "correction")
            && started.elapsed() < Duration::from_secs(600)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        println!(
            "correction behind a backlog of {backlog} shares reached the receiver in {:.0} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
    } else {
        println!("correction could not be posted");
    }
    let want = backlog as usize + usize::from(ok);
    let drain_start = Instant::now();
    let mut last = (0, Instant::now());
    while receiver.count() < want && last.1.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = receiver.count();
        if n != last.0 {
            last = (n, Instant::now());
        }
    }
    let delivered = receiver.count();
    println!(
        "delivery: {delivered} of {want} shares acknowledged in {:.1} s: {:.0} records/s",
        drain_start.elapsed().as_secs_f64(),
        delivered as f64 / drain_start.elapsed().as_secs_f64().max(1e-9)
    );
}

/// One batch of canonical records of about 600 bytes each, unique ids, 1000 distinct subjects.
fn batch_body(client: usize, n: u64, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size * 700);
    out.push(b'[');
    for i in 0..size {
        if i > 0 {
            out.push(b',');
        }
        let subject = (client * 7919 + n as usize * 31 + i) % 1000;
        let uscc = uscc_for(subject);
        out.extend_from_slice(format!(
            r#"{{"category":"commitment","subject":{{"kind":"institution","role":"designated_retail_pharmacy","id_type":"uscc","id":"{uscc}","name":"广州市越秀区康宁大药房有限公司第{subject}分店"}},"source":{{"record_id":"LG-{client}-{n}-{i}","region":"440104"}},"disclosure":{{"class":"gov_share"}},"valid_from":"2025-01-06","content":{{"commitment_type":"医疗保障基金使用信用承诺","committed_on":"2025-01-06","fulfilment":"pending","commitment_text":"本单位承诺严格遵守医疗保障服务协议，规范诊疗和收费行为，不虚构医药服务项目，不串换药品、医用耗材和诊疗项目，自觉接受监督检查。","recipient":"广州市医疗保障局"}}}}"#
        ).as_bytes());
    }
    out.push(b']');
    out
}

/// A valid unified social credit code registered in Guangzhou's Yuexiu district for subject `n`.
fn uscc_for(n: usize) -> String {
    identifiers::uscc_in("440104", n)
}

fn write_config(
    dir: &Path,
    certs: &Path,
    receiver: &Receiver,
    durability: &str,
    max_inflight_mb: Option<u64>,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    write_config_with("idle", dir, certs, receiver, durability, max_inflight_mb)
}

fn write_config_with(
    evaluation: &str,
    dir: &Path,
    certs: &Path,
    receiver: &Receiver,
    durability: &str,
    max_inflight_mb: Option<u64>,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let mut config = credit_gateway::config::Config::default();
    match evaluation {
        "off" => config.evaluation.enabled = false,
        "active" => {
            let profiles = dir.join("scoring");
            std::fs::create_dir_all(&profiles)?;
            let shipped = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/scoring/guangdong.toml"),
            )?;
            let in_force = shipped
                .replace("effective_from = 2024-07-01", "effective_from = 2026-07-01")
                .replace("effective_until = 2026-06-30\n", "");
            std::fs::write(profiles.join("bench.toml"), in_force)?;
            config.evaluation.profiles = Some(profiles);
        }
        _ => {}
    }
    if let Some(mb) = max_inflight_mb {
        config.server.max_inflight_mb = mb;
    }
    if let Some(Some(mb)) = CACHE_MB.get() {
        config.storage.cache_mb = *mb;
    }
    if let Some(suite) = SUITE.get() {
        config.crypto.suite = *suite;
    }
    // One agency drives all the load here.
    config.server.max_connections_per_agency = config.server.max_connections;
    config.server.listen = "127.0.0.1:0".into();
    config.server.admin_listen = "127.0.0.1:0".into();
    config.storage.data_dir = dir.join("data");
    config.storage.durability = if durability == "power_loss" {
        credit_gateway::store::Durability::PowerLoss
    } else {
        credit_gateway::store::Durability::ProcessCrash
    };
    config.tls.certs_dir = certs.to_path_buf();
    if let Some(Some(url)) = DATABASE.get() {
        config.storage.engine = credit_gateway::config::StorageEngine::Postgres;
        config.storage.postgres_url = Some(url.clone());
    }
    config.log.filter = "warn".into();
    for a in &mut config.agencies {
        a.requests_per_second = 1_000_000;
        a.burst = 1_000_000;
    }
    let mut dest = credit_gateway::config::default_destinations().remove(0);
    dest.url = format!("https://localhost:{}/v1/shares", receiver.addr.port());
    dest.batch_size = 1000;
    dest.requests_per_second = 100_000;
    config.destinations = vec![dest];
    config.sharing.retry_base_ms = 50;
    config.sharing.retry_max_ms = 200;
    config.sharing.poll_interval_ms = 20;
    let path = dir.join("credit-gateway.toml");
    std::fs::write(&path, toml::to_string(&config)?)?;
    Ok(path)
}

/// Node `node`'s configuration: the same, with a local folder of its own.
fn node_config(
    base: &Path,
    dir: &Path,
    node: usize,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    if node == 0 {
        return Ok(base.to_path_buf());
    }
    let mut config: credit_gateway::config::Config =
        toml::from_str(&std::fs::read_to_string(base)?)?;
    config.storage.data_dir = dir.join(format!("data-{node}"));
    config.storage.node = Some(format!("loadgen-node-{node}"));
    let path = dir.join(format!("credit-gateway-{node}.toml"));
    std::fs::write(&path, toml::to_string(&config)?)?;
    Ok(path)
}

/// Bytes the run's database occupies (tables, indexes, its share of the catalogue).
fn database_size(url: &str) -> u64 {
    let name = url.rsplit('/').next().unwrap_or("postgres");
    postgres::cluster()
        .sql(name, "SELECT pg_database_size(current_database())")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn spawn_ready(
    cmd: &mut Command,
    marker: &str,
) -> Result<(Child, String, String), Box<dyn std::error::Error>> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with(marker) => break l,
            Some(Ok(_)) => continue,
            _ => return Err(format!("{marker:?} never printed").into()),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let field = |name: &str| {
        line.split(name)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("")
            .to_string()
    };
    Ok((child, field("api=https://"), field("admin=http://")))
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU seconds of a process (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default()
}
