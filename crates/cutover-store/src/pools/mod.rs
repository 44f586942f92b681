//! Warm pools: pools, their presets, instances, builds, agents and the instances' agent tokens.
//! What the rows mean (phases, the reconciler's plan) is the domain's (`cutover_domain::pools`).
//!
//! - this file: pools (create, read, change, pause, delete) and their records;
//! - `instances.rs`: the running-instances query (one set-based query), claims, instance
//!   details and agents' reports;
//! - `engine.rs`: the reconciler's snapshot and its writes (instances, builds, deletes).

use cutover_domain::pools::{DesiredCount, PoolCounts, PoolName, PoolSettings, PresetParameters};
use cutover_domain::{ArtifactKey, AuditObject, EnvironmentName, Timestamp};
use serde::Serialize;

use crate::audit::{Change, record};
use crate::db::{Conn, new_id, q, read, transaction};
use crate::{Actor, Caller, Result, Store, StoreError, artifacts, environments};

mod engine;
mod instances;

pub use engine::{BuildOutcome, BuildRun, OpenBuild, PoolWork};
pub use instances::{InstanceDetail, PoolAgent, PoolBuild, PoolInstance};

/// Most agents one instance reports for.
pub const MAX_AGENTS: usize = 16;

/// What creating a pool takes, parsed.
#[derive(Debug, Clone)]
pub struct NewPool {
    pub name: PoolName,
    pub artifact: ArtifactKey,
    pub environment: EnvironmentName,
    pub parameters: PresetParameters,
    /// Agent names each instance reports for (readiness waits for all of them).
    pub agents: Vec<String>,
    /// A command executor the operator declared: the provisioner.
    pub executor: String,
    pub timeout_seconds: u32,
    pub desired: DesiredCount,
    pub settings: PoolSettings,
}

/// Changes to a pool; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct PoolChanges {
    pub parameters: Option<PresetParameters>,
    pub desired: Option<DesiredCount>,
    pub settings: Option<PoolSettings>,
}

/// A pool as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Pool {
    pub id: String,
    pub name: String,
    pub artifact: ArtifactKey,
    pub environment: EnvironmentName,
    pub parameters: PresetParameters,
    pub agents: Vec<String>,
    pub executor: String,
    pub timeout_seconds: u32,
    pub desired: DesiredCount,
    pub settings: PoolSettings,
    pub paused: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
    pub created_by: Actor,
    #[serde(skip)]
    pub workspace_id: String,
    #[serde(skip)]
    pub failures_reset_at: Timestamp,
}

/// A pool with what its instances count now, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    #[serde(flatten)]
    pub pool: Pool,
    /// The version pinned to the pool's environment (what new instances get).
    pub version: Option<i64>,
    pub counts: PoolCounts,
    /// Failed starts in a row of the current version.
    pub failures: u32,
    /// Why the pool creates nothing now, if so.
    pub blocked: Option<cutover_domain::pools::Blocked>,
}

#[derive(sqlx::FromRow)]
struct PoolRow {
    id: String,
    workspace_id: String,
    name: String,
    artifact: String,
    environment: String,
    parameters: String,
    agents: String,
    executor: String,
    timeout_seconds: i32,
    desired: String,
    ttl_seconds: Option<i32>,
    backoff_seconds: i32,
    failure_limit: i32,
    paused: bool,
    failures_reset_at: i64,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    created_by_token_id: Option<String>,
    created_by_name: String,
}

const SELECT_POOLS: &str =
    "SELECT p.id, p.workspace_id, p.name, a.key AS artifact, e.name AS environment, p.parameters,
        p.agents, p.executor, p.timeout_seconds, p.desired, p.ttl_seconds, p.backoff_seconds, p.failure_limit,
        p.paused, p.failures_reset_at, p.created_at, p.updated_at, p.deleted_at, p.created_by_token_id,
        p.created_by_name
     FROM pools p JOIN artifacts a ON a.id = p.artifact_id JOIN environments e ON e.id = p.environment_id";

pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn unsigned(n: i32) -> Result<u32> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{n} stored where a count belongs")))
}

impl TryFrom<PoolRow> for Pool {
    type Error = StoreError;

    fn try_from(row: PoolRow) -> Result<Self> {
        let settings = PoolSettings::parse(
            row.ttl_seconds.map(unsigned).transpose()?,
            unsigned(row.backoff_seconds)?,
            unsigned(row.failure_limit)?,
        )
        .map_err(corrupt)?;
        Ok(Pool {
            id: row.id,
            name: row.name,
            artifact: crate::stored_key(&row.artifact)?,
            environment: crate::stored_environment(&row.environment)?,
            parameters: PresetParameters::parse(serde_json::from_str(&row.parameters)?).map_err(corrupt)?,
            agents: serde_json::from_str(&row.agents)?,
            executor: row.executor,
            timeout_seconds: unsigned(row.timeout_seconds)?,
            desired: serde_json::from_str(&row.desired)?,
            settings,
            paused: row.paused,
            created_at: Timestamp::from_micros(row.created_at),
            updated_at: Timestamp::from_micros(row.updated_at),
            deleted_at: row.deleted_at.map(Timestamp::from_micros),
            created_by: Actor { token_id: row.created_by_token_id.unwrap_or_default(), name: row.created_by_name },
            workspace_id: row.workspace_id,
            failures_reset_at: Timestamp::from_micros(row.failures_reset_at),
        })
    }
}

