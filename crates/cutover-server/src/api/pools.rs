//! Warm pools: pools of ready instances of a preset, claims, instances, and the reports of
//! instances' agents. Roles and environment scope as for pins (a protected environment's pools
//! change only by owners or tokens scoped to it); every change audited; another workspace's
//! pools and instances are not found.

use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use cutover_api::{CreatePool, ErrorBody, Pool, PoolAgent, PoolInstance, ReportAgentState, UpdatePool};
use cutover_domain::pools::{
    AgentLifecycle, Blocked, DesiredCount, PoolName, PoolSettings, PresetParameters, Schedule,
};
use cutover_domain::{Access, ArtifactKey, DomainError, EnvironmentName, TokenSecret};
use cutover_store::{NewPool, PoolChanges, PoolStatus, StoreError};

use super::responses::{AuthErrors, ReadErrors, WriteErrors};
use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, field};

fn desired(body: cutover_api::DesiredCount) -> Result<DesiredCount, DomainError> {
    let schedules = body.schedules.into_iter().map(|s| Schedule { cron: s.cron, instances: s.instances }).collect();
    DesiredCount::parse(body.instances, body.timezone.as_deref().unwrap_or("UTC"), schedules)
}

fn wire_desired(d: &DesiredCount) -> cutover_api::DesiredCount {
    cutover_api::DesiredCount {
        instances: d.instances,
        timezone: Some(d.timezone.clone()),
        schedules: d
            .schedules
            .iter()
            .map(|s| cutover_api::PoolSchedule { cron: s.cron.clone(), instances: s.instances })
            .collect(),
    }
}

fn parameters(value: Option<serde_json::Value>) -> Result<Option<PresetParameters>, DomainError> {
    value.map(PresetParameters::parse).transpose()
}

pub(crate) fn pool(
    p: cutover_store::Pool,
    status: Option<(Option<i64>, cutover_api::PoolCounts, Option<Blocked>)>,
) -> Pool {
    let (version, counts, blocked) = match status {
        Some((version, counts, blocked)) => (version, Some(counts), blocked),
        None => (None, None, None),
    };
    Pool {
        name: p.name,
        artifact: p.artifact.into_string(),
        environment: p.environment.into_string(),
        parameters: serde_json::Value::Object(p.parameters.as_map().clone()),
        agents: p.agents,
        executor: p.executor,
        timeout_seconds: p.timeout_seconds,
        desired: wire_desired(&p.desired),
        ttl_seconds: p.settings.ttl_seconds,
        backoff_seconds: p.settings.backoff_seconds,
        failure_limit: p.settings.failure_limit,
        paused: p.paused,
        version,
        counts,
        blocked: blocked.map(|b| match b {
            Blocked::Paused => cutover_api::PoolBlocked { reason: "paused".into(), until: None },
            Blocked::NoVersion => cutover_api::PoolBlocked { reason: "no_version".into(), until: None },
            Blocked::Backoff { until } => {
                cutover_api::PoolBlocked { reason: "backoff".into(), until: Some(until.to_rfc3339()) }
            }
            Blocked::FailureLimit { .. } => cutover_api::PoolBlocked { reason: "failure_limit".into(), until: None },
        }),
        created_at: p.created_at.to_rfc3339(),
        updated_at: p.updated_at.to_rfc3339(),
        created_by: p.created_by.name,
    }
}

fn pool_status(s: PoolStatus) -> Pool {
    let counts = cutover_api::PoolCounts {
        desired: s.counts.desired,
        running: s.counts.running,
        ready: s.counts.ready,
        starting: s.counts.starting,
        expired: s.counts.expired,
        failures: s.failures,
        prewarming: s.counts.prewarming,
    };
    pool(s.pool, Some((s.version, counts, s.blocked)))
}

pub(crate) fn instance(i: cutover_store::PoolInstance) -> PoolInstance {
    PoolInstance {
        id: i.id,
        pool: i.pool,
        version: i.version,
        parameters: i.parameters,
        transition: i.transition.as_str().to_owned(),
        status: i.status.as_str().to_owned(),
        ready: i.ready,
        agents: i.agents,
        agents_ready: i.agents_ready,
        created_at: i.created_at.to_rfc3339(),
        claimed_at: i.claimed_at.map(|t| t.to_rfc3339()),
        claimed_by: i.claimed_by.map(|a| a.name),
        deleted_at: i.deleted_at.map(|t| t.to_rfc3339()),
        builds: None,
        agent_states: None,
    }
}

