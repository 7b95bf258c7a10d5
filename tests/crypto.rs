//! Commercial cryptography end to end (GB/T 39786-2021 level 3), through the real binary: personal
//! identifiers and restricted values sealed at rest, signed receipts, checkpoints and deliveries
//! verified offline, a chain that changes suite, and a data key rotation re-encrypting in the
//! background across a restart.

mod common;

use std::time::Duration;

use common::{repo, wait_until, Gateway};
use serde_json::Value;

const MI: &str = "medical_insurance";

/// A person of the canonical sample (accepted, so stored).
const PERSON: &str = "440106198506121232";

/// Push every shipped sample as its agency; returns the receipts.
fn push_samples(gw: &Gateway) -> Vec<Value> {
    common::samples::push_all(gw)
        .into_iter()
        .map(|(_, _, receipt)| receipt)
        .collect()
}

/// Every resident ID number in the samples: 17 digits and a digit or X, not inside a longer run
/// of letters or digits (found independently of the gateway's own rule).
fn sample_resident_ids() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(repo().join("examples/samples")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if !chars[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let mut end = i;
            let n = i - start;
            if n == 17 && matches!(chars.get(i), Some('X')) {
                end += 1;
            } else if n != 18 {
                continue;
            }
            let ok = |c: Option<&char>| !c.is_some_and(|c| c.is_ascii_alphanumeric());
            if ok(start.checked_sub(1).and_then(|j| chars.get(j))) && ok(chars.get(end)) {
                let id: String = chars[start..end].iter().collect();
                // An all-digit unified social credit code (public, kept in clear) has the same
                // length; a resident ID holds a birth date at positions 7-14 (GB 11643).
                let year: u32 = id[6..10].parse().unwrap_or(0);
                let month: u32 = id[10..12].parse().unwrap_or(0);
                let day: u32 = id[12..14].parse().unwrap_or(0);
                let born = (1900..=2026).contains(&year)
                    && (1..=12).contains(&month)
                    && (1..=31).contains(&day);
                if born && !found.contains(&id) {
                    found.push(id);
                }
            }
            i = end;
        }
    }
    found
}

