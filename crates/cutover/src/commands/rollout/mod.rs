//! `cutover rollout`: a version applied to every deployment target of an environment, in waves,
//! by the server's engine; the environment's pin moves when every target completed.

mod show;
mod watch;

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use cutover_api::{CreateRollout, Rollout, RolloutOperation, RolloutTask};
use serde_json::json;

use super::{Context, ids};
use crate::output::{self, OutputFormat};

/// The rollout states, as the server names them (`--state`).
const STATES: [&str; 9] =
    ["pending", "running", "paused", "running_degraded", "stopping", "stopped", "completed", "failed", "cancelled"];

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Starts a rollout of a version to every deployment target of an environment.
    ///
    /// Targets run in waves of --max-parallel; each task runs the executor the server's operator
    /// declared under that name (--executor), or waits for a person with --manual.
    #[command(
        after_help = "Example:\n  cutover rollout start --artifact prompts/greeting --env production --version 2 \\\n      \
                            --max-parallel 2 --watch --executor deploy"
    )]
    Start(StartArgs),
    /// Lists rollouts, newest first.
    List {
        /// Only rollouts to this environment.
        #[arg(long, value_name = "ENV")]
        env: Option<String>,
        /// Only rollouts in this state.
        #[arg(long, value_parser = STATES)]
        state: Option<String>,
        /// At most this many (1 to 200) [default: 50]
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Shows a rollout and the operation of each target: wave, state, steps, attempts, error.
    Show { id: String },
    /// Follows a rollout until it ends or waits for a person.
    ///
    /// One progress bar per target; plain lines when stdout is not a terminal, the rollout as it
    /// ended with --output json. Exit code: 0 completed, 1 failed or cancelled, 4 stopped or
    /// paused.
    Watch { id: String },
    /// Stops a rollout: nothing more starts and running tasks are asked to stop; `resume`
    /// continues it.
    Stop { id: String },
    /// Resumes a stopped rollout.
    Resume { id: String },
    /// Cancels a rollout for good; running tasks are asked to stop and the pin does not move.
    Cancel { id: String },
    /// Releases a rollout paused by a failure (--on-failure pause): the other targets go on.
    Release { id: String },
    /// Runs the failed targets of a paused or degraded rollout again.
    Retry { id: String },
    /// Prints the kept output of a task: of its latest attempt, or of --attempt N.
    Log {
        id: String,
        /// The task's id, or TARGET/STEP (e.g. `eu-1/apply`).
        task: String,
        /// Which attempt's output (from 1; every attempt keeps its own). Default: the latest.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        attempt: Option<u32>,
    },
    /// Reports the result of a --manual task.
    #[command(subcommand)]
    Task(TaskCommand),
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// The task succeeded: its target moves on to its next step.
    Complete(ReportArgs),
    /// The task failed: its target fails, and --on-failure decides what the rollout does.
    Fail(ReportArgs),
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The rollout's id.
    rollout: String,
    /// The task's id, or TARGET/STEP (e.g. `eu-1/apply`).
    task: String,
    /// Kept in the task's log (and as its error when it failed).
    #[arg(long)]
    message: Option<String>,
}

