//! The receipt an agency gets for a batch: what was accepted (and whether it was new, a new
//! version, or already known), what was rejected and why, and where the batch sits in the audit
//! chain.

use serde::{Deserialize, Serialize};

use crate::archive::Outcome;
use crate::audit::Head;
use crate::mapping::Rejection;

#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    pub receipt_id: String,
    pub agency: String,
    pub mapping: String,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: time::OffsetDateTime,
    pub total: usize,
    pub accepted: usize,
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
    #[serde(rename = "rejected_count")]
    pub rejected_count: usize,
    pub rejected: Vec<Rejection>,
    pub records: Vec<AcceptedRecord>,
    pub audit: Head,
    /// The gateway's signature over the receipt's canonical JSON (without this member), so the
    /// agency can prove what was acknowledged (`credit-gateway receipt verify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::crypto::Signature>,
}

impl Receipt {
    /// Sign the receipt with the gateway's key (when the store has keys).
    pub fn sign(
        &mut self,
        keys: Option<&crate::crypto::Keyring>,
    ) -> Result<(), crate::crypto::CryptoError> {
        let Some(keys) = keys else {
            return Ok(());
        };
        self.signature = None;
        let canonical =
            crate::crypto::signed::canonical(&serde_json::to_value(&*self).unwrap_or_default());
        self.signature = Some(crate::crypto::signed::sign(
            keys.current().signer(),
            &canonical,
        )?);
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptedRecord {
    pub index: usize,
    pub record_id: String,
    pub outcome: Outcome,
    pub version: u32,
}

/// `rcp/{receipt id}`: the receipt as the agency got it.
pub fn receipt_key(receipt_id: &str) -> String {
    crate::store::keys::IdSpace::Receipt.key(receipt_id)
}
