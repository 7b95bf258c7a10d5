//! `credit-gateway compact`: rewrite the sled data directory with its live values only (stop the
//! gateway first; sled refuses a second process anyway). After an upgrade that sealed personal
//! information in place, this is what removes the older clear copies sled had not cleaned yet.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, StorageEngine};
use crate::store::{sled::compact, Store};

pub(super) fn compact(config: &Config, dir: Option<PathBuf>) -> ExitCode {
    if config.storage.engine != StorageEngine::Sled && dir.is_none() {
        eprintln!("compact: storage.engine is postgres: run VACUUM FULL on the database instead");
        return ExitCode::from(2);
    }
    let dir = dir.unwrap_or_else(|| config.storage.data_dir.clone());
    // Opened with the keys: an older directory is migrated (sealed) first, then copied as stored.
    let protection: std::sync::Arc<dyn crate::store::AtRest> = match crate::app::load_keys(config) {
        Ok(keys) => std::sync::Arc::new(crate::privacy::Protection::new(keys)),
        Err(e) => {
            eprintln!("compact: {e}");
            return ExitCode::from(2);
        }
    };
    let source = match Store::open_tuned(
        &dir,
        config.storage.durability,
        config.storage.cache_mb,
        Some(protection),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("compact: {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    let report = compact::compact(
        source,
        &dir,
        config.storage.durability,
        config.storage.cache_mb,
        |done, total| {
            eprintln!(
                "compact: {done} of {total} keys ({}%)",
                done * 100 / total.max(1)
            )
        },
    );
    match report {
        Ok(r) => {
            say!("{}", serde_json::to_string(&r).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("compact: {e}");
            ExitCode::from(1)
        }
    }
}