#[derive(Debug, Args)]
#[command(disable_version_flag = true, group(ArgGroup::new("runs").required(true).args(["executor", "manual", "program"])))]
pub struct StartArgs {
    /// Artifact key.
    #[arg(long, value_name = "KEY")]
    artifact: String,
    /// The environment whose deployment targets get the version.
    #[arg(long, value_name = "ENV")]
    env: String,
    /// The version to roll out (`2` or `v2`).
    #[arg(long, value_name = "N", value_parser = crate::args::version_number, allow_negative_numbers = true)]
    version: i64,
    /// Targets at once, and the size of each wave (1 to 1000) [default: 1]
    #[arg(long, value_name = "N")]
    max_parallel: Option<u32>,
    /// When a target fails: `halt` fails the rollout, `continue` lets the others go on, `pause`
    /// holds the rollout for a person (`release` or `retry`) [default: halt]
    #[arg(long, value_enum, value_name = "POLICY")]
    on_failure: Option<OnFailure>,
    /// Fail the rollout once K targets failed, whatever --on-failure says.
    #[arg(long, value_name = "K")]
    failure_budget: Option<u32>,
    /// A step of each target, in order; repeat for several [default: apply]
    #[arg(long = "step", value_name = "STEP")]
    steps: Vec<String>,
    /// The executor each task runs: a program the server's operator declared under
    /// `[executors.NAME]` in the server configuration (`cutover config example`). It gets
    /// CUTOVER_ROLLOUT_ID, CUTOVER_TARGET, CUTOVER_TARGET_CONFIG, CUTOVER_VERSION, CUTOVER_STEP,
    /// CUTOVER_IDEMPOTENCY_KEY and the content in a file; exit 0 completes the task.
    #[arg(long, value_name = "NAME")]
    executor: Option<String>,
    /// Each task waits for a person: `cutover rollout task complete|fail`.
    #[arg(long)]
    manual: bool,
    /// Seconds a program may run before it is killed and its task failed [default: the
    /// executor's ceiling, at most 600]
    #[arg(long, value_name = "SECONDS", conflicts_with = "manual")]
    timeout: Option<u32>,
    /// Then follow it as `cutover rollout watch` does, with the same exit codes.
    #[arg(long)]
    watch: bool,
    /// Older releases took a program after `--`; only the operator can declare one now.
    #[arg(last = true, value_name = "PROGRAM", hide = true)]
    program: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnFailure {
    Halt,
    Continue,
    Pause,
}

impl OnFailure {
    fn as_str(self) -> &'static str {
        match self {
            Self::Halt => "halt",
            Self::Continue => "continue",
            Self::Pause => "pause",
        }
    }
}

impl RolloutCommand {
    /// The rollout id the command was given, if it takes one (a prefix is resolved by `ids`).
    fn id_mut(&mut self) -> Option<&mut String> {
        match self {
            Self::Show { id }
            | Self::Watch { id }
            | Self::Stop { id }
            | Self::Resume { id }
            | Self::Cancel { id }
            | Self::Release { id }
            | Self::Retry { id }
            | Self::Log { id, .. } => Some(id),
            Self::Task(TaskCommand::Complete(args) | TaskCommand::Fail(args)) => Some(&mut args.rollout),
            Self::Start(_) | Self::List { .. } => None,
        }
    }
}

pub async fn run(context: &Context, mut command: RolloutCommand) -> anyhow::Result<()> {
    if let Some(id) = command.id_mut() {
        *id = ids::rollout(context, id).await?;
    }
    let client = &context.client;
    match command {
        RolloutCommand::Start(args) => start(context, args).await,
        RolloutCommand::List { env, state, limit } => {
            let page = client.list_rollouts(env.as_deref(), state.as_deref(), limit).await?;
            if context.output == OutputFormat::Json {
                return output::json(&page);
            }
            if page.items.is_empty() {
                let state = state.map_or(String::new(), |s| format!("{s} "));
                let env = env.map_or(String::new(), |e| format!(" to {e}"));
                return output::emit(&format!("no {state}rollouts{env}"));
            }
            let short = ids::short_ids(page.items.iter().map(|rollout| rollout.id.as_str()));
            let rows = page.items.iter().zip(short).map(|(rollout, id)| row(rollout, id));
            output::emit(&output::table(["ID", "ARTIFACT", "ENVIRONMENT", "VERSION", "STATE", "CREATED"], rows))
        }
        RolloutCommand::Show { id } => show::rollout(context, &client.get_rollout(&id).await?),
        RolloutCommand::Watch { id } => watch::watch(context, &id).await,
        RolloutCommand::Stop { id } => controlled(context, &client.stop_rollout(&id).await?),
        RolloutCommand::Resume { id } => controlled(context, &client.resume_rollout(&id).await?),
        RolloutCommand::Cancel { id } => controlled(context, &client.cancel_rollout(&id).await?),
        RolloutCommand::Release { id } => controlled(context, &client.release_rollout(&id).await?),
        RolloutCommand::Retry { id } => controlled(context, &client.retry_rollout(&id).await?),
        RolloutCommand::Log { id, task, attempt } => {
            let (task, label) = find_task(context, &id, &task).await?;
            let log = client.task_log(&id, &task, attempt).await?;
            match context.output {
                OutputFormat::Json => {
                    output::json(&json!({"rollout": id, "task": task, "attempt": attempt, "log": log}))
                }
                OutputFormat::Table if log.is_empty() => {
                    let which = attempt.map(|n| format!(" (attempt {n})")).unwrap_or_default();
                    output::note(&format!("task {label}{which} has no output"));
                    Ok(())
                }
                OutputFormat::Table => output::emit(log.strip_suffix('\n').unwrap_or(&log)),
            }
        }
        RolloutCommand::Task(TaskCommand::Complete(args)) => report(context, args, true).await,
        RolloutCommand::Task(TaskCommand::Fail(args)) => report(context, args, false).await,
    }
}

