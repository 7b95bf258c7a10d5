//! What every domain's operator commands share (issue #28): the request's query as the operator
//! server decoded it ([`Query`], read with [`param`] and [`given`]), and the error a command
//! answers with ([`OpError`], through `crate::answer::Answer`). Each domain's `ops.rs` parses its
//! own paths and runs its own commands with these; the operator server and the CLI render them.
//!
//! Never does: name a domain, or decide a status outside [`OpError`]'s `Answer`.

/// Why an operation failed: the operator's input, a missing record, or storage.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("storage: {0}")]
    Storage(String),
}

impl crate::answer::Answer for OpError {
    fn status(&self) -> http::StatusCode {
        match self {
            Self::Invalid(_) => http::StatusCode::BAD_REQUEST,
            Self::NotFound(_) => http::StatusCode::NOT_FOUND,
            Self::Conflict(_) => http::StatusCode::CONFLICT,
            Self::Storage(_) => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
    /// A conflict's code is the domain's own (`objection_state`…), set where it is answered.
    fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_query",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Storage(_) => "storage_unavailable",
        }
    }
    /// A storage failure says nothing of the engine (`answer::StorageUnavailable`).
    fn message(&self) -> String {
        match self {
            Self::Storage(_) => crate::answer::StorageUnavailable.message(),
            _ => self.to_string(),
        }
    }
    fn retry(&self) -> bool {
        matches!(self, Self::Storage(_))
    }
}

/// An operator request's query, percent-decoded (the operator server decodes it; each domain's
/// `command` reads the parameters it knows).
pub type Query = std::collections::HashMap<String, String>;

/// A parameter as given, or empty (the command's own check names a missing one).
pub fn param(query: &Query, name: &str) -> String {
    query.get(name).cloned().unwrap_or_default()
}

/// A parameter given with a value.
pub fn given(query: &Query, name: &str) -> Option<String> {
    query.get(name).filter(|v| !v.is_empty()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Answer;

    #[test]
    fn a_storage_failure_says_nothing_of_the_engine_and_invites_a_retry() {
        let e = OpError::Storage("sled: io error at /var/lib/credit-gateway".into());
        assert_eq!(e.code(), "storage_unavailable");
        assert!(e.retry());
        assert!(!e.message().contains("sled"), "{}", e.message());
        assert!(!OpError::Invalid("x".into()).retry());
    }

    #[test]
    fn an_empty_parameter_is_not_given() {
        let mut q = Query::new();
        q.insert("id".into(), String::new());
        assert_eq!(given(&q, "id"), None);
        assert_eq!(param(&q, "id"), "");
        assert_eq!(param(&q, "other"), "");
    }
}
