//! The receipt an agency gets for a batch: what was accepted (and whether it was new, a new
//! version, or already known), what was rejected and why, and where the batch sits in the audit
//! chain.
//!
//! A receipt's size follows from the configuration, not from the batch (issue #31: 100,000
//! rejected `{}` made a 40 MB receipt, and the same list went into the audit entry): at most
//! `ingest.max_listed_rejections` rejected records are listed one by one, the others are counted
//! by field and reason in `rejected_not_listed`; `rejected_count` counts them all. Accepted
//! records are all listed (at most `ingest.max_records_per_batch`, ~70 bytes each): an agency
//! needs each one's outcome and version.

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
    /// Rejected records beyond the listed ones, counted by field and reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected_not_listed: Vec<NotListed>,
    pub records: Vec<AcceptedRecord>,
    /// The file this batch is a part of, when it came as one (`POST /v1/files`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FilePart>,
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

/// A batch that is a part of a file: the file's receipt and digest, and the rows it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePart {
    pub receipt_id: String,
    pub sha256: String,
    pub first_row: usize,
    pub last_row: usize,
}

/// How many rejected records beyond the listed ones share a field and reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotListed {
    pub field: String,
    pub reason: String,
    pub count: usize,
}

/// Most distinct (field, reason) groups a receipt counts apart.
pub const MAX_GROUPS: usize = 100;

/// The rejections of one batch as the receipt shows them: the first ones listed, the rest counted.
#[derive(Debug, Clone, Default)]
pub struct Rejected {
    max_listed: usize,
    pub listed: Vec<Rejection>,
    counted: std::collections::BTreeMap<(String, String), usize>,
    pub total: usize,
}

impl Rejected {
    pub fn new(max_listed: usize) -> Self {
        Self {
            max_listed,
            ..Self::default()
        }
    }

    pub fn push(&mut self, rejection: Rejection) {
        self.total += 1;
        if self.listed.len() < self.max_listed {
            self.listed.push(rejection);
        } else {
            // At most `MAX_GROUPS` distinct field and reason pairs are counted apart; the rest
            // together, so the summary's size follows the configuration, not the batch.
            let key = (rejection.field, rejection.reason);
            let key = if self.counted.contains_key(&key) || self.counted.len() < MAX_GROUPS {
                key
            } else {
                (String::new(), "other fields and reasons".to_string())
            };
            *self.counted.entry(key).or_default() += 1;
        }
    }

    /// The rejections not listed, by field and reason.
    pub fn not_listed(&self) -> Vec<NotListed> {
        self.counted
            .iter()
            .map(|((field, reason), count)| NotListed {
                field: field.clone(),
                reason: reason.clone(),
                count: *count,
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(index: usize, field: &str) -> Rejection {
        Rejection {
            index,
            row: None,
            column: None,
            record_id: None,
            field: field.into(),
            canonical_field: field.into(),
            reason: "is required".into(),
            problems: Vec::new(),
        }
    }

    #[test]
    fn rejections_beyond_the_limit_are_counted_by_field_and_reason() {
        let mut r = Rejected::new(2);
        for i in 0..5 {
            r.push(rejection(
                i,
                if i % 2 == 0 { "category" } else { "subject" },
            ));
        }
        assert_eq!(r.total, 5);
        assert_eq!(r.listed.len(), 2);
        assert_eq!(
            r.not_listed(),
            vec![
                NotListed {
                    field: "category".into(),
                    reason: "is required".into(),
                    count: 2
                },
                NotListed {
                    field: "subject".into(),
                    reason: "is required".into(),
                    count: 1
                },
            ]
        );
    }
}
