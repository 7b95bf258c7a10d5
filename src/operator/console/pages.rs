//! The console's pages. Each reads through the same functions as the operator API and renders
//! plain HTML; lists are cut into pages on the server.

use std::collections::HashMap;

use serde_json::Value;

use super::i18n::{t, Lang};
use super::{esc, Viewer};
use crate::operator::Ops;

const PAGE: usize = 50;
/// Audit entries per page of the chain (filtered by kind within it).
const WINDOW: u64 = 200;

pub(super) fn layout(v: &Viewer, title: &str, body: &str) -> String {
    let l = v.lang;
    let nav: String = [
        ("/console", "overview"),
        ("/console/platforms", "platforms"),
        ("/console/deadlines", "deadlines"),
        ("/console/objections", "nav_objections"),
        ("/console/repairs", "nav_repairs"),
        ("/console/corrections", "nav_corrections"),
        ("/console/evaluation", "evaluation"),
        ("/console/files", "nav_files"),
        ("/console/search", "search"),
        ("/console/audit", "audit"),
        ("/console/rules", "rules"),
    ]
    .iter()
    .map(|(href, key)| format!("<a href=\"{href}\">{}</a>", t(l, key)))
    .collect();
    let other = match l {
        Lang::Zh => "<a href=\"?lang=en\">English</a>",
        Lang::En => "<a href=\"?lang=zh\">中文</a>",
    };
    let banner = if v.warnings.is_empty() {
        String::new()
    } else {
        let items: String = v
            .warnings
            .iter()
            .map(|w| format!("<li>{}</li>", esc(w)))
            .collect();
        format!(
            "<div class=\"banner\" id=\"rule-warnings\" role=\"alert\"><strong>{}</strong> <a href=\"/console/rules\">{}</a><ul>{items}</ul></div>",
            t(l, "rules_warning"),
            t(l, "rules")
        )
    };
    format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{} · {}</title>\
         <link rel=\"stylesheet\" href=\"/console/style.css\"></head><body>\
         <header><strong>{}</strong>{nav}<span class=\"who\" id=\"who\">{} ({}: {}) {other} \
         <form method=\"post\" action=\"/console/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">{}</button></form></span></header>{banner}<main><h1>{}</h1>{body}</main></body></html>",
        if l == Lang::Zh { "zh-CN" } else { "en" },
        esc(title),
        t(l, "title"),
        t(l, "title"),
        esc(&v.principal.name()),
        t(l, "role"),
        t(l, &format!("role_{}", v.principal.role())),
        esc(&v.csrf),
        t(l, "sign_out"),
        esc(title),
    )
}

pub fn login(l: Lang, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" id=\"error\">{}</p>", esc(e)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title>\
         <link rel=\"stylesheet\" href=\"/console/style.css\"></head><body><div class=\"login\">\
         <h1>{}</h1>{error}<form method=\"post\" action=\"/console/login\">\
         <label for=\"name\">{}</label><input type=\"text\" id=\"name\" name=\"name\" autocomplete=\"username\">\
         <label for=\"password\">{}</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\">\
         <p><button type=\"submit\" id=\"sign-in\">{}</button></p></form></div></body></html>",
        t(l, "title"),
        t(l, "sign_in"),
        t(l, "name"),
        t(l, "password"),
        t(l, "sign_in"),
    )
}

pub fn message(v: &Viewer, title: &str, text: &str) -> String {
    layout(
        v,
        title,
        &format!("<p id=\"message\">{}</p>", esc(&v.shown(text))),
    )
}

/// Sum of a counter's series in the Prometheus text, by one label's value.
fn counter_by(metrics: &str, name: &str, label: &str) -> Vec<(String, f64)> {
    let mut out: HashMap<String, f64> = HashMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        let key = rest
            .split(&format!("{label}=\""))
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("")
            .to_string();
        *out.entry(key).or_default() += value;
    }
    let mut v: Vec<_> = out.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn total(metrics: &str, name: &str) -> u64 {
    // Counters only grow: shown as whole numbers (a sum of no series printed "-0").
    let sum: f64 = counter_by(metrics, name, "").iter().map(|(_, v)| v).sum();
    sum.max(0.0).round() as u64
}

/// A time as the bureau reads it: China time, to the minute (every page shows times this way).
pub fn china(t: time::OffsetDateTime) -> String {
    let c = t.to_offset(crate::calendar::CHINA_OFFSET);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        c.year(),
        u8::from(c.month()),
        c.day(),
        c.hour(),
        c.minute()
    )
}

/// The configured name of a platform, with its id.
pub(super) fn platform_name(ops: &Ops, id: &str) -> String {
    match ops.config.destinations.iter().find(|d| d.id == id) {
        Some(d) => format!("{} ({})", d.name, d.id),
        None => id.to_string(),
    }
}

/// A gauge's value in the Prometheus text, by one label's value.
fn gauge_by(metrics: &str, name: &str, label: &str) -> HashMap<String, f64> {
    counter_by(metrics, name, label).into_iter().collect()
}

