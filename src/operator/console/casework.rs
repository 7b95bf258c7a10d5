//! The bureau's desk (issue #27): objections, repairs and corrections as lists per state with
//! working-day countdowns (overdue first) and case pages with the record, the history, the
//! documents' references and every step the flow allows as a form.
//!
//! Which steps a case allows comes from the domain (`objections::casework::allowed`,
//! `repairs::casework::allowed`), never from here; which role may take a step follows the
//! regulations' split of duties: `operator` does the department's casework (经办), `reviewer` the
//! level above's review (复核, GD Art. 34), `auditor` and `viewer` only read. The console acts for
//! the medical-insurance department (the first of `corrections.medical_insurance_agencies`): the
//! department that provided its own records and the one that computes evaluation results (LS Art.
//! 21). Cases about another agency's records are shown, and that agency acts through its API.
//!
//! Never does: change state except through the domain's steps (each written and audited by the
//! writer) and the operator's request entry (`audit_request`, with the operator's name and role).

use std::collections::HashMap;

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::i18n::{t, Lang};
use super::pages::{china, countdown_cell, layout};
use super::{esc, Viewer};
use crate::objections::casework::{self as objection_case, Duty};
use crate::operator::Ops;
use crate::operators::Need;
use crate::repairs::casework::{self as repair_case};

/// A step's answer: the status and the page to show (a redirect to the case on success).
pub enum Outcome {
    Done(String),
    Refused(StatusCode, String),
}

impl Outcome {
    pub fn status(&self) -> StatusCode {
        match self {
            Outcome::Done(_) => StatusCode::SEE_OTHER,
            Outcome::Refused(s, _) => *s,
        }
    }

    /// The operator's request enters the audit chain with its answer (the step itself is
    /// audited by its domain).
    pub async fn audited(self, ops: &Ops, v: &Viewer, path: &str) -> (StatusCode, Outcome) {
        let status = self.status();
        crate::operator::audit_request(ops, &v.principal, &Method::POST, path, status.as_u16())
            .await;
        (status, self)
    }
}

/// The agency the console acts for.
fn desk_agency(ops: &Ops) -> Option<&str> {
    ops.config
        .corrections
        .medical_insurance_agencies
        .first()
        .map(String::as_str)
}

/// A state code in the operator's language.
pub fn state_label(l: Lang, code: &str) -> String {
    let (zh, en) = match code {
        "filed_late" => ("逾期提出", "filed late"),
        "under_review" => ("审核中", "under review"),
        "overdue" => ("已逾期", "overdue"),
        "upheld" => ("异议成立", "upheld"),
        "rejected" => ("异议不成立", "rejected"),
        "refused" => ("不予修复", "refused"),
        "in_publicity" => ("公示中", "in publicity"),
        "suspended" => ("公示中止（有异议）", "suspended (objection open)"),
        "completed" => ("已修复", "completed"),
        "pending" => ("待送达", "pending"),
        "delivered_on_time" => ("按期送达", "delivered on time"),
        "delivered_late" => ("逾期送达", "delivered late"),
        "no_platform" => ("无平台持有，无需送达", "no platform to tell"),
        "delivered" => ("已送达", "delivered"),
        other => return esc(other),
    };
    match l {
        Lang::Zh => zh.into(),
        Lang::En => en.into(),
    }
}

fn code_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn state_tabs(l: Lang, base: &str, states: &[&str], current: Option<&str>) -> String {
    let mut out = format!(
        "<nav class=\"pages states\"><a href=\"{base}\"{}>{}</a>",
        if current.is_none() {
            " class=\"on\""
        } else {
            ""
        },
        t(l, "all")
    );
    for s in states {
        out.push_str(&format!(
            "<a href=\"{base}?state={s}\"{}>{}</a>",
            if current == Some(*s) {
                " class=\"on\""
            } else {
                ""
            },
            state_label(l, s)
        ));
    }
    out.push_str("</nav>");
    out
}

