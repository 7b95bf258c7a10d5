//! Files handed in at the console (issue #29): a signed-in operator uploads an agency's `.xlsx`
//! or CSV on its behalf, as the agency would through `POST /v1/files`, and reads the file's
//! receipt (each refused row with its spreadsheet row, column and reason).
//!
//! The file takes the one path every file takes (`ingest::files::take`: the same mapping,
//! checks, repeat detection by digest, durability and receipt); the receipt and its audit entry
//! say `via: console` and name the operator. The form is `multipart/form-data` (what a browser
//! sends a file in), read with `multer`; the file is spooled to an unlinked file in
//! `<data_dir>/incoming/` as it arrives, never held whole in memory, within `ingest.max_file_mb`.
//!
//! Never does: let a role other than `operator` hand in a file, let an operator speak for an
//! agency with a mapping that agency may not push, or answer before the records are durable.

use std::collections::HashMap;
use std::io::{Seek, Write};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::i18n::{t, Lang};
use super::pages::layout;
use super::{esc, Viewer};
use crate::answer::Answer;
use crate::files::{Charset, FileKind};
use crate::ingest::files::{Form, Handed, Via};
use crate::operator::Ops;
use crate::operators::Need;

/// The multipart form's fields other than the file: small.
const FIELD_LIMIT: u64 = 4 * 1024;

fn label(l: Lang, zh: &'static str, en: &'static str) -> &'static str {
    match l {
        Lang::Zh => zh,
        Lang::En => en,
    }
}

/// `GET /console/files`: the upload form (operators), and a receipt just answered.
pub fn page(ops: &Ops, v: &Viewer, outcome: Option<Result<&Value, String>>) -> String {
    let l = v.lang;
    let title = label(l, "上传文件（代报）", "Hand in a file");
    let mut body = String::new();
    match outcome {
        Some(Ok(receipt)) => body.push_str(&receipt_html(l, v, receipt)),
        Some(Err(why)) => body.push_str(&format!(
            "<p class=\"bad\" id=\"upload-refused\">{}</p>",
            esc(&why)
        )),
        None => {}
    }
    if !v.principal.may(Need::Act) {
        body.push_str(&format!(
            "<p id=\"no-actions\">{}</p>",
            t(l, "role_no_steps")
        ));
        return layout(v, title, &body);
    }
    let agencies: String = ops
        .live
        .agencies
        .current()
        .iter()
        .map(|a| format!("<option value=\"{id}\">{id}</option>", id = esc(&a.id)))
        .collect();
    let mappings: String = ops
        .live
        .mappings
        .current()
        .iter()
        .filter(|m| !m.is_passthrough())
        .map(|m| format!("<option value=\"{id}\">{id}</option>", id = esc(&m.id)))
        .collect();
    body.push_str(&format!(
        "<p>{}</p><form method=\"post\" class=\"upload\" action=\"/console/files\" enctype=\"multipart/form-data\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>{} <select name=\"agency\">{agencies}</select></label> \
         <label>{} <select name=\"mapping\">{mappings}</select></label> \
         <label>{} <select name=\"charset\"><option value=\"\">{}</option><option value=\"gbk\">GBK</option><option value=\"utf-8\">UTF-8</option></select></label> \
         <label>{} <input type=\"text\" name=\"sheet\" size=\"12\"></label><br>\
         <input type=\"file\" name=\"file\" accept=\".xlsx,.csv\"> <button type=\"submit\">{}</button></form>",
        label(
            l,
            "以所选单位的名义上报其 .xlsx 或 CSV 文件（双公示模板）；回执与审计记录注明由您代报。",
            "Hand in an agency's .xlsx or CSV (the 双公示 template) on its behalf; the receipt and the audit chain name you."
        ),
        esc(&v.csrf),
        t(l, "agency"),
        label(l, "映射", "Mapping"),
        label(l, "CSV 编码", "CSV charset"),
        label(l, "UTF-8（含 BOM）或自动", "UTF-8 (BOM) or detected"),
        label(l, "工作表（可选）", "Sheet (optional)"),
        label(l, "上传", "Hand in"),
    ));
    layout(v, title, &body)
}

