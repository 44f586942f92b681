//! The command line: global options and the command tree. Each command group's arguments live
//! with its code in `commands/`; the server's in `server_args`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;

use crate::commands::artifact::ArtifactCommand;
use crate::commands::audit::AuditArgs;
use crate::commands::env::EnvCommand;
use crate::commands::event::EventCommand;
use crate::commands::experiment::ExperimentCommand;
use crate::commands::pin::{HistoryArgs, PinArgs, PinsArgs, PromoteArgs, RollbackArgs, UnpinArgs};
use crate::commands::resolve::ResolveArgs;
use crate::commands::rollout::RolloutCommand;
use crate::commands::token::TokenCommand;
use crate::commands::version::VersionCommand;
use crate::commands::workspace::WorkspaceCommand;
use crate::output::OutputFormat;
use crate::server_args::{ConfigCommand, MigrateArgs, ServeArgs};

#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    about = "Cutover: which version of each artifact is live in each environment",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// URL of the Cutover server.
    #[arg(long, global = true, env = "CUTOVER_SERVER", default_value = "http://127.0.0.1:7300", value_name = "URL")]
    pub server: String,

    /// API token. When absent, the owner token the server saved in --data-dir is used.
    #[arg(long, global = true, env = "CUTOVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// `table` for people, `json` (the API's JSON, pretty) for scripts.
    #[arg(
        long,
        global = true,
        env = "CUTOVER_OUTPUT",
        value_enum,
        default_value_t = OutputFormat::Table
    )]
    pub output: OutputFormat,

    /// The server's data directory: where `serve` keeps its database and first owner token
    /// (`cutover-owner-token`), which other commands read when no token is given [default: .]
    #[arg(long, global = true, env = "CUTOVER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Client(ClientCommand),
    /// Prints a shell completion script to stdout.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Runs the server.
    Serve(ServeArgs),
    /// Applies pending database migrations, then exits.
    Migrate(MigrateArgs),
    /// Server configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// The commands that talk to a server.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Environments: named stages and their deployment targets.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Artifacts: versioned things, such as prompts and configs.
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// Versions: the immutable content of an artifact.
    #[command(subcommand)]
    Version(VersionCommand),
    /// Makes a version of an artifact live in an environment.
    Pin(PinArgs),
    /// Takes an artifact out of an environment: nothing of it is live there afterwards.
    Unpin(UnpinArgs),
    /// Where an artifact is live (KEY), or what is live in an environment (--env).
    Pins(PinsArgs),
    /// Every version an artifact had in an environment, newest first: when, by whom, why.
    History(HistoryArgs),
    /// Makes the version live in one environment live in others, atomically.
    Promote(PromoteArgs),
    /// Makes the version live before the current one live again in an environment.
    Rollback(RollbackArgs),
    /// What is live for an artifact in an environment, and its value, as clients get it.
    Resolve(ResolveArgs),
    /// Experiments: an environment's traffic split between versions of an artifact, measured.
    #[command(subcommand)]
    Experiment(ExperimentCommand),
    /// Rollouts: a version applied to every deployment target of an environment, in waves.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Metric events (conversions, values) that experiments count.
    #[command(subcommand)]
    Event(EventCommand),
    /// API tokens of the workspace.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Workspaces (tenants); creating one takes an owner of the administrative workspace.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Who changed what, newest first.
    Audit(AuditArgs),
    /// The token in use and its workspace.
    Whoami,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }
}
