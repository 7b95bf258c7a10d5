//! The seam through which values are protected at rest: a write set's values pass through
//! [`AtRest::protect`] before the engine stores them, and stored bytes through [`AtRest::reveal`]
//! before anyone reads them. What is personal, and how it is sealed, is decided above the store
//! (`privacy`); the store only knows that sealed values carry the marker [`MARKER`].
//!
//! Never does: look inside a value, or hold a key.

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
}

/// Whether stored bytes may hold a sealed value.
pub fn is_sealed(stored: &[u8]) -> bool {
    memchr::memmem::find(stored, MARKER).is_some()
}
