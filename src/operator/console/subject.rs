//! A subject as a clerk reads it, one record as the ledger sees it, and a year's evaluation
//! (issue #27).
//!
//! The subject page is reached by the subject's archive key (`?key=`, from a case or a record) or
//! by its identifier (search: `uscc:<code>` or the identifier alone), so a masked viewer's links
//! never carry the clear identifier. It shows the identity (masked per role), the current grade
//! with its reasons, every record by category with its versions and marks (异议标注, 修复,
//! 消除, expired), and for each record where it is published, on which channel, since when (the
//! ledger's as-of view), with exit and re-entry (LS Art. 20) as operator actions.
//!
//! Never does: change state except through `ledger::ops::set_standing` and
//! `evaluation::ops::run`, the operator API's own steps (written and audited there).

use std::collections::{BTreeMap, HashMap};

use hyper::StatusCode;
use serde_json::Value;

use super::casework::{marks_text, Outcome};
use super::i18n::{t, Lang};
use super::pages::{china, layout};
use super::{esc, Viewer};
use crate::archive::{self, RecordHead, SubjectEntry};
use crate::operator::Ops;
use crate::operators::Need;

/// The subject's clear identifier as its latest record names it (`id_type`, `id`).
fn identity(ops: &Ops, key: &str) -> Option<(String, String)> {
    for (agency, record_id) in archive::records_of(&ops.store, key).ok()? {
        if let Ok(Some((_, version))) = archive::current_version(&ops.store, &agency, &record_id) {
            let json: Value = serde_json::from_str(version.record.get()).ok()?;
            let id_type = json.pointer("/subject/id_type")?.as_str()?.to_string();
            let id = json.pointer("/subject/id")?.as_str()?.to_string();
            return Some((id_type, id));
        }
    }
    None
}

/// The archive key of `type:identifier`, or of an identifier of any type.
pub(super) fn key_of(ops: &Ops, q: &str) -> Option<String> {
    let (types, id): (Vec<&str>, &str) = match q.split_once(':') {
        Some((ty, id)) => (vec![ty], id),
        None => (
            vec![
                "uscc",
                "resident_id",
                "passport",
                "hk_macao_permit",
                "taiwan_permit",
                "foreign_permanent_resident",
            ],
            q,
        ),
    };
    for ty in types {
        let Some(id_type) = crate::subject::IdType::from_code(ty) else {
            continue;
        };
        let Ok(subject) = crate::subject::SubjectId::parse(id_type, id.trim(), &ops.exceptions)
        else {
            continue;
        };
        let key = subject.archive_key(&ops.store);
        if let Ok(Some(_)) = ops
            .store
            .get_json::<SubjectEntry>(&archive::subject_key(&key))
        {
            return Some(key);
        }
    }
    None
}

fn label(l: Lang, zh: &'static str, en: &'static str) -> &'static str {
    match l {
        Lang::Zh => zh,
        Lang::En => en,
    }
}

/// The 13 categories of GD Art. 8, as the regulation names them.
fn category_label(l: Lang, code: &str) -> String {
    let (zh, en) = match code {
        "registration" => ("信用主体登记注册基本信息", "registration"),
        "judicial" => ("司法裁判及执行信息", "judicial"),
        "administrative" => ("行政管理信息", "administrative"),
        "qualification" => ("资质资格、职称和职业资格信息", "qualification"),
        "abnormal_operation" => ("经营（活动）异常名录（状态）信息", "abnormal operation"),
        "dishonest_list" => ("失信主体名单信息", "dishonest list"),
        "agreement_performance" => ("行政约定及其履行信息", "agreement performance"),
        "commitment" => ("信用承诺及其履行情况信息", "commitment"),
        "evaluation_result" => ("信用评价结果信息", "evaluation result"),
        "law_compliance" => ("遵守法律法规情况信息", "law compliance"),
        "honor" => ("诚实守信相关荣誉信息", "honours"),
        "other_public" => ("其他公共信用信息", "other public"),
        "statutory_other" => ("法律法规和国家规定的其他公共信用信息", "statutory other"),
        _ => return esc(code),
    };
    label(l, zh, en).to_string()
}

