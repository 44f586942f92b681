//! The submit queue: one row per queue with its counts, a queue's page with its settings, live
//! and recent requests, active batches and running checks, the controls the session's role
//! allows (pause, resume, cancel, and for a manual queue pass or fail a running check) and a
//! form to submit a change; and one request's page with its changes and history. Queue changes
//! are not workspace revisions (they wake the engine, not the change stream), so the live parts
//! re-fetch themselves every few seconds as well as on a change event.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use cutover_domain::queue::{Lane, QueueName, RequestState};
use cutover_domain::rollouts::ExecutorSpec;
use cutover_domain::{Access, ArtifactKey, ValueType};
use cutover_store::{ChangeRequest, NewChangeRequest, QueueStatus, RequestChange, StoreError};
use serde_json::Value;

use super::page::{Layout, UiError, key_path, ok, render, when};
use super::session::Session;
use crate::AppState;
use crate::error::ApiError;

/// How many requests of each kind (live, recent) a queue's page lists.
const LISTED: u32 = 50;

pub struct QueueRow {
    pub name: String,
    pub environment: String,
    pub executor: String,
    pub manual: bool,
    pub depth: u64,
    pub active_batches: u64,
    pub running_checks: usize,
    pub landed: u64,
    pub paused: bool,
}

fn executor(spec: &ExecutorSpec) -> String {
    match spec {
        ExecutorSpec::Command { executor, timeout_seconds } => format!("command {executor} ({timeout_seconds} s)"),
        ExecutorSpec::Webhook { url, .. } => format!("webhook {url}"),
        ExecutorSpec::Manual {} => "manual (a person reports each check)".to_owned(),
    }
}

fn row(s: &QueueStatus) -> QueueRow {
    QueueRow {
        name: s.queue.name.clone(),
        environment: s.queue.environment.to_string(),
        executor: executor(&s.queue.executor),
        manual: matches!(s.queue.executor, ExecutorSpec::Manual {}),
        depth: s.depth,
        active_batches: s.active_batches,
        running_checks: s.running_checks.len(),
        landed: s.landed,
        paused: s.queue.paused,
    }
}

#[derive(askama::Template)]
#[template(path = "queues.html")]
struct ListPage {
    layout: Layout,
    table: QueuesTable,
}

pub struct QueuesTable {
    pub queues: Vec<QueueRow>,
}

#[derive(askama::Template)]
#[template(path = "queues_table.html")]
struct TableFragment {
    table: QueuesTable,
}

async fn visible_queues(state: &AppState, session: &Session) -> Result<QueuesTable, UiError> {
    session.auth.require(Access::Read)?;
    let authority = session.auth.authority();
    let queues = state.store.list_queues(session.auth.workspace_id()).await?;
    Ok(QueuesTable {
        queues: queues.iter().filter(|q| authority.may_see(&q.queue.environment).is_ok()).map(row).collect(),
    })
}

pub async fn list(State(state): State<AppState>, session: Session) -> Result<Response, UiError> {
    let table = visible_queues(&state, &session).await?;
    ok(&ListPage { layout: Layout::new(&session, "queue", "Queues"), table })
}

pub async fn list_fragment(State(state): State<AppState>, session: Session) -> Result<Response, UiError> {
    ok(&TableFragment { table: visible_queues(&state, &session).await? })
}

pub struct RequestRow {
    pub id: u64,
    pub state: String,
    pub lane: String,
    pub artifacts: String,
    pub author: String,
    pub message: String,
    /// The first line of the error of a refused request.
    pub error: String,
    pub updated: String,
}

fn lane(lane: Lane) -> &'static str {
    match lane {
        Lane::Hotfix => "hotfix",
        Lane::Normal => "normal",
    }
}

fn request_row(r: &ChangeRequest) -> RequestRow {
    RequestRow {
        id: r.id,
        state: r.state.as_str().to_owned(),
        lane: lane(r.lane).to_owned(),
        artifacts: r.changes.iter().map(|c| c.artifact.as_str()).collect::<Vec<_>>().join(", "),
        author: r.author.name.clone(),
        message: r.message.clone(),
        error: r.error.as_deref().and_then(|e| e.lines().next()).unwrap_or_default().to_owned(),
        updated: when(r.updated_at),
    }
}

pub struct BatchRow {
    pub id: u64,
    pub state: String,
    pub lane: String,
    pub requests: String,
    pub suspect: bool,
}

pub struct CheckRow {
    pub id: u64,
    pub batch: u64,
    pub attempt: u32,
    pub started: String,
}

