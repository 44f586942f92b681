//! `cutover`: the release control plane in one binary. `serve` and `migrate` run the server;
//! every other command talks to a server over its HTTP API.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod failure;
mod output;
mod server_args;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => failure::report(&err),
    }
}
