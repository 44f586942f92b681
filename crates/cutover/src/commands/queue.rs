//! `cutover queue`: submit queues. `simulate` runs on this machine, without a server.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use cutover_domain::queue::simulate::{SimConfig, SimReport, Strategy, StrategyReport, compare};

use crate::failure::usage;
use crate::output::{self, OutputFormat};

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
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

pub fn run(command: QueueCommand, format: OutputFormat) -> anyhow::Result<()> {
    match command {
        QueueCommand::Simulate(args) => simulate(&args, format),
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