fn records_cell(v: &Viewer, records: &[crate::objections::RecordRef]) -> String {
    records
        .iter()
        .map(|r| {
            format!(
                "<a href=\"/console/record?agency={}&id={}\">{}</a>",
                esc(&r.agency),
                esc(&r.record_id),
                esc(&v.shown(&r.record_id))
            )
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

/// `/console/objections[?state=S]`.
pub fn objections(ops: &Ops, v: &Viewer, query: &HashMap<String, String>) -> String {
    let l = v.lang;
    let now = ops.clock.now();
    let state = query
        .get("state")
        .and_then(|s| crate::objections::State::parse(s));
    // A store that cannot be read is said so, never shown as an empty list.
    let mut listed = match crate::objections::list(&ops.store, now, state) {
        Ok(listed) => listed,
        Err(_) => return unreadable(v, t(l, "objections")),
    };
    // Overdue first, then the nearest deadline.
    listed.sort_by_key(|o| {
        (
            o.state != crate::objections::State::Overdue,
            o.objection.review_deadline.is_none(),
            o.objection.review_deadline,
        )
    });
    let mut body = state_tabs(
        l,
        "/console/objections",
        &[
            "filed_late",
            "under_review",
            "overdue",
            "upheld",
            "rejected",
        ],
        query.get("state").map(String::as_str),
    );
    body.push_str(&format!(
        "<table id=\"objections\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(l, "case"), t(l, "record"), t(l, "level"), t(l, "state"), t(l, "deadline"), t(l, "working_days_left")
    ));
    for o in &listed {
        let open = matches!(
            o.state,
            crate::objections::State::UnderReview | crate::objections::State::Overdue
        );
        body.push_str(&format!(
            "<tr class=\"objection\"><td><a href=\"/console/objections/{id}\">{id}</a></td><td>{}</td><td>{}</td><td class=\"state\">{}</td><td>{}</td>{}</tr>",
            records_cell(v, &o.objection.records),
            level_label(l, o.objection.level),
            state_label(l, &code_of(&o.state)),
            o.objection.review_deadline.map(china).unwrap_or_else(|| "-".into()),
            countdown_cell(ops, l, o.objection.review_deadline, open),
            id = esc(&o.objection.id),
        ));
    }
    body.push_str("</table>");
    if listed.is_empty() {
        body.push_str(&format!("<p id=\"nothing\">{}</p>", t(l, "nothing_found")));
    }
    layout(v, t(l, "objections"), &body)
}

/// A list page whose store could not be read.
fn unreadable(v: &Viewer, title: &str) -> String {
    layout(
        v,
        title,
        &format!(
            "<p class=\"bad\" id=\"unreadable\">{}</p>",
            t(v.lang, "storage_busy")
        ),
    )
}

fn level_label(l: Lang, level: u8) -> &'static str {
    if level >= 2 {
        t(l, "level_review")
    } else {
        t(l, "level_first")
    }
}

fn ground_label(l: Lang, g: crate::objections::Ground) -> &'static str {
    use crate::objections::Ground::*;
    match g {
        ErrorOrOmission => t(l, "ground_error"),
        SecretOrPrivacy => t(l, "ground_privacy"),
        PastDisclosurePeriod => t(l, "ground_past"),
        OtherwiseUnlawful => t(l, "ground_other"),
    }
}

fn row(label: &str, value: &str) -> String {
    format!("<tr><th>{label}</th><td>{value}</td></tr>")
}

fn reason_field(l: Lang) -> String {
    format!(
        "<label>{} <input type=\"text\" name=\"reason\" size=\"60\"></label>",
        t(l, "reason")
    )
}

fn form(v: &Viewer, class: &str, action: &str, fields: &str, button: &str) -> String {
    format!(
        "<form method=\"post\" class=\"{class}\" action=\"{action}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{fields} <button type=\"submit\">{button}</button></form>",
        esc(&v.csrf)
    )
}

fn need_of(duty: Duty) -> Need {
    match duty {
        Duty::Casework => Need::Act,
        Duty::Review => Need::Review,
    }
}

/// `/console/objections/{id}`.
pub fn objection(ops: &Ops, v: &Viewer, id: &str, notice: Option<&str>) -> Option<String> {
    let l = v.lang;
    let now = ops.clock.now();
    let o = crate::objections::get(&ops.store, id).ok().flatten()?;
    let state = o.state(now);
    let open = matches!(
        state,
        crate::objections::State::UnderReview | crate::objections::State::Overdue
    );
    let mut body = notice_html(notice);
    body.push_str("<table class=\"case\" id=\"case\">");
    body.push_str(&row(t(l, "case"), &esc(&o.id)));
    body.push_str(&row(
        t(l, "state"),
        &format!(
            "<span id=\"state\" data-code=\"{}\">{}</span>",
            code_of(&state),
            state_label(l, &code_of(&state))
        ),
    ));
    body.push_str(&row(t(l, "level"), level_label(l, o.level)));
    body.push_str(&row(t(l, "ground"), ground_label(l, o.ground)));
    body.push_str(&row(t(l, "materials"), &esc(&v.shown(&o.materials))));
    body.push_str(&row(t(l, "filed_by"), &esc(&o.filed_by)));
    body.push_str(&row(t(l, "filed_at"), &china(o.filed_at)));
    if let Some(d) = o.filing_deadline {
        body.push_str(&row(t(l, "filing_deadline"), &china(d)));
    }
    if let Some(d) = o.review_deadline {
        body.push_str(&row(
            t(l, "review_deadline"),
            &format!(
                "{}{} · {}",
                china(d),
                if o.review_deadline_provisional {
                    format!(" ({})", t(l, "provisional"))
                } else {
                    String::new()
                },
                esc(&o.review_rule)
            ),
        ));
        body.push_str(&format!(
            "<tr><th>{}</th>{}</tr>",
            t(l, "working_days_left"),
            countdown_cell(ops, l, Some(d), open)
        ));
    }
    body.push_str("</table>");
    body.push_str(&format!("<h2>{}</h2>", t(l, "records")));
    body.push_str(&record_table(ops, v, &o.records));
    body.push_str(&format!(
        "<h2>{}</h2><table id=\"history\">",
        t(l, "history")
    ));
    body.push_str(&format!(
        "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(l, "at"),
        t(l, "step"),
        t(l, "by"),
        t(l, "reason")
    ));
    body.push_str(&format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        china(o.received_at),
        t(l, "step_filed"),
        esc(&o.filed_by),
        ground_label(l, o.ground)
    ));
    if let Some(a) = &o.late_accepted {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            china(a.at),
            t(l, "accept_late"),
            esc(&a.by),
            esc(&a.reason)
        ));
    }
    for r in &o.resolutions {
        let what = match (r.outcome, r.action) {
            (crate::objections::Outcome::Rejected, _) => t(l, "resolve_reject"),
            (_, Some(crate::objections::Action::Eliminate)) => t(l, "resolve_eliminate"),
            _ => t(l, "resolve_correct"),
        };
        let correction = r
            .correction_id
            .as_ref()
            .map(|c| format!(" · <a href=\"/console/corrections/{c}\">{}</a>", esc(c)))
            .unwrap_or_default();
        body.push_str(&format!(
            "<tr class=\"resolution\"><td>{}</td><td>{} ({}){correction}</td><td>{}</td><td>{}</td></tr>",
            china(r.at),
            what,
            level_label(l, r.level),
            esc(&r.by),
            esc(&r.reason)
        ));
    }
    body.push_str("</table>");
    body.push_str(&format!(
        "<p><a id=\"audit-link\" href=\"/console/audit?case={}\">{}</a></p>",
        esc(&o.id),
        t(l, "audit_of_case")
    ));
    // The steps the flow allows now, for the role that may take them.
    let mut forms = String::new();
    let mut held_back = false;
    for (step, duty) in objection_case::allowed(&o, now) {
        if !v.principal.may(need_of(duty)) {
            held_back = true;
            continue;
        }
        let action = format!("/console/objections/{}/{}", esc(&o.id), step.code());
        forms.push_str(&match step {
            objection_case::Step::AcceptLate => form(
                v,
                "accept-late",
                &action,
                &reason_field(l),
                t(l, "accept_late"),
            ),
            objection_case::Step::OpenReview => form(
                v,
                "open-review",
                &action,
                &reason_field(l),
                t(l, "open_review"),
            ),
            objection_case::Step::Resolve => {
                let records: String = o
                    .records
                    .iter()
                    .map(|r| {
                        format!(
                            "<option value=\"{a}/{id}\">{a} / {}</option>",
                            esc(&v.shown(&r.record_id)),
                            a = esc(&r.agency),
                            id = esc(&r.record_id)
                        )
                    })
                    .collect();
                form(
                    v,
                    "resolve",
                    &action,
                    &format!(
                        "<fieldset><label><input type=\"radio\" name=\"outcome\" value=\"reject\"> {}</label> \
                         <label><input type=\"radio\" name=\"outcome\" value=\"eliminate\"> {}</label> \
                         <label><input type=\"radio\" name=\"outcome\" value=\"correct\"> {}</label></fieldset>\
                         <fieldset class=\"correction\"><legend>{}</legend><label>{} <select name=\"record\">{records}</select></label> \
                         <label>{} <select name=\"kind\"><option value=\"invalidate\">{}</option><option value=\"correct\">{}</option><option value=\"change\">{}</option></select></label><br>\
                         <label>{}<br><textarea name=\"content\" rows=\"3\" cols=\"60\" placeholder=\"fine_yuan=10000\"></textarea></label></fieldset>{}",
                        t(l, "resolve_reject"),
                        t(l, "resolve_eliminate"),
                        t(l, "resolve_correct"),
                        t(l, "correction_if_correct"),
                        t(l, "record"),
                        t(l, "correction_kind"),
                        t(l, "kind_invalidate"),
                        t(l, "kind_correct"),
                        t(l, "kind_change"),
                        t(l, "content_lines"),
                        reason_field(l)
                    ),
                    t(l, "resolve"),
                )
            }
        });
    }
    actions_section(l, &mut body, &forms, held_back);
    Some(layout(v, &format!("{} {}", t(l, "objection"), o.id), &body))
}