fn agent(a: cutover_store::PoolAgent) -> PoolAgent {
    PoolAgent { name: a.name, state: a.lifecycle.as_str().to_owned(), updated_at: a.updated_at.to_rfc3339() }
}

fn instance_detail(d: cutover_store::InstanceDetail) -> PoolInstance {
    let builds = d
        .builds
        .into_iter()
        .map(|b| cutover_api::PoolBuild {
            id: b.id,
            number: b.number,
            transition: b.transition.as_str().to_owned(),
            status: b.status.as_str().to_owned(),
            version: b.version,
            idempotency_key: b.idempotency_key,
            attempts: b.attempts,
            error: b.error,
            created_at: b.created_at.to_rfc3339(),
            started_at: b.started_at.map(|t| t.to_rfc3339()),
            ended_at: b.ended_at.map(|t| t.to_rfc3339()),
        })
        .collect();
    PoolInstance {
        builds: Some(builds),
        agent_states: Some(d.agents.into_iter().map(agent).collect()),
        ..instance(d.instance)
    }
}

fn pool_path(name: &str) -> Result<PoolName, ApiError> {
    PoolName::parse(name).map_err(|e| ApiError::bad_request("invalid_path", format!("pool: {e}")))
}

/// The pool named in the path, 404 when the token's scope does not reach its environment.
async fn visible(state: &AppState, auth: &Auth, name: &PoolName) -> ApiResult<PoolStatus> {
    auth.require(Access::Read)?;
    let status = state.store.pool_status(auth.workspace_id(), name.as_str()).await?;
    if auth.authority().may_see(&status.pool.environment).is_err() {
        return Err(ApiError::not_found(format!("pool {:?} not found", name.as_str())));
    }
    Ok(status)
}

/// Creates a pool of ready instances of `artifact` in `environment`, built by the executor the
/// operator declared under `executor` with the version pinned there and `parameters`.
#[utoipa::path(
    post, path = "/api/v1/pools", tag = "pools", security(("token" = [])),
    request_body = CreatePool,
    responses(
        (status = 201, body = Pool),
        WriteErrors,
        (status = 409, description = "a pool of that name exists", body = ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<CreatePool>,
) -> ApiResult<(StatusCode, axum::Json<Pool>)> {
    auth.require(Access::Write)?;
    let name = PoolName::parse(&body.name)?;
    let artifact = field("artifact", ArtifactKey::parse(&body.artifact))?;
    let environment = field("environment", EnvironmentName::parse(&body.environment))?;
    auth.require_environment(Access::Write, environment.as_str())?;
    let declared = state
        .admission
        .executor(&body.executor, &auth.0.workspace.name)
        .map_err(|e| DomainError::invalid("executor", e))?;
    let timeout_seconds = match body.timeout_seconds {
        None => declared.default_timeout(),
        Some(0) => return Err(DomainError::invalid("timeout_seconds", "must be at least 1").into()),
        Some(s) if s > declared.timeout_seconds => {
            return Err(DomainError::invalid(
                "timeout_seconds",
                format!("executor {:?} allows at most {} seconds", body.executor, declared.timeout_seconds),
            )
            .into());
        }
        Some(s) => s,
    };
    let defaults = PoolSettings::default();
    let new = NewPool {
        name,
        artifact,
        environment,
        parameters: parameters(body.parameters)?.unwrap_or_default(),
        agents: body.agents.unwrap_or_default(),
        executor: body.executor,
        timeout_seconds,
        desired: desired(body.desired)?,
        settings: PoolSettings::parse(
            body.ttl_seconds,
            body.backoff_seconds.unwrap_or(defaults.backoff_seconds),
            body.failure_limit.unwrap_or(defaults.failure_limit),
        )?,
    };
    let made = state.store.create_pool(&auth.caller(), &new).await?;
    let status = state.store.pool_status(auth.workspace_id(), &made.name).await?;
    Ok((StatusCode::CREATED, axum::Json(pool_status(status))))
}

/// The workspace's pools the token's scope reaches, by name.
#[utoipa::path(
    get, path = "/api/v1/pools", tag = "pools", security(("token" = [])),
    responses((status = 200, body = Vec<Pool>), AuthErrors)
)]
pub async fn list(State(state): State<AppState>, auth: Auth) -> ApiResult<axum::Json<Vec<Pool>>> {
    auth.require(Access::Read)?;
    let authority = auth.authority();
    let pools = state.store.list_pools(auth.workspace_id()).await?;
    Ok(axum::Json(
        pools.into_iter().filter(|p| authority.may_see(&p.environment).is_ok()).map(|p| pool(p, None)).collect(),
    ))
}