fn holding_state(l: Lang, state: &str) -> &'static str {
    match state {
        "held" => label(l, "已公开/共享", "held"),
        "queued" => label(l, "待送达", "queued"),
        "withdrawal_queued" => label(l, "撤回待送达", "withdrawal queued"),
        "withdrawn" => label(l, "已撤回", "withdrawn"),
        _ => label(l, "无", "none"),
    }
}

fn channel_label(l: Lang, channel: &str) -> String {
    match channel {
        "public_notice" => label(l, "公示", "public notice").into(),
        "gov_share" => label(l, "政务共享", "government sharing").into(),
        "authorized_query" => label(l, "授权查询", "authorised query").into(),
        other => esc(other),
    }
}

/// Until when a platform may hold the record: the end of its public-notice window on the public
/// channel (GD Art. 38; LS Art. 27), the end of its retention on the others (LS Art. 20).
fn held_until(
    ops: &Ops,
    agency: &str,
    record_id: &str,
) -> (Option<time::OffsetDateTime>, Option<time::OffsetDateTime>) {
    let Ok(Some((_, version))) = archive::current_version(&ops.store, agency, record_id) else {
        return (None, None);
    };
    let Ok(value) = serde_json::from_str::<Value>(version.record.get()) else {
        return (None, None);
    };
    // A stored record, read again under the rules it was accepted by.
    let ctx = crate::record::ValidationContext {
        exceptions: ops.exceptions.clone(),
        authenticated_agency: None,
        incoming: false,
    };
    let Ok(record) = crate::record::validate_owned(value, &ctx) else {
        return (None, None);
    };
    let router = ops.live.router.current();
    let notice = router.notice();
    (
        notice.window(&record).map(|w| w.until),
        notice.retention_end(&record),
    )
}

/// `?as_of=` (a date, the end of that day in China time, or an RFC 3339 time): the ledger's
/// view at that instant; now when absent or unreadable.
fn as_of(ops: &Ops, query: &HashMap<String, String>) -> time::OffsetDateTime {
    query
        .get("as_of")
        .filter(|a| !a.is_empty())
        .and_then(|a| crate::ledger::query::parse_as_of(a).ok())
        .unwrap_or_else(|| ops.clock.now())
}

/// The as-of form: the same page as the ledger saw it at another instant.
fn as_of_form(l: Lang, query: &HashMap<String, String>, action: &str) -> String {
    let hidden: String = query
        .iter()
        .filter(|(k, _)| k.as_str() != "as_of" && k.as_str() != "done")
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            )
        })
        .collect();
    format!(
        "<form method=\"get\" class=\"as-of\" action=\"{action}\">{hidden}{} <input type=\"text\" name=\"as_of\" size=\"12\" placeholder=\"2026-10-08\" value=\"{}\"> <button type=\"submit\">{}</button></form>",
        label(l, "查看某一时点的公开与共享", "Where published as of"),
        esc(query.get("as_of").map(String::as_str).unwrap_or("")),
        t(l, "show")
    )
}

/// The ledger's holdings of one record at `at`, as table rows.
fn holdings_rows(
    ops: &Ops,
    l: Lang,
    agency: &str,
    record_id: &str,
    at: time::OffsetDateTime,
) -> String {
    let Ok(Some(view)) = crate::ledger::query::record(&ops.store, agency, record_id, at, None)
    else {
        return String::new();
    };
    let (notice_until, retention_end) = held_until(ops, agency, record_id);
    let mut out = String::new();
    for h in view["holdings"].as_array().into_iter().flatten() {
        let since = h["showing_since"]
            .as_str()
            .and_then(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(china)
            .unwrap_or_else(|| "-".into());
        let until = if h["channel"] == "public_notice" {
            notice_until
        } else {
            retention_end
        }
        .map(china)
        .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "<tr class=\"holding\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{since}</td><td>{until}</td></tr>",
            esc(&super::pages::platform_name(ops, h["destination"].as_str().unwrap_or(""))),
            channel_label(l, h["channel"].as_str().unwrap_or("")),
            holding_state(l, h["state"].as_str().unwrap_or("")),
            h["showing_version"]
                .as_u64()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
        ));
    }
    out
}

