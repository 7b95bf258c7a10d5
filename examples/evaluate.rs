//! The evaluation benchmark: how long the yearly cycle takes to re-evaluate a province's subjects
//! (LS Art. 20), through the gateway's own code: the shipped scoring profiles, the real store and
//! the single writer.
//!
//! ```sh
//! cargo build --release --examples
//! target/release/examples/evaluate --subjects 1000000
//! ```
//!
//! It loads N Guangdong institutions with two 2025 penalties each straight through the commit path
//! (no HTTP; reused when the folder already holds them), then runs the 2026 cycle on a manual clock
//! set to 2026-01-05 (GD's profile in force) until it finishes, and prints subjects/s, the total
//! time and the peak RSS of this process.

#[path = "../tests/support/identifiers.rs"]
mod identifiers;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use credit_gateway::clock::{ManualClock, SharedClock};
use credit_gateway::evaluation::engine::Engine;
use credit_gateway::evaluation::profile::Profiles;
use credit_gateway::evaluation::worker::Worker;
use credit_gateway::ingest::batch::{AcceptedInput, BatchJob};
use credit_gateway::record::{validate_owned, ValidationContext};
use credit_gateway::store::Store;
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    subjects: usize,
    /// Subjects per step of the cycle (`evaluation.cycle_batch`).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/evaluate-{}", args.subjects)));
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let store = Store::open(&data)?;
    let clock = ManualClock::new(time::macros::datetime!(2025-12-01 10:00 +08:00));
    let shared: SharedClock = Arc::new(clock.clone());
    let (committer, handle) = credit_gateway::exchange::start(store.clone(), shared.clone())?;
    let loaded = store.count_under(b"sub/")?;
    if loaded < args.subjects {
        let started = Instant::now();
        let ctx = ValidationContext::default();
        let per_job = 2000;
        let mut n = loaded;
        while n < args.subjects {
            let mut accepted = Vec::new();
            for i in n..(n + per_job).min(args.subjects) {
                let uscc = uscc_for(i);
                for (k, severity) in [(0, "general"), (1, "serious")] {
                    let record = validate_owned(
                        json!({
                            "category": "administrative",
                            "subject": {"kind": "institution", "role": "designated_retail_pharmacy",
                                        "id_type": "uscc", "id": uscc, "name": format!("药房{i}")},
                            "source": {"agency": "medical_insurance", "record_id": format!("E-{i}-{k}"), "region": "440106"},
                            "basis": {"doc_type": "penalty_decision", "doc_number": format!("粤医保罚〔2025〕{i}-{k}号"), "decided_on": "2025-03-10"},
                            "disclosure": {"class": "public"},
                            "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"], "severity": severity}
                        }),
                        &ctx,
                    )
                    .map_err(|e| format!("{e:?}"))?;
                    accepted.push(AcceptedInput {
                        index: accepted.len(),
                        prepared: credit_gateway::archive::Prepared::new(
                            &store,
                            &record.canonical_bytes(),
                        )?,
                        record,
                        plan: Default::default(),
                    });
                }
            }
            let total = accepted.len();
            rt.block_on(credit_gateway::ingest::batch::commit(
                &handle,
                BatchJob {
                    receipt_id: format!("eval-bulk-{n}"),
                    agency: "medical_insurance".into(),
                    mapping: "canonical".into(),
                    received_at: time::macros::datetime!(2025-03-11 00:00 +8),
                    body_sha256: String::new(),
                    total,
                    accepted,
                    rejected: Default::default(),
                    filter: Default::default(),
                    file: None,
                },
            ))?;
            n += per_job;
        }
        // The bulk load is not what is measured: its archive changes are not followed here.
        let mut taken = credit_gateway::store::WriteSet::default();
        for key in store.keys_under(b"chg/") {
            taken.remove(key?);
        }
        store.apply(taken)?;
        store.flush()?;
        println!(
            "loaded {} subjects (2 records each) in {:.0} s",
            args.subjects,
            started.elapsed().as_secs_f64()
        );
    }
    let mut config = credit_gateway::config::Config::default();
    config.mappings.dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mappings");
    config.destinations.clear();
    let router =
        credit_gateway::sharing::SharedRouter::new(credit_gateway::app::build_router(&config)?);
    let engine = Engine {
        store: store.clone(),
        profiles: credit_gateway::swap::Swap::new(Profiles::load(&config.scoring_profiles_dir())?),
        router,
        exceptions: Default::default(),
        destinations: Vec::new(),
        agency: "credit_evaluation".into(),
    };
    let worker = Worker {
        engine,
        committer: handle.clone(),
        clock: shared,
        interval: Duration::from_secs(1),
        cycle_batch: args.batch,
        cycle_pace: Duration::ZERO,
    };
    clock.set(time::macros::datetime!(2026-01-05 09:00 +08:00));
    println!(
        "# evaluation cycle 2026: {} subjects, steps of {}, {} cores",
        args.subjects,
        args.batch,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let started = Instant::now();
    let mut last_report = Instant::now();
    while rt.block_on(worker.cycle_chunk())? {
        if last_report.elapsed() > Duration::from_secs(30) {
            let run = credit_gateway::evaluation::worker::cycles(&store)?;
            if let Some(r) = run.last() {
                println!(
                    "  {} of {} ({:.0} subjects/s)",
                    r.done,
                    r.total,
                    r.done as f64 / started.elapsed().as_secs_f64()
                );
            }
            last_report = Instant::now();
        }
    }
    let elapsed = started.elapsed();
    let run = credit_gateway::evaluation::worker::cycles(&store)?;
    let done = run
        .iter()
        .find(|r| r.year == 2026)
        .map(|r| r.done)
        .unwrap_or(0);
    println!(
        "re-evaluated {done} subjects in {:.1} s: {:.0} subjects/s; peak RSS {} MiB",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64(),
        peak_rss_kib() / 1024
    );
    drop(worker);
    drop(handle);
    committer.join();
    Ok(())
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A valid unified social credit code registered in Guangzhou's Haizhu district for subject `n`.
fn uscc_for(n: usize) -> String {
    identifiers::uscc_in("440106", n)
}
