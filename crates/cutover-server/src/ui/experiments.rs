//! Experiments: the list with status and primary metric, and the results page (the sample-ratio
//! check first, then each metric's lift with its 95% interval drawn as SVG), with the actions
//! the status allows. Numbers come from `api::results::compute`, as the API's.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use cutover_api::ExperimentResults;
use cutover_domain::{Access, ExperimentAction, VersionNumber};
use cutover_store::Experiment;

use super::page::{Layout, UiError, ok, when};
use super::session::Session;
use crate::AppState;
use crate::error::ApiError;

pub struct ExperimentRow {
    pub id: String,
    pub name: String,
    pub artifact: String,
    pub environment: String,
    pub status: String,
    pub primary_metric: String,
    pub created: String,
}

#[derive(askama::Template)]
#[template(path = "experiments.html")]
struct ListPage {
    layout: Layout,
    experiments: Vec<ExperimentRow>,
}

pub async fn list(State(state): State<AppState>, session: Session) -> Result<Response, UiError> {
    session.auth.require(Access::Read)?;
    let mut experiments = Vec::new();
    for environment in super::matrix::visible_environments(&state, &session).await? {
        let found = state.store.list_experiments(session.auth.workspace_id(), &environment.name, None).await?;
        experiments.extend(found.into_iter().map(|e| ExperimentRow {
            id: e.id,
            name: e.name,
            artifact: e.artifact.into_string(),
            environment: e.environment.into_string(),
            status: e.lifecycle.status().as_str().to_owned(),
            primary_metric: e.primary_metric,
            created: when(e.lifecycle.created_at()),
        }));
    }
    experiments.sort_by(|a, b| b.created.cmp(&a.created));
    ok(&ListPage { layout: Layout::new(&session, "experiments", "Experiments"), experiments })
}

/// One variant on one metric, with its interval placed on the metric's shared scale.
pub struct VariantLine {
    pub variant: String,
    pub version: i64,
    pub exposures: u64,
    pub conversions: u64,
    pub value: String,
    pub lift: String,
    pub interval: String,
    pub p_value: String,
    pub verdict: String,
    /// SVG x of the interval's ends, the estimate and zero, out of [`WIDTH`].
    pub plot: Option<(f64, f64, f64, f64)>,
}

pub struct MetricBlock {
    pub metric: String,
    pub primary: bool,
    pub kind: String,
    pub guardrail_violated: bool,
    pub variants: Vec<VariantLine>,
}

const WIDTH: f64 = 240.0;

#[derive(askama::Template)]
#[template(path = "experiment.html")]
struct ResultsPage {
    layout: Layout,
    experiment: Experiment,
    variants: String,
    results: ExperimentResults,
    metrics: Vec<MetricBlock>,
    actions: Vec<&'static str>,
    can_change: bool,
}

fn number(value: f64) -> String {
    format!("{value:.4}")
}

fn metric_block(metric: &cutover_api::MetricResult) -> MetricBlock {
    // One scale per metric: every interval and zero fit, with a margin.
    let (mut low, mut high) = (0.0_f64, 0.0_f64);
    for variant in &metric.variants {
        if let Some(Some(lift)) = &variant.lift {
            let (l, h) = lift.absolute_interval.as_ref().map_or((lift.absolute, lift.absolute), |i| (i.low, i.high));
            low = low.min(l);
            high = high.max(h);
        }
    }
    let span = (high - low).max(f64::EPSILON) * 1.1;
    let origin = low - (span / 1.1 - (high - low)) / 2.0 - span * 0.05;
    let x = |value: f64| ((value - origin) / span * WIDTH).clamp(0.0, WIDTH);
    let variants = metric
        .variants
        .iter()
        .map(|v| {
            let lift = v.lift.clone().flatten();
            VariantLine {
                variant: v.variant.clone(),
                version: v.version,
                exposures: v.exposures,
                conversions: v.conversions,
                value: v.conversion_rate.or(v.mean).map(number).unwrap_or_else(|| "—".to_owned()),
                lift: lift.as_ref().map(|l| format!("{:+.4}", l.absolute)).unwrap_or_default(),
                interval: lift
                    .as_ref()
                    .and_then(|l| l.absolute_interval.as_ref())
                    .map(|i| format!("[{:+.4}, {:+.4}]", i.low, i.high))
                    .unwrap_or_default(),
                p_value: lift.as_ref().and_then(|l| l.p_value).map(number).unwrap_or_default(),
                verdict: lift.as_ref().map(|l| l.verdict.clone()).unwrap_or_default(),
                plot: lift.as_ref().and_then(|l| {
                    let i = l.absolute_interval.as_ref()?;
                    Some((x(i.low), x(i.high), x(l.absolute), x(0.0)))
                }),
            }
        })
        .collect();
    MetricBlock {
        metric: metric.metric.clone(),
        primary: metric.primary,
        kind: metric.kind.clone(),
        guardrail_violated: metric.guardrail_violated,
        variants,
    }
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Read)?;
    let experiment = state.store.get_experiment(session.auth.workspace_id(), &id).await?;
    session.auth.require_environment(Access::Read, &experiment.environment)?;
    if let Err(e) = state.exposures.flush(&state.store).await {
        tracing::warn!(error = %e, "could not record buffered exposures before results");
    }
    let totals = state.store.experiment_totals(session.auth.workspace_id(), &id).await?;
    let results = crate::api::results::compute(&totals);
    let status = experiment.lifecycle.status();
    let actions = ExperimentAction::ALL.iter().filter(|a| status.after(**a).is_some()).map(|a| a.as_str()).collect();
    let variants = experiment
        .variants
        .versions()
        .iter()
        .zip(experiment.variants.weights())
        .map(|(version, weight)| format!("v{version} ({:.0}%)", weight * 100.0))
        .collect::<Vec<_>>()
        .join(", ");
    ok(&ResultsPage {
        layout: Layout::new(&session, "experiments", experiment.name.clone()),
        can_change: session.can_change(&experiment.environment),
        metrics: results.metrics.iter().map(metric_block).collect(),
        variants,
        results,
        experiment,
        actions,
    })
}