/// What needs the operator now, in plain words with the next step (issue #27: the overview said
/// "ready" in green while a platform failed and dead letters waited).
fn problems(ops: &Ops, l: Lang, metrics: &str) -> Vec<String> {
    let mut out = Vec::new();
    let zh = l == Lang::Zh;
    if let Some(why) = ops.readiness.why_not() {
        out.push(if zh {
            format!("网关未就绪：{why}。请先处理此项。")
        } else {
            format!("The gateway is not ready: {why}. Deal with this first.")
        });
    }
    let now = ops.clock.now();
    for d in &ops.config.destinations {
        let Ok(s) = crate::outbox::stats(&ops.store, &d.id) else {
            continue;
        };
        let name = platform_name(ops, &d.id);
        if s.dead_letters > 0 {
            out.push(if zh {
                format!("{name}：{} 条死信待处理。在「平台与队列」查看平台答复，排除原因后重放。", s.dead_letters)
            } else {
                format!("{name}: {} dead letters wait. See the platform's answer under Platforms, fix the cause, then replay.", s.dead_letters)
            });
        }
        if let Some(answer) = ops.last_answers.get(&d.id) {
            out.push(if zh {
                format!("{name} 投递失败（连续 {} 次，最近 {}），平台答复：{}。共享在队列中等待（{} 条），平台恢复后自动重发。", answer.consecutive, china(answer.at), answer.answer, s.pending)
            } else {
                format!("{name}: delivery failing ({} in a row, last {}); the platform answered: {}. {} shares wait durably and go out when it recovers.", answer.consecutive, china(answer.at), answer.answer, s.pending)
            });
        } else if let Some(oldest) = s.oldest_pending_unix {
            let waiting = now.unix_timestamp() - oldest;
            if waiting > 600 {
                out.push(if zh {
                    format!(
                        "{name}：最早的共享已等待 {} 分钟（{} 条待发）。",
                        waiting / 60,
                        s.pending
                    )
                } else {
                    format!(
                        "{name}: the oldest share has waited {} minutes ({} pending).",
                        waiting / 60,
                        s.pending
                    )
                });
            }
        }
    }
    let overdue = |name: &str, label: &str| {
        gauge_by(metrics, name, label)
            .get("overdue")
            .copied()
            .unwrap_or(0.0)
            .max(0.0) as u64
    };
    let corrections = total(metrics, "gateway_corrections_overdue");
    if corrections > 0 {
        out.push(if zh {
            format!("{corrections} 项更正已逾期（粤规第三十一条：三个工作日）。在「期限」查看，通常是平台未确认。")
        } else {
            format!("{corrections} corrections are overdue (GD Art. 31: three working days). See Deadlines; usually a platform has not acknowledged.")
        });
    }
    let objections = overdue("gateway_objections", "state");
    if objections > 0 {
        out.push(if zh {
            format!("{objections} 件异议复核已逾期。在「期限」查看并督促提供单位处理。")
        } else {
            format!("{objections} objection reviews are overdue. See Deadlines and press the providing agency.")
        });
    }
    let repairs = overdue("gateway_repairs", "state");
    if repairs > 0 {
        out.push(if zh {
            format!("{repairs} 件信用修复已超出办理期限。在「期限」查看。")
        } else {
            format!("{repairs} repairs are past their decision deadline. See Deadlines.")
        });
    }
    let at_risk = deadlines_at_risk(ops);
    if at_risk > 0 {
        out.push(if zh {
            format!("{at_risk} 项期限将在一个工作日内届满（更正、异议核查、修复决定）。在「期限」查看，逾期的排在最前。")
        } else {
            format!("{at_risk} deadlines end within one working day (corrections, objection reviews, repair decisions). See Deadlines.")
        });
    }
    let today = now.to_offset(crate::calendar::CHINA_OFFSET).date();
    let rules = crate::rulebook::in_force::warnings(&ops.live, &ops.rule_files, today).len();
    if rules > 0 {
        out.push(if zh {
            format!("{rules} 项规则或工作日历即将到期或已到期且无后续规则。在「在用规则」查看要加入的文件。")
        } else {
            format!("{rules} rules or the calendar end (or ended) without a successor. See Rules for the file to add.")
        });
    }
    out
}

/// Open corrections, objection reviews and repair decisions due within one working day.
fn deadlines_at_risk(ops: &Ops) -> usize {
    let now = ops.clock.now();
    let calendar = ops.live.calendar.current();
    let soon = |d: time::OffsetDateTime| {
        crate::casework::Countdown::counted(d, now, &calendar)
            .is_ok_and(|c| c.due_within_a_working_day())
    };
    let corrections =
        crate::corrections::list(&ops.store, now, Some(crate::corrections::State::Pending))
            .unwrap_or_default()
            .iter()
            .filter(|c| c.correction.deadline.is_some_and(soon))
            .count();
    let objections =
        crate::objections::list(&ops.store, now, Some(crate::objections::State::UnderReview))
            .unwrap_or_default()
            .iter()
            .filter(|o| o.objection.review_deadline.is_some_and(soon))
            .count();
    let repairs = crate::repairs::list(&ops.store, now, Some(crate::repairs::State::UnderReview))
        .unwrap_or_default()
        .iter()
        .filter(|r| soon(r.repair.decision_deadline))
        .count();
    corrections + objections + repairs
}

