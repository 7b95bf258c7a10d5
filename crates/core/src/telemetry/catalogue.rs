//! The catalogue of every metric the gateway exports: its name, its Prometheus type, its unit and
//! the one line an operator reads in `/metrics` as `# HELP`.
//!
//! Owns: [`METRICS`], the one list, and [`describe_all`], which hands it to the installed recorder
//! (called by [`super::init_metrics`]). The alert rules (`packaging/prometheus/`) and the dashboard
//! (`packaging/grafana/`) may only use names listed here; `tests/alerts.rs` checks both.
//!
//! Invariant (checked by this module's tests, which read `src/`): every `counter!`, `gauge!` and
//! `histogram!` in the source names its metric with a string literal listed here with the same
//! type, and every name listed here is still emitted somewhere. A new metric without its line here
//! fails the tests.
//!
//! Never does: render anything itself, or name a label value (the labels are the emitters').

use metrics::Unit;

/// The Prometheus type a metric is exported as (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// As written in `# TYPE` lines, and as the macro that emits it is named.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One exported metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    /// The unit handed to the recorder (the exporter adds no suffix: the names carry their unit).
    pub unit: Option<Unit>,
    /// The `# HELP` text: one line, for an operator, with the labels and the unit.
    pub help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help,
    }
}

const fn gauge(name: &'static str, unit: Option<Unit>, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        unit,
        help,
    }
}

const fn seconds_histogram(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help,
    }
}

