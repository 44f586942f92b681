//! Rollouts: a version applied to every deployment target of an environment, driven by the
//! engine. Protected environments and roles as for pins; every change audited.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cutover_api::{CreateRollout, ErrorBody, Page, ReportTask, Rollout, RolloutTask};
use cutover_domain::rollouts::{ExecutorRequest, RolloutControl, RolloutPolicy, RolloutState, parse_steps};
use cutover_domain::{Access, ArtifactKey, DomainError, EnvironmentName, VersionNumber};
use cutover_store::{NewRollout, TaskOutcome};

use super::responses::{ListErrors, ReadErrors, WriteErrors};
use crate::AppState;
use crate::auth::Auth;
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query, field};

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only rollouts to this environment.
    #[param(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)]
    pub environment: Option<String>,
    /// Only rollouts in this state.
    #[param(value_type = Option<cutover_api::RolloutStateName>)]
    pub state: Option<String>,
    /// At most this many, newest first (1 to 200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Starts a rollout: one operation per deployment target of the environment, in the targets'
/// order and in waves of `max_parallel`, each made of one task per step. The engine drives it;
/// when every target completed, the environment's pin moves to the version.
#[utoipa::path(
    post, path = "/api/v1/rollouts", tag = "rollouts", security(("token" = [])),
    request_body = CreateRollout,
    responses(
        (status = 201, body = Rollout),
        WriteErrors,
        (status = 404, description = "artifact, environment or version not found", body = ErrorBody),
        (status = 409, description = "the environment has no deployment targets", body = ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<CreateRollout>,
) -> ApiResult<(StatusCode, axum::Json<Rollout>)> {
    auth.require(Access::Write)?;
    let key = field("artifact", ArtifactKey::parse(&body.artifact))?;
    let environment = field("environment", EnvironmentName::parse(&body.environment))?;
    let request: ExecutorRequest = serde_json::from_value(body.executor).map_err(|e| {
        DomainError::invalid(
            "executor",
            format!(
                "{e}: use {{\"type\": \"command\", \"name\": \"<an executor the operator declared>\"}}, \
                 {{\"type\": \"webhook\", \"url\": \"https://…\", \"secret\": \"…\"}} or {{\"type\": \"manual\"}}"
            ),
        )
    })?;
    let executor = state.admission.admit(request, &auth.0.workspace.name).await?;
    let new = NewRollout {
        artifact: key,
        environment: environment.clone(),
        version: VersionNumber::parse("version", body.version)?,
        policy: RolloutPolicy::parse(body.max_parallel, body.on_failure.as_deref(), body.failure_budget)?,
        steps: parse_steps(body.steps)?,
        executor,
    };
    let made = state.store.create_rollout(&auth.caller(), &new).await?;
    Ok((StatusCode::CREATED, axum::Json(convert::rollout_detail(made))))
}

/// The workspace's rollouts, newest first.
#[utoipa::path(
    get, path = "/api/v1/rollouts", tag = "rollouts", security(("token" = [])),
    params(ListQuery),
    responses((status = 200, body = Page<Rollout>), ListErrors)
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<Page<Rollout>>> {
    auth.require(Access::Read)?;
    let environment =
        query.environment.as_deref().map(|e| field("environment", EnvironmentName::parse(e))).transpose()?;
    let rollout_state = query.state.as_deref().map(str::parse::<RolloutState>).transpose()?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(DomainError::invalid("limit", "must be between 1 and 200").into());
    }
    let rollouts = state.store.list_rollouts(auth.workspace_id(), environment.as_ref(), rollout_state, limit).await?;
    Ok(axum::Json(convert::all(rollouts, |r| convert::rollout(r, None))))
}

/// One rollout with its operations and their tasks.
#[utoipa::path(
    get, path = "/api/v1/rollouts/{id}", tag = "rollouts", security(("token" = [])),
    params(("id" = String, Path, description = "Rollout id")),
    responses((status = 200, body = Rollout), ReadErrors)
)]
pub async fn show(State(state): State<AppState>, auth: Auth, Path(id): Path<String>) -> ApiResult<axum::Json<Rollout>> {
    auth.require(Access::Read)?;
    Ok(axum::Json(convert::rollout_detail(state.store.get_rollout(auth.workspace_id(), &id).await?)))
}

