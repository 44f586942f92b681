//! Rollouts: one row each with its progress, and a detail page with the waves × targets grid,
//! each task's state and attempt, and the controls the rollout's state allows. The grid
//! re-fetches itself while the rollout runs.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use cutover_domain::rollouts::{OperationState, RolloutControl};
use cutover_domain::{Access, PageLimit};
use cutover_store::RolloutDetail;

use super::page::{Layout, UiError, key_path, ok, when};
use super::session::Session;
use crate::AppState;
use crate::error::ApiError;

pub struct RolloutRow {
    pub id: String,
    pub artifact: String,
    pub environment: String,
    pub version: i64,
    pub state: String,
    pub done: usize,
    pub total: usize,
    pub created: String,
    pub by: String,
}

#[derive(askama::Template)]
#[template(path = "rollouts.html")]
struct ListPage {
    layout: Layout,
    rollouts: Vec<RolloutRow>,
}

fn finished(detail: &RolloutDetail) -> usize {
    detail.operations.iter().filter(|o| o.state == OperationState::Completed).count()
}

pub async fn list(State(state): State<AppState>, session: Session) -> Result<Response, UiError> {
    session.auth.require(Access::Read)?;
    let workspace_id = session.auth.workspace_id();
    let mut rollouts = Vec::new();
    for rollout in state.store.list_rollouts(workspace_id, None, None, PageLimit::DEFAULT).await? {
        if !session.auth.0.may_touch(&rollout.environment) {
            continue;
        }
        let detail = state.store.get_rollout(workspace_id, &rollout.id).await?;
        rollouts.push(RolloutRow {
            done: finished(&detail),
            total: detail.operations.len(),
            id: rollout.id,
            artifact: rollout.artifact.into_string(),
            environment: rollout.environment.into_string(),
            version: rollout.version.get(),
            state: rollout.state.as_str().to_owned(),
            created: when(rollout.created_at),
            by: rollout.created_by.name,
        });
    }
    ok(&ListPage { layout: Layout::new(&session, "rollouts", "Rollouts"), rollouts })
}

pub struct TaskCell {
    pub step: String,
    pub state: String,
    pub attempts: u32,
    pub error: String,
}

pub struct TargetCell {
    pub target: String,
    pub state: String,
    pub tasks: Vec<TaskCell>,
}

pub struct Wave {
    pub number: u32,
    pub targets: Vec<TargetCell>,
}

pub struct Grid {
    pub id: String,
    pub state: String,
    pub live: bool,
    pub done: usize,
    pub total: usize,
    pub waves: Vec<Wave>,
    pub controls: Vec<&'static str>,
    pub can_change: bool,
    pub csrf: String,
}

#[derive(askama::Template)]
#[template(path = "rollout.html")]
struct DetailPage {
    layout: Layout,
    artifact: String,
    path: String,
    environment: String,
    version: i64,
    by: String,
    created: String,
    grid: Grid,
}

#[derive(askama::Template)]
#[template(path = "rollout_grid.html")]
struct GridFragment {
    grid: Grid,
}

fn grid(session: &Session, detail: &RolloutDetail) -> Grid {
    let mut waves: Vec<Wave> = Vec::new();
    for operation in &detail.operations {
        let cell = TargetCell {
            target: operation.target.clone(),
            state: operation.state.as_str().to_owned(),
            tasks: operation
                .tasks
                .iter()
                .map(|t| TaskCell {
                    step: t.step.clone(),
                    state: t.state.as_str().to_owned(),
                    attempts: t.attempts,
                    error: t.error.clone().unwrap_or_default(),
                })
                .collect(),
        };
        match waves.iter_mut().find(|w| w.number == operation.wave) {
            Some(wave) => wave.targets.push(cell),
            None => waves.push(Wave { number: operation.wave, targets: vec![cell] }),
        }
    }
    waves.sort_by_key(|w| w.number);
    let state = detail.rollout.state;
    Grid {
        id: detail.rollout.id.clone(),
        state: state.as_str().to_owned(),
        live: !state.is_terminal(),
        done: finished(detail),
        total: detail.operations.len(),
        waves,
        controls: RolloutControl::ALL.iter().filter(|c| c.apply(state).is_ok()).map(|c| c.as_str()).collect(),
        can_change: session.can_change(&detail.rollout.environment),
        csrf: session.csrf.clone(),
    }
}

async fn detail(state: &AppState, session: &Session, id: &str) -> Result<RolloutDetail, UiError> {
    session.auth.require(Access::Read)?;
    let detail = state.store.get_rollout(session.auth.workspace_id(), id).await?;
    session.auth.require_environment(Access::Read, &detail.rollout.environment)?;
    Ok(detail)
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let detail = detail(&state, &session, &id).await?;
    let rollout = &detail.rollout;
    ok(&DetailPage {
        layout: Layout::new(
            &session,
            "rollouts",
            format!("Rollout of {} v{} to {}", rollout.artifact, rollout.version, rollout.environment),
        ),
        artifact: rollout.artifact.to_string(),
        path: key_path(rollout.artifact.as_str()),
        environment: rollout.environment.to_string(),
        version: rollout.version.get(),
        by: rollout.created_by.name.clone(),
        created: when(rollout.created_at),
        grid: grid(&session, &detail),
    })
}

pub async fn fragment(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let detail = detail(&state, &session, &id).await?;
    ok(&GridFragment { grid: grid(&session, &detail) })
}

pub async fn control(
    State(state): State<AppState>,
    session: Session,
    Path((id, control)): Path<(String, String)>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Write)?;
    let control: RolloutControl =
        control.parse().map_err(|_| ApiError::not_found(format!("no rollout control {control:?}")))?;
    state.store.rollout_control(&session.auth.caller(), &id, control).await?;
    Ok(Redirect::to(&format!("/rollouts/{id}")).into_response())
}
