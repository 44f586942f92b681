//! Pins: which version is live in each environment, moved with history.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use cutover_api::{ErrorBody, Page, Pin, PinWrite, Promote, Promoted, SetEnvironments, SetPin};
use cutover_domain::{Access, DomainError, EnvironmentName, VersionNumber};

use super::params::IfMatchHeader;
use super::responses::{ReadErrors, WriteErrors};
use crate::AppState;
use crate::auth::Auth;
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query, field};
use crate::extract::{PageQuery, artifact_path, environment_names, environment_path, text};

/// `If-Match: <revision>` (quotes allowed), if sent.
fn if_match(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("invalid_header", "If-Match must be a revision number returned by a read"))
}

fn with_etag(revision: i64, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// Replaces the set of environments a version owns: listed environments move to it, those it
/// owned and are not listed are released; an empty list clears. One transaction.
#[utoipa::path(
    put, path = "/api/v1/artifacts/{key}/versions/{n}/environments", tag = "pins", security(("token" = [])),
    params(
        ("key" = String, Path, description = "Artifact key, percent-encoded (`/` as `%2F`)", pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128),
        ("n" = i64, Path, description = "Version number, from 1", minimum = 1)
    ),
    request_body = SetEnvironments,
    responses(
        (status = 200, body = PinWrite),
        WriteErrors,
        (status = 404, description = "artifact, version or environments not found; `details.missing` lists environments", body = ErrorBody),
        (status = 409, description = "a concurrent write moved one of the pins first", body = ErrorBody)
    )
)]
pub async fn set_environments(
    State(state): State<AppState>,
    auth: Auth,
    Path((key, number)): Path<(String, i64)>,
    Json(body): Json<SetEnvironments>,
) -> ApiResult<axum::Json<PinWrite>> {
    auth.require(Access::Write)?;
    let key = artifact_path(&key)?;
    let environments = environment_names("environments", body.environments)?;
    let number = VersionNumber::parse("n", number)?;
    let reason = text("reason", body.reason)?;
    let write = state.store.set_version_environments(&auth.caller(), &key, number, &environments, &reason).await?;
    Ok(axum::Json(convert::pin_write(write)))
}

/// The environments an artifact is live in.
#[utoipa::path(
    get, path = "/api/v1/artifacts/{key}/pins", tag = "pins", security(("token" = [])),
    params(
        ("key" = String, Path, description = "Artifact key, percent-encoded (`/` as `%2F`)", pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128)
    ),
    responses((status = 200, body = Page<Pin>), ReadErrors)
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<Page<Pin>>> {
    auth.require(Access::Read)?;
    let key = artifact_path(&key)?;
    let pins = state.store.list_pins(auth.workspace_id(), &key).await?;
    Ok(axum::Json(convert::all(pins, convert::pin)))
}

/// The current pin of one environment, with its revision as `ETag`. 404 when nothing is pinned.
#[utoipa::path(
    get, path = "/api/v1/artifacts/{key}/pins/{env}", tag = "pins", security(("token" = [])),
    params(
        ("key" = String, Path, description = "Artifact key, percent-encoded (`/` as `%2F`)", pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128),
        ("env" = String, Path, description = "Environment name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)
    ),
    responses(
        (status = 200, body = Pin, headers(("ETag" = String, description = "The pin's revision"))),
        ReadErrors,
        (status = 404, description = "no such artifact or environment, or nothing pinned there", body = ErrorBody)
    )
)]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path((key, env)): Path<(String, String)>,
) -> ApiResult<Response> {
    auth.require(Access::Read)?;
    let (key, env) = (artifact_path(&key)?, environment_path(&env)?);
    let pin = state.store.get_pin(auth.workspace_id(), &key, &env).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "nothing of artifact {:?} is pinned in {:?} (its revision is 0)",
            key.as_str(),
            env.as_str()
        ))
    })?;
    Ok(with_etag(pin.revision, axum::Json(convert::pin(pin))))
}

