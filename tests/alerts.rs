//! The alert rules, their unit tests and the dashboard (`packaging/`), against the metrics the
//! gateway really exports (issue #30): `promtool check rules` and `promtool test rules` pass, every
//! alert has its runbook section and is tested firing and quiet, the rules and the dashboard name
//! only metrics of the catalogue (`crates/core/src/telemetry/catalogue.rs`), and a running gateway's `/metrics`
//! has a `# HELP` line and the catalogue's type for every family.
//!
//! Needs `promtool` (Debian's `prometheus` package; `.ci/run` installs it).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use credit_gateway::telemetry::catalogue::{self, Kind};

const RULES: &str = "packaging/prometheus/credit-gateway.rules.yml";
const RULE_TESTS: &str = "packaging/prometheus/credit-gateway.rules.test.yml";
const DASHBOARD: &str = "packaging/grafana/credit-gateway.json";
const RUNBOOK: &str = "docs/operate/alerts.md";

/// Series Prometheus makes itself, which the rules and the dashboard may use besides the gateway's.
const PROMETHEUS_OWN: &[&str] = &["up", "ALERTS"];

fn repo_file(path: &str) -> PathBuf {
    common::repo().join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Run promtool with `args` in `dir`; its output, or a panic that says what failed.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let out = match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("promtool is not installed: install Debian's prometheus package; .ci/run does")
        }
        Err(e) => panic!("promtool {args:?}: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    text
}

// ------------------------------------------------------------------------- reading the rules file

/// One alerting rule as written in the rules file (read line by line: the file keeps one layout,
/// `- alert:` then `expr:`, `for:`, `labels:` and `annotations:` indented beneath it).
#[derive(Debug, Default)]
struct Alert {
    name: String,
    expr: String,
    fields: BTreeMap<String, String>,
}

fn alerts(rules: &str) -> Vec<Alert> {
    let mut out: Vec<Alert> = Vec::new();
    let lines: Vec<&str> = rules.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            out.push(Alert {
                name: name.trim().to_string(),
                ..Alert::default()
            });
        } else if let (Some(alert), Some((key, value))) = (out.last_mut(), trimmed.split_once(':'))
        {
            let key = key.trim().to_string();
            let value = value.trim();
            if !trimmed.starts_with('#') && !key.contains(' ') {
                // A block scalar (`|`, `>-`) is the lines indented deeper than its key.
                let text = if value == "|" || value == ">-" {
                    let mut block = Vec::new();
                    while i + 1 < lines.len() {
                        let next = lines[i + 1];
                        let next_indent = next.len() - next.trim_start().len();
                        if !next.trim().is_empty() && next_indent <= indent {
                            break;
                        }
                        block.push(next.trim());
                        i += 1;
                    }
                    block.join(if value == "|" { "\n" } else { " " })
                } else {
                    value.trim_matches('\'').to_string()
                };
                if key == "expr" {
                    alert.expr = text;
                } else {
                    alert.fields.insert(key, text);
                }
            }
        }
        i += 1;
    }
    out
}

/// The metric names a PromQL expression reads: what is left once strings, label matchers, ranges,
/// grouping lists, functions, keywords and numbers are taken out.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Strings and the brackets' contents go first.
    let mut plain = String::new();
    let mut chars = expr.chars().peekable();
    let mut depth_curly = 0;
    let mut depth_square = 0;
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
                plain.push(' ');
            }
            '{' => depth_curly += 1,
            '}' => depth_curly -= 1,
            '[' => depth_square += 1,
            ']' => depth_square -= 1,
            _ if depth_curly > 0 || depth_square > 0 => {}
            _ => plain.push(c),
        }
    }
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];
    let chars: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // A number, its exponent included.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || matches!(c, '_' | ':' | '$')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':' | '$'))
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let rest = chars[i..].iter().position(|c| !c.is_whitespace());
        let next = rest.map(|k| chars[i + k]).unwrap_or(' ');
        let lower = word.to_ascii_lowercase();
        if GROUPING.contains(&lower.as_str()) {
            // `by (a, b)`, `group_left ()`: label names, up to the closing parenthesis.
            if next == '(' {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
            }
            continue;
        }
        // Functions and aggregations are followed by their parenthesis, or an aggregation by its
        // grouping (`sum by (a) (…)`); Grafana's variables start with `$`.
        let after: String = chars[i..]
            .iter()
            .skip_while(|c| c.is_whitespace())
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .collect();
        let grouped = matches!(after.to_ascii_lowercase().as_str(), "by" | "without");
        if KEYWORDS.contains(&lower.as_str()) || word.starts_with('$') || next == '(' || grouped {
            continue;
        }
        names.insert(word);
    }
    names
}

