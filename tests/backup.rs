//! End to end (issue #30): an online backup taken while an agency pushes is the store as of one
//! commit; restored into a fresh data directory, the gateway starts with every record acknowledged
//! before the backup and a chain that verifies. A restore never overwrites a store, a backup never
//! fills a folder that holds something, and the key file stays out of the backup. On PostgreSQL,
//! a `pg_dump` restored into a fresh cluster serves the same records (docs/operate/backup.md).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use common::{uscc_in, Gateway};
use serde_json::{json, Value};

const MI: &str = "medical_insurance";

fn penalty(n: usize) -> Value {
    json!({
        "category": "administrative",
        "subject": {"kind": "institution", "role": "designated_medical_institution",
                    "id_type": "uscc", "id": uscc_in("440106", 300 + n % 7), "name": "广州市某某医院"},
        "source": {"record_id": format!("BK-{n}"), "region": "440106"},
        "basis": {"doc_type": "penalty_decision", "doc_number": format!("穗医保罚〔2026〕{n}号"), "decided_on": "2026-03-02"},
        "disclosure": {"class": "public"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"],
                    "fine_yuan": "20000", "violation_type": "违规收费"}
    })
}

fn held(gw: &Gateway, record_id: &str) -> bool {
    let (status, _) = gw.admin_get(&format!("/ledger/record?agency={MI}&record_id={record_id}"));
    status == 200
}

#[test]
fn a_backup_taken_while_pushing_restores_every_acknowledged_record_and_a_verifying_chain() {
    let mut gw = Gateway::prepare_sled();
    gw.spawn();
    let acked = Mutex::new(Vec::<String>::new());
    let pushing = AtomicBool::new(true);
    let backup = gw.dir.path().join("backup-1");
    let before_backup: Vec<String> = std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0;
            while pushing.load(Ordering::SeqCst) {
                let batch: Vec<Value> = (n..n + 10).map(penalty).collect();
                gw.push_canonical(MI, &batch);
                acked
                    .lock()
                    .unwrap()
                    .extend((n..n + 10).map(|i| format!("BK-{i}")));
                n += 10;
            }
        });
        while acked.lock().unwrap().len() < 50 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let before = acked.lock().unwrap().clone();
        let (code, out, err) = gw.cli(&["backup", backup.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}{err}");
        let manifest: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(manifest["mode"], "online");
        assert!(manifest["keys"].as_u64().unwrap() > 50, "{manifest}");
        assert!(manifest["key_file_excluded"]
            .as_str()
            .unwrap()
            .ends_with("gateway-keys.toml"));
        // Pushes went on during and after the backup.
        let during = acked.lock().unwrap().len();
        while acked.lock().unwrap().len() < during + 30 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        pushing.store(false, Ordering::SeqCst);
        before
    });
    // The key file is not in the backup; a second backup into the same folder is refused.
    let files: Vec<String> = walk(&backup);
    assert!(
        files.iter().all(|f| !f.contains("gateway-keys")),
        "{files:?}"
    );
    let (code, _, err) = gw.cli(&["backup", backup.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("already exists and is not empty"), "{err}");
    let (_, audit) = gw.admin_get("/audit/entries?limit=500");
    assert!(audit.contains("\"backup\""), "the backup is audited");

    // A restore over the data directory in use is refused, with the gateway stopped too.
    gw.stop();
    let (code, _, err) = gw.cli(&["restore", backup.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("holds a store already"), "{err}");

    // Into a fresh data directory: every record acknowledged before the backup is there.
    let data = gw.config.storage.data_dir.clone();
    std::fs::rename(&data, gw.dir.path().join("data-lost")).unwrap();
    let (code, out, err) = gw.cli(&["restore", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let restored: Value = serde_json::from_str(&out).unwrap();
    assert!(restored["audit_seq"].as_u64().unwrap() > 0);
    let (code, out, err) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    gw.spawn();
    for id in &before_backup {
        assert!(held(&gw, id), "{id} was acknowledged before the backup");
    }
    // And the restored gateway takes new records, its numbers above the backup's.
    gw.push_canonical(MI, &[penalty(100_000)]);
    assert!(held(&gw, "BK-100000"));
    gw.stop();
    let (code, out, err) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn an_offline_backup_of_a_stopped_gateway_restores_too() {
    let mut gw = Gateway::prepare_sled();
    gw.spawn();
    gw.push_canonical(MI, &(0..20).map(penalty).collect::<Vec<_>>());
    gw.stop();
    let backup = gw.dir.path().join("backup-offline");
    let (code, out, err) = gw.cli(&["backup", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["mode"],
        "offline"
    );
    std::fs::remove_dir_all(&gw.config.storage.data_dir).unwrap();
    let (code, out, err) = gw.cli(&["restore", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    gw.spawn();
    for n in 0..20 {
        assert!(held(&gw, &format!("BK-{n}")));
    }
    assert!(
        !held(&gw, "BK-20"),
        "an unknown record is not held: the check can fail"
    );
}

#[test]
fn a_pg_dump_restored_into_a_fresh_cluster_serves_every_record() {
    let Some(bin) = common::postgres::bin_dir() else {
        panic!("PostgreSQL's binaries are needed (Debian: postgresql; .ci/run installs it)");
    };
    let mut gw = Gateway::prepare_sled();
    let url = common::postgres::cluster().database();
    common::on_postgres(&mut gw.config, &url);
    gw.spawn();
    gw.push_canonical(MI, &(0..20).map(penalty).collect::<Vec<_>>());
    gw.stop();
    // docs/operate/backup.md: pg_dump in the custom format, pg_restore into a new database.
    let dump = gw.dir.path().join("gateway.dump");
    let status = std::process::Command::new(bin.join("pg_dump"))
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg(&url)
        .status()
        .unwrap();
    assert!(status.success(), "pg_dump");
    let fresh = common::postgres::Cluster::start_own();
    let target = fresh.database();
    let status = std::process::Command::new(bin.join("pg_restore"))
        .args(["--no-owner", "--dbname", &target])
        .arg(&dump)
        .status()
        .unwrap();
    assert!(status.success(), "pg_restore");
    common::on_postgres(&mut gw.config, &target);
    gw.spawn();
    for n in 0..20 {
        assert!(held(&gw, &format!("BK-{n}")));
    }
    gw.stop();
    let (code, out, err) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}
