//! Warm pools: one row per pool with its counts, and a pool's page with its live instances and
//! the controls the session's role allows (pause, resume, claim). Pool changes are not workspace
//! revisions, so the live parts re-fetch themselves every few seconds as well as on a change
//! event (a pin move changes the version a pool builds).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use cutover_domain::Access;
use cutover_domain::pools::{Blocked, PoolName};
use cutover_store::{InstanceDetail, PoolStatus};

use super::page::{Layout, UiError, key_path, ok, when};
use super::session::Session;
use crate::AppState;
use crate::error::ApiError;

/// How many instances of a pool the page details (builds, agents); pools are small.
const DETAILED: usize = 100;

pub struct PoolRow {
    pub name: String,
    pub artifact: String,
    pub artifact_path: String,
    pub environment: String,
    pub version: String,
    pub desired: u32,
    pub running: u32,
    pub ready: u32,
    pub starting: u32,
    pub failures: u32,
    pub blocked: String,
    pub paused: bool,
}

fn blocked(b: Option<&Blocked>) -> String {
    match b {
        None => String::new(),
        Some(Blocked::Paused) => "paused".to_owned(),
        Some(Blocked::NoVersion) => "nothing pinned".to_owned(),
        Some(Blocked::Backoff { until }) => format!("backoff until {}", when(*until)),
        Some(Blocked::FailureLimit { failures }) => format!("stopped after {failures} failed starts"),
    }
}

fn row(s: &PoolStatus) -> PoolRow {
    PoolRow {
        name: s.pool.name.clone(),
        artifact: s.pool.artifact.to_string(),
        artifact_path: key_path(s.pool.artifact.as_str()),
        environment: s.pool.environment.to_string(),
        version: s.version.map(|v| format!("v{v}")).unwrap_or_else(|| "—".to_owned()),
        desired: s.counts.desired,
        running: s.counts.running,
        ready: s.counts.ready,
        starting: s.counts.starting,
        failures: s.failures,
        blocked: blocked(s.blocked.as_ref()),
        paused: s.pool.paused,
    }
}

#[derive(askama::Template)]
#[template(path = "pools.html")]
struct ListPage {
    layout: Layout,
    table: PoolsTable,
}

pub struct PoolsTable {
    pub pools: Vec<PoolRow>,
}

#[derive(askama::Template)]
#[template(path = "pools_table.html")]
struct TableFragment {
    table: PoolsTable,
}