pub fn overview(ops: &Ops, v: &Viewer) -> String {
    let l = v.lang;
    let metrics = ops.metrics.as_ref().map(|m| m.render()).unwrap_or_default();
    let problems = problems(ops, l, &metrics);
    let health = if !ops.readiness.is_ready() {
        format!(
            "<span class=\"bad\" id=\"health\">{}</span>",
            t(l, "not_ready")
        )
    } else if problems.is_empty() {
        format!("<span class=\"ok\" id=\"health\">{}</span>", t(l, "ready"))
    } else {
        format!(
            "<span class=\"warn\" id=\"health\">{}</span>",
            t(l, "ready_with_problems")
        )
    };
    // Files being taken now (a large file's progress): API, folder and console.
    let files_now: f64 = gauge_by(&metrics, "gateway_files_in_progress", "via")
        .values()
        .sum();
    let rows_now: f64 = gauge_by(&metrics, "gateway_file_rows_in_progress", "via")
        .values()
        .sum();
    let files_line = if files_now >= 1.0 {
        format!(
            "<p id=\"files-in-progress\">{} {} · {} {}</p>",
            match l {
                Lang::Zh => "正在接收的文件",
                Lang::En => "Files being taken",
            },
            files_now.round() as u64,
            match l {
                Lang::Zh => "已入库行数",
                Lang::En => "rows committed",
            },
            rows_now.max(0.0).round() as u64
        )
    } else {
        String::new()
    };
    let problem_list = if problems.is_empty() {
        files_line
    } else {
        let items: String = problems
            .iter()
            .map(|p| format!("<li>{}</li>", esc(&v.shown(p))))
            .collect();
        format!(
            "{files_line}<h2>{}</h2><ul id=\"problems\">{items}</ul>",
            t(l, "needs_attention")
        )
    };
    let refused: String = counter_by(&metrics, "gateway_requests_refused_total", "code")
        .iter()
        .map(|(code, n)| {
            format!(
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(code),
                n.max(0.0).round() as u64
            )
        })
        .collect();
    let now = ops.clock.now();
    let certs: String = expiring_certificates(&ops.config, now)
        .iter()
        .map(|(path, until)| {
            format!(
                "<tr><td>{}</td><td class=\"warn\">{}</td></tr>",
                esc(path),
                esc(&china(*until))
            )
        })
        .collect();
    let calendar = ops.live.calendar.current();
    let last = *calendar.known_years().end();
    let days_left = time::Date::from_calendar_date(last, time::Month::December, 31)
        .map(|end| (end - crate::evaluation::engine::today(now)).whole_days())
        .unwrap_or(0);
    let days_class = if days_left < 60 { "warn" } else { "ok" };
    layout(
        v,
        t(l, "overview"),
        &format!(
            "<table><tr><th>{}</th><td>{health}</td></tr>\
             <tr><th>{}</th><td>{}: {} · {}: {} · {}: {}</td></tr>\
             <tr><th>{}</th><td class=\"{days_class}\" id=\"calendar-days\">{days_left} ({last}-12-31)</td></tr></table>\
             {problem_list}<h2>{}</h2><table><tr><th>code</th><th>n</th></tr>{}</table>\
             <h2>{}</h2><table>{}</table>",
            t(l, "health"),
            t(l, "throughput"),
            t(l, "accepted"),
            total(&metrics, "gateway_records_accepted_total"),
            t(l, "rejected"),
            total(&metrics, "gateway_records_rejected_total"),
            t(l, "delivered"),
            total(&metrics, "gateway_shares_delivered_total"),
            t(l, "calendar"),
            t(l, "refused_by_code"),
            if refused.is_empty() { format!("<tr><td colspan=2>{}</td></tr>", t(l, "none")) } else { refused },
            t(l, "certificates"),
            if certs.is_empty() { format!("<tr><td>{}</td></tr>", t(l, "none")) } else { certs },
        ),
    )
}

/// Certificates the gateway uses (its server certificate, the agencies' and its delivery client
/// certificates in the certificates folder, the destinations' client certificates) that expire
/// within 30 days.
pub fn expiring_certificates(
    config: &crate::config::Config,
    now: time::OffsetDateTime,
) -> Vec<(String, time::OffsetDateTime)> {
    crate::identity::expiry::days_left(config, now)
        .into_iter()
        .filter(|(_, _, days)| *days <= 30)
        .filter_map(|(_, path, _)| {
            let until = crate::identity::expiry::not_after(&path)?;
            Some((path.display().to_string(), until))
        })
        .collect()
}