fn holdings_table(
    ops: &Ops,
    l: Lang,
    agency: &str,
    record_id: &str,
    at: time::OffsetDateTime,
) -> String {
    let rows = holdings_rows(ops, l, agency, record_id, at);
    if rows.is_empty() {
        return format!(
            "<p>{}</p>",
            label(l, "未向任何平台共享", "Not shared with any platform")
        );
    }
    format!(
        "<table class=\"holdings\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{rows}</table>",
        t(l, "platform"),
        label(l, "渠道", "Channel"),
        t(l, "state"),
        label(l, "版本", "Version"),
        label(l, "自", "Since"),
        label(l, "至", "Until"),
    )
}

/// `/console/subject?key=K` (or `?q=type:id`).
pub fn subject(
    ops: &Ops,
    v: &Viewer,
    query: &HashMap<String, String>,
    notice: Option<&str>,
) -> Option<String> {
    let l = v.lang;
    let key = match query.get("key").filter(|k| !k.is_empty()) {
        Some(k) => k.clone(),
        None => key_of(ops, query.get("q")?)?,
    };
    let entry = ops
        .store
        .get_json::<SubjectEntry>(&archive::subject_key(&key))
        .ok()
        .flatten()?;
    let identity = identity(ops, &key);
    let mut body = notice
        .map(|n| format!("<p class=\"ok\" id=\"done\">{}</p>", esc(n)))
        .unwrap_or_default();
    body.push_str("<table class=\"case\" id=\"identity\">");
    body.push_str(&format!(
        "<tr><th>{}</th><td id=\"name\">{}</td></tr>",
        label(l, "名称", "Name"),
        esc(&v.shown(&entry.name))
    ));
    if let Some((id_type, id)) = &identity {
        body.push_str(&format!(
            "<tr><th>{}</th><td id=\"identifier\">{} {}</td></tr>",
            label(l, "证件", "Identifier"),
            esc(id_type),
            esc(&v.shown(id))
        ));
    }
    let exited = entry.status == "exited";
    body.push_str(&format!(
        "<tr><th>{}</th><td id=\"standing\" data-code=\"{}\">{}</td></tr>",
        t(l, "state"),
        esc(&entry.status),
        if exited {
            label(
                l,
                "已退出（档案不再展示与共享）",
                "exited (hidden, shared nowhere)",
            )
        } else {
            label(l, "正常", "active")
        }
    ));
    if let Some(change) = &entry.standing_change {
        body.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            label(l, "退出/恢复", "Exit / re-entry"),
            esc(&serde_json::to_string(change).unwrap_or_default())
        ));
    }
    body.push_str("</table>");
    // The grade in force, with its reasons (GD Arts. 17-22).
    if let (Some(engine), Some((id_type, id))) = (&ops.evaluation, &identity) {
        body.push_str(&grade_section(ops, engine, v, id_type, id));
    }
    body.push_str(&format!("<h2>{}</h2>", t(l, "records")));
    let at = as_of(ops, query);
    body.push_str(&as_of_form(l, query, "/console/subject"));
    let mut by_category: BTreeMap<String, Vec<(String, String, RecordHead)>> = BTreeMap::new();
    for (agency, record_id) in archive::records_of(&ops.store, &key).unwrap_or_default() {
        if let Ok(Some(head)) = ops
            .store
            .get_json::<RecordHead>(&archive::record_head_key(&agency, &record_id))
        {
            by_category
                .entry(head.category.code().to_string())
                .or_default()
                .push((agency, record_id, head));
        }
    }
    for (category, records) in &by_category {
        body.push_str(&format!(
            "<h3>{}</h3><table class=\"records\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            category_label(l, category),
            t(l, "agency"),
            t(l, "record"),
            label(l, "版本", "Version"),
            t(l, "marks"),
            label(l, "公开与共享", "Where published")
        ));
        for (agency, record_id, head) in records {
            let mut marks = marks_text(l, &head.marks);
            if head.expired_at.is_some() {
                marks.push_str(&format!(
                    " <span class=\"mark\">{}</span>",
                    label(l, "已过期", "expired")
                ));
            }
            body.push_str(&format!(
                "<tr class=\"record\"><td>{}</td><td><a href=\"/console/record?agency={a}&id={id}\">{}</a></td><td>{}</td><td>{marks}</td><td>{}</td></tr>",
                esc(agency),
                esc(&v.shown(record_id)),
                head.version,
                holdings_table(ops, l, agency, record_id, at),
                a = esc(agency),
                id = esc(record_id),
            ));
        }
        body.push_str("</table>");
    }
    // Exit and re-entry (LS Art. 20), for operators.
    if v.principal.may(Need::Act) {
        let csrf = esc(&v.csrf);
        let key = esc(&key);
        if exited {
            body.push_str(&format!(
                "<h2>{}</h2><form method=\"post\" class=\"reentry\" action=\"/console/subject/reentry\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"key\" value=\"{key}\">\
                 <label>{} <input type=\"text\" name=\"on\" size=\"12\" placeholder=\"2026-10-08\"></label> <label>{} <input type=\"text\" name=\"note\" size=\"40\"></label> <button type=\"submit\">{}</button></form>",
                label(l, "恢复", "Re-entry"),
                label(l, "生效日期", "Effective on"),
                label(l, "说明", "Note"),
                label(l, "恢复（重新共享）", "Re-enter (share again)")
            ));
        } else {
            body.push_str(&format!(
                "<h2>{}</h2><form method=\"post\" class=\"exit\" action=\"/console/subject/exit\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"key\" value=\"{key}\">\
                 <label>{} <select name=\"reason\"><option value=\"left_service\">{}</option><option value=\"death\">{}</option></select></label> \
                 <label>{} <input type=\"text\" name=\"on\" size=\"12\" placeholder=\"2026-10-08\"></label> <label>{} <input type=\"text\" name=\"note\" size=\"40\"></label> <button type=\"submit\">{}</button></form>",
                label(l, "退出（LS 第二十条）", "Exit (LS Art. 20)"),
                t(l, "reason"),
                label(l, "退出医保服务", "left medical-insurance service"),
                label(l, "死亡", "death"),
                label(l, "生效日期", "Effective on"),
                label(l, "说明", "Note"),
                label(l, "退出（撤回全部共享）", "Exit (withdraw every share)")
            ));
        }
    }
    Some(layout(
        v,
        &format!("{} {}", t(l, "subject"), v.shown(&entry.name)),
        &body,
    ))
}

