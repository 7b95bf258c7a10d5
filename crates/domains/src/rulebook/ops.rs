//! The rule data's operator commands (issue #26): which rule is in force where and on which day
//! (`GET` [`route::IN_FORCE`]), and a reload of the whole rulebook as SIGHUP does (`POST`
//! [`route::RELOAD`], run by the operator server's reloader). The CLI calls them by these
//! constants.
//!
//! Never does: load or swap rules itself (`reload` does), or answer HTTP.

use serde_json::Value;
use time::Date;

use super::in_force::{parse_region, view, Files};
use super::Live;
use crate::command::{given, OpError, Query};

/// The operator API's paths of these commands.
pub mod route {
    pub const IN_FORCE: &str = "/rules/in-force";
    pub const RELOAD: &str = "/rules/reload";
}

/// The rules in force in `?region=` (default: every region a rule names) on `?date=` (default:
/// `today`, China time).
pub fn in_force(live: &Live, files: &Files, query: &Query, today: Date) -> Result<Value, OpError> {
    let region = given(query, "region")
        .map(|r| parse_region(&r))
        .transpose()
        .map_err(OpError::Invalid)?;
    let day = match given(query, "date") {
        None => today,
        Some(d) => crate::record::parse_date(&d)
            .ok_or_else(|| OpError::Invalid("date must be YYYY-MM-DD".into()))?,
    };
    Ok(view(live, files, region.as_deref(), day))
}
