//! What each domain's tracker exports, by name: its gauges, its webhook payload and event names,
//! and the line logged when the webhook fails. One naming scheme for the three, kept exactly as
//! each tracker named them before the casework core (dashboards, alert rules, receivers and the
//! tests read them; see the differences in [`crate::casework`]'s module doc).
//!
//! Owns: [`Family`]. Metric names stay string literals, one `gauge!` per name, so the
//! catalogue's test (`telemetry::catalogue`) still finds and checks every one.
//!
//! Never does: decide when to warn or what to count (the tracker does), or send anything.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::deadline::{Due, OncePer};

/// Which domain, for the names it exports (kept exactly as before the core; see the module doc
/// of [`crate::casework`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Corrections,
    Objections,
    Repairs,
}

impl Family {
    /// The case's name in events and payloads (`"objection"`).
    pub fn case(self) -> &'static str {
        match self {
            Self::Corrections => "correction",
            Self::Objections => "objection",
            Self::Repairs => "repair",
        }
    }

    pub fn once_per(self) -> OncePer {
        match self {
            Self::Corrections => OncePer::Case,
            Self::Objections | Self::Repairs => OncePer::Deadline,
        }
    }

    /// The webhook's `event`.
    pub fn event(self, due: Due) -> &'static str {
        match (self, due) {
            (Self::Corrections, Due::Near) => "deadline_near",
            (Self::Corrections, Due::Overdue) => "overdue",
            (Self::Objections, Due::Near) => "objection_deadline_near",
            (Self::Objections, Due::Overdue) => "objection_overdue",
            (Self::Repairs, Due::Near) => "repair_deadline_near",
            (Self::Repairs, Due::Overdue) => "repair_overdue",
        }
    }

    /// The webhook's payload.
    pub fn alert(
        self,
        due: Due,
        id: &str,
        record_id: Option<&str>,
        deadline: &str,
        provisional: bool,
    ) -> Value {
        let mut body = Map::new();
        body.insert("event".into(), self.event(due).into());
        body.insert(format!("{}_id", self.case()), id.into());
        if let Some(record_id) = record_id {
            body.insert("record_id".into(), record_id.into());
        }
        body.insert("deadline".into(), deadline.into());
        body.insert("deadline_provisional".into(), provisional.into());
        Value::Object(body)
    }

    /// Set the gauges: `codes` every state in order, `counts` the cases per state code.
    pub fn publish(self, codes: &[String], counts: &BTreeMap<String, u64>, nearest: i64) {
        let count = |state: &str| counts.get(state).copied().unwrap_or(0) as f64;
        match self {
            Self::Corrections => {
                metrics::gauge!("gateway_corrections_pending").set(count("pending"));
                metrics::gauge!("gateway_corrections_overdue").set(count("overdue"));
                metrics::gauge!("gateway_corrections_nearest_deadline_seconds").set(nearest as f64);
                metrics::gauge!("gateway_corrections_delivered_late").set(count("delivered_late"));
            }
            Self::Objections => {
                for state in codes {
                    metrics::gauge!("gateway_objections", "state" => state.clone())
                        .set(count(state));
                }
                metrics::gauge!("gateway_objections_nearest_deadline_seconds").set(nearest as f64);
            }
            Self::Repairs => {
                for state in codes {
                    metrics::gauge!("gateway_repairs", "state" => state.clone()).set(count(state));
                }
                metrics::gauge!("gateway_repairs_nearest_deadline_seconds").set(nearest as f64);
            }
        }
    }

    /// Log a failed webhook as the domain always did.
    pub fn webhook_failed(self, url: &str, id: &str, error: &str) {
        match self {
            Self::Corrections => {
                tracing::warn!(webhook = %url, error = %error, "correction alert webhook failed")
            }
            Self::Objections => {
                tracing::warn!(objection = %id, error = %error, "objection alert webhook failed")
            }
            Self::Repairs => {
                tracing::warn!(repair = %id, error = %error, "repair alert webhook failed")
            }
        }
    }
}
