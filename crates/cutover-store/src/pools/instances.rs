//! Instances: the running-instances query, claims, details and agents' reports.
//!
//! The running-instances query is **one set-based query** (the shape of Coder's rewritten
//! "running prebuilt workspaces" query): a pool's live instances (a partial index), their latest
//! builds, their current presets and their ready agents are each computed once as a set (CTEs)
//! and joined once, with no correlated per-row subquery, so its cost follows the live instances
//! and not the history of builds.

use cutover_domain::pools::{AgentLifecycle, BuildTransition, InstancePhase, JobStatus};
use cutover_domain::{AuditObject, Timestamp, TokenHash};
use serde::Serialize;
use serde_json::Value;

use super::corrupt;
use crate::audit::{Change, record};
use crate::db::{Conn, new_id, q, read, transaction};
use crate::{Actor, Caller, EngineKind, Result, Store, StoreError};

/// The sets, each computed once. `$1` is the pool's id. `live` reads the pool's live instances
/// from a partial index that holds only instances not deleted (migration 0014), with the
/// pointers each instance keeps to its latest build and its current preset (maintained in the
/// transactions that add and finish builds), so no set reads an instance's build history, and
/// the cost follows the live instances whatever the history of deleted ones. `MATERIALIZED`
/// (PostgreSQL 12+, SQLite 3.35+) keeps each set computed once and then joined; `CROSS JOIN`
/// keeps SQLite to the written order (PostgreSQL plans it as an inner join). On SQLite, `live`
/// names its index (`INDEXED BY`, see [`live_instances`]).
const LIVE_INSTANCES: &str = "
WITH live AS MATERIALIZED (
    SELECT i.id, i.created_at, i.latest_build_id, i.current_preset_id
    FROM pool_instances i{live_index}
    WHERE i.pool_id = $1 AND i.deleted_at IS NULL
),
latest_builds AS MATERIALIZED (
    SELECT live.id AS instance_id, b.id, b.transition, b.status, b.preset_id
    FROM live CROSS JOIN pool_builds b
    WHERE b.id = live.latest_build_id
),
latest_presets AS MATERIALIZED (
    SELECT live.id AS instance_id, p.version, p.parameters
    FROM live CROSS JOIN pool_presets p
    WHERE p.id = live.current_preset_id
),
ready_agents AS MATERIALIZED (
    SELECT a.build_id, COUNT(*) AS agents, SUM(CASE WHEN a.lifecycle = 'ready' THEN 1 ELSE 0 END) AS ready
    FROM latest_builds lb CROSS JOIN pool_agents a
    WHERE a.build_id = lb.id AND a.parent_id IS NULL AND a.deleted_at IS NULL
    GROUP BY a.build_id
)";

/// The sets for this engine. SQLite reads `live` through the partial index by name (`INDEXED
/// BY`, an error if the index could not serve the query): its choice otherwise follows the
/// statistics a pooled connection loaded when it opened, and a connection that saw a small
/// table keeps scanning it after a million rows arrived (measured: 120 ms at a million builds).
/// PostgreSQL has no such clause and re-plans with fresh statistics.
pub(crate) fn live_instances(sqlite: bool) -> String {
    LIVE_INSTANCES.replace("{live_index}", if sqlite { " INDEXED BY pool_instances_live" } else { "" })
}

fn is_sqlite(conn: &Conn<'_>) -> bool {
    matches!(conn.link, crate::db::Link::Sqlite(_))
}

/// Recomputes an instance's `ready_at` from its latest build and that build's agents: kept
/// when it stays ready, `now` when it becomes ready, `NULL` otherwise. Called in every
/// transaction that adds or finishes a build or records an agent's state.
pub(crate) async fn refresh_ready(conn: &mut Conn<'_>, instance_id: &str, now: i64) -> Result<()> {
    q!(
        conn,
        execute,
        sqlx::query(
            "UPDATE pool_instances SET ready_at = CASE
                 WHEN deleted_at IS NULL
                  AND EXISTS (SELECT 1 FROM pool_builds b WHERE b.id = pool_instances.latest_build_id
                                AND b.transition = 'start' AND b.status = 'succeeded')
                  AND NOT EXISTS (SELECT 1 FROM pool_agents a WHERE a.build_id = pool_instances.latest_build_id
                                    AND a.parent_id IS NULL AND a.deleted_at IS NULL AND a.lifecycle <> 'ready')
                 THEN COALESCE(ready_at, $1) END
             WHERE id = $2"
        )
        .bind(now)
        .bind(instance_id)
    )?;
    Ok(())
}

