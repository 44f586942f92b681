//! The diff between two versions, or of a version against what is live in an environment: a
//! line diff for text, a field diff for JSON (the same as `cutover version diff`). The URL is
//! the share link.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use cutover_domain::diff::{DiffLine, FieldChange, fields, tagged_lines};
use cutover_domain::{Access, VersionNumber};
use serde_json::Value;

use super::page::{Layout, UiError, key_path, ok};
use super::session::Session;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{artifact_path, environment_path};

#[derive(Debug, serde::Deserialize)]
pub struct DiffQuery {
    from: Option<i64>,
    to: Option<i64>,
    env: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "diff.html")]
struct DiffPage {
    layout: Layout,
    path: String,
    from_label: String,
    to_label: String,
    identical: bool,
    lines: Vec<DiffLine>,
    changes: Vec<FieldChange>,
    text: bool,
}

pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(key): Path<String>,
    Query(query): Query<DiffQuery>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Read)?;
    let key = artifact_path(&key)?;
    let workspace_id = session.auth.workspace_id();
    let artifact = state.store.get_artifact(workspace_id, &key).await?;
    let to = query.to.unwrap_or(artifact.latest_version);
    let (from, from_label) = match (&query.env, query.from) {
        (Some(env), None) => {
            let env = environment_path(env)?;
            session.auth.require_environment(Access::Read, env.as_str())?;
            let live = state.store.get_pin(workspace_id, &key, &env).await?.ok_or_else(|| {
                ApiError::not_found(format!("nothing of {} is live in {} to compare with", key.as_str(), env.as_str()))
            })?;
            (live.version, format!("v{} (live in {})", live.version, env.as_str()))
        }
        (None, Some(from)) => (from, format!("v{from}")),
        _ => return Err(ApiError::bad_request("invalid_query", "give from and to, or env and to").into()),
    };
    let old = state.store.get_version(workspace_id, &key, VersionNumber::parse("from", from)?).await?;
    let new = state.store.get_version(workspace_id, &key, VersionNumber::parse("to", to)?).await?;
    let (lines, changes, text) = match (old.content.value(), new.content.value()) {
        (Value::String(before), Value::String(after)) => (tagged_lines(before, after), Vec::new(), true),
        (before, after) => (Vec::new(), fields(before, after), false),
    };
    ok(&DiffPage {
        layout: Layout::new(&session, "matrix", format!("{}: {} → v{}", key.as_str(), from_label, to)),
        path: key_path(key.as_str()),
        from_label,
        to_label: format!("v{to}"),
        identical: old.sha256 == new.sha256,
        lines,
        changes,
        text,
    })
}