/// One pool with its counts now: desired, running, ready, starting, expired, failures, and why
/// it creates nothing (paused, nothing pinned, backoff, failure limit).
#[utoipa::path(
    get, path = "/api/v1/pools/{pool}", tag = "pools", security(("token" = [])),
    params(("pool" = String, Path, description = "Pool name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)),
    responses((status = 200, body = Pool), ReadErrors)
)]
pub async fn show(State(state): State<AppState>, auth: Auth, Path(name): Path<String>) -> ApiResult<axum::Json<Pool>> {
    let name = pool_path(&name)?;
    Ok(axum::Json(pool_status(visible(&state, &auth, &name).await?)))
}

/// Changes a pool's parameters (new instances get them; existing ones stay), desired count or
/// settings.
#[utoipa::path(
    patch, path = "/api/v1/pools/{pool}", tag = "pools", security(("token" = [])),
    params(("pool" = String, Path, description = "Pool name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)),
    request_body = UpdatePool,
    responses((status = 200, body = Pool), WriteErrors)
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    Json(body): Json<UpdatePool>,
) -> ApiResult<axum::Json<Pool>> {
    let name = pool_path(&name)?;
    auth.require(Access::Write)?;
    let before = visible(&state, &auth, &name).await?.pool;
    let settings = if body.ttl_seconds.is_some() || body.backoff_seconds.is_some() || body.failure_limit.is_some() {
        Some(PoolSettings::parse(
            body.ttl_seconds.unwrap_or(before.settings.ttl_seconds),
            body.backoff_seconds.unwrap_or(before.settings.backoff_seconds),
            body.failure_limit.unwrap_or(before.settings.failure_limit),
        )?)
    } else {
        None
    };
    let changes = PoolChanges {
        parameters: parameters(body.parameters)?,
        desired: body.desired.map(desired).transpose()?,
        settings,
    };
    state.store.update_pool(&auth.caller(), name.as_str(), &changes).await?;
    Ok(axum::Json(pool_status(state.store.pool_status(auth.workspace_id(), name.as_str()).await?)))
}

/// Deletes a pool: its name is free at once, and the reconciler deletes its instances (claimed
/// instances belong to their claimers and stay).
#[utoipa::path(
    delete, path = "/api/v1/pools/{pool}", tag = "pools", security(("token" = [])),
    params(("pool" = String, Path, description = "Pool name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)),
    responses((status = 204, description = "deleted"), ReadErrors)
)]
pub async fn delete(State(state): State<AppState>, auth: Auth, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let name = pool_path(&name)?;
    auth.require(Access::Write)?;
    visible(&state, &auth, &name).await?;
    state.store.delete_pool(&auth.caller(), name.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_paused(state: &AppState, auth: &Auth, name: &str, paused: bool) -> ApiResult<axum::Json<Pool>> {
    let name = pool_path(name)?;
    auth.require(Access::Write)?;
    visible(state, auth, &name).await?;
    state.store.set_pool_paused(&auth.caller(), name.as_str(), paused).await?;
    Ok(axum::Json(pool_status(state.store.pool_status(auth.workspace_id(), name.as_str()).await?)))
}

/// Pauses a pool: the reconciler creates and deletes nothing until it is resumed; claims still
/// work.
#[utoipa::path(
    post, path = "/api/v1/pools/{pool}/pause", tag = "pools", security(("token" = [])),
    params(("pool" = String, Path, description = "Pool name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)),
    responses((status = 200, body = Pool), ReadErrors)
)]
pub async fn pause(State(state): State<AppState>, auth: Auth, Path(name): Path<String>) -> ApiResult<axum::Json<Pool>> {
    set_paused(&state, &auth, &name, true).await
}

/// Resumes a pool, forgetting earlier failed starts (which lifts the hard failure limit).
#[utoipa::path(
    post, path = "/api/v1/pools/{pool}/resume", tag = "pools", security(("token" = [])),
    params(("pool" = String, Path, description = "Pool name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)),
    responses((status = 200, body = Pool), ReadErrors)
)]
pub async fn resume(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Pool>> {
    set_paused(&state, &auth, &name, false).await
}

/// Hands one ready instance of the pool to the caller, atomically: two claims never get the
/// same instance, and never one the reconciler is deleting. The instance leaves the pool (its
/// owner is now the caller) and the reconciler replaces it.
#[utoipa::path(
    post, path = "/api/v1/pools/{pool}/claim", tag = "pools", security(("token" = [])),
    params(("pool" = String, Path, description = "Pool name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)),
    responses(
        (status = 200, body = PoolInstance),
        ReadErrors,
        (status = 409, description = "no ready instance (`pool_empty`)", body = ErrorBody)
    )
)]
pub async fn claim(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<PoolInstance>> {
    let name = pool_path(&name)?;
    auth.require(Access::Write)?;
    if !auth.0.token.environments.is_empty() {
        // A token limited to some environments does not see the pools of the others.
        let pool = state.store.get_pool(auth.workspace_id(), name.as_str()).await?;
        if auth.authority().may_see(&pool.environment).is_err() {
            return Err(ApiError::not_found(format!("pool {:?} not found", name.as_str())));
        }
    }
    let started = Instant::now();
    let claimed = state.store.claim_pool_instance(&auth.caller(), name.as_str()).await;
    if let Ok(found) = &claimed {
        state.metrics.pools.claim(name.as_str(), found.is_some(), started.elapsed());
    }
    match claimed? {
        Some(detail) => Ok(axum::Json(instance_detail(detail))),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "pool_empty",
            format!("pool {:?} has no ready instance; retry later", name.as_str()),
        )),
    }
}

/// Every live instance the pool owns (starting, running, failing, being deleted), by id.
#[utoipa::path(
    get, path = "/api/v1/pools/{pool}/instances", tag = "pools", security(("token" = [])),
    params(("pool" = String, Path, description = "Pool name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)),
    responses((status = 200, body = Vec<PoolInstance>), ReadErrors)
)]
pub async fn instances(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Vec<PoolInstance>>> {
    let name = pool_path(&name)?;
    visible(&state, &auth, &name).await?;
    let listed = state.store.list_pool_instances(auth.workspace_id(), name.as_str()).await?;
    Ok(axum::Json(listed.into_iter().map(instance).collect()))
}

/// One instance (claimed and deleted ones too) with its builds, newest first, and its agents.
#[utoipa::path(
    get, path = "/api/v1/instances/{id}", tag = "pools", security(("token" = [])),
    params(("id" = String, Path, description = "Instance id")),
    responses((status = 200, body = PoolInstance), ReadErrors)
)]
pub async fn show_instance(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<PoolInstance>> {
    auth.require(Access::Read)?;
    let detail = state.store.get_pool_instance(auth.workspace_id(), &id).await?;
    if auth.authority().may_see(&detail.instance.environment).is_err() {
        return Err(ApiError::not_found(format!("instance {id:?} not found")));
    }
    Ok(axum::Json(instance_detail(detail)))
}

/// Where an instance's agent reports its lifecycle state. Authenticated not by an API token but
/// by the instance's agent token (`Authorization: Bearer <token>`), which the provisioner got in
/// `CUTOVER_AGENT_TOKEN`; it works for this instance only, and stops working when a newer build
/// runs or the instance is deleted. An agent the pool does not list registers with its first
/// report (at most 16 per instance) and counts for readiness from then on; not once the
/// instance is being deleted (404).
#[utoipa::path(
    post, path = "/api/v1/instances/{id}/agents/{name}/state", tag = "pools",
    params(("id" = String, Path, description = "Instance id"),
           ("name" = String, Path, description = "Agent name", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)),
    request_body = ReportAgentState,
    responses(
        (status = 200, body = PoolAgent),
        (status = 400, body = ErrorBody),
        (status = 401, description = "missing token, or not this instance's", body = ErrorBody),
        (status = 404, description = "no such instance, or it is being deleted", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 503, body = ErrorBody)
    )
)]
pub async fn report_agent(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<ReportAgentState>,
) -> ApiResult<axum::Json<PoolAgent>> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .and_then(|(_, token)| TokenSecret::parse(token.trim()))
        .ok_or_else(|| {
            ApiError::unauthorized("missing agent token: send Authorization: Bearer <CUTOVER_AGENT_TOKEN>")
        })?;
    let lifecycle: AgentLifecycle = body.state.parse()?;
    match state.store.report_agent_state(&id, &token.hash(), &name, lifecycle).await {
        Ok(reported) => Ok(axum::Json(agent(reported))),
        Err(StoreError::Forbidden(_)) => Err(ApiError::unauthorized("this token does not report for this instance")),
        Err(e) => Err(e.into()),
    }
}
