//! End to end: a full disk. The data directory lives on a small tmpfs the test mounts (as root,
//! which `.ci/run` is); where it cannot be mounted the test says so loudly and does nothing.
//! Below the free-space reserve the gateway refuses work with `503 storage_full` and is not ready
//! before sled ever meets ENOSPC, resumes by itself when space returns, refuses to start while the
//! disk is short, and then starts with every acknowledged record. Issue #31's sequence (batches
//! of 200 at full speed into the reserve, space freed, more accepted, a clean stop, a start on a
//! completely full disk, a start with space) checks every acknowledged record and receipt after
//! each step: each write set is measured against the reserve before sled sees it
//! (`store::space::DiskGuard::admit`), so a second of ingest cannot run the disk out between two
//! periodic checks.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{wait_until, Gateway};
use serde_json::json;

const MI: &str = "medical_insurance";

struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, mb: u64) -> Option<Mount> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(dir.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The gateway's data directory on a tmpfs of `mb` MiB (mounted at `small-disk`, its folder
/// returned); `None`, said loudly, where it cannot be mounted (needs root).
fn on_small_disk(gw: &mut Gateway, mb: u64) -> Option<(Mount, PathBuf)> {
    let mount_dir = gw.dir.path().join("small-disk");
    let Some(mount) = Mount::tmpfs(&mount_dir, mb) else {
        eprintln!("\n*** SKIPPED: cannot mount a tmpfs here (needs root); .ci/run runs as root and runs it ***\n");
        return None;
    };
    gw.config.storage.data_dir = mount_dir.join("data");
    Some((mount, mount_dir))
}

fn record(id: &str) -> serde_json::Value {
    json!({
        "category": "commitment",
        "subject": {"kind": "institution", "role": "designated_retail_pharmacy", "id_type": "uscc", "id": "91310110666007217T", "name": "某药房"},
        "source": {"record_id": id, "region": "440104"},
        "disclosure": {"class": "gov_share"},
        "content": {"commitment_type": "信用承诺", "committed_on": "2026-01-06", "fulfilment": "pending"}
    })
}

fn push(gw: &Gateway, id: &str) -> u16 {
    gw.client(MI)
        .post(
            "/v1/records?mapping=canonical",
            "application/json",
            serde_json::to_vec(&vec![record(id)]).unwrap(),
        )
        .status
}

/// Leave about `leave_mb` free on the filesystem of `dir`.
fn fill(dir: &Path, leave_mb: u64) -> PathBuf {
    let free = credit_gateway::store::space::free_bytes(dir).unwrap();
    let size = free.saturating_sub(leave_mb * 1024 * 1024);
    let path = dir.join("filler");
    let file = std::fs::File::create(&path).unwrap();
    // Real blocks (tmpfs counts what is written, not a sparse length).
    use std::io::Write;
    let mut w = std::io::BufWriter::new(file);
    let chunk = vec![0u8; 1024 * 1024];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        w.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    w.flush().unwrap();
    path
}

#[test]
fn below_the_free_space_reserve_work_is_refused_and_resumes_when_space_returns() {
    let mut gw = Gateway::prepare_sled();
    let Some((_mount, mount_dir)) = on_small_disk(&mut gw, 96) else {
        return;
    };
    gw.config.storage.min_free_mb = 24;
    gw.config.storage.cache_mb = 8;
    gw.spawn();
    assert_eq!(push(&gw, "DISK-1"), 200);

    let filler = fill(&mount_dir, 12);
    assert!(
        wait_until(Duration::from_secs(10), || gw.admin_get("/readyz").0 == 503),
        "not ready below the reserve"
    );
    let refused = gw.client(MI).post(
        "/v1/records?mapping=canonical",
        "application/json",
        serde_json::to_vec(&vec![record("DISK-REFUSED")]).unwrap(),
    );
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json()["error"]["code"], "storage_full");
    assert_eq!(refused.headers.get("retry-after").unwrap(), "60");
    assert_eq!(gw.admin_get("/healthz").0, 200, "alive all the same");

    std::fs::remove_file(&filler).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || gw.admin_get("/readyz").0 == 200),
        "resumes by itself"
    );
    assert_eq!(push(&gw, "DISK-2"), 200);

    // A start while the disk is short is refused before sled opens anything...
    gw.stop();
    let filler = fill(&mount_dir, 12);
    let out = Command::new(common::BIN)
        .arg("--config")
        .arg(gw.config_path())
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("below storage.min_free_mb"), "{err}");
    // ...and once space is back it starts with every acknowledged record.
    std::fs::remove_file(&filler).unwrap();
    gw.spawn();
    let archive = gw
        .client(MI)
        .get("/v1/subjects/uscc/91310110666007217T")
        .json();
    let text = archive.to_string();
    assert!(text.contains("DISK-1") && text.contains("DISK-2"), "{text}");
    assert!(!text.contains("DISK-REFUSED"));
}

