//! A reload of the rulebook, by SIGHUP or by an operator's action (console, operator API, CLI).
//!
//! Owns: reading the configuration file and every rule file again, refusing the whole when any
//! part is broken (nothing changes, every error is reported and audited), putting the rest in
//! force, saying which settings of the configuration file still need a restart, and starting the
//! follow-up work a change needs: every stored record re-checked under new sharing, disclosure or
//! notice rules; the running year's evaluation run again under new scoring profiles.
//!
//! Never does: reload TLS material or keys (the SIGHUP handler does, beside this), or apply a rule.
//!
//! Invariants: one reload at a time; the audit entry names the trigger, the operator, each kind's
//! old and new hash, and the errors of a refused reload.

use std::path::PathBuf;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{json, Value};

use super::{Change, Live, RuleError, Rulebook};
use crate::audit::AuditEvent;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::exchange::ApplyJob;
use crate::exchange::CommitterHandle;
use crate::store::Store;
use crate::subject::IdentifierExceptions;

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Sighup,
    Operator,
}

/// What a reload did, as the operator is told and the audit chain keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every kind loaded and the whole is in force (`false`: nothing changed).
    pub ok: bool,
    pub trigger: Trigger,
    pub by: String,
    pub changes: Vec<Change>,
    pub errors: Vec<RuleError>,
    /// Sections of the configuration file that changed but take effect only at a restart.
    pub restart_needed: Vec<String>,
    /// Follow-up work started: "records_recheck" (all stored records), "evaluation_rerun" (the
    /// running year's cycle).
    pub started: Vec<String>,
    /// The hash of every kind in force after the reload.
    pub in_force: std::collections::BTreeMap<String, String>,
}

/// Configuration sections a reload puts in force (the rest need a restart).
const RELOADED_SECTIONS: [&str; 3] = ["agencies", "operators", "tls"];