/// The restricted values of the canonical sample: each field its record's
/// `disclosure.restricted_fields` lists, and the content of records classed `restricted`.
fn sample_restricted_values() -> Vec<String> {
    let records: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/samples/canonical.json")).unwrap(),
    )
    .unwrap();
    let mut values = Vec::new();
    for r in records.as_array().unwrap() {
        if let Some(fields) = r
            .pointer("/disclosure/restricted_fields")
            .and_then(Value::as_object)
        {
            for path in fields.keys() {
                let pointer = format!("/{}", path.replace('.', "/"));
                if let Some(s) = r.pointer(&pointer).and_then(Value::as_str) {
                    values.push(s.to_string());
                }
            }
        }
        if r.pointer("/disclosure/class") == Some(&Value::from("restricted")) {
            for v in r["content"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, v)| v)
            {
                if let Some(s) = v.as_str().filter(|s| s.len() >= 6) {
                    values.push(s.to_string());
                }
            }
        }
    }
    values
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn no_resident_id_or_restricted_value_lies_in_clear_at_rest_and_subjects_are_still_found() {
    let rt = common::multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let receiver = gw.receiver(&rt);
    gw.add_destination("province", "440000", &receiver);
    gw.spawn();
    push_samples(&gw);
    assert!(
        wait_until(Duration::from_secs(30), || receiver.count() > 0),
        "shares are delivered (the outbox and delivery ran)"
    );
    let ids = sample_resident_ids();
    let restricted = sample_restricted_values();
    assert!(ids.len() >= 2, "the samples hold resident IDs: {ids:?}");
    assert!(
        restricted.contains(&"44050146010900000123".to_string()),
        "{restricted:?}"
    );
    // A person is still found by the identifier (through its keyed hash), and shown in clear to
    // an agency allowed to read the archive.
    assert!(ids.contains(&PERSON.to_string()));
    let reply = gw
        .client(MI)
        .get(&format!("/v1/subjects/resident_id/{PERSON}"));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(contains(&reply.body, PERSON));
    gw.stop();

    let store = common::open_store(&gw.config);
    let mut found = Vec::new();
    let mut pairs = 0;
    for pair in store.scan_stored(b"") {
        let (k, v) = pair.unwrap();
        pairs += 1;
        for secret in ids.iter().chain(&restricted) {
            if contains(&k, secret) || contains(&v, secret) {
                found.push(format!("{secret} in {}", String::from_utf8_lossy(&k)));
            }
        }
    }
    assert!(pairs > 50, "the store holds the samples ({pairs} pairs)");
    assert!(found.is_empty(), "in clear in the store: {found:?}");
    drop(store);
    if gw.config.storage.engine == credit_gateway::config::StorageEngine::Sled {
        for file in files(&gw.config.storage.data_dir) {
            let bytes = std::fs::read(&file).unwrap();
            for secret in ids.iter().chain(&restricted) {
                assert!(
                    !contains(&bytes, secret),
                    "{secret} in clear in {}",
                    file.display()
                );
            }
        }
    }
    // The key file was generated, readable by the gateway's user only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(gw.config.key_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn receipts_checkpoints_and_deliveries_are_signed_and_fail_verification_when_altered() {
    let rt = common::multi_thread_runtime();
    let mut gw = Gateway::prepare();
    let receiver = gw.receiver(&rt);
    gw.add_destination("province", "440000", &receiver);
    // A platform that trusts another gateway's key: it must refuse every delivery.
    let stranger = gw.receiver(&rt);
    stranger.require_signatures(
        credit_gateway::crypto::Keyring::ephemeral(credit_gateway::crypto::Suite::National)
            .public_keys(),
    );
    gw.add_destination("city", "440100", &stranger);
    // The keys exist from the first start; publish the public half as an agency would get it.
    gw.spawn();
    let (code, public, err) = gw.cli(&["keys", "public"]);
    assert_eq!(code, 0, "{err}");
    let keys_file = gw.dir.path().join("gateway-public-keys.json");
    std::fs::write(&keys_file, &public).unwrap();
    let public: credit_gateway::crypto::PublicKeyFile = serde_json::from_str(&public).unwrap();
    assert_eq!(public.keys[0].algorithm, "sm2", "national by default");
    receiver.require_signatures(public);

    let receipts = push_samples(&gw);
    let receipt = &receipts[0];
    assert_eq!(receipt["signature"]["algorithm"], "sm2", "{receipt}");
    let file = gw.dir.path().join("receipt.json");
    std::fs::write(&file, serde_json::to_vec_pretty(receipt).unwrap()).unwrap();
    let keys_arg = keys_file.to_str().unwrap();
    let (code, out, err) = verify(&gw, &["receipt", "verify"], &file, keys_arg);
    assert_eq!(code, 0, "{out}{err}");
    // The same receipt as stored, fetched again, verifies too.
    let id = receipt["receipt_id"].as_str().unwrap();
    let again = gw
        .client(receipt["agency"].as_str().unwrap())
        .get(&format!("/v1/receipts/{id}"));
    assert_eq!(again.json()["signature"], receipt["signature"]);
    // One byte changed: the accepted count.
    let text = serde_json::to_string(receipt).unwrap();
    let accepted = format!("\"accepted\":{}", receipt["accepted"]);
    let altered = text.replacen(
        &accepted,
        &format!("\"accepted\":{}", receipt["accepted"].as_u64().unwrap() + 1),
        1,
    );
    assert_ne!(text, altered);
    std::fs::write(&file, altered).unwrap();
    let (code, out, _) = verify(&gw, &["receipt", "verify"], &file, keys_arg);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INVALID"), "{out}");

    let (code, checkpoint, err) = gw.cli(&["audit", "checkpoint"]);
    assert_eq!(code, 0, "{err}");
    let cp_file = gw.dir.path().join("checkpoint.json");
    std::fs::write(&cp_file, &checkpoint).unwrap();
    let (code, out, err) = verify(
        &gw,
        &["audit", "checkpoint", "--verify"],
        &cp_file,
        keys_arg,
    );
    assert_eq!(code, 0, "{out}{err}");
    let cp: Value = serde_json::from_str(&checkpoint).unwrap();
    assert_eq!(cp["hash_suite"], "national");
    let hash = cp["hash"].as_str().unwrap();
    let flipped = if hash.starts_with('0') { "1" } else { "0" };
    std::fs::write(&cp_file, checkpoint.replacen(&hash[..1], flipped, 1)).unwrap();
    let (code, out, _) = verify(
        &gw,
        &["audit", "checkpoint", "--verify"],
        &cp_file,
        keys_arg,
    );
    assert_eq!(code, 1, "{out}");

    // Deliveries: the trusting platform takes them, every one signed; the other refuses all.
    assert!(wait_until(Duration::from_secs(30), || receiver.count() > 0
        && stranger.bad_signatures() > 0));
    assert_eq!(receiver.bad_signatures(), 0);
    assert_eq!(
        stranger.count(),
        0,
        "a delivery with a signature that does not match is refused"
    );
}