/// One variant as clients will get it once the experiment starts.
pub struct VariantPreview {
    pub variant: String,
    pub version: i64,
    /// Its weight among the experiment's users, and its share of all users.
    pub weight: String,
    pub share: String,
    pub answer: String,
}

#[derive(askama::Template)]
#[template(path = "experiment_preview.html")]
struct StartPreview {
    layout: Layout,
    experiment: Experiment,
    coverage: String,
    outside: String,
    before: String,
    variants: Vec<VariantPreview>,
    command: String,
}

fn percent(share: f64) -> String {
    let text = format!("{:.1}", share * 100.0);
    format!("{}%", text.strip_suffix(".0").unwrap_or(&text))
}

/// What starting the experiment does: for each variant, its share of the environment's users
/// and the OFREP answer they will get; what the others keep getting; the CLI command.
pub async fn preview(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Write)?;
    let workspace_id = session.auth.workspace_id();
    let experiment = state.store.get_experiment(workspace_id, &id).await?;
    session.auth.require_environment(Access::Write, &experiment.environment)?;
    if experiment.lifecycle.status().after(ExperimentAction::Start).is_none() {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            format!("experiment {:?} is {}: it cannot start", experiment.name, experiment.lifecycle.status().as_str()),
        )
        .into());
    }
    let view = state.resolver.view(workspace_id).await?;
    let (key, env) = (experiment.artifact.as_str(), experiment.environment.as_str());
    let before = match view.get(env, key) {
        Some(live) => super::preview::pretty(&live.ofrep),
        None => "FLAG_NOT_FOUND: nothing is live here".to_owned(),
    };
    let coverage = experiment.coverage.get();
    let mut variants = Vec::new();
    for (index, (version, weight)) in
        experiment.variants.versions().iter().zip(experiment.variants.weights()).enumerate()
    {
        let content = state
            .store
            .get_version(workspace_id, &experiment.artifact, VersionNumber::parse("version", *version)?)
            .await?
            .content;
        let answer = crate::resolve::ofrep::encode_split(
            key,
            env,
            &experiment.id,
            index,
            *version,
            content.value(),
            view.revision + 1,
        );
        variants.push(VariantPreview {
            variant: cutover_domain::experiments::variant_key(index),
            version: *version,
            weight: percent(*weight),
            share: percent(weight * coverage),
            answer: super::preview::pretty(&answer),
        });
    }
    ok(&StartPreview {
        layout: Layout::new(&session, "experiments", format!("Preview: start {}", experiment.name)),
        coverage: percent(coverage),
        outside: percent(1.0 - coverage),
        before,
        variants,
        command: format!("cutover experiment start {}", experiment.id),
        experiment,
    })
}

#[derive(serde::Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    winner: String,
}

pub async fn action(
    State(state): State<AppState>,
    session: Session,
    Path((id, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<ActionForm>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Write)?;
    let action: ExperimentAction =
        action.parse().map_err(|_| ApiError::not_found(format!("no experiment action {action:?}")))?;
    let winner = match form.winner.trim() {
        "" => None,
        text => Some(
            text.parse::<i64>()
                .map_err(|_| ApiError::bad_request("invalid_field", "winner must be a version number"))?,
        ),
    };
    state.store.experiment_action(&session.auth.caller(), &id, action, winner).await?;
    Ok(Redirect::to(&format!("/experiments/{id}")).into_response())
}