pub fn platforms(ops: &Ops, v: &Viewer, query: &HashMap<String, String>) -> String {
    let l = v.lang;
    let metrics = ops.metrics.as_ref().map(|m| m.render()).unwrap_or_default();
    let retries: HashMap<String, f64> =
        counter_by(&metrics, "gateway_delivery_retries_total", "destination")
            .into_iter()
            .collect();
    let page: usize = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0usize)
        .min(10_000);
    let mut body = String::new();
    if let Some(n) = query.get("replayed") {
        body.push_str(&format!(
            "<p class=\"ok\" id=\"replayed\">{}: {}</p>",
            t(l, "replayed"),
            esc(&v.shown(n))
        ));
    }
    body.push_str(&format!(
        "<table id=\"queues\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(l, "destination"),
        t(l, "pending"),
        t(l, "oldest"),
        t(l, "retries"),
        t(l, "dead_letters"),
        t(l, "last_answer")
    ));
    for d in &ops.destinations {
        let Ok(s) = crate::outbox::stats(&ops.store, d) else {
            continue;
        };
        let oldest = s
            .oldest_pending_unix
            .and_then(|u| time::OffsetDateTime::from_unix_timestamp(u).ok())
            .map(china)
            .unwrap_or_default();
        let answer = ops
            .last_answers
            .get(d)
            .map(|a| format!("{} · {}", china(a.at), a.answer))
            .unwrap_or_default();
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td id=\"dead-{}\">{}</td><td class=\"answer\" id=\"answer-{}\">{}</td></tr>",
            esc(&platform_name(ops, d)),
            s.pending,
            esc(&oldest),
            retries.get(d).copied().unwrap_or(0.0).max(0.0).round() as u64,
            esc(d),
            s.dead_letters,
            esc(d),
            esc(&v.shown(&answer))
        ));
    }
    body.push_str("</table>");
    let may_act = v.principal.may(crate::operators::Need::Act);
    let reason_field = format!(
        "<input type=\"text\" name=\"reason\" placeholder=\"{}\" required><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        t(l, "reason"),
        esc(&v.csrf)
    );
    body.push_str(&format!("<h2>{}</h2>", t(l, "dead_letters")));
    if may_act {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/console/replay\" id=\"replay-all\">{reason_field}<button type=\"submit\">{}</button></form>",
            t(l, "replay_all")
        ));
    }
    body.push_str(&format!(
        "<table id=\"dead-letters\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
        t(l, "destination"),
        t(l, "record"),
        t(l, "answer"),
        t(l, "at")
    ));
    // One more than the page holds tells whether a next page exists.
    let all =
        crate::outbox::list(&ops.store, None, true, (page + 1) * PAGE + 1).unwrap_or_default();
    let shown: Vec<&Value> = all.iter().skip(page * PAGE).take(PAGE).collect();
    for d in &shown {
        let dest = d.get("destination").and_then(Value::as_str).unwrap_or("");
        let record = d.get("record_id").and_then(Value::as_str).unwrap_or("");
        let key = d
            .get("idempotency_key")
            .and_then(Value::as_str)
            .unwrap_or("");
        let answer = format!(
            "{} {}",
            d.get("status").map(|s| s.to_string()).unwrap_or_default(),
            d.get("answer").and_then(Value::as_str).unwrap_or("")
        );
        let at = d.get("enqueued_at").and_then(Value::as_str).unwrap_or("");
        let action = if may_act {
            format!(
                "<form method=\"post\" action=\"/console/replay\" class=\"inline replay-one\"><input type=\"hidden\" name=\"key\" value=\"{}\">\
                 <input type=\"hidden\" name=\"destination\" value=\"{}\">{reason_field}<button type=\"submit\">{}</button></form>",
                esc(key),
                esc(dest),
                t(l, "replay")
            )
        } else {
            String::new()
        };
        body.push_str(&format!(
            "<tr class=\"dead-letter\"><td>{}</td><td class=\"record\">{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            esc(dest),
            esc(&v.shown(record)),
            esc(&v.shown(&answer)),
            esc(at)
        ));
    }
    body.push_str("</table>");
    if may_act {
        for d in &ops.destinations {
            body.push_str(&format!(
                "<form method=\"post\" action=\"/console/replay\" class=\"replay-destination\"><input type=\"hidden\" name=\"destination\" value=\"{}\">{reason_field}<button type=\"submit\">{}: {}</button></form>",
                esc(d),
                t(l, "replay_destination"),
                esc(d)
            ));
        }
    }
    body.push_str(&pager(
        "/console/platforms?",
        page,
        all.len() > (page + 1) * PAGE,
        l,
    ));
    layout(v, t(l, "platforms"), &body)
}

fn pager(base: &str, page: usize, more: bool, l: Lang) -> String {
    let mut s = String::from("<nav class=\"pages\">");
    if page > 0 {
        s.push_str(&format!(
            "<a href=\"{base}page={}\">{}</a>",
            page - 1,
            t(l, "previous")
        ));
    }
    if more {
        s.push_str(&format!(
            "<a href=\"{base}page={}\">{}</a>",
            page + 1,
            t(l, "next")
        ));
    }
    s.push_str("</nav>");
    s
}

/// A deadline counted past the last known calendar year, marked as the estimate it is.
fn provisional(l: Lang, deadline: String, provisional: bool) -> String {
    if provisional {
        format!("{deadline} ({})", t(l, "provisional"))
    } else {
        deadline
    }
}

