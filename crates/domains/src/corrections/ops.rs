//! The corrections' operator command: the list with each correction's deadline and what each
//! platform acknowledged (GD Art. 31), for `credit-gateway corrections list` while the gateway
//! runs (by [`route::LIST`]) and when it is stopped (the store read directly).
//!
//! Never does: answer HTTP, or change a correction.

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::State;
use crate::command::OpError;
use crate::store::Store;

/// The operator API's path of the command: the operator server routes it and the CLI calls it by
/// this constant, never by a literal of its own.
pub mod route {
    pub const LIST: &str = "/corrections";
}

/// `{"corrections": [...]}`, in the state named (`None`: every correction).
pub fn list(store: &Store, now: OffsetDateTime, state: Option<&str>) -> Result<Value, OpError> {
    let state = match state.filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(State::parse(s).ok_or_else(|| {
            OpError::Invalid(format!(
                "unknown state {s:?}: use pending, overdue, delivered_on_time, delivered_late, delivered or no_platform"
            ))
        })?),
    };
    let corrections =
        super::list(store, now, state).map_err(|e| OpError::Storage(e.to_string()))?;
    Ok(json!({ "corrections": corrections }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Answer;

    #[test]
    fn an_unknown_state_is_refused_not_read_as_every_state() {
        let (store, _) = crate::store::memory::store();
        let now = OffsetDateTime::UNIX_EPOCH;
        let e = list(&store, now, Some("overdu")).unwrap_err();
        assert_eq!(e.code(), "invalid_query");
        assert_eq!(
            list(&store, now, Some("overdue")).unwrap(),
            json!({"corrections": []})
        );
        assert_eq!(list(&store, now, None).unwrap(), json!({"corrections": []}));
    }
}