pub struct QueuePanel {
    pub queue: QueueRow,
    pub settings: String,
    pub counts: String,
    pub created: String,
    pub live: Vec<RequestRow>,
    pub recent: Vec<RequestRow>,
    pub batches: Vec<BatchRow>,
    pub checks: Vec<CheckRow>,
    pub can_change: bool,
    pub csrf: String,
}

#[derive(askama::Template)]
#[template(path = "queue_panel.html")]
struct PanelFragment {
    panel: QueuePanel,
}

/// What the submit form holds: the artifacts to choose from, and a refused draft.
pub struct SubmitForm {
    pub artifacts: Vec<String>,
    pub artifact: String,
    pub content: String,
    pub message: String,
    pub hotfix: bool,
    pub error: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "queue.html")]
struct QueuePage {
    layout: Layout,
    panel: QueuePanel,
    form: SubmitForm,
}

/// `1 check`, `2 checks`, `1 batch`, `2 batches`, `1 retry`, `0 retries`.
fn plural(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ if noun.ends_with("ch") => format!("{n} {noun}es"),
        _ if noun.ends_with('y') => format!("{n} {}ies", &noun[..noun.len() - 1]),
        _ => format!("{n} {noun}s"),
    }
}

fn queue_name(name: &str) -> Result<QueueName, UiError> {
    QueueName::parse(name).map_err(|e| ApiError::bad_request("invalid_path", format!("queue: {e}")).into())
}

/// The queue, 404 when the session's scope does not reach its environment (as the API).
async fn visible(state: &AppState, session: &Session, name: &QueueName) -> Result<QueueStatus, UiError> {
    session.auth.require(Access::Read)?;
    let status = state.store.get_queue(session.auth.workspace_id(), name.as_str()).await?;
    if session.auth.authority().may_see(&status.queue.environment).is_err() {
        return Err(ApiError::not_found(format!("queue {:?} not found", name.as_str())).into());
    }
    Ok(status)
}

async fn panel(state: &AppState, session: &Session, name: &QueueName) -> Result<QueuePanel, UiError> {
    let status = visible(state, session, name).await?;
    let workspace_id = session.auth.workspace_id();
    let live = state.store.list_change_requests(workspace_id, name.as_str(), true, LISTED).await?;
    // The newest requests, the live ones left out (they are listed above).
    let all = state.store.list_change_requests(workspace_id, name.as_str(), false, LISTED).await?;
    let batches = state.store.list_queue_batches(workspace_id, name.as_str(), true, LISTED).await?;
    let settings = &status.queue.settings;
    Ok(QueuePanel {
        settings: format!(
            "{} at once, batches of at most {}, waits at most {} s for a batch to fill, {} on a failure \
             that may be a flake",
            plural(u64::from(settings.budget), "check"),
            settings.max_batch_size,
            settings.max_wait_seconds,
            plural(u64::from(settings.max_flake_retries), "retry"),
        ),
        counts: format!(
            "{} in the queue, {}, {}, {} landed",
            plural(status.depth, "live request"),
            plural(status.active_batches, "active batch"),
            plural(status.running_checks.len() as u64, "running check"),
            status.landed,
        ),
        created: format!("{} by {}", when(status.queue.created_at), status.queue.created_by.name),
        live: live.iter().map(request_row).collect(),
        recent: all.iter().filter(|r| r.state.is_terminal()).map(request_row).collect(),
        batches: batches
            .into_iter()
            .map(|b| BatchRow {
                id: b.id,
                state: b.state.as_str().to_owned(),
                lane: lane(b.position.lane).to_owned(),
                requests: b.requests.iter().map(|r| format!("#{r}")).collect::<Vec<_>>().join(", "),
                suspect: b.suspect,
            })
            .collect(),
        checks: status
            .running_checks
            .iter()
            .map(|c| CheckRow { id: c.id, batch: c.batch, attempt: c.attempt, started: when(c.started_at) })
            .collect(),
        can_change: session.can_change(&status.queue.environment),
        csrf: session.csrf.clone(),
        queue: row(&status),
    })
}

async fn artifact_keys(state: &AppState, session: &Session) -> Result<Vec<String>, UiError> {
    let all = super::matrix::all_artifacts(&state.store, session.auth.workspace_id()).await?;
    Ok(all.into_iter().map(|a| a.key.to_string()).collect())
}