async fn visible_pools(state: &AppState, session: &Session) -> Result<PoolsTable, UiError> {
    session.auth.require(Access::Read)?;
    let workspace_id = session.auth.workspace_id();
    let authority = session.auth.authority();
    let mut pools = Vec::new();
    for pool in state.store.list_pools(workspace_id).await? {
        if authority.may_see(&pool.environment).is_err() {
            continue;
        }
        match state.store.pool_status(workspace_id, &pool.name).await {
            Ok(status) => pools.push(row(&status)),
            // Deleted between the two reads.
            Err(cutover_store::StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(PoolsTable { pools })
}

pub async fn list(State(state): State<AppState>, session: Session) -> Result<Response, UiError> {
    let table = visible_pools(&state, &session).await?;
    ok(&ListPage { layout: Layout::new(&session, "pools", "Pools"), table })
}

pub async fn list_fragment(State(state): State<AppState>, session: Session) -> Result<Response, UiError> {
    ok(&TableFragment { table: visible_pools(&state, &session).await? })
}

pub struct InstanceRow {
    pub id: String,
    pub version: String,
    pub state: String,
    pub ready: bool,
    pub builds: String,
    pub agents: String,
    pub created: String,
    pub claimed: String,
}

fn instance_row(detail: Option<&InstanceDetail>, i: &cutover_store::PoolInstance) -> InstanceRow {
    let builds = detail.map_or_else(
        || format!("latest: {} {}", i.transition.as_str(), i.status.as_str()),
        |d| {
            let latest = d.builds.first().map(|b| {
                let error = b.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
                format!(", latest #{} {} {}{error}", b.number, b.transition.as_str(), b.status.as_str())
            });
            format!("{}{}", d.builds.len(), latest.unwrap_or_default())
        },
    );
    let agents = match detail {
        Some(d) if !d.agents.is_empty() => {
            d.agents.iter().map(|a| format!("{} {}", a.name, a.lifecycle.as_str())).collect::<Vec<_>>().join(", ")
        }
        _ if i.agents == 0 => "none".to_owned(),
        _ => format!("{}/{} ready", i.agents_ready, i.agents),
    };
    InstanceRow {
        id: i.id.clone(),
        version: i.version.map(|v| format!("v{v}")).unwrap_or_else(|| "—".to_owned()),
        state: if i.ready { "ready".to_owned() } else { format!("{} {}", i.transition.as_str(), i.status.as_str()) },
        ready: i.ready,
        builds,
        agents,
        created: when(i.created_at),
        claimed: match (&i.claimed_by, i.claimed_at) {
            (Some(by), Some(at)) => format!("{} at {}", by.name, when(at)),
            (Some(by), None) => by.name.clone(),
            _ => String::new(),
        },
    }
}

#[derive(askama::Template)]
#[template(path = "pool.html")]
struct PoolPage {
    layout: Layout,
    claimed: Option<InstanceRow>,
    panel: PoolPanel,
}

pub struct PoolPanel {
    pub pool: PoolRow,
    pub executor: String,
    pub instances: Vec<InstanceRow>,
    pub can_change: bool,
    pub csrf: String,
}

#[derive(askama::Template)]
#[template(path = "pool_panel.html")]
struct PanelFragment {
    panel: PoolPanel,
}

fn pool_name(name: &str) -> Result<PoolName, UiError> {
    PoolName::parse(name).map_err(|e| ApiError::bad_request("invalid_path", format!("pool: {e}")).into())
}

/// The pool, 404 when the session's scope does not reach its environment (as the API).
async fn visible(state: &AppState, session: &Session, name: &PoolName) -> Result<PoolStatus, UiError> {
    session.auth.require(Access::Read)?;
    let status = state.store.pool_status(session.auth.workspace_id(), name.as_str()).await?;
    if session.auth.authority().may_see(&status.pool.environment).is_err() {
        return Err(ApiError::not_found(format!("pool {:?} not found", name.as_str())).into());
    }
    Ok(status)
}

async fn panel(state: &AppState, session: &Session, name: &str) -> Result<PoolPanel, UiError> {
    let name = pool_name(name)?;
    let status = visible(state, session, &name).await?;
    let workspace_id = session.auth.workspace_id();
    let mut instances = Vec::new();
    for (n, instance) in state.store.list_pool_instances(workspace_id, name.as_str()).await?.into_iter().enumerate() {
        let detail = if n < DETAILED {
            // An instance deleted meanwhile shows without its builds.
            state.store.get_pool_instance(workspace_id, &instance.id).await.ok()
        } else {
            None
        };
        instances.push(instance_row(detail.as_ref(), &instance));
    }
    Ok(PoolPanel {
        executor: status.pool.executor.clone(),
        can_change: session.can_change(&status.pool.environment),
        csrf: session.csrf.clone(),
        pool: row(&status),
        instances,
    })
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ShowQuery {
    /// The instance this browser has just claimed, shown above the pool.
    claimed: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Result<Response, UiError> {
    let panel = panel(&state, &session, &name).await?;
    let claimed = match query.claimed {
        Some(id) => {
            let detail = state.store.get_pool_instance(session.auth.workspace_id(), &id).await?;
            if session.auth.authority().may_see(&detail.instance.environment).is_err() {
                return Err(ApiError::not_found(format!("instance {id:?} not found")).into());
            }
            Some(instance_row(Some(&detail), &detail.instance))
        }
        None => None,
    };
    ok(&PoolPage { layout: Layout::new(&session, "pools", format!("Pool {}", panel.pool.name)), claimed, panel })
}

pub async fn fragment(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    ok(&PanelFragment { panel: panel(&state, &session, &name).await? })
}

/// Pause, resume or claim, with the API's checks: write role, the pool visible to the scope,
/// protection checked by the store.
pub async fn control(
    State(state): State<AppState>,
    session: Session,
    Path((name, control)): Path<(String, String)>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Write)?;
    let name = pool_name(&name)?;
    visible(&state, &session, &name).await?;
    let caller = session.auth.caller();
    let path = format!("/pools/{}", name.as_str());
    match control.as_str() {
        "pause" | "resume" => {
            state.store.set_pool_paused(&caller, name.as_str(), control == "pause").await?;
            Ok(Redirect::to(&path).into_response())
        }
        "claim" => match claim(&state, &caller, &name).await? {
            Some(detail) => Ok(Redirect::to(&format!("{path}?claimed={}", detail.instance.id)).into_response()),
            None => Err(ApiError::new(
                StatusCode::CONFLICT,
                "pool_empty",
                format!("pool {:?} has no ready instance; retry later", name.as_str()),
            )
            .into()),
        },
        other => Err(ApiError::not_found(format!("no pool control {other:?}")).into()),
    }
}

/// Claims as the API does, counted in the same metrics.
async fn claim(
    state: &AppState,
    caller: &cutover_store::Caller,
    name: &PoolName,
) -> Result<Option<InstanceDetail>, UiError> {
    let started = std::time::Instant::now();
    let claimed = state.store.claim_pool_instance(caller, name.as_str()).await?;
    state.metrics.pools.claim(name.as_str(), claimed.is_some(), started.elapsed());
    Ok(claimed)
}
