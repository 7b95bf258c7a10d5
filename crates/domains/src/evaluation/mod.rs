//! Credit evaluation (GD Arts. 17-22, 25, 29; LS Arts. 19-21, 27, 30): the gateway computes each
//! subject's grade from its archive, explains it, keeps every result as a version of an evaluation
//! result record (category 9), tells the medical-insurance platform when a grade changes, answers
//! authorized queries, runs the yearly cycle, publishes results once a year, and carries a
//! serious-dishonesty listing of an institution into the archives of its responsible persons.
//!
//! - [`profile`]: the scoring profiles (`mappings/scoring/`), data with effective dates;
//! - [`score`]: the pure rule: facts + profile + cycle -> points, grade, reasons;
//! - [`engine`]: reads a subject's archive, builds the result record, the notice and the linked
//!   records of joint punishment, and hands them to the writer as one atomic step;
//! - [`worker`]: re-evaluates every subject whose archive changed (dynamic evaluation, GD Art. 18),
//!   fires evaluation timers (a record leaving its validity), and runs the yearly cycle;
//! - [`authz`]: the authorization tokens of GD Art. 21's real-time query;
//! - [`ops`]: reading results (the authorized query's answer, the operator's views);
//! - [`publish`]: the yearly publication of results by grade (LS Art. 27);
//! - [`agency`]: what agencies may ask of results (the authorized query, the publication), and
//!   how a refusal is answered.
//!
//! Never does: decide what a platform may hold (the publication ledger does, from the sharing
//! rules), write to the store itself (the writer applies every step), or read the system clock.
//!
//! Invariants: a result record's content is a pure function of the archive, the profile, the
//! cycle and the date of the last notice, so evaluating twice changes nothing and sends nothing
//! twice; every reason names the record version and the profile item that moved the score.

pub mod agency;
pub mod authz;
pub mod engine;
pub mod ops;
pub mod profile;
pub mod publish;
pub mod score;
pub mod worker;

use serde::{Deserialize, Serialize};

/// The five grades (GD Art. 20; LS Art. 19: 优秀, 良好, 中等, 较差, 差).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Grade {
    A,
    B,
    C,
    D,
    E,
}

impl Grade {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::B => "B",
            Self::C => "C",
            Self::D => "D",
            Self::E => "E",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "A" => Some(Self::A),
            "B" => Some(Self::B),
            "C" => Some(Self::C),
            "D" => Some(Self::D),
            "E" => Some(Self::E),
            _ => None,
        }
    }
}

/// Record ids the evaluation engine writes under its own agency id (`evaluation.agency`). They
/// are derived from a subject's archive key; a record an earlier release named from a person's
/// clear identifier keeps that id (`Engine::derived_id`), so an id never changes across an
/// upgrade.
pub mod ids {
    use sha2::Digest;

    /// A short, stable token for a subject: record ids must not carry personal identifiers.
    pub fn subject_token(archive_key: &str) -> String {
        hex::encode(&sha2::Sha256::digest(archive_key.as_bytes())[..8])
    }

    /// The working result of `year` (one record per subject and cycle; each evaluation a version).
    pub fn result(year: i32, archive_key: &str) -> String {
        format!("EVAL-{year}-{}", subject_token(archive_key))
    }

    /// Prefix of every working result of `year`.
    pub fn result_prefix(year: i32) -> String {
        format!("EVAL-{year}-")
    }

    /// The published result of `year` (LS Art. 27).
    pub fn publication(year: i32, archive_key: &str) -> String {
        format!("PUB-{year}-{}", subject_token(archive_key))
    }

    /// The published result of a working result (`EVAL-2026-x` -> `PUB-2026-x`).
    pub fn publication_of(result_id: &str) -> Option<String> {
        result_id
            .strip_prefix("EVAL-")
            .map(|rest| format!("PUB-{rest}"))
    }

    /// A responsible person's linked record for an institution's listing (GD Art. 29).
    pub fn link(agency: &str, record_id: &str, person_key: &str) -> String {
        let mut h = sha2::Sha256::new();
        h.update(agency.as_bytes());
        h.update([0x1f]);
        h.update(record_id.as_bytes());
        h.update([0x1f]);
        h.update(person_key.as_bytes());
        format!("LINK-{}", hex::encode(&h.finalize()[..8]))
    }

    pub fn is_result(record_id: &str) -> bool {
        record_id.starts_with("EVAL-")
    }

    pub fn is_publication(record_id: &str) -> bool {
        record_id.starts_with("PUB-")
    }
}
