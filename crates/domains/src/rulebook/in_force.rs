//! Which rule governs each duty for a region on a day, until when, and where nothing does; the
//! warnings before a rule or the calendar ends, with the file to add (issue #26).
//!
//! Owns: one list of every dated rule of the rulebook ([`entries`]), the answer for a region and
//! a day ([`in_force`]), the warnings of a day ([`warnings`]) and the watcher that logs them once
//! a day and publishes the days left of each rule as metrics ([`watch`]).
//!
//! Never does: decide a duty (each domain applies its own rule and gap policy; this module only
//! describes them), or read the system clock. Whether an entry is in force, covers a region or
//! has ended is [`crate::rule_window`]'s, as for the domains; only the tie-break differs (here the
//! later `effective_from`).
//!
//! Gap policies, per duty (what the gateway does where no rule is in force; documented in the
//! docs/operate/rules.md):
//! - public notice: the source's own end date, never past the longest period any known rule
//!   allows (`lifecycle::notice::GAP_PERIOD`);
//! - filing window (LS Art. 21): the longest window any rule allows;
//! - objection review (LS Art. 23): the shortest period any rule allows (never late);
//! - evaluation: stop, said in the cycle, the log and here; or, for a profile marked
//!   `successor_pending`, go on under it with every result saying so;
//! - calendar: deadlines past the last known year are provisional (weekdays only) and made exact
//!   when the year's file is loaded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use time::{Date, Duration};

use super::Live;
use crate::config::Config;
use crate::rule_window::{Dated, Window};

/// The duties a rule can govern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Duty {
    /// Working days for deadlines (GD Art. 31; LS Arts. 21, 23, 40).
    Calendar,
    /// How long dishonesty information is publicly noticed (GD Art. 38; LS Art. 27).
    NoticePeriod,
    /// How long dishonesty records are kept.
    Retention,
    /// The window to object to an evaluation result (LS Art. 21).
    ObjectionFiling,
    /// The review period of an objection (LS Art. 23; GD Arts. 32-34).
    ObjectionReview,
    /// Decision and publicity periods of a repair (LS Art. 40; GD Art. 37).
    RepairDeadlines,
    /// Who may apply for repair (LS Arts. 38, 40, 41; national measures).
    RepairEligibility,
    /// The scoring profile (GD Arts. 17-20; LS Arts. 18-20).
    Evaluation,
}

impl Duty {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Calendar => "calendar",
            Self::NoticePeriod => "notice_period",
            Self::Retention => "retention",
            Self::ObjectionFiling => "objection_filing",
            Self::ObjectionReview => "objection_review",
            Self::RepairDeadlines => "repair_deadlines",
            Self::RepairEligibility => "repair_eligibility",
            Self::Evaluation => "evaluation",
        }
    }

    /// The duty in the console's Chinese.
    pub fn zh(self) -> &'static str {
        match self {
            Self::Calendar => "工作日历",
            Self::NoticePeriod => "公示期限",
            Self::Retention => "保存期限",
            Self::ObjectionFiling => "异议提出期限",
            Self::ObjectionReview => "异议核查期限",
            Self::RepairDeadlines => "信用修复办理期限",
            Self::RepairEligibility => "信用修复条件",
            Self::Evaluation => "信用评价方案",
        }
    }

    /// [`Self::gap_policy`] in Chinese.
    pub fn gap_policy_zh(self) -> &'static str {
        match self {
            Self::Calendar => "期限暂按周一至周五估算（对部门不晚于、对主体不短于实际），载入当年日历后自动改为准确期限",
            Self::NoticePeriod => "按来源单位给出的截止日期，但不超过已知规则允许的最长期限",
            Self::Retention => "记录继续保存，不因保存期限到期而移除",
            Self::ObjectionFiling => "按已知规则中最长的期限（不缩短主体的异议期限，LS 第二十一条）",
            Self::ObjectionReview => "按已知规则中最短的期限（部门不逾期）",
            Self::RepairDeadlines => "按文件中的期限办理（该文件不带日期）",
            Self::RepairEligibility => "只适用不限地区的规则",
            Self::Evaluation => "这些主体暂停评价（在评价周期中计为未评价），除非已到期的方案标记为 successor_pending",
        }
    }

    /// What the gateway does where no rule of this duty is in force.
    pub fn gap_policy(self) -> &'static str {
        match self {
            Self::Calendar => "deadlines are provisional (weekdays only; duties never later, subjects' windows never shorter) and made exact when the year's file is loaded",
            Self::NoticePeriod => "the source's own end date, never past the longest period any known rule allows",
            Self::Retention => "records stay: no retention rule ends them",
            Self::ObjectionFiling => "the longest window any rule allows (a subject's window is never shortened, LS Art. 21)",
            Self::ObjectionReview => "the shortest period any rule allows (the bureau is never late)",
            Self::RepairDeadlines => "the file's periods apply (they carry no dates)",
            Self::RepairEligibility => "only the rules without regions apply",
            Self::Evaluation => "evaluation stops for these subjects (counted as not_evaluated in the cycle), unless the ended profile is marked successor_pending",
        }
    }
}

