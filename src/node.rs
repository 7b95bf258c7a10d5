//! What every surface of one running gateway node shares: the agency API ([`crate::ingest::App`])
//! and the operator server ([`crate::operator::Ops`]) each hold this one [`Node`] beside what is
//! theirs alone (the agency API's admission bounds and token authority; the operator server's
//! rule files, reload, metrics and readiness), so a field both need exists once.
//!
//! Owns: nothing but the holding. Never does: decide anything (every rule is a domain's), or
//! change after start but through the swaps of the rule data in force (`live`, issue #26).
//!
//! Invariant: built once by `app::serve` from the opened parts; the writer behind `committer`
//! stops once the last holder of the node is gone.

use crate::clock::SharedClock;
use crate::config::Config;
use crate::exchange::CommitterHandle;
use crate::store::Store;
use crate::subject::IdentifierExceptions;

/// One running node's shared state.
pub struct Node {
    /// The configuration this node started with (rule data reloads through `live`).
    pub config: Config,
    pub store: Store,
    /// The single writer's handle: every write goes through it.
    pub committer: CommitterHandle,
    /// The one clock (replaceable in tests only, `test-clock`).
    pub clock: SharedClock,
    pub exceptions: IdentifierExceptions,
    /// The rule data in force: mappings, calendar, sharing, objection and repair rules, scoring
    /// profiles, agencies and operators; each replaced whole on reload (issue #26).
    pub live: crate::rulebook::Live,
    /// Credit evaluation; `None` when `evaluation.enabled` is off.
    pub evaluation: Option<crate::evaluation::engine::Engine>,
}
