//! Who is calling: agencies identified by their client certificate, what each may do, and the TLS
//! material that makes that trustworthy.
//!
//! Owns: the agency registry (certificate subject CN or SHA-256 fingerprint -> agency), per-agency
//! permissions (mappings it may push, archive reads) and rate limits (governor), the rustls server
//! and client configurations (ring provider only), and the development CA (`certs init`).
//!
//! Never does: accept a connection without a client certificate from the configured CA (rustls'
//! `WebPkiClientVerifier` rejects it in the handshake), or trust anything a request body says
//! about who sent it.

pub mod certs;
pub mod expiry;
pub mod tls;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{Quota, RateLimiter};
use sha2::{Digest, Sha256};

use crate::config::{normalize_fingerprint, AgencyConfig};

type Limiter = RateLimiter<governor::state::NotKeyed, governor::state::InMemoryState, DefaultClock>;

/// A configured agency.
#[derive(Debug)]
pub struct Agency {
    pub id: String,
    pub name: String,
    pub mappings: Vec<String>,
    pub read_archive: bool,
    pub correct_others: bool,
    limiter: Limiter,
}

impl Agency {
    pub fn may_push(&self, mapping: &str) -> bool {
        self.mappings.iter().any(|m| m == mapping)
    }

    /// `Err(wait)` when over the rate limit.
    pub fn check_rate(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// Certificate -> agency.
#[derive(Debug, Default)]
pub struct Registry {
    by_cn: HashMap<String, Arc<Agency>>,
    by_fingerprint: HashMap<String, Arc<Agency>>,
    all: Vec<Arc<Agency>>,
}

impl Registry {
    pub fn new(agencies: &[AgencyConfig]) -> Self {
        let mut reg = Registry::default();
        for a in agencies {
            let quota = Quota::per_second(
                NonZeroU32::new(a.requests_per_second).unwrap_or(NonZeroU32::MIN),
            )
            .allow_burst(NonZeroU32::new(a.burst).unwrap_or(NonZeroU32::MIN));
            let agency = Arc::new(Agency {
                id: a.id.clone(),
                name: a.name.clone(),
                mappings: a.mappings.clone(),
                read_archive: a.read_archive,
                correct_others: a.correct_others,
                limiter: RateLimiter::direct(quota),
            });
            if let Some(cn) = &a.cert_subject_cn {
                reg.by_cn.insert(cn.clone(), agency.clone());
            }
            if let Some(fp) = a.cert_sha256.as_deref().and_then(normalize_fingerprint) {
                reg.by_fingerprint.insert(fp, agency.clone());
            }
            reg.all.push(agency);
        }
        reg
    }

    /// The agency a (CA-verified) client certificate belongs to. A fingerprint match wins over a
    /// subject-name match.
    pub fn identify(&self, cert_der: &[u8]) -> Option<Arc<Agency>> {
        let fingerprint = hex::encode(Sha256::digest(cert_der));
        if let Some(a) = self.by_fingerprint.get(&fingerprint) {
            return Some(a.clone());
        }
        let cn = certs::subject_common_name(cert_der)?;
        self.by_cn.get(&cn).cloned()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Agency>> {
        self.all.iter().find(|a| a.id == id).cloned()
    }
}