/// Pins a version to one environment. With `If-Match: <revision>`, only if the environment's
/// pin is still the one opened at that revision (0: nothing pinned); 412 otherwise.
#[utoipa::path(
    put, path = "/api/v1/artifacts/{key}/pins/{env}", tag = "pins", security(("token" = [])),
    params(
        ("key" = String, Path, description = "Artifact key, percent-encoded (`/` as `%2F`)", pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128),
        ("env" = String, Path, description = "Environment name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63),
        IfMatchHeader
    ),
    request_body = SetPin,
    responses(
        (status = 200, body = PinWrite, headers(("ETag" = String, description = "The pin's revision now"))),
        WriteErrors,
        (status = 409, description = "a concurrent write moved the pin first", body = ErrorBody),
        (status = 412, description = "the pin changed since the revision in If-Match; `details.revision` is the current one", body = ErrorBody)
    )
)]
pub async fn set(
    State(state): State<AppState>,
    auth: Auth,
    Path((key, env)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<SetPin>,
) -> ApiResult<Response> {
    auth.require(Access::Write)?;
    let (key, env) = (artifact_path(&key)?, environment_path(&env)?);
    let expected = if_match(&headers)?;
    let version = VersionNumber::parse("version", body.version)?;
    let reason = text("reason", body.reason)?;
    let write = state.store.pin(&auth.caller(), &key, &env, Some(version), expected, &reason).await?;
    // A write that moved the pin opened it at its own revision; only a no-op needs to look.
    let current = match write.revision {
        Some(revision) => revision,
        None => state.store.get_pin(auth.workspace_id(), &key, &env).await?.map_or(0, |p| p.revision),
    };
    Ok(with_etag(current, axum::Json(convert::pin_write(write))))
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UnpinQuery {
    /// Why, for the history and the audit log.
    #[param(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$", max_length = 4096)]
    pub reason: Option<String>,
}

/// Unpins one environment: nothing of the artifact is live there afterwards. Honours `If-Match`.
#[utoipa::path(
    delete, path = "/api/v1/artifacts/{key}/pins/{env}", tag = "pins", security(("token" = [])),
    params(
        ("key" = String, Path, description = "Artifact key, percent-encoded (`/` as `%2F`)", pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128),
        ("env" = String, Path, description = "Environment name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63),
        IfMatchHeader,
        UnpinQuery
    ),
    responses(
        (status = 200, body = PinWrite),
        ReadErrors,
        (status = 409, description = "a concurrent write moved the pin first", body = ErrorBody),
        (status = 412, description = "the pin changed since the revision in If-Match; `details.revision` is the current one", body = ErrorBody)
    )
)]
pub async fn unpin(
    State(state): State<AppState>,
    auth: Auth,
    Path((key, env)): Path<(String, String)>,
    Query(query): Query<UnpinQuery>,
    headers: HeaderMap,
) -> ApiResult<axum::Json<PinWrite>> {
    auth.require(Access::Write)?;
    let (key, env) = (artifact_path(&key)?, environment_path(&env)?);
    let expected = if_match(&headers)?;
    let reason = text("reason", query.reason)?;
    let write = state.store.pin(&auth.caller(), &key, &env, None, expected, &reason).await?;
    Ok(axum::Json(convert::pin_write(write)))
}

/// Every interval of one environment's pin, newest first: who opened and closed each, and why.
#[utoipa::path(
    get, path = "/api/v1/artifacts/{key}/pins/{env}/history", tag = "pins", security(("token" = [])),
    params(
        ("key" = String, Path, description = "Artifact key, percent-encoded (`/` as `%2F`)", pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128),
        ("env" = String, Path, description = "Environment name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63),
        PageQuery
    ),
    responses((status = 200, body = Page<Pin>), ReadErrors)
)]
pub async fn history(
    State(state): State<AppState>,
    auth: Auth,
    Path((key, env)): Path<(String, String)>,
    Query(query): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Pin>>> {
    auth.require(Access::Read)?;
    let (key, env) = (artifact_path(&key)?, environment_path(&env)?);
    let (limit, cursor) = query.parse()?;
    let before = cursor.as_ref().map(|c| c.before()).transpose()?;
    let page = state.store.pin_history(auth.workspace_id(), &key, &env, before, limit).await?;
    Ok(axum::Json(convert::page(page, convert::pin)))
}

/// What is live in one environment, across artifacts.
#[utoipa::path(
    get, path = "/api/v1/environments/{name}/pins", tag = "pins", security(("token" = [])),
    params(
        ("name" = String, Path, description = "Environment name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)
    ),
    responses((status = 200, body = Page<Pin>), ReadErrors)
)]
pub async fn environment(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Page<Pin>>> {
    auth.require(Access::Read)?;
    let name = environment_path(&name)?;
    let pins = state.store.environment_pins(auth.workspace_id(), &name).await?;
    Ok(axum::Json(convert::all(pins, convert::pin)))
}

/// Pins the version live in `from` to every environment in `to`, atomically. `dry_run` answers
/// the same diff and writes nothing.
#[utoipa::path(
    post, path = "/api/v1/promote", tag = "pins", security(("token" = [])),
    request_body = Promote,
    responses(
        (status = 200, body = Promoted),
        WriteErrors,
        (status = 409, description = "nothing is live in `from`, or a concurrent write moved a pin first", body = ErrorBody)
    )
)]
pub async fn promote(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<Promote>,
) -> ApiResult<axum::Json<Promoted>> {
    auth.require(Access::Write)?;
    let key = field("artifact", cutover_domain::ArtifactKey::parse(&body.artifact))?;
    let from = field("from", EnvironmentName::parse(&body.from))?;
    if body.to.is_empty() {
        return Err(DomainError::invalid("to", "must list at least one environment").into());
    }
    let to = environment_names("to", body.to)?;
    let reason = text("reason", body.reason)?;
    let (version, write) = state.store.promote(&auth.caller(), &key, &from, &to, &reason, body.dry_run).await?;
    let write = convert::pin_write(write);
    Ok(axum::Json(Promoted {
        artifact: key.into_string(),
        version,
        dry_run: body.dry_run,
        revision: write.revision,
        changes: write.changes,
    }))
}