/// Working days left to a deadline as a countdown cell, overdue in red.
pub(super) fn countdown_cell(
    ops: &Ops,
    l: Lang,
    deadline: Option<time::OffsetDateTime>,
    open: bool,
) -> String {
    let Some(deadline) = deadline else {
        return "<td>-</td>".into();
    };
    if !open {
        return "<td>-</td>".into();
    }
    let now = ops.clock.now();
    if crate::casework::passed(deadline, now) {
        return format!("<td class=\"bad countdown\">{}</td>", t(l, "overdue"));
    }
    // The one countdown of every case (`casework`), coloured from the desk's threshold.
    match crate::casework::Countdown::counted(deadline, now, &ops.live.calendar.current()) {
        Ok(c) => format!(
            "<td class=\"{} countdown\">{}</td>",
            if c.due_within_a_working_day() {
                "warn"
            } else {
                "ok"
            },
            c.working_days
        ),
        Err(e) => format!("<td class=\"bad countdown\">{}</td>", esc(&e.to_string())),
    }
}

/// Corrections, objections and repairs with their deadlines, overdue first: each a link to its
/// case, its state in words, China time, and for a repair the deadline of its state (the
/// publicity's end while in publicity).
pub fn deadlines(ops: &Ops, v: &Viewer) -> String {
    use super::casework::{deadline_of, state_label};
    let l = v.lang;
    let now = ops.clock.now();
    let head = format!(
        "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(l, "case"),
        t(l, "record"),
        t(l, "state"),
        t(l, "deadline"),
        t(l, "working_days_left")
    );
    let code = |v: Value| v.as_str().map(String::from).unwrap_or_default();
    let when = |d: Option<time::OffsetDateTime>, provisional_flag: bool| {
        provisional(
            l,
            d.map(china).unwrap_or_else(|| "-".into()),
            provisional_flag,
        )
    };
    let mut corrections = crate::corrections::list(&ops.store, now, None).unwrap_or_default();
    corrections.sort_by_key(|c| {
        (
            c.state != crate::corrections::State::Overdue,
            c.correction.deadline,
        )
    });
    let rows: String = corrections
        .iter()
        .map(|c| {
            let open = matches!(
                c.state,
                crate::corrections::State::Pending | crate::corrections::State::Overdue
            );
            // File destinations: when each platform took the file carrying it (issue #29).
            let picked: String = c
                .picked_up
                .iter()
                .map(|(dest, p)| {
                    format!(
                        "<br><span class=\"picked-up\">{} {}: {}</span>",
                        t(l, "picked_up"),
                        esc(&platform_name(ops, dest)),
                        p.get("at")
                            .and_then(serde_json::Value::as_str)
                            .and_then(|at| time::OffsetDateTime::parse(
                                at,
                                &time::format_description::well_known::Rfc3339
                            )
                            .ok())
                            .map(china)
                            .unwrap_or_default()
                    )
                })
                .collect();
            format!(
                "<tr class=\"correction\"><td><a href=\"/console/corrections/{id}\">{id}</a></td><td>{}</td><td class=\"state\">{}{}</td><td>{}</td>{}</tr>",
                esc(&v.shown(&c.correction.record_id)),
                state_label(l, &code(serde_json::to_value(c.state).unwrap_or_default())),
                picked,
                esc(&when(c.correction.deadline, c.correction.deadline_provisional)),
                countdown_cell(ops, l, c.correction.deadline, open),
                id = esc(&c.correction.id),
            )
        })
        .collect();
    let mut objections = crate::objections::list(&ops.store, now, None).unwrap_or_default();
    objections.sort_by_key(|o| {
        (
            o.state != crate::objections::State::Overdue,
            o.objection.review_deadline,
        )
    });
    let objections: String = objections
        .iter()
        .map(|o| {
            let records: Vec<String> = o
                .objection
                .records
                .iter()
                .map(|r| v.shown(&r.record_id))
                .collect();
            let open = matches!(
                o.state,
                crate::objections::State::UnderReview | crate::objections::State::Overdue
            );
            format!(
                "<tr class=\"objection\"><td><a href=\"/console/objections/{id}\">{id}</a></td><td>{}</td><td class=\"state\">{}</td><td>{}</td>{}</tr>",
                esc(&records.join(", ")),
                state_label(l, &code(serde_json::to_value(o.state).unwrap_or_default())),
                esc(&when(o.objection.review_deadline, o.objection.review_deadline_provisional)),
                countdown_cell(ops, l, o.objection.review_deadline, open),
                id = esc(&o.objection.id),
            )
        })
        .collect();
    let mut repairs = crate::repairs::list(&ops.store, now, None).unwrap_or_default();
    repairs.sort_by_key(|r| {
        (
            r.state != crate::repairs::State::Overdue,
            deadline_of(l, &r.repair, r.state).1,
        )
    });
    let repairs: String = repairs
        .iter()
        .map(|r| {
            let records: Vec<String> = r
                .repair
                .records
                .iter()
                .map(|x| v.shown(&x.record_id))
                .collect();
            let (label, deadline) = deadline_of(l, &r.repair, r.state);
            let open = deadline.is_some();
            let provisional_flag = if r.state == crate::repairs::State::UnderReview
                || r.state == crate::repairs::State::Overdue
            {
                r.repair.decision_deadline_provisional
            } else {
                r.repair.publicity_until_provisional
            };
            format!(
                "<tr class=\"repair\"><td><a href=\"/console/repairs/{id}\">{id}</a></td><td>{}</td><td class=\"state\">{}</td><td>{label} {}</td>{}</tr>",
                esc(&records.join(", ")),
                state_label(l, &code(serde_json::to_value(r.state).unwrap_or_default())),
                esc(&when(deadline, provisional_flag)),
                countdown_cell(ops, l, deadline, open),
                id = esc(&r.repair.id),
            )
        })
        .collect();
    layout(
        v,
        t(l, "deadlines"),
        &format!(
            "<h2>{}</h2><table id=\"corrections\">{head}{rows}</table><h2>{}</h2><table id=\"objections\">{head}{objections}</table><h2>{}</h2><table id=\"repairs\">{head}{repairs}</table>",
            t(l, "corrections"),
            t(l, "objections"),
            t(l, "repairs"),
        ),
    )
}

