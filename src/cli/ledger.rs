//! `credit-gateway ledger` and `credit-gateway subjects`: on the data directory when the gateway
//! is stopped, through its admin endpoint when it runs. Both paths run the same operations
//! (`ledger::ops`) and are audited.

use std::process::ExitCode;

use super::{EvaluationCommand, LedgerCommand, ObjectionsCommand, RepairsCommand, SubjectsCommand};
use crate::command::OpError;
use crate::config::Config;
use crate::ledger::ops::{self, OpContext};
use crate::ledger::recheck::StandingRequest;

pub(super) enum Op {
    Ledger(LedgerCommand),
    Subjects(SubjectsCommand),
    Objections(ObjectionsCommand),
    Repairs(RepairsCommand),
    Evaluation(EvaluationCommand),
}

pub(super) fn run(config: &Config, op: Op) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match super::open_local(config) {
        Ok(store) => runtime.block_on(local(config, store, op)),
        Err(local) => runtime
            .block_on(remote(config, op))
            .map_err(|remote| match remote {
                OpError::Storage(m) => {
                    OpError::Storage(format!("{local}; and through the admin endpoint: {m}"))
                }
                other => other,
            }),
    };
    match result {
        Ok(v) => {
            say!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(OpError::NotFound(what)) => {
            eprintln!("no such {what}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

async fn local(
    config: &Config,
    store: crate::store::Store,
    op: Op,
) -> Result<serde_json::Value, OpError> {
    let router = crate::app::build_router(config).map_err(|e| OpError::Invalid(e.to_string()))?;
    let exceptions = crate::subject::IdentifierExceptions::new(
        &config.validation.uscc_exceptions,
        &config.validation.resident_id_exceptions,
    );
    let clock = crate::app::clock(config);
    let (committer, handle) = crate::exchange::start(store.clone(), clock.clone())
        .map_err(|e| OpError::Storage(e.to_string()))?;
    let ctx = OpContext {
        store: &store,
        committer: &handle,
        router: std::sync::Arc::new(router),
        exceptions: &exceptions,
        now: clock.now(),
        by: "operator",
    };
    let out = match op {
        Op::Evaluation(cmd) => {
            let profiles =
                crate::evaluation::profile::Profiles::load(&config.scoring_profiles_dir())
                    .map_err(|e| OpError::Invalid(e.to_string()))?;
            let engine = crate::evaluation::engine::Engine {
                store: store.clone(),
                profiles: crate::swap::Swap::new(profiles),
                router: crate::sharing::SharedRouter::new(
                    crate::app::build_router(config)
                        .map_err(|e| OpError::Invalid(e.to_string()))?,
                ),
                exceptions: exceptions.clone(),
                destinations: config.destinations.clone(),
                agency: config.evaluation.agency.clone(),
            };
            let calendar =
                crate::app::load_calendar(config).map_err(|e| OpError::Invalid(e.to_string()))?;
            let rules =
                crate::objections::rules::ObjectionRules::load(&config.objection_rules_path())
                    .map_err(|e| OpError::Invalid(e.to_string()))?;
            crate::evaluation::ops::run(
                &engine,
                &handle,
                &calendar,
                rules.longest_filing_working_days(),
                ctx.now,
                eval_parts(cmd),
            )
            .await
        }
        Op::Repairs(cmd) => {
            let (state, id) = match cmd {
                RepairsCommand::List { state } => (state, None),
                RepairsCommand::Show { id } => (None, Some(id)),
            };
            crate::repairs::ops::run(&store, &handle, ctx.now, state, id).await
        }
        Op::Objections(cmd) => {
            let calendar =
                crate::app::load_calendar(config).map_err(|e| OpError::Invalid(e.to_string()))?;
            let rules =
                crate::objections::rules::ObjectionRules::load(&config.objection_rules_path())
                    .map_err(|e| OpError::Invalid(e.to_string()))?;
            let flow = crate::objections::flow::Context {
                store: &store,
                committer: &handle,
                router: ctx.router.clone(),
                calendar: std::sync::Arc::new(calendar),
                rules: std::sync::Arc::new(rules),
                exceptions: &exceptions,
                destinations: &config.destinations,
                now: ctx.now,
            };
            crate::objections::ops::run(&flow, "operator", cmd_parts(cmd)).await
        }
        Op::Ledger(LedgerCommand::Record {
            agency,
            record_id,
            as_of,
            destination,
        }) => {
            ops::record_holdings(
                &ctx,
                &agency,
                &record_id,
                as_of.as_deref(),
                destination.as_deref(),
            )
            .await
        }
        Op::Ledger(LedgerCommand::Subject {
            id_type,
            id,
            as_of,
            destination,
        }) => {
            ops::subject_holdings(
                &ctx,
                &id_type,
                &id,
                as_of.as_deref(),
                destination.as_deref(),
            )
            .await
        }
        Op::Subjects(SubjectsCommand::Exit {
            id_type,
            id,
            reason,
            on,
            note,
        }) => {
            let request = StandingRequest {
                reason: Some(reason),
                on,
                note,
            };
            ops::set_standing(&ctx, &id_type, &id, true, request).await
        }
        Op::Subjects(SubjectsCommand::Reentry {
            id_type,
            id,
            on,
            note,
        }) => {
            let request = StandingRequest {
                reason: None,
                on,
                note,
            };
            ops::set_standing(&ctx, &id_type, &id, false, request).await
        }
    };
    drop(ctx);
    drop(handle);
    let _ = tokio::task::spawn_blocking(move || committer.join()).await;
    out
}

fn eval_parts(cmd: EvaluationCommand) -> crate::evaluation::ops::Command {
    use crate::evaluation::ops::Command;
    match cmd {
        EvaluationCommand::Show { id_type, id } => Command::Show { id_type, id },
        EvaluationCommand::Cycles => Command::Cycles,
        EvaluationCommand::Publish { year } => Command::Publish { year },
        EvaluationCommand::Rerun { year, region } => Command::Rerun {
            year,
            region,
            by: "cli".into(),
        },
    }
}

/// An objections command as the shared operation takes it.
fn cmd_parts(cmd: ObjectionsCommand) -> crate::objections::ops::Command {
    use crate::objections::ops::Command;
    match cmd {
        ObjectionsCommand::List { state } => Command::List { state },
        ObjectionsCommand::Show { id } => Command::Show { id },
        ObjectionsCommand::AcceptLate { id, reason } => Command::AcceptLate { id, reason },
    }
}

async fn remote(config: &Config, op: Op) -> Result<serde_json::Value, OpError> {
    let mut params: Vec<(&str, String)> = Vec::new();
    let (method, path) = match op {
        Op::Evaluation(EvaluationCommand::Show { id_type, id }) => {
            params.extend([("id_type", id_type), ("id", id)]);
            ("GET", crate::evaluation::ops::route::SHOW)
        }
        Op::Evaluation(EvaluationCommand::Cycles) => ("GET", crate::evaluation::ops::route::CYCLES),
        Op::Evaluation(EvaluationCommand::Publish { year }) => {
            params.push(("year", year.to_string()));
            ("POST", crate::evaluation::ops::route::PUBLISH)
        }
        Op::Evaluation(EvaluationCommand::Rerun { year, region }) => {
            params.push(("year", year.to_string()));
            params.extend(region.map(|r| ("region", r)));
            ("POST", crate::evaluation::ops::route::RERUN)
        }
        Op::Repairs(RepairsCommand::List { state }) => {
            params.extend(state.map(|s| ("state", s)));
            ("GET", crate::repairs::ops::route::LIST)
        }
        Op::Repairs(RepairsCommand::Show { id }) => {
            params.push(("id", id));
            ("GET", crate::repairs::ops::route::SHOW)
        }
        Op::Objections(ObjectionsCommand::List { state }) => {
            params.extend(state.map(|s| ("state", s)));
            ("GET", crate::objections::ops::route::LIST)
        }
        Op::Objections(ObjectionsCommand::Show { id }) => {
            params.push(("id", id));
            ("GET", crate::objections::ops::route::SHOW)
        }
        Op::Objections(ObjectionsCommand::AcceptLate { id, reason }) => {
            params.extend([("id", id), ("reason", reason)]);
            ("POST", crate::objections::ops::route::ACCEPT_LATE)
        }
        Op::Ledger(LedgerCommand::Record {
            agency,
            record_id,
            as_of,
            destination,
        }) => {
            params.extend([("agency", agency), ("record_id", record_id)]);
            params.extend(as_of.map(|v| ("as_of", v)));
            params.extend(destination.map(|v| ("destination", v)));
            ("GET", crate::ledger::ops::route::RECORD)
        }
        Op::Ledger(LedgerCommand::Subject {
            id_type,
            id,
            as_of,
            destination,
        }) => {
            params.extend([("id_type", id_type), ("id", id)]);
            params.extend(as_of.map(|v| ("as_of", v)));
            params.extend(destination.map(|v| ("destination", v)));
            ("GET", crate::ledger::ops::route::SUBJECT)
        }
        Op::Subjects(SubjectsCommand::Exit {
            id_type,
            id,
            reason,
            on,
            note,
        }) => {
            params.extend([
                ("id_type", id_type),
                ("id", id),
                ("reason", reason),
                ("on", on),
            ]);
            params.extend(note.map(|v| ("note", v)));
            ("POST", crate::ledger::ops::route::EXIT)
        }
        Op::Subjects(SubjectsCommand::Reentry {
            id_type,
            id,
            on,
            note,
        }) => {
            params.extend([("id_type", id_type), ("id", id), ("on", on)]);
            params.extend(note.map(|v| ("note", v)));
            ("POST", crate::ledger::ops::route::REENTRY)
        }
    };
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let (status, value) =
        super::outbox::admin_request(config, method, &format!("{path}?{}", query.join("&")))
            .await
            .map_err(OpError::Storage)?;
    if status.is_success() {
        return Ok(value);
    }
    let message = value["error"]["message"].as_str().unwrap_or("").to_string();
    Err(match status.as_u16() {
        404 => OpError::NotFound("record or subject"),
        400 => OpError::Invalid(message),
        409 => OpError::Conflict(message),
        _ => OpError::Storage(message),
    })
}

/// Percent-encoding for query values (identifiers, Chinese record ids, RFC 3339 times).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
