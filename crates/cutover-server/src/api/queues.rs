//! The submit queue: queues guarding an environment, change requests (submit, show with history,
//! cancel), batches (the active ones through the membership), pause and resume, and the reports
//! of manual checks. Submitting lands content in the queue's environment, so it takes the right
//! to pin there (a protected environment: owners, or tokens scoped to it); a token scoped to
//! other environments does not see the queue (404), nor does another workspace.

use axum::extract::State;
use axum::http::StatusCode;
use cutover_api::ErrorBody;
use cutover_api::queue::{
    ChangeRequest, CheckCallback, CheckReport, CreateQueue, Queue, QueueBatch, QueueChange, RequestTransition,
    SubmitChangeRequest,
};
use cutover_domain::queue::{QueueName, QueueSettings};
use cutover_domain::rollouts::{ExecutorRequest, ExecutorSpec};
use cutover_domain::{Access, ArtifactKey, DomainError, EnvironmentName};
use cutover_store::{NewChangeRequest, NewQueue, QueueStatus, RequestChange};
use serde::Deserialize;
use utoipa::IntoParams;

use super::responses::{AuthErrors, ReadErrors, WriteErrors};
use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query, field};

fn queue_path(name: &str) -> Result<QueueName, ApiError> {
    QueueName::parse(name).map_err(|e| ApiError::bad_request("invalid_path", format!("queue: {e}")))
}

fn executor(spec: &ExecutorSpec) -> serde_json::Value {
    match spec {
        ExecutorSpec::Command { executor, timeout_seconds } => {
            serde_json::json!({"type": "command", "name": executor, "timeout_seconds": timeout_seconds})
        }
        ExecutorSpec::Webhook { url, timeout_seconds, .. } => {
            serde_json::json!({"type": "webhook", "url": url, "timeout_seconds": timeout_seconds})
        }
        ExecutorSpec::Manual {} => serde_json::json!({"type": "manual"}),
    }
}

fn queue(s: QueueStatus) -> Queue {
    let q = s.queue;
    Queue {
        name: q.name,
        environment: q.environment.into_string(),
        budget: q.settings.budget,
        max_batch_size: q.settings.max_batch_size,
        max_wait_seconds: q.settings.max_wait_seconds,
        max_flake_retries: q.settings.max_flake_retries,
        executor: executor(&q.executor),
        paused: q.paused,
        depth: s.depth,
        active_batches: s.active_batches,
        running_checks: s
            .running_checks
            .into_iter()
            .map(|c| cutover_api::queue::RunningCheck {
                id: c.id,
                batch: c.batch,
                attempt: c.attempt,
                started_at: c.started_at.to_rfc3339(),
            })
            .collect(),
        landed: s.landed,
        created_at: q.created_at.to_rfc3339(),
        updated_at: q.updated_at.to_rfc3339(),
        created_by: q.created_by.name,
    }
}

pub(crate) fn request(r: cutover_store::ChangeRequest, with_history: bool) -> ChangeRequest {
    let history = with_history.then(|| {
        r.history
            .iter()
            .map(|t| RequestTransition {
                at: t.at.to_rfc3339(),
                actor: t.actor.clone(),
                from: t.from.map(|s| s.as_str().to_owned()),
                to: t.to.as_str().to_owned(),
                reason: t.reason.clone(),
            })
            .collect()
    });
    ChangeRequest {
        id: r.id,
        queue: r.queue,
        state: r.state.as_str().to_owned(),
        lane: match r.lane {
            cutover_domain::queue::Lane::Hotfix => "hotfix".into(),
            cutover_domain::queue::Lane::Normal => "normal".into(),
        },
        changes: r
            .changes
            .into_iter()
            .map(|c| QueueChange { artifact: c.artifact.into_string(), content: c.content })
            .collect(),
        message: r.message,
        author: r.author.name,
        error: r.error,
        created_at: r.created_at.to_rfc3339(),
        updated_at: r.updated_at.to_rfc3339(),
        landed_at: r.landed_at.map(|t| t.to_rfc3339()),
        landed_versions: r.landed_versions,
        history,
    }
}