fn actions_section(l: Lang, body: &mut String, forms: &str, held_back: bool) {
    body.push_str(&format!("<h2>{}</h2><div id=\"actions\">", t(l, "actions")));
    if !forms.is_empty() {
        body.push_str(forms);
    } else if held_back {
        body.push_str(&format!(
            "<p id=\"no-actions\">{}</p>",
            t(l, "role_no_steps")
        ));
    } else {
        body.push_str(&format!("<p id=\"no-actions\">{}</p>", t(l, "no_steps")));
    }
    body.push_str("</div>");
}

fn notice_html(notice: Option<&str>) -> String {
    notice
        .map(|n| format!("<p class=\"ok\" id=\"done\">{}</p>", esc(n)))
        .unwrap_or_default()
}

/// The records a case is about: where each is published now (the ledger), and its subject.
fn record_table(ops: &Ops, v: &Viewer, records: &[crate::objections::RecordRef]) -> String {
    let l = v.lang;
    let mut out = format!(
        "<table id=\"records\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(l, "agency"),
        t(l, "record"),
        t(l, "marks"),
        t(l, "subject")
    );
    for r in records {
        let head = ops
            .store
            .get_json::<crate::archive::RecordHead>(&crate::archive::record_head_key(
                &r.agency,
                &r.record_id,
            ))
            .ok()
            .flatten();
        let marks = head
            .as_ref()
            .map(|h| marks_text(l, &h.marks))
            .unwrap_or_default();
        let subject = head
            .as_ref()
            .map(|h| {
                format!(
                    "<a class=\"subject-link\" href=\"/console/subject?key={}\">{}</a>",
                    esc(&h.subject),
                    t(l, "subject_page")
                )
            })
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "<tr><td>{}</td><td><a href=\"/console/record?agency={a}&id={id}\">{}</a></td><td>{marks}</td><td>{subject}</td></tr>",
            esc(&r.agency),
            esc(&v.shown(&r.record_id)),
            a = esc(&r.agency),
            id = esc(&r.record_id),
        ));
    }
    out.push_str("</table>");
    out
}