pub struct Reloader {
    pub live: Live,
    /// Where the configuration was read from at start (`None`: the default file, if any).
    pub config_file: Option<PathBuf>,
    /// The configuration whose reloadable parts are in force, to tell what still needs a restart.
    pub applied: Mutex<Config>,
    pub committer: CommitterHandle,
    pub store: Store,
    pub exceptions: IdentifierExceptions,
    pub clock: SharedClock,
    /// Whether evaluation runs (a profile change then starts a re-evaluation).
    pub evaluation: bool,
    pub serial: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// Read the configuration file and every rule file; put the whole in force or nothing.
    pub async fn reload(&self, trigger: Trigger, by: &str) -> Report {
        let _one_at_a_time = self.serial.lock().await;
        let file = self.config_file.clone();
        let loaded = tokio::task::spawn_blocking(move || load_all(file.as_deref())).await;
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => Err(vec![RuleError {
                kind: "config",
                message: format!("the reload task failed: {e}"),
            }]),
        };
        let mut report = Report {
            ok: false,
            trigger,
            by: by.to_string(),
            changes: Vec::new(),
            errors: Vec::new(),
            restart_needed: Vec::new(),
            started: Vec::new(),
            in_force: self.live.hashes(),
        };
        match loaded {
            Err(errors) => {
                for e in &errors {
                    tracing::error!(kind = e.kind, error = %e.message, ?trigger, "rules reload failed: nothing changed");
                }
                metrics::counter!("gateway_rules_reloads_total", "outcome" => "refused")
                    .increment(1);
                report.errors = errors;
                self.audit(AuditEvent::RulesReloadRefused, &report).await;
            }
            Ok((config, book)) => {
                report.ok = true;
                report.changes = self.live.install(book);
                for change in &report.changes {
                    match change.kind.as_str() {
                        "calendar" => {
                            let years = self.live.calendar.current().known_years();
                            tracing::info!(
                                first = years.start(),
                                last = years.end(),
                                ?trigger,
                                "working-day calendar reloaded"
                            );
                        }
                        "sharing_disclosure_notice" => {
                            tracing::info!(rules_hash = %change.to, ?trigger, "sharing, disclosure and public-notice rules reloaded")
                        }
                        kind => {
                            tracing::info!(kind, from = %change.from, to = %change.to, ?trigger, "{kind} reloaded")
                        }
                    }
                }
                report.restart_needed = self.restart_needed(&config);
                report.in_force = self.live.hashes();
                let changed = |k: &str| report.changes.iter().any(|c| c.kind == k);
                if changed("sharing_disclosure_notice") {
                    report.started.push("records_recheck".into());
                }
                if changed("scoring_profiles") && self.evaluation {
                    report.started.push("evaluation_rerun".into());
                }
                metrics::counter!("gateway_rules_reloads_total", "outcome" => "applied")
                    .increment(1);
                tracing::info!(
                    ?trigger,
                    by,
                    changed = ?report.changes.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>(),
                    restart_needed = ?report.restart_needed,
                    "rules reloaded"
                );
                for section in &report.restart_needed {
                    tracing::warn!(section, "the configuration file's [{section}] changed; it takes effect at the next restart");
                }
                self.audit(AuditEvent::RulesReloaded, &report).await;
                self.follow_up(&report).await;
            }
        }
        report
    }

    /// Sections that differ from the configuration in force, other than those a reload applies
    /// (and the rule-file paths, which the rulebook just loaded). The reloaded parts become the
    /// ones in force.
    fn restart_needed(&self, new: &Config) -> Vec<String> {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        applied.agencies = new.agencies.clone();
        applied.operators = new.operators.clone();
        applied.tls = new.tls.clone();
        applied.sharing.rules = new.sharing.rules.clone();
        applied.sharing.disclosure = new.sharing.disclosure.clone();
        applied.sharing.public_notice = new.sharing.public_notice.clone();
        applied.objections.rules = new.objections.rules.clone();
        applied.repairs.rules = new.repairs.rules.clone();
        applied.evaluation.profiles = new.evaluation.profiles.clone();
        applied.corrections.calendar_dir = new.corrections.calendar_dir.clone();
        let (old, new) = (
            serde_json::to_value(&*applied).unwrap_or(Value::Null),
            serde_json::to_value(new).unwrap_or(Value::Null),
        );
        let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
            return Vec::new();
        };
        new.iter()
            .filter(|(k, v)| !RELOADED_SECTIONS.contains(&k.as_str()) && old.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect()
    }

    async fn audit(&self, kind: AuditEvent, report: &Report) {
        let written = match crate::exchange::event_data(kind, report) {
            Ok(data) => self
                .committer
                .apply(ApplyJob::new(kind, data))
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            crate::telemetry::events::audit_write_failed("rules_reload", &e);
        }
    }

    /// The work a change needs, in the background: its progress is in the audit chain, the log
    /// and (for evaluation) the cycle's view.
    async fn follow_up(&self, report: &Report) {
        if report.started.iter().any(|s| s == "records_recheck") {
            let (store, committer, router, exceptions, clock) = (
                self.store.clone(),
                self.committer.clone(),
                self.live.router.current(),
                self.exceptions.clone(),
                self.clock.clone(),
            );
            tokio::spawn(async move {
                let now = move || clock.now();
                match crate::ledger::recheck::recheck_all(
                    store,
                    committer,
                    router,
                    exceptions,
                    now,
                    "rules_reloaded",
                )
                .await
                {
                    Ok((checked, changed)) => tracing::info!(
                        checked,
                        changed,
                        "stored records re-checked under the reloaded rules"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "re-checking stored records after the rules reload failed")
                    }
                }
            });
        }
        if report.started.iter().any(|s| s == "evaluation_rerun") {
            let now = self.clock.now();
            let year = crate::evaluation::engine::today(now).year();
            if let Err(e) = crate::evaluation::worker::start_rerun(
                &self.store,
                &self.committer,
                year,
                None,
                now,
                "scoring_profiles_reloaded",
                &report.by,
            )
            .await
            {
                tracing::error!(error = %e, "the re-evaluation after the profiles reload could not start");
            }
        }
    }
}

/// The configuration file and the rulebook it names, every error at once.
fn load_all(file: Option<&std::path::Path>) -> Result<(Config, Rulebook), Vec<RuleError>> {
    let config = Config::load(file).map_err(|errs| {
        errs.iter()
            .map(|e| RuleError {
                kind: "config",
                message: e.to_string(),
            })
            .collect::<Vec<_>>()
    })?;
    let book = Rulebook::load(&config)?;
    Ok((config, book))
}

/// The report as the operator API answers it.
pub fn report_json(report: &Report) -> Value {
    json!(report)
}