fn grade_section(
    ops: &Ops,
    engine: &crate::evaluation::engine::Engine,
    v: &Viewer,
    id_type: &str,
    id: &str,
) -> String {
    let l = v.lang;
    let Some(ty) = crate::subject::IdType::from_code(id_type) else {
        return String::new();
    };
    let Ok(subject) = crate::subject::SubjectId::parse(ty, id, &ops.exceptions) else {
        return String::new();
    };
    let Ok(history) = crate::evaluation::ops::history(engine, &subject, ops.clock.now()) else {
        return String::new();
    };
    let Some(current) = history["results"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x.get("grade").is_some()))
    else {
        return format!(
            "<h2>{}</h2><p id=\"grade\">{}</p>",
            label(l, "信用评价", "Credit evaluation"),
            label(l, "尚无评价结果", "No result yet")
        );
    };
    let mut out = format!(
        "<h2>{}</h2><p>{} <strong id=\"grade\">{}</strong> · {} {} · {} {}</p>",
        label(l, "信用评价", "Credit evaluation"),
        label(l, "等级", "Grade"),
        esc(current["grade"].as_str().unwrap_or("-")),
        label(l, "分值", "Points"),
        current["points"],
        label(l, "年度", "Year"),
        current["year"],
    );
    let reasons = current["reasons"].as_array().cloned().unwrap_or_default();
    if !reasons.is_empty() {
        out.push_str(&format!(
            "<table id=\"reasons\"><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
            t(l, "record"),
            label(l, "评价项", "Item"),
            label(l, "分值变化", "Points")
        ));
        for r in reasons {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&v.shown(r["record_id"].as_str().unwrap_or(""))),
                esc(r["item"].as_str().unwrap_or("")),
                r["points"]
            ));
        }
        out.push_str("</table>");
    }
    out
}

