//! The seam through which values are protected at rest: a write set's values pass through
//! [`AtRest::protect`] before the engine stores them, and stored bytes through [`AtRest::reveal`]
//! before anyone reads them. What is personal, and how it is sealed, is decided above the store
//! (`privacy`); the store only knows that sealed values carry the marker [`MARKER`].
//!
//! Never does: look inside a value, or hold a key.

use std::collections::BTreeMap;

use super::StoreError;

/// The bytes every sealed value carries: a value without them is returned as stored.
pub const MARKER: &[u8] = b"\"$sealed\"";

pub trait AtRest: Send + Sync + std::fmt::Debug {
    /// The bytes to store for `value` written at `key` (`value` itself when nothing needs
    /// sealing).
    fn protect(&self, key: &[u8], value: Vec<u8>) -> Result<Vec<u8>, StoreError>;
    /// The value as it was written, from its stored bytes (called only when they hold
    /// [`MARKER`]).
    fn reveal(&self, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError>;
    /// The keyed hash a lookup key (a personal identifier) is stored under.
    fn lookup_token(&self, data: &[u8]) -> String;
    /// Whether stored bytes hold a value sealed under a data key other than the active one
    /// (what the re-encryption after a rotation rewrites).
    fn stale(&self, stored: &[u8]) -> bool;
    /// The stored bytes re-sealed under the active data key.
    fn reseal(&self, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError>;
    /// Key id -> fingerprint of every key this protection holds (`lookup` for the key stored
    /// names are hashed with). See [`agree`].
    fn fingerprints(&self) -> BTreeMap<String, String>;
}

/// Where the store records the fingerprints of the keys its data was sealed under.
pub const KEYS_KEY: &[u8] = b"meta/keys";

/// `meta/keys`: what the stored data was sealed under.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordedKeys {
    /// Key id -> fingerprint (`lookup` for the lookup key).
    pub fingerprints: BTreeMap<String, String>,
    /// Data keys no stored value is sealed under any more (the re-encryption under a newer key
    /// finished): a key file may drop them.
    #[serde(default)]
    pub retired: std::collections::BTreeSet<String>,
}

/// The recorded keys, if any.
pub fn recorded(store: &super::Store) -> Result<Option<RecordedKeys>, StoreError> {
    match store.get_stored(KEYS_KEY)? {
        Some(bytes) => Ok(Some(super::decode(KEYS_KEY, &bytes)?)),
        None => Ok(None),
    }
}

/// Check that the keys this node holds are the keys the store's data was sealed under. Every
/// node of a shared database must hold the same lookup key (it names the stored subjects) and
/// every data key stored values may name: a node started with a key file of its own (generated,
/// or copied before a rotation) is refused here, before it writes anything its peers could not
/// read. Returns what to record when this node brings a key the store has not seen (see
/// [`record`]), after the format's migrations.
pub fn check(
    store: &super::Store,
    may_be_sealed: bool,
) -> Result<Option<RecordedKeys>, StoreError> {
    let Some(at_rest) = store.at_rest() else {
        return Ok(None);
    };
    let ours = at_rest.fingerprints();
    if may_be_sealed && recorded(store)?.is_none() {
        opens_a_sealed_value(store, at_rest.as_ref())?;
    }
    check_keys(store, ours)
}

/// [`check`] for the keys whose fingerprints are `ours` (a reload's, before they are put in
/// force).
pub fn check_keys(
    store: &super::Store,
    ours: BTreeMap<String, String>,
) -> Result<Option<RecordedKeys>, StoreError> {
    merge(recorded(store)?, ours)
}

/// [`check_keys`] against what is recorded (`None`: nothing yet), for a caller that read it
/// itself (the single writer, which also sees what its group has staged).
pub fn merge(
    recorded: Option<RecordedKeys>,
    ours: BTreeMap<String, String>,
) -> Result<Option<RecordedKeys>, StoreError> {
    let mut keys = recorded.unwrap_or_default();
    // The lookup key first: it is the one whose loss hides every stored person.
    let lookup_first = keys
        .fingerprints
        .iter()
        .filter(|(id, _)| *id == "lookup")
        .chain(keys.fingerprints.iter().filter(|(id, _)| *id != "lookup"));
    for (id, theirs) in lookup_first {
        let message = match ours.get(id) {
            Some(fp) if fp == theirs => continue,
            None if keys.retired.contains(id) => continue,
            Some(_) if id == "lookup" => {
                "the lookup key differs from the one the stored subjects are named with".to_string()
            }
            Some(_) => format!(
                "data key {id} differs from the key of that name the stored data was sealed under"
            ),
            None if id == "lookup" => "the key file has no lookup key".to_string(),
            None => {
                format!("the stored data was sealed under data key {id}, which the key file lacks")
            }
        };
        return Err(StoreError::KeysDiffer { message });
    }
    let before = keys.fingerprints.len();
    keys.fingerprints.extend(ours);
    Ok((keys.fingerprints.len() != before).then_some(keys))
}

/// With nothing recorded (a directory sealed by the release before the record), the first sealed
/// value among the first [`PROBE`] must open with these keys.
fn opens_a_sealed_value(store: &super::Store, at_rest: &dyn AtRest) -> Result<(), StoreError> {
    for item in store.range_stored(b"", None).take(PROBE) {
        let (k, v) = item?;
        if is_sealed(&v) {
            return match at_rest.reveal(&k, v) {
                Ok(_) => Ok(()),
                Err(_) => Err(StoreError::KeysDiffer {
                    message: format!(
                        "a value sealed at {} does not open with them",
                        super::printable_key(&k)
                    ),
                }),
            };
        }
    }
    Ok(())
}

/// Values looked at for a sealed one when no keys are recorded.
const PROBE: usize = 100_000;

/// Record the keys [`check`] returned.
pub fn record(store: &super::Store, keys: &RecordedKeys) -> Result<(), StoreError> {
    let mut w = super::WriteSet::default();
    w.put(KEYS_KEY, super::to_bytes(keys));
    store.apply_stored(w)?;
    store.flush()
}

/// Whether stored bytes may hold a sealed value.
pub fn is_sealed(stored: &[u8]) -> bool {
    memchr::memmem::find(stored, MARKER).is_some()
}
