//! What the agencies see and may do of repairs through the agency API (GD Arts. 35-39; LS Arts.
//! 36-42): who applies on a subject's behalf, who sees a repair, and the body an agency is
//! answered with. The server's route (`POST /v1/repairs`, `GET /v1/repairs[/{id}]`) reads the
//! request and answers; the rules are here.
//!
//! Never does: decide a step (the flow and `casework` do), or read a request.

use serde_json::Value;
use time::OffsetDateTime;

use super::{Repair, State, Status};
use crate::store::{Store, StoreError};

/// The medical-insurance platform(s) (`corrections.medical_insurance_agencies`), which apply for
/// credit repair on a subject's behalf (GD Art. 36; LS Art. 39).
pub struct Applicants<'a>(pub &'a [String]);

impl Applicants<'_> {
    pub fn may_apply(&self, agency: &str) -> bool {
        self.0.iter().any(|a| a == agency)
    }

    /// Who sees a repair: the applicants, agencies with archive reads, and the agencies whose
    /// findings it repairs.
    pub fn may_see(&self, agency: &str, reads_archives: bool, repair: &Repair) -> bool {
        self.may_apply(agency)
            || reads_archives
            || repair.records.iter().any(|r| r.agency == agency)
    }

    /// The repairs an agency sees, optionally in one state, as answered.
    pub fn visible(
        &self,
        store: &Store,
        now: OffsetDateTime,
        state: Option<State>,
        agency: &str,
        reads_archives: bool,
    ) -> Result<Vec<Value>, StoreError> {
        let mut out = Vec::new();
        for listed in super::list(store, now, state)?
            .iter()
            .filter(|l| self.may_see(agency, reads_archives, &l.repair))
        {
            out.push(body(store, &listed.repair, now)?);
        }
        Ok(out)
    }
}

/// A repair as an agency is answered with it: the stored repair without the subject's key (the
/// records name the subject), and its state now (suspended while an objection received in its
/// publicity is open, GD Art. 38).
pub fn body(store: &Store, repair: &Repair, now: OffsetDateTime) -> Result<Value, StoreError> {
    let open = repair.status == Status::InPublicity && super::objection_open(store, repair)?;
    let mut body = serde_json::to_value(repair).unwrap_or_default();
    if let Some(obj) = body.as_object_mut() {
        obj.remove("subject_key");
    }
    body["state"] = serde_json::to_value(repair.state(now, open)).unwrap_or_default();
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_medical_insurance_platform_applies() {
        let mi = vec!["medical_insurance".to_string()];
        let a = Applicants(&mi);
        assert!(a.may_apply("medical_insurance"));
        assert!(!a.may_apply("tax"));
        assert!(!a.may_apply("medical"));
    }
}
