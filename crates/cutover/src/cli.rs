//! The command line: global options and the command tree. Each command group's arguments live
//! with its code in `commands/`; the server's in `server_args`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

use crate::commands::artifact::ArtifactCommand;
use crate::commands::audit::AuditArgs;
use crate::commands::env::EnvCommand;
use crate::commands::event::EventCommand;
use crate::commands::experiment::ExperimentCommand;
use crate::commands::pin::{HistoryArgs, PinArgs, PinsArgs, PromoteArgs, RollbackArgs, UnpinArgs};
use crate::commands::pool::PoolCommand;
use crate::commands::queue::QueueCommand;
use crate::commands::resolve::ResolveArgs;
use crate::commands::rollout::RolloutCommand;
use crate::commands::token::TokenCommand;
use crate::commands::transfer::{ExportArgs, ImportArgs};
use crate::commands::version::VersionCommand;
use crate::commands::workspace::WorkspaceCommand;
use crate::output::OutputFormat;
use crate::server_args::{ConfigCommand, MigrateArgs, ServeArgs};

#[derive(Debug, Parser)]
#[command(name = "cutover", version, about = "Cutover: which version of each artifact is live in each environment")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The global options only the commands that talk to a server use: hidden from the help of
/// `serve`, `migrate`, `config` and `completions`.
const CLIENT_ONLY: [&str; 3] = ["server", "token", "output"];

/// The commands that do not talk to a server.
const LOCAL_COMMANDS: [&str; 4] = ["serve", "migrate", "config", "completions"];

/// Parses the process's arguments.
pub fn parse() -> Result<Cli, clap::Error> {
    parse_from(std::env::args_os())
}

pub fn parse_from(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> Result<Cli, clap::Error> {
    let mut command = command();
    let matches = command.try_get_matches_from_mut(args)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|err| err.format(&mut command))?;
    cli.global.fill_from(|name| std::env::var(name).ok())?;
    Ok(cli)
}

/// The command tree, with the client-only options hidden where they do nothing.
pub fn command() -> clap::Command {
    let mut command = Cli::command();
    // A subcommand that already has a global option is skipped when clap copies the global
    // options down, so a hidden copy given to it first is what its help shows (that is, nothing).
    let hidden: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|arg| CLIENT_ONLY.contains(&arg.get_id().as_str()))
        .map(|arg| arg.clone().hide(true))
        .collect();
    for name in LOCAL_COMMANDS {
        command = command.mut_subcommand(name, |sub| sub.args(hidden.clone()));
    }
    command
}

/// The output format asked for, read from the raw arguments and `CUTOVER_OUTPUT` when the command
/// line could not be parsed (so that its error can still be printed as asked).
pub fn requested_output(args: impl IntoIterator<Item = OsString>, env: Option<OsString>) -> OutputFormat {
    let mut asked = env.and_then(|value| value.into_string().ok());
    let mut args = args.into_iter().map(|arg| arg.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--output" {
            asked = args.next();
        } else if let Some(value) = arg.strip_prefix("--output=") {
            asked = Some(value.to_owned());
        }
    }
    match asked.as_deref() {
        Some("json") => OutputFormat::Json,
        _ => OutputFormat::Table,
    }
}

