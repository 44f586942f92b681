//! `cutover queue`: submit queues. `simulate` runs on this machine, without a server.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use cutover_api::queue::{ChangeRequest, CreateQueue, Queue, QueueChange, SubmitChangeRequest};
use cutover_domain::queue::simulate::{SimConfig, SimReport, Strategy, StrategyReport, compare};
use serde_json::Value;

use super::Context;
use crate::failure::usage;
use crate::output::{self, OutputFormat};

mod watch;

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Creates a queue guarding ENV: changes land there in order, after checks.
    #[command(
        after_help = "Examples:\n  cutover queue create prompts --env production --executor lint --budget 4 --max-batch-size 8\n  \
                      cutover queue create reviewed --env production --manual"
    )]
    Create(CreateArgs),
    /// Lists the queues.
    List,
    /// Shows a queue: settings, depth, active batches, running checks, landed count.
    Show { name: String },
    /// Submits a change request: new content for one or more artifacts.
    #[command(
        after_help = "Examples:\n  cutover queue submit prompts --text prompts/greeting='Hello {{name}}!' -m 'warmer greeting'\n  \
                      cutover queue submit prompts --content-file configs/limits=limits.json --hotfix -m 'raise limit' --wait"
    )]
    Submit(SubmitArgs),
    /// Shows change requests: one with its history, or the queue's newest.
    Status(StatusArgs),
    /// Cancels a change request (a landing already under way wins).
    Cancel { name: String, id: u64 },
    /// Pauses a queue: nothing new is batched, checked or landed until resumed.
    Pause { name: String },
    /// Resumes a paused queue.
    Resume { name: String },
    /// Reports the result of a manual check (a queue created with --manual).
    Report(ReportArgs),
    /// Follows a queue (or one request) live until it drains (or the request ends).
    ///
    /// On a terminal: a bar of the requests seen and a line per change of state; otherwise plain
    /// lines. Exit codes: 0 when everything seen landed; 1 when a request was refused or
    /// cancelled; 4 when the queue is paused (nothing moves until it is resumed).
    Watch(WatchArgs),
    /// Compares scheduling strategies on a simulated workload, with the server's own planner.
    ///
    /// A deterministic discrete-event simulation (seeded, virtual clock): changes arrive at
    /// --lambda per hour for --hours, each broken with probability --failure-rate and touching
    /// artifacts drawn from a Zipf distribution; checks take a lognormal time and flake with
    /// probability --flake-rate. The queue then drains. Prints, per strategy, the time to land,
    /// throughput, checks per landed change and invariant violations (which must be 0; the
    /// command fails otherwise). Needs no server.
    #[command(
        after_help = "Example:\n  cutover queue simulate --lambda 500 --failure-rate 0.05 --budget 16 \\\n      \
                            --check-mean-seconds 300 --hours 8 --strategy speculative --strategy oracle"
    )]
    Simulate(SimulateArgs),
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Changes submitted per hour (Poisson arrivals).
    #[arg(long, value_name = "PER_HOUR", default_value_t = 100.0)]
    lambda: f64,
    /// Probability that a change is broken (every check containing it fails).
    #[arg(long, value_name = "P", default_value_t = 0.05)]
    failure_rate: f64,
    /// Probability that a check of good changes fails anyway.
    #[arg(long, value_name = "F", default_value_t = 0.01)]
    flake_rate: f64,
    /// How many times a failed check of a single change is run again before it is refused.
    #[arg(long, value_name = "N", default_value_t = 1)]
    max_flake_retries: u32,
    /// W: checks running at once (for the strategies that speculate).
    #[arg(long, value_name = "W", default_value_t = 16)]
    budget: u32,
    /// Changes per batch (for the strategies that batch).
    #[arg(long, value_name = "N", default_value_t = 8)]
    max_batch_size: u32,
    /// How long a change may wait for its batch to fill when a check could start.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    max_wait_seconds: f64,
    /// Mean check time.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    check_mean_seconds: f64,
    /// σ of the logarithm of the check time (0: every check takes exactly the mean).
    #[arg(long, value_name = "SIGMA", default_value_t = 0.5)]
    check_sigma: f64,
    /// Number of artifacts footprints are drawn from.
    #[arg(long, value_name = "N", default_value_t = 100)]
    artifacts: u32,
    /// Zipf exponent of artifact popularity (0: uniform).
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    zipf_exponent: f64,
    /// A change touches 1 to this many artifacts.
    #[arg(long, value_name = "N", default_value_t = 2)]
    max_footprint: u32,
    /// Share of changes submitted as hotfixes (they go first).
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    hotfix_rate: f64,
    /// Share of changes their author cancels while they wait.
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    cancel_rate: f64,
    /// How long changes arrive (the queue then drains).
    #[arg(long, value_name = "HOURS", default_value_t = 8.0)]
    hours: f64,
    /// Seed of the random draws: the same seed prints the same result.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A strategy to run (repeatable) [default: all]
    #[arg(
        long = "strategy",
        value_name = "STRATEGY",
        value_parser = PossibleValuesParser::new(Strategy::ALL.map(Strategy::as_str))
            .map(|name| name.parse::<Strategy>().expect("a listed strategy")),
    )]
    strategies: Vec<Strategy>,
}

