//! End to end (issue #29): batch files through the agency API, `POST /v1/files`, and through
//! an agency's watched exchange folder, on the real binary (sled, or PostgreSQL with
//! `CREDIT_GATEWAY_TEST_ENGINE=postgres`): an `.xlsx` of the national 双公示 行政处罚 template (Chinese headers under a merged
//! title row, dates as text, as date cells and as plain serial numbers, amounts in 万元, a
//! formula, a vertical merge, blank rows, a hidden sheet, one bad row), CSV in GBK and in UTF-8
//! with a BOM, an undeclared non-UTF-8 CSV, the same file twice, and a 200,000-row CSV taken with
//! bounded memory. The folder: the same records and receipts as the API, files half-written
//! (temporary names, a missing check file) left until complete, check files that disagree, the
//! same file twice across API and folder, a kill -9 in the middle of a large file; and the XK
//! licence template through the API.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{uscc_in, Gateway};
use credit_gateway::config::{AgencyConfig, FolderConfig, FolderRoute};
use rust_xlsxwriter::{ExcelDateTime, Format, Formula, Workbook};
use serde_json::Value;
use sha2::Digest;

const MI: &str = "medical_insurance";
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// The national template's header texts, as a department's sheet has them (plus a 序号 and a
/// column of its own that no mapping reads).
const HEADERS: [&str; 18] = [
    "序号",
    "行政相对人名称",
    "行政相对人代码_1（统一社会信用代码）",
    "法定代表人",
    "行政处罚决定书文号",
    "违法行为类型",
    "违法事实",
    "处罚依据",
    "处罚类别",
    "处罚内容",
    "罚款金额（万元）",
    "处罚决定日期",
    "处罚有效期",
    "公示截止期",
    "处罚机关",
    "处罚机关统一社会信用代码",
    "备注",
    "内部编号",
];

fn uscc(n: usize) -> String {
    uscc_in("440106", n)
}

/// A workbook in the national template: a hidden sheet of old data first, then the visible
/// sheet 行政处罚 with a merged title row above the header.
fn template_xlsx() -> Vec<u8> {
    let mut wb = Workbook::new();
    let date = Format::new().set_num_format("yyyy/mm/dd");
    let plain = Format::new();
    {
        let old = wb.add_worksheet();
        old.set_name("旧数据").unwrap();
        let head = [
            "CF_WSH",
            "CF_XDR_MC",
            "CF_XDR_SHXYM",
            "CF_JDRQ",
            "CF_CFLB",
            "CF_CFJG",
        ];
        for (c, h) in head.iter().enumerate() {
            old.write_string(0, c as u16, *h).unwrap();
        }
        let row = [
            "HIDDEN-1",
            "隐藏表里的医院",
            &uscc(90),
            "2024/01/05",
            "警告",
            "广州市医疗保障局",
        ];
        for (c, v) in row.iter().enumerate() {
            old.write_string(1, c as u16, *v).unwrap();
        }
        old.set_hidden(true);
    }
    let ws = wb.add_worksheet();
    ws.set_name("行政处罚").unwrap();
    ws.set_active(true);
    ws.merge_range(0, 0, 0, 17, "医疗保障行政处罚信息（双公示）", &plain)
        .unwrap();
    for (c, h) in HEADERS.iter().enumerate() {
        ws.write_string(1, c as u16, *h).unwrap();
    }
    // Rows 3-6 and 9-10 (0-based 2-5, 8-9) are records; 7 holds only its 序号, 8 is empty.
    let text_row = |ws: &mut rust_xlsxwriter::Worksheet, r: u32, n: usize, id: &str| {
        ws.write_number(r, 0, n as f64).unwrap();
        ws.write_string(r, 1, format!("广州市某某医院{n}有限公司"))
            .unwrap();
        ws.write_string(r, 2, uscc(n)).unwrap();
        ws.write_string(r, 3, "陈国华").unwrap();
        ws.write_string(r, 4, id).unwrap();
        ws.write_string(r, 5, "违规收费").unwrap();
        ws.write_string(r, 6, "串换项目违规收取医保基金").unwrap();
        ws.write_string(r, 7, "《医疗保障基金使用监督管理条例》第三十八条")
            .unwrap();
        ws.write_string(r, 8, "罚款").unwrap();
        ws.write_string(r, 9, "处违法金额1.5倍罚款").unwrap();
        ws.write_string(r, 15, "11440100MB2C9286XE").unwrap();
        ws.write_string(r, 17, format!("内-{n}")).unwrap();
    };
    // Row 3: everything as text, the way many departments type it.
    text_row(ws, 2, 1, "穗医保罚〔2025〕101号");
    ws.write_string(2, 10, "18.9").unwrap();
    ws.write_string(2, 11, "2025/03/14").unwrap();
    ws.write_string(2, 12, "2099/12/31").unwrap();
    ws.write_string(2, 13, "2026/03/14").unwrap();
    ws.write_string(2, 14, "广州市医疗保障局").unwrap();
    // Row 4: Excel dates (2099/12/31 as a date cell is long-term too) and a number in 万元.
    text_row(ws, 3, 2, "穗医保罚〔2025〕102号");
    ws.write_number(3, 10, 0.5).unwrap();
    ws.write_datetime_with_format(3, 11, ExcelDateTime::from_ymd(2025, 4, 2).unwrap(), &date)
        .unwrap();
    ws.write_datetime_with_format(3, 12, ExcelDateTime::from_ymd(2099, 12, 31).unwrap(), &date)
        .unwrap();
    ws.write_string(3, 14, "广州市医疗保障局").unwrap();
    // Rows 5-6: the fine as a formula (its cached value is read), 处罚机关 merged over both.
    text_row(ws, 4, 3, "深医保罚〔2025〕8号");
    ws.write_formula(4, 10, Formula::new("=0.2*3").set_result("0.6"))
        .unwrap();
    ws.write_string(4, 11, "2025-05-20").unwrap();
    text_row(ws, 5, 4, "深医保罚〔2025〕9号");
    ws.write_number(5, 10, 1.0).unwrap();
    ws.write_string(5, 11, "2025-05-21").unwrap();
    ws.merge_range(4, 14, 5, 14, "深圳市医疗保障局", &plain)
        .unwrap();
    // Row 7: only its 序号; row 8: blank cells with a format.
    ws.write_number(6, 0, 5.0).unwrap();
    for c in 0..5 {
        ws.write_blank(7, c, &date).unwrap();
    }
    // Row 9: a unified social credit code with a wrong check character.
    text_row(ws, 8, 5, "穗医保罚〔2025〕105号");
    ws.write_string(8, 2, "91440106MA59ABCD0X").unwrap();
    ws.write_string(8, 11, "2025/06/01").unwrap();
    ws.write_string(8, 14, "广州市医疗保障局").unwrap();
    // Row 10: the decision date as a plain number, a serial date in a date column.
    text_row(ws, 9, 6, "穗医保罚〔2025〕106号");
    ws.write_number(9, 11, 45730.0).unwrap();
    ws.write_string(9, 14, "广州市医疗保障局").unwrap();
    // Trailing rows: formatted but empty.
    for r in 10..14 {
        for c in 0..18 {
            ws.write_blank(r, c, &plain).unwrap();
        }
    }
    wb.save_to_buffer().unwrap()
}