pub fn marks_text(l: Lang, marks: &[crate::archive::Mark]) -> String {
    marks
        .iter()
        .map(|m| {
            let kind = match code_of(&m.kind).as_str() {
                "objection" => t(l, "mark_objection"),
                "repaired" => t(l, "mark_repaired"),
                "eliminated" => t(l, "mark_eliminated"),
                _ => t(l, "mark_other"),
            };
            format!("<span class=\"mark\">{kind}</span>")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `/console/repairs[?state=S]`.
pub fn repairs(ops: &Ops, v: &Viewer, query: &HashMap<String, String>) -> String {
    let l = v.lang;
    let now = ops.clock.now();
    let state = query
        .get("state")
        .and_then(|s| crate::repairs::State::parse(s));
    // A store that cannot be read is said so, never shown as an empty list.
    let mut listed = match crate::repairs::list(&ops.store, now, state) {
        Ok(listed) => listed,
        Err(_) => return unreadable(v, t(l, "repairs")),
    };
    listed.sort_by_key(|r| {
        (
            r.state != crate::repairs::State::Overdue,
            current_deadline(&r.repair),
        )
    });
    let mut body = state_tabs(
        l,
        "/console/repairs",
        &[
            "under_review",
            "overdue",
            "in_publicity",
            "suspended",
            "completed",
            "refused",
        ],
        query.get("state").map(String::as_str),
    );
    body.push_str(&format!(
        "<table id=\"repairs\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(l, "case"),
        t(l, "record"),
        t(l, "state"),
        t(l, "deadline"),
        t(l, "working_days_left")
    ));
    for r in &listed {
        let (label, deadline) = deadline_of(l, &r.repair, r.state);
        let open = matches!(
            r.state,
            crate::repairs::State::UnderReview
                | crate::repairs::State::Overdue
                | crate::repairs::State::InPublicity
        );
        body.push_str(&format!(
            "<tr class=\"repair\"><td><a href=\"/console/repairs/{id}\">{id}</a></td><td>{}</td><td class=\"state\">{}</td><td>{label} {}</td>{}</tr>",
            records_cell(v, &r.repair.records),
            state_label(l, &code_of(&r.state)),
            deadline.map(china).unwrap_or_else(|| "-".into()),
            countdown_cell(ops, l, deadline, open),
            id = esc(&r.repair.id),
        ));
    }
    body.push_str("</table>");
    if listed.is_empty() {
        body.push_str(&format!("<p id=\"nothing\">{}</p>", t(l, "nothing_found")));
    }
    layout(v, t(l, "repairs"), &body)
}

fn current_deadline(r: &crate::repairs::Repair) -> Option<time::OffsetDateTime> {
    match r.status {
        crate::repairs::Status::UnderReview => Some(r.decision_deadline),
        crate::repairs::Status::InPublicity => r.publicity_until,
        _ => None,
    }
}

/// A repair's deadline that matters in its state: the decision while under review, the end of
/// the publicity while in publicity (not its old decision deadline).
pub fn deadline_of(
    l: Lang,
    r: &crate::repairs::Repair,
    state: crate::repairs::State,
) -> (&'static str, Option<time::OffsetDateTime>) {
    use crate::repairs::State::*;
    match state {
        UnderReview | Overdue => (t(l, "decision_by"), Some(r.decision_deadline)),
        InPublicity | Suspended => (t(l, "publicity_until"), r.publicity_until),
        Completed | Refused => ("", None),
    }
}

/// `/console/repairs/{id}`.
pub fn repair(ops: &Ops, v: &Viewer, id: &str, notice: Option<&str>) -> Option<String> {
    let l = v.lang;
    let now = ops.clock.now();
    let r = crate::repairs::get(&ops.store, id).ok().flatten()?;
    let objection_open = r.status == crate::repairs::Status::InPublicity
        && crate::repairs::objection_open(&ops.store, &r).unwrap_or(false);
    let state = r.state(now, objection_open);
    let mut body = notice_html(notice);
    body.push_str("<table class=\"case\" id=\"case\">");
    body.push_str(&row(t(l, "case"), &esc(&r.id)));
    body.push_str(&row(
        t(l, "state"),
        &format!(
            "<span id=\"state\" data-code=\"{}\">{}</span>",
            code_of(&state),
            state_label(l, &code_of(&state))
        ),
    ));
    body.push_str(&row(t(l, "materials"), &esc(&v.shown(&r.materials))));
    body.push_str(&row(t(l, "commitment"), &esc(&v.shown(&r.commitment))));
    body.push_str(&row(t(l, "filed_by"), &esc(&r.applied_by)));
    body.push_str(&row(t(l, "accepted_at"), &china(r.accepted_at)));
    let (label, deadline) = deadline_of(l, &r, state);
    if let Some(d) = deadline {
        body.push_str(&row(label, &china(d)));
        body.push_str(&format!(
            "<tr><th>{}</th>{}</tr>",
            t(l, "working_days_left"),
            countdown_cell(ops, l, Some(d), true)
        ));
    }
    if let Some(e) = &r.extension_reason {
        body.push_str(&row(t(l, "extended"), &esc(e)));
    }
    body.push_str("</table>");
    body.push_str(&format!("<h2>{}</h2>", t(l, "records")));
    body.push_str(&record_table(ops, v, &r.records));
    body.push_str(&format!(
        "<h2>{}</h2><table id=\"history\">",
        t(l, "history")
    ));
    body.push_str(&format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td></td></tr>",
        china(r.accepted_at),
        t(l, "step_applied"),
        esc(&r.applied_by)
    ));
    if let Some(d) = &r.decision {
        body.push_str(&format!(
            "<tr class=\"decision\"><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
            china(d.at),
            if d.approved {
                t(l, "approve")
            } else {
                t(l, "refuse")
            },
            if d.false_materials {
                format!(" · {}", t(l, "false_materials"))
            } else {
                String::new()
            },
            esc(&d.by),
            esc(&d.reason)
        ));
    }
    if let Some(at) = r.completed_at {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td></td><td></td></tr>",
            china(at),
            t(l, "step_completed")
        ));
    }
    if let Some(b) = &r.commitment_broken {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            china(b.at),
            t(l, "commitment_broken"),
            esc(&b.by),
            esc(&b.reason)
        ));
    }
    body.push_str("</table>");
    body.push_str(&format!(
        "<p><a id=\"audit-link\" href=\"/console/audit?case={}\">{}</a></p>",
        esc(&r.id),
        t(l, "audit_of_case")
    ));
    let mut forms = String::new();
    let mut held_back = false;
    for step in repair_case::allowed(&r, now, objection_open) {
        if !v.principal.may(Need::Act) {
            held_back = true;
            continue;
        }
        let action = format!("/console/repairs/{}/{}", esc(&r.id), step.code());
        forms.push_str(&match step {
            repair_case::Step::Decide => form(
                v,
                "decide",
                &action,
                &format!(
                    "<fieldset><label><input type=\"radio\" name=\"decision\" value=\"approve\"> {}</label> \
                     <label><input type=\"radio\" name=\"decision\" value=\"refuse\"> {}</label> \
                     <label><input type=\"radio\" name=\"decision\" value=\"false_materials\"> {}</label></fieldset>{}",
                    t(l, "approve"),
                    t(l, "refuse"),
                    t(l, "false_materials"),
                    reason_field(l)
                ),
                t(l, "decide"),
            ),
            repair_case::Step::Extend => {
                form(v, "extend", &action, &reason_field(l), t(l, "extend"))
            }
            repair_case::Step::Complete => form(v, "complete", &action, "", t(l, "complete")),
            repair_case::Step::CommitmentBroken => form(
                v,
                "commitment-broken",
                &action,
                &format!(
                    "{} <label>{} <input type=\"text\" name=\"found_on\" placeholder=\"2026-01-31\" size=\"12\"></label>",
                    reason_field(l),
                    t(l, "found_on")
                ),
                t(l, "commitment_broken"),
            ),
        });
    }
    actions_section(l, &mut body, &forms, held_back);
    Some(layout(v, &format!("{} {}", t(l, "repair"), r.id), &body))
}

