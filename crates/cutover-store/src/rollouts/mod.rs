//! Rollouts: rows for rollouts, their operations (one per deployment target) and tasks (one per
//! step). What the rows mean (the rollout's state, what may start, what a control does) is the
//! domain's (`cutover_domain::rollouts`); this module reads and writes them, always
//! compare-and-set on the state the caller read, so that replicas and people racing each other
//! never overwrite a state they did not see.
//!
//! Tasks (runs, results, logs) are in `tasks.rs`; the leases the engine holds on rollouts are the
//! crate's `leases`.

use cutover_domain::rollouts::{
    ExecutorSpec, FailureBudget, MaxParallel, OperationState, RolloutControl, RolloutPolicy, RolloutState,
};
use cutover_domain::secrets::SealedSecret;
use cutover_domain::{AuditObject, EnvironmentName, Timestamp};

use crate::audit::{Change, record};
use crate::db::{Conn, new_id, q, read, transaction};
use crate::pins::{apply, ensure_version, lock_workspace};
use crate::{
    Actor, Caller, NewRollout, PinAuthority, Result, Rollout, RolloutDetail, RolloutOperation, RolloutTask, Store,
    StoreError, artifacts, environments, stored_environment, stored_key,
};

mod engine;
mod tasks;

pub use engine::{OperationBrief, OperationMove, RolloutPass, RunResult, TaskStart};
use tasks::{SELECT_TASKS, TaskRowDb, tasks_rows};

#[derive(sqlx::FromRow)]
struct RolloutRow {
    id: String,
    workspace_id: String,
    artifact: String,
    value_type: String,
    environment: String,
    version: i64,
    state: String,
    operation_count: i32,
    max_parallel: i32,
    on_failure: String,
    failure_budget: Option<i32>,
    steps: String,
    pinned_revision: Option<i64>,
    created_at: i64,
    updated_at: i64,
    ended_at: Option<i64>,
    created_by_token_id: Option<String>,
    created_by_name: String,
}

const SELECT_ROLLOUTS: &str =
    "SELECT r.id, r.workspace_id, a.key AS artifact, a.value_type, e.name AS environment, r.version, r.state,
            r.operation_count, r.max_parallel, r.on_failure, r.failure_budget, r.steps, r.pinned_revision,
            r.created_at, r.updated_at, r.ended_at, r.created_by_token_id, r.created_by_name
     FROM rollouts r JOIN artifacts a ON a.id = r.artifact_id JOIN environments e ON e.id = r.environment_id";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A count or position stored as INTEGER: a negative one is a corrupt row, never 0.
fn unsigned(n: i32) -> Result<u32> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{n} stored where a count or position belongs")))
}

impl TryFrom<RolloutRow> for Rollout {
    type Error = StoreError;

    fn try_from(row: RolloutRow) -> Result<Self> {
        let policy = RolloutPolicy {
            max_parallel: MaxParallel::parse(unsigned(row.max_parallel)?).map_err(corrupt)?,
            on_failure: row.on_failure.parse().map_err(corrupt)?,
            failure_budget: row
                .failure_budget
                .map(|b| unsigned(b).and_then(|b| FailureBudget::parse(b).map_err(corrupt)))
                .transpose()?,
        };
        Ok(Rollout {
            id: row.id,
            artifact: stored_key(&row.artifact)?,
            value_type: row.value_type.parse().map_err(corrupt)?,
            environment: stored_environment(&row.environment)?,
            version: cutover_domain::VersionNumber::parse("version", row.version).map_err(corrupt)?,
            state: row.state.parse().map_err(corrupt)?,
            policy,
            steps: serde_json::from_str(&row.steps)?,
            operation_count: usize::try_from(row.operation_count).unwrap_or_default(),
            pinned_revision: row.pinned_revision,
            created_at: Timestamp::from_micros(row.created_at),
            updated_at: Timestamp::from_micros(row.updated_at),
            ended_at: row.ended_at.map(Timestamp::from_micros),
            created_by: Actor { token_id: row.created_by_token_id.unwrap_or_default(), name: row.created_by_name },
            workspace_id: row.workspace_id,
        })
    }
}

#[derive(sqlx::FromRow)]
struct OperationRowDb {
    id: String,
    target: String,
    target_config: String,
    position: i32,
    wave: i32,
    state: String,
    on_failure: String,
    pause_released: bool,
    executor_settings: String,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    updated_at: i64,
}

