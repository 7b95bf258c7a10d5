//! Signatures over JSON documents (receipts, checkpoints) and over delivery bodies, and the public
//! key file an agency, a platform or an auditor verifies them with, offline.
//!
//! A JSON document is signed over its canonical form: compact JSON with sorted keys (serde_json's
//! map keeps keys sorted), without its `signature` member. So the signature survives any
//! re-serialization that keeps the values, and a change of one value breaks it.
//!
//! The delivery header (`X-Credit-Signature`) signs the request body's exact bytes:
//! `suite=national; key=<key id>; sig=<base64 signature>`.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CryptoError, Signer, Suite};

/// The header carrying a delivery's detached signature.
pub const DELIVERY_HEADER: &str = "x-credit-signature";

/// A signature as documents carry it. Every member is checked: a signature with a member more,
/// or naming another algorithm than its suite's, does not verify (the signature member is left
/// out of what is signed, so nothing in it may go unchecked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub suite: Suite,
    /// The signing key's id in the gateway's public key file.
    pub key_id: String,
    /// `sm2` (r || s, 64 bytes) or `ed25519` (64 bytes).
    pub algorithm: String,
    /// Base64 (standard alphabet).
    pub value: String,
}

/// Why a signature does not verify. Always the document's (or the key file's) fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the document carries no signature")]
    Unsigned,
    #[error("the signature is not in the expected form: {0}")]
    Malformed(String),
    #[error("no public key with id {0:?} in the key file given")]
    UnknownKey(String),
    #[error("the signature does not match the document: it was altered, or signed by another key")]
    Mismatch,
}

