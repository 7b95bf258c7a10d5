//! Corrections within three working days (GD Art. 31).
//!
//! When information the medical-insurance side provided is found wrong, invalid or changed, the
//! correction must reach the public credit platforms, along the transmission chain, within three
//! working days. The gateway stores a new version in the archive, queues a correction share for
//! every platform and channel that received the record (ahead of ordinary traffic: outbox priority
//! 0), computes the deadline on the working-day calendar, and tracks each platform's
//! acknowledgement. Corrections of information that came from outside agencies (courts, tax...)
//! are applied to the archive and forwarded to the medical-insurance platform (GD Art. 31, second
//! clause).
//!
//! Deadline rule (see `calendar`): counting starts the day after the day the problem was found
//! (China time); the deadline is 23:59:59 +08:00 of the third working day counted.
//!
//! States: `pending` (not yet acknowledged by every platform, deadline not passed), `overdue`
//! (not acknowledged, deadline passed), `delivered_on_time`, `delivered_late`, `delivered` (outside
//! information, no deadline), `no_platform` (no platform held the record: nobody to tell).
//! Delivered means the receiving platform acknowledged it (2xx).
//!
//! On-disk layout: `cor/{id}` -> [`Correction`]; `cod/{id} \x1f {destination}` -> acknowledgement
//! time, one key per platform so concurrent delivery workers never overwrite each other;
//! `cop/{id} \x1f {destination}` -> when a file destination picked up the batch file carrying
//! the correction, and the file's name (issue #29: the deadline view says when each file was
//! picked up; delivered still means acknowledged, by the platform's feedback file).
//!
//! Past the calendar's last year the deadline is a never-later estimate, flagged
//! (`deadline_provisional`) and stored with its basis (issue #26). The tracker makes it exact once
//! the year is loaded: the one write to `cor/{id}` after its creation, re-read first and changing
//! only the deadline fields (nothing else ever rewrites a correction object).
//!
//! Never does: decide deadlines from `+ 3 days`, or read the system clock (time comes from the
//! one [`crate::clock::Clock`]).

pub mod agency;
pub mod ops;
pub mod request;
pub mod stage;
pub mod tracker;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::store::keys::{CorrectionDeliveredKey, CorrectionPickedUpKey};
use crate::store::{Store, StoreError};

/// What the correction does to the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorrectionKind {
    /// The information was wrong: replaced by the right content.
    Correct,
    /// The information is no longer valid (e.g. a penalty revoked).
    Invalidate,
    /// The information changed (e.g. a dishonesty listing ended).
    Change,
}

/// A stored correction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Correction {
    pub id: String,
    pub kind: CorrectionKind,
    pub agency: String,
    pub record_id: String,
    pub version: u32,
    pub requested_by: String,
    pub reason: String,
    /// Typed times (RFC 3339 on disk, Beijing offset kept): a value that does not read is a
    /// `Corrupt` error naming the correction's key, never a missing deadline.
    #[serde(with = "time::serde::rfc3339")]
    pub found_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// GD Art. 31's deadline; none for outside information forwarded to the medical-insurance
    /// platform (the three working days bind the medical-insurance side's own information).
    #[serde(with = "time::serde::rfc3339::option")]
    pub deadline: Option<OffsetDateTime>,
    /// The deadline runs past the last known calendar year and is a never-later estimate (see
    /// `calendar`); the correction tracker makes it exact once the year's file is loaded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deadline_provisional: bool,
    /// What a provisional deadline was counted from (only while provisional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_basis: Option<crate::calendar::Basis>,
    /// Platforms it must reach.
    pub destinations: Vec<String>,
    /// `along_chain` (to the credit platforms) or `to_medical_insurance` (outside information).
    pub direction: String,
}

impl Correction {
    /// Replace a provisional deadline with the exact one once `calendar` covers it; only the
    /// deadline fields change. `true` when it changed.
    pub fn make_exact(&mut self, calendar: &crate::calendar::Calendar) -> bool {
        crate::casework::deadline::make_exact(
            calendar,
            &mut self.deadline,
            &mut self.deadline_provisional,
            &mut self.deadline_basis,
        )
    }
}

/// The computed state of a correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Overdue,
    DeliveredOnTime,
    DeliveredLate,
    /// Forwarded outside information (no deadline), acknowledged by every platform.
    Delivered,
    /// No platform held the record: nobody to tell, so neither on time nor late (issue #27: such
    /// a correction used to read `delivered_on_time`).
    NoPlatform,
}

