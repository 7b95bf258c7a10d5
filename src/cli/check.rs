//! `credit-gateway check`: the server's mapping and validation on a file, offline, for agencies
//! to test what they will send.

use std::process::ExitCode;

use serde_json::json;

use crate::config::Config;
use crate::record::ValidationContext;
use crate::subject::IdentifierExceptions;

pub(super) fn check(
    config: &Config,
    mapping_id: &str,
    agency: Option<String>,
    file: &std::path::Path,
) -> ExitCode {
    let mappings = match crate::app::load_mappings(config) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(mapping) = mappings.get(mapping_id) else {
        eprintln!("no mapping {mapping_id:?} (see `credit-gateway mappings list`)");
        return ExitCode::from(2);
    };
    let body = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let ctx = ValidationContext {
        exceptions: IdentifierExceptions::new(
            &config.validation.uscc_exceptions,
            &config.validation.resident_id_exceptions,
        ),
        authenticated_agency: agency.or_else(|| mapping.agency.clone()),
        // The agency's file is what it will send: checked as the gateway will check it.
        incoming: true,
    };
    let normalized = match mapping.normalize(&body, &ctx) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let mut records = Vec::new();
    let mut rejected = Vec::new();
    for n in normalized {
        match n.outcome {
            Ok(r) => records.push(r.to_json()),
            Err(r) => rejected.push(serde_json::to_value(r).unwrap_or_default()),
        }
    }
    let any_rejected = !rejected.is_empty();
    let out = json!({"accepted": records.len(), "rejected": rejected, "records": records});
    say!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    if any_rejected {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