/// One dated rule of the rulebook.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub duty: Duty,
    /// What within the duty the rule covers: categories, a subject kind, an eligibility kind.
    pub scope: String,
    pub rule: String,
    pub source: String,
    pub file: String,
    pub regions: Vec<String>,
    #[serde(serialize_with = "iso_date")]
    pub effective_from: Option<Date>,
    #[serde(serialize_with = "iso_date")]
    pub effective_until: Option<Date>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub successor_pending: bool,
}

/// Dates as YYYY-MM-DD, as the rule files write them.
fn iso_date<S: serde::Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&d.to_string()),
        None => s.serialize_none(),
    }
}

fn iso_day<S: serde::Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_string())
}

impl Dated for Entry {
    fn window(&self) -> Window<'_> {
        Window::new(self.effective_from, self.effective_until, &self.regions)
    }
}

impl Entry {
    fn covers(&self, region: &str) -> Option<usize> {
        self.window().region_specificity(region)
    }
}

/// Where each kind's file is, as the operator is told.
#[derive(Debug, Clone)]
pub struct Files {
    pub calendar: String,
    pub notice: String,
    pub objections: String,
    pub repairs: String,
    pub profiles: String,
    /// Region prefixes of the configured destination platforms (a province's `44`, a city's
    /// `4401`): warnings are about these (a Guangdong deployment is not warned of Lhasa's rules).
    /// Empty: every region.
    pub served: Vec<String>,
    /// `evaluation.enabled`: a deployment that does not evaluate is not warned of scoring
    /// profiles ending (they govern nothing it does).
    pub evaluation: bool,
}

impl Files {
    pub fn of(config: &Config) -> Self {
        let shown = |p: std::path::PathBuf| p.display().to_string();
        let served = config
            .destinations
            .iter()
            .map(|d| {
                let mut code = d.region.as_str();
                while code.len() > 2 && code.ends_with("00") {
                    code = &code[..code.len() - 2];
                }
                code.to_string()
            })
            .collect();
        Self {
            served,
            evaluation: config.evaluation.enabled,
            calendar: shown(config.calendar_dir()),
            notice: shown(config.public_notice_rules_path()),
            objections: shown(config.objection_rules_path()),
            repairs: shown(config.repair_rules_path()),
            profiles: shown(config.scoring_profiles_dir()),
        }
    }
}