async fn render_page(
    state: &AppState,
    session: &Session,
    name: &str,
    draft: Option<SubmitForm>,
) -> Result<Response, UiError> {
    let name = queue_name(name)?;
    let panel = panel(state, session, &name).await?;
    let artifacts = if panel.can_change { artifact_keys(state, session).await? } else { Vec::new() };
    let (status, form) = match draft {
        Some(form) => (StatusCode::BAD_REQUEST, SubmitForm { artifacts, ..form }),
        None => (
            StatusCode::OK,
            SubmitForm {
                artifacts,
                artifact: String::new(),
                content: String::new(),
                message: String::new(),
                hotfix: false,
                error: None,
            },
        ),
    };
    let page = QueuePage { layout: Layout::new(session, "queue", format!("Queue {}", name.as_str())), panel, form };
    render(status, &page)
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    render_page(&state, &session, &name, None).await
}

pub async fn fragment(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    let name = queue_name(&name)?;
    ok(&PanelFragment { panel: panel(&state, &session, &name).await? })
}

#[derive(serde::Deserialize)]
pub struct SubmitFields {
    #[serde(default)]
    artifact: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    message: String,
    /// A checkbox: present (any value) when ticked.
    hotfix: Option<String>,
}

/// Submits a change request for one artifact: text as is for a string artifact, JSON for the
/// other types. Content the artifact refuses, or a bad message, shows the form again with the
/// reason and the draft; nothing is written.
pub async fn submit(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<SubmitFields>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Write)?;
    let queue = queue_name(&name)?;
    visible(&state, &session, &queue).await?;
    let failed = |error: String| SubmitForm {
        artifacts: Vec::new(),
        artifact: form.artifact.clone(),
        content: form.content.clone(),
        message: form.message.clone(),
        hotfix: form.hotfix.is_some(),
        error: Some(error),
    };
    let key = match ArtifactKey::parse(&form.artifact) {
        Ok(key) => key,
        Err(e) => return render_page(&state, &session, &name, Some(failed(format!("artifact: {e}")))).await,
    };
    let artifact = match state.store.get_artifact(session.auth.workspace_id(), &key).await {
        Ok(artifact) => artifact,
        Err(StoreError::NotFound(what)) => {
            return render_page(&state, &session, &name, Some(failed(format!("{what} not found")))).await;
        }
        Err(other) => return Err(other.into()),
    };
    let content = match artifact.value_type {
        ValueType::String => Value::String(form.content.clone()),
        _ => match serde_json::from_str::<Value>(&form.content) {
            Ok(content) => content,
            Err(e) => {
                let error = format!("content is not valid JSON: {e}");
                return render_page(&state, &session, &name, Some(failed(error))).await;
            }
        },
    };
    let new = NewChangeRequest {
        changes: vec![RequestChange { artifact: key, content }],
        message: form.message.clone(),
        hotfix: form.hotfix.is_some(),
    };
    match state.store.submit_change_request(&session.auth.caller(), queue.as_str(), &new).await {
        Ok(made) => Ok(Redirect::to(&format!("/queues/{}/requests/{}", queue.as_str(), made.id)).into_response()),
        Err(StoreError::Invalid(invalid)) => {
            render_page(&state, &session, &name, Some(failed(invalid.to_string()))).await
        }
        Err(other) => Err(other.into()),
    }
}

/// Pause or resume, with the API's checks: write role, the queue visible to the scope, the
/// right to change its environment checked by the store.
pub async fn control(
    State(state): State<AppState>,
    session: Session,
    Path((name, control)): Path<(String, String)>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Write)?;
    let name = queue_name(&name)?;
    visible(&state, &session, &name).await?;
    let paused = match control.as_str() {
        "pause" => true,
        "resume" => false,
        other => return Err(ApiError::not_found(format!("no queue control {other:?}")).into()),
    };
    state.store.set_queue_paused(&session.auth.caller(), name.as_str(), paused).await?;
    Ok(Redirect::to(&format!("/queues/{}", name.as_str())).into_response())
}

/// Asks to cancel a live request, as `POST /api/v1/queues/{queue}/requests/{id}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    session: Session,
    Path((name, id)): Path<(String, u64)>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Write)?;
    let name = queue_name(&name)?;
    visible(&state, &session, &name).await?;
    state.store.cancel_change_request(&session.auth.caller(), name.as_str(), id).await?;
    Ok(Redirect::to(&format!("/queues/{}/requests/{id}", name.as_str())).into_response())
}

#[derive(Default, serde::Deserialize)]
pub struct ReportFields {
    #[serde(default)]
    output: String,
}