async fn start(context: &Context, args: StartArgs) -> anyhow::Result<()> {
    let executor = match (args.manual, args.executor) {
        (true, _) => json!({"type": "manual"}),
        (false, Some(name)) => match args.timeout {
            Some(seconds) => json!({"type": "command", "name": name, "timeout_seconds": seconds}),
            None => json!({"type": "command", "name": name}),
        },
        (false, None) => anyhow::bail!(
            "a rollout cannot run a program of its own ({}): name an executor the server's operator \
             declared under [executors.NAME] in the server configuration with --executor NAME, or use --manual",
            args.program.join(" ")
        ),
    };
    let body = CreateRollout {
        artifact: args.artifact,
        environment: args.env,
        version: args.version,
        max_parallel: args.max_parallel,
        on_failure: args.on_failure.map(|policy| policy.as_str().to_owned()),
        failure_budget: args.failure_budget,
        steps: (!args.steps.is_empty()).then_some(args.steps),
        executor,
    };
    let made = context.client.create_rollout(&body).await?;
    if !args.watch {
        return show::rollout(context, &made);
    }
    let started = format!(
        "started rollout {}: version {} of {} to {} targets of {}",
        made.id,
        made.version,
        made.artifact,
        made.operations.as_ref().map_or(0, Vec::len),
        made.environment
    );
    match context.output {
        // stdout holds one JSON document: the rollout as the watch ends.
        OutputFormat::Json => output::note(&started),
        OutputFormat::Table => output::emit(&started)?,
    }
    watch::watch(context, &made.id).await
}

/// A rollout as one table row: its (short) id, artifact, environment, version, state, creation.
pub fn row(rollout: &Rollout, id: String) -> [String; 6] {
    [
        id,
        rollout.artifact.clone(),
        rollout.environment.clone(),
        rollout.version.to_string(),
        rollout.state.clone(),
        rollout.created_at.clone(),
    ]
}

/// The rollout after a control: its new state.
fn controlled(context: &Context, rollout: &Rollout) -> anyhow::Result<()> {
    match context.output {
        OutputFormat::Json => output::json(rollout),
        OutputFormat::Table => output::emit(&format!("rollout {} is now {}", rollout.id, rollout.state)),
    }
}

async fn report(context: &Context, args: ReportArgs, succeeded: bool) -> anyhow::Result<()> {
    let (task, label) = find_task(context, &args.rollout, &args.task).await?;
    let message = args.message.as_deref();
    let client = &context.client;
    let task = if succeeded {
        client.complete_task(&args.rollout, &task, message).await?
    } else {
        client.fail_task(&args.rollout, &task, message).await?
    };
    match context.output {
        OutputFormat::Json => output::json(&task),
        OutputFormat::Table => output::emit(&format!("task {label} is now {}", task.state)),
    }
}

/// The id of the task of rollout `id` named by `task` (an id, or TARGET/STEP), and its
/// TARGET/STEP for messages.
async fn find_task(context: &Context, id: &str, task: &str) -> anyhow::Result<(String, String)> {
    let rollout = context.client.get_rollout(id).await?;
    let found = tasks(&rollout).find(|(operation, t)| t.id == task || task_label(operation, t) == task);
    match found {
        Some((operation, t)) => Ok((t.id.clone(), task_label(operation, t))),
        None => Err(anyhow::anyhow!(
            "rollout {id} has no task {task:?}: give a task id or TARGET/STEP (`cutover rollout show {id}` lists them)"
        )),
    }
}

fn tasks(rollout: &Rollout) -> impl Iterator<Item = (&RolloutOperation, &RolloutTask)> {
    rollout.operations.iter().flatten().flat_map(|operation| operation.tasks.iter().map(move |t| (operation, t)))
}

/// `TARGET/STEP`: unambiguous, since target names cannot hold a `/`.
fn task_label(operation: &RolloutOperation, task: &RolloutTask) -> String {
    format!("{}/{}", operation.target, task.step)
}