impl SimulateArgs {
    fn config(&self) -> SimConfig {
        SimConfig {
            lambda_per_hour: self.lambda,
            failure_rate: self.failure_rate,
            flake_rate: self.flake_rate,
            budget: self.budget,
            max_batch_size: self.max_batch_size,
            max_wait_seconds: self.max_wait_seconds,
            check_mean_seconds: self.check_mean_seconds,
            check_sigma: self.check_sigma,
            artifacts: self.artifacts,
            zipf_exponent: self.zipf_exponent,
            max_footprint: self.max_footprint,
            hotfix_rate: self.hotfix_rate,
            cancel_rate: self.cancel_rate,
            max_flake_retries: self.max_flake_retries,
            hours: self.hours,
            seed: self.seed,
        }
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The queue's name (`^[a-z0-9][a-z0-9_-]{0,62}$`).
    name: String,
    /// The environment the queue lands changes in.
    #[arg(long, value_name = "ENV")]
    env: String,
    /// The check: an executor the server's operator declared under `[executors.NAME]`. It gets
    /// the candidate content in CUTOVER_CANDIDATE_DIR (a file per artifact) and
    /// CUTOVER_CANDIDATE_FILE (JSON), with CUTOVER_BATCH, CUTOVER_REQUESTS, CUTOVER_AHEAD,
    /// CUTOVER_ATTEMPT and CUTOVER_IDEMPOTENCY_KEY; exit 0 passes.
    #[arg(long, value_name = "NAME", required_unless_present = "manual", conflicts_with = "manual")]
    executor: Option<String>,
    /// Checks are reported by a person (`cutover queue report`).
    #[arg(long)]
    manual: bool,
    /// Seconds a check may take [default: the executor's]
    #[arg(long, value_name = "SECONDS", requires = "executor")]
    timeout: Option<u32>,
    /// W: checks running at once [default: 4]
    #[arg(long, value_name = "W")]
    budget: Option<u32>,
    /// Most requests per batch [default: 8]
    #[arg(long, value_name = "N")]
    max_batch_size: Option<u32>,
    /// Longest a request waits for its batch to fill [default: 60]
    #[arg(long = "max-wait", value_name = "SECONDS")]
    max_wait_seconds: Option<u32>,
    /// Times a single request's failed check runs again before it is refused [default: 1]
    #[arg(long, value_name = "N")]
    max_flake_retries: Option<u32>,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The queue.
    name: String,
    /// KEY=TEXT: new text for a string artifact (repeatable).
    #[arg(long = "text", value_name = "KEY=TEXT")]
    texts: Vec<String>,
    /// KEY=JSON: new content as JSON (repeatable).
    #[arg(long = "content", value_name = "KEY=JSON")]
    contents: Vec<String>,
    /// KEY=PATH: new content from a file, text or JSON by the artifact's type (`-`: stdin).
    #[arg(long = "content-file", value_name = "KEY=PATH")]
    files: Vec<String>,
    /// Why: kept with the request and the versions it publishes.
    #[arg(short, long, default_value = "")]
    message: String,
    /// The hotfix lane: batched first, ahead of every normal batch not already landing.
    #[arg(long)]
    hotfix: bool,
    /// Follow the request until it lands (exit 0) or is refused or cancelled (exit 1).
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The queue.
    name: String,
    /// One request, with its history.
    id: Option<u64>,
    /// Only requests not yet terminal.
    #[arg(long, conflicts_with = "id")]
    live: bool,
    /// How many requests to list (1 to 200).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=200))]
    limit: u32,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The queue.
    name: String,
    /// The check's id (`cutover queue show` lists the running ones).
    check: u64,
    /// The verdict.
    #[arg(value_parser = ["pass", "fail"])]
    verdict: String,
    /// Kept as the check's output (a failed check's output becomes the culprit's error).
    #[arg(short, long, default_value = "")]
    message: String,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The queue.
    name: String,
    /// Follow this request only.
    #[arg(long, value_name = "ID")]
    request: Option<u64>,
}

/// The simulator: runs here, without a server or a token.
pub fn run_local(command: QueueCommand, format: OutputFormat) -> anyhow::Result<()> {
    match command {
        QueueCommand::Simulate(args) => simulate(&args, format),
        _ => Err(usage("this queue command needs a server")),
    }
}

fn split_pair<'a>(flag: &str, text: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    text.split_once('=').ok_or_else(|| usage(format!("--{flag} {text:?}: write KEY=VALUE")))
}