/// The columns every listing returns, over the sets above.
const LIVE_COLUMNS: &str = "
SELECT i.id, i.created_at, lb.transition, lb.status, lp.version, lp.parameters, bp.version AS build_version,
       COALESCE(ra.agents, 0) AS agents, COALESCE(ra.ready, 0) AS agents_ready
FROM live i
JOIN latest_builds lb ON lb.instance_id = i.id
LEFT JOIN pool_presets bp ON bp.id = lb.preset_id
LEFT JOIN latest_presets lp ON lp.instance_id = i.id
LEFT JOIN ready_agents ra ON ra.build_id = lb.id";

const RUNNING: &str = "lb.transition = 'start' AND lb.status = 'succeeded'";

#[derive(sqlx::FromRow)]
pub(crate) struct LiveRow {
    pub id: String,
    pub created_at: i64,
    pub transition: String,
    pub status: String,
    pub version: Option<i64>,
    pub parameters: Option<String>,
    pub build_version: Option<i64>,
    pub agents: i64,
    pub agents_ready: i64,
}

impl LiveRow {
    pub(crate) fn transition(&self) -> Result<BuildTransition> {
        self.transition.parse().map_err(corrupt)
    }

    pub(crate) fn status(&self) -> Result<JobStatus> {
        self.status.parse().map_err(corrupt)
    }

    pub(crate) fn ready(&self) -> bool {
        self.agents_ready >= self.agents
    }

    /// What the domain reads of this instance.
    pub(crate) fn phase(&self) -> Result<InstancePhase> {
        use BuildTransition::*;
        use JobStatus::*;
        Ok(match (self.transition()?, self.status()?) {
            (Start, Pending) => InstancePhase::Starting { pending: true },
            (Start, Running) => InstancePhase::Starting { pending: false },
            (Start, Succeeded) => InstancePhase::Running { ready: self.ready() },
            (Start, Failed | Canceled) | (Stop | Delete, Succeeded | Failed | Canceled) => InstancePhase::Failed,
            (Stop | Delete, Pending | Running) => InstancePhase::Deleting,
        })
    }
}

/// An instance as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PoolInstance {
    pub id: String,
    /// The pool that made it.
    pub pool: String,
    /// The pool's environment (for scope checks).
    #[serde(skip)]
    pub environment: String,
    /// Its current preset: the newest successful start's.
    pub version: Option<i64>,
    pub parameters: Option<Value>,
    /// Its latest build.
    pub transition: BuildTransition,
    pub status: JobStatus,
    pub agents: u32,
    pub agents_ready: u32,
    /// Running (its latest build is a succeeded start) and every agent ready.
    pub ready: bool,
    pub created_at: Timestamp,
    pub claimed_at: Option<Timestamp>,
    pub claimed_by: Option<Actor>,
    pub deleted_at: Option<Timestamp>,
}

fn instance_of(pool: &super::Pool, row: LiveRow) -> Result<PoolInstance> {
    let (transition, status) = (row.transition()?, row.status()?);
    let running = transition == BuildTransition::Start && status == JobStatus::Succeeded;
    Ok(PoolInstance {
        id: row.id.clone(),
        pool: pool.name.clone(),
        environment: pool.environment.to_string(),
        version: row.version,
        parameters: row.parameters.as_deref().map(serde_json::from_str).transpose()?,
        transition,
        status,
        agents: u32::try_from(row.agents).unwrap_or(0),
        agents_ready: u32::try_from(row.agents_ready).unwrap_or(0),
        ready: running && row.ready(),
        created_at: Timestamp::from_micros(row.created_at),
        claimed_at: None,
        claimed_by: None,
        deleted_at: None,
    })
}

