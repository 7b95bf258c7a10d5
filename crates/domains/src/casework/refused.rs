//! How a case flow's refusal is answered (issue #28): corrections, objections and repairs each
//! say, in one match, the status and stable code of their own refusals, and leave to this one
//! place the two refusals every flow shares: a deadline the working-day calendar cannot count
//! (`calendar_year_missing` before its first year, else the caller's input, under the flow's own
//! `invalid_*` code) and a store that failed (`storage_unavailable`, no engine text).
//!
//! Never does: decide which refusal a step meets (the flows do), or build an HTTP answer.

use http::StatusCode;

use crate::answer::{Answer, StorageUnavailable};
use crate::calendar::CalendarError;

/// A case flow's refusal, as answered.
#[derive(Debug)]
pub enum Refused<'a> {
    /// The flow's own: its status, its code, and what the caller reads.
    Own {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// The calendar could not count a deadline; `invalid` is the flow's code for a date the
    /// caller sent wrong.
    Calendar {
        error: &'a CalendarError,
        invalid: &'static str,
    },
    /// The store failed: nothing was stored, a retry may help.
    Storage,
}

impl Refused<'_> {
    /// The flow's own refusal.
    pub fn own(status: StatusCode, code: &'static str, message: impl ToString) -> Self {
        Self::Own {
            status,
            code,
            message: message.to_string(),
        }
    }
}

impl Answer for Refused<'_> {
    fn status(&self) -> StatusCode {
        match self {
            Self::Own { status, .. } => *status,
            Self::Calendar { error, .. } => error
                .year_missing()
                .map_or(StatusCode::UNPROCESSABLE_ENTITY, |m| m.status()),
            Self::Storage => StorageUnavailable.status(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::Own { code, .. } => code,
            Self::Calendar { error, invalid } => error.year_missing().map_or(invalid, |m| m.code()),
            Self::Storage => StorageUnavailable.code(),
        }
    }
    fn message(&self) -> String {
        match self {
            Self::Own { message, .. } => message.clone(),
            Self::Calendar { error, .. } => error
                .year_missing()
                .map_or_else(|| error.to_string(), |m| m.message()),
            Self::Storage => StorageUnavailable.message(),
        }
    }
    fn retry(&self) -> bool {
        self.retry_after().is_some()
    }
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Own { .. } => None,
            Self::Calendar { error, .. } => error.year_missing().and_then(|m| m.retry_after()),
            Self::Storage => StorageUnavailable.retry_after(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn a_date_before_the_calendar_waits_for_the_operator_other_calendar_errors_are_the_callers() {
        let before = CalendarError::OutsideKnownYears {
            date: date!(2023 - 03 - 14),
            first: 2024,
            last: 2026,
        };
        let missing = Refused::Calendar {
            error: &before,
            invalid: "invalid_repair",
        };
        assert_eq!(
            (missing.status(), missing.code(), missing.retry_after()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "calendar_year_missing",
                Some(3600)
            )
        );
        assert!(missing.message().contains("2023"));
        let no_years = CalendarError::NoYears;
        let wrong = Refused::Calendar {
            error: &no_years,
            invalid: "invalid_repair",
        };
        assert_eq!(
            (wrong.status(), wrong.code(), wrong.retry()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_repair", false)
        );
        let own = Refused::own(StatusCode::CONFLICT, "repair_state", "in publicity");
        assert_eq!(
            (own.code(), own.message(), own.retry()),
            ("repair_state", "in publicity".to_string(), false)
        );
        assert!(Refused::Storage.retry());
    }
}
