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

/// Check that the keys this node holds are the keys the store's data was sealed under, and
/// record any new one (a rotation). Every node of a shared database must hold the same lookup
/// key (it names the stored subjects) and every data key stored values name: a node started
/// with a key file of its own (generated, or copied before a rotation) is refused here, before
/// it writes anything its peers could not read. Under an exclusive section, so two nodes
/// starting at once on a new database agree on one set.
pub fn agree(store: &super::Store) -> Result<(), StoreError> {
    let Some(at_rest) = store.at_rest() else {
        return Ok(());
    };
    let _held = store.exclusive("keys")?;
    let ours = at_rest.fingerprints();
    let mut recorded: BTreeMap<String, String> = match store.get_stored(KEYS_KEY)? {
        Some(bytes) => super::decode(KEYS_KEY, &bytes)?,
        None => BTreeMap::new(),
    };
    // The lookup key first: it is the one whose loss hides every stored person.
    let lookup_first = recorded
        .iter()
        .filter(|(id, _)| *id == "lookup")
        .chain(recorded.iter().filter(|(id, _)| *id != "lookup"));
    for (id, theirs) in lookup_first {
        let message = match ours.get(id) {
            Some(fp) if fp == theirs => continue,
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
    let before = recorded.len();
    recorded.extend(ours);
    if recorded.len() != before {
        let mut w = super::WriteSet::default();
        w.put(KEYS_KEY, super::to_bytes(&recorded));
        store.apply_stored(w)?;
        store.flush()?;
    }
    Ok(())
}

/// Whether stored bytes may hold a sealed value.
pub fn is_sealed(stored: &[u8]) -> bool {
    memchr::memmem::find(stored, MARKER).is_some()
}
