//! Rebuilding a share's payload at delivery (format 3): the outbox keeps a reference to the
//! archived version and the disclosure filter's recorded decision instead of a copy of the
//! filtered record. Rebuilt payloads are checked against the hash recorded at enqueue time; a
//! payload that does not match (or whose version is missing) is never sent.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::archive::Version;
use crate::outbox::Entry;
use crate::store::{Store, StoreError};

/// Why a share's payload cannot be rebuilt. Never the platform's fault; a retry does not help:
/// the share goes to the dead letters, where an operator sees the reason.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("the entry has neither a payload nor a source")]
    Empty,
    #[error("the archived version it shares is missing")]
    VersionMissing,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the archived version is not a JSON record: {0}")]
    NotJson(serde_json::Error),
    #[error(transparent)]
    Decision(#[from] crate::disclosure::UnknownRule),
    #[error("the rebuilt payload does not match the hash recorded when it was queued")]
    Mismatch,
}

/// Fill in the payload of a share queued by reference.
pub fn rebuild(store: &Store, entry: &mut Entry) -> Result<(), PayloadError> {
    if entry.payload.is_some() {
        return Ok(());
    }
    let source = entry.source.as_ref().ok_or(PayloadError::Empty)?;
    let version: Version = store
        .get_json(&source.version_key)?
        .ok_or(PayloadError::VersionMissing)?;
    let mut json: Value =
        serde_json::from_str(version.record.get()).map_err(PayloadError::NotJson)?;
    crate::disclosure::reapply(&mut json, &source.decision)?;
    if let (Some(marks), Some(obj)) = (&source.marks, json.as_object_mut()) {
        obj.insert("marks".into(), marks.clone());
    }
    let raw = serde_json::value::to_raw_value(&json).map_err(PayloadError::NotJson)?;
    if hex::encode(&Sha256::digest(raw.get().as_bytes())[..16]) != source.payload_hash {
        return Err(PayloadError::Mismatch);
    }
    let raw = match (&source.correction, json.as_object_mut()) {
        (Some(marker), Some(obj)) => {
            obj.insert("correction".into(), marker.clone());
            serde_json::value::to_raw_value(&json).map_err(PayloadError::NotJson)?
        }
        _ => raw,
    };
    entry.payload = Some(raw);
    Ok(())
}
