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

/// Rebuild a batch, in order; the archived versions are read in one request.
pub fn rebuild_all(
    store: &Store,
    batch: Vec<(String, Entry)>,
) -> Vec<(String, Entry, Result<(), PayloadError>)> {
    let wanted: Vec<String> = batch
        .iter()
        .filter(|(_, e)| e.payload.is_none())
        .filter_map(|(_, e)| e.source.as_ref().map(|s| s.version_key.clone()))
        .collect();
    let mut versions: std::collections::HashMap<String, Option<Version>> =
        match store.get_many_json::<Version>(&wanted) {
            Ok(found) => wanted.into_iter().zip(found).collect(),
            // One undecodable version must not hold up the others: each is read on its own.
            Err(_) => Default::default(),
        };
    batch
        .into_iter()
        .map(|(key, mut entry)| {
            let read = entry
                .source
                .as_ref()
                .and_then(|s| versions.remove(&s.version_key));
            let outcome = match read {
                Some(version) => rebuild_from(&mut entry, version),
                None => rebuild(store, &mut entry),
            };
            (key, entry, outcome)
        })
        .collect()
}

/// Fill in the payload of a share queued by reference.
pub fn rebuild(store: &Store, entry: &mut Entry) -> Result<(), PayloadError> {
    if entry.payload.is_some() {
        return Ok(());
    }
    let source = entry.source.as_ref().ok_or(PayloadError::Empty)?;
    let version = store.get_json(&source.version_key)?;
    rebuild_from(entry, version)
}

/// Fill in the payload from the archived version it references (`None`: it is gone).
fn rebuild_from(entry: &mut Entry, version: Option<Version>) -> Result<(), PayloadError> {
    if entry.payload.is_some() {
        return Ok(());
    }
    let source = entry.source.as_ref().ok_or(PayloadError::Empty)?;
    let version: Version = version.ok_or(PayloadError::VersionMissing)?;
    // Most shares are the archived record as it is (nothing masked, dropped or marked): its bytes
    // are sent as stored when their hash is the recorded one, without parsing them again.
    if source.decision.is_empty() && source.marks.is_none() && source.correction.is_none() {
        let raw = version.record.get().as_bytes();
        if hex::encode(&Sha256::digest(raw)[..16]) == source.payload_hash {
            entry.payload = Some(version.record);
            return Ok(());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::Version;
    use crate::disclosure::Channel;
    use crate::outbox::{Kind, ShareSource};
    use crate::store::{to_bytes, WriteSet};

    fn entry(source: ShareSource) -> Entry {
        Entry {
            idempotency_key: "k".into(),
            destination: "provincial".into(),
            channel: Channel::GovShare,
            kind: Kind::Share,
            agency: "medical_insurance".into(),
            record_id: "R1".into(),
            version: 1,
            rule: "r".into(),
            enqueued_at: time::OffsetDateTime::UNIX_EPOCH,
            enqueued_unix: 0,
            correction_id: None,
            payload: None,
            source: Some(source),
        }
    }

    fn archive(store: &Store, key: &str, record: &Value) {
        let version = Version {
            version: 1,
            received_at: time::OffsetDateTime::UNIX_EPOCH,
            receipt_id: "rcp".into(),
            content_hash: "h".into(),
            record: serde_json::value::to_raw_value(record).unwrap(),
        };
        let mut w = WriteSet::default();
        w.put(key, to_bytes(&version));
        store.apply(w).unwrap();
    }

    fn hash(v: &Value) -> String {
        let raw = serde_json::value::to_raw_value(v).unwrap();
        hex::encode(&Sha256::digest(raw.get().as_bytes())[..16])
    }

    #[test]
    fn a_share_by_reference_is_rebuilt_checked_and_refused_when_it_does_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let record = serde_json::json!({"subject": {"id": "440104199003071239", "name": "李四"},
            "content": {"phone": "13812345678", "secret": "x"}, "disclosure": {"class": "gov_share", "restricted_fields": {"content.secret": "commercial_secret"}}});
        archive(&store, "arc/v1", &record);
        let mut expected = serde_json::json!({"subject": {"id": "440104**********39", "name": "李四"},
            "content": {"phone": "138****5678"}, "disclosure": {"class": "gov_share"},
            "marks": [{"kind": "objection"}]});
        let source = ShareSource {
            version_key: "arc/v1".into(),
            decision: vec![
                ("subject.id".into(), "mask_personal_id".into()),
                ("content.phone".into(), "mask_phone".into()),
                ("content.secret".into(), "restricted_field".into()),
            ],
            marks: Some(serde_json::json!([{"kind": "objection"}])),
            correction: Some(serde_json::json!({"id": "C1"})),
            payload_hash: hash(&expected),
        };
        let mut e = entry(source.clone());
        rebuild(&store, &mut e).unwrap();
        expected["correction"] = serde_json::json!({"id": "C1"});
        let sent: Value = serde_json::from_str(e.body().get()).unwrap();
        assert_eq!(
            sent, expected,
            "masked, dropped, marked, then the correction marker"
        );

        // The archived version no longer gives what was decided: nothing is sent.
        let mut changed = record.clone();
        changed["content"]["phone"] = "13900000000".into();
        archive(&store, "arc/v1", &changed);
        let mut e = entry(source.clone());
        assert!(matches!(
            rebuild(&store, &mut e),
            Err(PayloadError::Mismatch)
        ));
        assert!(e.payload.is_none());

        let mut e = entry(ShareSource {
            version_key: "arc/missing".into(),
            ..source
        });
        assert!(matches!(
            rebuild(&store, &mut e),
            Err(PayloadError::VersionMissing)
        ));
    }
}
