//! Objections (异议): a subject contests information the gateway carries (GD Arts. 32-34; LS Arts.
//! 21-23).
//!
//! Owns the `obj/` key space ([`Objection`]), the filing window for evaluation results (LS Art.
//! 21: 10 working days from notification), the review deadline (LS Art. 23: 15 working days,
//! per-region data in `mappings/rules/objections.toml`), the states and the flow:
//! - **filing** ([`flow::file`]): by the medical-insurance platform (for a subject who objected
//!   online or at a window, GD Art. 32) or a credit platform forwarding one. On acceptance every
//!   record is marked 异议标注 in the archive at once and every platform holding it is sent the
//!   record again carrying the mark, ahead of ordinary traffic; every later share carries it until
//!   the objection is closed (LS Art. 23). A late objection to an evaluation result is refused
//!   (`objection_late`) and kept as `filed_late` until an operator accepts it with a reason.
//! - **resolution** ([`flow::resolve`]) by the agency that provided the information: `upheld`
//!   with a correction (the correction flow, its own three working days, GD Art. 31) or with
//!   elimination ("经核实无不良信用信息的，应及时消除其相关记录", LS Art. 23: withdrawn from every
//!   platform, the versions kept); `rejected` removes the mark everywhere. Either way the result is
//!   sent to the medical-insurance platform, which tells the subject.
//! - **review by the level above** (复核, GD Art. 34) reopens a rejected objection: marked again,
//!   a new deadline.
//!
//! States: `filed_late`, `under_review`, `overdue` (under review past its deadline), `upheld`,
//! `rejected`. Deadlines come from the calendar, never from `+ N days`; time from the one clock.
//! Past the calendar's last year they are provisional (issue #26): the review deadline a
//! never-later estimate, the filing window a never-earlier one, each flagged and stored with its
//! basis; the tracker makes them exact as a step ([`flow::make_exact`]) once the year is loaded.
//!
//! Never does: write storage itself (the writer applies each step atomically with its marks,
//! ledger changes and audit entry), or decide what platforms may hold (the ledger does, from the
//! marks).

pub mod agency;
pub mod casework;
pub mod flow;
pub mod ops;

pub mod rules;
pub mod tracker;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::store::{Store, StoreError};

/// LS Art. 21's grounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ground {
    /// 存在错误或者遗漏的
    ErrorOrOmission,
    /// 涉及其商业秘密、个人隐私，或相关法律、法规规定不得采集信息的
    SecretOrPrivacy,
    /// 超过披露期限披露的
    PastDisclosurePeriod,
    /// 其他侵犯信用主体合法权益的
    OtherwiseUnlawful,
}

/// A record an objection is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRef {
    pub agency: String,
    pub record_id: String,
}

/// Where an objection stands (stored; `overdue` is computed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    FiledLate,
    UnderReview,
    Upheld,
    Rejected,
}

/// The state shown: the stored status, or `overdue` for one under review past its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    FiledLate,
    UnderReview,
    Overdue,
    Upheld,
    Rejected,
}

impl State {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// An operator's acceptance of a late objection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LateAcceptance {
    pub by: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// What the reviewing agency decided.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resolution {
    pub level: u8,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    pub by: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Upheld,
    Rejected,
}

/// What an upheld objection does to the information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Corrected through the correction flow (GD Art. 31).
    Correct,
    /// No bad credit information: withdrawn from every platform (LS Art. 23).
    Eliminate,
}

/// A stored objection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Objection {
    pub id: String,
    pub records: Vec<RecordRef>,
    pub ground: Ground,
    /// A reference to the materials (where the applicant's documents are kept).
    pub materials: String,
    pub filed_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub filed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// For an evaluation result: when the subject was told it (LS Art. 21).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_on: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub filing_deadline: Option<OffsetDateTime>,
    /// The filing window runs past the last known calendar year: a never-earlier estimate (the
    /// subject's window is never shortened; see `calendar`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub filing_deadline_provisional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filing_basis: Option<crate::calendar::Basis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_accepted: Option<LateAcceptance>,
    /// 1, or 2 under review by the level above (GD Art. 34).
    pub level: u8,
    pub status: Status,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub review_deadline: Option<OffsetDateTime>,
    /// The review deadline runs past the last known calendar year: a never-later estimate (the
    /// department's own duty, LS Art. 23); the tracker makes it exact once the year is loaded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub review_deadline_provisional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_basis: Option<crate::calendar::Basis>,
    /// The rule that set the review deadline.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub review_rule: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolutions: Vec<Resolution>,
}