/// Every dated rule in force in `live`, of every kind.
pub fn entries(live: &Live, files: &Files) -> Vec<Entry> {
    let mut out = Vec::new();
    let router = live.router.current();
    let notice = router.notice();
    for p in &notice.periods {
        out.push(Entry {
            duty: Duty::NoticePeriod,
            scope: categories(p.categories.iter()),
            rule: p.name.clone(),
            source: p.source.clone(),
            file: files.notice.clone(),
            regions: p.regions.clone(),
            effective_from: Some(p.effective_from),
            effective_until: p.effective_until,
            successor_pending: false,
        });
    }
    for r in &notice.retention {
        out.push(Entry {
            duty: Duty::Retention,
            scope: categories(r.categories.iter()),
            rule: r.name.clone(),
            source: r.source.clone(),
            file: files.notice.clone(),
            regions: r.regions.clone(),
            effective_from: r.effective_from,
            effective_until: r.effective_until,
            successor_pending: false,
        });
    }
    let objections = live.objections.current();
    for f in &objections.filing {
        out.push(Entry {
            duty: Duty::ObjectionFiling,
            scope: format!("{} working days", f.working_days),
            rule: f.name.clone(),
            source: f.source.clone(),
            file: files.objections.clone(),
            regions: f.regions.clone(),
            effective_from: f.effective_from,
            effective_until: f.effective_until,
            successor_pending: false,
        });
    }
    for r in &objections.review {
        out.push(Entry {
            duty: Duty::ObjectionReview,
            scope: format!("{} working days", r.working_days),
            rule: r.name.clone(),
            source: r.source.clone(),
            file: files.objections.clone(),
            regions: r.regions.clone(),
            effective_from: r.effective_from,
            effective_until: r.effective_until,
            successor_pending: false,
        });
    }
    let repairs = live.repairs.current();
    out.push(Entry {
        duty: Duty::RepairDeadlines,
        scope: format!(
            "decision {} (at most {}), publicity {} working days",
            repairs.decision_working_days,
            repairs.max_decision_working_days,
            repairs.publicity_working_days
        ),
        rule: "repair-deadlines".into(),
        source: "LS Art. 40; GD Art. 37".into(),
        file: files.repairs.clone(),
        regions: Vec::new(),
        effective_from: None,
        effective_until: None,
        successor_pending: false,
    });
    for r in &repairs.rule {
        out.push(Entry {
            duty: Duty::RepairEligibility,
            scope: r.name.clone(),
            rule: r.name.clone(),
            source: r.article.clone(),
            file: files.repairs.clone(),
            regions: r.regions.clone(),
            effective_from: r.effective_from,
            effective_until: r.effective_until,
            successor_pending: false,
        });
    }
    let profiles = live.profiles.current();
    for (p, file) in profiles.all() {
        for kind in &p.subject_kinds {
            out.push(Entry {
                duty: Duty::Evaluation,
                scope: subject_kind(*kind).into(),
                rule: p.name.clone(),
                source: p.source.clone(),
                file: if file.is_empty() {
                    files.profiles.clone()
                } else {
                    file.to_string()
                },
                regions: p.regions.clone(),
                effective_from: Some(p.effective_from),
                effective_until: p.effective_until,
                successor_pending: p.successor_pending,
            });
        }
    }
    out
}

fn subject_kind(k: crate::subject::SubjectKind) -> &'static str {
    match k {
        crate::subject::SubjectKind::Institution => "institution",
        crate::subject::SubjectKind::Individual => "individual",
    }
}

fn categories<'a>(cats: impl Iterator<Item = &'a crate::record::Category>) -> String {
    cats.map(|c| {
        serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    })
    .collect::<Vec<_>>()
    .join(", ")
}

/// What governs one duty (and scope) for a region on a day.
#[derive(Debug, Clone, Serialize)]
pub struct Governs {
    pub duty: Duty,
    pub scope: String,
    /// `in_force`, `successor_pending` (an ended profile still applied), or `gap` (nothing).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "iso_date")]
    pub effective_from: Option<Date>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "iso_date")]
    pub until: Option<Date>,
    /// Days from the day asked to the rule's last day (negative: since it ended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    /// The rule that ended, for a gap or a pending successor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap_policy: Option<&'static str>,
}

/// The answer for one region on one day.
#[derive(Debug, Clone, Serialize)]
pub struct InForce {
    /// The region asked for; empty: a region no rule names ("elsewhere").
    pub region: String,
    #[serde(serialize_with = "iso_day")]
    pub date: Date,
    pub duties: Vec<Governs>,
}

/// What governs each duty for `region` on `day`. Scopes are those the rules name for the duty;
/// the calendar is answered for the day's year.
pub fn in_force(live: &Live, files: &Files, region: &str, day: Date) -> InForce {
    let all = entries(live, files);
    let mut duties = vec![calendar_governs(live, files, day)];
    let groups: BTreeSet<(Duty, String)> = all
        .iter()
        .filter(|e| e.covers(region).is_some())
        .map(|e| (e.duty, group_scope(e)))
        .collect();
    for (duty, scope) in groups {
        let of_group: Vec<&Entry> = all
            .iter()
            .filter(|e| e.duty == duty && group_scope(e) == scope && e.covers(region).is_some())
            .collect();
        duties.push(governs(&of_group, duty, scope, region, day));
    }
    InForce {
        region: region.to_string(),
        date: day,
        duties,
    }
}

