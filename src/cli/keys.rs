//! `credit-gateway keys` and the offline verification of what the gateway signed
//! (`receipt verify`, `audit checkpoint --verify`).

use std::path::Path;
use std::process::ExitCode;

use super::KeysCommand;
use crate::config::Config;
use crate::crypto::keyring::{read_file, write_file};
use crate::crypto::signed::{verify_document as verify_signed, PublicKeyFile};

pub(super) fn keys(config: &Config, cmd: KeysCommand) -> ExitCode {
    match cmd {
        KeysCommand::Public => match crate::app::load_keys(config) {
            Ok(keys) => {
                say!(
                    "{}",
                    serde_json::to_string_pretty(&keys.public_keys()).unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        KeysCommand::Rotate { signing } => rotate(config, signing),
    }
}

fn rotate(config: &Config, signing: bool) -> ExitCode {
    if !config.crypto.key_command.is_empty() {
        eprintln!(
            "the keys come from crypto.key_command: rotate them in the key service, then restart the gateway"
        );
        return ExitCode::from(2);
    }
    let path = config.key_file();
    let mut file = match read_file(&path) {
        Ok(Some(f)) => f,
        Ok(None) => {
            eprintln!(
                "{}: no key file yet (start the gateway once)",
                path.display()
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let now = crate::app::clock(config).now();
    let data = file.add_data_key(config.crypto.suite, now);
    let mut added = serde_json::json!({"data_key": data});
    if signing {
        let id = file.add_signing_key(config.crypto.suite, now);
        added["signing_key"] = serde_json::json!(id);
    }
    if let Err(e) = write_file(&path, &file) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    say!("{added}");
    eprintln!(
        "the new key is in force after SIGHUP (kill -HUP <gateway>) or the next start; the gateway then re-encrypts older values in the background (gateway_reencryption_pending)"
    );
    ExitCode::SUCCESS
}

/// Verify a signed JSON document of `kind` (`receipt`, `audit_checkpoint`) offline.
pub(super) fn verify_document(
    config: &Config,
    file: &Path,
    keys: Option<&Path>,
    kind: &str,
) -> ExitCode {
    let public = match keys {
        Some(p) => PublicKeyFile::read(p),
        None => crate::app::load_keys(config)
            .map(|k| k.public_keys())
            .map_err(|e| e.to_string()),
    };
    let public = match public {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let doc: serde_json::Value = match std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let shape_ok = match kind {
        "receipt" => doc.get("receipt_id").is_some(),
        other => doc.get("kind").and_then(|k| k.as_str()) == Some(other),
    };
    if !shape_ok {
        eprintln!("{}: not a {kind}", file.display());
        return ExitCode::from(2);
    }
    match verify_signed(&public, &doc) {
        Ok(sig) => {
            say!(
                "{kind} signature OK: {} key {} ({})",
                sig.suite,
                sig.key_id,
                sig.algorithm
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            say!("{kind} signature INVALID: {e}");
            ExitCode::from(1)
        }
    }
}
