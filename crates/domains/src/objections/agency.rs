//! What the agencies see and may do of objections through the agency API (GD Arts. 32-34; LS Arts.
//! 21-23): who files an objection and asks for the level above's review, who sees one, who
//! resolves it, and the body an agency is answered with. The server's routes (`POST
//! /v1/objections`, `GET /v1/objections[/{id}]`, `POST /v1/objections/{id}/resolve|review`) read
//! the request and answer what these return, or the [`ObjectionError`] (`crate::answer::Answer`).
//!
//! Never does: decide a step (the flow and `casework` do), or read a request.

use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::casework::{self, ResolveError, Resolver};
use super::flow::{self, Context, FileRequest, ObjectionError, ResolveRequest};
use super::{Listed, Objection, State};
use crate::store::{Store, StoreError};

/// `POST /v1/objections/{id}/review` body: why the level above should look again (GD Art. 34).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    pub reason: String,
}

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

impl Parties<'_> {
    /// Refused unless `caller` files objections (GD Art. 32); the route asks before it reads the
    /// request, so a stranger learns nothing of the body's checks.
    pub fn admit_filer(&self, caller: &str) -> Result<(), ObjectionError> {
        if self.may_file(caller) {
            return Ok(());
        }
        Err(ObjectionError::NotAllowed(
            "only the medical-insurance platform and the configured credit platforms file objections",
        ))
    }

    /// Refused unless `caller` may ask for the level above's review (GD Art. 34).
    pub fn admit_review(&self, caller: &str) -> Result<(), ObjectionError> {
        if self.may_file(caller) {
            return Ok(());
        }
        Err(ObjectionError::NotAllowed(
            "only the medical-insurance platform and the configured credit platforms ask for a review",
        ))
    }

    /// File an objection (GD Arts. 32-33; LS Art. 21) for `caller`: one of the parties, for the
    /// medical-insurance department's records unless the request names another agency.
    pub async fn file(
        &self,
        ctx: &Context<'_>,
        caller: &str,
        request: FileRequest,
    ) -> Result<Value, ObjectionError> {
        self.admit_filer(caller)?;
        let default_agency = self
            .medical_insurance
            .first()
            .cloned()
            .unwrap_or_else(|| caller.to_string());
        let objection = flow::file(ctx, caller, &default_agency, request).await?;
        Ok(body(&objection, ctx.now))
    }

    /// Ask for the level above's review of a rejected objection (复核, GD Art. 34).
    pub async fn review(
        &self,
        ctx: &Context<'_>,
        caller: &str,
        id: &str,
        request: ReviewRequest,
    ) -> Result<Value, ObjectionError> {
        self.admit_review(caller)?;
        let objection = flow::review(ctx, id, &request.reason).await?;
        Ok(body(&objection, ctx.now))
    }

    /// The objections `caller` sees, in the state named (`?state=`), as answered.
    pub fn list(
        &self,
        store: &Store,
        now: OffsetDateTime,
        (caller, reads_archives): (&str, bool),
        state: Option<&str>,
    ) -> Result<Value, ObjectionError> {
        let state = match state {
            None => None,
            Some(s) => Some(State::parse(s).ok_or_else(|| ObjectionError::UnknownState(s.into()))?),
        };
        let visible = self.visible(store, now, state, caller, reads_archives)?;
        Ok(json!({ "objections": visible }))
    }

    /// One objection, if `caller` sees it.
    pub fn show(
        &self,
        store: &Store,
        now: OffsetDateTime,
        (caller, reads_archives): (&str, bool),
        id: &str,
    ) -> Result<Value, ObjectionError> {
        let objection = super::get(store, id)?
            .filter(|o| self.may_see(caller, reads_archives, o))
            .ok_or(ObjectionError::NotFound("objection"))?;
        Ok(body(&objection, now))
    }
}

/// Resolve objection `id` as the agency that provided the information (LS Art. 23): upheld with a
/// correction (GD Art. 31, its own deadline) or elimination, or rejected; the step itself is
/// `casework::resolve`, as at the console.
pub async fn resolve(
    ctx: &Context<'_>,
    resolver: &Resolver<'_>,
    (caller, may_correct_others): (&str, bool),
    id: &str,
    request: ResolveRequest,
) -> Result<Value, ResolveError> {
    let resolved =
        casework::resolve(ctx, resolver, caller, may_correct_others, id, &request).await?;
    let mut body = body(&resolved.objection, ctx.now);
    if let Some(status) = resolved.correction {
        body["correction"] = serde_json::to_value(&status).unwrap_or_default();
    }
    Ok(body)
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
