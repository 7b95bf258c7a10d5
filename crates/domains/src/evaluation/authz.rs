//! Authorized query tokens (GD Art. 21: 实时授权查询). The medical-insurance platform, which
//! authenticates the subject, issues a token saying "this caller may read this subject's
//! evaluation for the next minutes"; the gateway verifies it and answers for that subject only.
//!
//! Format: a JWT (RFC 7519) signed with Ed25519 (`alg = EdDSA`, RFC 8037). Claims: `iss` (one of
//! `evaluation.authorization_issuers`), `aud = "credit-gateway"`, `sub = "{id_type}:{id}"`,
//! `scope = "evaluation:read"`, `iat`, `exp` (at most [`MAX_LIFETIME`] after `iat`) and `jti`.
//! Keys: the issuer's Ed25519 public keys as PEM files (`evaluation.authorization_keys`); any of
//! them may verify, so keys rotate by adding the new one before the issuer switches.
//!
//! Never does: read the system clock (expiry is judged on the gateway's one clock) or log a token.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::subject::SubjectId;

pub const AUDIENCE: &str = "credit-gateway";
pub const SCOPE: &str = "evaluation:read";
/// Longest lifetime of a token: an authorization is for a query, not a standing permission.
pub const MAX_LIFETIME: time::Duration = time::Duration::hours(24);
/// How far an issuer's clock may run ahead of the gateway's.
const SKEW: i64 = 300;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// Why a token was refused: always the caller's (a new authorization from the subject helps).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthzError {
    #[error("no authorization: send the subject's token as `Authorization: Bearer <token>` (GD Art. 21)")]
    Missing,
    #[error("the authorization token is malformed or its signature does not verify")]
    Invalid,
    #[error("the authorization token was not issued by a known issuer")]
    UnknownIssuer,
    #[error("the authorization token expired")]
    Expired,
    #[error("the authorization token is not valid yet or lives longer than 24 hours")]
    BadLifetime,
    #[error("the authorization token does not grant evaluation:read")]
    WrongScope,
    #[error("the authorization token is for another subject")]
    OtherSubject,
}

/// Verifying keys and issuers, loaded at start.
#[derive(Clone, Default)]
pub struct Authority {
    keys: Vec<DecodingKey>,
    issuers: Vec<String>,
}

/// A key file problem: the operator's to fix.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct KeyError {
    pub path: String,
    pub message: String,
}

impl Authority {
    pub fn load(paths: &[std::path::PathBuf], issuers: &[String]) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for path in paths {
            let pem = std::fs::read(path).map_err(|e| KeyError {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            keys.push(DecodingKey::from_ed_pem(&pem).map_err(|e| KeyError {
                path: path.display().to_string(),
                message: format!("not an Ed25519 public key in PEM: {e}"),
            })?);
        }
        Ok(Self {
            keys,
            issuers: issuers.to_vec(),
        })
    }

    pub fn is_configured(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Verify `token` for `subject` at `now`.
    pub fn verify(
        &self,
        token: Option<&str>,
        subject: &SubjectId,
        now: OffsetDateTime,
    ) -> Result<Claims, AuthzError> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthzError::Missing)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Expiry is judged below on the gateway's clock, not the system's.
        validation.validate_exp = false;
        validation.required_spec_claims = ["iss", "aud", "sub"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        validation.set_audience(&[AUDIENCE]);
        let claims = self
            .keys
            .iter()
            .find_map(|k| jsonwebtoken::decode::<Claims>(token, k, &validation).ok())
            .ok_or(AuthzError::Invalid)?
            .claims;
        if !self.issuers.contains(&claims.iss) {
            return Err(AuthzError::UnknownIssuer);
        }
        let now = now.unix_timestamp();
        if claims.exp <= now {
            return Err(AuthzError::Expired);
        }
        let lifetime = claims.exp.checked_sub(claims.iat);
        if claims.iat > now.saturating_add(SKEW)
            || lifetime.is_none_or(|l| l > MAX_LIFETIME.whole_seconds())
        {
            return Err(AuthzError::BadLifetime);
        }
        if claims.scope.split_whitespace().all(|s| s != SCOPE) {
            return Err(AuthzError::WrongScope);
        }
        if claims.sub != subject_claim(subject) {
            return Err(AuthzError::OtherSubject);
        }
        Ok(claims)
    }
}

/// The `sub` claim naming a subject.
pub fn subject_claim(subject: &SubjectId) -> String {
    format!("{}:{}", subject.id_type().code(), subject.as_str())
}

/// A new Ed25519 key pair: (private key PKCS#8 PEM, public key PEM). For the issuer's setup and
/// for tests; the gateway itself only needs the public key.
pub fn keygen() -> Result<(String, String), String> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| e.to_string())?;
    Ok((pair.serialize_pem(), pair.public_key_pem()))
}

