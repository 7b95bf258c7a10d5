//! How a refusal becomes an HTTP answer, in one place (issue #28): every error the agency API or
//! the operator API answers with says its status, a stable code, a message and whether the same
//! request may succeed later unchanged (`retry`), and is written as the one JSON shape
//! `{"error": {"code", "message", "retry", …}}` the API description names (`Error`).
//!
//! Owns: the [`Answer`] trait and the JSON shape. Never does: decide a status or a code for an
//! error of a domain (each error type says its own, beside the code that raises it), or put
//! internals (paths, SQL, stack) into a message: messages are for the caller.

use http::StatusCode;
use serde_json::{json, Value};

/// An error as the caller is told it.
pub trait Answer {
    fn status(&self) -> StatusCode;
    /// Stable: callers and alerts match on it.
    fn code(&self) -> &'static str;
    /// What the caller reads; the caller's to act on.
    fn message(&self) -> String;
    /// Whether the same request may succeed later unchanged.
    fn retry(&self) -> bool;
}

/// The answer's JSON body.
pub fn body(e: &dyn Answer) -> Value {
    json!({"error": {"code": e.code(), "message": e.message(), "retry": e.retry()}})
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
}
