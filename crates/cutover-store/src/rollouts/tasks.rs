//! The tasks of a rollout (one per step of each operation): starting runs under the engine's
//! lease, recording results once (from the engine, a person, or a webhook's callback) and the
//! bounded output each run leaves.

use cutover_domain::rollouts::{MAX_TASK_LOG_BYTES, TaskState, bound_log};
use cutover_domain::{AuditObject, Timestamp, TokenHash};

use super::{RunResult, TaskStart};
use super::{corrupt, fetch_rollout, unsigned};
use crate::audit::{Change, record};
use crate::db::{Conn, q, read, transaction};
use crate::{Caller, Result, RolloutTask, Store, StoreError, TaskOutcome, environments};

/// Task rows; callers add `WHERE …`.
pub(super) const SELECT_TASKS: &str = "SELECT id, operation_id, position, step, state, attempts, idempotency_key, run_token,
            run_deadline, exit_code, error, CAST(octet_length(log) AS BIGINT) AS log_bytes, started_at, ended_at, updated_at
     FROM rollout_tasks";

#[derive(sqlx::FromRow)]
pub(super) struct TaskRowDb {
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
            position: unsigned(row.position)?,
            step: row.step,
            state: row.state.parse().map_err(corrupt)?,
            attempts: unsigned(row.attempts)?,
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

pub(super) fn tasks_rows(rows: Vec<TaskRowDb>) -> Result<Vec<RolloutTask>> {
    rows.into_iter().map(RolloutTask::try_from).collect()
}

impl Store {
    /// A person reports the result of a running task (the `manual` executor). Only a running task
    /// takes a result, once.
    pub async fn report_task(
        &self,
        caller: &Caller,
        task_id: &str,
        succeeded: bool,
        message: &str,
    ) -> Result<RolloutTask> {
        let (workspace_id, actor, authority) = (caller.workspace_id.as_str(), &caller.actor, &caller.authority);
        cutover_domain::check_text("message", message)?;
        transaction!(self, |tx| {
            tx.effects.engine();
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
            record(tx, workspace_id, actor, Change::new(action, AuditObject::Rollout, &rollout_id).after(&task))
                .await?;
            task
        })
    }

    /// The kept output of a task of a rollout of the workspace: of attempt `attempt` (from 1),
    /// or of the latest when `None`. Not found when the task has no such attempt.
    pub async fn rollout_task_log(
        &self,
        workspace_id: &str,
        rollout_id: &str,
        task_id: &str,
        attempt: Option<u32>,
    ) -> Result<String> {
        read!(self, |conn| {
            let row: Option<(String, i32)> = q!(
                conn,
                fetch_optional,
                sqlx::query_as(
                    "SELECT t.log, t.attempts FROM rollout_tasks t JOIN rollouts r ON r.id = t.rollout_id
                     WHERE t.id = $1 AND t.rollout_id = $2 AND r.workspace_id = $3"
                )
                .bind(task_id)
                .bind(rollout_id)
                .bind(workspace_id)
            )?;
            let Some((latest, attempts)) = row else {
                // Which one is missing, for the error: the rollout, or its task.
                fetch_rollout(conn, Some(workspace_id), rollout_id).await?;
                return Err(StoreError::NotFound(format!("task {task_id:?}")));
            };
            let attempts = unsigned(attempts)?;
            match attempt {
                None => Ok(latest),
                Some(n) if n == 0 || n > attempts => Err(StoreError::NotFound(format!(
                    "attempt {n} of task {task_id:?} (it has run {attempts} time{})",
                    if attempts == 1 { "" } else { "s" }
                ))),
                Some(n) => {
                    let kept: Option<(String,)> = q!(
                        conn,
                        fetch_optional,
                        sqlx::query_as("SELECT log FROM rollout_task_logs WHERE task_id = $1 AND attempt = $2")
                            .bind(task_id)
                            .bind(i32::try_from(n).unwrap_or(i32::MAX))
                    )?;
                    // An attempt that ended without output (or a run that never reported) kept nothing.
                    Ok(kept.map(|(log,)| log).unwrap_or_default())
                }
            }
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
    /// an earlier token stops working. Every run's log starts empty (callbacks append to a
    /// webhook run's); the earlier attempts' stay in `rollout_task_logs`.
    pub async fn start_task_run(
        &self,
        id: &str,
        token: i64,
        deadline: Option<Timestamp>,
        callback: Option<&TokenHash>,
    ) -> Result<Option<RolloutTask>> {
        let start = TaskStart { id: id.to_owned(), deadline, callback: callback.cloned() };
        Ok(self.start_task_runs(token, std::slice::from_ref(&start)).await?.pop())
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
            tx.effects.engine();
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
        let result = RunResult { task_id: id.to_owned(), token, outcome: outcome.clone() };
        Ok(!self.finish_tasks(std::slice::from_ref(&result)).await?.is_empty())
    }

    /// Marks a running task stopped (its run was asked to stop), under `token`. `log` is what
    /// the stopped run printed before it was killed (kept as that attempt's log); `None` keeps
    /// the log as it is (a webhook run's progress, or a task nothing here was running).
    pub async fn stop_task(&self, id: &str, token: Option<i64>, to: TaskState, log: Option<&str>) -> Result<bool> {
        let now = Timestamp::now().as_micros();
        transaction!(self, |tx| {
            let changed = q!(
                tx,
                execute,
                sqlx::query(
                    "UPDATE rollout_tasks SET state = $1, updated_at = $2, ended_at = $2, log = COALESCE($5, log)
                     WHERE id = $3 AND state IN ('running', 'pending') AND ($4 IS NULL OR run_token = $4)"
                )
                .bind(to.as_str())
                .bind(now)
                .bind(id)
                .bind(token)
                .bind(log.map(bound_log))
            )?;
            if changed == 1 {
                keep_attempt_log(tx, id).await?;
            }
            changed == 1
        })
    }
}

/// Copies the task's log into its current attempt's row of `rollout_task_logs`, so that a later
/// attempt (which starts with an empty log) does not replace it.
async fn keep_attempt_log(conn: &mut Conn<'_>, id: &str) -> Result<()> {
    keep_attempt_logs(conn, &[id]).await
}

/// [`keep_attempt_log`] for several tasks, in one statement.
pub(super) async fn keep_attempt_logs(conn: &mut Conn<'_>, ids: &[&str]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let list = (1..=ids.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "INSERT INTO rollout_task_logs (task_id, attempt, log)
         SELECT id, attempts, log FROM rollout_tasks WHERE id IN ({list}) AND attempts > 0
         ON CONFLICT (task_id, attempt) DO UPDATE SET log = excluded.log"
    );
    q!(conn, execute, ids.iter().fold(sqlx::query(&sql), |q, id| q.bind(*id)))?;
    Ok(())
}

/// Appends to the log of the task while `callback` names its running run; `false` otherwise.
async fn append_log(conn: &mut Conn<'_>, id: &str, callback: &TokenHash, text: &str) -> Result<bool> {
    // A receiver's report may carry NUL (JSON `\u0000`), which PostgreSQL's text refuses.
    let text = text.replace('\0', "\u{fffd}");
    let changed = q!(
        conn,
        execute,
        sqlx::query(
            "UPDATE rollout_tasks SET log = log || $1 WHERE id = $2 AND state = 'running' AND callback_hash = $3"
        )
        .bind(&text)
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
        keep_attempt_log(conn, id).await?;
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
    if changed == 1 {
        keep_attempt_log(conn, id).await?;
    }
    Ok(changed == 1)
}