/// The receipt as a clerk reads it: counts, then every refused row.
fn receipt_html(l: Lang, v: &Viewer, receipt: &Value) -> String {
    let n = |k: &str| receipt[k].as_u64().unwrap_or(0);
    let mut out = format!(
        "<div id=\"receipt\"><p class=\"ok\">{} <code id=\"receipt-id\">{}</code>{}</p><p id=\"counts\">{} {} · {} {} · {} {} · {} {} · {} {}</p>",
        label(l, "已接收，回执编号", "Taken; receipt"),
        esc(receipt["receipt_id"].as_str().unwrap_or("")),
        receipt["repeat_of"]
            .as_str()
            .map(|r| format!(
                " <span id=\"repeat\">{} {}</span>",
                label(l, "（与此前回执内容相同，未重复存储：", "(a repeat of receipt "),
                esc(r)
            ) + label(l, "）", ")"))
            .unwrap_or_default(),
        label(l, "行数", "rows"),
        n("total"),
        label(l, "接受", "accepted"),
        n("accepted"),
        label(l, "新增", "new"),
        n("new"),
        label(l, "未变", "unchanged"),
        n("unchanged"),
        label(l, "拒收", "rejected"),
        n("rejected_count").max(
            receipt["rejected"]
                .as_array()
                .map(|r| r.len() as u64)
                .unwrap_or(0)
        ),
    );
    let rejected = receipt["rejected"].as_array().cloned().unwrap_or_default();
    if !rejected.is_empty() {
        out.push_str(&format!(
            "<table id=\"rejected\"><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
            label(l, "行", "Row"),
            label(l, "列", "Column"),
            t(l, "reason")
        ));
        for r in rejected {
            out.push_str(&format!(
                "<tr class=\"rejected-row\"><td>{}</td><td>{}</td><td>{}</td></tr>",
                r["row"],
                esc(r["column"].as_str().or(r["field"].as_str()).unwrap_or("")),
                esc(&v.shown(r["reason"].as_str().unwrap_or("")))
            ));
        }
        out.push_str("</table>");
    }
    out.push_str("</div>");
    out
}

/// What the operator's form said, the file spooled.
struct Upload {
    fields: HashMap<String, String>,
    file: Option<(std::fs::File, String, u64, String)>,
}

/// Why an upload was refused, in the operator's words.
fn refused(l: Lang, zh: &str, en: &str) -> String {
    match l {
        Lang::Zh => zh.to_string(),
        Lang::En => en.to_string(),
    }
}

/// `POST /console/files` (multipart): check the CSRF token, the role, the agency and its
/// mapping, spool the file, take it. `(status, page)`.
pub async fn upload(
    ops: &Ops,
    v: &Viewer,
    expected_csrf: Option<&str>,
    req: hyper::Request<hyper::body::Incoming>,
) -> (StatusCode, String) {
    let started = Instant::now();
    let (status, outcome) = match take_upload(ops, v, expected_csrf, req, started).await {
        Ok(receipt) => (StatusCode::OK, Ok(receipt)),
        Err((status, why)) => (status, Err(why)),
    };
    crate::operator::audit_request(
        ops,
        &v.principal,
        &Method::POST,
        "/console/files",
        status.as_u16(),
    )
    .await;
    let page = match &outcome {
        Ok(receipt) => page(ops, v, Some(Ok(receipt))),
        Err(why) => page(ops, v, Some(Err(why.clone()))),
    };
    (status, page)
}

