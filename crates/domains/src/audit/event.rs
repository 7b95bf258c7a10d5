//! The kinds of entry the audit chain holds ([`AuditEvent`]), one per step that writes one.
//!
//! A kind is stored and hashed as its name (`kind` of an [`Entry`](super::Entry)), so a name
//! never changes once written: a renamed variant keeps its old string, and a step that stops
//! writing a kind keeps the variant so that its entries are still named here. Readers of stored
//! entries (`audit show`, `/audit/entries`, the console) keep the kind as the string it was
//! stored with and never refuse one they do not know: this enum names what is written, not what
//! may be read.
//!
//! Reference for operators: the table "Kinds of entries" in `docs/operate/audit.md` lists every
//! name (a test below checks it does).

/// Declares the enum, its names and its list in one place, so that a variant cannot lack a name
/// nor a name a variant.
macro_rules! audit_events {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)+) => {
        /// Every kind of entry the audit chain can hold, named by the step that writes it (LS
        /// Art. 43: every exchange and every operator's action is audited; GD Art. 12).
        ///
        /// The only way to name a kind when writing: [`Group::audit`](crate::exchange::Group::audit),
        /// [`ApplyJob`](crate::exchange::ApplyJob) and
        /// [`ReconcileJob`](crate::ledger::stage::ReconcileJob) take one. [`AuditEvent::as_str`]
        /// is the stored name, byte for byte what was written before the enum existed.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditEvent {
            $($(#[$doc])* $variant,)+
        }

        impl AuditEvent {
            /// Every kind, in the order declared.
            pub const ALL: &'static [AuditEvent] = &[$(AuditEvent::$variant,)+];

            /// The name stored in the chain (and hashed with the entry).
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(AuditEvent::$variant => $name,)+
                }
            }

            /// The kind stored as `name`, if it is one this release writes.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(AuditEvent::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

audit_events! {
    // Agencies' exchanges (`ingest`).
    /// A JSON batch taken (`POST /v1/batches`, `ingest/batch.rs`): its per-record outcomes and
    /// filter decisions (GD Art. 10, GD Art. 12).
    BatchReceived => "batch_received",
    /// A file taken whole (`POST /v1/files`, the watched folder, the console's upload;
    /// `ingest/files.rs`): its SHA-256, size, format, sheet and counts.
    FileReceived => "file_received",
    /// A file handed in again with the same bytes (`ingest/files.rs`): answered with the first
    /// receipt, nothing stored again.
    FileRepeated => "file_repeated",
    /// A file of the watched folder refused whole (`ingest/folder.rs`).
    FileRefused => "file_refused",
    /// An authorized query of a subject's evaluation (`evaluation/agency.rs`; GD Art. 21: every
    /// query audited).
    EvaluationQuery => "evaluation_query",

    // Corrections (GD Art. 31).
    /// A correction received, with its deadline (`corrections/stage.rs`).
    CorrectionReceived => "correction_received",
    /// Provisional correction deadlines made exact once the calendar covers them
    /// (`corrections/tracker.rs`).
    CorrectionDeadlinesExact => "correction_deadlines_exact",

    // Objections (GD Art. 32-34; LS Art. 21, 23), `objections/flow.rs`.
    /// An objection filed in time: its records marked 异议标注 (LS Art. 23).
    ObjectionFiled => "objection_filed",
    /// An objection to an evaluation result filed past its window (LS Art. 21): held, unmarked.
    ObjectionFiledLate => "objection_filed_late",
    /// A late objection accepted by an operator (`objections accept-late`; LS Art. 21).
    ObjectionLateAccepted => "objection_late_accepted",
    /// An objection resolved (upheld: eliminated; rejected: the mark removed), the subject told
    /// (GD Art. 33; LS Art. 23).
    ObjectionResolved => "objection_resolved",
    /// The correction that carried out an upheld objection linked to it.
    ObjectionCorrectionLinked => "objection_correction_linked",
    /// Review by the level above opened on a rejected objection (GD Art. 34).
    ObjectionReviewOpened => "objection_review_opened",
    /// A provisional review deadline made exact once the calendar covers it.
    ObjectionDeadlineExact => "objection_deadline_exact",

    // Repairs (GD Art. 36-39; LS Art. 38-41), `repairs/flow.rs`.
    /// A repair application refused as ineligible (LS Art. 38, 40, 41).
    RepairRefusedIneligible => "repair_refused_ineligible",
    /// A repair application accepted for decision (GD Art. 36; LS Art. 39).
    RepairAccepted => "repair_accepted",
    /// A repair approved: its publicity starts (GD Art. 37; LS Art. 40).
    RepairApproved => "repair_approved",
    /// A repair refused on decision.
    RepairRefused => "repair_refused",
    /// The decision deadline extended once (LS Art. 40).
    RepairExtended => "repair_extended",
    /// A repair completed: its records marked 修复 and withdrawn (GD Art. 38; LS Art. 40).
    RepairCompleted => "repair_completed",
    /// A commitment found broken, recorded in the subject's archive (GD Art. 39; LS Art. 41).
    RepairCommitmentBroken => "repair_commitment_broken",
    /// A provisional decision or publicity deadline made exact once the calendar covers it.
    RepairDeadlineExact => "repair_deadline_exact",

    // The publication ledger (`ledger`).
    /// Records re-planned at their timer (validity, notice periods; `ledger/timers.rs`).
    LifecycleTimer => "lifecycle_timer",
    /// Every stored record re-planned after a rule reload (`ledger/recheck.rs`).
    LedgerRechecked => "ledger_rechecked",
    /// A subject exited: every platform copy withdrawn (LS Art. 20; `ledger/recheck.rs`).
    SubjectExited => "subject_exited",
    /// A subject re-entered: its records shared again (LS Art. 20; `ledger/recheck.rs`).
    SubjectReentered => "subject_reentered",

    // Evaluation (GD Art. 18-25; LS Art. 19, 24, 27), `evaluation`.
    /// Changed subjects re-evaluated (GD Art. 18; `evaluation/worker.rs`).
    Evaluation => "evaluation",
    /// A step of a year's evaluation cycle (`evaluation/worker.rs`).
    EvaluationCycle => "evaluation_cycle",
    /// A re-evaluation of a year started (`evaluation rerun`; `evaluation/worker.rs`).
    EvaluationRerunStarted => "evaluation_rerun_started",
    /// A year's results published (GD Art. 25; LS Art. 24, 27; `evaluation/publish.rs`).
    EvaluationPublished => "evaluation_published",

    // Delivery to the platforms (GD Art. 6), `delivery`.
    /// Shares acknowledged by their platform (`delivery/mod.rs`).
    ShareDelivered => "share_delivered",
    /// A share the platform refused for good, moved to the dead letters.
    ShareDeadLettered => "share_dead_lettered",
    /// A file written for a file destination.
    FileWritten => "file_written",
    /// A written file taken by its platform.
    FilePickedUp => "file_picked_up",
    /// A file's feedback applied (each share acknowledged or refused), or found answered at a
    /// restart: its record removed.
    FileAnswered => "file_answered",
    /// A written file that could not be published, taken back (its shares are written again).
    FileWithdrawn => "file_withdrawn",
    /// A file whose feedback could not be read, taken back (its shares are written again).
    FileFeedbackInvalid => "file_feedback_invalid",
    /// A file left unanswered past `feedback_timeout_ms`, taken back if not picked up (its
    /// shares are written again).
    FileUnanswered => "file_unanswered",

    // Operators (GD Art. 12; LS Art. 43: operators' actions audited).
    /// A request of the operator API (`src/operator/mod.rs`).
    OperatorRequest => "operator_request",
    /// An operator signed in.
    OperatorSignIn => "operator_sign_in",
    /// A sign-in refused (wrong name or password); attempts while locked are not chained.
    OperatorSignInFailed => "operator_sign_in_failed",
    /// An operator's command or read (`outbox`, `ledger`, `objections`, `repairs`, `audit`
    /// commands and their API; `outbox/ops.rs`), with the command and its detail.
    OperatorCommand => "operator_command",
    /// Dead letters replayed by an operator (`outbox/ops.rs`).
    OperatorOutboxReplay => "operator_outbox_replay",
    /// Certificates and keys reloaded (SIGHUP; `app.rs`).
    OperatorTlsReload => "operator_tls_reload",

    // The gateway's own upkeep.
    /// The rulebook reloaded, with each changed kind's old and new hash (`rulebook/reload.rs`).
    RulesReloaded => "rules_reloaded",
    /// A rulebook reload refused, with every error (`rulebook/reload.rs`).
    RulesReloadRefused => "rules_reload_refused",
    /// Re-encryption under a new data key started (`privacy/reencrypt.rs`).
    ReencryptionStarted => "reencryption_started",
    /// Re-encryption under a new data key finished (`privacy/reencrypt.rs`).
    ReencryptionFinished => "reencryption_finished",
    /// An online backup taken, or its failure (`backup.rs`).
    Backup => "backup",
}

impl std::fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name_and_the_names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for kind in AuditEvent::ALL {
            assert_eq!(AuditEvent::from_name(kind.as_str()), Some(*kind));
            assert!(seen.insert(kind.as_str()), "{kind:?}: name used twice");
            // Stored names are plain snake_case: what older releases wrote, and what a
            // `?kind=` query can name.
            assert!(
                kind.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{kind:?}"
            );
        }
        assert_eq!(AuditEvent::from_name("no_such_kind"), None);
    }

    #[test]
    fn the_operators_reference_lists_every_kind() {
        let doc = include_str!("../../../../docs/operate/audit.md");
        let missing: Vec<&str> = AuditEvent::ALL
            .iter()
            .map(|k| k.as_str())
            .filter(|name| !doc.contains(&format!("| `{name}` |")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/operate/audit.md lacks {missing:?}"
        );
    }
}