impl OperationRowDb {
    fn into_operation(self, tasks: Vec<RolloutTask>) -> Result<RolloutOperation> {
        Ok(RolloutOperation {
            executor: serde_json::from_str(&self.executor_settings)?,
            target_config: serde_json::from_str(&self.target_config)?,
            position: unsigned(self.position)?,
            wave: unsigned(self.wave)?,
            state: self.state.parse().map_err(corrupt)?,
            on_failure: self.on_failure.parse().map_err(corrupt)?,
            pause_released: self.pause_released,
            started_at: self.started_at.map(Timestamp::from_micros),
            ended_at: self.ended_at.map(Timestamp::from_micros),
            updated_at: Timestamp::from_micros(self.updated_at),
            id: self.id,
            target: self.target,
            tasks,
        })
    }
}

/// The rollout row, in the workspace when one is given (the engine reads across workspaces).
async fn fetch_rollout(conn: &mut Conn<'_>, workspace_id: Option<&str>, id: &str) -> Result<Rollout> {
    let row: Option<RolloutRow> = q!(
        conn,
        fetch_optional,
        sqlx::query_as(&format!("{SELECT_ROLLOUTS} WHERE r.id = $1 AND ($2 IS NULL OR r.workspace_id = $2)"))
            .bind(id)
            .bind(workspace_id)
    )?;
    row.ok_or_else(|| StoreError::NotFound(format!("rollout {id:?}")))?.try_into()
}

/// The rollout with all of its operations and tasks, read on one connection.
async fn fetch_detail(conn: &mut Conn<'_>, workspace_id: Option<&str>, id: &str) -> Result<RolloutDetail> {
    let rollout = fetch_rollout(conn, workspace_id, id).await?;
    let rows: Vec<OperationRowDb> = q!(
        conn,
        fetch_all,
        sqlx::query_as(
            "SELECT id, target, target_config, position, wave, state, on_failure, pause_released, executor_settings,
                    started_at, ended_at, updated_at
             FROM rollout_operations WHERE rollout_id = $1 ORDER BY position"
        )
        .bind(id)
    )?;
    let tasks: Vec<TaskRowDb> = q!(
        conn,
        fetch_all,
        sqlx::query_as(&format!("{SELECT_TASKS} WHERE rollout_id = $1 ORDER BY operation_id, position")).bind(id)
    )?;
    let mut by_operation: std::collections::HashMap<String, Vec<RolloutTask>> = std::collections::HashMap::new();
    for task in tasks_rows(tasks)? {
        by_operation.entry(task.operation_id.clone()).or_default().push(task);
    }
    let operations = rows
        .into_iter()
        .map(|row| {
            let tasks = by_operation.remove(&row.id).unwrap_or_default();
            row.into_operation(tasks)
        })
        .collect::<Result<_>>()?;
    Ok(RolloutDetail { rollout, operations })
}

/// Compare-and-set of a rollout's state; `ended_at` is set when it becomes terminal.
async fn set_rollout_state(conn: &mut Conn<'_>, id: &str, from: RolloutState, to: RolloutState) -> Result<bool> {
    let now = Timestamp::now().as_micros();
    let ended = to.is_terminal().then_some(now);
    let changed = q!(
        conn,
        execute,
        sqlx::query("UPDATE rollouts SET state = $1, updated_at = $2, ended_at = $3 WHERE id = $4 AND state = $5")
            .bind(to.as_str())
            .bind(now)
            .bind(ended)
            .bind(id)
            .bind(from.as_str())
    )?;
    Ok(changed == 1)
}

/// Compare-and-set of an operation's state (and its release flag). An operation that ends
/// (`completed`, `failed`, `cancelled`) takes its tasks that will not run now with it: those
/// still `pending` or `stopped` become `cancelled` (a retry makes them `pending` again).
async fn set_operation(
    conn: &mut Conn<'_>,
    id: &str,
    from: OperationState,
    to: OperationState,
    pause_released: bool,
) -> Result<bool> {
    let now = Timestamp::now().as_micros();
    let changed = q!(
        conn,
        execute,
        sqlx::query(
            "UPDATE rollout_operations SET state = $1, pause_released = $2, updated_at = $3,
                 started_at = CASE WHEN $1 = 'running' AND started_at IS NULL THEN $3 ELSE started_at END,
                 ended_at = CASE WHEN $1 IN ('completed', 'failed', 'cancelled') THEN $3 ELSE NULL END
             WHERE id = $4 AND state = $5"
        )
        .bind(to.as_str())
        .bind(pause_released)
        .bind(now)
        .bind(id)
        .bind(from.as_str())
    )?;
    if changed == 1 && to.is_terminal() {
        q!(
            conn,
            execute,
            sqlx::query(
                "UPDATE rollout_tasks SET state = 'cancelled', updated_at = $1, ended_at = $1
                 WHERE operation_id = $2 AND state IN ('pending', 'stopped')"
            )
            .bind(now)
            .bind(id)
        )?;
    }
    Ok(changed == 1)
}