/// Rules of one duty replace each other when they share this: the categories of a notice period,
/// the subject kind of a profile, the eligibility kind; filing and review rules are one group.
fn group_scope(e: &Entry) -> String {
    match e.duty {
        Duty::ObjectionFiling | Duty::ObjectionReview | Duty::RepairDeadlines => String::new(),
        _ => e.scope.clone(),
    }
}

fn governs(group: &[&Entry], duty: Duty, scope: String, region: &str, day: Date) -> Governs {
    let best = |entries: &mut dyn Iterator<Item = &&Entry>| -> Option<Entry> {
        entries
            .filter_map(|e| e.covers(region).map(|len| (len, *e)))
            .max_by_key(|(len, e)| (*len, e.effective_from))
            .map(|(_, e)| e.clone())
    };
    let ended = best(&mut group.iter().filter(|e| e.window().has_ended(day)));
    // Not `rule_window::select`: a tie goes to the later `effective_from` here (what the view
    // has always shown), where the domains take the later in file order.
    if let Some(e) = best(&mut group.iter().filter(|e| e.window().in_force(day))) {
        return Governs {
            duty,
            scope: if scope.is_empty() {
                e.scope.clone()
            } else {
                scope
            },
            status: "in_force",
            days_left: e.effective_until.map(|u| (u - day).whole_days()),
            rule: Some(e.rule),
            source: e.source,
            file: e.file,
            effective_from: e.effective_from,
            until: e.effective_until,
            ended: None,
            gap_policy: None,
        };
    }
    let pending = group
        .iter()
        .filter(|e| e.successor_pending && e.window().has_ended(day))
        .filter_map(|e| e.covers(region).map(|len| (len, e.effective_until, *e)))
        .max_by_key(|(len, until, _)| (*len, *until))
        .map(|(_, _, e)| e.clone());
    let (status, shown) = match pending {
        Some(p) => ("successor_pending", Some(p)),
        None => ("gap", ended),
    };
    let file = shown
        .as_ref()
        .map(|e| e.file.clone())
        .or_else(|| group.first().map(|e| e.file.clone()))
        .unwrap_or_default();
    Governs {
        duty,
        scope: if scope.is_empty() {
            shown.as_ref().map(|e| e.scope.clone()).unwrap_or_default()
        } else {
            scope
        },
        status,
        rule: (status == "successor_pending")
            .then(|| shown.as_ref().map(|e| e.rule.clone()))
            .flatten(),
        source: shown.as_ref().map(|e| e.source.clone()).unwrap_or_default(),
        file,
        effective_from: None,
        until: shown.as_ref().and_then(|e| e.effective_until),
        days_left: shown
            .as_ref()
            .and_then(|e| e.effective_until)
            .map(|u| (u - day).whole_days()),
        ended: shown.map(|e| e.rule),
        gap_policy: Some(duty.gap_policy()),
    }
}

fn calendar_governs(live: &Live, files: &Files, day: Date) -> Governs {
    let calendar = live.calendar.current();
    let years = calendar.known_years();
    let last = Date::from_calendar_date(*years.end(), time::Month::December, 31).ok();
    let known = years.contains(&day.year());
    Governs {
        duty: Duty::Calendar,
        scope: format!("{}-{}", years.start(), years.end()),
        status: if known { "in_force" } else { "gap" },
        rule: known.then(|| format!("{}.toml", day.year())),
        source: calendar.source(day.year()).unwrap_or_default().to_string(),
        file: files.calendar.clone(),
        effective_from: Date::from_calendar_date(*years.start(), time::Month::January, 1).ok(),
        until: last,
        days_left: Some(calendar.days_left_from(day)),
        ended: (!known).then(|| format!("{}.toml", years.end())),
        gap_policy: (!known).then_some(Duty::Calendar.gap_policy()),
    }
}

/// Every region prefix a rule names, and "" for everywhere else.
pub fn regions(live: &Live, files: &Files) -> Vec<String> {
    let mut set: BTreeSet<String> = entries(live, files)
        .into_iter()
        .flat_map(|e| e.regions)
        .collect();
    set.insert(String::new());
    set.into_iter().collect()
}

/// How many days before a rule's or the calendar's end the warnings start.
pub const WARNING_DAYS: i64 = 60;

/// One warning: what ends or ended, for which region, and the file to add.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Warning {
    pub duty: Duty,
    pub rule: String,
    pub regions: String,
    pub message: String,
    /// The same in Chinese, for the console.
    pub message_zh: String,
}