/// `/console/record?agency=A&id=R`: one record's versions, marks and holdings.
pub fn record(ops: &Ops, v: &Viewer, query: &HashMap<String, String>) -> Option<String> {
    let l = v.lang;
    let agency = query.get("agency")?;
    let record_id = query.get("id")?;
    let head = ops
        .store
        .get_json::<RecordHead>(&archive::record_head_key(agency, record_id))
        .ok()
        .flatten()?;
    let mut body = String::from("<table class=\"case\" id=\"record\">");
    body.push_str(&format!(
        "<tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{} {}</td></tr>",
        t(l, "agency"),
        esc(agency),
        t(l, "record"),
        esc(&v.shown(record_id)),
        label(l, "类别", "Category"),
        category_label(l, head.category.code()),
        label(l, "版本", "Version"),
        head.version,
        marks_text(l, &head.marks),
    ));
    body.push_str(&format!(
        "<tr><th>{}</th><td><a class=\"subject-link\" href=\"/console/subject?key={}\">{}</a></td></tr></table>",
        t(l, "subject"),
        esc(&head.subject),
        t(l, "subject_page")
    ));
    body.push_str(&format!(
        "<h2>{}</h2>",
        label(l, "公开与共享", "Where published")
    ));
    body.push_str(&as_of_form(l, query, "/console/record"));
    body.push_str(&holdings_table(
        ops,
        l,
        agency,
        record_id,
        as_of(ops, query),
    ));
    if let Ok(Some((_, version))) = archive::current_version(&ops.store, agency, record_id) {
        let mut json: Value = serde_json::from_str(version.record.get()).unwrap_or(Value::Null);
        if !v.principal.sees_full_values() {
            crate::operator::mask_value(&mut json);
        }
        body.push_str(&format!(
            "<h2>{} ({})</h2><table class=\"fields\">",
            label(l, "当前版本", "Current version"),
            china(version.received_at)
        ));
        flatten(&json, "", &mut body);
        body.push_str("</table>");
    }
    Some(layout(
        v,
        &format!("{} {}", t(l, "record"), v.shown(record_id)),
        &body,
    ))
}

/// A record's fields as rows (`content.fine_yuan`), readable at 1366 pixels.
fn flatten(value: &Value, path: &str, out: &mut String) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(v, &p, out);
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object()) => out.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(path),
            esc(&items
                .iter()
                .map(|i| i
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| i.to_string()))
                .collect::<Vec<_>>()
                .join("、"))
        )),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::String(s) => out.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(path),
            esc(s)
        )),
        other => out.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(path),
            esc(&other.to_string())
        )),
    }
}

