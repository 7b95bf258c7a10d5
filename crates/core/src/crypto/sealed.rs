//! The sealed-value format: a JSON value sealed at rest is replaced by
//! `{"$sealed": "<key id>.<base64url(nonce || ciphertext || tag)>"}`, whose plaintext is the
//! original value's JSON. The key id names the data key, so values sealed before a rotation stay
//! readable, and the re-encryption finds them.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{CryptoError, Sealer};

/// The member naming a sealed value.
pub const MARKER: &str = "$sealed";

/// What every sealed value is bound to (AEAD associated data): the format's version.
const AAD: &[u8] = b"credit-gateway sealed value v1";

pub fn seal(sealer: &dyn Sealer, value: &Value) -> Result<Value, CryptoError> {
    let plaintext = serde_json::to_vec(value).unwrap_or_default();
    let body = sealer.seal(&plaintext, AAD)?;
    let text = format!(
        "{}.{}",
        sealer.key_id(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body)
    );
    let mut map = Map::new();
    map.insert(MARKER.into(), Value::String(text));
    Ok(Value::Object(map))
}

/// The key id a sealed value names, when `value` is one.
pub fn key_id(value: &Value) -> Option<&str> {
    let Value::Object(map) = value else {
        return None;
    };
    if map.len() != 1 {
        return None;
    }
    // The body is base64url, which has no '.': the last one ends the key id.
    map.get(MARKER)?
        .as_str()?
        .rsplit_once('.')
        .map(|(id, _)| id)
}

/// Open a sealed value with the sealer of the key it names.
pub fn open<'k>(
    value: &Value,
    sealer_for: impl Fn(&str) -> Option<&'k dyn Sealer>,
) -> Result<Value, CryptoError> {
    let text = value
        .get(MARKER)
        .and_then(Value::as_str)
        .ok_or_else(|| CryptoError::Invalid("not a sealed value".into()))?;
    let (id, body) = text
        .rsplit_once('.')
        .ok_or_else(|| CryptoError::Invalid("a sealed value names its key".into()))?;
    let sealer = sealer_for(id).ok_or_else(|| CryptoError::UnknownKey(id.into()))?;
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| CryptoError::Invalid("a sealed value's body is base64url".into()))?;
    let plaintext = sealer.open(&body, AAD)?;
    serde_json::from_slice(&plaintext).map_err(|_| CryptoError::Mismatch)
}
