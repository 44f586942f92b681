//! Experiments: an (artifact, environment) split between versions, with a lifecycle changed only
//! by actions. Protected environments and roles as for pins.

use axum::extract::State;
use axum::http::StatusCode;
use cutover_api::{
    CompleteExperiment, CreateExperiment, ErrorBody, Experiment, ExperimentActionResult, Page, UpdateExperiment,
};
use cutover_domain::{Access, ArtifactKey, ExperimentAction, ExperimentStatus};
use cutover_store::{ExperimentChanges, ExperimentSpec};

use super::responses::{ReadErrors, WriteErrors};
use crate::AppState;
use crate::auth::Auth;
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query, field};
use crate::extract::{environment_path, text};

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only experiments in this status: `created`, `running`, `paused` or `completed`.
    #[param(value_type = Option<cutover_api::ExperimentStatusName>)]
    pub status: Option<String>,
}

/// An environment's experiments, oldest first; deleted ones are not listed.
#[utoipa::path(
    get, path = "/api/v1/environments/{env}/experiments", tag = "experiments", security(("token" = [])),
    params(
        ("env" = String, Path, description = "Environment name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63),
        ListQuery
    ),
    responses((status = 200, body = Page<Experiment>), ReadErrors)
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<Page<Experiment>>> {
    auth.require(Access::Read)?;
    let env = environment_path(&env)?;
    let status = query.status.as_deref().map(str::parse::<ExperimentStatus>).transpose()?;
    let experiments = state.store.list_experiments(auth.workspace_id(), &env, status).await?;
    Ok(axum::Json(convert::all(experiments, convert::experiment)))
}

/// Creates an experiment on (artifact, environment). At most one that is not completed may hold
/// them: 409 "an active experiment already exists" otherwise, also under concurrent creates.
#[utoipa::path(
    post, path = "/api/v1/environments/{env}/experiments", tag = "experiments", security(("token" = [])),
    params(
        ("env" = String, Path, description = "Environment name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)
    ),
    request_body = CreateExperiment,
    responses(
        (status = 201, body = Experiment),
        WriteErrors,
        (status = 404, description = "environment, artifact or a variant's version not found", body = ErrorBody),
        (status = 409, description = "an active experiment already exists", body = ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<String>,
    Json(body): Json<CreateExperiment>,
) -> ApiResult<(StatusCode, axum::Json<Experiment>)> {
    auth.require(Access::Write)?;
    let env = environment_path(&env)?;
    let key = field("artifact", ArtifactKey::parse(&body.artifact))?;
    let spec = ExperimentSpec {
        name: body.name,
        hypothesis: text("hypothesis", body.hypothesis)?,
        control: body.control,
        treatments: body.treatments,
        weights: body.weights,
        coverage: body.coverage,
        primary_metric: body.primary_metric,
        guardrail_metrics: body.guardrail_metrics,
    };
    let experiment = state.store.create_experiment(&auth.caller(), &key, &env, &spec).await?;
    Ok((StatusCode::CREATED, axum::Json(convert::experiment(experiment))))
}

/// One experiment; a deleted one is still shown, with `deleted_at`.
#[utoipa::path(
    get, path = "/api/v1/experiments/{id}", tag = "experiments", security(("token" = [])),
    params(("id" = String, Path, description = "Experiment id")),
    responses((status = 200, body = Experiment), ReadErrors)
)]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Experiment>> {
    auth.require(Access::Read)?;
    let experiment = state.store.get_experiment(auth.workspace_id(), &id).await?;
    Ok(axum::Json(convert::experiment(experiment)))
}

/// Edits the name and hypothesis, in any status. Any other field: 400.
#[utoipa::path(
    patch, path = "/api/v1/experiments/{id}", tag = "experiments", security(("token" = [])),
    params(("id" = String, Path, description = "Experiment id")),
    request_body = UpdateExperiment,
    responses(
        (status = 200, body = Experiment),
        WriteErrors,
        (status = 409, description = "the experiment is deleted", body = ErrorBody)
    )
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(body): Json<UpdateExperiment>,
) -> ApiResult<axum::Json<Experiment>> {
    auth.require(Access::Write)?;
    let changes = ExperimentChanges { name: body.name, hypothesis: body.hypothesis };
    let experiment = state.store.update_experiment(&auth.caller(), &id, &changes).await?;
    Ok(axum::Json(convert::experiment(experiment)))
}