/// A live (not deleted) pool of the workspace, by name.
pub(crate) async fn fetch(conn: &mut Conn<'_>, workspace_id: &str, name: &str) -> Result<Pool> {
    let row: Option<PoolRow> = q!(
        conn,
        fetch_optional,
        sqlx::query_as(&format!("{SELECT_POOLS} WHERE p.workspace_id = $1 AND p.name = $2 AND p.deleted_at IS NULL"))
            .bind(workspace_id)
            .bind(name)
    )?;
    row.ok_or_else(|| StoreError::NotFound(format!("pool {name:?}")))?.try_into()
}

/// A pool by id, deleted or not, whatever its workspace: for the engine.
pub(crate) async fn fetch_by_id(conn: &mut Conn<'_>, id: &str) -> Result<Pool> {
    let row: Option<PoolRow> =
        q!(conn, fetch_optional, sqlx::query_as(&format!("{SELECT_POOLS} WHERE p.id = $1")).bind(id))?;
    row.ok_or_else(|| StoreError::NotFound(format!("pool {id:?}")))?.try_into()
}

/// The environment of `pool`, checked against the caller's authority (as pins are).
async fn authorize(conn: &mut Conn<'_>, caller: &Caller, environment: &EnvironmentName) -> Result<()> {
    let environment = environments::fetch(conn, &caller.workspace_id, environment).await?;
    match crate::refuses(&caller.authority, &environment) {
        Some(why) => Err(StoreError::Forbidden(why)),
        None => Ok(()),
    }
}