/// Sign a token with a PKCS#8 PEM private key (what the issuer does).
pub fn issue(private_pem: &[u8], claims: &Claims) -> Result<String, String> {
    let key = EncodingKey::from_ed_pem(private_pem).map_err(|e| e.to_string())?;
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &key).map_err(|e| e.to_string())
}

/// Read a key file for `issue`.
pub fn read_key(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::{IdType, IdentifierExceptions};

    fn subject(id: &str) -> SubjectId {
        SubjectId::parse(IdType::Uscc, id, &IdentifierExceptions::default()).unwrap()
    }

    fn setup() -> (Authority, Vec<u8>, OffsetDateTime) {
        let (private, public) = keygen().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, public).unwrap();
        let authority = Authority::load(&[path], &["mi".to_string()]).unwrap();
        (
            authority,
            private.into_bytes(),
            time::macros::datetime!(2025-06-01 10:00 UTC),
        )
    }

    fn claims(sub: &SubjectId, now: OffsetDateTime, minutes: i64) -> Claims {
        Claims {
            iss: "mi".into(),
            aud: AUDIENCE.into(),
            sub: subject_claim(sub),
            scope: SCOPE.into(),
            iat: now.unix_timestamp(),
            exp: now.unix_timestamp() + minutes * 60,
            jti: "q-1".into(),
        }
    }

    #[test]
    fn a_token_is_accepted_for_its_subject_only_and_until_it_expires() {
        let (authority, key, now) = setup();
        let s = subject("91310110666007217T");
        let token = issue(&key, &claims(&s, now, 10)).unwrap();
        assert!(authority.verify(Some(&token), &s, now).is_ok());
        let other = subject("91350100M000100Y43");
        assert_eq!(
            authority.verify(Some(&token), &other, now).unwrap_err(),
            AuthzError::OtherSubject
        );
        let later = now + time::Duration::minutes(10);
        assert_eq!(
            authority.verify(Some(&token), &s, later).unwrap_err(),
            AuthzError::Expired
        );
        assert_eq!(
            authority.verify(None, &s, now).unwrap_err(),
            AuthzError::Missing
        );
        let mut tampered = token.clone().into_bytes();
        let mid = tampered.len() / 2;
        tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            authority.verify(Some(&tampered), &s, now).unwrap_err(),
            AuthzError::Invalid
        );
    }

    #[test]
    fn another_key_issuer_scope_or_a_long_life_is_refused() {
        let (authority, _, now) = setup();
        let (stranger, _) = keygen().unwrap();
        let s = subject("91310110666007217T");
        let token = issue(stranger.as_bytes(), &claims(&s, now, 10)).unwrap();
        assert_eq!(
            authority.verify(Some(&token), &s, now).unwrap_err(),
            AuthzError::Invalid
        );
        let (authority, key, now) = setup();
        let mut c = claims(&s, now, 10);
        c.iss = "someone".into();
        assert_eq!(
            authority
                .verify(Some(&issue(&key, &c).unwrap()), &s, now)
                .unwrap_err(),
            AuthzError::UnknownIssuer
        );
        let mut c = claims(&s, now, 10);
        c.scope = "archive:read".into();
        assert_eq!(
            authority
                .verify(Some(&issue(&key, &c).unwrap()), &s, now)
                .unwrap_err(),
            AuthzError::WrongScope
        );
        let c = claims(&s, now, 60 * 48);
        assert_eq!(
            authority
                .verify(Some(&issue(&key, &c).unwrap()), &s, now)
                .unwrap_err(),
            AuthzError::BadLifetime
        );
    }
}