/// A person's result for a running check of a manual queue, with the API's checks.
pub async fn report(
    State(state): State<AppState>,
    session: Session,
    Path((name, check, result)): Path<(String, u64, String)>,
    axum::Form(form): axum::Form<ReportFields>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Write)?;
    let name = queue_name(&name)?;
    let passed = match result.as_str() {
        "pass" => true,
        "fail" => false,
        other => return Err(ApiError::not_found(format!("no check result {other:?}")).into()),
    };
    let status = visible(&state, &session, &name).await?;
    session.auth.require_environment(Access::Write, status.queue.environment.as_str())?;
    if !matches!(status.queue.executor, ExecutorSpec::Manual {}) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_manual",
            format!(
                "queue {:?} runs its checks with a command executor; only manual checks are reported",
                name.as_str()
            ),
        )
        .into());
    }
    crate::api::queues::check_output(&form.output).map_err(ApiError::from)?;
    if !state.store.finish_queue_check(&status.queue.id, check, None, passed, &form.output).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "check_not_running",
            format!("check {check} of queue {:?} is not running (finished, abandoned, or unknown)", name.as_str()),
        )
        .into());
    }
    Ok(Redirect::to(&format!("/queues/{}", name.as_str())).into_response())
}

pub struct ChangeRow {
    pub artifact: String,
    pub artifact_path: String,
    pub content: String,
}

pub struct TransitionRow {
    pub at: String,
    pub from: String,
    pub to: String,
    pub by: String,
    pub why: String,
}

pub struct LandedRow {
    pub artifact: String,
    pub artifact_path: String,
    pub version: i64,
}

pub struct RequestPanel {
    pub queue: String,
    pub request: RequestRow,
    pub created: String,
    pub landed_at: String,
    pub error: String,
    pub changes: Vec<ChangeRow>,
    pub history: Vec<TransitionRow>,
    pub landed: Vec<LandedRow>,
    pub can_cancel: bool,
    pub csrf: String,
}

#[derive(askama::Template)]
#[template(path = "queue_request.html")]
struct RequestPage {
    layout: Layout,
    panel: RequestPanel,
}

#[derive(askama::Template)]
#[template(path = "queue_request_panel.html")]
struct RequestFragment {
    panel: RequestPanel,
}

fn shown(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

async fn request_panel(state: &AppState, session: &Session, name: &str, id: u64) -> Result<RequestPanel, UiError> {
    let name = queue_name(name)?;
    let status = visible(state, session, &name).await?;
    let r = state.store.get_change_request(session.auth.workspace_id(), name.as_str(), id).await?;
    Ok(RequestPanel {
        queue: name.as_str().to_owned(),
        created: when(r.created_at),
        landed_at: r.landed_at.map(when).unwrap_or_default(),
        error: r.error.clone().unwrap_or_default(),
        changes: r
            .changes
            .iter()
            .map(|c| ChangeRow {
                artifact: c.artifact.to_string(),
                artifact_path: key_path(c.artifact.as_str()),
                content: shown(&c.content),
            })
            .collect(),
        history: r
            .history
            .iter()
            .map(|t| TransitionRow {
                at: when(t.at),
                from: t.from.map(RequestState::as_str).unwrap_or("—").to_owned(),
                to: t.to.as_str().to_owned(),
                by: t.actor.clone(),
                why: t.reason.clone(),
            })
            .collect(),
        landed: r
            .landed_versions
            .iter()
            .flatten()
            .map(|(key, version)| LandedRow { artifact: key.clone(), artifact_path: key_path(key), version: *version })
            .collect(),
        can_cancel: !r.state.is_terminal()
            && r.state != RequestState::Cancelling
            && session.can_change(&status.queue.environment),
        csrf: session.csrf.clone(),
        request: request_row(&r),
    })
}

pub async fn request(
    State(state): State<AppState>,
    session: Session,
    Path((name, id)): Path<(String, u64)>,
) -> Result<Response, UiError> {
    let panel = request_panel(&state, &session, &name, id).await?;
    let title = format!("Request #{} in {}", panel.request.id, panel.queue);
    ok(&RequestPage { layout: Layout::new(&session, "queue", title), panel })
}

pub async fn request_fragment(
    State(state): State<AppState>,
    session: Session,
    Path((name, id)): Path<(String, u64)>,
) -> Result<Response, UiError> {
    ok(&RequestFragment { panel: request_panel(&state, &session, &name, id).await? })
}
