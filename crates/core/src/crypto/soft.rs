//! The software implementations of [`Signer`] and [`Sealer`]: keys held in memory, primitives
//! from RustCrypto (`sm2`, `sm4`, `aes-gcm`) and `ring` (Ed25519).
//!
//! Never does: implement a primitive. Nonces for sealing are 96 random bits from the operating
//! system per value; under one key that stays far below the birthday bound for the volumes a
//! province stores (NIST SP 800-38D §8.3: 2^32 invocations per key), and rotation starts a new key.

use aes_gcm::aead::{Aead, KeyInit, Payload};

use super::{CryptoError, Sealer, Signer, Suite};

/// The SM2 distinguishing identifier: the default of GB/T 35276-2017 §7 (and of GM/T 0009).
pub const SM2_ID: &str = "1234567812345678";

const NONCE_LEN: usize = 12;

type Sm4Gcm = aes_gcm::AesGcm<sm4::Sm4, aes_gcm::aead::consts::U12>;

/// A signing key held in memory.
pub struct SoftSigner {
    suite: Suite,
    id: String,
    key: SignKey,
}

enum SignKey {
    Ed25519(ring::signature::Ed25519KeyPair),
    Sm2(Box<sm2::dsa::SigningKey>),
}

impl std::fmt::Debug for SoftSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftSigner")
            .field("suite", &self.suite)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SoftSigner {
    /// From the 32 secret bytes of the key file (an Ed25519 seed, or an SM2 private scalar).
    pub fn from_secret(suite: Suite, id: &str, secret: &[u8]) -> Result<Self, CryptoError> {
        let key = match suite {
            Suite::International => SignKey::Ed25519(
                ring::signature::Ed25519KeyPair::from_seed_unchecked(secret)
                    .map_err(|_| CryptoError::Invalid("an Ed25519 seed is 32 bytes".into()))?,
            ),
            Suite::National => SignKey::Sm2(Box::new(
                sm2::dsa::SigningKey::from_slice(SM2_ID, secret)
                    .map_err(|_| CryptoError::Invalid("not an SM2 private key".into()))?,
            )),
        };
        Ok(Self {
            suite,
            id: id.into(),
            key,
        })
    }

    /// 32 fresh secret bytes valid for `suite` (an SM2 scalar must lie in [1, n-2]).
    pub fn generate_secret(suite: Suite) -> Vec<u8> {
        loop {
            let secret: [u8; 32] = rand::random();
            if SoftSigner::from_secret(suite, "probe", &secret).is_ok() {
                return secret.to_vec();
            }
        }
    }
}

impl Signer for SoftSigner {
    fn suite(&self) -> Suite {
        self.suite
    }
    fn key_id(&self) -> &str {
        &self.id
    }
    fn public_key(&self) -> Vec<u8> {
        use ring::signature::KeyPair;
        match &self.key {
            SignKey::Ed25519(k) => k.public_key().as_ref().to_vec(),
            SignKey::Sm2(k) => k.verifying_key().to_sec1_bytes().to_vec(),
        }
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(match &self.key {
            SignKey::Ed25519(k) => k.sign(message).as_ref().to_vec(),
            SignKey::Sm2(k) => {
                use sm2::dsa::signature::Signer as _;
                let signature: sm2::dsa::Signature = k.sign(message);
                signature.to_bytes().to_vec()
            }
        })
    }
}

pub(super) fn verify(suite: Suite, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    match suite {
        Suite::International => {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
                .verify(message, signature)
                .is_ok()
        }
        Suite::National => {
            use sm2::dsa::signature::Verifier as _;
            let Ok(key) = sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_ID, public_key) else {
                return false;
            };
            let Ok(signature) = sm2::dsa::Signature::try_from(signature) else {
                return false;
            };
            key.verify(message, &signature).is_ok()
        }
    }
}

/// A data key held in memory.
pub struct SoftSealer {
    suite: Suite,
    id: String,
    cipher: Cipher,
}

enum Cipher {
    Aes(Box<aes_gcm::Aes256Gcm>),
    Sm4(Box<Sm4Gcm>),
}