/// `/console/corrections[?state=S]`.
pub fn corrections(ops: &Ops, v: &Viewer, query: &HashMap<String, String>) -> String {
    let l = v.lang;
    let now = ops.clock.now();
    let state = query
        .get("state")
        .and_then(|s| crate::corrections::State::parse(s));
    // A store that cannot be read is said so, never shown as an empty list.
    let mut listed = match crate::corrections::list(&ops.store, now, state) {
        Ok(listed) => listed,
        Err(_) => return unreadable(v, t(l, "corrections")),
    };
    listed.sort_by_key(|c| {
        (
            c.state != crate::corrections::State::Overdue,
            c.correction.deadline,
        )
    });
    let mut body = state_tabs(
        l,
        "/console/corrections",
        &[
            "pending",
            "overdue",
            "delivered_on_time",
            "delivered_late",
            "delivered",
            "no_platform",
        ],
        query.get("state").map(String::as_str),
    );
    body.push_str(&format!(
        "<table id=\"corrections\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(l, "case"),
        t(l, "record"),
        t(l, "state"),
        t(l, "deadline"),
        t(l, "working_days_left")
    ));
    for c in &listed {
        let open = matches!(
            c.state,
            crate::corrections::State::Pending | crate::corrections::State::Overdue
        );
        body.push_str(&format!(
            "<tr class=\"correction\"><td><a href=\"/console/corrections/{id}\">{id}</a></td><td>{}</td><td class=\"state\">{}</td><td>{}</td>{}</tr>",
            records_cell(
                v,
                &[crate::objections::RecordRef {
                    agency: c.correction.agency.clone(),
                    record_id: c.correction.record_id.clone()
                }]
            ),
            state_label(l, &code_of(&c.state)),
            c.correction.deadline.map(china).unwrap_or_else(|| "-".into()),
            countdown_cell(ops, l, c.correction.deadline, open),
            id = esc(&c.correction.id),
        ));
    }
    body.push_str("</table>");
    if listed.is_empty() {
        body.push_str(&format!("<p id=\"nothing\">{}</p>", t(l, "nothing_found")));
    }
    layout(v, t(l, "corrections"), &body)
}