impl Objection {
    pub fn key(id: &str) -> String {
        crate::store::keys::IdSpace::Objection.key(id)
    }

    /// Replace provisional deadlines with exact ones once `calendar` covers them; only the
    /// deadline fields change (the state an earlier decision set, e.g. accepted in time, stays).
    /// `true` when anything changed.
    /// Whether [`Self::make_exact`] would change anything on `calendar`.
    pub fn make_exact_on(&self, calendar: &crate::calendar::Calendar) -> bool {
        (self.review_basis.is_some() || self.filing_basis.is_some())
            && self.clone().make_exact(calendar)
    }

    pub fn make_exact(&mut self, calendar: &crate::calendar::Calendar) -> bool {
        let filing = crate::casework::deadline::make_exact(
            calendar,
            &mut self.filing_deadline,
            &mut self.filing_deadline_provisional,
            &mut self.filing_basis,
        );
        let review = crate::casework::deadline::make_exact(
            calendar,
            &mut self.review_deadline,
            &mut self.review_deadline_provisional,
            &mut self.review_basis,
        );
        filing || review
    }

    pub fn state(&self, now: OffsetDateTime) -> State {
        match self.status {
            Status::FiledLate => State::FiledLate,
            Status::Upheld => State::Upheld,
            Status::Rejected => State::Rejected,
            Status::UnderReview
                if self
                    .review_deadline
                    .is_some_and(|d| crate::casework::deadline::passed(d, now)) =>
            {
                State::Overdue
            }
            Status::UnderReview => State::UnderReview,
        }
    }
}

/// An objection with its computed state, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub objection: Objection,
    pub state: State,
}

pub fn get(store: &Store, id: &str) -> Result<Option<Objection>, StoreError> {
    store.get_json(&Objection::key(id))
}

/// Every objection, optionally only those in `state`, overdue and nearest deadlines first.
pub fn list(
    store: &Store,
    now: OffsetDateTime,
    state: Option<State>,
) -> Result<Vec<Listed>, StoreError> {
    let mut out: Vec<Listed> = store
        .scan::<Objection>("obj/")?
        .into_iter()
        .map(|(_, objection)| Listed {
            state: objection.state(now),
            objection,
        })
        .filter(|l| state.is_none_or(|s| s == l.state))
        .collect();
    out.sort_by_key(|l| {
        (
            l.objection.review_deadline.is_none(),
            l.objection.review_deadline,
        )
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn under_review_past_its_deadline_is_overdue() {
        let mut o = Objection {
            id: "o1".into(),
            records: vec![],
            ground: Ground::ErrorOrOmission,
            materials: "m".into(),
            filed_by: "medical_insurance".into(),
            filed_at: datetime!(2026-09-28 10:00 +08:00),
            received_at: datetime!(2026-09-28 10:00 +08:00),
            notified_on: None,
            filing_deadline: None,
            filing_deadline_provisional: false,
            filing_basis: None,
            late_accepted: None,
            level: 1,
            status: Status::UnderReview,
            review_deadline: Some(datetime!(2026-10-27 23:59:59 +08:00)),
            review_deadline_provisional: false,
            review_basis: None,
            review_rule: "default-15".into(),
            resolutions: vec![],
        };
        assert_eq!(
            o.state(datetime!(2026-10-27 23:59:59 +08:00)),
            State::UnderReview
        );
        assert_eq!(o.state(datetime!(2026-10-28 00:00 +08:00)), State::Overdue);
        o.status = Status::Rejected;
        assert_eq!(o.state(datetime!(2026-10-28 00:00 +08:00)), State::Rejected);
    }
}
