//! `cutover experiment`: an environment's traffic to an artifact split between versions, with the
//! lifecycle `created → running ⇄ paused → completed` changed only by its actions.

mod results;

use clap::{Args, Subcommand, ValueEnum};
use cutover_api::{CreateExperiment, Experiment, ExperimentActionResult, UpdateExperiment};

use super::{Context, ids, pin};
use crate::failure::usage;
use crate::output::{self, OutputFormat, or_dash};

#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// Lists an environment's experiments, oldest first (deleted ones are left out).
    List {
        /// Environment.
        #[arg(long, value_name = "ENV")]
        env: String,
        /// Only experiments in this status.
        #[arg(long, value_enum)]
        status: Option<Status>,
    },
    /// Shows one experiment (a deleted one too).
    Show { id: String },
    /// Creates an experiment on an artifact in an environment; `start` begins the split.
    Create(CreateArgs),
    /// Changes an experiment's name or hypothesis (nothing else can change); options left out are
    /// unchanged.
    Edit {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        hypothesis: Option<String>,
    },
    /// Deletes an experiment: it stops splitting traffic and leaves lists; it and its results
    /// stay readable by id.
    Delete { id: String },
    /// Starts a created experiment: resolve splits the environment's traffic from now on.
    Start { id: String },
    /// Pauses a running experiment: everyone gets the control, and no exposures are recorded.
    Pause { id: String },
    /// Resumes a paused experiment.
    Resume { id: String },
    /// Completes a running or paused experiment; with --winner, pins that version in the
    /// experiment's environment, in the same step.
    Complete {
        id: String,
        /// The winning variant's version number.
        #[arg(long, value_name = "N", value_parser = crate::args::version_number, allow_negative_numbers = true)]
        winner: Option<i64>,
    },
    /// Per metric and variant: exposures, conversions, rate or mean, and lift against the control
    /// with its 95% confidence interval and p-value; and whether exposures split as the weights say.
    Results { id: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The environment whose traffic is split.
    #[arg(long, value_name = "ENV")]
    env: String,
    /// Artifact key.
    #[arg(long, value_name = "KEY")]
    artifact: String,
    /// What people call it.
    #[arg(long)]
    name: String,
    /// What should change, and why.
    #[arg(long)]
    hypothesis: Option<String>,
    /// The control's version [default: the version pinned in --env].
    #[arg(long, value_name = "N", value_parser = crate::args::version_number, allow_negative_numbers = true)]
    control: Option<i64>,
    /// A version to compare with the control; repeat for several.
    #[arg(long = "treatment", value_name = "N", required = true, value_parser = crate::args::version_number, allow_negative_numbers = true)]
    treatments: Vec<i64>,
    /// Relative weights, the control's first, then the treatments' in order [default: equal].
    #[arg(long, value_name = "W,W,...", value_delimiter = ',')]
    weights: Option<Vec<f64>>,
    /// Share of the environment's traffic in the experiment, 0 to 1; the rest gets the pinned
    /// version and is not counted [default: 1].
    #[arg(long, value_name = "SHARE")]
    coverage: Option<f64>,
    /// The metric that decides: events sent with `cutover event send` or `POST /api/v1/events`.
    #[arg(long, value_name = "METRIC")]
    primary_metric: String,
    /// A metric that must not get worse; repeat for several.
    #[arg(long = "guardrail", value_name = "METRIC")]
    guardrails: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Status {
    Created,
    Running,
    Paused,
    Completed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
        }
    }
}

impl ExperimentCommand {
    /// The experiment id the command was given, if it takes one.
    fn id_mut(&mut self) -> Option<&mut String> {
        match self {
            Self::Show { id }
            | Self::Edit { id, .. }
            | Self::Delete { id }
            | Self::Start { id }
            | Self::Pause { id }
            | Self::Resume { id }
            | Self::Complete { id, .. }
            | Self::Results { id } => Some(id),
            Self::List { .. } | Self::Create(_) => None,
        }
    }
}