/// `/console/corrections/{id}`: a correction and, per platform, when it was told.
pub fn correction(ops: &Ops, v: &Viewer, id: &str) -> Option<String> {
    let l = v.lang;
    let now = ops.clock.now();
    let c = ops
        .store
        .get_json::<crate::corrections::Correction>(&crate::corrections::correction_key(id))
        .ok()
        .flatten()?;
    let status = crate::corrections::status_of(&ops.store, c, now).ok()?;
    let c = &status.correction;
    let open = matches!(
        status.state,
        crate::corrections::State::Pending | crate::corrections::State::Overdue
    );
    let mut body = String::from("<table class=\"case\" id=\"case\">");
    body.push_str(&row(t(l, "case"), &esc(&c.id)));
    body.push_str(&row(
        t(l, "state"),
        &format!(
            "<span id=\"state\" data-code=\"{}\">{}</span>",
            code_of(&status.state),
            state_label(l, &code_of(&status.state))
        ),
    ));
    body.push_str(&row(t(l, "correction_kind"), &esc(&code_of(&c.kind))));
    body.push_str(&row(t(l, "filed_by"), &esc(&c.requested_by)));
    body.push_str(&row(t(l, "reason"), &esc(&v.shown(&c.reason))));
    if let Some(d) = c.deadline {
        body.push_str(&row(t(l, "deadline"), &china(d)));
        body.push_str(&format!(
            "<tr><th>{}</th>{}</tr>",
            t(l, "working_days_left"),
            countdown_cell(ops, l, Some(d), open)
        ));
    }
    body.push_str("</table>");
    body.push_str(&format!("<h2>{}</h2>", t(l, "records")));
    body.push_str(&record_table(
        ops,
        v,
        &[crate::objections::RecordRef {
            agency: c.agency.clone(),
            record_id: c.record_id.clone(),
        }],
    ));
    body.push_str(&format!(
        "<h2>{}</h2><table id=\"told\"><tr><th>{}</th><th>{}</th></tr>",
        t(l, "platforms_told"),
        t(l, "platform"),
        t(l, "at")
    ));
    for d in &c.destinations {
        let at = status
            .delivered
            .get(d)
            .and_then(Value::as_str)
            .and_then(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(china)
            .unwrap_or_else(|| t(l, "not_yet").into());
        body.push_str(&format!(
            "<tr><td>{}</td><td>{at}</td></tr>",
            esc(&super::pages::platform_name(ops, d))
        ));
    }
    body.push_str("</table>");
    body.push_str(&format!(
        "<p><a id=\"audit-link\" href=\"/console/audit?case={}\">{}</a></p>",
        esc(&c.id),
        t(l, "audit_of_case")
    ));
    Some(layout(
        v,
        &format!("{} {}", t(l, "correction"), c.id),
        &body,
    ))
}

/// A posted step on an objection or a repair: `/console/{objections|repairs}/{id}/{step}`.
pub async fn act(
    ops: &Ops,
    v: &Viewer,
    path: &str,
    form: &HashMap<String, String>,
) -> Option<(StatusCode, Outcome)> {
    let rest = path.strip_prefix("/console/")?;
    let mut parts = rest.splitn(3, '/');
    let (domain, id, step) = (parts.next()?, parts.next()?, parts.next()?);
    let outcome = match domain {
        "objections" => objection_step(ops, v, id, step, form).await,
        "repairs" => repair_step(ops, v, id, step, form).await,
        _ => return None,
    };
    Some(outcome.audited(ops, v, path).await)
}

fn refused(status: StatusCode, message: impl Into<String>) -> Outcome {
    Outcome::Refused(status, message.into())
}

/// A domain's own refusal, whose detail is written once, in English, for the API and the CLI:
/// led by the words of its stable code in the operator's language and followed by each field's
/// problem (a correction's `problems`), so a Chinese page never shows a bare English sentence
/// and always says which field to fix.
fn domain_refusal(l: Lang, e: &dyn crate::answer::Answer) -> Outcome {
    let mut message = format!("{}{}", t(l, &format!("refused_{}", e.code())), e.message());
    let details = e.details();
    for problem in details
        .get("problems")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let field = problem["field"].as_str().unwrap_or_default();
        let reason = problem["reason"].as_str().unwrap_or_default();
        message.push_str(&format!("; {field}: {reason}"));
    }
    refused(StatusCode::UNPROCESSABLE_ENTITY, message)
}

