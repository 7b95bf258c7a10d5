//! End to end: a full disk. The data directory lives on a small tmpfs the test mounts (as root,
//! which `.ci/run` is); where it cannot be mounted the test says so loudly and does nothing.
//! Below the free-space reserve the gateway refuses work with `503 storage_full` and is not ready
//! before sled ever meets ENOSPC, resumes by itself when space returns, refuses to start while the
//! disk is short, and then starts with every acknowledged record.

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
    let mount_dir = gw.dir.path().join("small-disk");
    let Some(_mount) = Mount::tmpfs(&mount_dir, 96) else {
        eprintln!("\n*** SKIPPED: cannot mount a tmpfs here (needs root); .ci/run runs as root and runs it ***\n");
        return;
    };
    gw.config.storage.data_dir = mount_dir.join("data");
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