impl std::fmt::Debug for SoftSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftSealer")
            .field("suite", &self.suite)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SoftSealer {
    /// The key length of `suite`'s cipher: 32 bytes for AES-256, 16 for SM4.
    pub fn key_len(suite: Suite) -> usize {
        match suite {
            Suite::International => 32,
            Suite::National => 16,
        }
    }

    pub fn from_secret(suite: Suite, id: &str, secret: &[u8]) -> Result<Self, CryptoError> {
        let wrong = || {
            CryptoError::Invalid(format!(
                "a {} key is {} bytes",
                suite.cipher_name(),
                Self::key_len(suite)
            ))
        };
        let cipher = match suite {
            Suite::International => Cipher::Aes(Box::new(
                aes_gcm::Aes256Gcm::new_from_slice(secret).map_err(|_| wrong())?,
            )),
            Suite::National => Cipher::Sm4(Box::new(
                Sm4Gcm::new_from_slice(secret).map_err(|_| wrong())?,
            )),
        };
        Ok(Self {
            suite,
            id: id.into(),
            cipher,
        })
    }

    pub fn generate_secret(suite: Suite) -> Vec<u8> {
        let bytes: [u8; 32] = rand::random();
        bytes[..Self::key_len(suite)].to_vec()
    }
}

impl Sealer for SoftSealer {
    fn suite(&self) -> Suite {
        self.suite
    }
    fn key_id(&self) -> &str {
        &self.id
    }
    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let payload = Payload {
            msg: plaintext,
            aad,
        };
        let body = match &self.cipher {
            Cipher::Aes(c) => c.encrypt(&nonce.into(), payload),
            Cipher::Sm4(c) => c.encrypt(&nonce.into(), payload),
        }
        .map_err(|_| CryptoError::Device("sealing failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + body.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }
    fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Invalid("too short to be sealed".into()));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Mismatch)?;
        let payload = Payload { msg: body, aad };
        match &self.cipher {
            Cipher::Aes(c) => c.decrypt(&nonce.into(), payload),
            Cipher::Sm4(c) => c.decrypt(&nonce.into(), payload),
        }
        .map_err(|_| CryptoError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_fail_when_altered_in_both_suites() {
        for suite in Suite::ALL {
            let secret = SoftSigner::generate_secret(suite);
            let signer = SoftSigner::from_secret(suite, "s1", &secret).unwrap();
            let sig = signer.sign(b"receipt").unwrap();
            assert!(
                verify(suite, &signer.public_key(), b"receipt", &sig),
                "{suite}"
            );
            assert!(
                !verify(suite, &signer.public_key(), b"receipT", &sig),
                "{suite}"
            );
            let mut bad = sig.clone();
            bad[5] ^= 1;
            assert!(
                !verify(suite, &signer.public_key(), b"receipt", &bad),
                "{suite}"
            );
            let other = Suite::ALL.into_iter().find(|s| *s != suite).unwrap();
            assert!(!verify(other, &signer.public_key(), b"receipt", &sig));
        }
    }

    #[test]
    fn sealing_round_trips_and_detects_tampering_in_both_suites() {
        for suite in Suite::ALL {
            let key = SoftSealer::generate_secret(suite);
            assert_eq!(key.len(), SoftSealer::key_len(suite));
            let sealer = SoftSealer::from_secret(suite, "k1", &key).unwrap();
            let sealed = sealer.seal(b"110101199003077777", b"aad").unwrap();
            assert_eq!(sealer.open(&sealed, b"aad").unwrap(), b"110101199003077777");
            assert!(sealer.open(&sealed, b"other aad").is_err());
            let mut bad = sealed.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert!(matches!(
                sealer.open(&bad, b"aad"),
                Err(CryptoError::Mismatch)
            ));
            // Two seals of one value differ (random nonces): equal values are not linkable.
            assert_ne!(
                sealer.seal(b"x", b"").unwrap(),
                sealer.seal(b"x", b"").unwrap()
            );
        }
    }
}
