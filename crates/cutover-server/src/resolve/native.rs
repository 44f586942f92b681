//! `GET /api/v1/resolve/{key}?environment=`: what is live, in Cutover's own JSON.

use axum::extract::State;
use cutover_api::{ErrorBody, Resolved};
use cutover_domain::Access;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::Assignment;
use crate::AppState;
use crate::api::responses::ReadErrors;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::artifact_path;
use crate::extract::{Path, Query};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResolveQuery {
    /// The environment. Required, except that an sdk token (bound to one) may leave it out.
    #[param(required = true, pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)]
    pub environment: Option<String>,
    /// Who is asking: picks the variant when an experiment runs on the artifact here.
    pub targeting_key: Option<String>,
}

/// Which environment a resolve request is about: an sdk token's own, or the one named.
pub fn environment_for(auth: &Auth, named: Option<&str>) -> ApiResult<String> {
    let token = &auth.0.token;
    if token.role == cutover_domain::Role::Sdk {
        let bound = token.environments.first().map(|e| e.name.as_str().to_owned()).unwrap_or_default();
        return match named {
            Some(name) if name != bound => {
                Err(ApiError::forbidden(format!("this sdk token is bound to environment {bound:?}")))
            }
            _ => Ok(bound),
        };
    }
    let name = named.ok_or_else(|| {
        ApiError::bad_request("invalid_query", "name the environment: ?environment=NAME (or use an sdk token)")
    })?;
    auth.require_environment(Access::Resolve, name)?;
    Ok(name.to_owned())
}

/// What is live for an artifact in an environment. `version` and `value` are null when nothing
/// is pinned there.
#[utoipa::path(
    get, path = "/api/v1/resolve/{key}", tag = "resolve", security(("token" = [])),
    params(
        ("key" = String, Path, description = "Artifact key, percent-encoded (`/` as `%2F`)", pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128),
        ResolveQuery
    ),
    responses(
        (status = 200, body = Resolved),
        ReadErrors,
        (status = 400, description = "bad path or query, no environment named, or `targeting_key_missing` while an experiment runs here", body = ErrorBody)
    )
)]
pub async fn resolve(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
    Query(query): Query<ResolveQuery>,
) -> ApiResult<axum::Json<Resolved>> {
    let key = artifact_path(&key)?;
    let environment = environment_for(&auth, query.environment.as_deref())?;
    let targeting_key = query.targeting_key.as_deref().filter(|k| !k.is_empty());
    if let Some(user) = targeting_key {
        cutover_domain::check_targeting_key("targeting_key", user).map_err(|e| {
            ApiError::bad_request("invalid_query", e.to_string()).with_details(json!({"field": "targeting_key"}))
        })?;
    }
    let view = state.resolver.view(auth.workspace_id()).await?;
    if !view.environments.contains(&environment) {
        return Err(ApiError::not_found(format!("environment {environment:?} not found")));
    }
    let value_type = *view
        .artifacts
        .get(key.as_str())
        .ok_or_else(|| ApiError::not_found(format!("artifact {:?} not found", key.as_str())))?;
    let assignment = match view.experiment(&environment, key.as_str()) {
        Some(experiment) => experiment.assign(targeting_key).ok_or_else(|| {
            ApiError::bad_request(
                "targeting_key_missing",
                "an experiment runs on this artifact here: send ?targeting_key= to be assigned a variant",
            )
        })?,
        None => Assignment::Pinned,
    };
    let chosen = match assignment {
        Assignment::Variant { experiment, index } => {
            if let Some(user) = targeting_key {
                state.exposures.record(experiment, user, index);
            }
            Some((experiment, index))
        }
        Assignment::Control { experiment } => Some((experiment, 0)),
        Assignment::Pinned => None,
    };
    let (version, value, experiment, variant) = match chosen {
        Some((experiment, index)) => (
            Some(experiment.version(index)),
            experiment.values.get(index).cloned(),
            Some(experiment.id.to_string()),
            Some(cutover_domain::experiments::variant_key(index)),
        ),
        None => {
            let live = view.get(&environment, key.as_str());
            (live.map(|l| l.version), live.map(|l| l.value.clone()), None, None)
        }
    };
    Ok(axum::Json(Resolved {
        artifact: key.into_string(),
        environment,
        version,
        value,
        value_type: value_type.as_str().to_owned(),
        revision: view.revision,
        experiment,
        variant,
    }))
}
