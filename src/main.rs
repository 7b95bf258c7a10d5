//! `credit-gateway`: see `credit-gateway --help` and the README.

#![forbid(unsafe_code)]

use clap::Parser;

/// The gateway allocates many short-lived buffers per record (JSON, sled's copy-on-write nodes);
/// glibc's malloc took about 40% of the commit path in profiles, mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    credit_gateway::cli::run(credit_gateway::cli::Cli::parse())
}