fn batch(b: cutover_store::QueueBatch) -> QueueBatch {
    QueueBatch {
        id: b.id,
        state: b.state.as_str().to_owned(),
        lane: match b.position.lane {
            cutover_domain::queue::Lane::Hotfix => "hotfix".into(),
            cutover_domain::queue::Lane::Normal => "normal".into(),
        },
        seq: b.position.seq,
        requests: b.requests,
        depends_on: b.depends_on,
        suspect: b.suspect,
        created_at: b.created_at.to_rfc3339(),
        updated_at: b.updated_at.to_rfc3339(),
    }
}

/// The queue named in the path, 404 when the token's scope does not reach its environment.
async fn visible(state: &AppState, auth: &Auth, name: &QueueName) -> ApiResult<QueueStatus> {
    auth.require(Access::Read)?;
    let status = state.store.get_queue(auth.workspace_id(), name.as_str()).await?;
    if auth.authority().may_see(&status.queue.environment).is_err() {
        return Err(ApiError::not_found(format!("queue {:?} not found", name.as_str())));
    }
    Ok(status)
}

/// Creates a queue guarding `environment`, its checks run by `executor`.
#[utoipa::path(
    post, path = "/api/v1/queues", tag = "queue", security(("token" = [])),
    request_body = CreateQueue,
    responses(
        (status = 201, body = Queue),
        WriteErrors,
        (status = 409, description = "a queue of that name exists", body = ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<CreateQueue>,
) -> ApiResult<(StatusCode, axum::Json<Queue>)> {
    auth.require(Access::Write)?;
    let name = QueueName::parse(&body.name)?;
    let environment = field("environment", EnvironmentName::parse(&body.environment))?;
    auth.require_environment(Access::Write, environment.as_str())?;
    let settings =
        QueueSettings::parse(body.budget, body.max_batch_size, body.max_wait_seconds, body.max_flake_retries)?;
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
    let new = NewQueue { name, environment, settings, executor };
    let made = state.store.create_queue(&auth.caller(), &new).await?;
    Ok((StatusCode::CREATED, axum::Json(queue(made))))
}

/// The workspace's queues the token's scope reaches, by name.
#[utoipa::path(
    get, path = "/api/v1/queues", tag = "queue", security(("token" = [])),
    responses((status = 200, body = Vec<Queue>), AuthErrors)
)]
pub async fn list(State(state): State<AppState>, auth: Auth) -> ApiResult<axum::Json<Vec<Queue>>> {
    auth.require(Access::Read)?;
    let authority = auth.authority();
    let queues = state.store.list_queues(auth.workspace_id()).await?;
    Ok(axum::Json(queues.into_iter().filter(|q| authority.may_see(&q.queue.environment).is_ok()).map(queue).collect()))
}

/// One queue with its depth, active batches, running checks and landed count.
#[utoipa::path(
    get, path = "/api/v1/queues/{queue}", tag = "queue", security(("token" = [])),
    params(("queue" = String, Path, description = "Queue name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)),
    responses((status = 200, body = Queue), ReadErrors)
)]
pub async fn show(State(state): State<AppState>, auth: Auth, Path(name): Path<String>) -> ApiResult<axum::Json<Queue>> {
    let name = queue_path(&name)?;
    Ok(axum::Json(queue(visible(&state, &auth, &name).await?)))
}