/// Every metric the gateway exports, by name.
pub const METRICS: &[Metric] = &[
    // Ingest and the agency API.
    counter("gateway_batches_total", "Batches received from agencies, by agency and mapping."),
    counter("gateway_records_accepted_total", "Records accepted from agencies, by agency and mapping."),
    counter("gateway_records_rejected_total", "Records rejected by validation, by agency and mapping (the agency reads the receipts; `credit-gateway check` reproduces them offline)."),
    counter("gateway_files_total", "Files taken through POST /v1/files (each also counts its batches in gateway_batches_total), by agency, mapping and format (xlsx, csv)."),
    counter("gateway_file_rows_total", "Rows of files committed, by agency and mapping, as each of a file's batches is durable: a large file's progress."),
    gauge("gateway_files_in_progress", Some(Unit::Count), "Files being taken now, by how they came (via: api, folder, console)."),
    gauge("gateway_file_rows_in_progress", Some(Unit::Count), "Rows already committed of the files being taken now, by via (api, folder, console): a large file's progress, also on the console's overview; falls back when the file is done."),
    counter("gateway_files_repeated_total", "Files handed in again by an agency (the same SHA-256 and mapping): answered with the earlier receipt, nothing stored again."),
    counter("gateway_folder_files_total", "Files of agencies' exchange folders finished, by agency and outcome (done: taken, with its receipt; rejected: refused whole)."),
    counter("gateway_folder_rows_total", "Rows of exchange-folder files, by agency and outcome (accepted, rejected)."),
    counter("gateway_folder_errors_total", "Looks at an agency's exchange folder that failed (missing, unreadable, a move refused), by agency; retried at the next poll."),
    seconds_histogram("gateway_batch_seconds", "Time to receive, validate and commit one batch, in seconds."),
    counter("gateway_requests_refused_total", "Agency API requests refused, by error code (see the error codes in the docs)."),
    counter("gateway_archive_reads_total", "Subject archive reads, by agency."),
    // Connections and TLS.
    counter("gateway_tls_handshake_failures_total", "TLS handshakes that failed (clients without a valid certificate; scanners included)."),
    counter("gateway_connections_refused_total", "Connections closed in or right after their TLS handshake, by reason (why: silent_client, agency_slots_full, handshake_evicted, silent_handshake_evicted)."),
    counter("gateway_connections_closed_total", "Established connections closed gracefully, by reason (why: max_age, certificate_no_longer_trusted)."),
    gauge("gateway_open_connections", Some(Unit::Count), "Connections open on the agency API listener."),
    // The store.
    seconds_histogram("gateway_commit_seconds", "Time from a write group's start to its durable commit, in seconds."),
    counter("gateway_commit_groups_total", "Write groups committed by the single writer."),
    gauge("gateway_commit_stuck_seconds", Some(Unit::Seconds), "Seconds the running commit or flush has taken once past storage.commit_stuck_ms, else 0; above 0 the gateway is not ready."),
    gauge("gateway_disk_free_bytes", Some(Unit::Bytes), "Free bytes on the data directory's filesystem, measured every second."),
    counter("gateway_disk_reserve_crossings_total", "Times free disk space crossed the reserve storage.min_free_mb (below=\"true\": went below, work refused and not ready; below=\"false\": back above)."),
    gauge("gateway_backup_keys_copied", Some(Unit::Count), "Keys copied so far by the running or the last online backup (credit-gateway backup), reported every 50,000 keys and at the end."),
    gauge("gateway_database_reachable", None, "1 when the shared PostgreSQL database answered the last probe, 0 when not (the node is then not ready); PostgreSQL nodes only."),
    // Sharing with the platforms.
    counter("gateway_outbox_enqueued_total", "Shares queued in the outbox for the platforms."),
    gauge("gateway_outbox_depth", Some(Unit::Count), "Shares waiting in the outbox, by destination platform (published every 30 s)."),
    gauge("gateway_outbox_oldest_pending_seconds", Some(Unit::Seconds), "Age in seconds of the oldest share waiting for a destination platform (0 when none); rising means the platform is down or slow."),
    gauge("gateway_dead_letter_depth", Some(Unit::Count), "Shares a destination platform refused for good (4xx), waiting in dead letters for an operator."),
    counter("gateway_dead_letters_total", "Shares moved to dead letters after a platform refused them for good, by destination."),
    counter("gateway_deliveries_total", "Delivery requests a platform acknowledged, by destination."),
    counter("gateway_shares_delivered_total", "Shares a platform acknowledged, by destination."),
    seconds_histogram("gateway_delivery_seconds", "Time of one acknowledged delivery request, by destination, in seconds."),
    counter("gateway_files_written_total", "Batch files written into a file destination's outgoing folder, by destination (GB/T 39443-2020 file interface)."),
    counter("gateway_files_picked_up_total", "Batch files the platform took out of its outgoing folder, by destination."),
    counter("gateway_file_feedback_records_total", "Shares answered by a file destination's feedback files, by destination and result (accepted, rejected, retry: rejected for now or not answered)."),
    counter("gateway_file_feedback_invalid_total", "Feedback files that could not be read (moved to invalid/; the file counts as unanswered and its shares are written again), by destination."),
    counter("gateway_files_unanswered_total", "Batch files without feedback within feedback_timeout_ms (a failed attempt: taken back if not picked up, shares written again), by destination."),
    counter("gateway_delivery_retries_total", "Delivery attempts that failed and will be retried, by destination (the platform is down or slow; nothing is lost)."),
    counter("gateway_disclosure_withheld_total", "Shares held back from a platform by the disclosure filter, by channel and rule."),
    counter("gateway_disclosure_fields_total", "Fields masked or dropped by the disclosure filter, by channel and rule."),
    // The publication ledger.
    counter("gateway_ledger_publications_total", "Publications queued by the publication ledger, by cause."),
    counter("gateway_ledger_withdrawals_total", "Withdrawals queued by the publication ledger, by cause and reason."),
    counter("gateway_ledger_recheck_failures_total", "Stored records that could not be re-checked after a rules change (they keep what platforms hold until an operator acts)."),
    counter("gateway_subject_standing_changes_total", "Changes of a subject's standing, by whether it exited."),
    // Corrections (GD Art. 31).
    counter("gateway_corrections_received_total", "Corrections received (GD Art. 31)."),
    counter("gateway_corrections_delivered_total", "Corrections acknowledged by a platform, by whether on time (on_time)."),
    gauge("gateway_corrections_pending", Some(Unit::Count), "Corrections not yet acknowledged by every platform, still within their deadline."),
    gauge("gateway_corrections_overdue", Some(Unit::Count), "Corrections past their deadline of three working days and not yet acknowledged (GD Art. 31)."),
    gauge("gateway_corrections_nearest_deadline_seconds", Some(Unit::Seconds), "Seconds to the nearest deadline of a pending correction (0 when none is pending)."),
    gauge("gateway_corrections_delivered_late", Some(Unit::Count), "Corrections a platform acknowledged after their deadline."),
    counter("gateway_correction_deadline_warnings_total", "Corrections that came within one working day of their deadline."),
    counter("gateway_correction_tracking_failures_total", "Checks in which the correction tracker could not read the corrections (their deadlines were not tracked)."),
    // Objections (LS Arts. 21-23) and credit repair (LS Arts. 36-42).
    counter("gateway_objection_steps_total", "Steps of objections (filed, accepted late, resolved, review opened), by step."),
    gauge("gateway_objections", Some(Unit::Count), "Objections by state (filed_late, under_review, overdue, upheld, rejected)."),
    gauge("gateway_objections_nearest_deadline_seconds", Some(Unit::Seconds), "Seconds to the nearest review deadline of an objection under review (0 when none)."),
    counter("gateway_objection_deadline_warnings_total", "Objection reviews that came within one working day of their deadline (overdue=\"false\") or passed it (overdue=\"true\")."),
    counter("gateway_repair_steps_total", "Steps of credit repairs (accepted, refused, approved, extended, completed), by step."),
    gauge("gateway_repairs", Some(Unit::Count), "Credit repairs by state (under_review, overdue, refused, in_publicity, suspended, completed)."),
    gauge("gateway_repairs_nearest_deadline_seconds", Some(Unit::Seconds), "Seconds to the nearest decision deadline of a repair under review (0 when none)."),
    counter("gateway_repair_deadline_warnings_total", "Repair decisions that came within one working day of their deadline (overdue=\"false\") or passed it (overdue=\"true\")."),
    // The working-day calendar and the rules in force.
    gauge("gateway_calendar_days_left", None, "Days left in the working-day calendar (0 on its last day, negative past it); add next year's file before it runs out."),
    gauge("gateway_certificate_days_left", None, "Whole days until each certificate the gateway uses ends (server, client_ca, client:<agency>, destination:<id>); negative once ended. Refreshed hourly."),
    counter("gateway_calendar_year_missing_total", "Deadlines asked for a date before the first year of the working-day calendar."),
    counter("gateway_deadlines_provisional_total", "Deadlines counted past the last known calendar year (estimated, marked provisional), by kind (what)."),
    counter("gateway_deadlines_made_exact_total", "Provisional deadlines made exact once the calendar gained their year, by kind (what)."),
    gauge("gateway_rule_days_left", None, "Days left of each rule in force with an end date, by duty and rule (negative: days since it ended with nothing after it)."),
    gauge("gateway_rule_warnings", Some(Unit::Count), "Rules (and the calendar) ending within 60 days or ended with nothing after them: the warnings of `credit-gateway rules in-force`."),
    counter("gateway_rules_reloads_total", "Rules reloads, by outcome (applied, or refused: a rule file is broken and nothing changed)."),
    // Credit evaluation (GD Arts. 17-22).
    gauge("gateway_evaluation_cycle_done", Some(Unit::Count), "Subjects evaluated so far in the yearly evaluation cycle, by year."),
    gauge("gateway_evaluation_cycle_total", Some(Unit::Count), "Subjects the yearly evaluation cycle covers, by year."),
    counter("gateway_evaluation_failures_total", "Subjects whose evaluation result could not be built (their archive or the profile is wrong)."),
    counter("gateway_evaluation_not_evaluated_total", "Subjects left ungraded because no scoring profile is in force for them, by the profile that ended (ended_profile)."),
    counter("gateway_evaluation_queries_total", "Authorized evaluation queries (GD Art. 21), by outcome."),
    // Keys and operators.
    gauge("gateway_reencryption_resealed", Some(Unit::Count), "Stored values re-sealed under the current data key by the running re-encryption."),
    gauge("gateway_reencryption_pending", None, "1 while a re-encryption pass after a key rotation is unfinished, 0 when done."),
    counter("gateway_operator_actions_total", "Operator actions (CLI, console, operator API), by action."),
    counter("gateway_audit_write_failures_total", "Audit entries that could not be written (the writer or the store failed), by what they record (operator_request, operator_command, operator_sign_in, tls_reload, rules_reload, cli_command); above 0 the audit chain misses actions: see the error log."),
    // Several nodes on PostgreSQL.
    gauge("gateway_lease_held", None, "1 when this node holds the lease (delivery/<destination>, the trackers, the timers, evaluation, re-encryption), else 0; PostgreSQL nodes only."),
    counter("gateway_lease_changes_total", "Lease changes on this node, by lease and change (taken, lost: a renewal failed, released); PostgreSQL nodes only."),
    // Builds.
    gauge("gateway_test_clock", None, "1 when the test build's manual clock is on (corrections.dangerous_manual_clock); never present in a release build."),
];