/// A batch of 200 records: 40 institutions, 5 records each, ids `{tag}-{subject}-{n}`.
fn batch(tag: &str) -> Vec<serde_json::Value> {
    let mut records = Vec::with_capacity(200);
    for s in 0..40 {
        let code = common::uscc_in("440104", 7_000 + s);
        for n in 0..5 {
            let mut r = record(&format!("{tag}-{s}-{n}"));
            r["subject"]["id"] = json!(code);
            records.push(r);
        }
    }
    records
}

/// What the gateway acknowledged: batch tag and receipt id.
#[derive(Default)]
struct Acknowledged(Vec<(String, String)>);

impl Acknowledged {
    /// Push one batch; remember it when it is acknowledged. The status.
    fn push(&mut self, gw: &Gateway, tag: &str) -> u16 {
        let reply = gw.client(MI).post(
            "/v1/records?mapping=canonical",
            "application/json",
            serde_json::to_vec(&batch(tag)).unwrap(),
        );
        if reply.status == 200 {
            let receipt = reply.json()["receipt_id"].as_str().unwrap().to_string();
            self.0.push((tag.to_string(), receipt));
        }
        reply.status
    }

    /// Every acknowledged record is in its subject's archive and every receipt is there.
    fn assert_all_present(&self, gw: &Gateway, step: &str) {
        let mut held = std::collections::HashSet::new();
        for s in 0..40 {
            let code = common::uscc_in("440104", 7_000 + s);
            let archive = gw.client(MI).get(&format!("/v1/subjects/uscc/{code}"));
            assert_eq!(archive.status, 200, "{step}: archive of {code}");
            let text = String::from_utf8_lossy(&archive.body).to_string();
            for (tag, _) in &self.0 {
                for n in 0..5 {
                    let id = format!("{tag}-{s}-{n}");
                    if text.contains(&format!("\"{id}\"")) {
                        held.insert(id);
                    }
                }
            }
        }
        for (tag, receipt) in &self.0 {
            let reply = gw.client(MI).get(&format!("/v1/receipts/{receipt}"));
            assert_eq!(reply.status, 200, "{step}: receipt {receipt} of {tag}");
            for s in 0..40 {
                for n in 0..5 {
                    let id = format!("{tag}-{s}-{n}");
                    assert!(
                        held.contains(&id),
                        "{step}: acknowledged record {id} (receipt {receipt}) is missing"
                    );
                    if n == 0 && s % 13 == 0 {
                        let rec = gw.client(MI).get(&format!("/v1/ledger/records/{MI}/{id}"));
                        assert_eq!(rec.status, 200, "{step}: ledger of {id}");
                    }
                }
            }
        }
    }
}

/// The sequence of issue #31: a full disk met under load, space freed, more accepted, a clean
/// stop, a start refused on a completely full disk, then a start with space: after every step
/// every acknowledged record and receipt is there (one commit is one durable unit).
#[test]
fn acknowledged_records_survive_a_full_disk_a_refused_start_and_a_restart() {
    let mut gw = Gateway::prepare_sled();
    let Some((_mount, mount_dir)) = on_small_disk(&mut gw, 40) else {
        return;
    };
    gw.config.storage.min_free_mb = 8;
    gw.config.storage.cache_mb = 8;
    // A 6 MiB filler, as in the report.
    let filler = mount_dir.join("filler");
    std::fs::write(&filler, vec![1u8; 6 * 1024 * 1024]).unwrap();
    gw.spawn();

    let mut acked = Acknowledged::default();
    let mut refused = false;
    for i in 0..400 {
        match acked.push(&gw, &format!("A{i}")) {
            200 => {}
            503 => {
                refused = true;
                break;
            }
            other => panic!("batch A{i}: unexpected {other}"),
        }
    }
    assert!(refused, "the reserve was never reached");
    assert!(!acked.0.is_empty());
    acked.assert_all_present(&gw, "at the reserve");

    std::fs::remove_file(&filler).unwrap();
    let mut accepted_after = 0;
    for i in 0..200 {
        if acked.push(&gw, &format!("B{i}")) == 200 {
            accepted_after += 1;
            if accepted_after == 5 {
                break;
            }
        } else {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert_eq!(accepted_after, 5, "work resumes once space is back");
    acked.assert_all_present(&gw, "after space returned");

    assert!(gw.stop().success(), "a clean stop");
    let filler = fill(&mount_dir, 0);
    let out = Command::new(common::BIN)
        .arg("--config")
        .arg(gw.config_path())
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success(), "no start on a full disk");
    std::fs::remove_file(&filler).unwrap();
    gw.spawn();
    acked.assert_all_present(&gw, "after the refused start and a restart");
    gw.stop();
    gw.spawn();
    acked.assert_all_present(&gw, "after one more restart");
}