/// Submits a change request: new content for one or more artifacts. The content is validated
/// against each artifact's value type before anything is written; the request then waits for a
/// batch, is checked on top of everything ahead of it, and lands (publish and pin, in one
/// transaction) in queue order.
#[utoipa::path(
    post, path = "/api/v1/queues/{queue}/requests", tag = "queue", security(("token" = [])),
    params(("queue" = String, Path, description = "Queue name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)),
    request_body = SubmitChangeRequest,
    responses((status = 201, body = ChangeRequest), WriteErrors)
)]
pub async fn submit(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    Json(body): Json<SubmitChangeRequest>,
) -> ApiResult<(StatusCode, axum::Json<ChangeRequest>)> {
    let name = queue_path(&name)?;
    auth.require(Access::Write)?;
    visible(&state, &auth, &name).await?;
    let mut changes = Vec::with_capacity(body.changes.len());
    for (i, change) in body.changes.into_iter().enumerate() {
        let artifact = ArtifactKey::parse(&change.artifact)
            .map_err(|e| DomainError::invalid(format!("changes[{i}].artifact"), e.to_string()))?;
        changes.push(RequestChange { artifact, content: change.content });
    }
    let new = NewChangeRequest { changes, message: body.message, hotfix: body.hotfix };
    let made = state.store.submit_change_request(&auth.caller(), name.as_str(), &new).await?;
    Ok((StatusCode::CREATED, axum::Json(request(made, true))))
}

/// `?state=` of a request list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RequestsQuery {
    /// `live` (not terminal) or `all`; default `all`.
    #[param(pattern = "^(live|all)$")]
    pub state: Option<String>,
    /// 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

fn limit(limit: Option<u32>) -> Result<u32, DomainError> {
    match limit.unwrap_or(50) {
        n @ 1..=200 => Ok(n),
        _ => Err(DomainError::invalid("limit", "must be between 1 and 200")),
    }
}

/// A queue's change requests, newest first.
#[utoipa::path(
    get, path = "/api/v1/queues/{queue}/requests", tag = "queue", security(("token" = [])),
    params(("queue" = String, Path, description = "Queue name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63), RequestsQuery),
    responses((status = 200, body = Vec<ChangeRequest>), ReadErrors)
)]
pub async fn requests(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    Query(query): Query<RequestsQuery>,
) -> ApiResult<axum::Json<Vec<ChangeRequest>>> {
    let name = queue_path(&name)?;
    let live = match query.state.as_deref() {
        None | Some("all") => false,
        Some("live") => true,
        Some(other) => return Err(DomainError::invalid("state", format!("{other:?} is not one of live, all")).into()),
    };
    let limit = limit(query.limit)?;
    visible(&state, &auth, &name).await?;
    let listed = state.store.list_change_requests(auth.workspace_id(), name.as_str(), live, limit).await?;
    Ok(axum::Json(listed.into_iter().map(|r| request(r, false)).collect()))
}

/// One change request with its history (who moved it, when, why).
#[utoipa::path(
    get, path = "/api/v1/queues/{queue}/requests/{id}", tag = "queue", security(("token" = [])),
    params(
        ("queue" = String, Path, description = "Queue name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63),
        ("id" = u64, Path, description = "Change request id", minimum = 1)
    ),
    responses((status = 200, body = ChangeRequest), ReadErrors)
)]
pub async fn show_request(
    State(state): State<AppState>,
    auth: Auth,
    Path((name, id)): Path<(String, u64)>,
) -> ApiResult<axum::Json<ChangeRequest>> {
    let name = queue_path(&name)?;
    visible(&state, &auth, &name).await?;
    let found = state.store.get_change_request(auth.workspace_id(), name.as_str(), id).await?;
    Ok(axum::Json(request(found, true)))
}

/// Asks to cancel a change request (202: it is `cancelling`). The engine cancels the batch
/// holding it and re-batches the others; a landing already under way wins. A request already
/// terminal is 409.
#[utoipa::path(
    post, path = "/api/v1/queues/{queue}/requests/{id}/cancel", tag = "queue", security(("token" = [])),
    params(
        ("queue" = String, Path, description = "Queue name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63),
        ("id" = u64, Path, description = "Change request id", minimum = 1)
    ),
    responses(
        (status = 202, body = ChangeRequest),
        ReadErrors,
        (status = 409, description = "the request is already landed, refused or cancelled", body = ErrorBody)
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    Path((name, id)): Path<(String, u64)>,
) -> ApiResult<(StatusCode, axum::Json<ChangeRequest>)> {
    let name = queue_path(&name)?;
    auth.require(Access::Write)?;
    visible(&state, &auth, &name).await?;
    let after = state.store.cancel_change_request(&auth.caller(), name.as_str(), id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(request(after, true))))
}