/// Whether `name` is one the gateway exports (a histogram's `_bucket`, `_sum` and `_count` too) or
/// one Prometheus makes itself.
fn exported(name: &str) -> bool {
    if PROMETHEUS_OWN.contains(&name) || catalogue::find(name).is_some() {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(catalogue::find)
            .is_some_and(|m| m.kind == Kind::Histogram)
    })
}

/// A Markdown heading's anchor as GitHub and most renderers make it.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

// ------------------------------------------------------------------------------------- the tests

#[test]
fn promtool_checks_the_alert_rules() {
    let out = promtool(&common::repo(), &["check", "rules", RULES]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn promtool_unit_tests_of_the_alert_rules_pass() {
    let dir = repo_file(RULE_TESTS).parent().unwrap().to_path_buf();
    let file = Path::new(RULE_TESTS).file_name().unwrap().to_str().unwrap();
    let out = promtool(&dir, &["test", "rules", file]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn the_metric_names_of_an_expression_are_found() {
    let names = metric_names(
        r#"sum by (instance, job) (increase(gateway_delivery_retries_total{destination=~"a|b"}[10m])) > 0
        unless on (instance, job) label_replace(gateway_lease_held{lease=~"delivery/.+"} == 0, "destination", "$1", "lease", "delivery/(.+)")
        or histogram_quantile(0.99, sum by (le) (rate(gateway_batch_seconds_bucket[$__rate_interval]))) * 2e3
        or up{job="$job"} - on (instance) group_left () vector(1)"#,
    );
    let want: BTreeSet<String> = [
        "gateway_delivery_retries_total",
        "gateway_lease_held",
        "gateway_batch_seconds_bucket",
        "up",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(names, want);
    assert!(exported("gateway_batch_seconds_bucket"));
    assert!(!exported("gateway_outbox_depth_bucket"), "not a histogram");
    assert!(!exported("node_filesystem_avail_bytes"));
}

#[test]
fn every_alert_has_its_for_severity_annotations_and_runbook_section() {
    let rules = alerts(&read(RULES));
    assert!(rules.len() >= 20, "only {} alerts read", rules.len());
    let runbook = read(RUNBOOK);
    let sections: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("### ").or_else(|| l.strip_prefix("## ")))
        .map(anchor)
        .collect();
    let mut problems = Vec::new();
    for a in &rules {
        for key in ["for", "severity", "summary", "description", "runbook_url"] {
            if a.fields.get(key).is_none_or(|v| v.is_empty()) {
                problems.push(format!("{}: no {key}", a.name));
            }
        }
        if !matches!(
            a.fields.get("severity").map(String::as_str),
            Some("critical" | "warning")
        ) {
            problems.push(format!("{}: severity is critical or warning", a.name));
        }
        let url = a.fields.get("runbook_url").cloned().unwrap_or_default();
        let want = format!("{RUNBOOK}#{}", a.name.to_lowercase());
        if url != want {
            problems.push(format!("{}: runbook_url {url:?}, want {want:?}", a.name));
        }
        if !sections.contains(&a.name.to_lowercase()) {
            problems.push(format!(
                "{}: {RUNBOOK} has no section `### {}`",
                a.name, a.name
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_alert_is_unit_tested_firing_and_quiet() {
    let names: BTreeSet<String> = alerts(&read(RULES)).into_iter().map(|a| a.name).collect();
    let tests = read(RULE_TESTS);
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("alertname:") else {
            continue;
        };
        let expected = lines[i + 1..]
            .iter()
            .find(|l| l.starts_with("exp_alerts:"))
            .unwrap_or_else(|| panic!("{name}: no exp_alerts"));
        if expected.trim_end() == "exp_alerts: []" {
            quiet.insert(name.trim().to_string());
        } else {
            fires.insert(name.trim().to_string());
        }
    }
    for name in &names {
        assert!(fires.contains(name), "{RULE_TESTS}: {name} never fires");
        assert!(quiet.contains(name), "{RULE_TESTS}: {name} is never quiet");
    }
    let unknown: Vec<_> = fires
        .union(&quiet)
        .filter(|n| !names.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "tests of alerts that do not exist: {unknown:?}"
    );
}

#[test]
fn the_rules_name_only_metrics_the_gateway_exports() {
    let rules = alerts(&read(RULES));
    let mut used = BTreeSet::new();
    for a in &rules {
        let names = metric_names(&a.expr);
        assert!(!names.is_empty(), "{}: no metric in {:?}", a.name, a.expr);
        for name in names {
            assert!(
                exported(&name),
                "{}: {name} is neither in the gateway's catalogue (crates/core/src/telemetry/catalogue.rs) nor one of Prometheus's own series",
                a.name
            );
            used.insert(name);
        }
    }
    // The issue's list: each is watched by some alert.
    for name in [
        "up",
        "gateway_outbox_oldest_pending_seconds",
        "gateway_delivery_retries_total",
        "gateway_dead_letter_depth",
        "gateway_corrections_overdue",
        "gateway_corrections_nearest_deadline_seconds",
        "gateway_objections",
        "gateway_objections_nearest_deadline_seconds",
        "gateway_repairs",
        "gateway_repairs_nearest_deadline_seconds",
        "gateway_rule_days_left",
        "gateway_rule_warnings",
        "gateway_calendar_days_left",
        "gateway_rules_reloads_total",
        "gateway_disk_reserve_crossings_total",
        "gateway_disk_free_bytes",
        "gateway_commit_stuck_seconds",
        "gateway_lease_changes_total",
    ] {
        assert!(used.contains(name), "no alert watches {name}");
    }
}

#[test]
fn the_dashboard_names_only_metrics_the_gateway_exports() {
    let dashboard: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).expect("valid JSON");
    assert!(
        dashboard["schemaVersion"].as_u64().unwrap() >= 36,
        "{}",
        dashboard["schemaVersion"]
    );
    assert!(
        dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource"),
        "a Prometheus data source variable DS_PROMETHEUS"
    );
    // Every panel (rows' panels too) and its queries.
    let mut panels: Vec<&serde_json::Value> = Vec::new();
    let mut stack: Vec<&serde_json::Value> =
        dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = stack.pop() {
        if let Some(inner) = p["panels"].as_array() {
            stack.extend(inner);
        }
        panels.push(p);
    }
    let mut exprs = Vec::new();
    for p in &panels {
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel {}: the data source variable",
            p["title"]
        );
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", p["title"]));
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap().to_string();
            exprs.push((p["title"].as_str().unwrap().to_string(), expr));
        }
    }
    // The variables' `label_values(metric{…}, label)`.
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(def) = v["definition"].as_str() {
            let inner = def
                .strip_prefix("label_values(")
                .and_then(|d| d.rsplit_once(','))
                .map(|(metric, _)| metric.to_string())
                .unwrap_or_else(|| panic!("variable {}: {def}", v["name"]));
            exprs.push((format!("variable {}", v["name"]), inner));
        }
    }
    let mut used = BTreeSet::new();
    for (title, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{title}: no metric in {expr}");
        for name in names {
            assert!(
                exported(&name),
                "dashboard panel {title:?}: {name} is not in the gateway's catalogue (crates/core/src/telemetry/catalogue.rs)"
            );
            used.insert(name);
        }
    }
    // The issue's panels.
    for name in [
        "up",
        "gateway_records_accepted_total",
        "gateway_records_rejected_total",
        "gateway_outbox_depth",
        "gateway_outbox_oldest_pending_seconds",
        "gateway_dead_letter_depth",
        "gateway_deliveries_total",
        "gateway_delivery_retries_total",
        "gateway_corrections_pending",
        "gateway_corrections_overdue",
        "gateway_corrections_nearest_deadline_seconds",
        "gateway_objections",
        "gateway_objections_nearest_deadline_seconds",
        "gateway_repairs",
        "gateway_repairs_nearest_deadline_seconds",
        "gateway_rule_days_left",
        "gateway_calendar_days_left",
        "gateway_evaluation_cycle_done",
        "gateway_evaluation_cycle_total",
        "gateway_disk_free_bytes",
        "gateway_commit_stuck_seconds",
        "gateway_lease_held",
    ] {
        assert!(used.contains(name), "no dashboard panel shows {name}");
    }
    // Every query parses: promtool checks them as recording rules, Grafana's variables filled in.
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in exprs.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$job", "credit-gateway")
            .replace("$instance", ".*")
            .replace("$destination", ".*");
        yaml.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::Value::String(expr)
        ));
    }
    std::fs::write(dir.path().join("dashboard.rules.yml"), yaml).unwrap();
    promtool(dir.path(), &["check", "rules", "dashboard.rules.yml"]);
}

/// Families of a Prometheus text exposition: name -> (type, has HELP), and the sample names.
fn families(text: &str) -> (BTreeMap<String, (String, bool)>, BTreeSet<String>) {
    let mut types = BTreeMap::new();
    let mut helps = BTreeSet::new();
    let mut samples = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            if !help.trim().is_empty() {
                helps.insert(name.to_string());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.insert(line[..end].to_string());
        }
    }
    let families = types
        .into_iter()
        .map(|(name, kind)| {
            let help = helps.contains(&name);
            (name, (kind, help))
        })
        .collect();
    (families, samples)
}

