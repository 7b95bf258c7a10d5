//! Answers to "what does (or did) each platform hold of this record / this subject", from the
//! ledger's history: the API (`GET /v1/ledger/...`), the admin port and the CLI share these.

use serde_json::{json, Value};
use time::{OffsetDateTime, Time};

use super::{view, Ledger};
use crate::archive;
use crate::store::{Store, StoreError};

/// `as_of` as given: an RFC 3339 time, or a date meaning the end of that day, China time
/// ("what did the platform show on 2026-05-01").
pub fn parse_as_of(text: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    crate::record::parse_date(text)
        .and_then(|d| Time::from_hms_nano(23, 59, 59, 999_999_999).ok().map(|t| d.with_time(t)))
        .map(|dt| dt.assume_offset(crate::calendar::CHINA_OFFSET))
        .ok_or_else(|| {
            "as_of must be a date (YYYY-MM-DD, the end of that day in China time) or an RFC 3339 time"
                .to_string()
        })
}

/// One record's holdings at `as_of`; `None` when the archive has no such record.
pub fn record(
    store: &Store,
    agency: &str,
    record_id: &str,
    as_of: OffsetDateTime,
    destination: Option<&str>,
) -> Result<Option<Value>, StoreError> {
    let Some(head) =
        store.get_json::<archive::RecordHead>(&archive::record_head_key(agency, record_id))?
    else {
        return Ok(None);
    };
    let ledger = Ledger::read(store, agency, record_id)?;
    let holdings: Vec<_> = view(store, &ledger, as_of)?
        .into_iter()
        .filter(|h| destination.is_none_or(|d| h.destination == d))
        .collect();
    Ok(Some(json!({
        "agency": agency,
        "record_id": record_id,
        "category": head.category,
        "current_version": head.version,
        "expired_at": head.expired_at.map(crate::clock::rfc3339),
        "holdings": holdings,
    })))
}

/// Every record of a subject with its holdings at `as_of`.
pub fn subject(
    store: &Store,
    archive_key: &str,
    as_of: OffsetDateTime,
    destination: Option<&str>,
) -> Result<Option<Value>, StoreError> {
    let Some(entry) =
        store.get_json::<archive::SubjectEntry>(&archive::subject_key(archive_key))?
    else {
        return Ok(None);
    };
    let mut records = Vec::new();
    for (agency, record_id) in archive::records_of(store, archive_key)? {
        if let Some(r) = record(store, &agency, &record_id, as_of, destination)? {
            records.push(r);
        }
    }
    Ok(Some(json!({
        "as_of": crate::clock::rfc3339(as_of),
        "status": entry.status,
        "standing_change": entry.standing_change,
        "records": records,
    })))
}
