//! Issue #31: what one batch may cost the gateway is bounded by its configuration, and numbers,
//! duplicate keys and bidirectional controls that must reject a record do. End to end through
//! the real binary; peak memory is the gateway process's own `VmHWM`.

mod common;

use std::time::Instant;

use common::{uscc_in, Gateway};
use serde_json::{json, Value};

const MI: &str = "medical_insurance";
const JSON: &str = "application/json";

/// Peak resident memory of a process so far, KiB (`VmHWM` of `/proc/<pid>/status`).
fn peak_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM:")
}

/// Resident memory of a process now, KiB.
fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn pid(gw: &Gateway) -> u32 {
    gw.child.as_ref().expect("gateway running").id()
}

/// `[{},{},...]`: `n` empty objects, 3 bytes each.
fn empty_objects(n: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(n * 3 + 2);
    body.push(b'[');
    for i in 0..n {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{}");
    }
    body.push(b']');
    body
}

/// One record that is an object with `keys` members (`"k0000000":0`).
fn wide_object(keys: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(keys * 12 + 4);
    body.extend_from_slice(b"[{");
    for i in 0..keys {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(format!("\"k{i:07}\":0").as_bytes());
    }
    body.extend_from_slice(b"}]");
    body
}

/// A valid canonical penalty record.
fn penalty(record_id: &str, n: usize) -> Value {
    json!({
        "category": "administrative",
        "subject": {"kind": "institution", "role": "designated_medical_institution",
                    "id_type": "uscc", "id": uscc_in("440111", n % 1000), "name": "某某医院"},
        "source": {"record_id": record_id, "region": "440111"},
        "basis": {"doc_type": "penalty_decision", "doc_number": record_id, "decided_on": "2025-06-03"},
        "disclosure": {"class": "public"},
        "content": {"action": "penalty", "authority": "广州市医疗保障局", "penalty_types": ["罚款"], "fine_yuan": "20000"}
    })
}

/// A valid canonical honour record (small: no legal basis needed).
fn honor(record_id: &str, n: usize) -> Value {
    json!({
        "category": "honor",
        "subject": {"kind": "institution", "role": "other_enterprise", "id_type": "uscc",
                    "id": uscc_in("440106", n % 1000), "name": "某公司"},
        "source": {"record_id": record_id, "region": "440106"},
        "disclosure": {"class": "public"},
        "content": {"honor_name": "诚信单位", "awarded_by": "某局", "awarded_on": "2024-01-01"}
    })
}

/// `n` valid records, padded so that the body is about `bytes` long.
fn valid_batch(n: usize, bytes: usize) -> Vec<u8> {
    let base = serde_json::to_vec(&honor("R-0000000", 0)).unwrap().len() + 1;
    let pad = (bytes / n).saturating_sub(base + 12);
    let records: Vec<Value> = (0..n)
        .map(|i| {
            let mut r = honor(&format!("R-{i:07}"), i);
            r["content"]["note"] = json!("x".repeat(pad));
            r
        })
        .collect();
    serde_json::to_vec(&records).unwrap()
}

fn post(gw: &Gateway, body: Vec<u8>) -> common::Reply {
    try_post(gw, body).expect("request completes")
}

fn try_post(gw: &Gateway, body: Vec<u8>) -> Result<common::Reply, String> {
    gw.client(MI)
        .request("POST", "/v1/records?mapping=canonical", Some(JSON), body)
}

/// Status, accepted count or error code, and answer size of a push (or why it has none).
fn outcome(reply: &Result<common::Reply, String>) -> String {
    match reply {
        Ok(r) => {
            let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            format!(
                "status {}, accepted {}, code {}, answer {} B",
                r.status,
                v["accepted"],
                v["error"]["code"],
                r.body.len()
            )
        }
        Err(e) => format!("no answer: {e}"),
    }
}

/// Wait until the gateway's peak memory stops growing (work still running after a client gave
/// up), at most two minutes.
fn settle(gw: &Gateway) {
    let mut last = 0;
    for _ in 0..60 {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let now = peak_kib(pid(gw));
        if now == last {
            return;
        }
        last = now;
    }
}

