use axum::extract::State;
use axum::http::StatusCode;
use cutover_api::{CreateEnvironment, Environment, ErrorBody, Page, Target, UpdateEnvironment};
use cutover_domain::{Access, DeploymentTarget, DeploymentTargets, DomainError, EnvironmentName, TargetName};
use cutover_store::{EnvironmentChanges, NewEnvironment};

use super::responses::{AuthErrors, CreateErrors, ReadErrors, WriteErrors};
use crate::AppState;
use crate::auth::Auth;
use crate::convert;
use crate::error::ApiResult;
use crate::extract::{Json, Path};
use crate::extract::{environment_path, text};

fn targets(targets: Vec<Target>) -> Result<DeploymentTargets, DomainError> {
    let parsed = targets
        .into_iter()
        .map(|t| Ok(DeploymentTarget { name: TargetName::parse(&t.name)?, config: t.config }))
        .collect::<Result<Vec<_>, DomainError>>()?;
    DeploymentTargets::parse(parsed)
}

/// Every environment of the workspace, by name.
#[utoipa::path(
    get, path = "/api/v1/environments", tag = "environments", security(("token" = [])),
    responses((status = 200, body = Page<Environment>), AuthErrors)
)]
pub async fn list(State(state): State<AppState>, auth: Auth) -> ApiResult<axum::Json<Page<Environment>>> {
    auth.require(Access::Read)?;
    let environments = state.store.list_environments(auth.workspace_id()).await?;
    Ok(axum::Json(convert::all(environments, convert::environment)))
}

/// Creates an environment. Owners only; at most `max_environments` per workspace.
#[utoipa::path(
    post, path = "/api/v1/environments", tag = "environments", security(("token" = [])),
    request_body = CreateEnvironment,
    responses(
        (status = 201, body = Environment),
        CreateErrors,
        (status = 409, description = "the name is taken (`conflict`) or the workspace is at its limit (`limit_reached`)", body = ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<CreateEnvironment>,
) -> ApiResult<(StatusCode, axum::Json<Environment>)> {
    auth.require_unscoped(Access::Administer)?;
    let new = NewEnvironment {
        name: EnvironmentName::parse(&body.name)?,
        description: text("description", body.description)?,
        protected: body.protected.unwrap_or(false),
        targets: targets(body.targets.unwrap_or_default())?,
        position: position(body.position)?,
    };
    let environment = state.store.create_environment(&auth.caller(), &new, state.config.max_environments).await?;
    Ok((StatusCode::CREATED, axum::Json(convert::environment(environment))))
}

/// One environment.
#[utoipa::path(
    get, path = "/api/v1/environments/{name}", tag = "environments", security(("token" = [])),
    params(
        ("name" = String, Path, description = "Environment name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)
    ),
    responses((status = 200, body = Environment), ReadErrors)
)]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Environment>> {
    auth.require(Access::Read)?;
    let name = environment_path(&name)?;
    let environment = state.store.get_environment(auth.workspace_id(), &name).await?;
    Ok(axum::Json(convert::environment(environment)))
}

/// Changes an environment's description, protection or targets. Owners only.
#[utoipa::path(
    patch, path = "/api/v1/environments/{name}", tag = "environments", security(("token" = [])),
    params(
        ("name" = String, Path, description = "Environment name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)
    ),
    request_body = UpdateEnvironment,
    responses((status = 200, body = Environment), WriteErrors)
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    Json(body): Json<UpdateEnvironment>,
) -> ApiResult<axum::Json<Environment>> {
    let name = environment_path(&name)?;
    auth.require_environment(Access::Administer, name.as_str())?;
    let changes = EnvironmentChanges {
        description: body.description.map(|d| text("description", Some(d))).transpose()?,
        protected: body.protected,
        targets: body.targets.map(targets).transpose()?,
        position: position(body.position)?,
    };
    let environment = state.store.update_environment(&auth.caller(), &name, &changes).await?;
    Ok(axum::Json(convert::environment(environment)))
}

/// Deletes an environment; 409 while anything depends on it.
#[utoipa::path(
    delete, path = "/api/v1/environments/{name}", tag = "environments", security(("token" = [])),
    params(
        ("name" = String, Path, description = "Environment name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)
    ),
    responses(
        (status = 204, description = "deleted"),
        ReadErrors,
        (status = 409, description = "live tokens or pins depend on it; `details` lists them", body = ErrorBody)
    )
)]
pub async fn delete(State(state): State<AppState>, auth: Auth, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let name = environment_path(&name)?;
    auth.require_environment(Access::Administer, name.as_str())?;
    state.store.delete_environment(&auth.caller(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where an environment is listed: 1 to 1,000,000.
fn position(position: Option<i64>) -> Result<Option<i64>, DomainError> {
    match position {
        Some(p) if !(1..=1_000_000).contains(&p) => {
            Err(DomainError::invalid("position", "must be between 1 and 1000000"))
        }
        other => Ok(other),
    }
}
