//! `cutover`: the release control plane in one binary. `serve` and `migrate` run the server;
//! every other command talks to a server over its HTTP API.
#![forbid(unsafe_code)]

mod args;
mod cli;
mod commands;
mod failure;
mod output;
mod server_args;

use std::process::ExitCode;

use clap::error::ErrorKind;

use crate::output::OutputFormat;

/// mimalloc rather than the system's allocator: a resolve request makes a few dozen small
/// allocations, and glibc's malloc and free were a fifth of its instructions
/// (docs/benchmarks.md, "Resolve: single flag and 304 against the ceiling").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(err) => return refused(&err),
    };
    let format = cli.global.output();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => failure::report(&err, format),
    }
}

/// A command line clap refused (or `--help` / `--version`): clap's own text, or under
/// `--output json` the error as JSON.
fn refused(err: &clap::Error) -> ExitCode {
    let shown = matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if shown || cli::requested_output(std::env::args_os(), std::env::var_os("CUTOVER_OUTPUT")) != OutputFormat::Json {
        err.exit();
    }
    failure::report_usage_json(&cli::error_message(err))
}