/// The limits the end-to-end memory tests run with: small, so that the bound is tight.
fn small_limits(c: &mut credit_gateway::config::Config) {
    c.ingest.max_records_per_batch = 2_000;
    c.ingest.max_values_per_batch = 100_000;
    c.ingest.max_object_members = 200;
    c.ingest.max_listed_rejections = 100;
}

/// What the formula of docs/operate/hardening.md gives for `small_limits`, with room for a loaded machine: idle
/// (~80 MiB) + 2,000 accepted records × ~30 KiB (~60 MiB) + bodies (measured: 163 MiB), far
/// below the 1-2 GiB these cases reached before the bounds.
const SMALL_LIMITS_PEAK_KIB: u64 = 256 * 1024;

fn error_code(reply: &common::Reply) -> String {
    reply.json()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn memory_of_a_batch_is_bounded_by_the_configured_limits() {
    let gw = Gateway::start_with(small_limits);
    // 300 KB of empty objects: refused whole before any record is validated.
    let reply = post(&gw, empty_objects(100_000));
    assert_eq!(
        reply.status,
        413,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(error_code(&reply), "too_many_records");
    // Three at once: the same, each.
    let codes: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let r = post(&gw, empty_objects(100_000));
                    (r.status, error_code(&r))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        codes
            .iter()
            .all(|(s, c)| *s == 413 && c == "too_many_records"),
        "{codes:?}"
    );
    // At the limit: every record rejected, the receipt lists 100 and counts the rest.
    let reply = post(&gw, empty_objects(2_000));
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.len() < 200_000,
        "receipt of {} bytes",
        reply.body.len()
    );
    let receipt = reply.json();
    assert_eq!(receipt["rejected_count"], 2_000);
    assert_eq!(receipt["rejected"].as_array().unwrap().len(), 100);
    let counted: u64 = receipt["rejected_not_listed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 1_900);
    // A 12 MB object with a million keys: that record is rejected at its 201st member.
    let reply = post(&gw, wide_object(1_000_000));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let receipt = reply.json();
    assert_eq!(receipt["rejected_count"], 1);
    assert!(
        receipt["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("more than 200 members"),
        "{receipt}"
    );
    // More values than the batch may hold: refused whole.
    let many: Vec<Value> = (0..1_000)
        .map(|_| json!({"content": {"list": vec![0; 150]}}))
        .collect();
    let reply = post(&gw, serde_json::to_vec(&many).unwrap());
    assert_eq!(
        reply.status,
        413,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(error_code(&reply), "document_limit");
    // A valid batch at the limit is accepted whole.
    let reply = post(&gw, valid_batch(2_000, 1 << 20));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["accepted"], 2_000);
    let peak = peak_kib(pid(&gw));
    println!("peak RSS with the small limits: {} MiB", peak / 1024);
    assert!(
        peak > 0 && peak < SMALL_LIMITS_PEAK_KIB,
        "peak RSS {peak} KiB is within the bound the limits give"
    );
}

#[test]
fn an_xml_document_over_the_element_bound_is_refused() {
    let gw = Gateway::start_with(small_limits);
    let body = format!(
        "<QYDJXX><Records>{}</Records></QYDJXX>",
        "<Record id=\"1\"/>".repeat(100_000)
    );
    let reply = gw
        .client("market_supervision")
        .request(
            "POST",
            "/v1/records?mapping=market-registration",
            Some("application/xml"),
            body.into_bytes(),
        )
        .expect("request completes");
    assert_eq!(
        reply.status,
        413,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(error_code(&reply), "document_limit");
}

#[test]
fn an_audit_entries_page_is_bounded_in_bytes_and_names_the_next() {
    let gw = Gateway::start_with(|c| {
        c.ingest.max_listed_rejections = 10_000;
    });
    // Five batches whose audit entries list 10,000 rejected records each (~0.7 MB apiece).
    for _ in 0..5 {
        assert_eq!(post(&gw, empty_objects(10_000)).status, 200);
    }
    let (status, body) = gw.admin_get("/audit/entries?limit=50");
    assert_eq!(status, 200);
    assert!(
        body.len() < 3 << 20,
        "a page of {} bytes: at most 1 MiB of entries plus one",
        body.len()
    );
    let page: Value = serde_json::from_str(&body).unwrap();
    let entries = page["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    let next = page["next"].as_u64().expect("a next page");
    assert_eq!(next, entries.last().unwrap()["seq"].as_u64().unwrap() + 1);
    let (_, rest) = gw.admin_get(&format!("/audit/entries?from={next}&limit=50"));
    let rest: Value = serde_json::from_str(&rest).unwrap();
    assert_eq!(rest["entries"][0]["seq"], next);
}

fn rejection_of(receipt: &Value) -> (String, String) {
    let r = &receipt["rejected"][0];
    (
        r["field"].as_str().unwrap_or_default().to_string(),
        r["reason"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn huge_infinite_and_overlong_numbers_reject_the_record_naming_the_field() {
    let gw = Gateway::start();
    for (name, number, reason) in [
        (
            "29 nines",
            "99999999999999999999999999999".to_string(),
            "64 bits",
        ),
        ("1e400", "1e400".to_string(), "infinite"),
        ("-1e+400", "-1e+400".to_string(), "infinite"),
        ("100,000 digits", "7".repeat(100_000), "longer than 40"),
    ] {
        let mut record = penalty("NUM-1", 1);
        record["content"]["fine_yuan"] = json!("PLACEHOLDER");
        let body = serde_json::to_string(&json!([record]))
            .unwrap()
            .replace("\"PLACEHOLDER\"", &number);
        let reply = post(&gw, body.into_bytes());
        assert_eq!(reply.status, 200, "{name}");
        let receipt = reply.json();
        assert_eq!(receipt["accepted"], 0, "{name}: {receipt}");
        let (field, why) = rejection_of(&receipt);
        assert_eq!(field, "content.fine_yuan", "{name}");
        assert!(why.contains(reason), "{name}: {why}");
        assert_eq!(receipt["rejected"][0]["record_id"], "NUM-1", "{name}");
    }
    // An amount must be a non-negative plain decimal.
    let mut record = penalty("NUM-2", 2);
    record["content"]["fine_yuan"] = json!(-500);
    let receipt = post(&gw, serde_json::to_vec(&json!([record])).unwrap()).json();
    assert_eq!(rejection_of(&receipt).0, "content.fine_yuan");
    // Through a mapping, the source field is named.
    let body = r#"{"results": [{"PJBH": "H-1", "XZQH": "440106", "ZTLX": "定点医疗机构", "ZTMC": "某医院", "TYSHXYDM": "91310110666007217T", "PJND": 2024, "DF": 1e400, "DJ": "B"}]}"#;
    let reply = gw
        .client(MI)
        .post("/v1/records?mapping=mi-evaluations", JSON, body.into());
    let receipt = reply.json();
    assert_eq!(receipt["accepted"], 0, "{receipt}");
    assert_eq!(rejection_of(&receipt).0, "DF", "{receipt}");
}

#[test]
fn duplicate_keys_are_refused_at_any_depth() {
    let gw = Gateway::start();
    let record = serde_json::to_string(&penalty("DUP-1", 3)).unwrap();
    // The second `disclosure` would have made a restricted record public.
    let dup = record.replace(
        "\"disclosure\":{\"class\":\"public\"}",
        "\"disclosure\":{\"class\":\"restricted\",\"restriction\":\"personal_privacy\"},\"disclosure\":{\"class\":\"public\"}",
    );
    assert_ne!(dup, record, "the record has the disclosure to duplicate");
    let receipt = post(&gw, format!("[{dup}]").into_bytes()).json();
    assert_eq!(receipt["accepted"], 0, "{receipt}");
    let (field, why) = rejection_of(&receipt);
    assert_eq!(field, "disclosure");
    assert!(
        why.contains("\"disclosure\" appears more than once"),
        "{why}"
    );
    assert_eq!(receipt["rejected"][0]["record_id"], "DUP-1");
    // Deeper.
    let deep = record.replace(
        "\"action\":\"penalty\"",
        "\"action\":\"penalty\",\"action\":\"other\"",
    );
    let receipt = post(&gw, format!("[{deep}]").into_bytes()).json();
    assert_eq!(rejection_of(&receipt).0, "content.action", "{receipt}");
    // Outside the records: the document is refused.
    let reply = gw.client(MI).post(
        "/v1/records?mapping=mi-evaluations",
        JSON,
        br#"{"results": [], "results": []}"#.to_vec(),
    );
    assert_eq!(reply.status, 400);
    assert_eq!(error_code(&reply), "duplicate_key");
    assert_eq!(reply.json()["error"]["field"], "results");
    // A correction request too.
    let reply = gw.client(MI).post(
        "/v1/corrections",
        JSON,
        br#"{"record_id": "DUP-1", "kind": "correct", "content": {"fine_yuan": "1", "fine_yuan": "2"}}"#.to_vec(),
    );
    assert_eq!(
        reply.status,
        400,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(error_code(&reply), "duplicate_key");
    assert_eq!(reply.json()["error"]["field"], "content.fine_yuan");
}

#[test]
fn bidirectional_overrides_are_refused_in_names_and_text() {
    let gw = Gateway::start();
    let mut named = penalty("RTL-1", 4);
    named["subject"]["name"] = json!("某医院\u{202E}司公限有");
    let mut text = penalty("RTL-2", 5);
    text["content"]["authority"] = json!("\u{2067}广州市医疗保障局\u{2069}");
    let receipt = post(&gw, serde_json::to_vec(&json!([named, text])).unwrap()).json();
    assert_eq!(receipt["accepted"], 0, "{receipt}");
    let fields: Vec<&str> = receipt["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["subject.name", "content.authority"]);
    assert!(receipt["rejected"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("bidirectional"));
}

/// The figures quoted in docs/operate/hardening.md and in issue #31: each case on a fresh gateway
/// with the default configuration. `cargo test --test input_bounds -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_issue_31_cases_with_the_default_configuration() {
    // IB_CASES=empty,concurrent,wide,valid picks cases (all by default).
    let cases = std::env::var("IB_CASES").unwrap_or_default();
    let run = |case: &str| cases.is_empty() || cases.split(',').any(|c| c == case);
    let report = |name: &str, gw: &Gateway, started: Instant, extra: String| {
        let p = pid(gw);
        println!(
            "{name}: peak {} MiB, resident after {} MiB, {:.1} s{extra}",
            peak_kib(p) / 1024,
            rss_kib(p) / 1024,
            started.elapsed().as_secs_f64()
        );
    };
    if run("empty") {
        let gw = Gateway::start();
        let idle = peak_kib(pid(&gw));
        println!("idle gateway: peak {} MiB", idle / 1024);
        let started = Instant::now();
        let body = empty_objects(100_000);
        let len = body.len();
        let reply = post(&gw, body);
        report(
            "100,000 empty objects",
            &gw,
            started,
            format!(
                ", body {len} B, status {}, answer {} B",
                reply.status,
                reply.body.len()
            ),
        );
        // Four more batches, at the default record limit when there is one.
        for _ in 0..4 {
            let _ = try_post(&gw, empty_objects(10_000));
        }
        settle(&gw);
        let started = Instant::now();
        let (status, audit) = gw.admin_get("/audit/entries?limit=50");
        report(
            "/audit/entries?limit=50",
            &gw,
            started,
            format!(", status {status}, answer {} B", audit.len()),
        );
    }
    if run("concurrent") {
        let gw = Gateway::start();
        let started = Instant::now();
        let statuses: Vec<Result<u16, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|_| s.spawn(|| try_post(&gw, empty_objects(100_000)).map(|r| r.status)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        settle(&gw);
        report(
            "3 x 100,000 empty objects at once",
            &gw,
            started,
            format!(", statuses {statuses:?}"),
        );
    }
    if run("wide") {
        let gw = Gateway::start();
        let started = Instant::now();
        let body = wide_object(1_000_000);
        let len = body.len();
        let reply = try_post(&gw, body);
        settle(&gw);
        report(
            "one object with 1,000,000 keys",
            &gw,
            started,
            format!(", body {len} B, {}", outcome(&reply)),
        );
    }
    for (n, bytes) in [(36_000, 15 << 20), (10_000, 4 << 20)] {
        if !run("valid") {
            break;
        }
        let gw = Gateway::start();
        let started = Instant::now();
        let body = valid_batch(n, bytes);
        let len = body.len();
        let reply = try_post(&gw, body);
        settle(&gw);
        report(
            &format!("valid batch of {n} records"),
            &gw,
            started,
            format!(", body {len} B, {}", outcome(&reply)),
        );
    }
}