impl State {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_string())).ok()
    }
}

/// A correction's flow on the casework core: no person takes a step (delivery workers record
/// the acknowledgements); the deadline runs while `pending` and has passed when `overdue`; every
/// delivered state and `no_platform` are terminal.
pub struct CorrectionFlow;

/// Corrections have no step a person takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoStep {}

impl crate::casework::CaseFlow for CorrectionFlow {
    type Case = Status;
    type State = State;
    type Step = NoStep;
    type Facts = ();

    const STATES: &'static [State] = &[
        State::Pending,
        State::Overdue,
        State::DeliveredOnTime,
        State::DeliveredLate,
        State::Delivered,
        State::NoPlatform,
    ];

    fn state(status: &Status, now: OffsetDateTime, _: ()) -> State {
        state_of(&status.correction, &status.delivered, now)
    }

    fn phase(state: State) -> crate::casework::Phase {
        use crate::casework::Phase;
        match state {
            State::Pending => Phase::Running,
            State::Overdue => Phase::Overdue,
            State::DeliveredOnTime
            | State::DeliveredLate
            | State::Delivered
            | State::NoPlatform => Phase::Closed,
        }
    }

    fn is_terminal(state: State) -> bool {
        !matches!(state, State::Pending | State::Overdue)
    }

    fn steps(_: &Status, _: State, _: OffsetDateTime) -> Vec<(NoStep, crate::casework::Duty)> {
        Vec::new()
    }
}

/// A correction with its acknowledgements and state, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub correction: Correction,
    pub state: State,
    pub delivered: Map<String, Value>,
    /// File destinations only: destination -> `{"at", "file"}`, when the platform took the file
    /// carrying the correction out of its outgoing folder. Absent when none did.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub picked_up: Map<String, Value>,
}

pub fn correction_key(id: &str) -> String {
    crate::store::keys::IdSpace::Correction.key(id)
}

