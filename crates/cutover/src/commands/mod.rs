//! One module per command group. [`run`] sends each command to its module; the ones that talk to
//! a server get a [`Context`] with a client.

pub mod artifact;
pub mod audit;
pub mod diff;
pub mod env;
pub mod event;
pub mod experiment;
pub mod ids;
pub mod pin;
pub mod pool;
pub mod queue;
pub mod resolve;
pub mod rights;
pub mod rollout;
pub mod status;
pub mod token;
pub mod transfer;
pub mod version;
pub mod whoami;
pub mod workspace;

use std::io::Read;
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory;
use cutover_client::{Client, ClientError};

use crate::cli::{Cli, ClientCommand, Command, GlobalArgs};
use crate::failure::usage;
use crate::output::{self, OutputFormat};
use crate::server_args;

/// The file in the server's data directory that holds its first owner token.
const OWNER_TOKEN_FILE: &str = "cutover-owner-token";

/// What a client command needs.
pub struct Context {
    pub client: Client,
    pub output: OutputFormat,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli { global, command } = cli;
    let data_dir = global.data_dir.as_deref();
    match command {
        // The simulator runs here: no server, no token.
        Command::Client(ClientCommand::Queue(command @ queue::QueueCommand::Simulate(_))) => {
            queue::run_local(command, global.output())
        }
        Command::Client(command) => {
            let context =
                Context { client: Client::new(global.server(), Some(token(&global)?))?, output: global.output() };
            let server = context.client.server_url().to_owned();
            run_client(&context, command).await.map_err(|err| name_the_server(err, &server))
        }
        Command::Completions { shell } => completions(shell),
        Command::Serve(args) => server_args::serve(&args, data_dir).await,
        Command::Migrate(args) => server_args::migrate(&args, data_dir).await,
        Command::Config(command) => server_args::config(&command),
    }
}

async fn run_client(context: &Context, command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Env(command) => env::run(context, command).await,
        ClientCommand::Artifact(command) => artifact::run(context, command).await,
        ClientCommand::Version(command) => version::run(context, command).await,
        ClientCommand::Token(command) => token::run(context, command).await,
        ClientCommand::Workspace(command) => workspace::run(context, command).await,
        ClientCommand::Pin(args) => pin::pin(context, args).await,
        ClientCommand::Unpin(args) => pin::unpin(context, args).await,
        ClientCommand::Pins(args) => pin::pins(context, args).await,
        ClientCommand::History(args) => pin::history(context, args).await,
        ClientCommand::Promote(args) => pin::promote(context, args).await,
        ClientCommand::Rollback(args) => pin::rollback(context, args).await,
        ClientCommand::Resolve(args) => resolve::run(context, args).await,
        ClientCommand::Experiment(command) => experiment::run(context, command).await,
        ClientCommand::Rollout(command) => rollout::run(context, command).await,
        ClientCommand::Queue(command) => queue::run(context, command).await,
        ClientCommand::Pool(command) => pool::run(context, command).await,
        ClientCommand::Event(command) => event::run(context, command).await,
        ClientCommand::Audit(args) => audit::run(context, args).await,
        ClientCommand::Whoami => whoami::run(context).await,
        ClientCommand::Status => status::run(context).await,
        ClientCommand::Export(args) => transfer::export(context, args).await,
        ClientCommand::Import(args) => transfer::import(context, args).await,
    }
}

/// A refused token is most often a token of another server (a second `serve` on another port):
/// say which server refused it.
fn name_the_server(err: anyhow::Error, server: &str) -> anyhow::Error {
    match err.downcast_ref::<ClientError>() {
        Some(client_error) if client_error.status() == Some(401) => {
            err.context(format!("the server at {server} refused the token"))
        }
        _ => err,
    }
}

/// `--token`, else the owner token the server wrote into its data directory on first start.
fn token(global: &GlobalArgs) -> anyhow::Result<String> {
    if let Some(token) = global.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(token.to_owned());
    }
    let path = global.data_dir.as_deref().unwrap_or(Path::new(".")).join(OWNER_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Ok(_) => Err(usage(format!("{} is empty: pass --token or set CUTOVER_TOKEN", path.display()))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(usage(format!(
            "no token: pass --token, set CUTOVER_TOKEN, or point --data-dir at the server's data \
             directory ({} does not exist)",
            path.display()
        ))),
        Err(err) => Err(anyhow::Error::new(err).context(format!("reading {}", path.display()))),
    }
}

/// The text of the file at `path`, or of stdin when `path` is `-`.
pub fn read_file(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    // Into a buffer first: clap_complete panics when it cannot write.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "cutover", &mut script);
    output::emit(String::from_utf8_lossy(&script).trim_end())
}