/// clap's message without its `error: ` prefix, usage and help tip: the first paragraph.
pub fn error_message(err: &clap::Error) -> String {
    let text = err.to_string();
    let first = text.split("\n\n").next().unwrap_or(&text);
    first.trim().strip_prefix("error: ").unwrap_or(first.trim()).to_owned()
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// URL of the Cutover server (`http://` when no scheme is given) [env: CUTOVER_SERVER]
    /// [default: http://127.0.0.1:7300]
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,

    /// API token. When absent, the owner token the server saved in --data-dir is used [env:
    /// CUTOVER_TOKEN]
    #[arg(long, global = true)]
    pub token: Option<String>,

    /// `table` for people, `json` (the API's JSON, pretty; errors as JSON on stderr) for scripts
    /// [env: CUTOVER_OUTPUT] [default: table]
    #[arg(long, global = true, value_enum)]
    pub output: Option<OutputFormat>,

    /// The server's data directory: where `serve` keeps its database and first owner token
    /// (`cutover-owner-token`), which other commands read when no token is given [env:
    /// CUTOVER_DATA_DIR] [default: .]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Where the CLI looks for a server when neither --server nor CUTOVER_SERVER says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7300";

impl GlobalArgs {
    /// Fills what the command line left out from the environment. Done here rather than with
    /// clap's `env`, because clap counts a value from the environment as given on the command
    /// line and then shows `--server <URL>` in every usage line as if it were required.
    fn fill_from(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), clap::Error> {
        let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        self.server = self.server.take().or_else(|| var("CUTOVER_SERVER"));
        self.token = self.token.take().or_else(|| var("CUTOVER_TOKEN"));
        self.data_dir = self.data_dir.take().or_else(|| var("CUTOVER_DATA_DIR").map(PathBuf::from));
        if self.output.is_none()
            && let Some(value) = var("CUTOVER_OUTPUT")
        {
            let format = OutputFormat::from_str(value.trim(), false).map_err(|_| {
                clap::Error::raw(
                    clap::error::ErrorKind::InvalidValue,
                    format!("CUTOVER_OUTPUT is {value:?}: it must be `table` or `json`\n"),
                )
            })?;
            self.output = Some(format);
        }
        Ok(())
    }

    pub fn server(&self) -> &str {
        self.server.as_deref().unwrap_or(DEFAULT_SERVER)
    }

    pub fn output(&self) -> OutputFormat {
        self.output.unwrap_or(OutputFormat::Table)
    }
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
    /// What is live where (artifacts × environments), experiments running, rollouts in progress.
    Status,
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
    /// Submit queues: changes checked and landed in order (`simulate` needs no server).
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Warm pools: ready instances of the version pinned to an environment, claimed at once.
    #[command(subcommand)]
    Pool(PoolCommand),
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
    /// Writes every artifact to a folder: one file per artifact (its latest version), the
    /// versions live elsewhere, and a manifest of kinds and pins (`_cutover.json`).
    Export(ExportArgs),
    /// Loads a folder written by `export`: creates missing artifacts, publishes contents that
    /// differ from the latest, and with --pin sets the pins it lists. --dry-run shows the plan.
    Import(ImportArgs),
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use clap::CommandFactory;

    use super::{Cli, GlobalArgs, command, requested_output};
    use crate::output::OutputFormat;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    #[test]
    fn the_servers_help_lists_no_client_options() {
        let mut command = command();
        command.build();
        let help = command.find_subcommand_mut("serve").unwrap().render_long_help().to_string();
        for option in ["--server", "--token", "--output"] {
            assert!(!help.contains(option), "{option} in:\n{help}");
        }
        assert!(help.contains("--data-dir"), "{help}");
        let client_help = command.find_subcommand_mut("pins").unwrap().render_long_help().to_string();
        assert!(client_help.contains("--server"), "{client_help}");
    }

    #[test]
    fn the_environment_fills_what_the_command_line_left_out() {
        let env = |name: &str| match name {
            "CUTOVER_SERVER" => Some("127.0.0.1:7502".to_owned()),
            "CUTOVER_OUTPUT" => Some("json".to_owned()),
            _ => None,
        };
        let mut global = GlobalArgs { server: None, token: None, output: None, data_dir: None };
        global.fill_from(env).unwrap();
        assert_eq!((global.server(), global.output()), ("127.0.0.1:7502", OutputFormat::Json));
        let mut flags = GlobalArgs {
            server: Some("http://a:1".into()),
            token: None,
            output: Some(OutputFormat::Table),
            data_dir: None,
        };
        flags.fill_from(env).unwrap();
        assert_eq!((flags.server(), flags.output()), ("http://a:1", OutputFormat::Table));
        let mut bad = GlobalArgs { server: None, token: None, output: None, data_dir: None };
        let err = bad.fill_from(|name| (name == "CUTOVER_OUTPUT").then(|| "xml".to_owned())).unwrap_err();
        assert!(err.to_string().contains("CUTOVER_OUTPUT is \"xml\""), "{err}");
    }

    #[test]
    fn json_output_is_recognised_before_the_command_line_parses() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(requested_output(args(&["cutover", "--output", "json", "pin"]), None), OutputFormat::Json);
        assert_eq!(requested_output(args(&["cutover", "pin", "--output=json"]), None), OutputFormat::Json);
        assert_eq!(requested_output(args(&["cutover", "pin"]), Some("json".into())), OutputFormat::Json);
        assert_eq!(requested_output(args(&["cutover", "--output", "table"]), Some("json".into())), OutputFormat::Table);
        assert_eq!(requested_output(args(&["cutover", "x", "--", "--output", "json"]), None), OutputFormat::Table);
    }
}
