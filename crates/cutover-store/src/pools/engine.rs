//! The pool reconciler's reads and writes. A pass reads one [`PoolWork`] in one read-only
//! transaction (one consistent snapshot), asks the domain for a plan, and carries it out with
//! compare-and-set writes, each of which re-checks what it relies on.

use cutover_domain::pools::{FailureRecord, IncomingVersion, InstanceSnapshot, PoolSnapshot};
use cutover_domain::{AuditObject, Timestamp, TokenSecret};
use serde_json::Value;

use super::instances::live_rows;
use super::{Pool, corrupt, fetch_by_id};
use crate::audit::{Change, record};
use crate::db::{Conn, new_id, q, read, snapshot, transaction};
use crate::pins::active_version;
use crate::{Actor, Result, Store};

/// A build the engine has to run or watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBuild {
    pub id: String,
    pub instance_id: String,
    pub running: bool,
    pub run_deadline: Option<Timestamp>,
}

/// Everything one pass over a pool reads, from one snapshot.
#[derive(Debug, Clone)]
pub struct PoolWork {
    pub pool: Pool,
    pub snapshot: PoolSnapshot,
    pub open_builds: Vec<OpenBuild>,
}

/// A build run handed to the provisioner.
#[derive(Debug)]
pub struct BuildRun {
    pub build_id: String,
    pub instance_id: String,
    pub pool: Pool,
    pub transition: cutover_domain::pools::BuildTransition,
    pub version: Option<i64>,
    pub parameters: Value,
    pub idempotency_key: String,
    pub attempt: u32,
    /// The instance's new agent token, shown only here: handed to the provisioner.
    pub agent_token: TokenSecret,
}

/// How a build run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutcome {
    pub succeeded: bool,
    pub error: Option<String>,
    pub log: String,
}

fn engine_actor(pool: &Pool) -> Actor {
    Actor { token_id: pool.created_by.token_id.clone(), name: format!("engine for pool {}", pool.name) }
}

/// The failure record of the pool's current version since the last resume.
async fn failures(conn: &mut Conn<'_>, pool: &Pool, version: Option<i64>) -> Result<FailureRecord> {
    let rows: Vec<(String, Option<i64>)> = q!(
        conn,
        fetch_all,
        sqlx::query_as(
            "SELECT b.status, p.version FROM pool_builds b LEFT JOIN pool_presets p ON p.id = b.preset_id
             WHERE b.pool_id = $1 AND b.transition = 'start' AND b.status IN ('succeeded', 'failed')
               AND b.created_at >= $2
             ORDER BY b.created_at DESC LIMIT 101"
        )
        .bind(&pool.id)
        .bind(pool.failures_reset_at.as_micros())
    )?;
    let failed_in_a_row =
        rows.iter().filter(|(_, v)| *v == version).take_while(|(status, _)| status == "failed").count();
    let last: Option<(Option<i64>,)> = q!(
        conn,
        fetch_optional,
        sqlx::query_as("SELECT MAX(created_at) FROM pool_builds WHERE pool_id = $1").bind(&pool.id)
    )?;
    Ok(FailureRecord {
        failed_in_a_row: u32::try_from(failed_in_a_row).unwrap_or(u32::MAX),
        last_build_at: last.and_then(|(at,)| at).map(Timestamp::from_micros),
    })
}

/// The versions the pool pre-warms: those an active rollout (not ended nor stopped) or a running
/// or paused experiment targets in the pool's environment, for the pool's artifact, each with
/// its own failure record. Read-only over the rollouts' and experiments' rows, in the pass's
/// snapshot. The planner ignores the pinned version.
async fn incoming(
    conn: &mut Conn<'_>,
    pool: &Pool,
    artifact_id: &str,
    environment_id: &str,
) -> Result<Vec<IncomingVersion>> {
    let rollouts: Vec<(i64,)> = q!(
        conn,
        fetch_all,
        sqlx::query_as(
            "SELECT DISTINCT version FROM rollouts
             WHERE artifact_id = $1 AND environment_id = $2
               AND state NOT IN ('completed', 'failed', 'cancelled', 'stopping', 'stopped')"
        )
        .bind(artifact_id)
        .bind(environment_id)
    )?;
    let experiments: Vec<(String,)> = q!(
        conn,
        fetch_all,
        sqlx::query_as(
            "SELECT variants FROM experiments
             WHERE artifact_id = $1 AND environment_id = $2 AND status IN ('running', 'paused') AND deleted_at IS NULL"
        )
        .bind(artifact_id)
        .bind(environment_id)
    )?;
    let mut versions: std::collections::BTreeSet<i64> = rollouts.into_iter().map(|(v,)| v).collect();
    for (variants,) in experiments {
        let variants: Vec<Value> = serde_json::from_str(&variants).map_err(corrupt)?;
        versions.extend(variants.iter().filter_map(|v| v["version"].as_i64()));
    }
    let mut out = Vec::with_capacity(versions.len());
    for version in versions {
        out.push(IncomingVersion { version, failures: failures(conn, pool, Some(version)).await? });
    }
    Ok(out)
}

