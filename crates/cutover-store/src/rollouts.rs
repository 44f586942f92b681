//! Rollouts: rows for rollouts, their operations (one per deployment target) and tasks (one per
//! step). What the rows mean (the rollout's state, what may start, what a control does) is the
//! domain's (`cutover_domain::rollouts`); this module reads and writes them, always
//! compare-and-set on the state the caller read, so that replicas and people racing each other
//! never overwrite a state they did not see.

use cutover_domain::rollouts::{
    ExecutorSpec, FailureBudget, MaxParallel, OperationState, RolloutControl, RolloutPolicy, RolloutState, TaskState,
};
use cutover_domain::secrets::SealedSecret;
use cutover_domain::{Timestamp, TokenHash};

use crate::audit::{Change, record};
use crate::db::{Conn, new_id, q, read, transaction};
use crate::pins::{apply, ensure_version, lock_workspace};
use crate::{
    Actor, NewRollout, PinAuthority, Result, Rollout, RolloutDetail, RolloutOperation, RolloutTask, Store, StoreError,
    TaskOutcome, artifacts, environments,
};

/// Most bytes of a task's log kept: the head and the tail of the output.
pub const MAX_TASK_LOG_BYTES: usize = 64 * 1024;

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

/// Task rows; callers add `WHERE …`.
const SELECT_TASKS: &str = "SELECT id, operation_id, position, step, state, attempts, idempotency_key, run_token,
            run_deadline, exit_code, error, CAST(octet_length(log) AS BIGINT) AS log_bytes, started_at, ended_at, updated_at
     FROM rollout_tasks";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn unsigned(n: i32) -> u32 {
    u32::try_from(n).unwrap_or_default()
}

impl TryFrom<RolloutRow> for Rollout {
    type Error = StoreError;