fn check_agents(agents: &[String]) -> Result<()> {
    if agents.len() > MAX_AGENTS {
        return Err(cutover_domain::DomainError::invalid("agents", format!("at most {MAX_AGENTS} agents")).into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for agent in agents {
        cutover_domain::rollouts::check_executor_name("agents", agent)?;
        if !seen.insert(agent) {
            return Err(cutover_domain::DomainError::invalid("agents", format!("{agent:?} is listed twice")).into());
        }
    }
    Ok(())
}

impl Store {
    /// Creates a pool of `artifact` in `environment`. The caller must be allowed to change the
    /// environment (a protected one: owners or tokens scoped to it). A taken name is a 409.
    pub async fn create_pool(&self, caller: &Caller, new: &NewPool) -> Result<Pool> {
        check_agents(&new.agents)?;
        let workspace_id = caller.workspace_id.as_str();
        transaction!(self, |tx| {
            tx.effects.engine();
            let artifact = artifacts::fetch_writable(tx, workspace_id, &new.artifact).await?;
            authorize(tx, caller, &new.environment).await?;
            let environment = environments::fetch(tx, workspace_id, &new.environment).await?;
            if fetch(tx, workspace_id, new.name.as_str()).await.is_ok() {
                return Err(StoreError::conflict(format!("a pool named {:?} already exists", new.name.as_str())));
            }
            let id = new_id();
            let now = Timestamp::now().as_micros();
            q!(
                tx,
                execute,
                sqlx::query(
                    "INSERT INTO pools (id, workspace_id, name, artifact_id, environment_id, parameters, agents, executor,
                         timeout_seconds, desired, ttl_seconds, backoff_seconds, failure_limit, paused,
                         failures_reset_at, created_at, updated_at, created_by_token_id, created_by_name)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, FALSE, $14, $14, $14, $15, $16)"
                )
                .bind(&id)
                .bind(workspace_id)
                .bind(new.name.as_str())
                .bind(&artifact.id)
                .bind(&environment.id)
                .bind(serde_json::to_string(&new.parameters)?)
                .bind(serde_json::to_string(&new.agents)?)
                .bind(&new.executor)
                .bind(i32::try_from(new.timeout_seconds).unwrap_or(i32::MAX))
                .bind(serde_json::to_string(&new.desired)?)
                .bind(new.settings.ttl_seconds.map(|t| i32::try_from(t).unwrap_or(i32::MAX)))
                .bind(i32::try_from(new.settings.backoff_seconds).unwrap_or(i32::MAX))
                .bind(i32::try_from(new.settings.failure_limit).unwrap_or(i32::MAX))
                .bind(now)
                .bind(&caller.actor.token_id)
                .bind(&caller.actor.name)
            )?;
            let pool = fetch(tx, workspace_id, new.name.as_str()).await?;
            record(tx, workspace_id, &caller.actor, Change::new("pool.create", AuditObject::Pool, &id).after(&pool))
                .await?;
            pool
        })
    }

    /// The workspace's live pools, by name.
    pub async fn list_pools(&self, workspace_id: &str) -> Result<Vec<Pool>> {
        read!(self, |conn| {
            let rows: Vec<PoolRow> = q!(
                conn,
                fetch_all,
                sqlx::query_as(&format!(
                    "{SELECT_POOLS} WHERE p.workspace_id = $1 AND p.deleted_at IS NULL ORDER BY p.name"
                ))
                .bind(workspace_id)
            )?;
            rows.into_iter().map(Pool::try_from).collect()
        })
    }

    /// A live pool of the workspace, by name.
    pub async fn get_pool(&self, workspace_id: &str, name: &str) -> Result<Pool> {
        read!(self, |conn| fetch(conn, workspace_id, name).await)
    }

    /// A live pool of the workspace with its counts now, read in one consistent snapshot.
    pub async fn pool_status(&self, workspace_id: &str, name: &str) -> Result<PoolStatus> {
        let id = read!(self, |conn| fetch(conn, workspace_id, name).await)?.id;
        let work = self.pool_work(&id, Timestamp::now()).await?;
        let plan = cutover_domain::pools::plan(&work.snapshot);
        Ok(PoolStatus {
            failures: work.snapshot.failures.failed_in_a_row,
            version: work.snapshot.version,
            pool: work.pool,
            counts: plan.counts,
            blocked: plan.blocked,
        })
    }

    /// Changes a pool's parameters, desired count or settings. Audited with before and after.
    pub async fn update_pool(&self, caller: &Caller, name: &str, changes: &PoolChanges) -> Result<Pool> {
        let workspace_id = caller.workspace_id.as_str();
        transaction!(self, |tx| {
            tx.effects.engine();
            let before = fetch(tx, workspace_id, name).await?;
            authorize(tx, caller, &before.environment).await?;
            let settings = changes.settings.unwrap_or(before.settings);
            q!(
                tx,
                execute,
                sqlx::query(
                    "UPDATE pools SET parameters = $1, desired = $2, ttl_seconds = $3, backoff_seconds = $4,
                         failure_limit = $5, updated_at = $6
                     WHERE id = $7"
                )
                .bind(serde_json::to_string(changes.parameters.as_ref().unwrap_or(&before.parameters))?)
                .bind(serde_json::to_string(changes.desired.as_ref().unwrap_or(&before.desired))?)
                .bind(settings.ttl_seconds.map(|t| i32::try_from(t).unwrap_or(i32::MAX)))
                .bind(i32::try_from(settings.backoff_seconds).unwrap_or(i32::MAX))
                .bind(i32::try_from(settings.failure_limit).unwrap_or(i32::MAX))
                .bind(Timestamp::now().as_micros())
                .bind(&before.id)
            )?;
            let after = fetch(tx, workspace_id, name).await?;
            record(
                tx,
                workspace_id,
                &caller.actor,
                Change::new("pool.update", AuditObject::Pool, &before.id).before(&before).after(&after),
            )
            .await?;
            after
        })
    }

    /// Pauses (the reconciler leaves the pool as it is) or resumes a pool. Resuming also forgets
    /// earlier failed starts, lifting the hard failure limit.
    pub async fn set_pool_paused(&self, caller: &Caller, name: &str, paused: bool) -> Result<Pool> {
        let workspace_id = caller.workspace_id.as_str();
        transaction!(self, |tx| {
            tx.effects.engine();
            let before = fetch(tx, workspace_id, name).await?;
            authorize(tx, caller, &before.environment).await?;
            let now = Timestamp::now().as_micros();
            q!(
                tx,
                execute,
                sqlx::query(
                    "UPDATE pools SET paused = $1, updated_at = $2,
                         failures_reset_at = CASE WHEN $1 THEN failures_reset_at ELSE $2 END
                     WHERE id = $3"
                )
                .bind(paused)
                .bind(now)
                .bind(&before.id)
            )?;
            let after = fetch(tx, workspace_id, name).await?;
            let action = if paused { "pool.pause" } else { "pool.resume" };
            record(
                tx,
                workspace_id,
                &caller.actor,
                Change::new(action, AuditObject::Pool, &before.id).before(&before).after(&after),
            )
            .await?;
            after
        })
    }

    /// Deletes a pool: its name is free at once; the reconciler deletes its instances (claimed
    /// ones are their claimers' and stay).
    pub async fn delete_pool(&self, caller: &Caller, name: &str) -> Result<()> {
        let workspace_id = caller.workspace_id.as_str();
        transaction!(self, |tx| {
            tx.effects.engine();
            let before = fetch(tx, workspace_id, name).await?;
            authorize(tx, caller, &before.environment).await?;
            let now = Timestamp::now().as_micros();
            q!(
                tx,
                execute,
                sqlx::query("UPDATE pools SET deleted_at = $1, updated_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(&before.id)
            )?;
            record(
                tx,
                workspace_id,
                &caller.actor,
                Change::new("pool.delete", AuditObject::Pool, &before.id).before(&before),
            )
            .await?;
        })
    }
}

#[cfg(feature = "testing")]
impl Store {
    /// Runs one statement as it is, for tests that lay out rows no API writes (a stop build).
    pub async fn execute_for_tests(&self, sql: &str) -> Result<u64> {
        Ok(transaction!(self, |tx| q!(tx, execute, sqlx::query(sql))?)?)
    }
}