pub async fn search(ops: &Ops, v: &Viewer, q: &str) -> String {
    let l = v.lang;
    let q = q.trim();
    let mut body = format!(
        "<form method=\"get\" action=\"/console/search\"><input type=\"text\" name=\"q\" size=\"50\" placeholder=\"{}\" value=\"{}\"> <button type=\"submit\">{}</button></form>",
        t(l, "query"),
        esc(&v.shown(q)),
        t(l, "search")
    );
    if q.is_empty() {
        return layout(v, t(l, "search"), &body);
    }
    // A subject (`uscc:<code>`, or an identifier alone): its page first, readable.
    if let Some(key) = super::subject::key_of(ops, q) {
        body.push_str(&format!(
            "<p><a id=\"subject-link\" href=\"/console/subject?key={}\">{}</a></p>",
            esc(&key),
            t(l, "subject_page")
        ));
    }
    let found = lookup(ops, v, q).await;
    if found.is_empty() && super::subject::key_of(ops, q).is_none() {
        body.push_str(&format!("<p id=\"nothing\">{}</p>", t(l, "nothing_found")));
    }
    for (title, mut value) in found {
        // A record found: its readable page first.
        if let (Some(agency), Some(record_id)) = (
            value.get("agency").and_then(Value::as_str),
            value.get("record_id").and_then(Value::as_str),
        ) {
            body.push_str(&format!(
                "<p><a class=\"record-link\" href=\"/console/record?agency={}&id={}\">{} {}</a></p>",
                esc(agency),
                esc(record_id),
                t(l, "record"),
                esc(&v.shown(record_id))
            ));
        }
        if !v.principal.sees_full_values() {
            crate::operator::mask_value(&mut value);
        }
        body.push_str(&format!(
            "<h2>{}</h2><pre class=\"found\">{}</pre>",
            esc(&title),
            esc(&serde_json::to_string_pretty(&value).unwrap_or_default())
        ));
    }
    layout(v, t(l, "search"), &body)
}

/// What the query names: a receipt, an outbox entry (idempotency key), a record of any agency, or
/// a subject (looked up by its identifier's hash key, never listed).
async fn lookup(ops: &Ops, v: &Viewer, q: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if let Ok(Some(receipt)) = ops
        .store
        .get_json::<Value>(&crate::ingest::receipt::receipt_key(q))
    {
        out.push((format!("receipt {}", v.shown(q)), receipt));
    }
    if q.len() == 32 && q.bytes().all(|b| b.is_ascii_hexdigit()) {
        if let Ok(Some(entry)) = crate::outbox::show(&ops.store, q) {
            out.push((format!("idempotency key {}", v.shown(q)), entry));
        }
    }
    let ctx = crate::ledger::ops::OpContext {
        store: &ops.store,
        committer: &ops.committer,
        router: ops.live.router.current(),
        exceptions: &ops.exceptions,
        now: ops.clock.now(),
        by: &v.principal.name(),
    };
    let mut agencies: Vec<String> = ops.config.agencies.iter().map(|a| a.id.clone()).collect();
    agencies.push(ops.config.evaluation.agency.clone());
    agencies.push("objection".into());
    for agency in agencies {
        if let Ok(Some(_)) = ops
            .store
            .get_json::<crate::archive::RecordHead>(&crate::archive::record_head_key(&agency, q))
        {
            if let Ok(held) =
                crate::ledger::ops::record_holdings(&ctx, &agency, q, None, None).await
            {
                out.push((format!("{agency} / {}", v.shown(q)), held));
            }
        }
    }
    for id_type in [
        "uscc",
        "resident_id",
        "passport",
        "hk_macao_permit",
        "taiwan_permit",
        "foreign_permanent_resident",
    ] {
        let Some(t) = crate::subject::IdType::from_code(id_type) else {
            continue;
        };
        let Ok(id) = crate::subject::SubjectId::parse(t, q, &ops.exceptions) else {
            continue;
        };
        if let Ok(Some(archive)) = crate::archive::read_subject(&ops.store, &id) {
            out.push((
                format!("{id_type} {}", v.shown(q)),
                serde_json::to_value(&archive).unwrap_or_default(),
            ));
            if let Ok(held) =
                crate::ledger::ops::subject_holdings(&ctx, id_type, q, None, None).await
            {
                out.push(("ledger".into(), held));
            }
            break;
        }
    }
    out
}