pub async fn run(context: &Context, mut command: ExperimentCommand) -> anyhow::Result<()> {
    if let Some(id) = command.id_mut() {
        *id = ids::experiment(context, id).await?;
    }
    let client = &context.client;
    match command {
        ExperimentCommand::List { env, status } => {
            let status = status.map(Status::as_str);
            let page = client.list_experiments(&env, status).await?;
            if context.output == OutputFormat::Json {
                return output::json(&page);
            }
            if page.items.is_empty() {
                return output::emit(&format!(
                    "no {}experiments in {env}",
                    status.map_or(String::new(), |s| format!("{s} "))
                ));
            }
            let short = ids::short_ids(page.items.iter().map(|experiment| experiment.id.as_str()));
            let rows = page.items.iter().zip(short).map(|(experiment, id)| {
                [
                    id,
                    experiment.artifact.clone(),
                    experiment.name.clone(),
                    experiment.status.clone(),
                    experiment.variants.iter().map(|v| v.version.to_string()).collect::<Vec<_>>().join(", "),
                    percent(experiment.coverage),
                    experiment.primary_metric.clone(),
                ]
            });
            output::emit(&output::table(
                ["ID", "ARTIFACT", "NAME", "STATUS", "VERSIONS", "COVERAGE", "PRIMARY METRIC"],
                rows,
            ))
        }
        ExperimentCommand::Show { id } => show(context, &client.get_experiment(&id).await?),
        ExperimentCommand::Create(args) => {
            let body = CreateExperiment {
                artifact: args.artifact,
                name: args.name,
                hypothesis: args.hypothesis,
                control: args.control,
                treatments: args.treatments,
                weights: args.weights,
                coverage: args.coverage,
                primary_metric: args.primary_metric,
                guardrail_metrics: args.guardrails,
            };
            show(context, &client.create_experiment(&args.env, &body).await?)
        }
        ExperimentCommand::Edit { id, name, hypothesis } => {
            if name.is_none() && hypothesis.is_none() {
                return Err(usage("nothing to change: give --name or --hypothesis"));
            }
            show(context, &client.update_experiment(&id, &UpdateExperiment { name, hypothesis }).await?)
        }
        ExperimentCommand::Delete { id } => {
            let experiment = client.delete_experiment(&id).await?;
            match context.output {
                OutputFormat::Json => output::json(&experiment),
                OutputFormat::Table => output::emit(&format!(
                    "deleted experiment {} ({}); it and its results stay readable by id",
                    experiment.id, experiment.name
                )),
            }
        }
        ExperimentCommand::Start { id } => acted(context, "started", &client.start_experiment(&id).await?),
        ExperimentCommand::Pause { id } => acted(context, "paused", &client.pause_experiment(&id).await?),
        ExperimentCommand::Resume { id } => acted(context, "resumed", &client.resume_experiment(&id).await?),
        ExperimentCommand::Complete { id, winner } => {
            acted(context, "completed", &client.complete_experiment(&id, winner).await?)
        }
        ExperimentCommand::Results { id } => {
            let answer = client.experiment_results(&id).await?;
            if context.output == OutputFormat::Json {
                return output::json(&answer);
            }
            if answer.sample_ratio.mismatch {
                output::note("warning: sample ratio mismatch: do not trust these results (see above)");
            }
            output::emit(&results::render(&answer))
        }
    }
}

/// The outcome of an action: the new status, and the winner's pin write, if any.
fn acted(context: &Context, verb: &str, result: &ExperimentActionResult) -> anyhow::Result<()> {
    if context.output == OutputFormat::Json {
        return output::json(result);
    }
    let experiment = &result.experiment;
    output::emit(&format!("{verb} experiment {} ({}): now {}", experiment.id, experiment.name, experiment.status))?;
    match &result.pinned {
        Some(write) => {
            let unchanged = format!("the winner was already live in {}: no pin changed", experiment.environment);
            pin::show_write(context, write, &unchanged)
        }
        None => Ok(()),
    }
}

fn show(context: &Context, experiment: &Experiment) -> anyhow::Result<()> {
    if context.output == OutputFormat::Json {
        return output::json(experiment);
    }
    let variants = experiment
        .variants
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{}: version {}, {}", variant_key(i), v.version, percent(v.weight)))
        .collect::<Vec<_>>();
    let dash = |time: &Option<String>| time.clone().unwrap_or_else(|| "-".to_owned());
    let mut fields = vec![
        ("id", experiment.id.clone()),
        ("name", experiment.name.clone()),
        ("artifact", experiment.artifact.clone()),
        ("environment", experiment.environment.clone()),
        ("status", experiment.status.clone()),
        ("hypothesis", or_dash(&experiment.hypothesis)),
        ("variants", variants.join("\n")),
        ("coverage", percent(experiment.coverage)),
        ("primary metric", experiment.primary_metric.clone()),
        ("guardrails", output::list_or_dash(&experiment.guardrail_metrics)),
        ("created", experiment.created_at.clone()),
        ("started", dash(&experiment.started_at)),
        ("ended", dash(&experiment.ended_at)),
    ];
    if let Some(deleted) = &experiment.deleted_at {
        fields.push(("deleted", deleted.clone()));
    }
    output::emit(&output::fields(&fields))
}

/// What the server calls variant `index`: `control`, then `treatment-1`, `treatment-2`...
fn variant_key(index: usize) -> String {
    if index == 0 { "control".to_owned() } else { format!("treatment-{index}") }
}

/// A share (0 to 1) as a percentage with at most one decimal: `50%`, `33.3%`.
fn percent(share: f64) -> String {
    let text = format!("{:.1}", share * 100.0);
    format!("{}%", text.strip_suffix(".0").unwrap_or(&text))
}

#[cfg(test)]
mod tests {
    use super::{percent, variant_key};

    #[test]
    fn shares_are_percentages_without_a_useless_decimal() {
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(1.0 / 3.0), "33.3%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.0), "0%");
    }

    #[test]
    fn variants_are_named_as_the_server_names_them() {
        assert_eq!(variant_key(0), "control");
        assert_eq!(variant_key(2), "treatment-2");
    }
}