/// `?state=` of a batch list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BatchesQuery {
    /// `active` (through the active-batch membership) or `all` (newest first); default `all`.
    #[param(pattern = "^(active|all)$")]
    pub state: Option<String>,
    /// With `all`: 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// A queue's batches: `?state=active` lists the live ones through the active-batch membership
/// (its cost follows the live window, not the history).
#[utoipa::path(
    get, path = "/api/v1/queues/{queue}/batches", tag = "queue", security(("token" = [])),
    params(("queue" = String, Path, description = "Queue name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63), BatchesQuery),
    responses((status = 200, body = Vec<QueueBatch>), ReadErrors)
)]
pub async fn batches(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    Query(query): Query<BatchesQuery>,
) -> ApiResult<axum::Json<Vec<QueueBatch>>> {
    let name = queue_path(&name)?;
    let active = match query.state.as_deref() {
        None | Some("all") => false,
        Some("active") => true,
        Some(other) => {
            return Err(DomainError::invalid("state", format!("{other:?} is not one of active, all")).into());
        }
    };
    let limit = limit(query.limit)?;
    visible(&state, &auth, &name).await?;
    let listed = state.store.list_queue_batches(auth.workspace_id(), name.as_str(), active, limit).await?;
    Ok(axum::Json(listed.into_iter().map(batch).collect()))
}

async fn set_paused(state: &AppState, auth: &Auth, name: &str, paused: bool) -> ApiResult<axum::Json<Queue>> {
    let name = queue_path(name)?;
    auth.require(Access::Write)?;
    visible(state, auth, &name).await?;
    Ok(axum::Json(queue(state.store.set_queue_paused(&auth.caller(), name.as_str(), paused).await?)))
}

/// Pauses (freezes) a queue: nothing new is batched, checked or landed; submits and cancels
/// still work.
#[utoipa::path(
    post, path = "/api/v1/queues/{queue}/pause", tag = "queue", security(("token" = [])),
    params(("queue" = String, Path, description = "Queue name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)),
    responses((status = 200, body = Queue), ReadErrors)
)]
pub async fn pause(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Queue>> {
    set_paused(&state, &auth, &name, true).await
}

/// Resumes a paused queue.
#[utoipa::path(
    post, path = "/api/v1/queues/{queue}/resume", tag = "queue", security(("token" = [])),
    params(("queue" = String, Path, description = "Queue name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)),
    responses((status = 200, body = Queue), ReadErrors)
)]
pub async fn resume(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Queue>> {
    set_paused(&state, &auth, &name, false).await
}

/// A reported check output: at most 65,536 characters, no control characters but newlines and
/// tabs.
pub(crate) fn check_output(output: &str) -> Result<(), DomainError> {
    if output.chars().count() > 65_536 {
        return Err(DomainError::invalid("output", "must be at most 65536 characters"));
    }
    if output.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')) {
        return Err(DomainError::invalid("output", "must not contain control characters"));
    }
    Ok(())
}

async fn report(
    state: &AppState,
    auth: &Auth,
    name: &str,
    check: u64,
    passed: bool,
    body: CheckReport,
) -> ApiResult<StatusCode> {
    let name = queue_path(name)?;
    auth.require(Access::Write)?;
    let status = visible(state, auth, &name).await?;
    auth.require_environment(Access::Write, status.queue.environment.as_str())?;
    if !matches!(status.queue.executor, ExecutorSpec::Manual {}) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_manual",
            format!(
                "queue {:?} runs its checks with a command executor; only manual checks are reported",
                name.as_str()
            ),
        ));
    }
    check_output(&body.output)?;
    if !state.store.finish_queue_check(&status.queue.id, check, None, passed, &body.output).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "check_not_running",
            format!("check {check} of queue {:?} is not running (finished, abandoned, or unknown)", name.as_str()),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Reports that a manual check passed.
