//! Credit repair (信用修复): a subject that corrected its dishonest conduct asks that the records
//! stop being shown (GD Arts. 35-39; LS Arts. 36-42; the national credit-repair measures, NDRC
//! Order No. 36, in force from 2026-04-01).
//!
//! Deadlines past the calendar's last year (decision, extension, publicity end) are never-later
//! estimates, flagged and stored with their basis (issue #26); the tracker makes them exact as a
//! step ([`flow::make_exact`]) once the year is loaded.
//!
//! Owns the `rep/` key space ([`Repair`]), eligibility ([`rules`]: each refusal names its rule
//! and article), the decision deadline (LS Art. 40: 10 working days from acceptance, extendable
//! with a reason to at most 30), the 5-working-day publicity (GD Art. 37, LS Art. 40) and the
//! completion:
//! - applied for by the medical-insurance platform on the subject's behalf, naming the records,
//!   the materials and the subject's commitment (GD Art. 36; LS Art. 39). An ineligible application
//!   is refused at once with every reason; an eligible one is `under_review`;
//! - decided by the agency that provided the records: refused (with its reason, and whether the
//!   materials were false: LS Art. 41) or approved, which starts the publicity, itself sent to the
//!   credit platforms on the public channel;
//! - an objection to any of the records filed during the publicity suspends the repair until it
//!   is closed;
//! - when the publicity ends without an open objection the repair completes: each record is marked
//!   修复 in the archive (kept, never deleted: LS Art. 40 "不撤销其失信记录") and the publication
//!   ledger withdraws it from every platform and channel (终止公示 and 停止共享, Order No. 36 Art.
//!   3); the medical-insurance platform is told. The step is run by the tracker on the one clock,
//!   from stored state, so it survives restarts and runs once.
//! - a completed repair whose commitment (信用承诺) is later found untrue or not kept gets
//!   `commitment_broken` from the agency that made the dishonesty finding, with the reason and the
//!   day it was found; the finding becomes a record of the subject's own
//!   (`BROKEN-COMMITMENT-{id}`) and, like false materials, bars any new repair of the subject for 3
//!   years from that day (LS Art. 41: "信用承诺不实或者不履行承诺等弄虚作假行为，将取消其3年内申请
//!   信用修复的资格"). The repair stays completed: the article takes away the right to apply
//!   again, it does not undo a repair.
//!
//! Never does: write storage itself (the writer applies each step atomically), or decide what
//! platforms may hold (the ledger does, from the marks).

pub mod agency;
pub mod casework;
pub mod flow;
pub mod ops;
pub mod rules;
pub mod tracker;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::objections::RecordRef;
use crate::store::{Store, StoreError};

/// Where a repair stands (stored; `overdue` and `suspended` are computed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    UnderReview,
    Refused,
    /// Approved; the publicity runs until `publicity_until`.
    InPublicity,
    Completed,
}

/// The state shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    UnderReview,
    Overdue,
    Refused,
    InPublicity,
    /// In publicity with an objection open on one of its records.
    Suspended,
    Completed,
}

impl State {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// One eligibility rule that refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub rule: String,
    pub article: String,
    pub record_id: String,
    pub reason: String,
}

/// A decision on a repair.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub approved: bool,
    pub by: String,
    pub reason: String,
    /// LS Art. 41: refused because the materials or the commitment were false.
    #[serde(default)]
    pub false_materials: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// LS Art. 41: the subject's commitment was found untrue or not kept (信用承诺不实, 不履行承诺)
/// after its repair completed. Counted from `found_on` by the `false_materials_years` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenCommitment {
    pub reason: String,
    /// The day it was found (China time); the 3 years of LS Art. 41 run from it.
    #[serde(with = "ymd")]
    pub found_on: Date,
    /// The agency that recorded it (the one that decided the repair).
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The finding's own record in the subject's archive, from `by`: `BROKEN-COMMITMENT-{id}`.
    pub record_id: String,
}

time::serde::format_description!(ymd, Date, "[year]-[month]-[day]");

