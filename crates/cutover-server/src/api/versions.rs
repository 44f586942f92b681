use axum::extract::State;
use axum::http::StatusCode;
use cutover_api::{CreateVersion, ErrorBody, Page, Version};
use cutover_domain::Access;
use cutover_store::Publish;

use super::responses::{ReadErrors, WriteErrors};
use crate::AppState;
use crate::auth::Auth;
use crate::convert;
use crate::error::ApiResult;
use crate::extract::{Json, Path, Query};
use crate::extract::{PageQuery, artifact_path, text};

/// An artifact's versions, newest first, paged.
#[utoipa::path(
    get, path = "/api/v1/artifacts/{key}/versions", tag = "versions", security(("token" = [])),
    params(
        ("key" = String, Path, description = "Artifact key, percent-encoded (`/` as `%2F`)", pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128),
        PageQuery
    ),
    responses((status = 200, body = Page<Version>), ReadErrors)
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Version>>> {
    auth.require(Access::Read)?;
    let key = artifact_path(key.as_str())?;
    let (limit, cursor) = query.parse()?;
    let before = cursor.as_ref().map(|c| c.before()).transpose()?;
    let page = state.store.list_versions(auth.workspace_id(), &key, before, limit).await?;
    Ok(axum::Json(convert::page(page, convert::version)))
}

/// Publishes the next version. Content must match the artifact's value type; the author is the
/// token. With `environments`, pins it there in the same transaction: 409 listing every
/// environment another version owns, and nothing created, unless `"move": true`.
#[utoipa::path(
    post, path = "/api/v1/artifacts/{key}/versions", tag = "versions", security(("token" = [])),
    params(
        ("key" = String, Path, description = "Artifact key, percent-encoded (`/` as `%2F`)", pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128)
    ),
    request_body = CreateVersion,
    responses(
        (status = 201, body = Version),
        WriteErrors,
        (status = 409, description = "environments owned by other versions; `details.environments` lists them", body = ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
    Json(body): Json<CreateVersion>,
) -> ApiResult<(StatusCode, axum::Json<Version>)> {
    auth.require(Access::Write)?;
    let key = artifact_path(key.as_str())?;
    let message = text("message", body.message)?;
    let environments = crate::extract::environment_names("environments", body.environments.unwrap_or_default())?;
    let publish =
        Publish { content: body.content, message: &message, environments: &environments, move_pins: body.move_pins };
    let (version, _pinned) = state.store.publish_version(&auth.caller(), &key, publish).await?;
    Ok((StatusCode::CREATED, axum::Json(convert::version(version))))
}

/// One version by number.
#[utoipa::path(
    get, path = "/api/v1/artifacts/{key}/versions/{n}", tag = "versions", security(("token" = [])),
    params(
        ("key" = String, Path, description = "Artifact key, percent-encoded (`/` as `%2F`)", pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128),
        ("n" = i64, Path, description = "Version number, from 1", minimum = 1)
    ),
    responses((status = 200, body = Version), ReadErrors)
)]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path((key, number)): Path<(String, i64)>,
) -> ApiResult<axum::Json<Version>> {
    auth.require(Access::Read)?;
    let key = artifact_path(key.as_str())?;
    let number = cutover_domain::VersionNumber::parse("n", number)?;
    let version = state.store.get_version(auth.workspace_id(), &key, number).await?;
    Ok(axum::Json(convert::version(version)))
}
