//! The audit chain's operator commands (GD Art. 12, LS Art. 43): verify the chain, write a
//! checkpoint of its head, read a page of entries. Shared by the operator server (the gateway
//! running) and the CLI (the gateway stopped, or through the running gateway by [`route`]).
//!
//! Never does: write to the chain (the command itself is recorded by the caller, through the
//! writer), or answer HTTP (the operator server renders what [`run`] returns).

use std::collections::HashMap;

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::store::{Store, StoreError};

/// The operator API's paths of these commands: the operator server routes them and the CLI
/// calls them by these constants, never by a literal of its own.
pub mod route {
    pub const VERIFY: &str = "/audit/verify";
    pub const CHECKPOINT: &str = "/audit/checkpoint";
    pub const ENTRIES: &str = "/audit/entries";
}

/// Entries a page looks at, at most (and at most [`super::PAGE_MAX_BYTES`] of them).
pub const MAX_LIMIT: usize = 1000;

/// An audit command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Verify,
    Checkpoint,
    /// From entry `from` (inclusive), at most `limit`, of one kind if named.
    Entries {
        from: u64,
        limit: usize,
        kind: Option<String>,
    },
}

impl Command {
    /// The command's path and query on the operator API.
    pub fn path(&self) -> String {
        match self {
            Self::Verify => route::VERIFY.to_string(),
            Self::Checkpoint => route::CHECKPOINT.to_string(),
            Self::Entries { from, limit, kind } => {
                let kind = kind
                    .as_deref()
                    .map(|k| format!("&kind={k}"))
                    .unwrap_or_default();
                format!("{}?from={from}&limit={limit}{kind}", route::ENTRIES)
            }
        }
    }
}

/// The command a `GET` of the operator API names (`None`: not an audit path).
pub fn command(path: &str, query: &HashMap<String, String>) -> Option<Command> {
    match path {
        route::VERIFY => Some(Command::Verify),
        route::CHECKPOINT => Some(Command::Checkpoint),
        route::ENTRIES => Some(Command::Entries {
            from: query.get("from").and_then(|v| v.parse().ok()).unwrap_or(1),
            limit: query
                .get("limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100)
                .min(MAX_LIMIT),
            kind: query.get("kind").filter(|k| !k.is_empty()).cloned(),
        }),
        _ => None,
    }
}

/// Run a command on the store: `{"ok", "head"}` or `{"ok": false, "broken"}` for a verification
/// (a broken chain is an answer, not an error), the checkpoint document, or `{"entries",
/// "next"}` (`next`: the `from` of the following page, `null` at the end of the chain).
pub fn run(store: &Store, now: OffsetDateTime, command: &Command) -> Result<Value, StoreError> {
    match command {
        Command::Verify => Ok(match super::verify(store) {
            Ok(head) => json!({"ok": true, "head": head}),
            Err(e) => json!({"ok": false, "broken": e.to_string()}),
        }),
        Command::Checkpoint => super::checkpoint(store, now),
        Command::Entries { from, limit, kind } => {
            // Bounded in bytes too: `next` is where the following page starts.
            let page = super::page(store, *from, *limit, super::PAGE_MAX_BYTES, kind.as_deref())?;
            Ok(json!({"entries": page.entries, "next": page.next}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_bounded_and_the_paths_round_trip() {
        let mut query = HashMap::new();
        query.insert("limit".to_string(), "50000".to_string());
        query.insert("from".to_string(), "7".to_string());
        let cmd = command(route::ENTRIES, &query).unwrap();
        assert_eq!(
            cmd,
            Command::Entries {
                from: 7,
                limit: MAX_LIMIT,
                kind: None
            }
        );
        assert_eq!(cmd.path(), "/audit/entries?from=7&limit=1000");
        assert_eq!(command("/audit/other", &query), None);
    }

    #[test]
    fn an_empty_chain_verifies_and_pages_to_its_end() {
        let (store, _) = crate::store::memory::store();
        let now = OffsetDateTime::UNIX_EPOCH;
        let verified = run(&store, now, &Command::Verify).unwrap();
        assert_eq!(verified["ok"], true);
        let page = run(
            &store,
            now,
            &Command::Entries {
                from: 1,
                limit: 10,
                kind: None,
            },
        )
        .unwrap();
        assert_eq!(page["entries"], json!([]));
        assert_eq!(page["next"], Value::Null);
    }
}