/// The preset of (pool, version) with the pool's parameters now, made when missing.
async fn preset(conn: &mut Conn<'_>, pool: &Pool, version: i64) -> Result<String> {
    let parameters = serde_json::to_string(&pool.parameters)?;
    let found: Option<(String,)> = q!(
        conn,
        fetch_optional,
        sqlx::query_as(
            "SELECT id FROM pool_presets WHERE pool_id = $1 AND version = $2 AND parameters = $3
             ORDER BY created_at DESC LIMIT 1"
        )
        .bind(&pool.id)
        .bind(version)
        .bind(&parameters)
    )?;
    if let Some((id,)) = found {
        return Ok(id);
    }
    let id = new_id();
    q!(
        conn,
        execute,
        sqlx::query(
            "INSERT INTO pool_presets (id, pool_id, version, parameters, created_at) VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(&id)
        .bind(&pool.id)
        .bind(version)
        .bind(&parameters)
        .bind(Timestamp::now().as_micros())
    )?;
    Ok(id)
}

/// Adds build `number` of an instance (pending), with agents for a start.
async fn insert_build(
    conn: &mut Conn<'_>,
    pool: &Pool,
    instance_id: &str,
    number: i32,
    transition: cutover_domain::pools::BuildTransition,
    preset_id: Option<&str>,
) -> Result<String> {
    let id = new_id();
    let now = Timestamp::now().as_micros();
    q!(
        conn,
        execute,
        sqlx::query(
            "INSERT INTO pool_builds (id, instance_id, pool_id, number, transition, status, preset_id, idempotency_key,
                 created_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8)"
        )
        .bind(&id)
        .bind(instance_id)
        .bind(&pool.id)
        .bind(number)
        .bind(transition.as_str())
        .bind(preset_id)
        // One key per build for its whole life: every attempt carries the same.
        .bind(format!("pool-instance/{instance_id}/build/{number}"))
        .bind(now)
    )?;
    // The instance's pointer to its latest build moves with the insert: a new build is never
    // ready (a start is pending, a delete is a delete).
    q!(
        conn,
        execute,
        sqlx::query("UPDATE pool_instances SET latest_build_id = $1, ready_at = NULL WHERE id = $2")
            .bind(&id)
            .bind(instance_id)
    )?;
    if transition == cutover_domain::pools::BuildTransition::Start {
        for agent in &pool.agents {
            q!(
                conn,
                execute,
                sqlx::query(
                    "INSERT INTO pool_agents (id, instance_id, build_id, name, lifecycle, updated_at)
                     VALUES ($1, $2, $3, $4, 'created', $5)"
                )
                .bind(new_id())
                .bind(instance_id)
                .bind(&id)
                .bind(agent)
                .bind(now)
            )?;
        }
    }
    Ok(id)
}

impl Store {
    /// Ids of the pools the engine drives: live ones, and deleted ones that still own instances.
    pub async fn pools_for_engine(&self) -> Result<Vec<String>> {
        read!(self, |conn| {
            let rows: Vec<(String,)> = q!(
                conn,
                fetch_all,
                sqlx::query_as(
                    "SELECT id FROM pools WHERE deleted_at IS NULL
                     UNION
                     SELECT DISTINCT pool_id FROM pool_instances WHERE pool_id IS NOT NULL AND deleted_at IS NULL
                     ORDER BY 1"
                )
            )?;
            Ok(rows.into_iter().map(|(id,)| id).collect())
        })
    }

