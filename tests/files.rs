//! End to end (issue #29): batch files through the agency API, `POST /v1/files`, on the real
//! binary: an `.xlsx` of the national 双公示 行政处罚 template (Chinese headers under a merged
//! title row, dates as text, as date cells and as plain serial numbers, amounts in 万元, a
//! formula, a vertical merge, blank rows, a hidden sheet, one bad row), CSV in GBK and in UTF-8
//! with a BOM, an undeclared non-UTF-8 CSV, the same file twice, and a 200,000-row CSV taken with
//! bounded memory.

mod common;

use std::time::{Duration, Instant};

use common::{uscc_in, Gateway};
use rust_xlsxwriter::{ExcelDateTime, Format, Formula, Workbook};
use serde_json::Value;

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
    let gw = Gateway::start();
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
    let reply = gw
        .client(MI)
        .request_within(
            "POST",
            "/v1/files?mapping=mi-penalties",
            Some("text/csv; charset=utf-8"),
            &[],
            text.into_bytes(),
            Duration::from_secs(1800),
        )
        .expect("the request completes");
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