/// The warnings of `day`: a rule ending within [`WARNING_DAYS`] without a successor on the day
/// after, a duty with nothing in force where a rule once governed, a profile applied past its end,
/// the calendar's last year.
pub fn warnings(live: &Live, files: &Files, day: Date) -> Vec<Warning> {
    let mut out: BTreeMap<(Duty, String, String), Warning> = BTreeMap::new();
    let relevant = |region: &str| {
        region.is_empty()
            || files.served.is_empty()
            || files
                .served
                .iter()
                .any(|s| s.starts_with(region) || region.starts_with(s.as_str()))
    };
    for region in regions(live, files).into_iter().filter(|r| relevant(r)) {
        let now = in_force(live, files, &region, day);
        for g in &now.duties {
            if g.duty == Duty::Evaluation && !files.evaluation {
                continue;
            }
            let place = if region.is_empty() {
                "regions no rule names".to_string()
            } else {
                format!("region {region}")
            };
            let what = format!("{} ({})", g.duty.as_str(), g.scope);
            let place_zh = if region.is_empty() {
                "未列明地区".to_string()
            } else {
                format!("地区 {region}")
            };
            let what_zh = format!("{}（{}）", g.duty.zh(), g.scope);
            let (message, message_zh) = match (g.status, g.days_left) {
                ("in_force", Some(left)) if left < WARNING_DAYS && g.duty != Duty::Calendar => {
                    let Some(end) = g.until else { continue };
                    let next = in_force(live, files, &region, end + Duration::days(1));
                    let succeeded = next
                        .duties
                        .iter()
                        .any(|n| n.duty == g.duty && n.scope == g.scope && n.status == "in_force");
                    if succeeded {
                        continue;
                    }
                    let rule = g.rule.as_deref().unwrap_or_default();
                    (
                        format!(
                            "{what} for {place}: rule {rule} ends {end} ({left} days left) and nothing succeeds it; add its successor to {} and reload (SIGHUP or `credit-gateway rules reload`)",
                            g.file
                        ),
                        format!(
                            "{place_zh}的{what_zh}：规则 {rule} 于 {end} 到期（剩余 {left} 天），且无后续规则；请在 {} 中加入后续规则并重新加载（SIGHUP 或 `credit-gateway rules reload`）",
                            g.file
                        ),
                    )
                }
                ("in_force", Some(left)) if left < WARNING_DAYS => {
                    let until = g.until.map(|d| d.to_string()).unwrap_or_default();
                    let next = g.until.map(|d| d.year() + 1).unwrap_or_default();
                    (
                        format!(
                            "the working-day calendar ends {until} ({left} days left): add {}/{next}.toml from the State Council notice and reload; deadlines past it are provisional",
                            g.file
                        ),
                        format!(
                            "工作日历于 {until} 到期（剩余 {left} 天）：请按国务院办公厅通知加入 {}/{next}.toml 并重新加载；此后的期限为暂估",
                            g.file
                        ),
                    )
                }
                ("gap", _) if g.duty == Duty::Calendar => (
                    format!(
                        "the working-day calendar has no {}: add {}/{}.toml and reload; {}",
                        day.year(),
                        g.file,
                        day.year(),
                        Duty::Calendar.gap_policy()
                    ),
                    format!(
                        "工作日历缺少 {} 年：请加入 {}/{}.toml 并重新加载；在此之前{}",
                        day.year(),
                        g.file,
                        day.year(),
                        Duty::Calendar.gap_policy_zh()
                    ),
                ),
                ("gap", _) if g.ended.is_some() => {
                    let since = g
                        .until
                        .map(|u| (u + Duration::days(1)).to_string())
                        .unwrap_or_default();
                    let ended = g.ended.as_deref().unwrap_or_default();
                    (
                        format!(
                            "{what} for {place}: nothing is in force since {since} ({ended} ended); add its successor to {} and reload. Meanwhile: {}",
                            g.file,
                            g.duty.gap_policy()
                        ),
                        format!(
                            "{place_zh}的{what_zh}：自 {since} 起无规则生效（{ended} 已到期）；请在 {} 中加入后续规则并重新加载。在此之前：{}",
                            g.file,
                            g.duty.gap_policy_zh()
                        ),
                    )
                }
                ("successor_pending", _) => {
                    let rule = g.rule.as_deref().unwrap_or_default();
                    let until = g.until.map(|d| d.to_string()).unwrap_or_default();
                    (
                        format!(
                            "{what} for {place}: profile {rule} ended {until} and is applied as successor_pending; every result says so. Add its successor to {} and reload",
                            g.file
                        ),
                        format!(
                            "{place_zh}的{what_zh}：方案 {rule} 已于 {until} 到期，按 successor_pending 继续适用，每个结果均注明；请在 {} 中加入后续方案并重新加载",
                            g.file
                        ),
                    )
                }
                _ => continue,
            };
            let key = (
                g.duty,
                g.rule.clone().or(g.ended.clone()).unwrap_or_default(),
                g.scope.clone(),
            );
            out.entry(key)
                .and_modify(|w| {
                    if !region.is_empty() && !w.regions.split(", ").any(|r| r == region) {
                        w.regions = if w.regions.is_empty() {
                            region.clone()
                        } else {
                            format!("{}, {region}", w.regions)
                        };
                    }
                })
                .or_insert(Warning {
                    duty: g.duty,
                    rule: g.rule.clone().or(g.ended.clone()).unwrap_or_default(),
                    regions: region.clone(),
                    message,
                    message_zh,
                });
        }
    }
    out.into_values().collect()
}