/// A stored repair application.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Repair {
    pub id: String,
    /// Archive key of the subject (stored, never shown by the API).
    pub subject_key: String,
    pub records: Vec<RecordRef>,
    /// Types of the records ("category" or "category/violation type"), for LS Arts. 38 and 40.
    pub types: Vec<String>,
    pub materials: String,
    pub commitment: String,
    pub applied_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub accepted_at: OffsetDateTime,
    pub status: Status,
    #[serde(with = "time::serde::rfc3339")]
    pub decision_deadline: OffsetDateTime,
    /// The decision deadline runs past the last known calendar year: a never-later estimate
    /// (see `calendar`); the tracker makes it exact once the year's file is loaded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decision_deadline_provisional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_basis: Option<crate::calendar::Basis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub publicity_from: Option<OffsetDateTime>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub publicity_until: Option<OffsetDateTime>,
    /// The publicity end runs past the last known calendar year: a never-later estimate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publicity_until_provisional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publicity_basis: Option<crate::calendar::Basis>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub completed_at: Option<OffsetDateTime>,
    /// Set on a completed repair whose commitment was later found broken (LS Art. 41); absent in
    /// repairs stored before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment_broken: Option<BrokenCommitment>,
}

impl Repair {
    /// Replace provisional deadlines with exact ones once `calendar` covers them; only the
    /// deadline fields change. `true` when anything changed.
    /// Whether [`Self::make_exact`] would change anything on `calendar`.
    pub fn make_exact_on(&self, calendar: &crate::calendar::Calendar) -> bool {
        (self.decision_basis.is_some() || self.publicity_basis.is_some())
            && self.clone().make_exact(calendar)
    }

    pub fn make_exact(&mut self, calendar: &crate::calendar::Calendar) -> bool {
        let decision = crate::casework::deadline::make_exact(
            calendar,
            &mut self.decision_deadline,
            &mut self.decision_deadline_provisional,
            &mut self.decision_basis,
        );
        let publicity = crate::casework::deadline::make_exact(
            calendar,
            &mut self.publicity_until,
            &mut self.publicity_until_provisional,
            &mut self.publicity_basis,
        );
        decision || publicity
    }

    pub fn key(id: &str) -> String {
        crate::store::keys::IdSpace::Repair.key(id)
    }

    /// The state at `now`; `objection_open` says whether an objection filed during the publicity
    /// is still open on one of its records.
    pub fn state(&self, now: OffsetDateTime, objection_open: bool) -> State {
        match self.status {
            Status::UnderReview
                if crate::casework::deadline::passed(self.decision_deadline, now) =>
            {
                State::Overdue
            }
            Status::UnderReview => State::UnderReview,
            Status::Refused => State::Refused,
            Status::InPublicity if objection_open => State::Suspended,
            Status::InPublicity => State::InPublicity,
            Status::Completed => State::Completed,
        }
    }
}

/// A repair with its computed state, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub repair: Repair,
    pub state: State,
}

pub fn get(store: &Store, id: &str) -> Result<Option<Repair>, StoreError> {
    store.get_json(&Repair::key(id))
}

/// Whether an objection received during the repair's publicity is still open on one of its records.
pub fn objection_open(store: &Store, repair: &Repair) -> Result<bool, StoreError> {
    let Some(from) = repair.publicity_from else {
        return Ok(false);
    };
    Ok(store
        .scan::<crate::objections::Objection>("obj/")?
        .into_iter()
        .any(|(_, o)| {
            o.received_at >= from
                && o.status == crate::objections::Status::UnderReview
                && o.records.iter().any(|r| repair.records.contains(r))
        }))
}

/// Every repair, optionally only those in `state`, nearest decision deadlines first.
pub fn list(
    store: &Store,
    now: OffsetDateTime,
    state: Option<State>,
) -> Result<Vec<Listed>, StoreError> {
    let mut out = Vec::new();
    for (_, repair) in store.scan::<Repair>("rep/")? {
        let open = repair.status == Status::InPublicity && objection_open(store, &repair)?;
        let listed = Listed {
            state: repair.state(now, open),
            repair,
        };
        if state.is_none_or(|s| s == listed.state) {
            out.push(listed);
        }
    }
    out.sort_by_key(|l| l.repair.decision_deadline);
    Ok(out)
}