fn post_file(gw: &Gateway, query: &str, content_type: &str, body: Vec<u8>) -> common::Reply {
    gw.client(MI)
        .post(&format!("/v1/files?{query}"), content_type, body)
}

/// The latest version of a subject's one administrative record.
fn record_of(gw: &Gateway, subject: &str) -> Value {
    let reply = gw.client(MI).get(&format!("/v1/subjects/uscc/{subject}"));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let archive = reply.json();
    let records = archive["categories"]["administrative"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{archive}");
    let versions = records[0]["versions"].as_array().unwrap();
    versions.last().unwrap()["record"].clone()
}

#[test]
fn an_xlsx_in_the_national_template_is_taken_row_by_row() {
    let gw = Gateway::start();
    let reply = post_file(&gw, "mapping=mi-penalties", XLSX, template_xlsx());
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let receipt = reply.json();
    assert_eq!(receipt["kind"], "file");
    assert_eq!(receipt["total"], 6, "{receipt:#}");
    assert_eq!(receipt["accepted"], 5);
    assert_eq!(receipt["new"], 5);
    assert_eq!(receipt["rejected_count"], 1);
    let file = &receipt["file"];
    assert_eq!(file["format"], "xlsx");
    assert_eq!(file["sheet"], "行政处罚", "the hidden sheet is skipped");
    assert_eq!(file["header_row"], 2, "under the merged title row");
    assert_eq!(file["rows"], 6);
    assert_eq!(
        file["blank_rows_skipped"], 2,
        "a 序号 alone and an empty row"
    );
    assert_eq!(
        file["ignored_columns"],
        serde_json::json!(["序号", "内部编号"])
    );
    assert_eq!(file["sha256"].as_str().unwrap().len(), 64);

    // The bad row: as the user sees it in the spreadsheet, with its column's header.
    let bad = &receipt["rejected"][0];
    assert_eq!(bad["row"], 9, "{bad}");
    assert_eq!(bad["column"], "行政相对人代码_1（统一社会信用代码）");
    assert_eq!(bad["canonical_field"], "subject.id");
    assert_eq!(bad["record_id"], "穗医保罚〔2025〕105号");
    assert!(bad["reason"].as_str().unwrap().contains("invalid"), "{bad}");

    // Each accepted record in the archive, with the template's values as the mapping reads
    // them: 万元 as 元, dates in every form, 2099/12/31 as long-term.
    let r = record_of(&gw, &uscc(1));
    assert_eq!(r["content"]["fine_yuan"], "189000");
    assert_eq!(r["basis"]["decided_on"], "2025-03-14");
    assert_eq!(r["content"]["notice_until"], "2026-03-14");
    assert!(r.get("valid_until").is_none_or(Value::is_null), "{r}");
    assert_eq!(r["subject"]["name"], "广州市某某医院1有限公司");
    assert_eq!(r["source"]["region"], "440100", "from the authority's code");
    let r = record_of(&gw, &uscc(2));
    assert_eq!(
        r["content"]["fine_yuan"], "5000",
        "a number cell reads as its text"
    );
    assert_eq!(r["basis"]["decided_on"], "2025-04-02", "a date cell");
    assert!(
        r.get("valid_until").is_none_or(Value::is_null),
        "a 2099/12/31 date cell is long-term: {r}"
    );
    let r = record_of(&gw, &uscc(3));
    assert_eq!(
        r["content"]["fine_yuan"], "6000",
        "the formula's cached value"
    );
    assert_eq!(r["content"]["authority"], "深圳市医疗保障局");
    let r = record_of(&gw, &uscc(4));
    assert_eq!(
        r["content"]["authority"], "深圳市医疗保障局",
        "the vertical merge gives its value to the row below"
    );
    assert_eq!(r["content"]["fine_yuan"], "10000");
    let r = record_of(&gw, &uscc(6));
    assert_eq!(r["basis"]["decided_on"], "2025-03-14", "serial 45730");
    assert_eq!(
        gw.client(MI)
            .get(&format!("/v1/subjects/uscc/{}", uscc(90)))
            .status,
        404,
        "nothing from the hidden sheet"
    );

    // The file's receipt is kept; each of its batches names it.
    let id = receipt["receipt_id"].as_str().unwrap();
    let stored = gw.client(MI).get(&format!("/v1/receipts/{id}")).json();
    assert_eq!(stored["file"]["sha256"], file["sha256"]);
    assert!(stored["audit"]["seq"].is_number() || stored["audit"].is_object());
    let batch = receipt["batches"][0]["receipt_id"].as_str().unwrap();
    let batch = gw.client(MI).get(&format!("/v1/receipts/{batch}")).json();
    assert_eq!(batch["file"]["receipt_id"], id);
    assert_eq!(batch["file"]["sha256"], file["sha256"]);
    assert_eq!(batch["rejected"][0]["row"], 9);

    // A hidden sheet is read when named; a sheet that is not there is named in the error.
    let reply = post_file(
        &gw,
        "mapping=mi-penalties&sheet=%E6%97%A7%E6%95%B0%E6%8D%AE",
        XLSX,
        template_xlsx(),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["accepted"], 1);
    assert_eq!(record_of(&gw, &uscc(90))["source"]["record_id"], "HIDDEN-1");
    let reply = post_file(
        &gw,
        "mapping=mi-penalties&sheet=Sheet9",
        XLSX,
        template_xlsx(),
    );
    assert_eq!(reply.status, 400);
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "sheet_not_found");
    assert_eq!(error["sheets"], serde_json::json!(["旧数据", "行政处罚"]));

    // Not an .xlsx; a mapping the agency may not use; the canonical mapping takes no files.
    let reply = post_file(&gw, "mapping=mi-penalties", XLSX, b"PK not really".to_vec());
    assert_eq!(reply.json()["error"]["code"], "malformed_file");
    let reply = gw
        .client("tax")
        .post("/v1/files?mapping=mi-penalties", XLSX, template_xlsx());
    assert_eq!(reply.json()["error"]["code"], "mapping_not_allowed");
    let reply = post_file(&gw, "mapping=canonical", XLSX, template_xlsx());
    assert_eq!(reply.status, 415);
    let reply = post_file(&gw, "mapping=mi-penalties", "application/pdf", vec![1, 2]);
    assert_eq!(reply.json()["error"]["code"], "unsupported_media_type");
}

