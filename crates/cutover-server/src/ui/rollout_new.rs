//! Starting a rollout from the UI, always through its preview: the targets it will touch, wave
//! by wave, what OpenFeature clients get now and once it completes, and the equivalent
//! `cutover rollout start`. The form is read exactly as the API reads `POST /api/v1/rollouts`
//! (command executors the operator declared, or manual tasks; webhooks from the API or CLI).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use cutover_domain::rollouts::{ExecutorRequest, RolloutPolicy, parse_steps};
use cutover_domain::{Access, ArtifactKey, EnvironmentName, VersionNumber};
use cutover_store::NewRollout;

use super::page::{Layout, UiError, key_path, ok};
use super::session::Session;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::field;

/// The form as the browser sends it: every field as text, so that a bad value gets a clear
/// answer naming the field rather than a generic parse failure.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct RolloutForm {
    #[serde(default)]
    artifact: String,
    #[serde(default)]
    environment: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    max_parallel: String,
    #[serde(default)]
    on_failure: String,
    #[serde(default)]
    failure_budget: String,
    /// Step labels separated by commas or spaces; `apply` when empty.
    #[serde(default)]
    steps: String,
    /// `manual`, or the name of a command executor the operator declared.
    #[serde(default)]
    executor: String,
}

struct Plan {
    new: NewRollout,
    request: ExecutorRequest,
}

fn number(name: &'static str, text: &str) -> Result<Option<u32>, UiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<u32>()
        .map(Some)
        .map_err(|_| ApiError::bad_request("invalid_field", format!("{name} must be a whole number")).into())
}

/// Reads the form as the API reads its body, admitting the executor as the API does.
async fn plan(state: &AppState, session: &Session, form: &RolloutForm) -> Result<Plan, UiError> {
    session.auth.require(Access::Write)?;
    let artifact = field("artifact", ArtifactKey::parse(form.artifact.trim()))?;
    let environment = field("environment", EnvironmentName::parse(form.environment.trim()))?;
    session.auth.require_environment(Access::Write, environment.as_str())?;
    let version = form.version.trim().trim_start_matches('v');
    let version = version
        .parse::<i64>()
        .map_err(|_| ApiError::bad_request("invalid_field", "version must be a version number"))?;
    let on_failure = Some(form.on_failure.trim()).filter(|s| !s.is_empty());
    let policy = RolloutPolicy::parse(
        number("max_parallel", &form.max_parallel)?,
        on_failure,
        number("failure_budget", &form.failure_budget)?,
    )?;
    let steps: Vec<String> =
        form.steps.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let steps = parse_steps((!steps.is_empty()).then_some(steps))?;
    let request = match form.executor.trim() {
        "" | "manual" => ExecutorRequest::Manual {},
        name => ExecutorRequest::Command { name: name.to_owned(), timeout_seconds: None },
    };
    let executor = state.admission.admit(request.clone(), &session.auth.0.workspace.name).await?;
    Ok(Plan {
        new: NewRollout {
            artifact,
            environment,
            version: VersionNumber::parse("version", version)?,
            policy,
            steps,
            executor,
        },
        request,
    })
}

/// The command executors this workspace may use, by name.
fn executors(state: &AppState, session: &Session) -> Vec<String> {
    let workspace = &session.auth.0.workspace.name;
    state.config.executors.iter().filter(|(_, c)| c.allows_workspace(workspace)).map(|(n, _)| n.clone()).collect()
}

#[derive(askama::Template)]
#[template(path = "rollout_new.html")]
struct NewPage {
    layout: Layout,
    form: RolloutForm,
    environments: Vec<String>,
    executors: Vec<String>,
}

/// The form; `?artifact=&environment=&version=` pre-fill it (links from an artifact's page).
pub async fn form(
    State(state): State<AppState>,
    session: Session,
    Query(form): Query<RolloutForm>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Write)?;
    let environments = super::matrix::visible_environments(&state, &session)
        .await?
        .into_iter()
        .filter(|e| !e.targets.as_slice().is_empty() && session.can_change(&e.name))
        .map(|e| e.name.into_string())
        .collect();
    ok(&NewPage {
        layout: Layout::new(&session, "rollouts", "New rollout"),
        executors: executors(&state, &session),
        form,
        environments,
    })
}

