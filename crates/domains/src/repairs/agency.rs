//! What the agencies see and may do of repairs through the agency API (GD Arts. 35-39; LS Arts.
//! 36-42): who applies on a subject's behalf, who sees a repair, who decides, extends and records
//! a broken commitment, and the body an agency is answered with. The server's routes (`POST
//! /v1/repairs`, `GET /v1/repairs[/{id}]`, `POST /v1/repairs/{id}/decide|extend|commitment-broken`)
//! read the request and answer what these return, or the [`RepairError`]
//! (`crate::answer::Answer`).
//!
//! Never does: decide a step (the flow and `casework` do), or read a request.

use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::flow::{
    self, ApplyRequest, CommitmentBrokenRequest, Context, DecideRequest, RepairError,
};
use super::{Repair, State, Status};
use crate::store::{Store, StoreError};

/// `POST /v1/repairs/{id}/extend` body: why the case needs longer (LS Art. 40).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    pub reason: String,
}

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

impl Applicants<'_> {
    /// Refused unless `caller` applies for repairs (GD Art. 36); the route asks before it reads
    /// the request.
    pub fn admit(&self, caller: &str) -> Result<(), RepairError> {
        if self.may_apply(caller) {
            return Ok(());
        }
        Err(RepairError::NotAllowed(
            "only the medical-insurance platform applies for credit repair on a subject's behalf",
        ))
    }

    /// Apply for a repair on a subject's behalf (GD Art. 36; LS Art. 39).
    pub async fn apply(
        &self,
        ctx: &Context<'_>,
        caller: &str,
        request: ApplyRequest,
    ) -> Result<Value, RepairError> {
        self.admit(caller)?;
        let repair = flow::apply(ctx, caller, caller, request).await?;
        Ok(body(ctx.store, &repair, ctx.now)?)
    }

    /// The repairs `caller` sees, in the state named (`?state=`), as answered.
    pub fn list(
        &self,
        store: &Store,
        now: OffsetDateTime,
        (caller, reads_archives): (&str, bool),
        state: Option<&str>,
    ) -> Result<Value, RepairError> {
        let state = match state {
            None => None,
            Some(s) => Some(State::parse(s).ok_or_else(|| RepairError::UnknownState(s.into()))?),
        };
        let visible = self.visible(store, now, state, caller, reads_archives)?;
        Ok(json!({ "repairs": visible }))
    }

    /// One repair, if `caller` sees it.
    pub fn show(
        &self,
        store: &Store,
        now: OffsetDateTime,
        (caller, reads_archives): (&str, bool),
        id: &str,
    ) -> Result<Value, RepairError> {
        let repair = super::get(store, id)?
            .filter(|r| self.may_see(caller, reads_archives, r))
            .ok_or(RepairError::NotFound("repair"))?;
        Ok(body(store, &repair, now)?)
    }
}

/// Decide a repair, by the department that made the finding (LS Art. 40; GD Art. 37).
pub async fn decide(
    ctx: &Context<'_>,
    caller: &str,
    id: &str,
    request: DecideRequest,
) -> Result<Value, RepairError> {
    let repair = flow::decide(ctx, caller, false, id, &request).await?;
    Ok(body(ctx.store, &repair, ctx.now)?)
}

/// Extend the decision's deadline once, for a complex case: at most 30 working days (LS Art. 40).
pub async fn extend(
    ctx: &Context<'_>,
    caller: &str,
    id: &str,
    request: ExtendRequest,
) -> Result<Value, RepairError> {
    let repair = super::casework::extend(ctx, caller, id, &request.reason).await?;
    Ok(body(ctx.store, &repair, ctx.now)?)
}

/// The commitment of a completed repair was found untrue or not kept, by the agency that made the
/// finding (LS Art. 41: no repair for 3 years).
pub async fn commitment_broken(
    ctx: &Context<'_>,
    caller: &str,
    id: &str,
    request: CommitmentBrokenRequest,
) -> Result<Value, RepairError> {
    let repair = flow::commitment_broken(ctx, caller, id, &request).await?;
    Ok(body(ctx.store, &repair, ctx.now)?)
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