/// The template as CSV, as Excel saves it: Chinese headers, dates as text.
fn template_csv(ids: &[usize]) -> String {
    let mut text = String::from(
        "序号,行政相对人名称,统一社会信用代码,行政处罚决定书文号,处罚类别,罚款金额（万元）,处罚决定日期,处罚有效期,处罚机关,处罚机关统一社会信用代码\r\n",
    );
    for (i, n) in ids.iter().enumerate() {
        text.push_str(&format!(
            "{},\"佛山市某某药房{n}有限公司\",{},佛医保罚〔2025〕{n}号,罚款;警告,2.5,2025/7/{},2099/12/31,佛山市医疗保障局,11440600MB2D12345X\r\n",
            i + 1,
            uscc(*n),
            i + 1
        ));
    }
    text
}

#[test]
fn gbk_and_utf8_csv_give_the_same_records_and_undeclared_gbk_is_refused() {
    let gw = Gateway::start();
    let text = template_csv(&[21, 22, 23]);
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(&text);
    assert!(!unmappable);
    let gbk = gbk.into_owned();

    // Not UTF-8 and no charset declared: refused, saying so, nothing stored.
    let reply = post_file(&gw, "mapping=mi-penalties", "text/csv", gbk.clone());
    assert_eq!(reply.status, 400);
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "charset_required", "{error}");
    assert_eq!(
        error["line"], 1,
        "the Chinese header is the first non-UTF-8 line"
    );
    assert!(error["message"].as_str().unwrap().contains("charset=gbk"));
    assert_eq!(
        gw.client(MI)
            .get(&format!("/v1/subjects/uscc/{}", uscc(21)))
            .status,
        404
    );
    // Declared UTF-8 but GBK: invalid bytes, with where.
    let reply = post_file(
        &gw,
        "mapping=mi-penalties",
        "text/csv; charset=utf-8",
        gbk.clone(),
    );
    assert_eq!(reply.json()["error"]["code"], "invalid_encoding");
    // An encoding the gateway does not read.
    let reply = post_file(
        &gw,
        "mapping=mi-penalties",
        "text/csv; charset=big5",
        gbk.clone(),
    );
    assert_eq!(reply.json()["error"]["code"], "unsupported_encoding");

    // Declared GBK: taken.
    let reply = post_file(&gw, "mapping=mi-penalties", "text/csv; charset=GBK", gbk);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let first = reply.json();
    assert_eq!(first["accepted"], 3, "{first:#}");
    assert_eq!(first["new"], 3);
    assert_eq!(first["file"]["encoding"], "GBK");
    let r = record_of(&gw, &uscc(22));
    assert_eq!(r["subject"]["name"], "佛山市某某药房22有限公司");
    assert_eq!(r["content"]["fine_yuan"], "25000");
    assert_eq!(
        r["content"]["penalty_types"],
        serde_json::json!(["罚款", "警告"])
    );
    assert_eq!(r["basis"]["decided_on"], "2025-07-02");

    // The same rows in UTF-8 with a BOM, nothing declared: the same records (all unchanged).
    let mut utf8 = b"\xEF\xBB\xBF".to_vec();
    utf8.extend_from_slice(text.as_bytes());
    let reply = post_file(&gw, "mapping=mi-penalties", "text/csv", utf8);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let second = reply.json();
    assert_eq!(second["file"]["encoding"], "UTF-8");
    assert_eq!(second["accepted"], 3);
    assert_eq!(second["new"], 0);
    assert_eq!(
        second["unchanged"], 3,
        "GBK and UTF-8 give the same records"
    );

    // A column every record needs is missing: one file-level error naming it.
    let without = text.replace(",处罚机关,", ",发文单位,");
    let reply = post_file(
        &gw,
        "mapping=mi-penalties",
        "text/csv; charset=utf-8",
        without.into_bytes(),
    );
    assert_eq!(reply.status, 400);
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "missing_columns", "{error}");
    assert_eq!(error["columns"][0]["canonical_field"], "content.authority");
    assert!(
        error["message"].as_str().unwrap().contains("处罚机关"),
        "{error}"
    );
}

#[test]
fn the_same_file_twice_stores_nothing_new() {
    let gw = Gateway::start();
    let body = template_xlsx();
    let first = post_file(&gw, "mapping=mi-penalties", XLSX, body.clone()).json();
    assert_eq!(first["new"], 5, "{first:#}");
    let second = post_file(&gw, "mapping=mi-penalties", XLSX, body).json();
    assert_eq!(second["accepted"], 5, "{second:#}");
    assert_eq!(second["new"], 0);
    assert_eq!(second["updated"], 0);
    assert_eq!(second["unchanged"], 5);
    assert_eq!(second["rejected_count"], 1);
    assert_eq!(second["file"]["sha256"], first["file"]["sha256"]);
    assert_ne!(second["receipt_id"], first["receipt_id"]);
    assert_eq!(
        second["repeat_of"], first["receipt_id"],
        "a repeat, by its digest"
    );
    assert_eq!(
        second["batches"],
        serde_json::json!([]),
        "nothing stored again"
    );
    // Still one version of each record.
    let reply = gw.client(MI).get(&format!("/v1/subjects/uscc/{}", uscc(1)));
    let archive = reply.json();
    let versions = archive["categories"]["administrative"][0]["versions"]
        .as_array()
        .unwrap();
    assert_eq!(versions.len(), 1);
}