async fn take_upload(
    ops: &Ops,
    v: &Viewer,
    expected_csrf: Option<&str>,
    req: hyper::Request<hyper::body::Incoming>,
    started: Instant,
) -> Result<Value, (StatusCode, String)> {
    let l = v.lang;
    if !v.principal.may(Need::Act) {
        return Err((StatusCode::FORBIDDEN, t(l, "role_may_not_step").into()));
    }
    let Some(app) = ops.uploads.get().and_then(std::sync::Weak::upgrade) else {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            refused(
                l,
                "网关正在启动或停止，请稍后重试。",
                "The gateway is starting or stopping; try again shortly.",
            ),
        ));
    };
    let headers = req.headers().clone();
    let upload = read_form(&app, l, req).await?;
    // The token is the form's first field: checked before anything is taken.
    if let Err(why) = crate::operator::csrf_ok(
        &headers,
        expected_csrf,
        upload.fields.get("csrf").map(String::as_str),
    ) {
        return Err((StatusCode::FORBIDDEN, why.to_string()));
    }
    let field = |k: &str| {
        upload
            .fields
            .get(k)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let agency_id = field("agency").unwrap_or_default();
    let Some(agency) = app.live.registry.current().get(&agency_id) else {
        return Err((
            StatusCode::BAD_REQUEST,
            refused(l, "请选择已配置的单位。", "Choose a configured agency."),
        ));
    };
    let mapping_id = field("mapping").unwrap_or_default();
    let Some(mapping) = app.live.mappings.current().get(&mapping_id).cloned() else {
        return Err((
            StatusCode::BAD_REQUEST,
            refused(l, "请选择映射。", "Choose a mapping."),
        ));
    };
    if !agency.may_push(&mapping.id) || mapping.is_passthrough() {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "{}{}",
                refused(
                    l,
                    "该单位不能使用此映射上报：",
                    "This agency may not hand in with mapping "
                ),
                mapping.id
            ),
        ));
    }
    let Some((file, sha256, bytes, name)) = upload.file else {
        return Err((
            StatusCode::BAD_REQUEST,
            refused(l, "请选择要上传的文件。", "Choose a file."),
        ));
    };
    let lower = name.to_ascii_lowercase();
    let kind = if lower.ends_with(".xlsx") {
        FileKind::Xlsx
    } else if lower.ends_with(".csv") {
        match field("charset").as_deref() {
            None => FileKind::Csv(None),
            Some(label) => match Charset::from_label(label) {
                Ok(c) => FileKind::Csv(Some(c)),
                Err(_) => {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        refused(l, "不支持的编码。", "Unsupported charset."),
                    ))
                }
            },
        }
    } else {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            refused(
                l,
                "只接受 .xlsx 或 .csv 文件（旧版 .xls 请先另存为 .xlsx）。",
                "Only .xlsx or .csv files (save an old .xls as .xlsx first).",
            ),
        ));
    };
    let sheet = field("sheet");
    if sheet.is_some() && kind != FileKind::Xlsx {
        return Err((
            StatusCode::BAD_REQUEST,
            refused(l, "CSV 文件没有工作表。", "A CSV has no sheet."),
        ));
    }
    let wait = Duration::from_millis(app.config.server.inflight_wait_ms);
    let Ok(Ok(_slot)) = tokio::time::timeout(wait, app.files.clone().acquire_owned()).await else {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            refused(
                l,
                "同时处理的文件已达上限，请稍后重试。",
                "Too many files at once; try again shortly.",
            ),
        ));
    };
    let handed = Handed {
        agency: agency.id.clone(),
        mapping,
        form: Form::Sheet(kind),
        sheet,
        file,
        sha256,
        bytes,
        receipt_id: uuid::Uuid::new_v4().to_string(),
        expected_rows: None,
        name: Some(name),
        via: Via::Console,
        by: Some(v.principal.name()),
    };
    match crate::ingest::files::take(&app, handed, started).await {
        Ok(taken) => Ok(taken.receipt),
        Err(e) => Err((e.status(), format!("{} ({})", e, e.code()))),
    }
}

