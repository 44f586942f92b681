use axum::extract::State;
use axum::http::StatusCode;
use cutover_api::{Artifact, CreateArtifact, ErrorBody, Page, UpdateArtifact};
use cutover_domain::{Access, ArtifactKey, ArtifactKind, ValueType};
use cutover_store::{ArtifactChanges, NewArtifact};

use super::responses::{CreateErrors, ListErrors, ReadErrors, WriteErrors};
use crate::AppState;
use crate::auth::Auth;
use crate::convert;
use crate::error::ApiResult;
use crate::extract::{Json, Path, Query};
use crate::extract::{KeyPageQuery, artifact_path, text};

/// Artifacts ordered by key, paged. Archived artifacts are left out unless `archived=true`, which
/// lists them alone.
#[utoipa::path(
    get, path = "/api/v1/artifacts", tag = "artifacts", security(("token" = [])),
    params(KeyPageQuery),
    responses((status = 200, body = Page<Artifact>), ListErrors)
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<KeyPageQuery>,
) -> ApiResult<axum::Json<Page<Artifact>>> {
    auth.require(Access::Read)?;
    let (limit, cursor) = query.parse()?;
    let after = cursor.as_ref().map(|c| c.after()).transpose()?;
    let archived = query.archived.unwrap_or(false);
    let page = state.store.list_artifacts(auth.workspace_id(), after, limit, archived).await?;
    Ok(axum::Json(convert::page(page, convert::artifact)))
}

/// Creates an artifact. Its key and value type are fixed from then on.
#[utoipa::path(
    post, path = "/api/v1/artifacts", tag = "artifacts", security(("token" = [])),
    request_body = CreateArtifact,
    responses(
        (status = 201, body = Artifact),
        CreateErrors,
        (status = 409, description = "an artifact with that key exists", body = ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<CreateArtifact>,
) -> ApiResult<(StatusCode, axum::Json<Artifact>)> {
    auth.require(Access::Write)?;
    let new = NewArtifact {
        key: ArtifactKey::parse(&body.key)?,
        value_type: body.value_type.parse::<ValueType>()?,
        kind: ArtifactKind::parse(body.kind.as_deref().unwrap_or("config"))?.into_string(),
        description: text("description", body.description)?,
    };
    let artifact = state.store.create_artifact(&auth.caller(), &new).await?;
    Ok((StatusCode::CREATED, axum::Json(convert::artifact(artifact))))
}

/// One artifact, archived or not. Keys containing `/` travel percent-encoded (`%2F`) in the path.
#[utoipa::path(
    get, path = "/api/v1/artifacts/{key}", tag = "artifacts", security(("token" = [])),
    params(
        ("key" = String, Path, description = "Artifact key, percent-encoded (`/` as `%2F`)", pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128)
    ),
    responses((status = 200, body = Artifact), ReadErrors)
)]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<Artifact>> {
    auth.require(Access::Read)?;
    let key = artifact_path(key.as_str())?;
    let artifact = state.store.get_artifact(auth.workspace_id(), &key).await?;
    Ok(axum::Json(convert::artifact(artifact)))
}

/// Changes an artifact's kind or description.
#[utoipa::path(
    patch, path = "/api/v1/artifacts/{key}", tag = "artifacts", security(("token" = [])),
    params(
        ("key" = String, Path, description = "Artifact key, percent-encoded (`/` as `%2F`)", pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128)
    ),
    request_body = UpdateArtifact,
    responses((status = 200, body = Artifact), WriteErrors)
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
    Json(body): Json<UpdateArtifact>,
) -> ApiResult<axum::Json<Artifact>> {
    auth.require(Access::Write)?;
    let key = artifact_path(key.as_str())?;
    let changes = ArtifactChanges {
        kind: body.kind.map(|k| ArtifactKind::parse(&k).map(ArtifactKind::into_string)).transpose()?,
        description: body.description.map(|d| text("description", Some(d))).transpose()?,
    };
    let artifact = state.store.update_artifact(&auth.caller(), &key, &changes).await?;
    Ok(axum::Json(convert::artifact(artifact)))
}

/// Archives an artifact: it leaves `GET /api/v1/artifacts` (see `archived=true`) and resolve
/// (OFREP answers `FLAG_NOT_FOUND`; the change stream announces its environments as unpinned),
/// keeps its versions, pins and history, and refuses new versions, pins, experiments, rollouts
/// and pools (409 `artifact_archived`) until unarchived. Refused (409 `artifact_in_use`, naming
/// them in `details`) while an experiment that is not completed, an unfinished rollout or a pool
/// uses it. Needs the right to change every environment the artifact is pinned in. Archiving an
/// archived artifact changes nothing.
#[utoipa::path(
    post, path = "/api/v1/artifacts/{key}/archive", tag = "artifacts", security(("token" = [])),
    params(
        ("key" = String, Path, description = "Artifact key, percent-encoded (`/` as `%2F`)", pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128)
    ),
    responses(
        (status = 200, body = Artifact),
        ReadErrors,
        (status = 409, description = "`artifact_in_use`: running work uses it (named in `details`)", body = ErrorBody)
    )
)]
pub async fn archive(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<Artifact>> {
    auth.require(Access::Write)?;
    let key = artifact_path(key.as_str())?;
    let artifact = state.store.archive_artifact(&auth.caller(), &key).await?;
    Ok(axum::Json(convert::artifact(artifact)))
}

/// Brings an archived artifact back to lists and resolve, with the pins it had. Unarchiving an
/// artifact that is not archived changes nothing.
#[utoipa::path(
    post, path = "/api/v1/artifacts/{key}/unarchive", tag = "artifacts", security(("token" = [])),
    params(
        ("key" = String, Path, description = "Artifact key, percent-encoded (`/` as `%2F`)", pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128)
    ),
    responses((status = 200, body = Artifact), ReadErrors)
)]
pub async fn unarchive(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<Artifact>> {
    auth.require(Access::Write)?;
    let key = artifact_path(key.as_str())?;
    let artifact = state.store.unarchive_artifact(&auth.caller(), &key).await?;
    Ok(axum::Json(convert::artifact(artifact)))
}

/// Deletes an artifact with its versions and pin history (the audit log keeps the record).
/// Refused (409 `artifact_in_use`, naming them in `details`) while it is pinned in any
/// environment or any experiment, rollout or pool refers to it, even a completed or deleted one,
/// whose records keep pointing at its versions: archive such an artifact instead. Archived or
/// not, it can be deleted. Needs a token not limited to some environments.
#[utoipa::path(
    delete, path = "/api/v1/artifacts/{key}", tag = "artifacts", security(("token" = [])),
    params(
        ("key" = String, Path, description = "Artifact key, percent-encoded (`/` as `%2F`)", pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128)
    ),
    responses(
        (status = 204, description = "deleted"),
        ReadErrors,
        (status = 409, description = "`artifact_in_use`: pins, experiments, rollouts or pools refer to it (named in `details`)", body = ErrorBody)
    )
)]
pub async fn delete(State(state): State<AppState>, auth: Auth, Path(key): Path<String>) -> ApiResult<StatusCode> {
    auth.require_unscoped(Access::Write)?;
    let key = artifact_path(key.as_str())?;
    state.store.delete_artifact(&auth.caller(), &key).await?;
    Ok(StatusCode::NO_CONTENT)
}