fn reason(form: &HashMap<String, String>) -> String {
    form.get("reason")
        .map(|r| r.trim().to_string())
        .unwrap_or_default()
}

fn objection_ctx(ops: &Ops) -> crate::objections::flow::Context<'_> {
    crate::objections::flow::Context {
        store: &ops.store,
        committer: &ops.committer,
        router: ops.live.router.current(),
        calendar: ops.live.calendar.current(),
        rules: ops.live.objections.current(),
        exceptions: &ops.exceptions,
        destinations: &ops.config.destinations,
        now: ops.clock.now(),
    }
}

fn objection_refusal(l: Lang, e: &crate::objections::flow::ObjectionError) -> Outcome {
    use crate::objections::flow::ObjectionError as E;
    match e {
        E::NotFound(_) => refused(StatusCode::NOT_FOUND, t(l, "not_found")),
        E::WrongState(s) => refused(
            StatusCode::CONFLICT,
            format!("{}{}", t(l, "wrong_state"), state_label(l, &code_of(s))),
        ),
        E::NotAllowed(m) => refused(StatusCode::FORBIDDEN, format!("{}{m}", t(l, "not_yours"))),
        E::Storage(_) => refused(StatusCode::SERVICE_UNAVAILABLE, t(l, "storage_busy")),
        other => domain_refusal(l, other),
    }
}

async fn objection_step(
    ops: &Ops,
    v: &Viewer,
    id: &str,
    step: &str,
    form: &HashMap<String, String>,
) -> Outcome {
    let l = v.lang;
    let ctx = objection_ctx(ops);
    let Some(objection) = crate::objections::get(&ops.store, id).ok().flatten() else {
        return refused(StatusCode::NOT_FOUND, t(l, "not_found"));
    };
    // The step must be one the flow allows now, and the operator's role the one it needs.
    let allowed = objection_case::allowed(&objection, ctx.now);
    let Some((step, duty)) = allowed.iter().copied().find(|(s, _)| s.code() == step) else {
        let state = objection.state(ctx.now);
        return refused(
            StatusCode::CONFLICT,
            format!(
                "{}{}",
                t(l, "wrong_state"),
                state_label(l, &code_of(&state))
            ),
        );
    };
    if !v.principal.may(need_of(duty)) {
        return refused(StatusCode::FORBIDDEN, t(l, "role_may_not_step"));
    }
    let reason = reason(form);
    if reason.is_empty() {
        return refused(StatusCode::BAD_REQUEST, t(l, "reason_required"));
    }
    let Some(agency) = desk_agency(ops) else {
        return refused(StatusCode::CONFLICT, t(l, "no_desk_agency"));
    };
    let by = v.principal.name();
    let done = match step {
        objection_case::Step::AcceptLate => {
            crate::objections::flow::accept_late(&ctx, id, &by, &reason)
                .await
                .map(|_| ())
        }
        objection_case::Step::OpenReview => crate::objections::flow::review(&ctx, id, &reason)
            .await
            .map(|_| ()),
        objection_case::Step::Resolve => {
            let request = match resolve_request(l, form, reason) {
                Ok(r) => r,
                Err(message) => return refused(StatusCode::BAD_REQUEST, message),
            };
            let resolver = objection_case::Resolver {
                destinations: &ops.config.destinations,
                medical_insurance_agencies: &ops.config.corrections.medical_insurance_agencies,
                evaluation_agency: &ops.config.evaluation.agency,
                working_days: ops.config.corrections.working_days,
            };
            match objection_case::resolve(&ctx, &resolver, agency, true, id, &request).await {
                Ok(_) => Ok(()),
                Err(objection_case::ResolveError::Objection(e)) => Err(e),
                // The correction's own refusal, with its words and its fields.
                Err(objection_case::ResolveError::Correction(e)) => return domain_refusal(l, &e),
                Err(e @ objection_case::ResolveError::CorrectionUnreadable(_)) => {
                    return domain_refusal(l, &e)
                }
                Err(objection_case::ResolveError::Storage(_)) => {
                    return refused(StatusCode::SERVICE_UNAVAILABLE, t(l, "storage_busy"))
                }
            }
        }
    };
    match done {
        Ok(()) => Outcome::Done(format!("/console/objections/{id}?done={}", step.code())),
        Err(e) => objection_refusal(l, &e),
    }
}