async fn control(state: &AppState, auth: &Auth, id: &str, control: RolloutControl) -> ApiResult<axum::Json<Rollout>> {
    auth.require(Access::Write)?;
    let after = state.store.rollout_control(&auth.caller(), id, control).await?;
    Ok(axum::Json(convert::rollout_detail(after)))
}

macro_rules! control_route {
    ($name:ident, $control:expr, $path:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(
            post, path = $path, tag = "rollouts", security(("token" = [])),
            params(("id" = String, Path, description = "Rollout id")),
            responses(
                (status = 200, body = Rollout),
                ReadErrors,
                (status = 409, description = "not allowed in the current state (named in `details.state`)", body = ErrorBody)
            )
        )]
        pub async fn $name(State(state): State<AppState>, auth: Auth, Path(id): Path<String>) -> ApiResult<axum::Json<Rollout>> {
            control(&state, &auth, &id, $control).await
        }
    };
}

control_route!(
    stop,
    RolloutControl::Stop,
    "/api/v1/rollouts/{id}/stop",
    "Stops a rollout: nothing more starts (under every `on_failure`), running tasks are asked to stop; resumable."
);
control_route!(resume, RolloutControl::Resume, "/api/v1/rollouts/{id}/resume", "Resumes a stopped rollout.");
control_route!(
    cancel,
    RolloutControl::Cancel,
    "/api/v1/rollouts/{id}/cancel",
    "Cancels a rollout: terminal; running tasks are asked to stop; the pin does not move."
);
control_route!(
    release,
    RolloutControl::Release,
    "/api/v1/rollouts/{id}/release",
    "Releases a rollout paused by a failure under `on_failure = pause`: the failure then counts as under `continue`."
);
control_route!(
    retry,
    RolloutControl::Retry,
    "/api/v1/rollouts/{id}/retry",
    "Retries the failed operations of a degraded or paused rollout: their failed tasks run again with the same idempotency keys."
);

async fn report(
    state: &AppState,
    auth: &Auth,
    rollout: &str,
    task: &str,
    succeeded: bool,
    body: ReportTask,
) -> ApiResult<axum::Json<RolloutTask>> {
    auth.require(Access::Write)?;
    // The task must belong to this rollout of the workspace.
    let detail = state.store.get_rollout(auth.workspace_id(), rollout).await?;
    if !detail.operations.iter().flat_map(|o| &o.tasks).any(|t| t.id == task) {
        return Err(ApiError::not_found(format!("task {task:?} not found")));
    }
    let message = body.message.unwrap_or_default();
    let task = state.store.report_task(&auth.caller(), task, succeeded, &message).await?;
    Ok(axum::Json(convert::rollout_task(task)))
}

/// Completes a running `manual` task.
#[utoipa::path(
    post, path = "/api/v1/rollouts/{id}/tasks/{task}/complete", tag = "rollouts", security(("token" = [])),
    params(("id" = String, Path, description = "Rollout id"), ("task" = String, Path, description = "Task id")),
    request_body = ReportTask,
    responses(
        (status = 200, body = RolloutTask),
        WriteErrors,
        (status = 409, description = "the task is not running", body = ErrorBody)
    )
)]
pub async fn complete_task(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, task)): Path<(String, String)>,
    Json(body): Json<ReportTask>,
) -> ApiResult<axum::Json<RolloutTask>> {
    report(&state, &auth, &id, &task, true, body).await
}

/// Fails a running `manual` task.
#[utoipa::path(
    post, path = "/api/v1/rollouts/{id}/tasks/{task}/fail", tag = "rollouts", security(("token" = [])),
    params(("id" = String, Path, description = "Rollout id"), ("task" = String, Path, description = "Task id")),
    request_body = ReportTask,
    responses(
        (status = 200, body = RolloutTask),
        WriteErrors,
        (status = 409, description = "the task is not running", body = ErrorBody)
    )
)]
pub async fn fail_task(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, task)): Path<(String, String)>,
    Json(body): Json<ReportTask>,
) -> ApiResult<axum::Json<RolloutTask>> {
    report(&state, &auth, &id, &task, false, body).await
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// The attempt whose output to read, from 1 (default: the latest).
    #[param(minimum = 1)]
    pub attempt: Option<u32>,
}