/// The pool's live instances (not deleted, not claimed), running ones only when `running`,
/// ordered by id.
pub(crate) async fn live_rows(conn: &mut Conn<'_>, pool_id: &str, running: bool) -> Result<Vec<LiveRow>> {
    let filter = if running { format!(" WHERE {RUNNING}") } else { String::new() };
    let sql = format!("{}{LIVE_COLUMNS}{filter} ORDER BY i.id", live_instances(is_sqlite(conn)));
    Ok(q!(conn, fetch_all, sqlx::query_as(&sql).bind(pool_id))?)
}

/// One build of an instance.
#[derive(Debug, Clone, Serialize)]
pub struct PoolBuild {
    pub id: String,
    pub number: u32,
    pub transition: BuildTransition,
    pub status: JobStatus,
    pub version: Option<i64>,
    pub idempotency_key: String,
    pub attempts: u32,
    pub error: Option<String>,
    pub log: String,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
}

/// One agent of an instance's latest build.
#[derive(Debug, Clone, Serialize)]
pub struct PoolAgent {
    pub name: String,
    pub lifecycle: AgentLifecycle,
    pub updated_at: Timestamp,
}

/// An instance with its builds (newest first) and its latest build's agents.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceDetail {
    #[serde(flatten)]
    pub instance: PoolInstance,
    pub builds: Vec<PoolBuild>,
    pub agents: Vec<PoolAgent>,
}

#[derive(sqlx::FromRow)]
struct BuildRow {
    id: String,
    number: i32,
    transition: String,
    status: String,
    version: Option<i64>,
    idempotency_key: String,
    attempts: i32,
    error: Option<String>,
    log: String,
    created_at: i64,
    started_at: Option<i64>,
    ended_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: String,
    pool: String,
    environment: String,
    created_at: i64,
    claimed_at: Option<i64>,
    claimed_by_token_id: Option<String>,
    claimed_by_name: Option<String>,
    deleted_at: Option<i64>,
}