#[utoipa::path(
    post, path = "/api/v1/queues/{queue}/checks/{check}/pass", tag = "queue", security(("token" = [])),
    params(
        ("queue" = String, Path, description = "Queue name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63),
        ("check" = u64, Path, description = "Check id", minimum = 1)
    ),
    request_body = CheckReport,
    responses(
        (status = 204, description = "recorded"),
        WriteErrors,
        (status = 409, description = "not a manual queue, or the check is not running", body = ErrorBody)
    )
)]
pub async fn pass(
    State(state): State<AppState>,
    auth: Auth,
    Path((name, check)): Path<(String, u64)>,
    Json(body): Json<CheckReport>,
) -> ApiResult<StatusCode> {
    report(&state, &auth, &name, check, true, body).await
}

/// Reports that a manual check failed; `output` says why.
#[utoipa::path(
    post, path = "/api/v1/queues/{queue}/checks/{check}/fail", tag = "queue", security(("token" = [])),
    params(
        ("queue" = String, Path, description = "Queue name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63),
        ("check" = u64, Path, description = "Check id", minimum = 1)
    ),
    request_body = CheckReport,
    responses(
        (status = 204, description = "recorded"),
        WriteErrors,
        (status = 409, description = "not a manual queue, or the check is not running", body = ErrorBody)
    )
)]
pub async fn fail(
    State(state): State<AppState>,
    auth: Auth,
    Path((name, check)): Path<(String, u64)>,
    Json(body): Json<CheckReport>,
) -> ApiResult<StatusCode> {
    report(&state, &auth, &name, check, false, body).await
}

/// Where a webhook receiver reports on the check it was sent (`callback_url` in the delivery).
/// Authenticated not by an API token but by the run's `callback_token`, as
/// `Authorization: Bearer <callback_token>`; it works for that check only, while it runs.
#[utoipa::path(
    post, path = "/api/v1/queue-checks/{queue_id}/{check}/callback", tag = "queue",
    params(
        ("queue_id" = String, Path, description = "The queue's id, as the delivery's callback URL has it"),
        ("check" = u64, Path, description = "Check id", minimum = 1)
    ),
    request_body = CheckCallback,
    responses(
        (status = 204, description = "recorded"),
        (status = 400, body = ErrorBody),
        (status = 401, description = "missing or wrong callback token", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the check has its result already, or is no longer running", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 503, body = ErrorBody)
    )
)]
pub async fn callback(
    State(state): State<AppState>,
    Path((queue_id, check)): Path<(String, u64)>,
    headers: axum::http::HeaderMap,
    Json(body): Json<CheckCallback>,
) -> ApiResult<StatusCode> {
    let presented = crate::extract::callback_token(&headers)?;
    let passed = match body.status.as_str() {
        "passed" => true,
        "failed" => false,
        other => return Err(DomainError::invalid("status", format!("{other:?} is not one of passed, failed")).into()),
    };
    let output = body.output.unwrap_or_default();
    check_output(&output)?;
    let stored = state.store.queue_check_callback(&queue_id, check).await?;
    let hash = presented.hash();
    let Some(stored) = stored else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "check_not_running",
            format!("check {check} is not running (finished, abandoned, or not a webhook check)"),
        ));
    };
    if !stored.matches(&hash) {
        return Err(ApiError::unauthorized("wrong callback token"));
    }
    if !state.store.finish_queue_check(&queue_id, check, None, passed, &output).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, "check_not_running", format!("check {check} is not running")));
    }
    Ok(StatusCode::NO_CONTENT)
}