/// Soft-deletes an experiment: it stays readable by id (results too) but leaves lists, and frees
/// its (artifact, environment) for a new experiment.
#[utoipa::path(
    delete, path = "/api/v1/experiments/{id}", tag = "experiments", security(("token" = [])),
    params(("id" = String, Path, description = "Experiment id")),
    responses(
        (status = 200, body = Experiment),
        ReadErrors,
        (status = 409, description = "already deleted", body = ErrorBody)
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Experiment>> {
    auth.require(Access::Write)?;
    let experiment = state.store.delete_experiment(&auth.caller(), &id).await?;
    // A running experiment no longer splits traffic.
    Ok(axum::Json(convert::experiment(experiment)))
}

async fn act(
    state: &AppState,
    auth: &Auth,
    id: &str,
    action: ExperimentAction,
    winner: Option<i64>,
) -> ApiResult<axum::Json<ExperimentActionResult>> {
    auth.require(Access::Write)?;
    let outcome = state.store.experiment_action(&auth.caller(), id, action, winner).await?;
    // Every action changes what resolve answers: who is split, who gets the control, what is pinned.
    Ok(axum::Json(ExperimentActionResult {
        experiment: convert::experiment(outcome.experiment),
        pinned: outcome.pinned.map(convert::pin_write),
    }))
}

/// Starts a created experiment.
#[utoipa::path(
    post, path = "/api/v1/experiments/{id}/start", tag = "experiments", security(("token" = [])),
    params(("id" = String, Path, description = "Experiment id")),
    responses(
        (status = 200, body = ExperimentActionResult),
        ReadErrors,
        (status = 409, description = "not allowed in the current status (named in `details.status`)", body = ErrorBody)
    )
)]
pub async fn start(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ExperimentActionResult>> {
    act(&state, &auth, &id, ExperimentAction::Start, None).await
}

/// Pauses a running experiment: everyone gets the control.
#[utoipa::path(
    post, path = "/api/v1/experiments/{id}/pause", tag = "experiments", security(("token" = [])),
    params(("id" = String, Path, description = "Experiment id")),
    responses(
        (status = 200, body = ExperimentActionResult),
        ReadErrors,
        (status = 409, description = "not allowed in the current status (named in `details.status`)", body = ErrorBody)
    )
)]
pub async fn pause(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ExperimentActionResult>> {
    act(&state, &auth, &id, ExperimentAction::Pause, None).await
}

/// Resumes a paused experiment.
#[utoipa::path(
    post, path = "/api/v1/experiments/{id}/resume", tag = "experiments", security(("token" = [])),
    params(("id" = String, Path, description = "Experiment id")),
    responses(
        (status = 200, body = ExperimentActionResult),
        ReadErrors,
        (status = 409, description = "not allowed in the current status (named in `details.status`)", body = ErrorBody)
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ExperimentActionResult>> {
    act(&state, &auth, &id, ExperimentAction::Resume, None).await
}

/// Completes a running or paused experiment. With `winner` (a variant's version number), pins it
/// to the environment in the same transaction, audited like any pin.
#[utoipa::path(
    post, path = "/api/v1/experiments/{id}/complete", tag = "experiments", security(("token" = [])),
    params(("id" = String, Path, description = "Experiment id")),
    request_body(content = Option<CompleteExperiment>, description = "optional; `{}` or no body completes without a winner"),
    responses(
        (status = 200, body = ExperimentActionResult),
        WriteErrors,
        (status = 400, description = "the body is not `{\"winner\"?: n}`, or the winner is not a variant", body = ErrorBody),
        (status = 409, description = "not allowed in the current status (named in `details.status`)", body = ErrorBody)
    )
)]
pub async fn complete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<ExperimentActionResult>> {
    // The body is optional: none at all (or `null`) completes without a winner.
    let winner = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<Option<CompleteExperiment>>(&body)
            .map_err(|e| ApiError::bad_request("invalid_body", format!("Failed to deserialize the JSON body: {e}")))?
            .and_then(|complete| complete.winner)
    };
    act(&state, &auth, &id, ExperimentAction::Complete, winner).await
}