/// `/console/evaluation[?year=Y]`: the year's cycle, grades, results under objection,
/// publication and re-evaluation.
pub fn evaluation(
    ops: &Ops,
    v: &Viewer,
    query: &HashMap<String, String>,
    notice: Option<&str>,
) -> String {
    let l = v.lang;
    let title = label(l, "信用评价", "Evaluation");
    let Some(engine) = &ops.evaluation else {
        return layout(
            v,
            title,
            &format!(
                "<p>{}</p>",
                label(
                    l,
                    "未启用信用评价（evaluation.enabled）",
                    "Evaluation is off (evaluation.enabled)"
                )
            ),
        );
    };
    let this_year = ops
        .clock
        .now()
        .to_offset(crate::calendar::CHINA_OFFSET)
        .year();
    let year = query
        .get("year")
        .and_then(|y| y.parse().ok())
        .unwrap_or(this_year);
    let mut body = notice
        .map(|n| format!("<p class=\"ok\" id=\"done\">{}</p>", esc(n)))
        .unwrap_or_default();
    body.push_str(&format!(
        "<form method=\"get\" action=\"/console/evaluation\">{} <input type=\"text\" name=\"year\" size=\"6\" value=\"{year}\"> <button type=\"submit\">{}</button></form>",
        label(l, "年度", "Year"),
        t(l, "show")
    ));
    let cycles = crate::evaluation::worker::cycles(&ops.store).unwrap_or_default();
    body.push_str(&format!(
        "<h2>{}</h2><table id=\"cycles\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        label(l, "评价周期", "Cycles"),
        label(l, "年度", "Year"),
        label(l, "进度", "Progress"),
        label(l, "开始", "Started"),
        label(l, "完成", "Finished"),
        label(l, "重新评价", "Re-evaluations"),
        label(l, "未评价（规则到期）", "Not evaluated (rule ended)"),
    ));
    for c in cycles.iter().filter(|c| c.year == year) {
        body.push_str(&format!(
            "<tr class=\"cycle\"><td>{}</td><td class=\"progress\">{} / {}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
            c.year,
            c.done,
            c.total,
            china(c.started_at),
            c.finished_at.map(china).unwrap_or_else(|| label(l, "进行中", "running").into()),
            c.reruns,
            c.rerun_cause.as_ref().map(|r| format!(" ({})", esc(r))).unwrap_or_default(),
            c.not_evaluated.values().sum::<u64>(),
        ));
    }
    body.push_str("</table>");
    match crate::evaluation::ops::year_summary(engine, year) {
        Ok(s) => {
            body.push_str(&format!(
                "<h2>{}</h2><p id=\"results\">{} {} · {} {} · {} {} · {} {}</p><table id=\"grades\"><tr>",
                label(l, "结果", "Results"),
                label(l, "结果数", "results"),
                s.results,
                label(l, "年内变动", "changed this year"),
                s.changed,
                label(l, "异议中", "under objection"),
                s.under_objection.len(),
                label(l, "已公布", "published"),
                s.published
            ));
            for g in s.by_grade.keys() {
                body.push_str(&format!("<th>{}</th>", esc(g)));
            }
            body.push_str("</tr><tr>");
            for (g, n) in &s.by_grade {
                body.push_str(&format!("<td class=\"grade-{}\">{n}</td>", esc(g)));
            }
            body.push_str("</tr></table>");
            if !s.under_objection.is_empty() {
                body.push_str(&format!(
                    "<h3>{}</h3><ul id=\"under-objection\">",
                    label(
                        l,
                        "异议中的结果（公布前须处理）",
                        "Results under objection (resolved before publication)"
                    )
                ));
                for id in &s.under_objection {
                    body.push_str(&format!(
                        "<li><a href=\"/console/record?agency={}&id={id}\">{id}</a></li>",
                        esc(&engine.agency),
                        id = esc(id)
                    ));
                }
                body.push_str("</ul>");
            }
        }
        Err(e) => body.push_str(&format!("<p class=\"bad\">{}</p>", esc(&e.to_string()))),
    }
    if v.principal.may(Need::Act) {
        let csrf = esc(&v.csrf);
        body.push_str(&format!(
            "<h2>{}</h2><form method=\"post\" class=\"publish\" action=\"/console/evaluation/publish\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"year\" value=\"{year}\"><button type=\"submit\">{}</button> {}</form>\
             <form method=\"post\" class=\"rerun\" action=\"/console/evaluation/rerun\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"year\" value=\"{year}\"><label>{} <input type=\"text\" name=\"region\" size=\"8\"></label> <button type=\"submit\">{}</button></form>",
            t(l, "actions"),
            label(l, "公布本年度结果（LS 第二十七条）", "Publish the year's results (LS Art. 27)"),
            label(l, "异议期届满后方可公布", "only once the objection window has closed"),
            t(l, "region"),
            label(l, "重新评价", "Re-evaluate")
        ));
    }
    layout(v, title, &body)
}

