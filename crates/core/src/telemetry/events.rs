//! One function per thing that happens: the log line and the metric together.

use std::time::Duration;

pub fn batch_received(
    agency: &str,
    mapping: &str,
    receipt_id: &str,
    accepted: usize,
    rejected: usize,
    new: usize,
    elapsed: Duration,
) {
    tracing::info!(
        agency,
        mapping,
        receipt_id,
        accepted,
        rejected,
        new,
        elapsed_ms = elapsed.as_millis() as u64,
        "batch received"
    );
    metrics::counter!("gateway_batches_total", "agency" => agency.to_string(), "mapping" => mapping.to_string()).increment(1);
    metrics::counter!("gateway_records_accepted_total", "agency" => agency.to_string(), "mapping" => mapping.to_string()).increment(accepted as u64);
    metrics::counter!("gateway_records_rejected_total", "agency" => agency.to_string(), "mapping" => mapping.to_string()).increment(rejected as u64);
    metrics::histogram!("gateway_batch_seconds").record(elapsed.as_secs_f64());
}

/// A file taken (`POST /v1/files`, issue #29): its receipt's counts.
#[allow(clippy::too_many_arguments)]
pub fn file_received(
    agency: &str,
    mapping: &str,
    receipt_id: &str,
    format: &'static str,
    total: usize,
    accepted: usize,
    rejected: usize,
    elapsed: Duration,
) {
    tracing::info!(
        agency,
        mapping,
        receipt_id,
        format,
        total,
        accepted,
        rejected,
        elapsed_ms = elapsed.as_millis() as u64,
        "file received"
    );
    metrics::counter!("gateway_files_total", "agency" => agency.to_string(), "mapping" => mapping.to_string(), "format" => format).increment(1);
}

/// A file being taken (API or folder), from its first read to its receipt: the files in
/// progress and the rows of theirs already committed, both gauges, given back when dropped (a
/// file refused or failed half-way too).
pub struct FileInProgress {
    via: &'static str,
    rows: std::sync::atomic::AtomicUsize,
}