    fn try_from(row: RolloutRow) -> Result<Self> {
        let policy = RolloutPolicy {
            max_parallel: MaxParallel::parse(unsigned(row.max_parallel)).map_err(corrupt)?,
            on_failure: row.on_failure.parse().map_err(corrupt)?,
            failure_budget: row
                .failure_budget
                .map(|b| FailureBudget::parse(unsigned(b)))
                .transpose()
                .map_err(corrupt)?,
        };
        Ok(Rollout {
            id: row.id,
            artifact: row.artifact,
            value_type: row.value_type.parse().map_err(corrupt)?,
            environment: row.environment,
            version: row.version,
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

#[derive(sqlx::FromRow)]
struct TaskRowDb {
    id: String,
    operation_id: String,
    position: i32,
    step: String,
    state: String,
    attempts: i32,
    idempotency_key: String,
    run_token: Option<i64>,
    run_deadline: Option<i64>,
    exit_code: Option<i32>,
    error: Option<String>,
    log_bytes: i64,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    updated_at: i64,
}

impl TryFrom<TaskRowDb> for RolloutTask {
    type Error = StoreError;

    fn try_from(row: TaskRowDb) -> Result<Self> {
        Ok(RolloutTask {
            id: row.id,
            operation_id: row.operation_id,
            position: unsigned(row.position),
            step: row.step,
            state: row.state.parse().map_err(corrupt)?,
            attempts: unsigned(row.attempts),
            idempotency_key: row.idempotency_key,
            run_token: row.run_token,
            run_deadline: row.run_deadline.map(Timestamp::from_micros),
            exit_code: row.exit_code,
            error: row.error,
            log_bytes: usize::try_from(row.log_bytes).unwrap_or_default(),
            started_at: row.started_at.map(Timestamp::from_micros),
            ended_at: row.ended_at.map(Timestamp::from_micros),
            updated_at: Timestamp::from_micros(row.updated_at),
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
    let mut operations = Vec::with_capacity(rows.len());
    for row in rows {
        let executor: ExecutorSpec = serde_json::from_str(&row.executor_settings)?;
        operations.push(RolloutOperation {
            tasks: by_operation.remove(&row.id).unwrap_or_default(),
            id: row.id,
            target: row.target,
            target_config: serde_json::from_str(&row.target_config)?,
            position: unsigned(row.position),
            wave: unsigned(row.wave),
            state: row.state.parse().map_err(corrupt)?,
            on_failure: row.on_failure.parse().map_err(corrupt)?,
            pause_released: row.pause_released,
            executor,
            started_at: row.started_at.map(Timestamp::from_micros),
            ended_at: row.ended_at.map(Timestamp::from_micros),
            updated_at: Timestamp::from_micros(row.updated_at),
        });
    }
    Ok(RolloutDetail { rollout, operations })
}

fn tasks_rows(rows: Vec<TaskRowDb>) -> Result<Vec<RolloutTask>> {
    rows.into_iter().map(RolloutTask::try_from).collect()
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

/// Compare-and-set of an operation's state (and its release flag).
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
    Ok(changed == 1)
}

/// The engine acts for the person who started the rollout; its audit events say so.
fn engine_actor(rollout: &Rollout) -> Actor {
    Actor { token_id: rollout.created_by.token_id.clone(), name: format!("engine for {}", rollout.created_by.name) }
}

/// Keeps the head and the tail of a long log, at most [`MAX_TASK_LOG_BYTES`], on char boundaries.
pub fn bound_log(log: &str) -> String {
    if log.len() <= MAX_TASK_LOG_BYTES {
        return log.to_owned();
    }
    let half = MAX_TASK_LOG_BYTES / 2;
    let mut head = half;
    while !log.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = log.len() - half;
    while !log.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}\n[… {} bytes cut …]\n{}", &log[..head], tail - head, &log[tail..])
}

impl Store {
    /// Creates a rollout with one operation per deployment target of the environment (in the
    /// targets' order, in waves of `max_parallel`) and one task per step, in one transaction.
    pub async fn create_rollout(
        &self,
        workspace_id: &str,
        actor: &Actor,
        authority: &PinAuthority,
        new: &NewRollout,
    ) -> Result<RolloutDetail> {
        transaction!(self, |tx| {
            let artifact = artifacts::fetch(tx, workspace_id, &new.artifact).await?;
            let environment = environments::fetch(tx, workspace_id, &new.environment).await?;
            if let Some(why) = crate::refuses(authority, &environment) {
                return Err(StoreError::Forbidden(why));
            }
            ensure_version(tx, &artifact, new.version).await?;
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
                .bind(new.version)
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
            record(tx, workspace_id, actor, Change::new("rollout.create", "rollout", &id).after(&detail.rollout))
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
        environment: Option<&str>,
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
                .bind(environment)
                .bind(state.map(RolloutState::as_str))
                .bind(i64::from(limit))
            )?;
            rows.into_iter().map(Rollout::try_from).collect()
        })
    }

    /// Applies a person's control (stop, resume, cancel, release, retry): the domain says what it
    /// does to the rollout and each operation; all of it is written in one transaction,
    /// compare-and-set on the state it was checked against. Illegal: 409 naming the state.
    pub async fn rollout_control(
        &self,
        workspace_id: &str,
        actor: &Actor,
        authority: &PinAuthority,
        id: &str,
        control: RolloutControl,
    ) -> Result<RolloutDetail> {
        transaction!(self, |tx| {
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
                Change::new(action, "rollout", id).before(&before.rollout).after(&after.rollout),
            )
            .await?;
            after
        })
    }

    /// A person reports the result of a running task (the `manual` executor). Only a running task
    /// takes a result, once.
    pub async fn report_task(
        &self,
        workspace_id: &str,
        actor: &Actor,
        authority: &PinAuthority,
        task_id: &str,
        succeeded: bool,
        message: &str,
    ) -> Result<RolloutTask> {
        cutover_domain::check_text("message", message)?;
        transaction!(self, |tx| {
            let found: Option<(String, String)> = q!(
                tx,
                fetch_optional,
                sqlx::query_as(
                    "SELECT t.rollout_id, t.state FROM rollout_tasks t JOIN rollouts r ON r.id = t.rollout_id
                     WHERE t.id = $1 AND r.workspace_id = $2"
                )
                .bind(task_id)
                .bind(workspace_id)
            )?;
            let (rollout_id, state) = found.ok_or_else(|| StoreError::NotFound(format!("task {task_id:?}")))?;
            let rollout = fetch_rollout(tx, Some(workspace_id), &rollout_id).await?;
            let environment = environments::fetch(tx, workspace_id, &rollout.environment).await?;
            if let Some(why) = crate::refuses(authority, &environment) {
                return Err(StoreError::Forbidden(why));
            }
            if state != TaskState::Running.as_str() {
                return Err(StoreError::Conflict {
                    message: format!("task {task_id:?} is {state}: only a running task takes a result"),
                    details: Some(serde_json::json!({"state": state})),
                });
            }
            let outcome = TaskOutcome {
                succeeded,
                exit_code: None,
                error: (!succeeded)
                    .then(|| if message.is_empty() { "failed by a person".into() } else { message.into() }),
                log: message.to_owned(),
            };
            finish(tx, task_id, None, &outcome).await?;
            let task = fetch_task(tx, task_id).await?;
            let action = if succeeded { "rollout.task.complete" } else { "rollout.task.fail" };
            record(tx, workspace_id, actor, Change::new(action, "rollout", &rollout_id).after(&task)).await?;
            task
        })
    }

    /// The kept output of a task of a rollout of the workspace.
    pub async fn rollout_task_log(&self, workspace_id: &str, rollout_id: &str, task_id: &str) -> Result<String> {
        read!(self, |conn| {
            let row: Option<(String,)> = q!(
                conn,
                fetch_optional,
                sqlx::query_as(
                    "SELECT t.log FROM rollout_tasks t JOIN rollouts r ON r.id = t.rollout_id
                     WHERE t.id = $1 AND t.rollout_id = $2 AND r.workspace_id = $3"
                )
                .bind(task_id)
                .bind(rollout_id)
                .bind(workspace_id)
            )?;
            match row {
                Some((log,)) => Ok(log),
                None => {
                    // Which one is missing, for the error: the rollout, or its task.
                    fetch_rollout(conn, Some(workspace_id), rollout_id).await?;
                    Err(StoreError::NotFound(format!("task {task_id:?}")))
                }
            }
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

    /// Takes or renews the lease on `resource` for `owner` until `ttl` from now. Returns the
    /// lease's token when held: it grows whenever the holder changes, so that a write carrying an
    /// older token can be refused. `None`: another owner holds an unexpired lease.
    pub async fn acquire_lease(&self, resource: &str, owner: &str, ttl: std::time::Duration) -> Result<Option<i64>> {
        let now = Timestamp::now().as_micros();
        let expires = now.saturating_add(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX));
        transaction!(self, |tx| {
            let token: Option<(i64,)> = q!(
                tx,
                fetch_optional,
                sqlx::query_as(
                    "INSERT INTO leases (resource, owner, token, expires_at) VALUES ($1, $2, 1, $3)
                     ON CONFLICT (resource) DO UPDATE SET
                         token = CASE WHEN leases.owner = excluded.owner THEN leases.token ELSE leases.token + 1 END,
                         owner = excluded.owner,
                         expires_at = excluded.expires_at
                     WHERE leases.owner = excluded.owner OR leases.expires_at < $4
                     RETURNING token"
                )
                .bind(resource)
                .bind(owner)
                .bind(expires)
                .bind(now)
            )?;
            token.map(|(t,)| t)
        })
    }

    /// Gives a lease up (at shutdown, or when its work is done), if `owner` still holds it.
    pub async fn release_lease(&self, resource: &str, owner: &str) -> Result<()> {
        transaction!(self, |tx| {
            q!(
                tx,
                execute,
                sqlx::query("DELETE FROM leases WHERE resource = $1 AND owner = $2").bind(resource).bind(owner)
            )?;
        })
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
                    &[(environment, Some(rollout.version))],
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
                Change::new(action, "rollout", id).before(&rollout).after(&after),
            )
            .await?;
            true
        })
    }

    /// Starts a run of a task under lease `token`: pending, stopped, or running under an older
    /// token whose run can no longer be executing (past its deadline). Past its deadline, a run
    /// under the same token is started again too: its result was never written (a write that
    /// failed), and the task must not stay running for ever. Returns the task after.
    pub async fn start_task(&self, id: &str, token: i64, deadline: Option<Timestamp>) -> Result<Option<RolloutTask>> {
        self.start_task_run(id, token, deadline, None).await
    }

    /// [`Store::start_task`], for a run whose results come back through the callback endpoint:
    /// `callback` is the hash of the run's callback token. It replaces any earlier run's, so
    /// an earlier token stops working; such a run's log starts empty, as callbacks append to it.
    pub async fn start_task_run(
        &self,
        id: &str,
        token: i64,
        deadline: Option<Timestamp>,
        callback: Option<&TokenHash>,
    ) -> Result<Option<RolloutTask>> {
        let now = Timestamp::now().as_micros();
        transaction!(self, |tx| {
            let changed = q!(
                tx,
                execute,
                sqlx::query(
                    "UPDATE rollout_tasks SET state = 'running', run_token = $1, run_deadline = $2,
                         attempts = attempts + 1, started_at = $3, ended_at = NULL, updated_at = $3,
                         exit_code = NULL, error = NULL, callback_hash = $5,
                         log = CASE WHEN $5 IS NULL THEN log ELSE '' END
                     WHERE id = $4 AND (state IN ('pending', 'stopped') OR (state = 'running'
                         AND ((run_token < $1 AND run_deadline IS NULL) OR (run_token <= $1 AND run_deadline < $3))))"
                )
                .bind(token)
                .bind(deadline.map(Timestamp::as_micros))
                .bind(now)
                .bind(id)
                .bind(callback.map(TokenHash::as_str))
            )?;
            if changed == 1 { Some(fetch_task(tx, id).await?) } else { None }
        })
    }

    /// The callback hash of a task of the rollout (`None` before its first webhook run);
    /// not found when the rollout has no such task.
    pub async fn task_callback_hash(&self, rollout_id: &str, task_id: &str) -> Result<Option<TokenHash>> {
        read!(self, |conn| {
            let row: Option<(Option<String>,)> = q!(
                conn,
                fetch_optional,
                sqlx::query_as("SELECT callback_hash FROM rollout_tasks WHERE id = $1 AND rollout_id = $2")
                    .bind(task_id)
                    .bind(rollout_id)
            )?;
            let (hash,) = row.ok_or_else(|| StoreError::NotFound(format!("task {task_id:?}")))?;
            Ok(hash.map(TokenHash::from_stored))
        })
    }

    /// Appends a webhook run's progress to its task's log (bounded), while that run, named by its
    /// callback hash, is the task's running one. Conflict otherwise.
    pub async fn webhook_progress(&self, task_id: &str, callback: &TokenHash, text: &str) -> Result<RolloutTask> {
        transaction!(self, |tx| {
            if !append_log(tx, task_id, callback, text).await? {
                return Err(not_running(tx, task_id).await?);
            }
            q!(
                tx,
                execute,
                sqlx::query("UPDATE rollout_tasks SET updated_at = $1 WHERE id = $2")
                    .bind(Timestamp::now().as_micros())
                    .bind(task_id)
            )?;
            fetch_task(tx, task_id).await?
        })
    }

    /// Records a webhook run's result once, while that run (named by its callback hash) is the
    /// task's running one; `outcome.log` is appended to the progress already logged. Conflict
    /// when the task already has a result or another run started.
    pub async fn webhook_result(
        &self,
        task_id: &str,
        callback: &TokenHash,
        outcome: &TaskOutcome,
    ) -> Result<RolloutTask> {
        transaction!(self, |tx| {
            // The append takes the row (PostgreSQL locks it until commit), so the log read next
            // cannot miss a concurrent progress report.
            if !append_log(tx, task_id, callback, &outcome.log).await? {
                return Err(not_running(tx, task_id).await?);
            }
            let log = fetch_log(tx, task_id).await?;
            let outcome = TaskOutcome { log, ..outcome.clone() };
            if !finish(tx, task_id, None, &outcome).await? {
                return Err(not_running(tx, task_id).await?);
            }
            fetch_task(tx, task_id).await?
        })
    }

    /// Records a run's result, once: only while the task is still running under `token`.
    pub async fn finish_task(&self, id: &str, token: i64, outcome: &TaskOutcome) -> Result<bool> {
        transaction!(self, |tx| finish(tx, id, Some(token), outcome).await?)
    }

    /// Marks a running task stopped (its run was asked to stop), under `token`.
    pub async fn stop_task(&self, id: &str, token: Option<i64>, to: TaskState) -> Result<bool> {
        let now = Timestamp::now().as_micros();
        transaction!(self, |tx| {
            let changed = q!(
                tx,
                execute,
                sqlx::query(
                    "UPDATE rollout_tasks SET state = $1, updated_at = $2, ended_at = $2
                     WHERE id = $3 AND state IN ('running', 'pending') AND ($4 IS NULL OR run_token = $4)"
                )
                .bind(to.as_str())
                .bind(now)
                .bind(id)
                .bind(token)
            )?;
            changed == 1
        })
    }
}

/// Appends to the log of the task while `callback` names its running run; `false` otherwise.
async fn append_log(conn: &mut Conn<'_>, id: &str, callback: &TokenHash, text: &str) -> Result<bool> {
    let changed = q!(
        conn,
        execute,
        sqlx::query(
            "UPDATE rollout_tasks SET log = log || $1 WHERE id = $2 AND state = 'running' AND callback_hash = $3"
        )
        .bind(text)
        .bind(id)
        .bind(callback.as_str())
    )?;
    if changed == 1 {
        let log = fetch_log(conn, id).await?;
        if log.len() > MAX_TASK_LOG_BYTES {
            q!(
                conn,
                execute,
                sqlx::query("UPDATE rollout_tasks SET log = $1 WHERE id = $2").bind(bound_log(&log)).bind(id)
            )?;
        }
    }
    Ok(changed == 1)
}

/// Why a report on a task is refused: it is not running (under the reporter's run).
async fn not_running(conn: &mut Conn<'_>, id: &str) -> Result<StoreError> {
    let task = fetch_task(conn, id).await?;
    let state = task.state.as_str();
    let message = if task.state == TaskState::Running {
        format!("task {id:?} is running another attempt: this run's result is no longer taken")
    } else {
        format!("task {id:?} is {state}: only a running task takes a result")
    };
    Ok(StoreError::Conflict { message, details: Some(serde_json::json!({"state": state})) })
}

/// A task's kept output: read only where it is needed, never with rollouts (it may be 64 KiB a task).
async fn fetch_log(conn: &mut Conn<'_>, id: &str) -> Result<String> {
    let row: Option<(String,)> =
        q!(conn, fetch_optional, sqlx::query_as("SELECT log FROM rollout_tasks WHERE id = $1").bind(id))?;
    Ok(row.ok_or_else(|| StoreError::NotFound(format!("task {id:?}")))?.0)
}

async fn fetch_task(conn: &mut Conn<'_>, id: &str) -> Result<RolloutTask> {
    let row: Option<TaskRowDb> =
        q!(conn, fetch_optional, sqlx::query_as(&format!("{SELECT_TASKS} WHERE id = $1")).bind(id))?;
    row.ok_or_else(|| StoreError::NotFound(format!("task {id:?}")))?.try_into()
}

/// Writes a result while the task is running (under `token` when given). `true` when written.
async fn finish(conn: &mut Conn<'_>, id: &str, token: Option<i64>, outcome: &TaskOutcome) -> Result<bool> {
    let now = Timestamp::now().as_micros();
    let state = if outcome.succeeded { TaskState::Completed } else { TaskState::Failed };
    let changed = q!(
        conn,
        execute,
        sqlx::query(
            "UPDATE rollout_tasks SET state = $1, exit_code = $2, error = $3, log = $4, ended_at = $5, updated_at = $5
             WHERE id = $6 AND state = 'running' AND ($7 IS NULL OR run_token = $7)"
        )
        .bind(state.as_str())
        .bind(outcome.exit_code)
        .bind(outcome.error.as_deref())
        .bind(bound_log(&outcome.log))
        .bind(now)
        .bind(id)
        .bind(token)
    )?;
    Ok(changed == 1)
}