pub fn audit(
    ops: &Ops,
    v: &Viewer,
    query: &HashMap<String, String>,
    verified: Option<Result<crate::audit::Head, crate::audit::VerifyError>>,
) -> String {
    let l = v.lang;
    let head =
        crate::audit::Head::load(&ops.store).unwrap_or_else(|_| crate::audit::Head::genesis());
    let kind = query.get("kind").cloned().unwrap_or_default();
    let from: u64 = query
        .get("from")
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| head.seq.saturating_sub(WINDOW - 1))
        .max(1);
    let mut body = format!(
        "<p>{}: <code id=\"head\">{} {}</code></p>",
        t(l, "head"),
        head.seq,
        esc(&head.hash)
    );
    match verified {
        Some(Ok(h)) => body.push_str(&format!(
            "<p class=\"ok\" id=\"verified\">{} ({} · {})</p>",
            t(l, "chain_ok"),
            h.seq,
            esc(&h.hash)
        )),
        Some(Err(e)) => body.push_str(&format!(
            "<p class=\"bad\" id=\"verified\">{}: {}</p>",
            t(l, "chain_broken"),
            esc(&e.to_string())
        )),
        None => {}
    }
    if v.principal.may(crate::operators::Need::Audit) {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/console/audit/verify\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" id=\"verify\">{}</button></form>",
            esc(&v.csrf),
            t(l, "verify")
        ));
    }
    body.push_str(&format!(
        "<form method=\"get\" action=\"/console/audit\">{}: <input type=\"text\" name=\"kind\" value=\"{}\"> <button type=\"submit\">{}</button></form>",
        t(l, "kind"),
        esc(&v.shown(&kind)),
        t(l, "filter")
    ));
    body.push_str(&format!(
        "<table id=\"audit\"><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(l, "at"),
        t(l, "kind"),
        t(l, "data")
    ));
    // One window of the chain (`WINDOW` entries from `from`), newest first, of the chosen kind;
    // or, for a case (`?case=ID`, from its page), every entry naming it in the last
    // `CASE_SCAN` entries.
    let case = query.get("case").cloned().unwrap_or_default();
    let mut shown: Vec<_> = if case.is_empty() {
        crate::audit::entries_from(&ops.store, from, WINDOW as usize)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| kind.is_empty() || e.kind == kind)
            .collect()
    } else {
        body.push_str(&format!(
            "<p id=\"case-filter\">{} <code>{}</code></p>",
            t(l, "audit_of_case"),
            esc(&case)
        ));
        entries_naming(ops, &case)
    };
    shown.reverse();
    for e in shown.iter() {
        let mut data = Value::Object(e.data.clone());
        if !v.principal.sees_full_values() {
            crate::operator::mask_value(&mut data);
        }
        body.push_str(&format!(
            "<tr class=\"entry\"><td>{}</td><td>{}</td><td class=\"kind\">{}</td><td><code>{}</code>{}</td></tr>",
            e.seq,
            esc(&e.at),
            esc(&e.kind),
            esc(&data.to_string()),
            case_links(&data)
        ));
    }
    body.push_str("</table>");
    body.push_str("<nav class=\"pages\">");
    if from > 1 {
        body.push_str(&format!(
            "<a href=\"/console/audit?from={}&kind={}\">{}</a>",
            from.saturating_sub(WINDOW).max(1),
            esc(&v.shown(&kind)),
            t(l, "previous")
        ));
    }
    if from + WINDOW <= head.seq {
        body.push_str(&format!(
            "<a href=\"/console/audit?from={}&kind={}\">{}</a>",
            from + WINDOW,
            esc(&v.shown(&kind)),
            t(l, "next")
        ));
    }
    body.push_str("</nav>");
    layout(v, t(l, "audit"), &body)
}

/// Links from an audit entry to the cases it names.
fn case_links(data: &Value) -> String {
    [
        ("objection_id", "objections"),
        ("repair_id", "repairs"),
        ("correction_id", "corrections"),
    ]
    .iter()
    .filter_map(|(field, page)| {
        data.get(*field).and_then(Value::as_str).map(|id| {
            format!(
                " <a class=\"case-link\" href=\"/console/{page}/{id}\">{id}</a>",
                id = esc(id)
            )
        })
    })
    .collect()
}

/// How far back the audit page looks for a case's entries.
const CASE_SCAN: u64 = 50_000;

/// The audit entries (of the last [`CASE_SCAN`]) whose data names `id`: the step's own entry and
/// the operator's request entry (its path names the case).
fn entries_naming(ops: &Ops, id: &str) -> Vec<crate::audit::Entry> {
    let head =
        crate::audit::Head::load(&ops.store).unwrap_or_else(|_| crate::audit::Head::genesis());
    let mut from = head.seq.saturating_sub(CASE_SCAN).max(1);
    let mut out = Vec::new();
    while from <= head.seq {
        let page = crate::audit::entries_from(&ops.store, from, 1_000).unwrap_or_default();
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        out.extend(
            page.into_iter()
                .filter(|e| e.data.values().any(|v| v.to_string().contains(id))),
        );
        from = last + 1;
    }
    out
}