    /// One consistent snapshot of a pool for one pass: its row, the pinned version, its live
    /// instances (the set-based query), its failure record and its open builds.
    pub async fn pool_work(&self, pool_id: &str, now: Timestamp) -> Result<PoolWork> {
        snapshot!(self, |conn| {
            let pool = fetch_by_id(conn, pool_id).await?;
            let artifact_id: (String, String) = q!(
                conn,
                fetch_one,
                sqlx::query_as("SELECT artifact_id, environment_id FROM pools WHERE id = $1").bind(pool_id)
            )?;
            let pinned = active_version(conn, &artifact_id.0, &artifact_id.1).await?.map(|(version, _)| version);
            let version = if pool.deleted_at.is_some() { None } else { pinned };
            let mut instances = Vec::new();
            for row in live_rows(conn, pool_id, false).await? {
                let phase = row.phase()?;
                // An instance whose only start failed and is being deleted has no preset left:
                // 0 is no version (versions start at 1), so it never counts as current.
                let version = row.version.or(row.build_version).unwrap_or(0);
                instances.push(InstanceSnapshot {
                    id: row.id,
                    version,
                    created_at: Timestamp::from_micros(row.created_at),
                    phase,
                });
            }
            let failures = failures(conn, &pool, version).await?;
            let incoming = if version.is_some() {
                incoming(conn, &pool, &artifact_id.0, &artifact_id.1).await?
            } else {
                Vec::new()
            };
            let open: Vec<(String, String, String, Option<i64>)> = q!(
                conn,
                fetch_all,
                sqlx::query_as(
                    "SELECT id, instance_id, status, run_deadline FROM pool_builds
                     WHERE pool_id = $1 AND status IN ('pending', 'running') ORDER BY id"
                )
                .bind(pool_id)
            )?;
            let open_builds = open
                .into_iter()
                .map(|(id, instance_id, status, deadline)| OpenBuild {
                    id,
                    instance_id,
                    running: status == "running",
                    run_deadline: deadline.map(Timestamp::from_micros),
                })
                .collect();
            let snapshot = PoolSnapshot {
                now,
                desired: pool.desired.at(now),
                version,
                settings: pool.settings,
                paused: pool.paused && pool.deleted_at.is_none(),
                failures,
                instances,
                incoming,
            };
            Ok(PoolWork { pool, snapshot, open_builds })
        })
    }

    /// Creates one instance of the pool's preset for `version`: the instance row, its first
    /// build (a pending start) and its agents, in one transaction. Returns the instance's id.
    pub async fn create_pool_instance(&self, pool_id: &str, version: i64) -> Result<String> {
        transaction!(self, |tx| {
            let pool = fetch_by_id(tx, pool_id).await?;
            let preset_id = preset(tx, &pool, version).await?;
            let id = new_id();
            q!(
                tx,
                execute,
                sqlx::query(
                    "INSERT INTO pool_instances (id, workspace_id, pool_id, origin_pool_id, created_at)
                     VALUES ($1, $2, $3, $3, $4)"
                )
                .bind(&id)
                .bind(&pool.workspace_id)
                .bind(&pool.id)
                .bind(Timestamp::now().as_micros())
            )?;
            insert_build(tx, &pool, &id, 1, cutover_domain::pools::BuildTransition::Start, Some(&preset_id)).await?;
            id
        })
    }