/// The catalogue's entry for `name`.
pub fn find(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// Hand every metric's type, unit and description to the installed recorder, so `/metrics` has a
/// `# HELP` line for each family it renders.
pub fn describe_all() {
    for m in METRICS {
        match (m.kind, m.unit) {
            (Kind::Counter, Some(unit)) => metrics::describe_counter!(m.name, unit, m.help),
            (Kind::Counter, None) => metrics::describe_counter!(m.name, m.help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(m.name, unit, m.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(m.name, m.help),
            (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(m.name, unit, m.help),
            (Kind::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every metric the source emits: (file, name or the unreadable argument, macro kind). Reads the
    /// `.rs` files under `dir`, skipping this file (its tests name the macros in strings).
    fn emitted_in(dir: &std::path::Path) -> Vec<(String, Result<String, String>, Kind)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("src/ reads") {
                let path = entry.expect("src/ entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs")
                    || path.ends_with("telemetry/catalogue.rs")
                {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("source reads");
                let file = path.display().to_string();
                for kind in [Kind::Counter, Kind::Gauge, Kind::Histogram] {
                    let needle = format!("{}!(", kind.as_str());
                    for (at, _) in text.match_indices(&needle) {
                        // `describe_counter!(` and the like are descriptions, not emissions.
                        if text[..at].ends_with('_') {
                            continue;
                        }
                        let rest = text[at + needle.len()..].trim_start();
                        let name = rest
                            .strip_prefix('"')
                            .and_then(|r| r.split_once('"'))
                            .map(|(name, _)| name.to_string())
                            .ok_or_else(|| rest.chars().take(40).collect::<String>());
                        out.push((file.clone(), name, kind));
                    }
                }
            }
        }
        out
    }

    /// Every layer's sources: the server's `src/` and the workspace crates under `crates/`.
    fn sources() -> Vec<(String, Result<String, String>, Kind)> {
        let repo = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let mut out = emitted_in(&repo.join("src"));
        out.extend(emitted_in(&repo.join("crates")));
        out
    }

    #[test]
    fn every_metric_the_source_emits_is_described_with_its_type() {
        let emitted = sources();
        assert!(
            emitted.len() > 50,
            "the scan found only {} emissions: is it reading src/?",
            emitted.len()
        );
        let mut problems = Vec::new();
        for (file, name, kind) in &emitted {
            match name {
                Err(arg) => problems.push(format!(
                    "{file}: {}!({arg}…: name the metric with a string literal so it can be checked",
                    kind.as_str()
                )),
                Ok(name) => match find(name) {
                    None => problems.push(format!(
                        "{file}: {name} has no # HELP: add it to METRICS in crates/core/src/telemetry/catalogue.rs"
                    )),
                    Some(m) if m.kind != *kind => problems.push(format!(
                        "{file}: {name} is emitted as a {} but described as a {}",
                        kind.as_str(),
                        m.kind.as_str()
                    )),
                    Some(_) => {}
                },
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn every_described_metric_is_still_emitted_and_listed_once() {
        let emitted: BTreeSet<String> = sources()
            .into_iter()
            .filter_map(|(_, name, _)| name.ok())
            .collect();
        let mut seen = BTreeSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} is listed twice", m.name);
            assert!(
                emitted.contains(m.name),
                "{} is described but nothing in src/ emits it: remove it from METRICS",
                m.name
            );
            assert!(
                m.name.starts_with("gateway_")
                    && m.name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}: not a gateway metric name",
                m.name
            );
            assert!(
                !m.help.is_empty() && !m.help.contains('\n') && m.help.ends_with('.'),
                "{}: the help must be one sentence on one line",
                m.name
            );
            if m.kind == Kind::Counter {
                assert!(
                    m.name.ends_with("_total"),
                    "{}: a counter ends in _total",
                    m.name
                );
            }
        }
    }

    #[test]
    fn the_exporter_renders_help_and_type_for_every_metric() {
        let recorder = super::super::prometheus_builder()
            .expect("the buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe_all();
            for m in METRICS {
                match m.kind {
                    Kind::Counter => metrics::counter!(m.name).increment(1),
                    Kind::Gauge => metrics::gauge!(m.name).set(1.0),
                    Kind::Histogram => metrics::histogram!(m.name).record(1.0),
                }
            }
        });
        let text = handle.render();
        for m in METRICS {
            let help = format!("# HELP {} {}\n", m.name, m.help);
            let kind = format!("# TYPE {} {}\n", m.name, m.kind.as_str());
            assert!(text.contains(&help), "no {help:?} in\n{text}");
            assert!(text.contains(&kind), "no {kind:?} in\n{text}");
        }
    }
}