/// Posted steps: `/console/subject/{exit|reentry}`, `/console/evaluation/{publish|rerun}`.
pub async fn act(
    ops: &Ops,
    v: &Viewer,
    path: &str,
    form: &HashMap<String, String>,
) -> Option<(StatusCode, Outcome)> {
    let is_ours = matches!(
        path,
        "/console/subject/exit"
            | "/console/subject/reentry"
            | "/console/evaluation/publish"
            | "/console/evaluation/rerun"
    );
    if !is_ours {
        return None;
    }
    let outcome = if !v.principal.may(Need::Act) {
        Outcome::Refused(StatusCode::FORBIDDEN, t(v.lang, "role_may_not_step").into())
    } else {
        match path {
            "/console/subject/exit" | "/console/subject/reentry" => {
                standing(ops, v, path.ends_with("exit"), form).await
            }
            "/console/evaluation/publish" | "/console/evaluation/rerun" => {
                evaluation_step(ops, v, path.ends_with("publish"), form).await
            }
            _ => return None,
        }
    };
    Some(outcome.audited(ops, v, path).await)
}

fn op_refusal(l: Lang, e: crate::command::OpError) -> Outcome {
    use crate::command::OpError;
    match e {
        OpError::NotFound(_) => Outcome::Refused(StatusCode::NOT_FOUND, t(l, "not_found").into()),
        OpError::Conflict(m) => Outcome::Refused(StatusCode::CONFLICT, m),
        OpError::Invalid(m) => Outcome::Refused(StatusCode::BAD_REQUEST, m),
        OpError::Storage(_) => {
            Outcome::Refused(StatusCode::SERVICE_UNAVAILABLE, t(l, "storage_busy").into())
        }
    }
}

async fn standing(ops: &Ops, v: &Viewer, exit: bool, form: &HashMap<String, String>) -> Outcome {
    let l = v.lang;
    let key = form.get("key").cloned().unwrap_or_default();
    let Some((id_type, id)) = identity(ops, &key) else {
        return Outcome::Refused(StatusCode::NOT_FOUND, t(l, "not_found").into());
    };
    let on = form
        .get("on")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if on.is_empty() {
        return Outcome::Refused(
            StatusCode::BAD_REQUEST,
            label(
                l,
                "请填写生效日期（YYYY-MM-DD）",
                "the effective date (YYYY-MM-DD) is required",
            )
            .into(),
        );
    }
    let request = crate::ledger::recheck::StandingRequest {
        reason: exit.then(|| form.get("reason").cloned().unwrap_or_default()),
        on,
        note: form.get("note").filter(|n| !n.trim().is_empty()).cloned(),
    };
    let by = v.principal.name();
    let ctx = crate::ledger::ops::OpContext {
        store: &ops.store,
        committer: &ops.committer,
        router: ops.live.router.current(),
        exceptions: &ops.exceptions,
        now: ops.clock.now(),
        by: &by,
    };
    match crate::ledger::ops::set_standing(&ctx, &id_type, &id, exit, request).await {
        Ok(_) => Outcome::Done(format!(
            "/console/subject?key={}&done={}",
            key,
            if exit { "exit" } else { "reentry" }
        )),
        Err(e) => op_refusal(l, e),
    }
}

async fn evaluation_step(
    ops: &Ops,
    v: &Viewer,
    publish: bool,
    form: &HashMap<String, String>,
) -> Outcome {
    use crate::evaluation::ops::Command;
    let l = v.lang;
    let Some(engine) = &ops.evaluation else {
        return Outcome::Refused(
            StatusCode::SERVICE_UNAVAILABLE,
            label(l, "未启用信用评价", "evaluation is off").into(),
        );
    };
    let Ok(year) = form
        .get("year")
        .map(String::as_str)
        .unwrap_or("")
        .parse::<i32>()
    else {
        return Outcome::Refused(
            StatusCode::BAD_REQUEST,
            label(l, "年度须为数字", "the year must be a number").into(),
        );
    };
    let command = if publish {
        Command::Publish { year }
    } else {
        Command::Rerun {
            year,
            region: form.get("region").filter(|r| !r.trim().is_empty()).cloned(),
            by: v.principal.name(),
        }
    };
    let calendar = ops.live.calendar.current();
    match crate::evaluation::ops::run(
        engine,
        &ops.committer,
        &calendar,
        ops.live.objections.current().longest_filing_working_days(),
        ops.clock.now(),
        command,
    )
    .await
    {
        Ok(_) => Outcome::Done(format!(
            "/console/evaluation?year={year}&done={}",
            if publish { "publish" } else { "rerun" }
        )),
        Err(e) => op_refusal(l, e),
    }
}