#[test]
fn a_running_gateways_metrics_have_help_and_the_catalogues_types() {
    let rt = common::multi_thread_runtime();
    let mut gw = common::Gateway::prepare();
    let platform = gw.receiver(&rt);
    gw.add_destination("provincial", "440000", &platform);
    gw.spawn();
    common::samples::push_all(&gw);
    let delivered = common::wait_until(Duration::from_secs(30), || {
        platform.count() > 0
            && gw
                .admin_get("/metrics")
                .1
                .contains("gateway_shares_delivered_total")
    });
    assert!(delivered, "the samples reach the platform");
    let (status, text) = gw.admin_get("/metrics");
    assert_eq!(status, 200);
    let (families, samples) = families(&text);
    let mut problems = Vec::new();
    for (name, (kind, help)) in &families {
        if !help {
            problems.push(format!("{name}: no # HELP"));
        }
        match catalogue::find(name) {
            None => problems.push(format!("{name}: exported but not in the catalogue")),
            Some(m) if m.kind.as_str() != kind => problems.push(format!(
                "{name}: # TYPE {kind}, the catalogue says {}",
                m.kind.as_str()
            )),
            Some(_) => {}
        }
    }
    for sample in &samples {
        let family = families.contains_key(sample.as_str())
            || ["_bucket", "_sum", "_count"].iter().any(|s| {
                sample
                    .strip_suffix(s)
                    .is_some_and(|f| families.get(f).is_some_and(|(k, _)| k == "histogram"))
            });
        if !family {
            problems.push(format!("{sample}: a sample without # TYPE"));
        }
    }
    assert!(problems.is_empty(), "{}\n\n{text}", problems.join("\n"));
    for name in [
        "gateway_records_accepted_total",
        "gateway_batch_seconds",
        "gateway_outbox_depth",
        "gateway_outbox_oldest_pending_seconds",
        "gateway_dead_letter_depth",
        "gateway_shares_delivered_total",
        "gateway_disk_free_bytes",
        "gateway_commit_stuck_seconds",
        "gateway_corrections_pending",
        "gateway_rule_warnings",
        "gateway_calendar_days_left",
    ] {
        assert!(
            families.contains_key(name),
            "{name} not in /metrics:\n{text}"
        );
    }
    // The rules never name a metric the gateway does not export: each is in /metrics now or in the
    // catalogue (emitted only when its event happens), or is Prometheus's own.
    for a in alerts(&read(RULES)) {
        for name in metric_names(&a.expr) {
            assert!(
                families.contains_key(&name) || exported(&name),
                "{}: {name} is neither in /metrics nor in the catalogue",
                a.name
            );
        }
    }
}