/// The canonical bytes a JSON document is signed over.
pub fn canonical(document: &Value) -> Vec<u8> {
    let mut doc = document.clone();
    if let Value::Object(map) = &mut doc {
        map.remove("signature");
    }
    // A Value always serializes.
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// Sign `message` and describe the signature.
pub fn sign(signer: &dyn Signer, message: &[u8]) -> Result<Signature, CryptoError> {
    let value = signer.sign(message)?;
    Ok(Signature {
        suite: signer.suite(),
        key_id: signer.key_id().to_string(),
        algorithm: signer.suite().signature_name().into(),
        value: base64::engine::general_purpose::STANDARD.encode(value),
    })
}

/// Add a `signature` member to a JSON object document.
pub fn sign_document(signer: &dyn Signer, document: &mut Value) -> Result<(), CryptoError> {
    let signature = sign(signer, &canonical(document))?;
    if let Value::Object(map) = document {
        map.insert(
            "signature".into(),
            serde_json::to_value(signature).unwrap_or(Value::Null),
        );
    }
    Ok(())
}

/// Verify a document signed by [`sign_document`] against the public key file.
pub fn verify_document(keys: &PublicKeyFile, document: &Value) -> Result<Signature, VerifyError> {
    let signature: Signature = match document.get("signature") {
        None | Some(Value::Null) => return Err(VerifyError::Unsigned),
        Some(s) => {
            serde_json::from_value(s.clone()).map_err(|e| VerifyError::Malformed(e.to_string()))?
        }
    };
    verify_bytes(keys, &signature, &canonical(document))?;
    Ok(signature)
}

/// Verify a detached signature over `message`.
pub fn verify_bytes(
    keys: &PublicKeyFile,
    signature: &Signature,
    message: &[u8],
) -> Result<(), VerifyError> {
    let key = keys
        .find(&signature.key_id)
        .ok_or_else(|| VerifyError::UnknownKey(signature.key_id.clone()))?;
    if key.suite != signature.suite || signature.algorithm != signature.suite.signature_name() {
        return Err(VerifyError::Mismatch);
    }
    let public = hex::decode(&key.public_key)
        .map_err(|_| VerifyError::Malformed("the key file's public key is not hex".into()))?;
    let value = base64::engine::general_purpose::STANDARD
        .decode(&signature.value)
        .map_err(|_| VerifyError::Malformed("the signature value is not base64".into()))?;
    if super::verify(signature.suite, &public, message, &value) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// The `X-Credit-Signature` header value for a delivery body.
pub fn header_value(signer: &dyn Signer, body: &[u8]) -> Result<String, CryptoError> {
    let s = sign(signer, body)?;
    Ok(format!(
        "suite={}; key={}; sig={}",
        s.suite, s.key_id, s.value
    ))
}

/// Parse an `X-Credit-Signature` header value.
pub fn parse_header(value: &str) -> Result<Signature, VerifyError> {
    let mut suite = None;
    let mut key = None;
    let mut sig = None;
    for part in value.split(';') {
        let Some((name, v)) = part.trim().split_once('=') else {
            return Err(VerifyError::Malformed(format!(
                "{part:?} is not name=value"
            )));
        };
        match name {
            "suite" => suite = Suite::parse(v),
            "key" => key = Some(v.to_string()),
            "sig" => sig = Some(v.to_string()),
            _ => {}
        }
    }
    match (suite, key, sig) {
        (Some(suite), Some(key_id), Some(value)) => Ok(Signature {
            suite,
            key_id,
            algorithm: suite.signature_name().into(),
            value,
        }),
        _ => Err(VerifyError::Malformed(
            "suite, key and sig are all required".into(),
        )),
    }
}

/// The gateway's public signing keys, as it publishes them (`credit-gateway keys public`): every
/// signing key it ever had, so that old receipts still verify after a rotation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyFile {
    pub gateway: String,
    pub keys: Vec<PublicKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub id: String,
    pub suite: Suite,
    pub algorithm: String,
    /// Hex: SEC1 uncompressed point (SM2), or the 32 raw bytes (Ed25519).
    pub public_key: String,
    /// SM2's distinguishing identifier (GB/T 32918.2 Z value), for SM2 keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm2_id: Option<String>,
}

impl PublicKeyFile {
    pub fn find(&self, id: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn describe(signer: &dyn Signer) -> PublicKey {
        PublicKey {
            id: signer.key_id().into(),
            suite: signer.suite(),
            algorithm: signer.suite().signature_name().into(),
            public_key: hex::encode(signer.public_key()),
            sm2_id: (signer.suite() == Suite::National).then(|| super::soft::SM2_ID.into()),
        }
    }

    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a public key file: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::soft::SoftSigner;

    #[test]
    fn a_document_altered_by_one_byte_fails_and_the_header_round_trips() {
        for suite in Suite::ALL {
            let signer =
                SoftSigner::from_secret(suite, "s1", &SoftSigner::generate_secret(suite)).unwrap();
            let keys = PublicKeyFile {
                gateway: "test".into(),
                keys: vec![PublicKeyFile::describe(&signer)],
            };
            let mut doc = serde_json::json!({"receipt_id": "R1", "accepted": 3});
            sign_document(&signer, &mut doc).unwrap();
            assert!(verify_document(&keys, &doc).is_ok());
            let text = serde_json::to_string(&doc)
                .unwrap()
                .replace("\"R1\"", "\"R2\"");
            let altered: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(verify_document(&keys, &altered), Err(VerifyError::Mismatch));
            let header = header_value(&signer, b"body").unwrap();
            let sig = parse_header(&header).unwrap();
            assert!(verify_bytes(&keys, &sig, b"body").is_ok());
            assert_eq!(
                verify_bytes(&keys, &sig, b"bodY"),
                Err(VerifyError::Mismatch)
            );
        }
    }

    /// The signature member is not signed itself: every member of it is checked instead (found
    /// by the crypto property test: a receipt whose `algorithm` lost a letter still verified).
    #[test]
    fn a_signature_naming_another_algorithm_or_carrying_a_member_more_does_not_verify() {
        let suite = Suite::National;
        let signer =
            SoftSigner::from_secret(suite, "s1", &SoftSigner::generate_secret(suite)).unwrap();
        let keys = PublicKeyFile {
            gateway: "test".into(),
            keys: vec![PublicKeyFile::describe(&signer)],
        };
        let mut doc = serde_json::json!({"receipt_id": "R1"});
        sign_document(&signer, &mut doc).unwrap();
        assert!(verify_document(&keys, &doc).is_ok());
        let mut renamed = doc.clone();
        renamed["signature"]["algorithm"] = "m2".into();
        assert_eq!(verify_document(&keys, &renamed), Err(VerifyError::Mismatch));
        let mut extended = doc.clone();
        extended["signature"]["note"] = "x".into();
        assert!(matches!(
            verify_document(&keys, &extended),
            Err(VerifyError::Malformed(_))
        ));
    }
}