impl FileInProgress {
    /// `via`: `api` or `folder`.
    pub fn start(via: &'static str) -> FileInProgress {
        metrics::gauge!("gateway_files_in_progress", "via" => via).increment(1.0);
        FileInProgress {
            via,
            rows: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A chunk of the file's rows is durable.
    pub fn rows(&self, rows: usize) {
        self.rows
            .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!("gateway_file_rows_in_progress", "via" => self.via).increment(rows as f64);
    }
}

impl Drop for FileInProgress {
    fn drop(&mut self) {
        metrics::gauge!("gateway_files_in_progress", "via" => self.via).decrement(1.0);
        metrics::gauge!("gateway_file_rows_in_progress", "via" => self.via)
            .decrement(self.rows.load(std::sync::atomic::Ordering::Relaxed) as f64);
    }
}

/// The same file (its SHA-256) handed in again by the agency with the same mapping: answered
/// with the earlier receipt's counts, nothing stored again.
pub fn file_repeated(
    agency: &str,
    mapping: &str,
    receipt_id: &str,
    repeat_of: &str,
    elapsed: Duration,
) {
    tracing::info!(
        agency,
        mapping,
        receipt_id,
        repeat_of,
        elapsed_ms = elapsed.as_millis() as u64,
        "file repeated: nothing stored again"
    );
    metrics::counter!("gateway_files_repeated_total", "agency" => agency.to_string()).increment(1);
}

/// A file of an agency's exchange folder is finished: moved to `done/` (taken, a repeat too) or
/// `rejected/` (refused whole), its feedback file beside it. Never the file's name (it may
/// name a person); its receipt id instead.
pub fn folder_file(
    agency: &str,
    receipt_id: &str,
    outcome: &'static str,
    code: Option<&str>,
    accepted: usize,
    rejected: usize,
) {
    tracing::info!(
        agency,
        receipt_id,
        outcome,
        code,
        accepted,
        rejected,
        "folder file finished"
    );
    metrics::counter!("gateway_folder_files_total", "agency" => agency.to_string(), "outcome" => outcome).increment(1);
    metrics::counter!("gateway_folder_rows_total", "agency" => agency.to_string(), "outcome" => "accepted").increment(accepted as u64);
    metrics::counter!("gateway_folder_rows_total", "agency" => agency.to_string(), "outcome" => "rejected").increment(rejected as u64);
}

/// A folder cannot be read or written (missing, permissions, a full disk): the folder is
/// looked at again at its next poll.
pub fn folder_unavailable(agency: &str, error: &str) {
    tracing::warn!(agency, error, "exchange folder unavailable");
    metrics::counter!("gateway_folder_errors_total", "agency" => agency.to_string()).increment(1);
}

/// A chunk of a file's rows committed: the file's progress, as its batches go.
pub fn file_rows(agency: &str, mapping: &str, rows: usize) {
    metrics::counter!("gateway_file_rows_total", "agency" => agency.to_string(), "mapping" => mapping.to_string()).increment(rows as u64);
}

/// A rejected record: its index and source id and the field, never the value.
pub fn record_rejected(
    agency: &str,
    mapping: &str,
    index: usize,
    record_id: Option<&str>,
    field: &str,
) {
    tracing::debug!(agency, mapping, index, record_id, field, "record rejected");
}

pub fn request_refused(agency: &str, code: &'static str, status: u16) {
    tracing::info!(agency, code, status, "request refused");
    metrics::counter!("gateway_requests_refused_total", "code" => code).increment(1);
}

pub fn handshake_failed(peer: std::net::SocketAddr, error: &str) {
    tracing::info!(%peer, error, "TLS handshake failed");
    metrics::counter!("gateway_tls_handshake_failures_total").increment(1);
}

/// A connection still in its TLS handshake closed to make room for a newer one
/// (`server.max_handshakes`): silent ones go first.
pub fn handshake_evicted(peer: std::net::SocketAddr, silent: bool) {
    tracing::debug!(%peer, silent, "connection closed in its TLS handshake to make room");
    let why = if silent {
        "silent_handshake_evicted"
    } else {
        "handshake_evicted"
    };
    metrics::counter!("gateway_connections_refused_total", "why" => why).increment(1);
}

/// An established connection is being closed gracefully (its in-flight requests finish):
/// `max_age` (`server.max_connection_age_ms`) or `certificate_no_longer_trusted` (a reload
/// revoked or otherwise no longer accepts its client certificate).
pub fn connection_closing(agency: &str, why: &'static str) {
    tracing::info!(agency, why, "closing a connection gracefully");
    metrics::counter!("gateway_connections_closed_total", "why" => why).increment(1);
}

pub fn connection_opened() {
    metrics::gauge!("gateway_open_connections").increment(1.0);
}

pub fn connection_closed() {
    metrics::gauge!("gateway_open_connections").decrement(1.0);
}

pub fn archive_read(agency: &str, found: bool) {
    tracing::info!(agency, found, "subject archive read");
    metrics::counter!("gateway_archive_reads_total", "agency" => agency.to_string()).increment(1);
}

/// A record held back from a platform by the disclosure filter: the rule, never the value.
pub fn share_withheld(destination: &str, channel: &str, rule: &'static str) {
    tracing::info!(
        destination,
        channel,
        rule,
        "share withheld by the disclosure filter"
    );
    metrics::counter!("gateway_disclosure_withheld_total", "channel" => channel.to_string(), "rule" => rule).increment(1);
}

/// A field masked or dropped by the disclosure filter: its path and the rule, never the value.
pub fn field_masked(destination: &str, channel: &str, field: &str, rule: &'static str) {
    tracing::debug!(destination, channel, field, rule, "field masked or dropped");
    metrics::counter!("gateway_disclosure_fields_total", "channel" => channel.to_string(), "rule" => rule).increment(1);
}

pub fn delivered(destination: &str, shares: usize, elapsed: Duration) {
    tracing::debug!(
        destination,
        shares,
        elapsed_ms = elapsed.as_millis() as u64,
        "shares delivered"
    );
    metrics::counter!("gateway_deliveries_total", "destination" => destination.to_string())
        .increment(1);
    metrics::counter!("gateway_shares_delivered_total", "destination" => destination.to_string())
        .increment(shares as u64);
    metrics::histogram!("gateway_delivery_seconds", "destination" => destination.to_string())
        .record(elapsed.as_secs_f64());
}

/// A failed delivery. Warned on the first failure and then every 100th, so an outage does not
/// flood the log; every one is counted.
pub fn delivery_retry(destination: &str, error: &str, wait: Duration, consecutive: u64) {
    if consecutive == 1 || consecutive.is_multiple_of(100) {
        tracing::warn!(
            destination,
            error,
            consecutive,
            wait_ms = wait.as_millis() as u64,
            "delivery failed; will retry"
        );
    } else {
        tracing::debug!(
            destination,
            error,
            consecutive,
            wait_ms = wait.as_millis() as u64,
            "delivery failed; will retry"
        );
    }
    metrics::counter!("gateway_delivery_retries_total", "destination" => destination.to_string())
        .increment(1);
}

pub fn dead_lettered(destination: &str, record_id: &str, status: u16) {
    tracing::warn!(
        destination,
        record_id,
        status,
        "share refused by the platform; moved to dead letters"
    );
    metrics::counter!("gateway_dead_letters_total", "destination" => destination.to_string())
        .increment(1);
}

/// A batch file written into a file destination's outgoing folder.
pub fn file_written(destination: &str, file: &str, records: usize, layout: &str) {
    tracing::info!(destination, file, records, layout, "batch file written");
    metrics::counter!("gateway_files_written_total", "destination" => destination.to_string())
        .increment(1);
}

/// The platform took a batch file out of its outgoing folder.
pub fn file_picked_up(destination: &str, file: &str, after_seconds: f64) {
    tracing::info!(destination, file, after_seconds, "batch file picked up");
    metrics::counter!("gateway_files_picked_up_total", "destination" => destination.to_string())
        .increment(1);
}

/// A feedback file answered a batch file: shares accepted, refused, and to retry.
pub fn file_answered(destination: &str, file: &str, accepted: usize, refused: usize, retry: usize) {
    tracing::info!(
        destination,
        file,
        accepted,
        refused,
        retry,
        "feedback file applied"
    );
    for (result, n) in [
        ("accepted", accepted),
        ("rejected", refused),
        ("retry", retry),
    ] {
        metrics::counter!("gateway_file_feedback_records_total", "destination" => destination.to_string(), "result" => result)
            .increment(n as u64);
    }
}

/// A feedback file that cannot be read: moved to `invalid/`, the file counts as unanswered.
pub fn file_feedback_invalid(destination: &str, file: &str, why: &str) {
    tracing::warn!(
        destination,
        file,
        error = why,
        "feedback file refused; moved to invalid/ and the shares will be written again"
    );
    metrics::counter!("gateway_file_feedback_invalid_total", "destination" => destination.to_string())
        .increment(1);
}

/// A batch file got no feedback within the destination's `feedback_timeout_ms`.
pub fn file_unanswered(destination: &str, file: &str, picked_up: bool) {
    tracing::warn!(
        destination,
        file,
        picked_up,
        "batch file not answered in time; its shares will be written again"
    );
    metrics::counter!("gateway_files_unanswered_total", "destination" => destination.to_string())
        .increment(1);
}

/// A deadline could not be counted: the date lies *before* the first known calendar year (past the
/// last one, deadlines are estimated instead, issue #26). The operator's to fix.
pub fn calendar_year_missing(year: i32) {
    tracing::error!(
        year,
        "a correction needs {year} but the working-day calendar does not have it: add mappings/calendar/{year}.toml from the State Council notice and send SIGHUP (GD Art. 31 deadlines cannot be set)"
    );
    metrics::counter!("gateway_calendar_year_missing_total").increment(1);
}

/// Days left in the working-day calendar; warns (once a day, by the caller) when they run short.
pub fn calendar_coverage(days_left: i64, note: Option<&str>) {
    metrics::gauge!("gateway_calendar_days_left").set(days_left as f64);
    if let Some(note) = note {
        tracing::warn!(days_left, "{note}");
    }
}

pub fn outbox_depth(destination: &str, pending: usize, dead: usize, oldest_age_seconds: f64) {
    metrics::gauge!("gateway_outbox_depth", "destination" => destination.to_string())
        .set(pending as f64);
    metrics::gauge!("gateway_dead_letter_depth", "destination" => destination.to_string())
        .set(dead as f64);
    metrics::gauge!("gateway_outbox_oldest_pending_seconds", "destination" => destination.to_string()).set(oldest_age_seconds);
}

/// An audit entry could not be written (the writer or the store failed): what it records
/// happened, or was answered, but the chain does not say so. Never dropped silently: an error
/// line and a count by what the entry records, for the operator to alert on.
pub fn audit_write_failed(what: &str, error: &dyn std::fmt::Display) {
    tracing::error!(what, error = %error, "an audit entry could not be written: the audit chain misses this action");
    metrics::counter!("gateway_audit_write_failures_total", "what" => what.to_string())
        .increment(1);
}

pub fn operator_action(action: &str, detail: &str) {
    tracing::info!(action, detail, "operator action");
    metrics::counter!("gateway_operator_actions_total", "action" => action.to_string())
        .increment(1);
}

pub fn correction_received(id: &str, record_id: &str, deadline: &str, destinations: usize) {
    tracing::info!(
        correction = id,
        record_id,
        deadline,
        destinations,
        "correction received (GD Art. 31)"
    );
    metrics::counter!("gateway_corrections_received_total").increment(1);
}

pub fn correction_delivered(id: &str, destination: &str, on_time: bool) {
    tracing::info!(
        correction = id,
        destination,
        on_time,
        "correction acknowledged by the platform"
    );
    metrics::counter!("gateway_corrections_delivered_total", "on_time" => on_time.to_string())
        .increment(1);
}

pub fn delivery_recovered(destination: &str, failures: u64) {
    tracing::info!(
        destination,
        failures,
        "platform reachable again; delivery resumed"
    );
}

/// The publication ledger queued a publication (cause: `push`, `timer`, `objection`…).
pub fn ledger_publication_queued(cause: &str) {
    metrics::counter!("gateway_ledger_publications_total", "cause" => cause.to_string())
        .increment(1);
}

/// The publication ledger queued a withdrawal of a record from a platform's channel.
pub fn ledger_withdrawal_queued(
    cause: &str,
    record_id: &str,
    destination: &str,
    channel: &str,
    reason: &str,
) {
    tracing::info!(
        cause,
        record_id,
        destination,
        channel,
        reason,
        "withdrawal queued"
    );
    metrics::counter!("gateway_ledger_withdrawals_total", "cause" => cause.to_string(), "reason" => reason.to_string())
        .increment(1);
}

/// A stored record could not be re-planned (it no longer validates, e.g. an identifier exception
/// was removed): it keeps what platforms hold until an operator acts.
pub fn recheck_failed(record_id: &str, why: &str) {
    tracing::error!(record_id, why, "stored record could not be re-checked");
    metrics::counter!("gateway_ledger_recheck_failures_total").increment(1);
}

/// Progress of a re-check of every stored record (after a rules reload).
pub fn recheck_progress(cause: &str, checked: usize, changed: usize, done: bool) {
    tracing::info!(cause, checked, changed, done, "re-checking stored records");
}

pub fn subject_standing_changed(
    exited: bool,
    reason: &str,
    withdrawals: usize,
    publications: usize,
) {
    tracing::info!(
        exited,
        reason,
        withdrawals,
        publications,
        "subject standing changed"
    );
    metrics::counter!("gateway_subject_standing_changes_total", "exited" => exited.to_string())
        .increment(1);
}

/// A step of an objection (filed, accepted late, resolved, review opened): how many shares it
/// queued (marks, unmarks, withdrawals).
pub fn objection_step(step: &str, objection_id: &str, queued: usize) {
    tracing::info!(step, objection_id, queued, "objection");
    metrics::counter!("gateway_objection_steps_total", "step" => step.to_string()).increment(1);
}

/// An objection under review nears or passes its deadline (LS Art. 23).
pub fn objection_deadline(objection_id: &str, deadline: &str, overdue: bool) {
    if overdue {
        tracing::warn!(
            objection_id,
            deadline,
            "objection review is overdue (LS Art. 23: 15 working days)"
        );
    } else {
        tracing::warn!(
            objection_id,
            deadline,
            "objection review has less than one working day left (LS Art. 23)"
        );
    }
    metrics::counter!("gateway_objection_deadline_warnings_total", "overdue" => overdue.to_string())
        .increment(1);
}

/// A step of a credit repair (accepted, refused, approved, extended, completed).
pub fn repair_step(step: &str, repair_id: &str, queued: usize) {
    tracing::info!(step, repair_id, queued, "credit repair");
    metrics::counter!("gateway_repair_steps_total", "step" => step.to_string()).increment(1);
}

/// A repair decision nears or passes its deadline (LS Art. 40).
pub fn repair_deadline(repair_id: &str, deadline: &str, overdue: bool) {
    if overdue {
        tracing::warn!(
            repair_id,
            deadline,
            "credit repair decision is overdue (LS Art. 40)"
        );
    } else {
        tracing::warn!(
            repair_id,
            deadline,
            "credit repair decision has less than one working day left (LS Art. 40)"
        );
    }
    metrics::counter!("gateway_repair_deadline_warnings_total", "overdue" => overdue.to_string())
        .increment(1);
}

/// A connection closed right after its handshake: its agency's slots are full, or it sent nothing.
pub fn connection_refused(agency: &str, why: &'static str) {
    tracing::info!(agency, why, "connection closed after the TLS handshake");
    metrics::counter!("gateway_connections_refused_total", "why" => why).increment(1);
}

/// Free space crossed the reserve (`storage.min_free_mb`).
pub fn disk_reserve(low: bool, free: u64, reserve: u64) {
    if low {
        tracing::error!(free_bytes = free, reserve_bytes = reserve, "free disk space is below the reserve: new work is refused (503 storage_full) until space returns");
    } else {
        tracing::warn!(
            free_bytes = free,
            reserve_bytes = reserve,
            "free disk space is above the reserve again: accepting work"
        );
    }
    metrics::counter!("gateway_disk_reserve_crossings_total", "below" => low.to_string())
        .increment(1);
}

/// Progress of a yearly evaluation cycle (LS Art. 20).
pub fn evaluation_cycle(year: i32, done: u64, total: u64, finished: bool) {
    tracing::info!(year, done, total, finished, "evaluation cycle");
    metrics::gauge!("gateway_evaluation_cycle_done", "year" => year.to_string()).set(done as f64);
    metrics::gauge!("gateway_evaluation_cycle_total", "year" => year.to_string()).set(total as f64);
}

/// A subject whose result could not be built (its archive or the profile is wrong).
pub fn evaluation_failed(subject_token: &str, why: &str) {
    tracing::error!(
        subject = subject_token,
        why,
        "subject could not be evaluated"
    );
    metrics::counter!("gateway_evaluation_failures_total").increment(1);
}

/// An authorized query (GD Art. 21), answered or refused. Never logs the token.
pub fn authorized_query(caller: &str, outcome: &str) {
    tracing::info!(caller, outcome, "authorized evaluation query");
    metrics::counter!("gateway_evaluation_queries_total", "outcome" => outcome.to_string())
        .increment(1);
}

/// A deadline counted past the last known calendar year was estimated (issue #26).
pub fn deadline_provisional(what: &str, id: &str, deadline: &str) {
    tracing::warn!(
        what,
        id,
        deadline,
        "deadline counted past the last known calendar year: provisional estimate until the year's file is added (see docs/operate/rules.md, how to add a calendar year)"
    );
    metrics::counter!("gateway_deadlines_provisional_total", "what" => what.to_string())
        .increment(1);
}

/// A provisional deadline became exact after the calendar gained its year (issue #26).
pub fn deadline_made_exact(what: &str, id: &str) {
    tracing::info!(
        what,
        id,
        "provisional deadline recomputed on the calendar now loaded: exact"
    );
    metrics::counter!("gateway_deadlines_made_exact_total", "what" => what.to_string())
        .increment(1);
}