/// The gateway's peak resident memory (VmHWM) in KiB.
fn peak_rss_kib(gw: &Gateway) -> u64 {
    let pid = gw.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The bound asserted below and documented in docs/integrate/files.md: the gateway's peak
/// resident memory while it takes a 200,000-row CSV.
const PEAK_RSS_BOUND_MIB: u64 = 512;

#[test]
fn a_200000_row_csv_is_taken_with_bounded_memory() {
    const ROWS: usize = 200_000;
    // The bound is the file path's (spooling, reading, chunking), the same on both engines: run
    // once, on sled, to keep the suite's time (the PostgreSQL pass takes the other file tests).
    if common::postgres::requested() {
        eprintln!(
            "skipped on PostgreSQL: the file path's memory bound does not depend on the engine"
        );
        return;
    }
    let gw = Gateway::start_with(|c| {
        c.operators.push(credit_gateway::config::OperatorConfig {
            name: "zhang".into(),
            role: credit_gateway::config::OperatorRole::Operator,
            password_hash: credit_gateway::operators::hash_password("pass-word-1").unwrap(),
        });
    });
    let mut text = String::with_capacity(ROWS * 200);
    text.push_str("CF_WSH,CF_XDR_MC,CF_XDR_SHXYM,CF_FRDB,CF_WFXW,CF_CFLB,CF_NR,CF_NR_FK,CF_JDRQ,CF_YXQ,CF_CFJG,CF_CFJGDM\n");
    for i in 0..ROWS {
        text.push_str(&format!(
            "F-{i},某某医疗机构{i},{},张三,违规收费,罚款,处违法金额1.5倍罚款,{}.{},2025/08/{},2099/12/31,广州市医疗保障局,11440100MB2C9286XE\n",
            uscc(i % 2_000),
            i % 50,
            i % 10,
            i % 28 + 1
        ));
    }
    let bytes = text.len();
    let before = peak_rss_kib(&gw);
    let started = Instant::now();
    let (status, headers, body) = gw.admin_raw(
        "POST",
        "/session",
        &[("content-type", "application/json")],
        br#"{"name": "zhang", "password": "pass-word-1"}"#.to_vec(),
    );
    assert_eq!(status, 200, "{body}");
    let cookie = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("cg_session="))
        .unwrap();
    let reply = std::thread::scope(|scope| {
        let sending = scope.spawn(|| {
            gw.client(MI)
                .request_within(
                    "POST",
                    "/v1/files?mapping=mi-penalties",
                    Some("text/csv; charset=utf-8"),
                    &[],
                    text.into_bytes(),
                    Duration::from_secs(1800),
                )
                .expect("the request completes")
        });
        // The file's progress on the console's overview while it is taken.
        let mut seen = false;
        while !sending.is_finished() && !seen {
            let (_, _, page) = gw.admin_raw("GET", "/console", &[("cookie", &cookie)], Vec::new());
            seen = page.contains("正在接收的文件 1 · 已入库行数");
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(seen, "the overview shows the file in progress");
        sending.join().unwrap()
    });
    let elapsed = started.elapsed();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let receipt = reply.json();
    assert_eq!(receipt["total"], ROWS);
    assert_eq!(receipt["accepted"], ROWS);
    assert_eq!(receipt["new"], ROWS);
    assert_eq!(receipt["batches"].as_array().unwrap().len(), ROWS / 2_000);
    let peak = peak_rss_kib(&gw);
    eprintln!(
        "{ROWS} rows ({} MiB) in {:.1} s; gateway peak RSS {} MiB before the file, {} MiB after",
        bytes / (1024 * 1024),
        elapsed.as_secs_f64(),
        before / 1024,
        peak / 1024
    );
    assert!(
        peak / 1024 < PEAK_RSS_BOUND_MIB,
        "peak RSS {} MiB over the documented bound of {PEAK_RSS_BOUND_MIB} MiB",
        peak / 1024
    );
    // A record from the end of the file, in the archive.
    let reply = gw
        .client(MI)
        .get(&format!("/v1/subjects/uscc/{}", uscc((ROWS - 1) % 2_000)));
    let archive = reply.json();
    let records = archive["categories"]["administrative"].as_array().unwrap();
    assert_eq!(records.len(), ROWS / 2_000);
    assert!(records
        .iter()
        .any(|r| r["record_id"] == format!("F-{}", ROWS - 1)));
}

// ---------------------------------------------------------------------------------------------
// The watched exchange folder (issue #29 part 2): files dropped in an agency's inbox.

/// A folder configuration for tests: looked at every 100 ms, no settle wait.
fn folder_config(
    inbox: &Path,
    csv_charset: Option<&str>,
    require_check_file: bool,
) -> FolderConfig {
    FolderConfig {
        inbox: inbox.to_path_buf(),
        mapping: Some("mi-penalties".into()),
        routes: vec![FolderRoute {
            pattern: "*许可*".into(),
            mapping: "mi-licences".into(),
        }],
        csv_charset: csv_charset.map(str::to_string),
        sheet: None,
        require_check_file,
        poll_interval_ms: 100,
        settle_ms: 0,
    }
}

/// A gateway whose medical-insurance platform has a folder (GBK CSV), and a county bureau that
/// must send a check file with each data file (UTF-8 CSV).
fn folder_gateway() -> (Gateway, PathBuf, PathBuf) {
    let mut gw = Gateway::prepare();
    let mi_inbox = gw.dir.path().join("exchange/medical_insurance/in");
    let county_inbox = gw.dir.path().join("exchange/county_mi/in");
    std::fs::create_dir_all(&mi_inbox).unwrap();
    std::fs::create_dir_all(&county_inbox).unwrap();
    for a in &mut gw.config.agencies {
        if a.id == MI {
            a.folder = Some(folder_config(&mi_inbox, Some("gbk"), false));
        }
    }
    gw.config.agencies.push(AgencyConfig {
        id: "county_mi".into(),
        name: "某县医疗保障局".into(),
        cert_subject_cn: Some("county_mi".into()),
        cert_sha256: None,
        mappings: vec!["mi-penalties".into()],
        read_archive: false,
        correct_others: false,
        requests_per_second: 1000,
        burst: 1000,
        folder: Some(FolderConfig {
            routes: Vec::new(),
            ..folder_config(&county_inbox, None, true)
        }),
    });
    gw.spawn();
    (gw, mi_inbox, county_inbox)
}

/// Drop a file the way an uploader does: written under a temporary name, then renamed.
fn drop_file(inbox: &Path, name: &str, bytes: &[u8]) {
    let tmp = inbox.join(format!("{name}.part"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, inbox.join(name)).unwrap();
}

/// The feedback file of `name` in `done/` or `rejected/`, once it is there.
/// The feedback file of `name` once the gateway has finished with it: the feedback is written
/// first, then the check file and the data file are moved beside it (the data file last), so
/// both are waited for.
fn feedback(inbox: &Path, outcome: &str, name: &str, within: Duration) -> Value {
    let path = inbox.join(outcome).join(format!("{name}.receipt.json"));
    let data = inbox.join(outcome).join(name);
    assert!(
        common::wait_until(within, || path.is_file() && data.is_file()),
        "no feedback file {}; inbox: {:?}",
        path.display(),
        list(inbox)
    );
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn list(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A receipt without what differs between two hand-ins of the same file on two gateways.
fn comparable(receipt: &Value) -> Value {
    let mut r = receipt.clone();
    let o = r.as_object_mut().unwrap();
    for k in [
        "receipt_id",
        "received_at",
        "audit",
        "signature",
        "repeat_of",
    ] {
        o.remove(k);
    }
    let file = o.get_mut("file").unwrap().as_object_mut().unwrap();
    file.remove("via");
    file.remove("name");
    file.remove("by");
    for b in o.get_mut("batches").unwrap().as_array_mut().unwrap() {
        b.as_object_mut().unwrap().remove("receipt_id");
    }
    r
}

#[test]
fn a_folder_gives_the_same_records_and_receipts_as_the_api() {
    let api = Gateway::start();
    let (folder, inbox, _) = folder_gateway();
    let xlsx = template_xlsx();
    let gbk = encoding_rs::GBK
        .encode(&template_csv(&[21, 22, 23]))
        .0
        .into_owned();

    let by_api = post_file(&api, "mapping=mi-penalties", XLSX, xlsx.clone()).json();
    assert_eq!(by_api["new"], 5, "{by_api:#}");
    drop_file(&inbox, "2025年行政处罚.xlsx", &xlsx);
    let by_folder = feedback(
        &inbox,
        "done",
        "2025年行政处罚.xlsx",
        Duration::from_secs(60),
    );
    assert_eq!(comparable(&by_folder), comparable(&by_api), "{by_folder:#}");
    assert_eq!(by_folder["file"]["via"], "folder");
    assert_eq!(by_folder["file"]["name"], "2025年行政处罚.xlsx");
    // The bad code, named by its spreadsheet row and column header in the feedback file.
    let bad = &by_folder["rejected"][0];
    assert_eq!(bad["row"], 9, "{bad}");
    assert_eq!(bad["column"], "行政相对人代码_1（统一社会信用代码）");
    assert_eq!(bad["canonical_field"], "subject.id");
    for n in [1, 2, 3, 4, 6] {
        assert_eq!(
            record_of(&folder, &uscc(n)),
            record_of(&api, &uscc(n)),
            "subject {n}"
        );
    }

    // A GBK CSV: the folder's csv_charset says GBK, as the API's Content-Type does.
    let by_api = post_file(
        &api,
        "mapping=mi-penalties",
        "text/csv; charset=gbk",
        gbk.clone(),
    )
    .json();
    assert_eq!(by_api["accepted"], 3, "{by_api:#}");
    drop_file(&inbox, "行政处罚.csv", &gbk);
    let by_folder = feedback(&inbox, "done", "行政处罚.csv", Duration::from_secs(60));
    assert_eq!(comparable(&by_folder), comparable(&by_api), "{by_folder:#}");
    assert_eq!(by_folder["file"]["encoding"], "GBK");
    assert_eq!(record_of(&folder, &uscc(22)), record_of(&api, &uscc(22)));

    // The files moved beside their feedback; processing/ is empty; the receipt is kept and
    // audited as any file's.
    let files = list(&inbox);
    assert_eq!(
        files,
        vec![
            "done/2025年行政处罚.xlsx",
            "done/2025年行政处罚.xlsx.receipt.json",
            "done/行政处罚.csv",
            "done/行政处罚.csv.receipt.json",
        ],
    );
    let id = by_folder["receipt_id"].as_str().unwrap();
    let stored = folder.client(MI).get(&format!("/v1/receipts/{id}")).json();
    assert_eq!(stored["file"]["name"], "行政处罚.csv");
    assert!(stored["audit"]["seq"].is_number(), "{stored}");

    // A file the folder cannot take is rejected whole, with the API's error in its feedback.
    drop_file(&inbox, "旧表.xls", b"\xD0\xCF\x11\xE0 an old workbook");
    let refused = feedback(&inbox, "rejected", "旧表.xls", Duration::from_secs(30));
    assert_eq!(refused["kind"], "file_refused");
    assert_eq!(refused["error"]["code"], "unsupported_file_type");
    let header_only = encoding_rs::GBK
        .encode("序号,备注\r\n1,x\r\n")
        .0
        .into_owned();
    drop_file(&inbox, "无表头.csv", &header_only);
    let refused = feedback(&inbox, "rejected", "无表头.csv", Duration::from_secs(30));
    assert_eq!(refused["error"]["code"], "missing_columns", "{refused:#}");
    assert!(inbox.join("rejected/无表头.csv").is_file());
}

#[test]
fn a_half_written_file_is_not_taken_until_complete() {
    let (gw, inbox, county) = folder_gateway();
    let gbk = encoding_rs::GBK
        .encode(&template_csv(&[31, 32]))
        .0
        .into_owned();
    // Still being uploaded: a temporary name, or a hidden one.
    std::fs::write(inbox.join("处罚.csv.part"), &gbk[..gbk.len() / 2]).unwrap();
    std::fs::write(inbox.join(".处罚.csv"), &gbk[..gbk.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(
        list(&inbox),
        vec![".处罚.csv", "处罚.csv.part"],
        "nothing taken"
    );
    assert_eq!(
        gw.client(MI)
            .get(&format!("/v1/subjects/uscc/{}", uscc(31)))
            .status,
        404
    );
    // The upload completes and is renamed: taken.
    std::fs::write(inbox.join("处罚.csv.part"), &gbk).unwrap();
    std::fs::rename(inbox.join("处罚.csv.part"), inbox.join("处罚.csv")).unwrap();
    let r = feedback(&inbox, "done", "处罚.csv", Duration::from_secs(30));
    assert_eq!(r["accepted"], 2, "{r:#}");

    // The county must send a check file: a data file without one waits.
    let csv = template_csv(&[41, 42, 43]).into_bytes();
    let sha = hex(&sha2::Sha256::digest(&csv));
    drop_file(&county, "county.csv", &csv);
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(
        list(&county),
        vec!["county.csv"],
        "not taken without its check file"
    );
    // A check file saying another digest: rejected whole, nothing stored.
    drop_file(
        &county,
        "county.csv.chk",
        format!("sha256={}\nrecords=3\n", "0".repeat(64)).as_bytes(),
    );
    let refused = feedback(&county, "rejected", "county.csv", Duration::from_secs(30));
    assert_eq!(refused["error"]["code"], "check_mismatch", "{refused:#}");
    assert!(county.join("rejected/county.csv.chk").is_file());
    assert_eq!(
        gw.client(MI)
            .get(&format!("/v1/subjects/uscc/{}", uscc(41)))
            .status,
        404
    );
    // Another record count: rejected whole too.
    drop_file(&county, "county2.csv", &csv);
    drop_file(
        &county,
        "county2.csv.chk",
        format!("sha256={sha}\nrecords=4\n").as_bytes(),
    );
    let refused = feedback(&county, "rejected", "county2.csv", Duration::from_secs(30));
    assert_eq!(refused["error"]["code"], "check_mismatch");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4 records"),
        "{refused}"
    );
    // The right digest (SM3 this time) and count: taken.
    let sm3 = hex(&sm3::Sm3::digest(&csv));
    drop_file(&county, "county3.csv", &csv);
    drop_file(
        &county,
        "county3.csv.chk",
        format!("# 校验文件\nfile=county3.csv\nsm3={sm3}\nrecords=3\n").as_bytes(),
    );
    let taken = feedback(&county, "done", "county3.csv", Duration::from_secs(30));
    assert_eq!(taken["accepted"], 3, "{taken:#}");
    assert_eq!(taken["agency"], "county_mi");
    assert!(county.join("done/county3.csv.chk").is_file());
    let r = record_of(&gw, &uscc(42));
    assert_eq!(
        r["source"]["agency"], "county_mi",
        "the folder says who sent it"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_same_file_twice_stores_nothing_new_through_api_and_folder() {
    let (gw, inbox, _) = folder_gateway();
    let xlsx = template_xlsx();
    let first = post_file(&gw, "mapping=mi-penalties", XLSX, xlsx.clone()).json();
    assert_eq!(first["new"], 5, "{first:#}");
    let first_id = first["receipt_id"].as_str().unwrap();
    // The same bytes dropped in the folder, under another name: a repeat of the API's receipt.
    drop_file(&inbox, "再次报送.xlsx", &xlsx);
    let again = feedback(&inbox, "done", "再次报送.xlsx", Duration::from_secs(60));
    assert_eq!(again["repeat_of"], first_id, "{again:#}");
    assert_eq!(again["new"], 0);
    assert_eq!(again["unchanged"], 5);
    assert_eq!(
        again["rejected_count"], 1,
        "the earlier rejections, still to fix"
    );
    assert_eq!(again["batches"], serde_json::json!([]), "nothing stored");
    // Twice in the folder, under the same name: the second is kept beside the first.
    drop_file(&inbox, "再次报送.xlsx", &xlsx);
    assert!(
        common::wait_until(Duration::from_secs(60), || {
            list(&inbox)
                .iter()
                .filter(|n| n.ends_with(".receipt.json"))
                .count()
                == 2
        }),
        "{:?}",
        list(&inbox)
    );
    // And the API again.
    let third = post_file(&gw, "mapping=mi-penalties", XLSX, xlsx).json();
    assert_eq!(third["repeat_of"], first_id, "{third:#}");
    assert_eq!(third["new"], 0);
    let versions = |n| {
        let a = gw
            .client(MI)
            .get(&format!("/v1/subjects/uscc/{}", uscc(n)))
            .json();
        a["categories"]["administrative"][0]["versions"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(versions(1), 1);
    assert_eq!(versions(6), 1);
    // The repeat is kept and audited.
    let stored = gw
        .client(MI)
        .get(&format!(
            "/v1/receipts/{}",
            third["receipt_id"].as_str().unwrap()
        ))
        .json();
    assert_eq!(stored["repeat_of"], first_id);
    assert!(stored["audit"]["seq"].is_number());
}

#[test]
fn a_kill_9_while_a_folder_file_is_taken_loses_nothing_and_takes_nothing_twice() {
    const ROWS: usize = 30_000;
    const SUBJECTS: usize = 500;
    let (mut gw, inbox, _) = folder_gateway();
    let mut text = String::with_capacity(ROWS * 200);
    text.push_str(
        "CF_WSH,CF_XDR_MC,CF_XDR_SHXYM,CF_CFLB,CF_NR_FK,CF_JDRQ,CF_YXQ,CF_CFJG,CF_CFJGDM\n",
    );
    for i in 0..ROWS {
        text.push_str(&format!(
            "K-{i},某某医疗机构{i},{},罚款,{}.{},2025/08/{},2099/12/31,广州市医疗保障局,11440100MB2C9286XE\n",
            uscc(1_000 + i % SUBJECTS),
            i % 50,
            i % 10,
            i % 28 + 1
        ));
    }
    let gbk = encoding_rs::GBK.encode(&text).0.into_owned();
    drop(text);
    drop_file(&inbox, "大批量.csv", &gbk);
    // Killed while the file is in processing/ and some of its rows are committed.
    let progressed = common::wait_until(Duration::from_secs(120), || {
        let (_, metrics) = gw.admin_get("/metrics");
        let in_processing = list(&inbox).iter().any(|n| n.starts_with("processing/"));
        in_processing
            && metrics.lines().any(|l| {
                l.starts_with("gateway_file_rows_in_progress{")
                    && l.contains("via=\"folder\"")
                    && l.rsplit(' ')
                        .next()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(|v| v >= 2_000.0)
            })
    });
    assert!(
        progressed,
        "the file's progress is visible: {:?}",
        list(&inbox)
    );
    assert!(
        gw.admin_get("/metrics")
            .1
            .contains("gateway_files_in_progress{via=\"folder\"} 1"),
        "the file in progress is counted"
    );
    gw.kill();
    assert!(
        list(&inbox).iter().any(|n| n.starts_with("processing/")),
        "killed while taking it: {:?}",
        list(&inbox)
    );
    gw.spawn();
    let receipt = feedback(&inbox, "done", "大批量.csv", Duration::from_secs(600));
    assert_eq!(receipt["total"], ROWS, "{}", receipt["total"]);
    assert_eq!(receipt["accepted"], ROWS);
    let new = receipt["new"].as_u64().unwrap();
    let unchanged = receipt["unchanged"].as_u64().unwrap();
    assert_eq!(receipt["updated"], 0);
    assert!(
        unchanged > 0,
        "rows stored before the kill come back unchanged"
    );
    assert_eq!(new + unchanged, ROWS as u64);
    assert_eq!(
        list(&inbox),
        vec!["done/大批量.csv", "done/大批量.csv.receipt.json"],
    );
    // Every row stored once: each subject holds its rows, each in one version.
    for s in (0..SUBJECTS).step_by(7) {
        let archive = gw
            .client(MI)
            .get(&format!("/v1/subjects/uscc/{}", uscc(1_000 + s)))
            .json();
        let records = archive["categories"]["administrative"].as_array().unwrap();
        assert_eq!(records.len(), ROWS / SUBJECTS, "subject {s}");
        for r in records {
            assert_eq!(
                r["versions"].as_array().unwrap().len(),
                1,
                "{}",
                r["record_id"]
            );
        }
    }
}

#[test]
fn an_xk_licence_sheet_is_taken_through_the_api() {
    let gw = Gateway::start();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("行政许可").unwrap();
    ws.merge_range(
        0,
        0,
        0,
        12,
        "医疗保障行政许可信息（双公示）",
        &Format::new(),
    )
    .unwrap();
    let headers = [
        "行政相对人名称",
        "行政相对人代码_1（统一社会信用代码）",
        "法定代表人",
        "行政许可决定文书名称",
        "行政许可决定文书号",
        "许可类别",
        "许可编号",
        "许可内容",
        "许可决定日期",
        "有效期自",
        "有效期至",
        "许可机关",
        "许可机关统一社会信用代码",
    ];
    for (c, h) in headers.iter().enumerate() {
        ws.write_string(1, c as u16, *h).unwrap();
    }
    let row = |ws: &mut rust_xlsxwriter::Worksheet, r: u32, n: usize, code: &str| {
        ws.write_string(r, 0, format!("广州市某某医院{n}有限公司"))
            .unwrap();
        ws.write_string(r, 1, code).unwrap();
        ws.write_string(r, 2, "陈国华").unwrap();
        ws.write_string(r, 3, "准予行政许可决定书").unwrap();
        ws.write_string(r, 4, format!("穗医保许〔2025〕{n}号"))
            .unwrap();
        ws.write_string(r, 5, "核准").unwrap();
        ws.write_string(r, 6, format!("XK-{n}")).unwrap();
        ws.write_string(r, 7, "同意新增血液透析服务项目").unwrap();
        ws.write_number(r, 8, 45730.0).unwrap();
        ws.write_string(r, 9, "2025/03/14").unwrap();
        ws.write_string(r, 10, "2099/12/31").unwrap();
        ws.write_string(r, 11, "广州市医疗保障局").unwrap();
        ws.write_string(r, 12, "11440100MB2C9286XE").unwrap();
    };
    row(ws, 2, 51, &uscc(51));
    row(ws, 3, 52, "91440106MA59ABCD0X");
    let reply = post_file(
        &gw,
        "mapping=mi-licences",
        XLSX,
        wb.save_to_buffer().unwrap(),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let receipt = reply.json();
    assert_eq!(receipt["accepted"], 1, "{receipt:#}");
    assert_eq!(receipt["rejected"][0]["row"], 4);
    assert_eq!(
        receipt["rejected"][0]["column"],
        "行政相对人代码_1（统一社会信用代码）"
    );
    let r = record_of(&gw, &uscc(51));
    assert_eq!(r["category"], "administrative");
    assert_eq!(r["content"]["action"], "licence");
    assert_eq!(r["content"]["licence_number"], "XK-51");
    assert_eq!(
        r["basis"]["decided_on"], "2025-03-14",
        "an Excel serial date"
    );
    assert_eq!(r["valid_from"], "2025-03-14");
    assert!(
        r.get("valid_until").is_none_or(Value::is_null),
        "2099/12/31 is long-term: {r}"
    );
    assert_eq!(r["source"]["region"], "440100");
}

#[test]
fn config_check_looks_at_each_agency_folder() {
    let mut gw = Gateway::prepare();
    let inbox = gw.dir.path().join("exchange/in");
    std::fs::create_dir_all(&inbox).unwrap();
    let mi = gw.config.agencies.iter_mut().find(|a| a.id == MI).unwrap();
    mi.folder = Some(folder_config(&inbox, Some("gbk"), true));
    gw.write_config();
    let (code, out, err) = gw.cli(&["config", "check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ok: agency medical_insurance: folder")
            && out.contains("check files required"),
        "{out}"
    );
    // An inbox that is not there.
    let mi = gw.config.agencies.iter_mut().find(|a| a.id == MI).unwrap();
    mi.folder.as_mut().unwrap().inbox = gw.dir.path().join("no-such-folder");
    gw.write_config();
    let (code, out, _) = gw.cli(&["config", "check"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error: agency medical_insurance: folder inbox")
            && out.contains("no-such-folder"),
        "{out}"
    );
    // A mapping the agency may not push, a charset the gateway does not read: the file is refused.
    let mi = gw.config.agencies.iter_mut().find(|a| a.id == MI).unwrap();
    let folder = mi.folder.as_mut().unwrap();
    folder.inbox = inbox;
    folder.mapping = Some("court-judgments".into());
    folder.csv_charset = Some("big5".into());
    gw.write_config();
    let (code, out, err) = gw.cli(&["config", "check"]);
    assert_ne!(code, 0, "{out}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("court-judgments") && all.contains("big5"),
        "{all}"
    );
}

/// Issue #29 (b): an operator hands in the agency's files at the console, on its behalf. The
/// `.xlsx` of the national template and the GBK CSV give the same receipts and records as the
/// API; the receipt and its audit entry say `via: console` and name the operator; the bad row is
/// shown by its spreadsheet row and column; a viewer has no upload; the same file again is a
/// repeat.
#[test]
fn the_console_hands_in_an_agencys_files_with_the_apis_receipts() {
    use common::browser::{browser, screenshot, sign_in};
    use credit_gateway::config::{OperatorConfig, OperatorRole};
    use fantoccini::Locator;
    let rt = common::multi_thread_runtime();
    let api = Gateway::start();
    let console = Gateway::start_with(|c| {
        for (name, role) in [
            ("zhang", OperatorRole::Operator),
            ("li", OperatorRole::Viewer),
        ] {
            c.operators.push(OperatorConfig {
                name: name.into(),
                role,
                password_hash: credit_gateway::operators::hash_password("pass-word-1").unwrap(),
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let xlsx = template_xlsx();
    let xlsx_path = dir.path().join("2025年行政处罚.xlsx");
    std::fs::write(&xlsx_path, &xlsx).unwrap();
    let gbk = encoding_rs::GBK
        .encode(&template_csv(&[21, 22, 23]))
        .0
        .into_owned();
    let csv_path = dir.path().join("行政处罚.csv");
    std::fs::write(&csv_path, &gbk).unwrap();
    let by_api_xlsx = post_file(&api, "mapping=mi-penalties", XLSX, xlsx.clone()).json();
    let by_api_csv = post_file(&api, "mapping=mi-penalties", "text/csv; charset=gbk", gbk).json();

    let admin = console.admin.clone();
    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = rt.block_on(browser(profile.path()));
    let hand_in = |path: &Path, charset: &str| {
        let c = c.clone();
        let admin = admin.clone();
        let path = path.to_path_buf();
        let charset = charset.to_string();
        rt.block_on(async move {
            c.goto(&format!("http://{admin}/console/files"))
                .await
                .unwrap();
            c.find(Locator::Css(
                "form.upload select[name='mapping'] option[value='mi-penalties']",
            ))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
            if !charset.is_empty() {
                c.find(Locator::Css(&format!(
                    "form.upload select[name='charset'] option[value='{charset}']"
                )))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            }
            c.find(Locator::Css("form.upload input[name='file']"))
                .await
                .unwrap()
                .send_keys(path.to_str().unwrap())
                .await
                .unwrap();
            c.find(Locator::Css("form.upload button[type='submit']"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            let id = c
                .wait()
                .at_most(Duration::from_secs(60))
                .for_element(Locator::Css("#receipt-id"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let page = c
                .find(Locator::Css("main"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            (id, page)
        })
    };
    rt.block_on(sign_in(&c, &admin, "zhang", "pass-word-1"));
    let (id, page) = hand_in(&xlsx_path, "");
    assert!(
        page.contains("行政相对人代码_1"),
        "the bad row's column is shown: {page}"
    );
    rt.block_on(screenshot(&c, "26-console-upload-receipt"));
    let stored = console.client(MI).get(&format!("/v1/receipts/{id}")).json();
    assert_eq!(comparable(&stored), comparable(&by_api_xlsx), "{stored:#}");
    assert_eq!(stored["file"]["via"], "console");
    assert_eq!(stored["file"]["by"], "zhang");
    assert_eq!(stored["file"]["name"], "2025年行政处罚.xlsx");
    for n in [1, 2, 3, 4, 6] {
        assert_eq!(
            record_of(&console, &uscc(n)),
            record_of(&api, &uscc(n)),
            "subject {n}"
        );
    }
    let (id, _) = hand_in(&csv_path, "gbk");
    let stored = console.client(MI).get(&format!("/v1/receipts/{id}")).json();
    assert_eq!(comparable(&stored), comparable(&by_api_csv), "{stored:#}");
    assert_eq!(record_of(&console, &uscc(22)), record_of(&api, &uscc(22)));
    // The same file again: a repeat, nothing stored.
    let (_, page) = hand_in(&csv_path, "gbk");
    assert!(page.contains("未重复存储"), "{page}");
    // Audited as the operator's, on the agency's behalf.
    let (_, chain) = console.admin_get("/audit/entries?kind=file_received&limit=1000");
    assert!(
        chain.contains("\"via\":\"console\"") && chain.contains("\"by\":\"zhang\""),
        "{chain}"
    );
    // A viewer has no upload.
    rt.block_on(async {
        c.delete_all_cookies().await.unwrap();
        sign_in(&c, &admin, "li", "pass-word-1").await;
        c.goto(&format!("http://{admin}/console/files"))
            .await
            .unwrap();
        assert!(c
            .find_all(Locator::Css("form.upload"))
            .await
            .unwrap()
            .is_empty());
        c.clone().close().await.unwrap();
    });
}
