//! What the agencies see and may do of objections through the agency API (GD Arts. 32-34; LS Arts.
//! 21-23): who files an objection and asks for the level above's review, who sees one, and the
//! body an agency is answered with. The server's route (`POST /v1/objections`, `GET
//! /v1/objections[/{id}]`) reads the request and answers; the rules are here.
//!
//! Never does: decide a step (the flow and `casework` do), or read a request.

use serde_json::Value;
use time::OffsetDateTime;

use super::{Listed, Objection, State};
use crate::store::{Store, StoreError};

/// The parties of objections, from the configuration.
pub struct Parties<'a> {
    /// The medical-insurance platform(s) (`corrections.medical_insurance_agencies`): a subject
    /// objects to them (GD Art. 32).
    pub medical_insurance: &'a [String],
    /// The credit platforms that forward objections they received (`objections.forwarders`).
    pub forwarders: &'a [String],
}

impl Parties<'_> {
    /// Who files objections and asks for a review by the level above (GD Arts. 32, 34).
    pub fn may_file(&self, agency: &str) -> bool {
        self.medical_insurance.iter().any(|a| a == agency)
            || self.forwarders.iter().any(|a| a == agency)
    }

    /// Who sees an objection: the filers, agencies with archive reads, and the agencies whose
    /// information it is about.
    pub fn may_see(&self, agency: &str, reads_archives: bool, objection: &Objection) -> bool {
        self.may_file(agency)
            || reads_archives
            || objection.records.iter().any(|r| r.agency == agency)
    }

    /// The objections an agency sees, optionally in one state, overdue and nearest first.
    pub fn visible(
        &self,
        store: &Store,
        now: OffsetDateTime,
        state: Option<State>,
        agency: &str,
        reads_archives: bool,
    ) -> Result<Vec<Listed>, StoreError> {
        Ok(super::list(store, now, state)?
            .into_iter()
            .filter(|l| self.may_see(agency, reads_archives, &l.objection))
            .collect())
    }
}

/// An objection as an agency is answered with it: the stored objection and its state now.
pub fn body(objection: &Objection, now: OffsetDateTime) -> Value {
    let mut body = serde_json::to_value(objection).unwrap_or_default();
    body["state"] = serde_json::to_value(objection.state(now)).unwrap_or_default();
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parties() -> (Vec<String>, Vec<String>) {
        (vec!["medical_insurance".into()], vec!["city_credit".into()])
    }

    #[test]
    fn the_medical_insurance_platform_and_forwarders_file_nobody_else() {
        let (mi, fw) = parties();
        let p = Parties {
            medical_insurance: &mi,
            forwarders: &fw,
        };
        assert!(p.may_file("medical_insurance"));
        assert!(p.may_file("city_credit"));
        assert!(!p.may_file("tax"));
        assert!(!p.may_file(""));
    }
}