/// Days left of every rule in force with an end date (negative: days since a rule ended with
/// nothing after it), the smallest over regions: `gateway_rule_days_left{duty, rule}`.
pub fn days_left(live: &Live, files: &Files, day: Date) -> BTreeMap<(Duty, String), i64> {
    let mut out: BTreeMap<(Duty, String), i64> = BTreeMap::new();
    for region in regions(live, files) {
        for g in in_force(live, files, &region, day).duties {
            let Some(left) = g.days_left else { continue };
            let Some(rule) = g.rule.clone().or(g.ended.clone()) else {
                continue;
            };
            let slot = out.entry((g.duty, rule)).or_insert(left);
            *slot = (*slot).min(left);
        }
    }
    out
}

/// Log the warnings once a day and publish the days left, until `stop`.
pub async fn watch(
    live: Live,
    files: Arc<Files>,
    clock: crate::clock::SharedClock,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut warned_on: Option<Date> = None;
    let mut published: BTreeSet<(Duty, String)> = BTreeSet::new();
    while !*stop.borrow() {
        let day = clock.now().to_offset(crate::calendar::CHINA_OFFSET).date();
        let left = days_left(&live, &files, day);
        // A rule no longer in the rulebook stops being published.
        for gone in published.iter().filter(|k| !left.contains_key(*k)) {
            metrics::gauge!("gateway_rule_days_left", "duty" => gone.0.as_str(), "rule" => gone.1.clone()).set(f64::NAN);
        }
        published = left.keys().cloned().collect();
        for ((duty, rule), days) in &left {
            metrics::gauge!("gateway_rule_days_left", "duty" => duty.as_str(), "rule" => rule.clone())
                .set(*days as f64);
        }
        let list = warnings(&live, &files, day);
        metrics::gauge!("gateway_rule_warnings").set(list.len() as f64);
        if warned_on != Some(day) {
            warned_on = Some(day);
            for w in &list {
                tracing::warn!(duty = w.duty.as_str(), rule = %w.rule, regions = %w.regions, "{}", w.message);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {},
            _ = stop.changed() => {},
        }
    }
}

/// The rules-in-force view as the operator API, the console and the CLI show it: for `region`
/// (every region a rule names, and everywhere else, when `None`) on `day`, with the warnings of
/// the day and the hash of every kind.
pub fn view(live: &Live, files: &Files, region: Option<&str>, day: Date) -> serde_json::Value {
    let regions = match region {
        Some(r) => vec![r.to_string()],
        None => regions(live, files),
    };
    let answers: Vec<InForce> = regions
        .iter()
        .map(|r| in_force(live, files, r, day))
        .collect();
    serde_json::json!({
        "date": day.to_string(),
        "regions": answers,
        "warnings": warnings(live, files, day),
        "hashes": live.hashes(),
    })
}

/// A region as asked for: 1-6 digits (a prefix of a 6-digit administrative division code).
pub fn parse_region(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.is_empty() || t.len() > 6 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "region {t:?} is not 1-6 digits of an administrative division code"
        ));
    }
    Ok(t.to_string())
}
