//! Ledgers changed within one group commit: read once, changed in memory, written once.

use std::collections::HashMap;

use super::Ledger;
use crate::archive::RecordHead;
use crate::store::{to_bytes, Store, StoreError};

#[derive(Default)]
pub struct Staged {
    ledgers: HashMap<String, Ledger>,
    /// Keys in the order first put, written once each.
    order: Vec<String>,
    seen: std::collections::HashSet<String>,
}

impl Staged {
    /// The record's ledger as this group sees it; a record shared before the ledger existed gets
    /// one seeded from its head.
    pub fn take(
        &mut self,
        store: &Store,
        agency: &str,
        record_id: &str,
        head: Option<&RecordHead>,
    ) -> Result<Ledger, StoreError> {
        let key = Ledger::key(agency, record_id);
        if let Some(l) = self.ledgers.remove(&key) {
            return Ok(l);
        }
        if let Some(l) = store.get_json::<Ledger>(&key)? {
            return Ok(l);
        }
        Ok(match head {
            Some(h) if !h.shared.is_empty() => {
                let at = time::OffsetDateTime::parse(
                    &h.updated_at,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|e| StoreError::Corrupt {
                    key: "rec/ (updated_at)".into(),
                    message: e.to_string(),
                })?;
                Ledger::from_legacy(&h.shared, h.version, at)
            }
            _ => Ledger::default(),
        })
    }

    pub fn put(&mut self, agency: &str, record_id: &str, ledger: Ledger) {
        let key = Ledger::key(agency, record_id);
        if self.seen.insert(key.clone()) {
            self.order.push(key.clone());
        }
        self.ledgers.insert(key, ledger);
    }

    pub fn into_writes(mut self) -> Vec<(String, Vec<u8>)> {
        self.order
            .into_iter()
            .filter_map(|k| self.ledgers.remove(&k).map(|l| (k, to_bytes(&l))))
            .collect()
    }
}