/// The resolve form as the flow's request: reject, eliminate (LS Art. 23), or correct with a
/// correction of one of the objection's records (GD Art. 31), its content as `field=value` lines.
fn resolve_request(
    l: Lang,
    form: &HashMap<String, String>,
    reason: String,
) -> Result<crate::objections::flow::ResolveRequest, String> {
    use crate::objections::{Action, Outcome as O};
    let (outcome, action, correction) = match form.get("outcome").map(String::as_str) {
        Some("reject") => (O::Rejected, None, None),
        Some("eliminate") => (O::Upheld, Some(Action::Eliminate), None),
        Some("correct") => {
            let (agency, record_id) = form
                .get("record")
                .and_then(|r| r.split_once('/'))
                .ok_or_else(|| t(l, "record_required").to_string())?;
            let kind = form
                .get("kind")
                .cloned()
                .unwrap_or_else(|| "invalidate".into());
            let mut content = Map::new();
            for line in form
                .get("content")
                .map(String::as_str)
                .unwrap_or("")
                .lines()
            {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let (field, value) = line
                    .split_once('=')
                    .ok_or_else(|| format!("{}{line}", t(l, "content_line_bad")))?;
                content.insert(field.trim().to_string(), json!(value.trim()));
            }
            let mut correction = json!({
                "agency": agency, "record_id": record_id, "kind": kind, "reason": reason,
            });
            if !content.is_empty() {
                correction["content"] = Value::Object(content);
            }
            (O::Upheld, Some(Action::Correct), Some(correction))
        }
        _ => return Err(t(l, "outcome_required").into()),
    };
    Ok(crate::objections::flow::ResolveRequest {
        outcome,
        action,
        correction,
        reason,
    })
}

fn repair_ctx(ops: &Ops) -> crate::repairs::flow::Context<'_> {
    crate::repairs::flow::Context {
        store: &ops.store,
        committer: &ops.committer,
        router: ops.live.router.current(),
        calendar: ops.live.calendar.current(),
        rules: ops.live.repairs.current(),
        exceptions: &ops.exceptions,
        destinations: &ops.config.destinations,
        now: ops.clock.now(),
    }
}

async fn repair_step(
    ops: &Ops,
    v: &Viewer,
    id: &str,
    step: &str,
    form: &HashMap<String, String>,
) -> Outcome {
    use crate::repairs::flow::RepairError as E;
    let l = v.lang;
    let ctx = repair_ctx(ops);
    let Some(repair) = crate::repairs::get(&ops.store, id).ok().flatten() else {
        return refused(StatusCode::NOT_FOUND, t(l, "not_found"));
    };
    let open = repair.status == crate::repairs::Status::InPublicity
        && crate::repairs::objection_open(&ops.store, &repair).unwrap_or(false);
    let allowed = repair_case::allowed(&repair, ctx.now, open);
    let Some(step) = allowed.iter().copied().find(|s| s.code() == step) else {
        let state = repair.state(ctx.now, open);
        return refused(
            StatusCode::CONFLICT,
            format!(
                "{}{}",
                t(l, "wrong_state"),
                state_label(l, &code_of(&state))
            ),
        );
    };
    if !v.principal.may(Need::Act) {
        return refused(StatusCode::FORBIDDEN, t(l, "role_may_not_step"));
    }
    let Some(agency) = desk_agency(ops) else {
        return refused(StatusCode::CONFLICT, t(l, "no_desk_agency"));
    };
    let reason = reason(form);
    if step != repair_case::Step::Complete && reason.is_empty() {
        return refused(StatusCode::BAD_REQUEST, t(l, "reason_required"));
    }
    let done = match step {
        repair_case::Step::Decide => {
            let (approve, false_materials) = match form.get("decision").map(String::as_str) {
                Some("approve") => (true, false),
                Some("refuse") => (false, false),
                Some("false_materials") => (false, true),
                _ => return refused(StatusCode::BAD_REQUEST, t(l, "decision_required")),
            };
            let request = crate::repairs::flow::DecideRequest {
                approve,
                reason,
                false_materials,
            };
            crate::repairs::flow::decide(&ctx, agency, false, id, &request).await
        }
        repair_case::Step::Extend => repair_case::extend(&ctx, agency, id, &reason).await,
        repair_case::Step::Complete => repair_case::complete(&ctx, id).await,
        repair_case::Step::CommitmentBroken => {
            let request = crate::repairs::flow::CommitmentBrokenRequest {
                reason,
                found_on: form.get("found_on").cloned().unwrap_or_default(),
            };
            crate::repairs::flow::commitment_broken(&ctx, agency, id, &request).await
        }
    };
    match done {
        Ok(_) => Outcome::Done(format!("/console/repairs/{id}?done={}", step.code())),
        Err(E::NotFound(_)) => refused(StatusCode::NOT_FOUND, t(l, "not_found")),
        Err(E::WrongState(s)) => refused(
            StatusCode::CONFLICT,
            format!("{}{}", t(l, "wrong_state"), state_label(l, &code_of(&s))),
        ),
        Err(E::NotAllowed(m)) => {
            refused(StatusCode::FORBIDDEN, format!("{}{m}", t(l, "not_yours")))
        }
        Err(E::Storage(_)) => refused(StatusCode::SERVICE_UNAVAILABLE, t(l, "storage_busy")),
        Err(other) => domain_refusal(l, &other),
    }
}