/// Read the multipart form: small fields into a map, the file spooled and hashed.
async fn read_form(
    app: &crate::ingest::App,
    l: Lang,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<Upload, (StatusCode, String)> {
    let bad = |zh: &str, en: &str| (StatusCode::BAD_REQUEST, refused(l, zh, en));
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        bad(
            "表单须为 multipart/form-data。",
            "The form must be multipart/form-data.",
        )
    })?;
    let limit = app.config.ingest.max_file_mb.saturating_mul(1024 * 1024);
    let constraints = multer::Constraints::new()
        .allowed_fields(vec![
            "csrf", "agency", "mapping", "charset", "sheet", "file",
        ])
        .size_limit(
            multer::SizeLimit::new()
                .whole_stream(limit.saturating_add(64 * 1024))
                .per_field(limit)
                .for_field("csrf", FIELD_LIMIT)
                .for_field("agency", FIELD_LIMIT)
                .for_field("mapping", FIELD_LIMIT)
                .for_field("charset", FIELD_LIMIT)
                .for_field("sheet", FIELD_LIMIT),
        );
    // Room for the whole file above the free-space reserve (as for `POST /v1/files`).
    let dir = app.config.storage.data_dir.join("incoming");
    let free = crate::store::space::free_bytes(&app.config.storage.data_dir).unwrap_or(0);
    if free < app.disk.reserve().saturating_add(limit) {
        return Err((
            StatusCode::INSUFFICIENT_STORAGE,
            refused(
                l,
                "磁盘空间低于保留值，暂不接收文件。",
                "Disk space is below the reserve; no file is taken now.",
            ),
        ));
    }
    let _ = dir;
    let body = http_body_util::BodyExt::into_data_stream(req.into_body());
    let mut multipart = multer::Multipart::with_constraints(body, boundary, constraints);
    let mut upload = Upload {
        fields: HashMap::new(),
        file: None,
    };
    let within = Duration::from_millis(app.config.ingest.file_read_timeout_ms);
    let read = async {
        while let Some(mut field) = multipart
            .next_field()
            .await
            .map_err(|e| bad("表单无法读取：", "The form does not read: ").1 + &e.to_string())?
        {
            let name = field.name().unwrap_or("").to_string();
            if name != "file" {
                let text = field.text().await.map_err(|e| e.to_string())?;
                upload.fields.insert(name, text);
                continue;
            }
            let file_name = field.file_name().unwrap_or("").to_string();
            if file_name.is_empty() {
                continue;
            }
            let (mut file, path) = spool_file(app).map_err(|e| e.to_string())?;
            let _ = path;
            let mut hasher = Sha256::new();
            let mut size: u64 = 0;
            {
                let mut out = std::io::BufWriter::with_capacity(256 * 1024, &mut file);
                while let Some(chunk) = field.chunk().await.map_err(|e| e.to_string())? {
                    size += chunk.len() as u64;
                    hasher.update(&chunk);
                    out.write_all(&chunk).map_err(|e| e.to_string())?;
                }
                out.flush().map_err(|e| e.to_string())?;
            }
            file.rewind().map_err(|e| e.to_string())?;
            upload.file = Some((file, hex::encode(hasher.finalize()), size, file_name));
        }
        Ok::<(), String>(())
    };
    match tokio::time::timeout(within, read).await {
        Ok(Ok(())) => Ok(upload),
        Ok(Err(why)) => Err((StatusCode::BAD_REQUEST, why)),
        Err(_) => Err(bad("上传超时。", "The upload took too long.")),
    }
}

/// An unlinked file in `<data_dir>/incoming/`: its open handle keeps it until it is taken; a
/// crash leaves nothing behind.
fn spool_file(app: &crate::ingest::App) -> std::io::Result<(std::fs::File, std::path::PathBuf)> {
    let dir = app.config.storage.data_dir.join("incoming");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.part", uuid::Uuid::new_v4()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok((file, path))
}
