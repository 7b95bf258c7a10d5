//! End to end: file destinations (issue #29, files out; GB/T 39443-2020's file interface) through
//! the real binary. The test plays the platform on the folders: it takes complete files (their
//! manifest present), checks names and digests, and writes feedback files. A watcher thread reads
//! every name the moment it appears, so a partial file under a final name would be caught.
//! Runs on sled, and on PostgreSQL with `CREDIT_GATEWAY_TEST_ENGINE=postgres`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{days_ago, wait_until, Gateway};
use serde_json::{json, Value};
use sha2::Digest;

const MI: &str = "medical_insurance";
const USCC: &str = "91310110666007217T";

fn penalty(record_id: &str, decided_on: &str) -> Value {
    json!({
        "category": "administrative",
        "subject": {"kind": "institution", "role": "designated_medical_institution",
                    "id_type": "uscc", "id": USCC, "name": "广州市某某医院"},
        "source": {"record_id": record_id, "region": "440106"},
        "basis": {"doc_type": "penalty_decision", "doc_number": format!("穗医保罚〔2025〕{record_id}号"), "decided_on": decided_on},
        "disclosure": {"class": "gov_share"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"], "fine_yuan": "20000"}
    })
}

/// The platform's side of the folders.
struct Platform {
    out: PathBuf,
    back: PathBuf,
    taken: PathBuf,
    /// Every non-hidden name of the outgoing folder with its bytes when it was first seen.
    first_seen: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

/// A file the platform took.
struct Taken {
    name: String,
    stem: String,
    bytes: Vec<u8>,
    manifest: Value,
}

impl Taken {
    /// The idempotency keys of its shares, in file order.
    fn keys(&self) -> Vec<String> {
        if self.name.ends_with(".csv") {
            let mut r = csv::Reader::from_reader(self.bytes.as_slice());
            let headers = r.headers().unwrap().clone();
            let idem = headers
                .iter()
                .position(|h| h == "IDEM")
                .expect("IDEM column");
            r.records()
                .map(|row| row.unwrap().get(idem).unwrap().to_string())
                .collect()
        } else {
            self.lines()
                .iter()
                .map(|l| l["idempotency_key"].as_str().unwrap().to_string())
                .collect()
        }
    }

    fn lines(&self) -> Vec<Value> {
        self.bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    /// A CSV column by row.
    fn column(&self, name: &str) -> Vec<String> {
        let mut r = csv::Reader::from_reader(self.bytes.as_slice());
        let headers = r.headers().unwrap().clone();
        let i = headers.iter().position(|h| h == name).unwrap();
        r.records()
            .map(|row| row.unwrap().get(i).unwrap().to_string())
            .collect()
    }
}

impl Platform {
    fn new(root: &Path) -> Platform {
        let p = Platform {
            out: root.join("outgoing"),
            back: root.join("feedback"),
            taken: root.join("taken"),
            first_seen: Arc::default(),
            stop: Arc::default(),
        };
        for d in [&p.out, &p.back, &p.taken] {
            std::fs::create_dir_all(d).unwrap();
        }
        let (out, seen, stop) = (p.out.clone(), p.first_seen.clone(), p.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(entries) = std::fs::read_dir(&out) {
                    for e in entries.flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if name.starts_with('.') || seen.lock().unwrap().contains_key(&name) {
                            continue;
                        }
                        if let Ok(bytes) = std::fs::read(e.path()) {
                            seen.lock().unwrap().insert(name, bytes);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        p
    }

    /// Data files whose manifest is there, not yet taken.
    fn ready(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.out)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && !n.ends_with(".manifest.json"))
            .filter(|n| {
                let stem = n.rsplit_once('.').unwrap().0;
                self.out.join(format!("{stem}.manifest.json")).exists()
            })
            .collect();
        names.sort();
        names
    }

    /// Wait for the next complete file whose name passes `pred`.
    fn wait_file(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        assert!(
            wait_until(Duration::from_secs(30), || {
                found = self.ready().into_iter().find(|n| pred(n));
                found.is_some()
            }),
            "no {what} in {:?}",
            self.ready()
        );
        found.unwrap()
    }

    /// Take a file (move it and its manifest out of the outgoing folder), checking its name and
    /// that the manifest describes exactly these bytes.
    fn take(&self, name: &str) -> Taken {
        let stem = name.rsplit_once('.').unwrap().0.to_string();
        check_name(name);
        let manifest_name = format!("{stem}.manifest.json");
        let bytes = std::fs::read(self.out.join(name)).unwrap();
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(self.out.join(&manifest_name)).unwrap()).unwrap();
        std::fs::rename(self.out.join(name), self.taken.join(name)).unwrap();
        std::fs::rename(
            self.out.join(&manifest_name),
            self.taken.join(&manifest_name),
        )
        .unwrap();
        assert_eq!(manifest["file"], name);
        assert_eq!(manifest["receiver"], "files");
        assert_eq!(manifest["sender"], "credit-gateway");
        assert_eq!(manifest["bytes"], bytes.len());
        assert_eq!(
            manifest["sha256"],
            hex::encode(sha2::Sha256::digest(&bytes))
        );
        assert_eq!(manifest["sm3"], hex::encode(sm3::Sm3::digest(&bytes)));
        assert_eq!(manifest["feedback"], format!("{stem}.feedback.json"));
        let taken = Taken {
            name: name.to_string(),
            stem,
            bytes,
            manifest,
        };
        assert_eq!(taken.manifest["records"], taken.keys().len());
        let kinds: usize = taken.manifest["kinds"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap() as usize)
            .sum();
        assert_eq!(kinds, taken.keys().len());
        taken
    }

    /// Answer a file: each key accepted, or rejected with a reason (written under a hidden name,
    /// then renamed, as a platform should).
    fn answer(&self, taken: &Taken, answers: &[(&str, Option<&str>)]) {
        let records: Vec<Value> = answers
            .iter()
            .map(|(key, rejected)| match rejected {
                None => json!({"idempotency_key": key, "result": "accepted"}),
                Some(reason) => {
                    json!({"idempotency_key": key, "result": "rejected", "reason": reason})
                }
            })
            .collect();
        let name = format!("{}.feedback.json", taken.stem);
        let temp = self.back.join(format!(".{name}"));
        std::fs::write(
            &temp,
            serde_json::to_vec(&json!({"file": taken.name, "records": records})).unwrap(),
        )
        .unwrap();
        std::fs::rename(temp, self.back.join(&name)).unwrap();
    }

    /// Every data file's bytes, as first seen under its final name, are the bytes its manifest
    /// describes: no partial file was ever visible.
    fn assert_never_partial(&self) {
        let seen = self.first_seen.lock().unwrap();
        let data: Vec<&String> = seen
            .keys()
            .filter(|n| !n.ends_with(".manifest.json"))
            .collect();
        assert!(!data.is_empty());
        for name in data {
            check_name(name);
            let stem = name.rsplit_once('.').unwrap().0;
            let manifest: Value = serde_json::from_slice(
                seen.get(&format!("{stem}.manifest.json"))
                    .unwrap_or_else(|| panic!("{name} without its manifest")),
            )
            .unwrap();
            assert_eq!(
                manifest["sha256"],
                hex::encode(sha2::Sha256::digest(&seen[name])),
                "{name} was visible before it was complete"
            );
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `{sender}_{destination}_{yyyyMMddHHmmss}_{seq}.{csv|jsonl}`.
fn check_name(name: &str) {
    let (stem, ext) = name.rsplit_once('.').unwrap();
    assert!(ext == "csv" || ext == "jsonl", "{name}");
    let rest = stem
        .strip_prefix("credit-gateway_files_")
        .unwrap_or_else(|| panic!("{name}"));
    let (ts, seq) = rest.split_once('_').unwrap_or_else(|| panic!("{name}"));
    assert!(
        ts.len() == 14 && ts.bytes().all(|b| b.is_ascii_digit()),
        "{name}"
    );
    assert!(
        seq.len() >= 10 && seq.bytes().all(|b| b.is_ascii_digit()),
        "{name}"
    );
}

/// A gateway with one file destination (the province) whose folders the returned platform plays.
fn gateway(batch_size: usize, manual_clock: bool) -> (Gateway, Platform) {
    let mut gw = Gateway::prepare();
    let platform = Platform::new(&gw.dir.path().join("platform"));
    let mut d = credit_gateway::config::default_destinations().remove(0);
    d.id = "files".into();
    d.name = "文件方式平台".into();
    d.region = "440000".into();
    d.url = String::new();
    d.kind = credit_gateway::config::DestinationKind::File;
    d.outgoing_dir = Some(platform.out.clone());
    d.feedback_dir = Some(platform.back.clone());
    d.batch_size = batch_size;
    d.batch_wait_ms = Some(300);
    d.feedback_timeout_ms = Some(3_600_000);
    gw.config.destinations.push(d);
    gw.config.corrections.dangerous_manual_clock = manual_clock;
    gw.config.corrections.check_interval_ms = 100;
    (gw, platform)
}

fn cli_json(gw: &Gateway, args: &[&str]) -> Value {
    let (code, out, err) = gw.cli(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn holding_state(gw: &Gateway, record_id: &str) -> String {
    let view = cli_json(
        gw,
        &["ledger", "record", "--agency", MI, "--record-id", record_id],
    );
    view["holdings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["destination"] == "files" && h["channel"] == "gov_share")
        .map(|h| h["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn a_file_destination_gets_shares_and_a_withdrawal_and_its_feedback_acknowledges_retries_and_dead_letters(
) {
    let (mut gw, platform) = gateway(3, false);
    gw.spawn();
    let decided = days_ago(10);
    gw.push_canonical(
        MI,
        &vec![
            penalty("F-1", &decided),
            penalty("F-2", &decided),
            penalty("F-3", &decided),
        ],
    );
    // Three shares, batch_size 3: one file of the 双公示 penalties layout.
    let first = platform.take(&platform.wait_file("the shares' file", |n| n.ends_with(".csv")));
    assert_eq!(first.manifest["layout"], "shuanggongshi-penalties-csv");
    assert_eq!(first.manifest["records"], 3);
    assert_eq!(first.manifest["kinds"]["share"], 3);
    assert_eq!(
        first.column("JLBH"),
        vec!["F-1".to_string(), "F-2".into(), "F-3".into()]
    );
    assert_eq!(first.column("CF_NR_FK"), vec!["2"; 3], "20,000 元 in 万元");
    assert_eq!(first.column("CF_XDR_SHXYM"), vec![USCC; 3]);
    let keys = first.keys();
    // Nothing is acknowledged before the feedback: the shares are still queued.
    let stats = cli_json(&gw, &["outbox", "stats"]);
    assert_eq!(stats["destinations"][0]["pending"], 3, "{stats}");
    platform.answer(
        &first,
        &[
            (&keys[0], None),
            (&keys[1], None),
            (&keys[2], Some("CF_WSH 与已有决定书重复")),
        ],
    );
    // The refused share is sent again, alone, as a refused HTTPS batch's shares are.
    let retry = platform.take(&platform.wait_file("the refused share again", |n| {
        n.ends_with(".csv") && n != first.name
    }));
    assert_eq!(
        retry.keys(),
        vec![keys[2].clone()],
        "the same idempotency key"
    );
    assert_eq!(holding_state(&gw, "F-1"), "held");
    assert_eq!(holding_state(&gw, "F-2"), "held");
    platform.answer(&retry, &[(&keys[2], Some("CF_WSH 与已有决定书重复"))]);
    // Refused again: a dead letter with the platform's reason.
    let dead = || cli_json(&gw, &["outbox", "list", "--dead"]);
    assert!(wait_until(Duration::from_secs(20), || dead()["entries"]
        .as_array()
        .unwrap()
        .len()
        == 1));
    let letter = &dead()["entries"][0];
    assert_eq!(letter["record_id"], "F-3");
    assert_eq!(letter["destination"], "files");
    assert_eq!(letter["idempotency_key"], keys[2].as_str());
    assert!(
        letter["answer"]
            .as_str()
            .unwrap()
            .contains("CF_WSH 与已有决定书重复"),
        "{letter}"
    );
    assert!(wait_until(Duration::from_secs(10), || {
        cli_json(&gw, &["outbox", "stats"])["destinations"][0]["pending"] == 0
    }));
    let view = cli_json(
        &gw,
        &["ledger", "record", "--agency", MI, "--record-id", "F-1"],
    );
    let held = view["holdings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["destination"] == "files")
        .unwrap()
        .clone();
    assert!(
        held["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["acknowledged_at"].is_string()),
        "the feedback is the platform's acknowledgement: {held}"
    );

    // The subject exits (LS Art. 20): what the platform holds is withdrawn, by a file of
    // canonical JSON lines (a withdrawal carries no content to put in the 双公示 columns).
    let reply = gw.client(MI).post(
        &format!("/v1/subjects/uscc/{USCC}/exit"),
        "application/json",
        serde_json::to_vec(&json!({"reason": "left_service", "on": days_ago(0)})).unwrap(),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let withdrawals =
        platform.take(&platform.wait_file("the withdrawals", |n| n.ends_with(".jsonl")));
    assert_eq!(withdrawals.manifest["layout"], "canonical-jsonl");
    let lines = withdrawals.lines();
    let withdrawn: Vec<&str> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["kind"], "withdrawal");
            assert_eq!(l["record"]["withdrawn"]["reason"], "subject_exited");
            l["record"]["source"]["record_id"].as_str().unwrap()
        })
        .collect();
    assert!(
        withdrawn.contains(&"F-1") && withdrawn.contains(&"F-2"),
        "{lines:?}"
    );
    assert_eq!(holding_state(&gw, "F-1"), "withdrawal_queued");
    let answers: Vec<(String, Option<&str>)> =
        withdrawals.keys().into_iter().map(|k| (k, None)).collect();
    let answers: Vec<(&str, Option<&str>)> =
        answers.iter().map(|(k, r)| (k.as_str(), *r)).collect();
    platform.answer(&withdrawals, &answers);
    assert!(wait_until(Duration::from_secs(20), || holding_state(
        &gw, "F-1"
    ) == "withdrawn"));
    assert_eq!(holding_state(&gw, "F-2"), "withdrawn");
    // Applied feedback files are kept aside, read once.
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_dir(platform.back.join("done"))
            .map(|d| d.count() == 3)
            .unwrap_or(false)
    }));
    platform.assert_never_partial();
    // Every file is in the audit chain.
    gw.stop();
    let (code, chain, err) = gw.cli(&["audit", "show", "--limit", "1000"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(chain.matches("file_written").count(), 3, "{chain}");
    assert_eq!(chain.matches("file_answered").count(), 3, "{chain}");
    assert!(chain.contains("file_picked_up"));
    let (code, out, _) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_correction_through_a_file_destination_shows_when_its_file_was_picked_up_gd_art_31() {
    let (mut gw, platform) = gateway(50, true);
    gw.spawn();
    gw.set_clock("2025-03-14T10:00:00+08:00");
    gw.push_canonical(MI, &vec![penalty("C-1", "2025-03-03")]);
    // One share, fewer than batch_size: written once it has waited batch_wait_ms.
    let share = platform.take(&platform.wait_file("the share", |_| true));
    assert!(share.name.contains("_20250314100000_"), "{}", share.name);
    platform.answer(&share, &[(&share.keys()[0], None)]);
    let reply = gw.client(MI).post(
        "/v1/corrections",
        "application/json",
        serde_json::to_vec(&json!({"record_id": "C-1", "kind": "correct", "content": {"fine_yuan": "10000"}, "reason": "罚款金额录入错误"}))
            .unwrap(),
    );
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let correction = reply.json();
    let id = correction["id"].as_str().unwrap().to_string();
    assert_eq!(correction["deadline"], "2025-03-19T23:59:59+08:00");
    // The correction's file (urgent: it does not wait for a batch). The platform leaves it.
    let unanswered = platform.wait_file("the correction's file", |n| n != share.name);
    // No feedback within feedback_timeout_ms (an hour on the gateway's clock): a failed attempt.
    // The file is taken back and its share written again, with the same idempotency key.
    gw.set_clock("2025-03-17T09:00:00+08:00");
    let again = platform
        .take(&platform.wait_file("the correction again", |n| n.contains("_20250317090000_")));
    assert!(!platform.out.join(&unanswered).exists(), "taken back");
    assert_eq!(again.column("LX"), vec!["correction"]);
    assert_eq!(again.column("GZBH"), vec![id.clone()]);
    assert_eq!(again.column("CF_NR_FK"), vec!["1"]);
    {
        let seen = platform.first_seen.lock().unwrap();
        let first = &seen[&unanswered];
        assert!(
            String::from_utf8_lossy(first).contains(&again.keys()[0]),
            "the retry carries the same idempotency key"
        );
    }
    // Picked up (taken above, at 09:00 on the gateway's clock): the deadline view says so while
    // the correction waits for its feedback.
    let listed = |gw: &Gateway| -> Value {
        cli_json(gw, &["corrections", "list"])["corrections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id.as_str())
            .cloned()
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(20), || listed(&gw)["picked_up"]
            ["files"]["at"]
            == "2025-03-17T09:00:00+08:00"),
        "{}",
        listed(&gw)
    );
    let c = listed(&gw);
    assert_eq!(c["state"], "pending", "picked up is not yet acknowledged");
    assert_eq!(c["picked_up"]["files"]["file"], again.name.as_str());
    gw.set_clock("2025-03-17T09:30:00+08:00");
    platform.answer(&again, &[(&again.keys()[0], None)]);
    assert!(wait_until(Duration::from_secs(20), || listed(&gw)["state"]
        == "delivered_on_time"));
    // The agencies' view says the same.
    let api = gw.client(MI).get("/v1/corrections").json();
    let c = api["corrections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .unwrap();
    assert_eq!(c["picked_up"]["files"]["at"], "2025-03-17T09:00:00+08:00");
    assert_eq!(c["delivered"]["files"], "2025-03-17T09:30:00+08:00");
    platform.assert_never_partial();
}

/// A file waiting for its feedback survives a crash: after a kill -9 and a restart the gateway
/// waits for the same file (nothing is written twice) and its feedback acknowledges the shares.
/// A stop (SIGTERM) while a file waits does not wait for the feedback.
#[test]
fn a_file_awaiting_feedback_survives_a_crash_and_is_answered_after_the_restart() {
    let (mut gw, platform) = gateway(1, false);
    gw.spawn();
    gw.push_canonical(MI, &vec![penalty("K-1", &days_ago(10))]);
    let name = platform.wait_file("the share's file", |_| true);
    gw.kill();
    gw.spawn();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        platform.ready(),
        vec![name.clone()],
        "nothing written twice"
    );
    let started = std::time::Instant::now();
    gw.stop();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a stop does not wait for the feedback"
    );
    gw.spawn();
    let taken = platform.take(&name);
    platform.answer(&taken, &[(&taken.keys()[0], None)]);
    assert!(wait_until(Duration::from_secs(20), || holding_state(
        &gw, "K-1"
    ) == "held"));
    assert!(wait_until(Duration::from_secs(10), || {
        cli_json(&gw, &["outbox", "stats"])["destinations"][0]["pending"] == 0
    }));
    assert_eq!(
        platform.first_seen.lock().unwrap().len(),
        2,
        "one file and its manifest"
    );
    platform.assert_never_partial();
}