    /// Asks for an instance's deletion: compare-and-set on the instance row (still the pool's,
    /// not claimed, not already being deleted), then a pending delete build. `false`: a claim
    /// (or another pass) got there first, and nothing was written.
    pub async fn request_pool_delete(&self, pool_id: &str, instance_id: &str, reason: &str) -> Result<bool> {
        transaction!(self, |tx| {
            let now = Timestamp::now().as_micros();
            let marked = q!(
                tx,
                execute,
                sqlx::query(
                    "UPDATE pool_instances SET delete_requested_at = $1
                     WHERE id = $2 AND pool_id = $3 AND claimed_at IS NULL AND delete_requested_at IS NULL
                       AND deleted_at IS NULL"
                )
                .bind(now)
                .bind(instance_id)
                .bind(pool_id)
            )?;
            if marked != 1 {
                return Ok(false);
            }
            let pool = fetch_by_id(tx, pool_id).await?;
            let (number,): (i32,) = q!(
                tx,
                fetch_one,
                sqlx::query_as("SELECT MAX(number) FROM pool_builds WHERE instance_id = $1").bind(instance_id)
            )?;
            // A start that never ran created nothing: the instance is gone without a delete build.
            let never_ran: Option<(i32,)> = q!(
                tx,
                fetch_optional,
                sqlx::query_as(
                    "SELECT attempts FROM pool_builds WHERE instance_id = $1 AND number = $2 AND transition = 'start'
                       AND status = 'canceled' AND attempts = 0"
                )
                .bind(instance_id)
                .bind(number)
            )?;
            if never_ran.is_some() {
                q!(
                    tx,
                    execute,
                    sqlx::query("UPDATE pool_instances SET deleted_at = $1 WHERE id = $2").bind(now).bind(instance_id)
                )?;
            } else {
                insert_build(tx, &pool, instance_id, number + 1, cutover_domain::pools::BuildTransition::Delete, None)
                    .await?;
            }
            let change = Change::new("pool.instance_delete", AuditObject::Pool, pool_id)
                .after(&serde_json::json!({"instance": instance_id, "reason": reason}));
            record(tx, &pool.workspace_id, &engine_actor(&pool), change).await?;
            true
        })
    }

    /// Cancels an instance's start that no provisioner has taken yet (a superseded version).
    pub async fn cancel_pool_start(&self, instance_id: &str) -> Result<bool> {
        transaction!(self, |tx| {
            let now = Timestamp::now().as_micros();
            let changed = q!(
                tx,
                execute,
                sqlx::query(
                    "UPDATE pool_builds SET status = 'canceled', ended_at = $1
                     WHERE instance_id = $2 AND transition = 'start' AND status = 'pending'"
                )
                .bind(now)
                .bind(instance_id)
            )?;
            changed > 0
        })
    }

    /// Starts a run of a build under the lease `token`: a pending build, or a running one whose
    /// run's deadline has passed (its replica crashed). Issues the instance a new agent token
    /// (the previous ones stop working). `None`: someone else runs it, or it is over.
    pub async fn start_pool_build(&self, build_id: &str, token: i64, deadline: Timestamp) -> Result<Option<BuildRun>> {
        transaction!(self, |tx| {
            let now = Timestamp::now().as_micros();
            let started = q!(
                tx,
                execute,
                sqlx::query(
                    "UPDATE pool_builds SET status = 'running', run_token = $1, run_deadline = $2,
                         attempts = attempts + 1, started_at = COALESCE(started_at, $3)
                     WHERE id = $4 AND (status = 'pending' OR (status = 'running' AND run_deadline < $3))"
                )
                .bind(token)
                .bind(deadline.as_micros())
                .bind(now)
                .bind(build_id)
            )?;
            if started != 1 {
                return Ok(None);
            }
            #[derive(sqlx::FromRow)]
            struct Row {
                instance_id: String,
                pool_id: String,
                transition: String,
                version: Option<i64>,
                parameters: Option<String>,
                idempotency_key: String,
                attempts: i32,
            }
            let row: Row = q!(
                tx,
                fetch_one,
                sqlx::query_as(
                    "SELECT b.instance_id, b.pool_id, b.transition, p.version, p.parameters, b.idempotency_key, b.attempts
                     FROM pool_builds b LEFT JOIN pool_presets p ON p.id = b.preset_id WHERE b.id = $1"
                )
                .bind(build_id)
            )?;
            q!(
                tx,
                execute,
                sqlx::query(
                    "UPDATE pool_instance_tokens SET revoked_at = $1 WHERE instance_id = $2 AND revoked_at IS NULL"
                )
                .bind(now)
                .bind(&row.instance_id)
            )?;
            let secret = TokenSecret::generate();
            q!(
                tx,
                execute,
                sqlx::query(
                    "INSERT INTO pool_instance_tokens (token_hash, instance_id, created_at) VALUES ($1, $2, $3)"
                )
                .bind(secret.hash().as_str())
                .bind(&row.instance_id)
                .bind(now)
            )?;
            let pool = fetch_by_id(tx, &row.pool_id).await?;
            Some(BuildRun {
                build_id: build_id.to_owned(),
                instance_id: row.instance_id,
                transition: row.transition.parse().map_err(corrupt)?,
                version: row.version,
                parameters: row.parameters.as_deref().map(serde_json::from_str).transpose()?.unwrap_or(Value::Null),
                idempotency_key: row.idempotency_key,
                attempt: u32::try_from(row.attempts).map_err(corrupt)?,
                agent_token: secret,
                pool,
            })
        })
    }

