//! How a refusal becomes an HTTP answer, in one place (issue #28): every error the agency API or
//! the operator API answers with says its status, a stable code, a message and whether the same
//! request may succeed later unchanged (`retry`), and is written as the one JSON shape
//! `{"error": {"code", "message", "retry", …}}` the API description names (`Error`).
//!
//! Owns: the [`Answer`] trait and the JSON shape. Never does: decide a status or a code for an
//! error of a domain (each error type says its own, beside the code that raises it), or put
//! internals (paths, SQL, stack) into a message: messages are for the caller.

use http::StatusCode;
use serde_json::{json, Map, Value};

/// An error as the caller is told it. Each domain's error type implements it beside the code that
/// raises it; the servers only render it ([`error`], [`body`], and `Retry-After` from
/// [`Answer::retry_after`]).
pub trait Answer: std::fmt::Debug + Send + Sync {
    fn status(&self) -> StatusCode;
    /// Stable: callers and alerts match on it.
    fn code(&self) -> &'static str;
    /// What the caller reads; the caller's to act on.
    fn message(&self) -> String;
    /// Whether the same request may succeed later unchanged.
    fn retry(&self) -> bool;
    /// What the caller acts on beyond the code: an objection's id, a repair's refusals, the
    /// position of a syntax error. Added to the error object beside `code`, `message`, `retry`.
    fn details(&self) -> Map<String, Value> {
        Map::new()
    }
    /// Seconds to wait before the same request (`Retry-After`), for refusals that pass with time.
    fn retry_after(&self) -> Option<u64> {
        None
    }
}

/// The error object (`{"code", "message", "retry", …details}`): an HTTP answer's `error`, and a
/// folder's feedback file's.
pub fn error(e: &dyn Answer) -> Value {
    let mut object = Map::new();
    object.insert("code".into(), json!(e.code()));
    object.insert("message".into(), json!(e.message()));
    object.insert("retry".into(), json!(e.retry()));
    object.extend(e.details());
    Value::Object(object)
}

/// The answer's JSON body.
pub fn body(e: &dyn Answer) -> Value {
    json!({ "error": error(e) })
}

/// The store could not take or give the data: nothing was stored, and the same request may
/// succeed in a few seconds. Every domain answers its storage failures as this, so that no path,
/// SQL or engine message reaches a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageUnavailable;

impl Answer for StorageUnavailable {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }
    fn code(&self) -> &'static str {
        "storage_unavailable"
    }
    fn message(&self) -> String {
        "the gateway could not store the batch; nothing was accepted, send it again".into()
    }
    fn retry(&self) -> bool {
        true
    }
    fn retry_after(&self) -> Option<u64> {
        Some(5)
    }
}

/// A refusal of the operator API that no domain error carries (a missing session, a wrong role,
/// a malformed query): said where it is decided, answered like any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl Answer for Refusal {
    fn status(&self) -> StatusCode {
        self.status
    }
    fn code(&self) -> &'static str {
        self.code
    }
    fn message(&self) -> String {
        self.message.clone()
    }
    /// Only the gateway's own unavailability passes with time; the caller fixes everything else.
    fn retry(&self) -> bool {
        matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_its_code_message_and_whether_a_retry_helps() {
        let busy = Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "later",
        );
        assert_eq!(
            body(&busy),
            json!({"error": {"code": "storage_unavailable", "message": "later", "retry": true}})
        );
        let wrong = Refusal::new(StatusCode::FORBIDDEN, "forbidden_role", "no");
        assert_eq!(body(&wrong)["error"]["retry"], false);
    }

    #[test]
    fn storage_unavailability_says_nothing_of_the_engine_and_asks_for_a_retry_in_seconds() {
        let e = body(&StorageUnavailable);
        assert_eq!(e["error"]["code"], "storage_unavailable");
        assert_eq!(e["error"]["retry"], true);
        assert_eq!(StorageUnavailable.retry_after(), Some(5));
    }

    #[derive(Debug)]
    struct Late;
    impl Answer for Late {
        fn status(&self) -> StatusCode {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        fn code(&self) -> &'static str {
            "objection_late"
        }
        fn message(&self) -> String {
            "late".into()
        }
        fn retry(&self) -> bool {
            false
        }
        fn details(&self) -> Map<String, Value> {
            let mut m = Map::new();
            m.insert("objection_id".into(), json!("obj-1"));
            m
        }
    }

    #[test]
    fn details_sit_beside_the_code_in_the_error_object() {
        assert_eq!(
            error(&Late),
            json!({"code": "objection_late", "message": "late", "retry": false, "objection_id": "obj-1"})
        );
    }
}
