//! Several gateway nodes on one PostgreSQL database (issue "Several gateway nodes on
//! PostgreSQL"): any node accepts pushes, idempotency holds across nodes, one audit chain, one
//! node sends each share and another takes over when it dies, and a sled directory moves into a
//! database. These tests always run on PostgreSQL (a throwaway cluster, `tests/support`).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{postgres, Gateway};
use serde_json::{json, Value};

const MI: &str = "medical_insurance";

fn record(id: &str) -> Value {
    json!({
        "category": "commitment",
        "subject": {"kind": "institution", "role": "designated_retail_pharmacy", "id_type": "uscc", "id": "91350100M000100Y43", "name": "福州某某药店"},
        "source": {"record_id": id, "region": "440106"},
        "disclosure": {"class": "gov_share"},
        "content": {"commitment_type": "医保基金使用信用承诺", "committed_on": "2025-01-02", "fulfilment": "pending"}
    })
}

/// Two nodes on one new database, sharing one set of certificates and one key file (made
/// before either starts, as an operator deploys them), both delivering to `receiver`'s platform
/// `provincial`.
fn two_nodes(rt: &tokio::runtime::Runtime) -> (Gateway, Gateway, common::receiver::Receiver) {
    let url = postgres::cluster().database();
    let mut a = Gateway::prepare_sled();
    let receiver = a.receiver(rt);
    let mut b = Gateway::prepare_sled();
    a.write_config();
    let (code, _, err) = a.cli(&["keys", "public"]);
    assert_eq!(code, 0, "the key file is made: {err}");
    copy_dir(&a.certs(), &b.certs());
    for (gw, name) in [(&mut a, "node-a"), (&mut b, "node-b")] {
        common::on_postgres(&mut gw.config, &url);
        gw.config.storage.node = Some(name.into());
        gw.add_destination("provincial", "440000", &receiver);
    }
    (a, b, receiver)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Push canonical records to a node; its reply.
fn push(gw: &Gateway, records: &impl serde::Serialize) -> common::Reply {
    gw.client(MI).post(
        "/v1/records?mapping=canonical",
        "application/json",
        serde_json::to_vec(records).unwrap(),
    )
}

/// Record id -> the distinct idempotency keys of its publications the platform received.
fn publications(receiver: &common::receiver::Receiver) -> HashMap<String, HashSet<String>> {
    let mut by_record: HashMap<String, HashSet<String>> = HashMap::new();
    for r in receiver.received() {
        if r.kind != "share" {
            continue;
        }
        if let Some(id) = r.record["source"]["record_id"].as_str() {
            by_record
                .entry(id.to_string())
                .or_default()
                .insert(r.idempotency_key.clone());
        }
    }
    by_record
}

#[test]
fn two_nodes_under_load_with_one_killed_at_random_lose_nothing_and_keep_one_chain() {
    let rt = common::multi_thread_runtime();
    let (a, b, receiver) = two_nodes(&rt);
    let nodes = Arc::new([Mutex::new(a), Mutex::new(b)]);
    for n in nodes.iter() {
        n.lock().unwrap().spawn();
    }
    let acknowledged: Arc<Mutex<HashSet<String>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let turn = Arc::new(AtomicUsize::new(0));
    let pushers: Vec<_> = (0..3)
        .map(|t| {
            let (nodes, acknowledged, turn) = (nodes.clone(), acknowledged.clone(), turn.clone());
            std::thread::spawn(move || {
                for n in 0..25 {
                    let ids: Vec<String> = (0..20).map(|i| format!("N{t}-{n}-{i}")).collect();
                    let batch: Vec<Value> = ids.iter().map(|id| record(id)).collect();
                    let body = serde_json::to_vec(&batch).unwrap();
                    // Clients alternate between the nodes; a push that fails (its node was
                    // killed) goes to the other node, the same records again.
                    let give_up = std::time::Instant::now() + Duration::from_secs(60);
                    while std::time::Instant::now() < give_up {
                        let which = turn.fetch_add(1, Ordering::SeqCst) % 2;
                        let client = match nodes[which].try_lock() {
                            Ok(gw) if gw.child.is_some() => gw.client(MI),
                            _ => {
                                // Being restarted: the other node's turn.
                                std::thread::sleep(Duration::from_millis(20));
                                continue;
                            }
                        };
                        match client.request(
                            "POST",
                            "/v1/records?mapping=canonical",
                            Some("application/json"),
                            body.clone(),
                        ) {
                            Ok(reply) if reply.status == 200 => {
                                let receipt = reply.json();
                                let mut acked = acknowledged.lock().unwrap();
                                for r in receipt["records"].as_array().unwrap() {
                                    assert_ne!(r["outcome"], "rejected", "{r}");
                                    acked.insert(r["record_id"].as_str().unwrap().to_string());
                                }
                                break;
                            }
                            _ => std::thread::sleep(Duration::from_millis(50)),
                        }
                    }
                }
            })
        })
        .collect();
    // The killer: SIGKILL a node at pseudo-random moments, then start it again.
    let killer = {
        let (nodes, done) = (nodes.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seed = std::process::id() as u64 | 1;
            let mut kills = 0;
            while !done.load(Ordering::SeqCst) && kills < 4 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                std::thread::sleep(Duration::from_millis(200 + (seed >> 33) % 500));
                let mut gw = nodes[kills % 2].lock().unwrap();
                gw.kill();
                std::thread::sleep(Duration::from_millis(200));
                gw.spawn();
                kills += 1;
            }
            kills
        })
    };
    for p in pushers {
        p.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let kills = killer.join().unwrap();
    assert!(kills >= 1, "a node was killed under load");
    let acked = acknowledged.lock().unwrap().clone();
    assert_eq!(
        acked.len(),
        3 * 25 * 20,
        "every batch was acknowledged by one node or the other"
    );

    // Every acknowledged record reaches the platform, under one idempotency key.
    let all_arrived = common::wait_until(Duration::from_secs(90), || {
        let got = publications(&receiver);
        acked.iter().all(|id| got.contains_key(id))
    });
    let got = publications(&receiver);
    let missing: Vec<&String> = acked.iter().filter(|id| !got.contains_key(*id)).collect();
    assert!(
        all_arrived,
        "{} acknowledged records never delivered, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    for (id, keys) in &got {
        assert_eq!(
            keys.len(),
            1,
            "{id} was published under {} keys: stored twice",
            keys.len()
        );
    }

    // Stored once each: one version per record, whichever node answers.
    let a = nodes[0].lock().unwrap();
    let archive = a
        .client(MI)
        .get("/v1/subjects/uscc/91350100M000100Y43")
        .json();
    let stored = archive["categories"]["commitment"].as_array().unwrap();
    assert_eq!(
        stored.len(),
        acked.len(),
        "every acknowledged record stored once"
    );
    for r in stored {
        assert_eq!(
            r["versions"].as_array().unwrap().len(),
            1,
            "{}",
            r["record_id"]
        );
    }
    // One chain, no fork: it verifies end to end from either node's configuration.
    let (code, out, err) = a.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let b = nodes[1].lock().unwrap();
    let (code, out, err) = b.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn the_same_batch_pushed_to_both_nodes_at_once_is_stored_once() {
    let rt = common::multi_thread_runtime();
    let (mut a, mut b, _receiver) = two_nodes(&rt);
    a.spawn();
    b.spawn();
    for round in 0..5 {
        let ids: Vec<String> = (0..30).map(|i| format!("SAME-{round}-{i}")).collect();
        let body =
            serde_json::to_vec(&ids.iter().map(|id| record(id)).collect::<Vec<_>>()).unwrap();
        let pushes: Vec<_> = [a.client(MI), b.client(MI), a.client(MI), b.client(MI)]
            .into_iter()
            .map(|client| {
                let body = body.clone();
                std::thread::spawn(move || {
                    let reply =
                        client.post("/v1/records?mapping=canonical", "application/json", body);
                    assert_eq!(reply.status, 200);
                    reply.json()
                })
            })
            .collect();
        let receipts: Vec<Value> = pushes.into_iter().map(|p| p.join().unwrap()).collect();
        for id in &ids {
            let new = receipts
                .iter()
                .flat_map(|r| r["records"].as_array().unwrap())
                .filter(|r| r["record_id"] == id.as_str() && r["outcome"] == "new")
                .count();
            assert_eq!(
                new, 1,
                "{id} is new in exactly one of four concurrent receipts"
            );
        }
    }
    let archive = b
        .client(MI)
        .get("/v1/subjects/uscc/91350100M000100Y43")
        .json();
    let stored = archive["categories"]["commitment"].as_array().unwrap();
    assert_eq!(stored.len(), 150);
    for r in stored {
        assert_eq!(
            r["versions"].as_array().unwrap().len(),
            1,
            "{}",
            r["record_id"]
        );
    }
}

#[test]
fn operator_actions_and_sighup_work_on_either_node() {
    let rt = common::multi_thread_runtime();
    let (mut a, mut b, receiver) = two_nodes(&rt);
    receiver.set_mode(common::receiver::Mode::RefuseRecord("POISON".into()), None);
    a.spawn();
    b.spawn();
    let batch = json!([record("OK-1"), record("POISON-1")]);
    let reply = push(&a, &batch);
    assert_eq!(reply.status, 200);
    // Whichever node delivered, the dead letter is in the one database: node b replays it.
    let dead = || {
        let (code, out, err) = b.cli(&["outbox", "list", "--destination", "provincial", "--dead"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()["entries"]
            .as_array()
            .unwrap()
            .len()
    };
    assert!(
        common::wait_until(Duration::from_secs(20), || dead() == 1),
        "one dead letter"
    );
    receiver.set_mode(common::receiver::Mode::Normal, None);
    let (code, out, err) = b.cli(&["outbox", "replay"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"replayed\": 1"), "{out}");
    assert!(
        common::wait_until(Duration::from_secs(20), || publications(&receiver)
            .contains_key("POISON-1")),
        "the replayed share is delivered"
    );
    assert!(
        b.log().contains("operator action"),
        "node b did it, in its own log"
    );
    // SIGHUP on node b reloads node b, audited in the one chain.
    b.sighup();
    assert!(
        common::wait_until(Duration::from_secs(10), || b
            .log()
            .contains("reloaded (SIGHUP)")),
        "{}",
        b.log()
    );
    // The audit entry is committed after the log line: wait for it.
    let chain_has_reload = || {
        let (code, shown, err) = a.cli(&["audit", "show", "--from", "1"]);
        assert_eq!(code, 0, "{err}");
        shown.contains("operator_tls_reload")
    };
    assert!(
        common::wait_until(Duration::from_secs(10), chain_has_reload),
        "node b's reload is in the chain node a reads"
    );
    let (code, out, err) = a.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// A node started with a key file of its own on a database whose data was sealed under other
/// keys is refused, saying why, before it writes anything (GB/T 39786: one set of keys per
/// system); with the right key file it starts.
#[test]
fn a_node_with_other_keys_is_refused_by_a_shared_database() {
    let rt = common::multi_thread_runtime();
    let (mut a, mut b, _receiver) = two_nodes(&rt);
    a.spawn();
    let person = json!([{
        "category": "administrative",
        "subject": {"kind": "individual", "role": "physician", "id_type": "resident_id",
                    "id": "440106198506121232", "name": "张医生"},
        "source": {"record_id": "KEYS-1", "region": "440106"},
        "basis": {"doc_type": "penalty_decision", "doc_number": "穗医保罚〔2026〕9号", "decided_on": "2026-09-20"},
        "disclosure": {"class": "gov_share"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"]}
    }]);
    let reply = push(&a, &person);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let own_keys = b.certs().join("gateway-keys.toml");
    let shared = std::fs::read(&own_keys).unwrap();
    std::fs::remove_file(&own_keys).unwrap();
    let refused = start_fails(&b);
    assert!(
        refused.contains("the keys do not match the stored data")
            && refused.contains("lookup key differs"),
        "{refused}"
    );
    std::fs::write(&own_keys, shared).unwrap();
    b.spawn();
    let found = b
        .client(MI)
        .get("/v1/subjects/resident_id/440106198506121232")
        .json();
    assert_eq!(
        found["categories"]["administrative"][0]["record_id"], "KEYS-1",
        "node b finds node a's subject: {found}"
    );
}

#[test]
fn a_node_killed_while_holding_delivery_leases_leaves_its_shares_to_the_other() {
    let rt = common::multi_thread_runtime();
    let (mut a, mut b, receiver) = two_nodes(&rt);
    receiver.set_mode(common::receiver::Mode::Unavailable, None);
    a.spawn();
    assert!(
        common::wait_until(Duration::from_secs(10), || a
            .log()
            .contains("lease taken: this node does the work lease=delivery/provincial")
            || (a.log().contains("lease taken")
                && a.log().contains("delivery/provincial"))),
        "node a takes the delivery lease: {}",
        a.log()
    );
    b.spawn();
    let ids: Vec<String> = (0..60).map(|i| format!("L-{i}")).collect();
    for chunk in ids.chunks(20) {
        let batch: Vec<Value> = chunk.iter().map(|id| record(id)).collect();
        let reply = push(&a, &batch);
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    // Node a holds the shares (the platform is down) and dies.
    assert!(
        common::wait_until(Duration::from_secs(10), || receiver.requests() > 0),
        "node a tried to deliver"
    );
    a.kill();
    receiver.set_mode(common::receiver::Mode::Normal, None);
    let delivered = common::wait_until(Duration::from_secs(30), || {
        let got = publications(&receiver);
        ids.iter().all(|id| got.contains_key(id))
    });
    assert!(
        delivered,
        "node b delivered what node a held: {} of {}\n{}",
        publications(&receiver).len(),
        ids.len(),
        b.log()
    );
    assert!(
        b.log().contains("lease taken") && b.log().contains("delivery/provincial"),
        "node b took the lease over: {}",
        b.log()
    );
}

#[test]
fn a_sled_directory_migrates_into_a_database_and_the_chain_agrees_on_both() {
    let rt = common::multi_thread_runtime();
    let mut gw = Gateway::prepare_sled();
    let receiver = gw.receiver(&rt);
    receiver.set_mode(common::receiver::Mode::Unavailable, None);
    gw.add_destination("provincial", "440000", &receiver);
    gw.spawn();
    let ids: Vec<String> = (0..30).map(|i| format!("M-{i}")).collect();
    let batch: Vec<Value> = ids.iter().map(|id| record(id)).collect();
    let reply = push(&gw, &batch);
    assert_eq!(reply.status, 200);
    gw.stop();

    let url = postgres::cluster().database();
    let data = gw.config.storage.data_dir.to_str().unwrap().to_string();
    let (code, out, err) = gw.cli(&["migrate", "--from", &data, "--to", &url]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("(100%)"), "progress is shown: {err}");
    let copied: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(copied["keys"].as_u64().unwrap() > 30, "{copied}");
    // Copying again into the same database is refused (it is not empty).
    let (code, _, err) = gw.cli(&["migrate", "--from", &data, "--to", &url]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not empty") || err.contains("already holds"),
        "{err}"
    );

    // The chain as the sled directory has it, and as the database has it.
    let (code, sled_checkpoint, err) = gw.cli(&["audit", "checkpoint"]);
    assert_eq!(code, 0, "{err}");
    let sled_config = gw.config.clone();
    common::on_postgres(&mut gw.config, &url);
    gw.write_config();
    let (code, pg_checkpoint, err) = gw.cli(&["audit", "checkpoint"]);
    assert_eq!(code, 0, "{err}");
    // (Each checkpoint carries its own time and signature; the chain's head is what must agree.)
    let head = |text: &str| {
        let v: Value = serde_json::from_str(text.trim()).unwrap();
        (v["seq"].clone(), v["hash"].clone(), v["hash_suite"].clone())
    };
    assert_eq!(
        head(&sled_checkpoint),
        head(&pg_checkpoint),
        "both engines hold the same chain"
    );
    let (code, out, err) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    drop(sled_config);

    // A node on the database delivers what the sled directory had queued, and goes on.
    receiver.set_mode(common::receiver::Mode::Normal, None);
    gw.spawn();
    let delivered = common::wait_until(Duration::from_secs(20), || {
        let got = publications(&receiver);
        ids.iter().all(|id| got.contains_key(id))
    });
    assert!(
        delivered,
        "the queued shares arrive from the database: {}",
        gw.log()
    );
    let reply = push(&gw, &json!([record("M-after")]));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["records"][0]["outcome"], "new");
    // The same record sent again is known: idempotency came along with the archive.
    let reply = push(&gw, &json!([record("M-3")]));
    assert_ne!(
        reply.json()["records"][0]["outcome"],
        "new",
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

/// The same writes on both engines read back the same, in the same order: across scan pages,
/// under prefixes ending in 0xff, with removals winning over writes.
#[test]
fn the_database_engine_reads_and_writes_like_sled() {
    use credit_gateway::store::{postgres::Options, Store, WriteSet};
    let dir = tempfile::tempdir().unwrap();
    let sled = Store::open(dir.path()).unwrap();
    let pg = Store::open_postgres(
        &Options {
            url: postgres::cluster().database(),
            pool_size: 4,
            ca: None,
        },
        None,
    )
    .unwrap();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for i in 0..1_300u32 {
        keys.push(format!("out/p\x1f1\x1f{i:020}").into_bytes());
    }
    for tail in [0u8, 1, 0x7f, 0xfe, 0xff] {
        keys.push(vec![b'z', 0xff, tail]);
        keys.push(vec![b'z', 0xff, 0xff, tail]);
    }
    for store in [&sled, &pg] {
        let mut w = WriteSet::default();
        for (i, k) in keys.iter().enumerate() {
            w.put(k.clone(), format!("v{i}").into_bytes());
        }
        w.remove(keys[7].clone());
        w.put(keys[7].clone(), b"written and removed in one set".to_vec());
        store.apply(w).unwrap();
    }
    let read = |store: &Store, prefix: &[u8]| -> Vec<(Vec<u8>, Vec<u8>)> {
        store.scan_raw(prefix).map(|p| p.unwrap()).collect()
    };
    for prefix in [
        &b"out/"[..],
        b"out/p\x1f1\x1f0000000000000000001",
        b"z\xff",
        b"z\xff\xff",
        b"",
    ] {
        let (a, b) = (read(&sled, prefix), read(&pg, prefix));
        assert_eq!(a.len(), b.len(), "prefix {prefix:?}");
        assert_eq!(a, b, "prefix {prefix:?}");
    }
    assert!(pg.get_raw(&keys[7]).unwrap().is_none(), "a removal wins");
    let ranged = |s: &Store| -> Vec<Vec<u8>> {
        s.range_raw(&keys[100], Some(&keys[700]))
            .map(|p| p.unwrap().0)
            .collect()
    };
    assert_eq!(ranged(&sled), ranged(&pg));
    assert_eq!(ranged(&pg).len(), 600);
    assert_eq!(
        sled.last_under::<serde_json::Value>("out/")
            .ok()
            .map(|l| l.map(|(k, _)| k)),
        pg.last_under::<serde_json::Value>("out/")
            .ok()
            .map(|l| l.map(|(k, _)| k)),
    );

    // Identifiers only grow, also after raising them past another engine's.
    let first = pg.next_id().unwrap();
    assert!(pg.next_id().unwrap() > first);
    pg.raise_ids(5_000_000).unwrap();
    assert!(pg.next_id().unwrap() >= 5_000_000);

    // A lease has one holder until it expires or is released.
    let ttl = Duration::from_millis(1_500);
    assert!(pg.lease("delivery/x", "node-a", ttl).unwrap());
    assert!(
        !pg.lease("delivery/x", "node-b", ttl).unwrap(),
        "held by node a"
    );
    assert!(
        pg.lease("delivery/x", "node-a", ttl).unwrap(),
        "renewed by its holder"
    );
    std::thread::sleep(Duration::from_millis(1_700));
    assert!(
        pg.lease("delivery/x", "node-b", ttl).unwrap(),
        "expired: node b takes it"
    );
    assert!(!pg.lease("delivery/x", "node-a", ttl).unwrap());
    pg.release("delivery/x", "node-b").unwrap();
    assert!(
        pg.lease("delivery/x", "node-a", ttl).unwrap(),
        "released: free at once"
    );

    // An exclusive section has one holder across connections.
    let held = pg.exclusive("steps").unwrap();
    let entered = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (pg, entered) = (pg.clone(), entered.clone());
        std::thread::spawn(move || {
            let _second = pg.exclusive("steps").unwrap();
            entered.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    assert!(!entered.load(Ordering::SeqCst), "the second holder waits");
    drop(held);
    waiter.join().unwrap();
    assert!(
        entered.load(Ordering::SeqCst),
        "and enters once the first leaves"
    );
}

#[test]
fn a_node_reaches_the_database_over_tls_and_refuses_a_server_it_cannot_verify() {
    let mut gw = Gateway::prepare_sled();
    let certs = gw.certs();
    // The database speaks TLS only, with a certificate for localhost from the gateway's CA.
    let tls =
        postgres::Cluster::start_tls(&certs.join("server.pem"), &certs.join("server-key.pem"));
    let db = tls.database();
    let name = db.rsplit('/').next().unwrap().to_string();
    let url = |mode: &str| {
        format!(
            "postgres://postgres@localhost:{}/{name}?sslmode={mode}",
            tls.port
        )
    };

    // Without the CA the node connects in clear, which the server refuses: it does not start.
    common::on_postgres(&mut gw.config, &url("disable"));
    let refused = start_fails(&gw);
    assert!(refused.contains("database"), "{refused}");

    // With a CA that did not sign the server's certificate: refused too, and the URL (which
    // may hold a password) is never printed.
    let other = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run_cli(
        other.path(),
        &["certs", "init", "--dir", other.path().to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    gw.config.storage.postgres_url = Some(url("require"));
    gw.config.storage.postgres_ca = Some(other.path().join("ca.pem"));
    let refused = start_fails(&gw);
    assert!(refused.contains("database"), "{refused}");
    assert!(
        !refused.contains("postgres://"),
        "no URL in messages: {refused}"
    );

    // With the right CA: TLS, and the gateway works.
    gw.config.storage.postgres_ca = Some(certs.join("ca.pem"));
    gw.spawn();
    let reply = push(&gw, &json!([record("TLS-1")]));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let in_tls = tls
        .sql(&name, "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.datname = current_database() AND a.pid <> pg_backend_pid()")
        .unwrap();
    assert!(
        in_tls.trim().parse::<u32>().unwrap() >= 1,
        "the node's connections use TLS: {in_tls}"
    );
}

/// Start the gateway with its configuration, expecting it to exit with an error; its stderr.
fn start_fails(gw: &Gateway) -> String {
    gw.write_config();
    let out = std::process::Command::new(common::BIN)
        .arg("--config")
        .arg(gw.config_path())
        .arg("serve")
        .current_dir(gw.dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the gateway must not start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A timer is in the one database and fires once, whichever node holds the timers' lease: a
/// general penalty's public notice ends (national measures: at most one year) and the platform
/// gets one withdrawal, though both nodes' clocks pass the end.
#[test]
fn a_notice_window_ends_once_across_two_nodes() {
    let rt = common::multi_thread_runtime();
    let (mut a, mut b, receiver) = two_nodes(&rt);
    for gw in [&mut a, &mut b] {
        gw.config.corrections.dangerous_manual_clock = true;
        gw.config.lifecycle.check_interval_ms = 100;
    }
    a.spawn();
    b.spawn();
    let decided = common::days_ago(300);
    let date = credit_gateway::record::parse_date(&decided).unwrap();
    let last_day = credit_gateway::lifecycle::notice::add_months(date, 12);
    let end = credit_gateway::lifecycle::notice::start_of(last_day.next_day().unwrap());
    let penalty = json!([{
        "category": "administrative",
        "subject": {"kind": "institution", "role": "designated_retail_pharmacy",
                    "id_type": "uscc", "id": "91310110666007217T", "name": "广州市某某大药房有限公司"},
        "source": {"record_id": "WIN-2", "region": "440106"},
        "basis": {"doc_type": "penalty_decision", "doc_number": "医保罚〔2026〕WIN-2号", "decided_on": decided},
        "disclosure": {"class": "public"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"], "fine_yuan": "20000"}
    }]);
    let reply = push(&b, &penalty);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let of = || -> Vec<(String, String)> {
        receiver
            .received()
            .into_iter()
            .filter(|r| r.record["source"]["record_id"] == "WIN-2")
            .map(|r| (r.kind, r.channel))
            .collect()
    };
    assert!(
        common::wait_until(Duration::from_secs(20), || of().len() == 2),
        "shared on both channels: {:?}",
        of()
    );
    let after = credit_gateway::clock::rfc3339(end + time::Duration::seconds(1));
    a.set_clock(&after);
    b.set_clock(&after);
    assert!(
        common::wait_until(Duration::from_secs(20), || of().len() == 3),
        "{:?}",
        of()
    );
    std::thread::sleep(Duration::from_millis(1_500));
    let later = credit_gateway::clock::rfc3339(end + time::Duration::hours(30));
    a.set_clock(&later);
    b.set_clock(&later);
    std::thread::sleep(Duration::from_millis(1_500));
    let withdrawals: Vec<_> = of()
        .into_iter()
        .filter(|(k, _)| k == "withdrawal")
        .collect();
    assert_eq!(
        withdrawals,
        vec![("withdrawal".to_string(), "public_notice".to_string())],
        "withdrawn once from public notice; government sharing continues"
    );
    assert_eq!(receiver.duplicates(), 0, "nothing sent twice");
}

/// A node that cannot reach the database is not ready (a load balancer sends agencies
/// elsewhere), refuses pushes with a storage error rather than acknowledging them, and is ready
/// again, with nothing lost, when the database is back.
#[test]
fn a_node_without_its_database_is_not_ready_until_it_answers_again() {
    let cluster = postgres::Cluster::start_own();
    let mut gw = Gateway::prepare_sled();
    common::on_postgres(&mut gw.config, &cluster.database());
    gw.spawn();
    let ready = |gw: &Gateway| gw.admin_get("/readyz").0 == 200;
    assert!(ready(&gw));
    let push = |gw: &Gateway, id: &str| push(gw, &json!([record(id)]));
    assert_eq!(push(&gw, "DB-1").status, 200);

    cluster.stop_server().unwrap();
    assert!(
        common::wait_until(Duration::from_secs(15), || !ready(&gw)),
        "not ready without the database: {}",
        gw.log()
    );
    assert!(gw.log().contains("the database does not answer"));
    let refused = push(&gw, "DB-2");
    assert!(
        refused.status >= 500,
        "no acknowledgement without the database: {}",
        refused.status
    );

    cluster.start_server().unwrap();
    assert!(
        common::wait_until(Duration::from_secs(30), || ready(&gw)),
        "ready again: {}",
        gw.log()
    );
    // The pool and the writer reconnect by themselves.
    assert!(
        common::wait_until(Duration::from_secs(30), || push(&gw, "DB-2").status == 200),
        "pushes are acknowledged again"
    );
    let archive = gw
        .client(MI)
        .get("/v1/subjects/uscc/91350100M000100Y43")
        .json();
    let ids: Vec<&str> = archive["categories"]["commitment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"DB-1") && ids.contains(&"DB-2"), "{ids:?}");
}
