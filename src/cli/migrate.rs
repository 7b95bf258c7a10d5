//! `credit-gateway migrate`: copy a sled data directory into a PostgreSQL database, so an
//! operator moves from one embedded node to several nodes on one database.
//!
//! The copy is key for key (both engines hold the same ordered key-value space, see
//! `store::engine`), in atomic chunks, with progress on stderr; identifiers handed out later stay
//! above every one the sled directory handed out; at the end both sides hold the same number of
//! keys and bytes, so `audit verify` agrees on both. The target must be empty (a fresh database
//! holds only its format marker); a copy interrupted half-way is run again with `--resume`, which
//! writes every key again (writes are idempotent). Stop the gateway first: sled refuses a second
//! process anyway.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use crate::config::Config;
use crate::store::{format, postgres, Store, StoreError, WriteSet};

/// Keys written per transaction.
const CHUNK: usize = 5_000;

pub(super) struct Migrate {
    pub from: Option<PathBuf>,
    pub to: Option<String>,
    pub resume: bool,
}

pub(super) fn migrate(config: &Config, args: Migrate) -> ExitCode {
    let from = args.from.unwrap_or_else(|| config.storage.data_dir.clone());
    let Some(url) = args.to.or_else(|| config.storage.postgres_url()) else {
        eprintln!(
            "migrate: no database: give --to postgres://… or storage.postgres_url (or {})",
            crate::config::POSTGRES_URL_ENV
        );
        return ExitCode::from(2);
    };
    // The source opens with the keys (an older directory is sealed in place first); its stored
    // bytes are copied as they are, sealed values sealed: the nodes need the same key file.
    let protection: Option<std::sync::Arc<dyn crate::store::AtRest>> =
        match crate::app::load_keys(config) {
            Ok(keys) => Some(std::sync::Arc::new(crate::privacy::Protection::new(keys))),
            Err(e) => {
                eprintln!("migrate: {e}");
                return ExitCode::from(2);
            }
        };
    let source = match Store::open_tuned(
        &from,
        config.storage.durability,
        config.storage.cache_mb,
        protection,
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("migrate: the sled directory {}: {e}", from.display());
            return ExitCode::from(2);
        }
    };
    let target = match Store::open_postgres(
        &postgres::Options {
            url,
            pool_size: 4,
            ca: config.storage.postgres_ca.clone(),
        },
        None,
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("migrate: the database: {e}");
            return ExitCode::from(2);
        }
    };
    match copy(&source, &target, args.resume) {
        Ok(report) => {
            say!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("migrate: {e}");
            ExitCode::from(1)
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum MigrateError {
    #[error("the database already holds {0} keys: migrate into an empty database (run again with --resume to finish a copy that was interrupted)")]
    NotEmpty(usize),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("after the copy the database holds {target} keys and the sled directory {source_keys}: the copy is incomplete")]
    Mismatch { source_keys: usize, target: usize },
}

fn copy(source: &Store, target: &Store, resume: bool) -> Result<serde_json::Value, MigrateError> {
    let present = target.count_under(b"")?;
    // A fresh database holds its format marker only.
    let marker = usize::from(target.get_raw(format::KEY.as_bytes())?.is_some());
    if present > marker && !resume {
        return Err(MigrateError::NotEmpty(present));
    }
    let total = source.count_under(b"")?;
    eprintln!("migrate: copying {total} keys");
    let (mut copied, mut bytes) = (0usize, 0u64);
    let mut writes = WriteSet::default();
    for pair in source.scan_stored(b"") {
        let (k, v) = pair?;
        bytes += (k.len() + v.len()) as u64;
        writes.put(k, v);
        copied += 1;
        if writes.len() >= CHUNK {
            target.apply_stored(std::mem::take(&mut writes))?;
            eprintln!(
                "migrate: {copied} of {total} keys ({}%)",
                copied * 100 / total.max(1)
            );
        }
    }
    if !writes.is_empty() {
        target.apply_stored(writes)?;
    }
    // Numbers the sled directory handed out (outbox sequences, change log) stay unique.
    target.raise_ids(source.next_id()?)?;
    target.flush()?;
    let in_target = target.count_under(b"")?;
    if in_target != copied {
        return Err(MigrateError::Mismatch {
            source_keys: copied,
            target: in_target,
        });
    }
    eprintln!("migrate: {copied} of {total} keys (100%)");
    Ok(json!({ "keys": copied, "bytes": bytes, "engine": target.engine_name() }))
}
