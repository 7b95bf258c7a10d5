//! `credit-gateway rules`: which rule governs each duty for a region and a day, and the reload of
//! every rule file (issue #26). Through the running gateway's admin endpoint when it runs (what
//! is in force there); from the files when it is stopped (what the next start would put in
//! force, said so).

use std::process::ExitCode;

use super::RulesCommand;
use crate::config::Config;

pub(super) fn run(config: &Config, cmd: RulesCommand) -> ExitCode {
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
    match cmd {
        RulesCommand::InForce { region, date } => runtime.block_on(in_force(config, region, date)),
        RulesCommand::Reload => runtime.block_on(reload(config)),
    }
}

async fn in_force(config: &Config, region: Option<String>, date: Option<String>) -> ExitCode {
    let region = match region
        .as_deref()
        .map(crate::rulebook::in_force::parse_region)
    {
        Some(Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
        Some(Ok(r)) => Some(r),
        None => None,
    };
    let day = match date.as_deref().map(crate::record::parse_date) {
        Some(None) => {
            eprintln!("--date must be YYYY-MM-DD");
            return ExitCode::from(2);
        }
        Some(Some(d)) => Some(d),
        None => None,
    };
    let mut query = Vec::new();
    if let Some(r) = &region {
        query.push(format!("region={r}"));
    }
    if let Some(d) = day {
        query.push(format!("date={d}"));
    }
    let path = format!(
        "{}?{}",
        crate::rulebook::ops::route::IN_FORCE,
        query.join("&")
    );
    if let Ok((status, value)) = super::outbox::admin_request(config, "GET", &path).await {
        return print(status.is_success(), &value);
    }
    // No gateway answers: the files, as the next start would load them.
    let book = match crate::rulebook::Rulebook::load(config) {
        Ok(b) => b,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return ExitCode::from(2);
        }
    };
    let live = crate::rulebook::Live::new(book, String::new());
    let files = crate::rulebook::in_force::Files::of(config);
    let day = day.unwrap_or_else(|| {
        crate::app::clock(config)
            .now()
            .to_offset(crate::calendar::CHINA_OFFSET)
            .date()
    });
    let mut value = crate::rulebook::in_force::view(&live, &files, region.as_deref(), day);
    value["from"] = serde_json::json!(
        "the files (no gateway is running here): what its next start puts in force"
    );
    print(true, &value)
}

async fn reload(config: &Config) -> ExitCode {
    match super::outbox::admin_request(config, "POST", crate::rulebook::ops::route::RELOAD).await {
        Ok((status, value)) => print(status.is_success(), &value),
        Err(e) => {
            eprintln!("no running gateway answers ({e}); the rules are read at its next start");
            ExitCode::from(2)
        }
    }
}

fn print(ok: bool, value: &serde_json::Value) -> ExitCode {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    if ok {
        say!("{text}");
        ExitCode::SUCCESS
    } else {
        eprintln!("{text}");
        ExitCode::from(1)
    }
}
