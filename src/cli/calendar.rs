//! `credit-gateway calendar`: deadlines and working days from the State Council schedule.

use std::process::ExitCode;

use super::CalendarCommand;
use crate::config::Config;

pub(super) fn calendar(config: &Config, cmd: CalendarCommand) -> ExitCode {
    let cal = match crate::app::load_calendar(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match cmd {
        CalendarCommand::Deadline { from, working_days } => {
            let Ok(from) =
                time::OffsetDateTime::parse(&from, &time::format_description::well_known::Rfc3339)
            else {
                eprintln!("--from must be an RFC 3339 time, e.g. 2025-09-30T10:00:00+08:00");
                return ExitCode::from(2);
            };
            match cal.deadline(from, working_days) {
                Ok(d) => {
                    say!("{}", crate::clock::rfc3339(d));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        CalendarCommand::IsWorkingDay { date } => {
            let Some(date) = crate::record::parse_date(&date) else {
                eprintln!("give a date as YYYY-MM-DD");
                return ExitCode::from(2);
            };
            match cal.is_working_day(date) {
                Ok(true) => {
                    say!("working");
                    ExitCode::SUCCESS
                }
                Ok(false) => {
                    say!("rest");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