    /// Records a build's result, only from the run holding `token`. A succeeded delete
    /// soft-deletes the instance and revokes its agent token. `false`: another run owns it now.
    pub async fn finish_pool_build(&self, build_id: &str, token: i64, outcome: &BuildOutcome) -> Result<bool> {
        let log = cutover_domain::rollouts::bound_log(&outcome.log);
        transaction!(self, |tx| {
            let now = Timestamp::now().as_micros();
            let status = if outcome.succeeded { "succeeded" } else { "failed" };
            let changed = q!(
                tx,
                execute,
                sqlx::query(
                    "UPDATE pool_builds SET status = $1, error = $2, log = $3, ended_at = $4, run_deadline = NULL
                     WHERE id = $5 AND status = 'running' AND run_token = $6"
                )
                .bind(status)
                .bind(&outcome.error)
                .bind(&log)
                .bind(now)
                .bind(build_id)
                .bind(token)
            )?;
            if changed != 1 {
                return Ok(false);
            }
            tx.effects.engine();
            let (instance_id, pool_id, transition): (String, String, String) = q!(
                tx,
                fetch_one,
                sqlx::query_as("SELECT instance_id, pool_id, transition FROM pool_builds WHERE id = $1").bind(build_id)
            )?;
            if transition == "start" && outcome.succeeded {
                // The newest successful start with a preset is the instance's current preset.
                q!(
                    tx,
                    execute,
                    sqlx::query(
                        "UPDATE pool_instances SET current_preset_id = (SELECT preset_id FROM pool_builds WHERE id = $1)
                         WHERE id = $2 AND EXISTS (SELECT 1 FROM pool_builds WHERE id = $1 AND preset_id IS NOT NULL)"
                    )
                    .bind(build_id)
                    .bind(&instance_id)
                )?;
            }
            if transition == "delete" && outcome.succeeded {
                q!(
                    tx,
                    execute,
                    sqlx::query("UPDATE pool_instances SET deleted_at = $1 WHERE id = $2").bind(now).bind(&instance_id)
                )?;
                q!(
                    tx,
                    execute,
                    sqlx::query(
                        "UPDATE pool_instance_tokens SET revoked_at = $1 WHERE instance_id = $2 AND revoked_at IS NULL"
                    )
                    .bind(now)
                    .bind(&instance_id)
                )?;
                q!(
                    tx,
                    execute,
                    sqlx::query("UPDATE pool_agents SET deleted_at = $1 WHERE instance_id = $2")
                        .bind(now)
                        .bind(&instance_id)
                )?;
            }
            super::instances::refresh_ready(tx, &instance_id, now).await?;
            if !outcome.succeeded {
                let pool = fetch_by_id(tx, &pool_id).await?;
                let change = Change::new("pool.build_failed", AuditObject::Pool, &pool_id).after(&serde_json::json!({
                    "instance": instance_id, "build": build_id, "transition": transition, "error": outcome.error,
                }));
                record(tx, &pool.workspace_id, &engine_actor(&pool), change).await?;
                if transition == "start" {
                    // The start that reaches the hard limit says so once: creating stops here.
                    let (version,): (Option<i64>,) = q!(
                        tx,
                        fetch_one,
                        sqlx::query_as(
                            "SELECT p.version FROM pool_builds b LEFT JOIN pool_presets p ON p.id = b.preset_id
                             WHERE b.id = $1"
                        )
                        .bind(build_id)
                    )?;
                    let record_now = failures(tx, &pool, version).await?;
                    if record_now.failed_in_a_row == pool.settings.failure_limit {
                        let change =
                            Change::new("pool.failure_limit", AuditObject::Pool, &pool_id).after(&serde_json::json!({
                                "version": version, "failures": record_now.failed_in_a_row,
                            }));
                        record(tx, &pool.workspace_id, &engine_actor(&pool), change).await?;
                    }
                }
            }
            true
        })
    }
}