/// The rules in force for a region and a day (default: every region a rule names, today): which
/// rule of which regulation governs each duty, until when, where nothing does and what the gateway
/// does then; the day's warnings; the reload (operators), with the last reload's report.
pub fn rules(
    ops: &Ops,
    v: &Viewer,
    query: &HashMap<String, String>,
    report: Option<&crate::rulebook::reload::Report>,
) -> String {
    let l = v.lang;
    let region = query
        .get("region")
        .filter(|r| !r.is_empty())
        .and_then(|r| crate::rulebook::in_force::parse_region(r).ok());
    let today = ops
        .clock
        .now()
        .to_offset(crate::calendar::CHINA_OFFSET)
        .date();
    let day = query
        .get("date")
        .and_then(|d| crate::record::parse_date(d))
        .unwrap_or(today);
    let view = crate::rulebook::in_force::view(&ops.live, &ops.rule_files, region.as_deref(), day);
    let mut body = String::new();
    if let Some(r) = report {
        let changed: Vec<&str> = r.changes.iter().map(|c| c.kind.as_str()).collect();
        if r.ok {
            body.push_str(&format!(
                "<p class=\"ok\" id=\"reload-report\">{}: {}{}</p>",
                t(l, "reloaded"),
                if changed.is_empty() {
                    t(l, "nothing_changed").to_string()
                } else {
                    esc(&changed.join(", "))
                },
                if r.restart_needed.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {}: {}",
                        t(l, "restart_needed"),
                        esc(&r.restart_needed.join(", "))
                    )
                }
            ));
        } else {
            let errors: String = r
                .errors
                .iter()
                .map(|e| format!("<li>{}</li>", esc(&e.to_string())))
                .collect();
            body.push_str(&format!(
                "<div class=\"error\" id=\"reload-report\"><p>{}</p><ul>{errors}</ul></div>",
                t(l, "reload_refused")
            ));
        }
    }
    body.push_str(&format!(
        "<form method=\"get\" action=\"/console/rules\"><label for=\"region\">{}</label> \
         <input type=\"text\" id=\"region\" name=\"region\" value=\"{}\" size=\"8\"> \
         <label for=\"date\">{}</label> <input type=\"date\" id=\"date\" name=\"date\" value=\"{day}\"> \
         <button type=\"submit\">{}</button></form>",
        t(l, "region"),
        esc(region.as_deref().unwrap_or("")),
        t(l, "date"),
        t(l, "show"),
    ));
    if v.principal.may(crate::operators::Need::Act) {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/console/rules/reload\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\" id=\"reload\">{}</button> <span class=\"hint\">{}</span></form>",
            esc(&v.csrf),
            t(l, "reload_rules"),
            t(l, "reload_hint"),
        ));
    }
    for answer in view["regions"].as_array().into_iter().flatten() {
        let place = answer["region"].as_str().unwrap_or_default();
        let place = if place.is_empty() {
            t(l, "elsewhere").to_string()
        } else {
            format!("{} {}", t(l, "region"), esc(place))
        };
        let rows: String = answer["duties"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                let status = d["status"].as_str().unwrap_or_default();
                let class = match status {
                    "in_force" => "rule-ok",
                    "successor_pending" => "rule-pending",
                    _ => "rule-gap",
                };
                let text = |k: &str| esc(d[k].as_str().unwrap_or_default());
                format!(
                    "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    t(l, &format!("duty_{}", d["duty"].as_str().unwrap_or_default())),
                    text("scope"),
                    t(l, status),
                    esc(d["rule"].as_str().or(d["ended"].as_str()).unwrap_or("")),
                    text("source"),
                    d["until"].as_str().map(esc).unwrap_or_else(|| t(l, "no_end").to_string()),
                    d["days_left"].as_i64().map(|n| n.to_string()).unwrap_or_default(),
                    esc(&format!("{} {}", d["file"].as_str().unwrap_or_default(), d["gap_policy"].as_str().unwrap_or_default())),
                )
            })
            .collect();
        body.push_str(&format!(
            "<h2>{place}</h2><table class=\"rules\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{rows}</tbody></table>",
            t(l, "duty"),
            t(l, "scope"),
            t(l, "state"),
            t(l, "rule"),
            t(l, "source"),
            t(l, "until"),
            t(l, "days_left"),
            t(l, "file_and_gap"),
        ));
    }
    let hashes: String = view["hashes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, h)| {
            format!(
                "<li>{}: <code>{}</code></li>",
                esc(k),
                esc(h.as_str().unwrap_or_default())
            )
        })
        .collect();
    body.push_str(&format!("<h2>{}</h2><ul>{hashes}</ul>", t(l, "hashes")));
    layout(v, t(l, "rules_in_force"), &body)
}