pub fn delivered_key(id: &str, destination: &str) -> String {
    crate::store::keys::Key::encode(&CorrectionDeliveredKey {
        correction: id.into(),
        destination: destination.into(),
    })
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// The state of a correction at `now`.
pub fn state_of(c: &Correction, delivered: &Map<String, Value>, now: OffsetDateTime) -> State {
    if c.destinations.is_empty() {
        return State::NoPlatform;
    }
    let all_delivered = c.destinations.iter().all(|d| delivered.contains_key(d));
    let Some(deadline) = c.deadline else {
        return if all_delivered {
            State::Delivered
        } else {
            State::Pending
        };
    };
    let times: Vec<OffsetDateTime> = c
        .destinations
        .iter()
        .filter_map(|d| {
            delivered
                .get(d)
                .and_then(Value::as_str)
                .and_then(parse_time)
        })
        .collect();
    if times.len() == c.destinations.len() {
        if times.iter().all(|t| *t <= deadline) {
            State::DeliveredOnTime
        } else {
            State::DeliveredLate
        }
    } else if crate::casework::deadline::passed(deadline, now) {
        State::Overdue
    } else {
        State::Pending
    }
}

/// Every correction with its state, optionally only those in `state`.
pub fn list(
    store: &Store,
    now: OffsetDateTime,
    state: Option<State>,
) -> Result<Vec<Status>, StoreError> {
    let mut out = Vec::new();
    for (_, c) in store.scan::<Correction>("cor/")? {
        let status = status_of(store, c, now)?;
        if state.is_none_or(|s| s == status.state) {
            out.push(status);
        }
    }
    out.sort_by_key(|a| a.correction.deadline);
    // Forwarded outside information has no deadline: after every deadline.
    out.sort_by_key(|s| s.correction.deadline.is_none());
    Ok(out)
}

pub fn status_of(store: &Store, c: Correction, now: OffsetDateTime) -> Result<Status, StoreError> {
    let mut delivered = Map::new();
    for (key, at) in store.scan::<Value>(&CorrectionDeliveredKey::prefix(&c.id))? {
        let key = <CorrectionDeliveredKey as crate::store::keys::Key>::decode(&key)
            .ok_or_else(|| StoreError::corrupt(key.as_bytes(), "not a delivery key"))?;
        delivered.insert(
            key.destination,
            at.get("at").cloned().unwrap_or(Value::Null),
        );
    }
    let mut picked_up = Map::new();
    for (key, at) in store.scan::<Value>(&CorrectionPickedUpKey::prefix(&c.id))? {
        let key = <CorrectionPickedUpKey as crate::store::keys::Key>::decode(&key)
            .ok_or_else(|| StoreError::corrupt(key.as_bytes(), "not a pick-up key"))?;
        picked_up.insert(key.destination, at);
    }
    let state = state_of(&c, &delivered, now);
    Ok(Status {
        correction: c,
        state,
        delivered,
        picked_up,
    })
}

pub fn picked_up_key(id: &str, destination: &str) -> String {
    crate::store::keys::Key::encode(&CorrectionPickedUpKey {
        correction: id.into(),
        destination: destination.into(),
    })
}

/// Writes that record when a file destination first picked up a file carrying corrections: one
/// `cop/` key per (correction, platform), never overwritten (a retried file picked up later does
/// not move the first pick-up).
pub fn pickup_writes(
    store: &Store,
    entries: &[crate::outbox::Entry],
    at: OffsetDateTime,
    file: &str,
) -> Vec<(String, Vec<u8>)> {
    let at_text = crate::clock::rfc3339(at.to_offset(crate::calendar::CHINA_OFFSET));
    let mut writes: Vec<(String, Vec<u8>)> = Vec::new();
    for e in entries {
        let Some(id) = &e.correction_id else { continue };
        let key = picked_up_key(id, &e.destination);
        if writes.iter().any(|(k, _)| *k == key)
            || store.get_raw(key.as_bytes()).ok().flatten().is_some()
        {
            continue;
        }
        writes.push((
            key,
            crate::store::to_bytes(&serde_json::json!({ "at": at_text, "file": file })),
        ));
    }
    writes
}

/// Writes that record when a platform first acknowledged correction shares: one `cod/` key per
/// (correction, platform), never overwritten, so the state says whether it arrived on time.
pub fn acknowledgement_writes(
    store: &Store,
    entries: &[crate::outbox::Entry],
    at: OffsetDateTime,
) -> Vec<(String, Vec<u8>)> {
    let at_text = crate::clock::rfc3339(at.to_offset(crate::calendar::CHINA_OFFSET));
    let mut writes: Vec<(String, Vec<u8>)> = Vec::new();
    for e in entries {
        let Some(id) = &e.correction_id else { continue };
        let key = delivered_key(id, &e.destination);
        if writes.iter().any(|(k, _)| *k == key)
            || store.get_raw(key.as_bytes()).ok().flatten().is_some()
        {
            continue;
        }
        let on_time = store
            .get_json::<Correction>(&correction_key(id))
            .ok()
            .flatten()
            .and_then(|c| c.deadline)
            .is_none_or(|d| at <= d);
        crate::telemetry::events::correction_delivered(id, &e.destination, on_time);
        writes.push((
            key,
            crate::store::to_bytes(&serde_json::json!({ "at": at_text })),
        ));
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn correction(deadline: &str, dests: &[&str]) -> Correction {
        Correction {
            id: "c1".into(),
            kind: CorrectionKind::Correct,
            agency: "medical_insurance".into(),
            record_id: "r1".into(),
            version: 2,
            requested_by: "medical_insurance".into(),
            reason: "".into(),
            found_at: t("2025-03-14T10:00:00+08:00"),
            received_at: t("2025-03-14T10:00:00+08:00"),
            deadline: Some(t(deadline)),
            deadline_provisional: false,
            deadline_basis: None,
            destinations: dests.iter().map(|s| s.to_string()).collect(),
            direction: "along_chain".into(),
        }
    }

    fn t(s: &str) -> OffsetDateTime {
        parse_time(s).unwrap()
    }

    #[test]
    fn a_deadline_that_does_not_read_is_an_error_never_no_deadline() {
        let mut stored =
            serde_json::to_value(correction("2025-03-19T23:59:59+08:00", &["a"])).unwrap();
        assert_eq!(
            stored["deadline"], "2025-03-19T23:59:59+08:00",
            "RFC 3339 on disk, offset kept"
        );
        let back: Correction = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(back.deadline, Some(t("2025-03-19T23:59:59+08:00")));
        stored["deadline"] = serde_json::json!("soon");
        assert!(serde_json::from_value::<Correction>(stored.clone()).is_err());
        stored["deadline"] = Value::Null;
        assert_eq!(
            serde_json::from_value::<Correction>(stored)
                .unwrap()
                .deadline,
            None,
            "forwarded: none"
        );
    }

    /// Existing data opens unchanged: no flag on disk reads as exact, and an exact correction is
    /// written without the new fields. A provisional one becomes exact only on a calendar that
    /// covers it, and only its deadline fields change (GD Art. 31, issue #26).
    #[test]
    fn a_provisional_deadline_is_flagged_and_made_exact_gd_art_31() {
        let exact = correction("2025-03-19T23:59:59+08:00", &["a"]);
        let stored = serde_json::to_value(&exact).unwrap();
        assert!(stored.get("deadline_provisional").is_none());
        assert!(stored.get("deadline_basis").is_none());
        let back: Correction = serde_json::from_value(stored).unwrap();
        assert!(!back.deadline_provisional && back.deadline_basis.is_none());

        let builtin = crate::calendar::Calendar::builtin().unwrap();
        let found = t("2026-12-29T10:00:00+08:00");
        let d = builtin
            .deadline_estimated(found, 3, crate::calendar::Estimate::NeverLater)
            .unwrap();
        assert!(d.provisional);
        let mut c = correction("2027-01-01T23:59:59+08:00", &["a"]);
        c.deadline = Some(d.at);
        c.deadline_provisional = true;
        c.deadline_basis = d.basis(found, 3);
        let stored = serde_json::to_value(&c).unwrap();
        assert_eq!(stored["deadline_provisional"], true);
        assert!(!c.clone().make_exact(&builtin), "2027 still unknown");
        let with_2027 = {
            let mut files: Vec<(String, String)> = ["2025", "2026"]
                .iter()
                .map(|y| {
                    (
                        format!("{y}.toml"),
                        std::fs::read_to_string(format!(
                            "{}/mappings/calendar/{y}.toml",
                            concat!(env!("CARGO_MANIFEST_DIR"), "/../..")
                        ))
                        .unwrap(),
                    )
                })
                .collect();
            files.push((
                "2027.toml".into(),
                "year = 2027\nholidays = [ { name = \"元旦\", from = 2027-01-01, to = 2027-01-03 } ]\n"
                    .into(),
            ));
            crate::calendar::Calendar::from_sources(&files).unwrap()
        };
        let before = c.clone();
        assert!(c.make_exact(&with_2027));
        assert_eq!(c.deadline, Some(t("2027-01-04T23:59:59+08:00")));
        assert!(!c.deadline_provisional && c.deadline_basis.is_none());
        assert_eq!(
            (c.id.as_str(), c.found_at, &c.destinations),
            (before.id.as_str(), before.found_at, &before.destinations)
        );
    }

    /// Issue #27: a correction of a record no platform held is neither on time nor late.
    #[test]
    fn a_correction_no_platform_held_reads_no_platform() {
        let c = correction("2025-03-19T23:59:59+08:00", &[]);
        assert_eq!(
            state_of(&c, &Map::new(), t("2025-04-01T00:00:00+08:00")),
            State::NoPlatform
        );
    }

    #[test]
    fn states() {
        let c = correction("2025-03-19T23:59:59+08:00", &["a", "b"]);
        let mut d = Map::new();
        assert_eq!(
            state_of(&c, &d, t("2025-03-19T23:00:00+08:00")),
            State::Pending
        );
        assert_eq!(
            state_of(&c, &d, t("2025-03-20T00:00:00+08:00")),
            State::Overdue
        );
        d.insert(
            "a".into(),
            Value::String("2025-03-17T09:00:00+08:00".into()),
        );
        assert_eq!(
            state_of(&c, &d, t("2025-03-20T00:00:00+08:00")),
            State::Overdue,
            "one platform is not enough"
        );
        d.insert(
            "b".into(),
            Value::String("2025-03-19T23:59:59+08:00".into()),
        );
        assert_eq!(
            state_of(&c, &d, t("2025-04-01T00:00:00+08:00")),
            State::DeliveredOnTime
        );
        d.insert(
            "b".into(),
            Value::String("2025-03-20T08:00:00+08:00".into()),
        );
        assert_eq!(
            state_of(&c, &d, t("2025-04-01T00:00:00+08:00")),
            State::DeliveredLate
        );
    }
}
