//! What a change will do before it is made: per environment, the version and the OFREP answer
//! clients get now and will get after, and the equivalent CLI command. Confirming posts the
//! write with the revision the preview saw.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use cutover_domain::{Access, VersionNumber};

use super::page::{Layout, UiError, key_path, ok};
use super::session::Session;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{artifact_path, environment_path};

#[derive(Debug, serde::Deserialize)]
pub struct PreviewQuery {
    /// Make `version` live in `env`.
    env: Option<String>,
    version: Option<i64>,
    /// Or promote what is live in `from` to `to`.
    from: Option<String>,
    to: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "preview.html")]
struct PreviewPage {
    layout: Layout,
    path: String,
    env: String,
    from: Option<String>,
    version: i64,
    before_version: Option<i64>,
    before: String,
    after: String,
    expected: i64,
    command: String,
}

pub(super) fn pretty(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_default()
}

pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(key): Path<String>,
    Query(query): Query<PreviewQuery>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Write)?;
    let key = artifact_path(&key)?;
    let workspace_id = session.auth.workspace_id();
    let (env, from, version) = match (&query.env, query.version, &query.from, &query.to) {
        (Some(env), Some(version), None, None) => (environment_path(env)?, None, version),
        (None, None, Some(from), Some(to)) => {
            let from = environment_path(from)?;
            session.auth.require_environment(Access::Read, from.as_str())?;
            let live = state.store.get_pin(workspace_id, &key, &from).await?.ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "conflict",
                    format!("nothing is live in {} to promote", from.as_str()),
                )
            })?;
            (environment_path(to)?, Some(from.as_str().to_owned()), live.version)
        }
        _ => return Err(ApiError::bad_request("invalid_query", "give env and version, or from and to").into()),
    };
    session.auth.require_environment(Access::Write, env.as_str())?;
    let target = state.store.get_version(workspace_id, &key, VersionNumber::parse("version", version)?).await?;
    let view = state.resolver.view(workspace_id).await?;
    let live = view.get(env.as_str(), key.as_str());
    let current = state.store.get_pin(workspace_id, &key, &env).await?;
    let after = crate::resolve::ofrep::encode_static(
        key.as_str(),
        env.as_str(),
        version,
        target.content.value(),
        view.revision + 1,
    );
    let command = match &from {
        Some(from) => format!("cutover promote {} --from {from} --to {}", key.as_str(), env.as_str()),
        None => format!(
            "cutover pin {} {} {version} --if-match {}",
            key.as_str(),
            env.as_str(),
            current.as_ref().map_or(0, |p| p.revision)
        ),
    };
    ok(&PreviewPage {
        layout: Layout::new(&session, "matrix", format!("Preview: v{version} of {} in {}", key.as_str(), env.as_str())),
        path: key_path(key.as_str()),
        env: env.as_str().to_owned(),
        from,
        version,
        before_version: live.map(|l| l.version),
        before: live.map(|l| pretty(&l.ofrep)).unwrap_or_else(|| "FLAG_NOT_FOUND: nothing is live here".to_owned()),
        after: pretty(&after),
        expected: current.map_or(0, |p| p.revision),
        command,
    })
}