/// A task's kept output (at most 64 KiB: the head and the tail), as plain text.
///
/// Of its latest attempt, or of the one `attempt` names: every attempt keeps its own, a stopped
/// one included.
#[utoipa::path(
    get, path = "/api/v1/rollouts/{id}/tasks/{task}/log", tag = "rollouts", security(("token" = [])),
    params(("id" = String, Path, description = "Rollout id"), ("task" = String, Path, description = "Task id"), LogQuery),
    responses((status = 200, content_type = "text/plain", body = String), ReadErrors)
)]
pub async fn task_log(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, task)): Path<(String, String)>,
    Query(query): Query<LogQuery>,
) -> ApiResult<Response> {
    auth.require(Access::Read)?;
    if query.attempt == Some(0) {
        return Err(DomainError::invalid("attempt", "attempts are numbered from 1").into());
    }
    let log = state.store.rollout_task_log(auth.workspace_id(), &id, &task, query.attempt).await?;
    let plain = HeaderValue::from_static("text/plain; charset=utf-8");
    Ok(([(header::CONTENT_TYPE, plain)], log).into_response())
}

/// What a webhook receiver reports on a run.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskCallback {
    /// `running` (progress: appended to the task's log), `completed` or `failed` (the result,
    /// taken once).
    pub status: CallbackStatus,
    /// A line for the log; for `failed`, the task's error.
    #[serde(default)]
    pub message: Option<String>,
    /// Output to append to the task's log (the log keeps at most 64 KiB: the head and the tail).
    #[serde(default)]
    pub log: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    Running,
    Completed,
    Failed,
}

/// Where a webhook receiver reports on the run it was sent: progress, then the result, once.
/// Authenticated not by an API token but by the run's `callback_token` from the delivery, as
/// `Authorization: Bearer <callback_token>`; it stops working once another run of the task has
/// started.
#[utoipa::path(
    post, path = "/api/v1/rollouts/{id}/tasks/{task}/callback", tag = "rollouts",
    params(("id" = String, Path, description = "Rollout id"), ("task" = String, Path, description = "Task id")),
    request_body = TaskCallback,
    responses(
        (status = 200, body = RolloutTask),
        (status = 400, body = ErrorBody),
        (status = 401, description = "missing or wrong callback token", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the task has its result already, or another run started", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 503, body = ErrorBody)
    )
)]
pub async fn task_callback(
    State(state): State<AppState>,
    Path((id, task)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<TaskCallback>,
) -> ApiResult<axum::Json<RolloutTask>> {
    let presented = crate::extract::callback_token(&headers)?;
    let stored = state.store.task_callback_hash(&id, &task).await?;
    let hash = presented.hash();
    if !stored.is_some_and(|stored| stored.matches(&hash)) {
        return Err(ApiError::unauthorized("wrong callback token, or one of an earlier run of this task"));
    }
    let message = body.message.unwrap_or_default();
    cutover_domain::check_text("message", &message)?;
    let mut log = String::new();
    for text in [message.as_str(), body.log.as_deref().unwrap_or_default()] {
        if !text.is_empty() {
            log.push_str(text);
            if !text.ends_with('\n') {
                log.push('\n');
            }
        }
    }
    let task = match body.status {
        CallbackStatus::Running => state.store.webhook_progress(&task, &hash, &log).await?,
        status => {
            let succeeded = status == CallbackStatus::Completed;
            let error = (!succeeded)
                .then(|| if message.is_empty() { "failed by the receiver".to_owned() } else { message.clone() });
            let outcome = TaskOutcome { succeeded, exit_code: None, error, log };
            state.store.webhook_result(&task, &hash, &outcome).await?
        }
    };
    Ok(axum::Json(convert::rollout_task(task)))
}