async fn fetch_detail(conn: &mut Conn<'_>, workspace_id: &str, id: &str) -> Result<InstanceDetail> {
    let row: Option<InstanceRow> = q!(
        conn,
        fetch_optional,
        sqlx::query_as(
            "SELECT i.id, p.name AS pool, e.name AS environment, i.created_at, i.claimed_at, i.claimed_by_token_id,
                    i.claimed_by_name, i.deleted_at
             FROM pool_instances i JOIN pools p ON p.id = i.origin_pool_id JOIN environments e ON e.id = p.environment_id
             WHERE i.id = $1 AND i.workspace_id = $2"
        )
        .bind(id)
        .bind(workspace_id)
    )?;
    let row = row.ok_or_else(|| StoreError::NotFound(format!("instance {id:?}")))?;
    let builds: Vec<BuildRow> = q!(
        conn,
        fetch_all,
        sqlx::query_as(
            "SELECT b.id, b.number, b.transition, b.status, p.version, b.idempotency_key, b.attempts, b.error, b.log,
                    b.created_at, b.started_at, b.ended_at
             FROM pool_builds b LEFT JOIN pool_presets p ON p.id = b.preset_id
             WHERE b.instance_id = $1 ORDER BY b.number DESC"
        )
        .bind(id)
    )?;
    let builds = builds
        .into_iter()
        .map(|b| {
            Ok(PoolBuild {
                id: b.id,
                number: u32::try_from(b.number).map_err(corrupt)?,
                transition: b.transition.parse().map_err(corrupt)?,
                status: b.status.parse().map_err(corrupt)?,
                version: b.version,
                idempotency_key: b.idempotency_key,
                attempts: u32::try_from(b.attempts).map_err(corrupt)?,
                error: b.error,
                log: b.log,
                created_at: Timestamp::from_micros(b.created_at),
                started_at: b.started_at.map(Timestamp::from_micros),
                ended_at: b.ended_at.map(Timestamp::from_micros),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let latest = builds.first().ok_or_else(|| StoreError::Corrupt(format!("instance {id:?} has no build")))?;
    let agents: Vec<(String, String, i64)> = q!(
        conn,
        fetch_all,
        sqlx::query_as(
            "SELECT name, lifecycle, updated_at FROM pool_agents
             WHERE build_id = $1 AND parent_id IS NULL AND deleted_at IS NULL ORDER BY name"
        )
        .bind(&latest.id)
    )?;
    let agents = agents
        .into_iter()
        .map(|(name, lifecycle, at)| {
            Ok(PoolAgent {
                name,
                lifecycle: lifecycle.parse().map_err(corrupt)?,
                updated_at: Timestamp::from_micros(at),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let current = builds
        .iter()
        .find(|b| b.transition == BuildTransition::Start && b.status == JobStatus::Succeeded && b.version.is_some());
    let parameters: Option<(String,)> = match current {
        Some(build) => q!(
            conn,
            fetch_optional,
            sqlx::query_as(
                "SELECT p.parameters FROM pool_builds b JOIN pool_presets p ON p.id = b.preset_id WHERE b.id = $1"
            )
            .bind(&build.id)
        )?,
        None => None,
    };
    let running = latest.transition == BuildTransition::Start && latest.status == JobStatus::Succeeded;
    let ready_agents = agents.iter().filter(|a| a.lifecycle == AgentLifecycle::Ready).count();
    let instance = PoolInstance {
        id: row.id,
        pool: row.pool,
        environment: row.environment,
        version: current.and_then(|b| b.version),
        parameters: parameters.map(|(p,)| serde_json::from_str(&p)).transpose()?,
        transition: latest.transition,
        status: latest.status,
        agents: u32::try_from(agents.len()).unwrap_or(u32::MAX),
        agents_ready: u32::try_from(ready_agents).unwrap_or(u32::MAX),
        ready: running && row.deleted_at.is_none() && ready_agents == agents.len(),
        created_at: Timestamp::from_micros(row.created_at),
        claimed_at: row.claimed_at.map(Timestamp::from_micros),
        claimed_by: row
            .claimed_by_name
            .map(|name| Actor { token_id: row.claimed_by_token_id.unwrap_or_default(), name }),
        deleted_at: row.deleted_at.map(Timestamp::from_micros),
    };
    Ok(InstanceDetail { instance, builds, agents })
}

impl Store {
    /// The pool's running instances (latest build a succeeded start, not deleted, not claimed),
    /// with their presets and readiness, ordered by id: one set-based query.
    pub async fn running_pool_instances(&self, workspace_id: &str, pool: &str) -> Result<Vec<PoolInstance>> {
        read!(self, |conn| {
            let pool = super::fetch(conn, workspace_id, pool).await?;
            live_rows(conn, &pool.id, true).await?.into_iter().map(|row| instance_of(&pool, row)).collect()
        })
    }

    /// Every live instance the pool owns (starting, running, failing, being deleted), by id.
    pub async fn list_pool_instances(&self, workspace_id: &str, pool: &str) -> Result<Vec<PoolInstance>> {
        read!(self, |conn| {
            let pool = super::fetch(conn, workspace_id, pool).await?;
            live_rows(conn, &pool.id, false).await?.into_iter().map(|row| instance_of(&pool, row)).collect()
        })
    }

    /// An instance of the workspace (claimed or deleted ones too) with its builds and agents.
    pub async fn get_pool_instance(&self, workspace_id: &str, id: &str) -> Result<InstanceDetail> {
        read!(self, |conn| fetch_detail(conn, workspace_id, id).await)
    }

    /// Hands one ready instance of the pool to the caller, atomically: the oldest ready one of
    /// the version pinned now that no other claim holds and the reconciler is not deleting
    /// (instances pre-warmed for a rollout, or of a version being replaced, are not handed
    /// out). `None`: none is ready.
    ///
    /// The reservation and the transfer are one statement over the claimable index (migration
    /// 0014: ready, not claimed, not being deleted): PostgreSQL locks the candidate `FOR UPDATE
    /// SKIP LOCKED`, so concurrent claims take different rows without waiting on each other, and
    /// re-checks the conditions on a row whose claim committed meanwhile; SQLite runs one writer
    /// at a time. The owner changes compare-and-set under the same conditions the reconciler's
    /// delete request checks: a claimed instance is never deleted, a deleting one never claimed.
    /// The transaction holds the pool's lookup, the scope check, that statement and the audit
    /// row; the details are read after the commit. The engine is woken only when the claim took
    /// the pool's last ready instance (otherwise its next tick replaces the claimed one).
    pub async fn claim_pool_instance(&self, caller: &Caller, pool: &str) -> Result<Option<InstanceDetail>> {
        let workspace_id = caller.workspace_id.as_str();
        // SQLite names the index, as for the running-instances query (see `live_instances`).
        let (lock, claim_index) = match self.kind() {
            EngineKind::Postgres => (" FOR UPDATE OF c SKIP LOCKED", ""),
            EngineKind::Sqlite => ("", " INDEXED BY pool_instances_claimable"),
        };
        // The pool's claimable instances (the partial index `pool_instances_claimable`) of the
        // version pinned now, oldest first.
        const CANDIDATES: &str = "SELECT c.id FROM pool_instances c{claim_index}
             JOIN pool_presets pr ON pr.id = c.current_preset_id
             JOIN pools p ON p.id = c.pool_id
             JOIN pins pin ON pin.artifact_id = p.artifact_id AND pin.environment_id = p.environment_id
                  AND pin.ended_at IS NULL AND pin.version = pr.version
             WHERE c.pool_id = $4 AND c.ready_at IS NOT NULL AND c.claimed_at IS NULL
               AND c.delete_requested_at IS NULL AND c.deleted_at IS NULL
             ORDER BY c.id LIMIT 1";
        let candidates = CANDIDATES.replace("{claim_index}", claim_index);
        let claimed = transaction!(self, |tx| {
            let pool = super::fetch(tx, workspace_id, pool).await?;
            super::authorize(tx, caller, &pool.environment).await?;
            let now = Timestamp::now().as_micros();
            let taken: Option<(String,)> = q!(
                tx,
                fetch_optional,
                sqlx::query_as(&format!(
                    "UPDATE pool_instances SET pool_id = NULL, claimed_at = $1, claimed_by_token_id = $2,
                         claimed_by_name = $3
                     WHERE id = ({candidates}{lock})
                       AND pool_id = $4 AND ready_at IS NOT NULL AND claimed_at IS NULL
                       AND delete_requested_at IS NULL AND deleted_at IS NULL
                     RETURNING id"
                ))
                .bind(now)
                .bind(&caller.actor.token_id)
                .bind(&caller.actor.name)
                .bind(&pool.id)
            )?;
            let Some((id,)) = taken else { return Ok(None) };
            // The last one taken: wake the engine now rather than at its next tick.
            let left: Option<(String,)> =
                q!(tx, fetch_optional, sqlx::query_as(&candidates.replace("$4", "$1")).bind(&pool.id))?;
            if left.is_none() {
                tx.effects.engine();
            }
            let change = Change::new("pool.claim", AuditObject::Pool, &pool.id).after(&serde_json::json!({
                "instance": id,
                "claimed_at": Timestamp::from_micros(now),
                "claimed_by": caller.actor.name,
            }));
            record(tx, workspace_id, &caller.actor, change).await?;
            Some(id)
        })?;
        match claimed {
            Some(id) => Ok(Some(self.get_pool_instance(workspace_id, &id).await?)),
            None => Ok(None),
        }
    }

    /// An agent of the instance reports its lifecycle state, with the instance's agent token.
    /// A token of another instance or a revoked one is refused. An agent the pool does not list
    /// registers with its first report (the provisioner's agents define the instance's): from
    /// then on it counts for readiness like the listed ones. Only while the instance's latest
    /// build is a start (not once it is being deleted); at most `MAX_AGENTS` per instance.
    pub async fn report_agent_state(
        &self,
        instance_id: &str,
        token: &TokenHash,
        agent: &str,
        lifecycle: AgentLifecycle,
    ) -> Result<PoolAgent> {
        transaction!(self, |tx| {
            let holder: Option<(String, String)> = q!(
                tx,
                fetch_optional,
                sqlx::query_as(
                    "SELECT token_hash, instance_id FROM pool_instance_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
                )
                .bind(token.as_str())
            )?;
            let allowed = holder
                .is_some_and(|(hash, instance)| TokenHash::from_stored(hash).matches(token) && instance == instance_id);
            if !allowed {
                return Err(StoreError::Forbidden("this token may not report for this instance".into()));
            }
            let now = Timestamp::now().as_micros();
            // The agents of the instance's latest build, while that build is a start of a live
            // instance: a provisioner's agent not listed by the pool registers by reporting.
            let latest: Option<(String, String)> = q!(
                tx,
                fetch_optional,
                sqlx::query_as(
                    "SELECT b.id, b.transition FROM pool_instances i JOIN pool_builds b ON b.id = i.latest_build_id
                     WHERE i.id = $1 AND i.deleted_at IS NULL"
                )
                .bind(instance_id)
            )?;
            let not_found = || StoreError::NotFound(format!("agent {agent:?} of instance {instance_id:?}"));
            let build_id = match latest {
                Some((id, transition)) if transition == "start" => id,
                _ => return Err(not_found()),
            };
            let known: Vec<(String,)> = q!(
                tx,
                fetch_all,
                sqlx::query_as("SELECT name FROM pool_agents WHERE build_id = $1 AND deleted_at IS NULL")
                    .bind(&build_id)
            )?;
            if !known.iter().any(|(name,)| name == agent) {
                cutover_domain::rollouts::check_executor_name("agent", agent)?;
                if known.len() >= super::MAX_AGENTS {
                    return Err(cutover_domain::DomainError::invalid(
                        "agent",
                        format!("an instance has at most {} agents", super::MAX_AGENTS),
                    )
                    .into());
                }
            }
            // One statement, so that two first reports of the same agent cannot both insert.
            q!(
                tx,
                execute,
                sqlx::query(
                    "INSERT INTO pool_agents (id, instance_id, build_id, name, lifecycle, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (build_id, name) DO UPDATE SET lifecycle = excluded.lifecycle,
                         updated_at = excluded.updated_at"
                )
                .bind(new_id())
                .bind(instance_id)
                .bind(&build_id)
                .bind(agent)
                .bind(lifecycle.as_str())
                .bind(now)
            )?;
            refresh_ready(tx, instance_id, now).await?;
            tx.effects.engine();
            PoolAgent { name: agent.to_owned(), lifecycle, updated_at: Timestamp::from_micros(now) }
        })
    }
}

#[cfg(feature = "testing")]
impl Store {
    /// The plan of the running-instances query for `pool_id`, as the engine prints it
    /// (PostgreSQL: `EXPLAIN (ANALYZE, BUFFERS)`; SQLite: `EXPLAIN QUERY PLAN`), for benchmarks.
    pub async fn explain_running_pool_instances(&self, pool_id: &str) -> Result<Vec<String>> {
        let sql = format!(
            "{}{LIVE_COLUMNS} WHERE {RUNNING} ORDER BY i.id",
            live_instances(self.kind() == EngineKind::Sqlite)
        );
        read!(self, |conn| {
            Ok(match self.kind() {
                EngineKind::Postgres => {
                    let rows: Vec<(String,)> = q!(
                        conn,
                        fetch_all,
                        sqlx::query_as(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}")).bind(pool_id)
                    )?;
                    rows.into_iter().map(|(line,)| line).collect()
                }
                EngineKind::Sqlite => {
                    let rows: Vec<(i64, i64, i64, String)> =
                        q!(conn, fetch_all, sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}")).bind(pool_id))?;
                    rows.into_iter().map(|(id, parent, _, detail)| format!("{id} {parent} {detail}")).collect()
                }
            })
        })
    }
}
