//! `credit-gateway backup DIR` and `credit-gateway restore DIR` (issue #30; `crate::backup`).

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, StorageEngine};

pub(super) fn backup(config: &Config, dir: &Path) -> ExitCode {
    if config.storage.engine == StorageEngine::Postgres {
        eprintln!("backup: {}", crate::backup::BackupError::Postgres);
        return ExitCode::from(2);
    }
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if super::local_gateway_runs(config) {
        let path = format!(
            "{}?dir={}",
            crate::backup::route::BACKUP,
            encode(&dir.display().to_string())
        );
        return match runtime.block_on(super::outbox::admin_request(config, "POST", &path)) {
            Ok((status, value)) if status.is_success() => {
                say!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            Ok((_, value)) => {
                eprintln!(
                    "backup: {}",
                    value["error"]["message"].as_str().unwrap_or("refused")
                );
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("backup: the running gateway does not answer: {e}");
                ExitCode::from(2)
            }
        };
    }
    let store = match super::open_local(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("backup: {e}");
            return ExitCode::from(2);
        }
    };
    let now = crate::app::clock(config).now();
    match crate::backup::offline(&store, &dir, now, &config.key_file().display().to_string()) {
        Ok(manifest) => {
            say!(
                "{}",
                serde_json::to_string_pretty(&manifest).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("backup: {e}");
            ExitCode::from(1)
        }
    }
}

pub(super) fn restore(config: &Config, dir: &Path) -> ExitCode {
    if config.storage.engine == StorageEngine::Postgres {
        eprintln!("restore: storage.engine = postgres: restore the database with pg_restore or psql (docs/operate/backup.md)");
        return ExitCode::from(2);
    }
    if super::local_gateway_runs(config) {
        eprintln!("restore: a gateway runs on this data directory: stop it first");
        return ExitCode::from(2);
    }
    let keys = match crate::crypto::Keyring::load(
        &config.key_source(),
        config.crypto.suite,
        false,
        crate::app::clock(config).now(),
    ) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("restore: the key file the backup's values are sealed with is needed: {e}");
            return ExitCode::from(2);
        }
    };
    match crate::backup::restore(dir, &config.storage.data_dir, keys) {
        Ok(done) => {
            say!(
                "{}",
                serde_json::to_string_pretty(&done).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("restore: {e}");
            ExitCode::from(1)
        }
    }
}

/// Percent-encoding for a query value (a path).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_-./".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