/// The engine acts for the person who started the rollout; its audit events say so.
fn engine_actor(rollout: &Rollout) -> Actor {
    Actor { token_id: rollout.created_by.token_id.clone(), name: format!("engine for {}", rollout.created_by.name) }
}

impl Store {
    /// Creates a rollout with one operation per deployment target of the environment (in the
    /// targets' order, in waves of `max_parallel`) and one task per step, in one transaction.
    pub async fn create_rollout(&self, caller: &Caller, new: &NewRollout) -> Result<RolloutDetail> {
        let (workspace_id, actor, authority) = (caller.workspace_id.as_str(), &caller.actor, &caller.authority);
        transaction!(self, |tx| {
            tx.effects.engine();
            let artifact = artifacts::fetch_writable(tx, workspace_id, &new.artifact).await?;
            let environment = environments::fetch(tx, workspace_id, &new.environment).await?;
            if let Some(why) = crate::refuses(authority, &environment) {
                return Err(StoreError::Forbidden(why));
            }
            ensure_version(tx, &artifact, new.version.get()).await?;
            let targets = environment.targets.as_slice();
            if targets.is_empty() {
                return Err(StoreError::conflict(format!(
                    "environment {:?} has no deployment targets: add some, or pin the version directly",
                    new.environment
                )));
            }
            let id = new_id();
            let now = Timestamp::now().as_micros();
            q!(
                tx,
                execute,
                sqlx::query(
                    "INSERT INTO rollouts (id, workspace_id, artifact_id, environment_id, version, state, operation_count,
                         max_parallel, on_failure, failure_budget, steps, created_at, updated_at,
                         created_by_token_id, created_by_name)
                     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11, $11, $12, $13)"
                )
                .bind(&id)
                .bind(workspace_id)
                .bind(&artifact.id)
                .bind(&environment.id)
                .bind(new.version.get())
                .bind(i32::try_from(targets.len()).unwrap_or(i32::MAX))
                .bind(i32::try_from(new.policy.max_parallel.get()).unwrap_or(i32::MAX))
                .bind(new.policy.on_failure.as_str())
                .bind(new.policy.failure_budget.map(|b| i32::try_from(b.get()).unwrap_or(i32::MAX)))
                .bind(serde_json::to_string(&new.steps)?)
                .bind(now)
                .bind(&actor.token_id)
                .bind(&actor.name)
            )?;
            let settings = serde_json::to_string(&new.executor)?;
            for (planned, target) in new.policy.plan(targets.len()).iter().zip(targets) {
                let operation_id = new_id();
                q!(
                    tx,
                    execute,
                    sqlx::query(
                        "INSERT INTO rollout_operations (id, rollout_id, target, target_config, position, wave, state,
                             on_failure, executor, executor_settings, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10)"
                    )
                    .bind(&operation_id)
                    .bind(&id)
                    .bind(target.name.as_str())
                    .bind(serde_json::to_string(&target.config)?)
                    .bind(i32::try_from(planned.position).unwrap_or(i32::MAX))
                    .bind(i32::try_from(planned.wave).unwrap_or(i32::MAX))
                    .bind(planned.on_failure.as_str())
                    .bind(new.executor.kind())
                    .bind(&settings)
                    .bind(now)
                )?;
                for (position, step) in new.steps.iter().enumerate() {
                    let task_id = new_id();
                    q!(
                        tx,
                        execute,
                        sqlx::query(
                            "INSERT INTO rollout_tasks (id, rollout_id, operation_id, position, step, state,
                                 idempotency_key, updated_at)
                             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7)"
                        )
                        .bind(&task_id)
                        .bind(&id)
                        .bind(&operation_id)
                        .bind(i32::try_from(position).unwrap_or(i32::MAX))
                        .bind(step)
                        // One key per task for its whole life: every attempt carries the same.
                        .bind(format!("{id}/{}/{step}", target.name.as_str()))
                        .bind(now)
                    )?;
                }
            }
            let detail = fetch_detail(tx, Some(workspace_id), &id).await?;
            record(
                tx,
                workspace_id,
                actor,
                Change::new("rollout.create", AuditObject::Rollout, &id).after(&detail.rollout),
            )
            .await?;
            detail
        })
    }

    /// A rollout of the workspace with its operations and tasks.
    pub async fn get_rollout(&self, workspace_id: &str, id: &str) -> Result<RolloutDetail> {
        read!(self, |conn| fetch_detail(conn, Some(workspace_id), id).await)
    }

    /// The workspace's rollouts, newest first, optionally of one environment or in one state.
    pub async fn list_rollouts(
        &self,
        workspace_id: &str,
        environment: Option<&EnvironmentName>,
        state: Option<RolloutState>,
        limit: u32,
    ) -> Result<Vec<Rollout>> {
        read!(self, |conn| {
            let rows: Vec<RolloutRow> = q!(
                conn,
                fetch_all,
                sqlx::query_as(&format!(
                    "{SELECT_ROLLOUTS}
                     WHERE r.workspace_id = $1 AND ($2 IS NULL OR e.name = $2) AND ($3 IS NULL OR r.state = $3)
                     ORDER BY r.created_at DESC, r.id DESC LIMIT $4"
                ))
                .bind(workspace_id)
                .bind(environment.map(EnvironmentName::as_str))
                .bind(state.map(RolloutState::as_str))
                .bind(i64::from(limit))
            )?;
            rows.into_iter().map(Rollout::try_from).collect()
        })
    }

    /// Applies a person's control (stop, resume, cancel, release, retry): the domain says what it
    /// does to the rollout and each operation; all of it is written in one transaction,
    /// compare-and-set on the state it was checked against. Illegal: 409 naming the state.
    pub async fn rollout_control(&self, caller: &Caller, id: &str, control: RolloutControl) -> Result<RolloutDetail> {
        let (workspace_id, actor, authority) = (caller.workspace_id.as_str(), &caller.actor, &caller.authority);
        transaction!(self, |tx| {
            tx.effects.engine();
            let before = fetch_detail(tx, Some(workspace_id), id).await?;
            let environment = environments::fetch(tx, workspace_id, &before.rollout.environment).await?;
            if let Some(why) = crate::refuses(authority, &environment) {
                return Err(StoreError::Forbidden(why));
            }
            let state = before.rollout.state;
            let to = control.apply(state)?;
            if !set_rollout_state(tx, id, state, to).await? {
                return Err(StoreError::conflict(format!("rollout {id:?} changed while this was decided; try again")));
            }
            for operation in &before.operations {
                let Some(changed) = control.operation_change(&operation.row()) else { continue };
                if !set_operation(tx, &operation.id, operation.state, changed.state, changed.pause_released).await? {
                    return Err(StoreError::conflict(format!(
                        "rollout {id:?} changed while this was decided; try again"
                    )));
                }
                if control == RolloutControl::Retry {
                    // The failed step runs again: same idempotency key, a new attempt.
                    q!(
                        tx,
                        execute,
                        sqlx::query(
                            "UPDATE rollout_tasks SET state = 'pending', run_token = NULL, run_deadline = NULL,
                                 updated_at = $1
                             WHERE operation_id = $2 AND state IN ('failed', 'stopped', 'cancelled')"
                        )
                        .bind(Timestamp::now().as_micros())
                        .bind(&operation.id)
                    )?;
                }
            }
            let after = fetch_detail(tx, Some(workspace_id), id).await?;
            let action = match control {
                RolloutControl::Stop => "rollout.stop",
                RolloutControl::Resume => "rollout.resume",
                RolloutControl::Cancel => "rollout.cancel",
                RolloutControl::Release => "rollout.release",
                RolloutControl::Retry => "rollout.retry",
            };
            record(
                tx,
                workspace_id,
                actor,
                Change::new(action, AuditObject::Rollout, id).before(&before.rollout).after(&after.rollout),
            )
            .await?;
            after
        })
    }

    // ---- the engine's reads and writes ----

    /// Ids of every rollout that is not terminal, or still has operations being stopped: the
    /// engine's work list, read through partial indexes so that it costs the live rollouts, not
    /// the history.
    pub async fn live_rollouts(&self) -> Result<Vec<String>> {
        read!(self, |conn| {
            let rows: Vec<(String,)> = q!(
                conn,
                fetch_all,
                sqlx::query_as(
                    "SELECT id FROM rollouts WHERE state NOT IN ('completed', 'failed', 'cancelled')
                     UNION
                     SELECT DISTINCT rollout_id FROM rollout_operations WHERE state = 'stopping'"
                )
            )?;
            Ok(rows.into_iter().map(|(id,)| id).collect())
        })
    }

    /// Webhook secrets stored in plain text by a version before secrets were encrypted: each is
    /// replaced by what `seal` makes of it, in one transaction. Returns how many were sealed.
    pub async fn seal_plain_webhook_secrets(&self, seal: impl Fn(&str) -> SealedSecret) -> Result<usize> {
        transaction!(self, |tx| {
            let rows: Vec<(String, String)> = q!(
                tx,
                fetch_all,
                sqlx::query_as("SELECT id, executor_settings FROM rollout_operations WHERE executor = 'webhook'")
            )?;
            let mut sealed = 0;
            for (id, settings) in rows {
                let ExecutorSpec::Webhook { url, secret, timeout_seconds } = serde_json::from_str(&settings)? else {
                    continue;
                };
                if secret.is_sealed() {
                    continue;
                }
                let plain: String = serde_json::from_value(serde_json::to_value(&secret)?)?;
                let spec = ExecutorSpec::Webhook { url, secret: seal(&plain), timeout_seconds };
                q!(
                    tx,
                    execute,
                    sqlx::query("UPDATE rollout_operations SET executor_settings = $1 WHERE id = $2")
                        .bind(serde_json::to_string(&spec)?)
                        .bind(&id)
                )?;
                sealed += 1;
            }
            sealed
        })
    }

    /// A rollout with everything, whatever its workspace: for the engine. Read in one
    /// transaction, so that the operation rows are one consistent set.
    pub async fn rollout_for_engine(&self, id: &str) -> Result<RolloutDetail> {
        transaction!(self, |tx| fetch_detail(tx, None, id).await?)
    }
    /// Compare-and-set of an operation's state by the engine.
    pub async fn advance_operation(&self, id: &str, from: OperationState, to: OperationState) -> Result<bool> {
        transaction!(self, |tx| {
            let released: Option<(bool,)> = q!(
                tx,
                fetch_optional,
                sqlx::query_as("SELECT pause_released FROM rollout_operations WHERE id = $1").bind(id)
            )?;
            let released =
                released.is_some_and(|(r,)| r) && matches!(to, OperationState::Paused | OperationState::Failed);
            set_operation(tx, id, from, to, released).await?
        })
    }

    /// Compare-and-set of the rollout's state by the engine. Becoming `completed` moves the pin in
    /// the same transaction (once: the compare-and-set admits one writer).
    pub async fn advance_rollout(&self, id: &str, from: RolloutState, to: RolloutState) -> Result<bool> {
        transaction!(self, |tx| {
            let rollout = fetch_rollout(tx, None, id).await?;
            if to == RolloutState::Completed {
                // Pin writes of a workspace are serialised on its row, before anything is checked.
                lock_workspace(tx, &rollout.workspace_id).await?;
            }
            if !set_rollout_state(tx, id, from, to).await? {
                return Ok(false);
            }
            if to.is_terminal() {
                // Nothing more runs: the operations wind down as a cancel does it (those not
                // running end `cancelled`, running ones are stopped and then end `cancelled`), so
                // no row of a finished rollout looks alive.
                for operation in fetch_detail(tx, None, id).await?.operations {
                    if let Some(changed) = RolloutControl::Cancel.operation_change(&operation.row()) {
                        set_operation(tx, &operation.id, operation.state, changed.state, changed.pause_released)
                            .await?;
                    }
                }
            }
            let actor = engine_actor(&rollout);
            if to == RolloutState::Completed {
                let artifact = artifacts::fetch(tx, &rollout.workspace_id, &rollout.artifact).await?;
                let environment = environments::fetch(tx, &rollout.workspace_id, &rollout.environment).await?;
                let owner = PinAuthority { owner: true, limited_to: Vec::new() };
                let reason = format!("rollout {id} completed");
                let write = apply(
                    tx,
                    &rollout.workspace_id,
                    &actor,
                    &owner,
                    &artifact,
                    &[(environment, Some(rollout.version.get()))],
                    &reason,
                )
                .await?;
                q!(
                    tx,
                    execute,
                    sqlx::query("UPDATE rollouts SET pinned_revision = $1 WHERE id = $2").bind(write.revision).bind(id)
                )?;
            }
            let after = fetch_rollout(tx, None, id).await?;
            let action = match to {
                RolloutState::Completed => "rollout.completed",
                RolloutState::Failed => "rollout.failed",
                RolloutState::Cancelled => "rollout.cancelled",
                _ => "rollout.state",
            };
            record(
                tx,
                &rollout.workspace_id,
                &actor,
                Change::new(action, AuditObject::Rollout, id).before(&rollout).after(&after),
            )
            .await?;
            true
        })
    }
}