async fn changes(context: &Context, args: &SubmitArgs) -> anyhow::Result<Vec<QueueChange>> {
    let mut out = Vec::new();
    for text in &args.texts {
        let (key, value) = split_pair("text", text)?;
        out.push(QueueChange { artifact: key.to_owned(), content: Value::String(value.to_owned()) });
    }
    for text in &args.contents {
        let (key, json) = split_pair("content", text)?;
        let content = serde_json::from_str(json)
            .map_err(|e| usage(format!("--content {key}=…: not valid JSON ({e}); use --text for a plain string")))?;
        out.push(QueueChange { artifact: key.to_owned(), content });
    }
    for text in &args.files {
        let (key, path) = split_pair("content-file", text)?;
        let artifact = context.client.get_artifact(key).await?;
        let path = PathBuf::from(path);
        let body = super::read_file(&path)?;
        let content = if artifact.value_type == "string" {
            Value::String(body)
        } else {
            serde_json::from_str(&body).map_err(|e| {
                usage(format!(
                    "{} is not valid JSON ({e}), which a {} artifact needs",
                    path.display(),
                    artifact.value_type
                ))
            })?
        };
        out.push(QueueChange { artifact: key.to_owned(), content });
    }
    if out.is_empty() {
        return Err(usage("give at least one change: --text KEY=TEXT, --content KEY=JSON or --content-file KEY=PATH"));
    }
    Ok(out)
}

fn executor_text(executor: &Value) -> String {
    match executor["type"].as_str() {
        Some("command") => format!(
            "command {} ({} s)",
            executor["name"].as_str().unwrap_or("?"),
            executor["timeout_seconds"].as_u64().unwrap_or(0)
        ),
        Some(other) => other.to_owned(),
        None => "-".to_owned(),
    }
}