#[test]
fn a_chain_that_switched_suites_verifies() {
    let mut gw = Gateway::prepare();
    gw.config.crypto.suite = credit_gateway::crypto::Suite::International;
    gw.spawn();
    push_samples(&gw);
    gw.stop();
    gw.config.crypto.suite = credit_gateway::crypto::Suite::National;
    gw.spawn();
    push_samples(&gw);
    gw.stop();
    let (code, out, err) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("audit chain OK"), "{out}");
    let (_, shown, _) = gw.cli(&["audit", "show", "--limit", "1000"]);
    let suites: Vec<String> = shown
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|e| e["suite"].as_str().unwrap_or("none").to_string())
        .collect();
    assert!(
        suites.contains(&"international".to_string()) && suites.contains(&"national".to_string()),
        "{suites:?}"
    );
    // Altering an entry of either suite breaks the chain.
    let store = common::open_store(&gw.config);
    let (key, entry) = store
        .scan_stored(b"aud/")
        .map(Result::unwrap)
        .find(|(_, v)| String::from_utf8_lossy(v).contains("\"suite\":\"international\""))
        .unwrap();
    let mut w = credit_gateway::store::WriteSet::default();
    w.put(
        key,
        String::from_utf8(entry)
            .unwrap()
            .replacen("batch_received", "batch_receiveD", 1),
    );
    store.apply_stored(w).unwrap();
    store.flush().unwrap();
    drop(store);
    let (code, out, _) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn a_rotated_data_key_reencrypts_everything_in_the_background_across_a_restart() {
    let mut gw = Gateway::prepare();
    gw.config.crypto.reencrypt_batch = 4;
    gw.config.crypto.reencrypt_pace_ms = 150;
    gw.spawn();
    push_samples(&gw);
    gw.stop();
    let sealed_before = {
        let store = common::open_store(&gw.config);
        store
            .scan_stored(b"")
            .map(Result::unwrap)
            .filter(|(_, v)| String::from_utf8_lossy(v).contains("\"$sealed\""))
            .count()
    };
    assert!(sealed_before > 0, "the samples hold personal data");
    let (code, out, err) = gw.cli(&["keys", "rotate"]);
    assert_eq!(code, 0, "{err}");
    let new_key: Value = serde_json::from_str(&out).unwrap();
    let new_key = new_key["data_key"].as_str().unwrap().to_string();
    gw.spawn();
    // Kill it once the re-encryption has made progress but not finished.
    let progress = reencryption;
    assert!(
        wait_until(Duration::from_secs(60), || {
            let (resealed, pending) = progress(&gw);
            resealed > 0.0 && pending == 1.0
        }),
        "re-encryption progressed: {:?}",
        progress(&gw)
    );
    gw.kill();
    let store = common::open_store(&gw.config);
    let stale_at_kill = store
        .scan_stored(b"")
        .map(Result::unwrap)
        .filter(|(_, v)| store.at_rest().unwrap().stale(v))
        .count();
    drop(store);
    assert!(stale_at_kill > 0, "killed in the middle");
    gw.spawn();
    // New data is sealed under the new key straight away.
    push_samples(&gw);
    assert!(
        wait_until(Duration::from_secs(120), || progress(&gw).1 == 0.0),
        "re-encryption finished after the restart: {:?}",
        progress(&gw)
    );
    let reply = gw
        .client(MI)
        .get(&format!("/v1/subjects/resident_id/{PERSON}"));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    gw.stop();
    let store = common::open_store(&gw.config);
    let mut sealed = 0;
    for (k, v) in store.scan_stored(b"").map(Result::unwrap) {
        if String::from_utf8_lossy(&v).contains("\"$sealed\"") {
            sealed += 1;
            assert!(
                !store.at_rest().unwrap().stale(&v),
                "{} still sealed under an old key",
                String::from_utf8_lossy(&k)
            );
            assert!(String::from_utf8_lossy(&v).contains(&new_key));
        }
    }
    // Everything sealed before the rotation is still sealed, now under the new key (the second
    // push repeats the samples: nothing new).
    assert!(
        sealed >= sealed_before,
        "{sealed} sealed values, {sealed_before} before the rotation"
    );
    drop(store);
    let (_, shown, _) = gw.cli(&["audit", "show", "--limit", "10000"]);
    assert!(
        shown.contains("reencryption_started") && shown.contains("reencryption_finished"),
        "audited"
    );
    let (code, out, _) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    // Re-encryption finished: the old data key may leave the key file, and the gateway starts
    // and reads everything without it.
    let path = gw.certs().join("gateway-keys.toml");
    let mut file: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let keys = file["data_key"].as_array_mut().unwrap();
    let before = keys.len();
    keys.retain(|k| k["id"].as_str() == Some(new_key.as_str()));
    assert_eq!(keys.len(), before - 1, "the old key removed");
    std::fs::write(&path, toml::to_string(&file).unwrap()).unwrap();
    gw.spawn();
    let reply = gw
        .client(MI)
        .get(&format!("/v1/subjects/resident_id/{PERSON}"));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

/// The re-encryption's metrics: values re-sealed, and 1 while a pass is pending.
fn reencryption(gw: &Gateway) -> (f64, f64) {
    let (_, metrics) = gw.admin_get("/metrics");
    let read = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    (
        read("gateway_reencryption_resealed"),
        read("gateway_reencryption_pending"),
    )
}

/// A data key rotated while the gateway runs takes effect at SIGHUP: new values are sealed under
/// it and the older ones re-sealed, without a restart (so every node of a database can be given
/// the new key file and reloaded in turn); the reload is in the audit chain.
#[test]
fn a_data_key_rotated_while_running_takes_effect_at_sighup() {
    let mut gw = Gateway::prepare();
    gw.config.crypto.reencrypt_batch = 50;
    gw.config.crypto.reencrypt_pace_ms = 20;
    gw.spawn();
    push_samples(&gw);
    let (code, out, err) = gw.cli(&["keys", "rotate"]);
    assert_eq!(code, 0, "{err}");
    let new_key = serde_json::from_str::<Value>(&out).unwrap()["data_key"]
        .as_str()
        .unwrap()
        .to_string();
    gw.sighup();
    assert!(
        wait_until(Duration::from_secs(10), || gw
            .log()
            .contains("keys reloaded (SIGHUP)")),
        "{}",
        gw.log()
    );
    assert!(
        wait_until(Duration::from_secs(60), || {
            let (resealed, pending) = reencryption(&gw);
            resealed > 0.0 && pending == 0.0
        }),
        "re-encrypted under the reloaded key: {:?}",
        reencryption(&gw)
    );
    let reply = gw
        .client(MI)
        .get(&format!("/v1/subjects/resident_id/{PERSON}"));
    assert_eq!(reply.status, 200);
    gw.stop();
    let store = common::open_store(&gw.config);
    let mut sealed = 0;
    for (k, v) in store.scan_stored(b"").map(Result::unwrap) {
        let text = String::from_utf8_lossy(&v);
        if text.contains("\"$sealed\"") {
            sealed += 1;
            assert!(
                text.contains(&new_key),
                "{} not under the reloaded key",
                String::from_utf8_lossy(&k)
            );
        }
    }
    // The person's versions, record heads, subject entry and queued shares (nine with today's
    // samples): the check above is not vacuous.
    assert!(sealed >= 5, "{sealed} sealed values");
    drop(store);
    let (_, shown, _) = gw.cli(&["audit", "show", "--limit", "10000"]);
    assert!(
        shown.contains(&format!("\"active_data_key\":\"{new_key}\"")),
        "the reload is audited with the key in force"
    );
}

/// Run an offline verification command (`receipt verify`, `audit checkpoint --verify`) on `file`
/// with the public key file `keys`.
fn verify(
    gw: &Gateway,
    command: &[&str],
    file: &std::path::Path,
    keys: &str,
) -> (i32, String, String) {
    let mut args = command.to_vec();
    args.extend([file.to_str().unwrap(), "--keys", keys]);
    gw.cli(&args)
}