pub struct WaveRow {
    pub number: u32,
    pub targets: Vec<String>,
}

#[derive(askama::Template)]
#[template(path = "rollout_preview.html")]
struct PreviewPage {
    layout: Layout,
    form: RolloutForm,
    path: String,
    artifact: String,
    environment: String,
    version: i64,
    before_version: Option<i64>,
    before: String,
    after: String,
    waves: Vec<WaveRow>,
    target_count: usize,
    steps: String,
    executor: String,
    policy: String,
    command: String,
}

fn command(plan: &Plan) -> String {
    let new = &plan.new;
    let mut line = format!(
        "cutover rollout start --artifact {} --env {} --version {} --max-parallel {} --on-failure {}",
        new.artifact.as_str(),
        new.environment.as_str(),
        new.version.get(),
        new.policy.max_parallel.get(),
        new.policy.on_failure.as_str()
    );
    if let Some(budget) = new.policy.failure_budget {
        line.push_str(&format!(" --failure-budget {}", budget.get()));
    }
    for step in &new.steps {
        line.push_str(&format!(" --step {step}"));
    }
    match &plan.request {
        ExecutorRequest::Command { name, .. } => line.push_str(&format!(" --executor {name}")),
        _ => line.push_str(" --manual"),
    }
    line
}

pub async fn preview(
    State(state): State<AppState>,
    session: Session,
    Query(form): Query<RolloutForm>,
) -> Result<Response, UiError> {
    let plan = plan(&state, &session, &form).await?;
    let workspace_id = session.auth.workspace_id();
    let new = &plan.new;
    let environment = state.store.get_environment(workspace_id, &new.environment).await?;
    let targets = environment.targets.as_slice();
    if targets.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            format!(
                "environment {:?} has no deployment targets: add some, or pin the version directly",
                new.environment.as_str()
            ),
        )
        .into());
    }
    let target = state.store.get_version(workspace_id, &new.artifact, new.version).await?;
    let mut waves: Vec<WaveRow> = Vec::new();
    for (operation, target) in new.policy.plan(targets.len()).iter().zip(targets) {
        match waves.last_mut() {
            Some(wave) if wave.number == operation.wave + 1 => wave.targets.push(target.name.to_string()),
            _ => waves.push(WaveRow { number: operation.wave + 1, targets: vec![target.name.to_string()] }),
        }
    }
    let view = state.resolver.view(workspace_id).await?;
    let (key, env) = (new.artifact.as_str(), new.environment.as_str());
    let live = view.get(env, key);
    let after =
        crate::resolve::ofrep::encode_static(key, env, new.version.get(), target.content.value(), view.revision + 1);
    let policy = match new.policy.failure_budget {
        Some(budget) => format!(
            "{} at once; a failure: {}; the rollout fails after {} failed targets",
            new.policy.max_parallel.get(),
            new.policy.on_failure.as_str(),
            budget.get()
        ),
        None => format!("{} at once; a failure: {}", new.policy.max_parallel.get(), new.policy.on_failure.as_str()),
    };
    ok(&PreviewPage {
        layout: Layout::new(&session, "rollouts", format!("Preview: roll out v{} of {key} to {env}", new.version)),
        path: key_path(key),
        artifact: key.to_owned(),
        environment: env.to_owned(),
        version: new.version.get(),
        before_version: live.map(|l| l.version),
        before: live
            .map(|l| super::preview::pretty(&l.ofrep))
            .unwrap_or_else(|| "FLAG_NOT_FOUND: nothing is live here".to_owned()),
        after: super::preview::pretty(&after),
        target_count: targets.len(),
        waves,
        steps: new.steps.join(" → "),
        executor: match &plan.request {
            ExecutorRequest::Command { name, .. } => format!("the operator's program {name:?}"),
            _ => "a person (manual tasks)".to_owned(),
        },
        policy,
        command: command(&plan),
        form,
    })
}

pub async fn create(
    State(state): State<AppState>,
    session: Session,
    axum::Form(form): axum::Form<RolloutForm>,
) -> Result<Response, UiError> {
    let plan = plan(&state, &session, &form).await?;
    let made = state.store.create_rollout(&session.auth.caller(), &plan.new).await?;
    Ok(Redirect::to(&format!("/rollouts/{}", made.rollout.id)).into_response())
}
