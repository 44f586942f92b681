//! An artifact: its versions newest first, where each is live, publishing, pinning and
//! promoting. Writes call the same store methods as the API's handlers, with the session's
//! [`crate::auth::Auth::caller`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use cutover_domain::{Access, ArtifactKey, PageLimit, ValueType, VersionNumber};
use cutover_store::{Artifact, Pin, Publish, StoreError, Version};
use serde_json::Value;

use super::page::{Layout, UiError, key_path, render, when};
use super::session::Session;
use crate::AppState;
use crate::extract::{artifact_path, environment_path, text};

pub struct VersionRow {
    pub number: i64,
    pub message: String,
    pub author: String,
    pub when: String,
    pub sha256: String,
    pub live_in: Vec<String>,
    pub content: String,
}

#[derive(askama::Template)]
#[template(path = "artifact.html")]
struct ArtifactPage {
    layout: Layout,
    path: String,
    artifact: Artifact,
    versions: Vec<VersionRow>,
    pins: Vec<Pin>,
    /// Environments this session may change (pin and promote targets).
    targets: Vec<String>,
    draft: String,
    message: String,
    error: Option<String>,
}

fn shown(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

async fn render_page(
    state: &AppState,
    session: &Session,
    key: &ArtifactKey,
    draft: Option<(String, String, String)>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Read)?;
    let workspace_id = session.auth.workspace_id();
    let artifact = state.store.get_artifact(workspace_id, key).await?;
    let pins: Vec<Pin> = state
        .store
        .list_pins(workspace_id, key)
        .await?
        .into_iter()
        .filter(|p| session.auth.0.may_touch(p.environment.as_str()))
        .collect();
    let page = state.store.list_versions(workspace_id, key, None, PageLimit::default()).await?;
    let versions = page
        .items
        .into_iter()
        .map(|v: Version| VersionRow {
            number: v.number,
            live_in: pins.iter().filter(|p| p.version == v.number).map(|p| p.environment.to_string()).collect(),
            message: v.message,
            author: v.author.name,
            when: when(v.created_at),
            sha256: v.sha256,
            content: shown(v.content.value()),
        })
        .collect();
    let targets = super::matrix::visible_environments(state, session)
        .await?
        .into_iter()
        .map(|e| e.name.as_str().to_owned())
        .filter(|e| session.can_change(e))
        .collect();
    let (status, draft, message, error) = match draft {
        Some((content, message, error)) => (StatusCode::BAD_REQUEST, content, message, Some(error)),
        None => (StatusCode::OK, String::new(), String::new(), None),
    };
    let page = ArtifactPage {
        layout: Layout::new(session, "matrix", key.to_string()),
        path: key_path(key.as_str()),
        artifact,
        versions,
        pins,
        targets,
        draft,
        message,
        error,
    };
    render(status, &page)
}

pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(key): Path<String>,
) -> Result<Response, UiError> {
    let key = artifact_path(&key)?;
    render_page(&state, &session, &key, None).await
}

#[derive(serde::Deserialize)]
pub struct PublishForm {
    content: String,
    #[serde(default)]
    message: String,
}

/// Publishes the next version: text as is for a string artifact, JSON for the other types;
/// a value that does not fit the type shows the form again with the reason and the draft.
pub async fn publish(
    State(state): State<AppState>,
    session: Session,
    Path(key): Path<String>,
    axum::Form(form): axum::Form<PublishForm>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Write)?;
    let key = artifact_path(&key)?;
    let artifact = state.store.get_artifact(session.auth.workspace_id(), &key).await?;
    let content = match artifact.value_type {
        ValueType::String => Ok(Value::String(form.content.clone())),
        _ => serde_json::from_str::<Value>(&form.content).map_err(|e| format!("content is not valid JSON: {e}")),
    };
    let failed = |error: String| (form.content.clone(), form.message.clone(), error);
    let content = match content {
        Ok(content) => content,
        Err(error) => return render_page(&state, &session, &key, Some(failed(error))).await,
    };
    let message = text("message", Some(form.message.clone()))?;
    let publish = Publish { content, message: &message, environments: &[], move_pins: false };
    match state.store.publish_version(&session.auth.caller(), &key, publish).await {
        Ok((version, _)) => {
            Ok(Redirect::to(&format!("/artifacts/{}?published={}", key_path(key.as_str()), version.number))
                .into_response())
        }
        Err(StoreError::Invalid(invalid)) => {
            render_page(&state, &session, &key, Some(failed(invalid.to_string()))).await
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(serde::Deserialize)]
pub struct PinForm {
    env: String,
    version: i64,
    /// The pin's revision when the page was drawn: the write's `If-Match`.
    expected: i64,
    #[serde(default)]
    reason: String,
}

#[derive(askama::Template)]
#[template(path = "stale.html")]
struct StalePage {
    layout: Layout,
    message: String,
    back: String,
}

/// Pins (or rolls back to) a version in one environment, only if its pin is still the one the
/// page showed; otherwise says who changed it meanwhile and writes nothing.
pub async fn pin(
    State(state): State<AppState>,
    session: Session,
    Path(key): Path<String>,
    axum::Form(form): axum::Form<PinForm>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Write)?;
    let (key, env) = (artifact_path(&key)?, environment_path(&form.env)?);
    session.auth.require_environment(Access::Write, env.as_str())?;
    let reason = text("reason", Some(form.reason))?;
    let history = format!("/artifacts/{}/history/{}", key_path(key.as_str()), env.as_str());
    let caller = session.auth.caller();
    match state
        .store
        .pin(&caller, &key, &env, Some(VersionNumber::parse("version", form.version)?), Some(form.expected), &reason)
        .await
    {
        Ok(_) => Ok(Redirect::to(&history).into_response()),
        Err(StoreError::PreconditionFailed { .. }) => {
            let current = state.store.get_pin(session.auth.workspace_id(), &key, &env).await?;
            let message = match current {
                Some(pin) => format!(
                    "{} was changed by {} meanwhile: v{} has been live there since {} ({}). Nothing was written; \
                     look at the history again before deciding.",
                    env.as_str(),
                    pin.started_by.name,
                    pin.version,
                    when(pin.started_at),
                    if pin.reason.is_empty() { "no reason given".to_owned() } else { format!("“{}”", pin.reason) },
                ),
                None => {
                    format!("{} was changed meanwhile: nothing is pinned there now. Nothing was written.", env.as_str())
                }
            };
            let page =
                StalePage { layout: Layout::new(&session, "matrix", "Changed meanwhile"), message, back: history };
            render(StatusCode::PRECONDITION_FAILED, &page)
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(serde::Deserialize)]
pub struct PromoteForm {
    from: String,
    to: String,
    #[serde(default)]
    reason: String,
}

/// Promotes what is live in `from` to `to`, as `POST /api/v1/promote` does.
pub async fn promote(
    State(state): State<AppState>,
    session: Session,
    Path(key): Path<String>,
    axum::Form(form): axum::Form<PromoteForm>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Write)?;
    let key = artifact_path(&key)?;
    let (from, to) = (environment_path(&form.from)?, environment_path(&form.to)?);
    session.auth.require_environment(Access::Write, to.as_str())?;
    let reason = text("reason", Some(form.reason))?;
    let targets = [to.clone()];
    state.store.promote(&session.auth.caller(), &key, &from, &targets, &reason, false).await?;
    Ok(Redirect::to(&format!("/artifacts/{}/history/{}", key_path(key.as_str()), to.as_str())).into_response())
}
