//! `credit-gateway audit`: verify, show and checkpoint the chain (the gateway stopped).

use std::process::ExitCode;

use super::AuditCommand;
use crate::config::Config;

pub(super) fn audit(config: &Config, cmd: AuditCommand) -> ExitCode {
    let store = match super::open_local(config) {
        Ok(s) => s,
        // The gateway runs: ask it (its admin endpoint verifies the live chain).
        Err(local) => return running(config, &cmd, &local.to_string()),
    };
    let code = audit_command(&store, &cmd, crate::app::clock(config).now());
    // The command itself is an operator action: recorded after it ran, so `verify` and
    // `checkpoint` report the chain as it was when asked.
    let recorded = record_offline(
        &store,
        crate::app::clock(config),
        &format!(
            "audit {}",
            match cmd {
                AuditCommand::Verify => "verify",
                AuditCommand::Show { .. } => "show",
                AuditCommand::Checkpoint { .. } => "checkpoint",
            }
        ),
    );
    match recorded {
        Ok(()) => code,
        Err(e) => {
            // Its output is printed already; the exit status says the chain misses the command
            // (a broken chain, exit 1, stays the answer that matters more).
            eprintln!("{e}");
            if code == ExitCode::SUCCESS {
                ExitCode::from(2)
            } else {
                code
            }
        }
    }
}

/// Append an operator command to the audit chain when the gateway is stopped; why not, for the
/// operator (also logged at error level and counted: `gateway_audit_write_failures_total`).
pub(super) fn record_offline(
    store: &crate::store::Store,
    clock: crate::clock::SharedClock,
    command: &str,
) -> Result<(), String> {
    crate::telemetry::events::operator_action(command, "");
    let recorded = (|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (committer, handle) =
            crate::exchange::start(store.clone(), clock).map_err(|e| e.to_string())?;
        let written = rt.block_on(crate::outbox::ops::audit_command(
            &handle,
            command,
            serde_json::json!({}),
        ));
        drop(handle);
        committer.join();
        written.map_err(|e| e.to_string())
    })();
    recorded.map_err(|e| {
        crate::telemetry::events::audit_write_failed("cli_command", &e);
        format!("`{command}` could not be recorded in the audit chain: {e}")
    })
}

/// The audit command the CLI's arguments name (`audit::ops`, the same the operator API runs).
fn as_command(cmd: &AuditCommand) -> crate::audit::ops::Command {
    use crate::audit::ops::Command;
    match *cmd {
        AuditCommand::Verify => Command::Verify,
        AuditCommand::Checkpoint { .. } => Command::Checkpoint,
        AuditCommand::Show { from, limit } => Command::Entries {
            from,
            limit,
            kind: None,
        },
    }
}

fn running(config: &Config, cmd: &AuditCommand, local: &str) -> ExitCode {
    let path = as_command(cmd).path();
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return ExitCode::from(2);
    };
    let answer = rt.block_on(super::outbox::admin_request(config, "GET", &path));
    let (status, value) = match answer {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{local}; and through the admin endpoint: {e}");
            return ExitCode::from(2);
        }
    };
    if !status.is_success() {
        eprintln!("{value}");
        return ExitCode::from(2);
    }
    print(cmd, &value)
}

/// The gateway stopped: the same command on the store itself.
fn audit_command(
    store: &crate::store::Store,
    cmd: &AuditCommand,
    now: time::OffsetDateTime,
) -> ExitCode {
    match crate::audit::ops::run(store, now, &as_command(cmd)) {
        Ok(value) => print(cmd, &value),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// An audit command's answer as the operator reads it; exit 1 for a broken chain.
fn print(cmd: &AuditCommand, value: &serde_json::Value) -> ExitCode {
    match cmd {
        AuditCommand::Verify if value["ok"] == true => {
            say!(
                "audit chain OK: {} entries, head {}",
                value["head"]["seq"],
                value["head"]["hash"].as_str().unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        AuditCommand::Verify => {
            say!(
                "audit chain BROKEN: {}",
                value["broken"].as_str().unwrap_or_default()
            );
            ExitCode::from(1)
        }
        AuditCommand::Checkpoint { .. } => {
            say!("{value}");
            ExitCode::SUCCESS
        }
        AuditCommand::Show { .. } => {
            for e in value["entries"].as_array().into_iter().flatten() {
                say!("{e}");
            }
            if let Some(next) = value["next"].as_u64() {
                eprintln!("more entries: audit show --from {next}");
            }
            ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_the_chain_cannot_record_is_an_error_never_dropped() {
        let (store, engine) = crate::store::memory::store();
        let clock: crate::clock::SharedClock = std::sync::Arc::new(crate::clock::ManualClock::new(
            time::macros::datetime!(2026-11-25 10:00 +08:00),
        ));
        record_offline(&store, clock.clone(), "audit verify").unwrap();
        let (_, entry) = store
            .last_under::<crate::audit::Entry>("aud/")
            .unwrap()
            .unwrap();
        assert_eq!(
            (entry.seq, entry.data["command"].as_str()),
            (1, Some("audit verify"))
        );

        engine.fail_next_apply();
        let err = record_offline(&store, clock, "audit show").unwrap_err();
        assert!(err.contains("`audit show` could not be recorded"), "{err}");
        assert_eq!(crate::audit::verify(&store).unwrap().seq, 1);
    }
}
