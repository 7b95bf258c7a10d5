//! Every shipped sample through the real server, as its agency, and through the offline `check`.
//! Expectations live in `examples/samples/expected.toml` beside the samples.

mod common;

use common::{repo, run_cli, Gateway};
use serde_json::Value;

#[test]
fn every_shipped_sample_gets_the_expected_receipt() {
    let gw = Gateway::start();
    let all = common::samples::push_all(&gw);
    assert_eq!(all.len(), 12, "one sample per shipped mapping");
    for (mapping, exp, receipt) in &all {
        assert_eq!(
            receipt["accepted"].as_integer_like(),
            exp["accepted"].as_integer().unwrap(),
            "{mapping}: {receipt}"
        );
        let rejected = receipt["rejected"].as_array().unwrap();
        let want = exp["rejected"].as_array().unwrap();
        assert_eq!(rejected.len(), want.len(), "{mapping}: {receipt}");
        for w in want {
            let id = w["record_id"].as_str().unwrap();
            let got = rejected
                .iter()
                .find(|r| r["record_id"] == id)
                .unwrap_or_else(|| panic!("{mapping}: {id} not rejected: {receipt}"));
            assert_eq!(
                got["canonical_field"],
                w["canonical_field"].as_str().unwrap(),
                "{mapping} {id}"
            );
            assert_eq!(
                got["field"],
                w["field"].as_str().unwrap(),
                "{mapping} {id}: the source field is named"
            );
            assert!(got["index"].is_u64() && !got["reason"].as_str().unwrap().is_empty());
        }
    }
}

#[test]
fn the_gbk_sample_keeps_its_chinese_text() {
    let gw = Gateway::start();
    let body = std::fs::read(repo().join("examples/samples/tax-major-violations.xml")).unwrap();
    assert!(
        std::str::from_utf8(&body).is_err(),
        "the sample really is GBK"
    );
    let receipt = gw
        .client("tax")
        .post(
            "/v1/records?mapping=tax-major-violations",
            "application/xml",
            body,
        )
        .json();
    assert_eq!(receipt["accepted"], 2);
    let out = gw
        .client("medical_insurance")
        .get(&format!("/v1/subjects/uscc/{}", first_tax_subject()))
        .json();
    let record = &out["categories"]["dishonest_list"][0]["versions"][0]["record"];
    assert_eq!(record["subject"]["name"], "广州市某某医药贸易有限公司");
    assert_eq!(
        record["basis"]["decided_on"], "2025-01-15",
        "YYYY年MM月DD日 parsed"
    );
    assert_eq!(
        record["content"]["authority"],
        "国家税务总局广州市税务局第一稽查局"
    );
}

fn first_tax_subject() -> String {
    let text = encoding_rs::GBK
        .decode(&std::fs::read(repo().join("examples/samples/tax-major-violations.xml")).unwrap())
        .0
        .into_owned();
    let start = text.find("<NSRSBH>").unwrap() + "<NSRSBH>".len();
    text[start..start + 18].to_string()
}

#[test]
fn the_offline_check_prints_one_json_object_and_exits_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[mappings]\ndir = {:?}\n", repo().join("mappings")),
    )
    .unwrap();
    let sample = repo().join("examples/samples/mi-evaluations.json");
    let (code, out, err) = run_cli(
        dir.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "check",
            "--mapping",
            "mi-evaluations",
            sample.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "a rejected record exits 1: {err}");
    let v: Value = serde_json::from_str(&out).expect("stdout is one JSON object");
    assert_eq!(v["accepted"], 4);
    assert_eq!(v["records"].as_array().unwrap().len(), 4);
    assert_eq!(v["rejected"][0]["record_id"], "XYPJ-BAD-GRADE");
    assert_eq!(v["rejected"][0]["field"], "DJ");
    assert!(v["records"][0]["category"] == "evaluation_result");

    // All valid: exit 0.
    let mut all: Value = serde_json::from_slice(&std::fs::read(&sample).unwrap()).unwrap();
    all["results"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["PJBH"] != "XYPJ-BAD-GRADE");
    let good = dir.path().join("good.json");
    std::fs::write(&good, serde_json::to_vec(&all).unwrap()).unwrap();
    let (code, _, _) = run_cli(
        dir.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "check",
            "--mapping",
            "mi-evaluations",
            good.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0);

    // Unparseable: exit 2 with the position on stderr.
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, b"{\"results\": [\n  {\"PJBH\": }\n]}").unwrap();
    let (code, out, err) = run_cli(
        dir.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "check",
            "--mapping",
            "mi-evaluations",
            broken.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("line 2"), "{err}");
}

trait IntegerLike {
    fn as_integer_like(&self) -> i64;
}

impl IntegerLike for Value {
    fn as_integer_like(&self) -> i64 {
        self.as_i64().unwrap_or(-1)
    }
}

/// Penalties as the national 双公示 standard publishes them: no region, no role, the fine as a
/// JSON number, and the older variant's severity (CF_SXYZCD).
#[test]
fn national_standard_penalties_derive_region_and_role() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[mappings]\ndir = {:?}\n", repo().join("mappings")),
    )
    .unwrap();
    let sample = repo().join("examples/samples/mi-penalties.json");
    let (_, out, err) = run_cli(
        dir.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "check",
            "--mapping",
            "mi-penalties",
            sample.to_str().unwrap(),
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    let record = |id: &str| {
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["source"]["record_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not accepted: {v}"))
    };
    let by_authority = record("穗医保罚〔2026〕3号");
    assert_eq!(
        by_authority["source"]["region"], "440100",
        "the deciding authority's code wins over the subject's (Fuzhou, 350100)"
    );
    assert_eq!(by_authority["subject"]["role"], "other_enterprise");
    assert_eq!(
        by_authority["content"]["fine_yuan"], "2000",
        "0.2 万元 as a JSON number"
    );
    let by_subject = record("穗医保罚〔2026〕4号");
    assert_eq!(
        by_subject["source"]["region"], "350100",
        "no authority code: the subject's"
    );
    assert_eq!(by_subject["content"]["severity"], "serious");
}
