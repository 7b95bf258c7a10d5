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
        CalendarCommand::Deadline {
            from,
            working_days,
            estimate,
        } => {
            let Ok(from) =
                time::OffsetDateTime::parse(&from, &time::format_description::well_known::Rfc3339)
            else {
                eprintln!("--from must be an RFC 3339 time, e.g. 2025-09-30T10:00:00+08:00");
                return ExitCode::from(2);
            };
            let estimate = match estimate {
                super::EstimateArg::Duty => crate::calendar::Estimate::NeverLater,
                super::EstimateArg::Window => crate::calendar::Estimate::NeverEarlier,
            };
            match cal.deadline_estimated(from, working_days, estimate) {
                Ok(d) if d.provisional => {
                    // The deadline stays the first line; what it rests on follows.
                    say!("{}", crate::clock::rfc3339(d.at));
                    say!(
                        "provisional: counted past {} (the last calendar year known; {}); add mappings/calendar/{}.toml from the State Council notice for the exact date",
                        cal.known_years().end(),
                        match estimate {
                            crate::calendar::Estimate::NeverLater => "never later than the true deadline",
                            crate::calendar::Estimate::NeverEarlier => "never earlier than the true end",
                        },
                        cal.known_years().end() + 1
                    );
                    ExitCode::SUCCESS
                }
                Ok(d) => {
                    say!("{}", crate::clock::rfc3339(d.at));
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
