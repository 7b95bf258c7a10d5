//! `credit-gateway`: see `credit-gateway --help` and the README.

use clap::Parser;

fn main() -> std::process::ExitCode {
    credit_gateway::cli::run(credit_gateway::cli::Cli::parse())
}