fn show_queue(context: &Context, queue: &Queue) -> anyhow::Result<()> {
    if context.output == OutputFormat::Json {
        return output::json(queue);
    }
    let checks = if queue.running_checks.is_empty() {
        "none".to_owned()
    } else {
        queue
            .running_checks
            .iter()
            .map(|c| format!("check {} (batch {}, attempt {})", c.id, c.batch, c.attempt))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows = [
        ("name", queue.name.clone()),
        ("environment", queue.environment.clone()),
        ("executor", executor_text(&queue.executor)),
        ("budget", queue.budget.to_string()),
        ("max batch size", queue.max_batch_size.to_string()),
        ("max wait", format!("{} s", queue.max_wait_seconds)),
        ("flake retries", queue.max_flake_retries.to_string()),
        ("paused", output::yes_no(queue.paused)),
        ("depth", queue.depth.to_string()),
        ("active batches", queue.active_batches.to_string()),
        ("running checks", checks),
        ("landed", queue.landed.to_string()),
    ];
    output::emit(&output::fields(&rows))
}

pub(crate) fn artifacts(request: &ChangeRequest) -> String {
    request.changes.iter().map(|c| c.artifact.as_str()).collect::<Vec<_>>().join(", ")
}

fn show_request(context: &Context, request: &ChangeRequest) -> anyhow::Result<()> {
    if context.output == OutputFormat::Json {
        return output::json(request);
    }
    let landed = request
        .landed_versions
        .as_ref()
        .map_or_else(|| "-".to_owned(), |v| v.iter().map(|(k, n)| format!("{k} v{n}")).collect::<Vec<_>>().join(", "));
    let mut rows = vec![
        ("request", format!("{} in queue {}", request.id, request.queue)),
        ("state", request.state.clone()),
        ("lane", request.lane.clone()),
        ("artifacts", artifacts(request)),
        ("message", output::or_dash(&request.message)),
        ("author", request.author.clone()),
        ("landed", landed),
    ];
    if let Some(error) = &request.error {
        rows.push(("error", error.trim_end().to_owned()));
    }
    let mut text = output::fields(&rows);
    if let Some(history) = &request.history {
        let lines = history.iter().map(|t| {
            [
                t.at.clone(),
                t.from.clone().unwrap_or_else(|| "-".into()),
                t.to.clone(),
                t.actor.clone(),
                t.reason.clone(),
            ]
        });
        text = format!("{text}\n\n{}", output::table(["AT", "FROM", "TO", "BY", "WHY"], lines));
    }
    output::emit(&text)
}

fn request_rows(requests: &[ChangeRequest]) -> String {
    let rows = requests.iter().map(|r| {
        [r.id.to_string(), r.state.clone(), r.lane.clone(), artifacts(r), r.author.clone(), output::or_dash(&r.message)]
    });
    output::table(["ID", "STATE", "LANE", "ARTIFACTS", "AUTHOR", "MESSAGE"], rows)
}

pub async fn run(context: &Context, command: QueueCommand) -> anyhow::Result<()> {
    let client = &context.client;
    match command {
        QueueCommand::Simulate(args) => simulate(&args, context.output),
        QueueCommand::Create(args) => {
            let executor = match (&args.executor, args.manual) {
                (Some(name), _) => {
                    let mut executor = serde_json::json!({"type": "command", "name": name});
                    if let Some(timeout) = args.timeout {
                        executor["timeout_seconds"] = timeout.into();
                    }
                    executor
                }
                (None, _) => serde_json::json!({"type": "manual"}),
            };
            let body = CreateQueue {
                name: args.name,
                environment: args.env,
                budget: args.budget,
                max_batch_size: args.max_batch_size,
                max_wait_seconds: args.max_wait_seconds,
                max_flake_retries: args.max_flake_retries,
                executor,
            };
            show_queue(context, &client.create_queue(&body).await?)
        }
        QueueCommand::List => {
            let queues = client.list_queues().await?;
            if context.output == OutputFormat::Json {
                return output::json(&queues);
            }
            if queues.is_empty() {
                return output::emit("no queues");
            }
            let rows = queues.iter().map(|q| {
                [
                    q.name.clone(),
                    q.environment.clone(),
                    executor_text(&q.executor),
                    q.depth.to_string(),
                    q.active_batches.to_string(),
                    q.landed.to_string(),
                    output::yes_no(q.paused),
                ]
            });
            output::emit(&output::table(
                ["NAME", "ENVIRONMENT", "EXECUTOR", "DEPTH", "BATCHES", "LANDED", "PAUSED"],
                rows,
            ))
        }
        QueueCommand::Show { name } => show_queue(context, &client.get_queue(&name).await?),
        QueueCommand::Submit(args) => {
            let body = SubmitChangeRequest {
                changes: changes(context, &args).await?,
                message: args.message.clone(),
                hotfix: args.hotfix,
            };
            let made = client.submit_change(&args.name, &body).await?;
            if args.wait {
                if context.output == OutputFormat::Table {
                    output::note(&format!(
                        "submitted request {} to queue {}; waiting for it to land",
                        made.id, made.queue
                    ));
                }
                return watch::watch(context, &args.name, Some(made.id)).await;
            }
            show_request(context, &made)
        }
        QueueCommand::Status(args) => match args.id {
            Some(id) => show_request(context, &client.get_change(&args.name, id).await?),
            None => {
                let requests = client.list_changes(&args.name, args.live, args.limit).await?;
                if context.output == OutputFormat::Json {
                    return output::json(&requests);
                }
                if requests.is_empty() {
                    return output::emit(&format!(
                        "queue {} has no {}requests",
                        args.name,
                        if args.live { "live " } else { "" }
                    ));
                }
                output::emit(&request_rows(&requests))
            }
        },
        QueueCommand::Cancel { name, id } => show_request(context, &client.cancel_change(&name, id).await?),
        QueueCommand::Pause { name } => show_queue(context, &client.pause_queue(&name).await?),
        QueueCommand::Resume { name } => show_queue(context, &client.resume_queue(&name).await?),
        QueueCommand::Report(args) => {
            client.report_check(&args.name, args.check, args.verdict == "pass", &args.message).await?;
            if context.output == OutputFormat::Json {
                return output::json(
                    &serde_json::json!({"queue": args.name, "check": args.check, "verdict": args.verdict}),
                );
            }
            output::emit(&format!("check {} of queue {}: {}", args.check, args.name, args.verdict))
        }
        QueueCommand::Watch(args) => watch::watch(context, &args.name, args.request).await,
    }
}

fn simulate(args: &SimulateArgs, format: OutputFormat) -> anyhow::Result<()> {
    let mut strategies = if args.strategies.is_empty() { Strategy::ALL.to_vec() } else { args.strategies.clone() };
    strategies.dedup();
    let report = compare(&args.config(), &strategies).map_err(|err| usage(format!("--{err}")))?;
    match format {
        OutputFormat::Json => output::json(&report)?,
        OutputFormat::Table => output::emit(&table(&report))?,
    }
    let violations: u64 = report.strategies.iter().map(|s| s.invariant_violations).sum();
    if violations > 0 {
        anyhow::bail!("{violations} invariant violations: a landed state was not the checked state");
    }
    Ok(())
}

fn table(report: &SimReport) -> String {
    let rows = report.strategies.iter().map(|s: &StrategyReport| {
        let t = s.time_to_land_seconds;
        [
            s.strategy.to_string(),
            s.landed.to_string(),
            s.rejected.to_string(),
            duration(t.p50),
            duration(t.p95),
            duration(t.p99),
            format!("{:.1}", s.landed_per_hour),
            format!("{:.2}", s.checks_per_landed),
            s.invariant_violations.to_string(),
        ]
    });
    let header = ["STRATEGY", "LANDED", "REJECTED", "P50", "P95", "P99", "LANDED/HOUR", "CHECKS/LANDED", "VIOLATIONS"];
    let c = &report.config;
    format!(
        "{} changes over {} h (λ = {}/h, p = {}, f = {}, W = {}, batch ≤ {}, check {} s mean, σ = {}, {} artifacts, \
         Zipf {}, seed {})\n\n{}",
        report.strategies.first().map_or(0, |s| s.submitted),
        c.hours,
        c.lambda_per_hour,
        c.failure_rate,
        c.flake_rate,
        c.budget,
        c.max_batch_size,
        c.check_mean_seconds,
        c.check_sigma,
        c.artifacts,
        c.zipf_exponent,
        c.seed,
        output::table(header, rows)
    )
}

/// Seconds as `42s`, `5m07s` or `3h02m`.
fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: SimulateArgs,
    }

    #[test]
    fn the_flags_default_to_the_simulators_defaults() {
        let parsed = Wrapper::try_parse_from(["simulate"]).unwrap();
        assert_eq!(parsed.args.config(), SimConfig::default());
        assert!(parsed.args.strategies.is_empty());
    }

    #[test]
    fn strategies_are_named_as_the_simulator_names_them() {
        let parsed =
            Wrapper::try_parse_from(["simulate", "--strategy", "oracle", "--strategy", "batch-bisect"]).unwrap();
        assert_eq!(parsed.args.strategies, [Strategy::Oracle, Strategy::BatchBisect]);
        assert!(Wrapper::try_parse_from(["simulate", "--strategy", "fifo"]).is_err());
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(42.4), "42s");
        assert_eq!(duration(307.0), "5m07s");
        assert_eq!(duration(10_920.0), "3h02m");
    }
}
