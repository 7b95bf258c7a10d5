//! Commercial cryptography (GB/T 39786-2021, level 3): the two algorithm suites, the gateway's
//! keys, and the three uses the gateway makes of them: the audit chain's hash, signatures over
//! receipts, checkpoints and deliveries, and sealing personal identifiers and restricted fields
//! at rest.
//!
//! | | `international` | `national` |
//! |---|---|---|
//! | hash (audit chain) | SHA-256 | SM3 (GB/T 32905) |
//! | keyed hash (subject lookup) | HMAC-SHA-256 | HMAC-SM3 |
//! | signature | Ed25519 | SM2 (GB/T 32918, ID `1234567812345678`) |
//! | sealing at rest | AES-256-GCM | SM4-GCM (GB/T 32907, RFC 8998) |
//!
//! Owns: [`Suite`], the [`Signer`] and [`Sealer`] traits (what a certified crypto card or HSM
//! implements to replace the software implementations in [`soft`]), the key file ([`keyring`]),
//! the signature envelope ([`signed`]) and the sealed-value format ([`sealed`]).
//!
//! Never does: choose what is personal or restricted (the privacy rules in `privacy` do), store
//! anything, or log key material. Primitives come from well-kept crates (RustCrypto `sm2`, `sm3`,
//! `sm4`, `aes-gcm`, `hmac`, `sha2`; `ring` for Ed25519); none is implemented here. They are
//! not certified products: see docs/operate/keys-and-crypto.md.
//!
//! Invariants: every sealed value and every signature names its suite and key id, so data from
//! before a rotation or a suite change stays readable and verifiable.

pub mod keyring;
pub mod sealed;
pub mod signed;
pub mod soft;

#[cfg(test)]
mod kat;

use serde::{Deserialize, Serialize};

pub use keyring::{Keyring, KeyringError, Keys};
pub use signed::{PublicKeyFile, Signature};

/// The algorithm suite (`crypto.suite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suite {
    /// SHA-256, HMAC-SHA-256, Ed25519, AES-256-GCM.
    International,
    /// SM3, HMAC-SM3, SM2, SM4-GCM (商用密码).
    #[default]
    National,
}

impl Suite {
    pub const ALL: [Suite; 2] = [Suite::International, Suite::National];

    pub fn name(self) -> &'static str {
        match self {
            Suite::International => "international",
            Suite::National => "national",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == text)
    }

    /// The chain hash's name as audit entries record it.
    pub fn hash_name(self) -> &'static str {
        match self {
            Suite::International => "sha256",
            Suite::National => "sm3",
        }
    }

    pub fn signature_name(self) -> &'static str {
        match self {
            Suite::International => "ed25519",
            Suite::National => "sm2",
        }
    }

    pub fn cipher_name(self) -> &'static str {
        match self {
            Suite::International => "aes-256-gcm",
            Suite::National => "sm4-gcm",
        }
    }

    /// The suite's hash of `parts`, concatenated.
    pub fn digest(self, parts: &[&[u8]]) -> [u8; 32] {
        use sha2::Digest;
        match self {
            Suite::International => {
                let mut h = sha2::Sha256::new();
                for p in parts {
                    h.update(p);
                }
                h.finalize().into()
            }
            Suite::National => {
                let mut h = sm3::Sm3::new();
                for p in parts {
                    h.update(p);
                }
                h.finalize().into()
            }
        }
    }

    /// The suite's keyed hash (HMAC) of `data`.
    pub fn keyed_hash(self, key: &[u8], data: &[u8]) -> [u8; 32] {
        use hmac::{KeyInit, Mac};
        match self {
            Suite::International => {
                let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
                    .expect("HMAC takes a key of any length");
                mac.update(data);
                mac.finalize().into_bytes().into()
            }
            Suite::National => {
                let mut mac = <hmac::Hmac<sm3::Sm3> as KeyInit>::new_from_slice(key)
                    .expect("HMAC takes a key of any length");
                mac.update(data);
                mac.finalize().into_bytes().into()
            }
        }
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A cryptographic failure. `Invalid` and `Mismatch` are the data's fault (a forged, altered or
/// foreign value: no retry helps); `UnknownKey` is the operator's (the key file lacks a key that
/// stored data names); `Device` is the key provider's, and a retry may help.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("no key with id {0:?} in the key file (it sealed or signed this value): restore it")]
    UnknownKey(String),
    #[error("the value is not in the expected form: {0}")]
    Invalid(String),
    #[error("authentication failed: the value was altered or sealed under another key")]
    Mismatch,
    #[error("the key provider failed: {0}")]
    Device(String),
}

/// Signs with one key (the gateway's). A crypto card or HSM implements this instead of
/// [`soft::SoftSigner`]; the private key never has to leave it.
pub trait Signer: Send + Sync + std::fmt::Debug {
    fn suite(&self) -> Suite;
    fn key_id(&self) -> &str;
    /// The public key: SEC1 uncompressed for SM2, the raw 32 bytes for Ed25519.
    fn public_key(&self) -> Vec<u8>;
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError>;
}

/// Seals and opens values with one data key (AEAD). A crypto card implements this instead of
/// [`soft::SoftSealer`].
pub trait Sealer: Send + Sync + std::fmt::Debug {
    fn suite(&self) -> Suite;
    fn key_id(&self) -> &str;
    /// `nonce || ciphertext || tag`.
    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError>;
    fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError>;
}

/// Whether `signature` by `public_key` (as [`Signer::public_key`] gives it) covers `message`.
/// Verification needs no secret, so it is never delegated to a device.
pub fn verify(suite: Suite, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    soft::verify(suite, public_key, message, signature)
}
