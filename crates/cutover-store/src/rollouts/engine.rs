//! The engine's reads and writes of a rollout, one pass at a time. A pass reads the rollout once
//! ([`Store::rollout_pass`]): every operation as the domain sees it (what derivation and
//! scheduling need), and in full, with their tasks, only the operations in flight (the only
//! ones a pass acts on). Its writes are batched: every operation it moves in one statement
//! ([`Store::move_operations`], [`Store::start_operations`]), every task run it starts in one
//! ([`Store::start_task_runs`]), each row still compare-and-set on the state the pass read, and
//! each run still fenced by the lease token, exactly as one statement per row would be.

use cutover_domain::rollouts::{OperationRow, OperationState, RolloutState, TaskState, bound_log};
use cutover_domain::{Timestamp, TokenHash};

use super::tasks::keep_attempt_logs;
use super::tasks::{SELECT_TASKS, TaskRowDb, tasks_rows};
use super::{OperationRowDb, corrupt, fetch_rollout, unsigned};
use crate::db::{Conn, q, snapshot, transaction};
use crate::{Result, Rollout, RolloutOperation, RolloutTask, Store, TaskOutcome};

/// Rows written by one statement at most: well inside both engines' limits on parameters.
const BATCH: usize = 500;

/// What one pass of the engine reads of a rollout, in one consistent snapshot.
#[derive(Debug, Clone)]
pub struct RolloutPass {
    pub rollout: Rollout,
    /// Every operation, in position order: what the derivation and the scheduler read.
    pub operations: Vec<OperationBrief>,
    /// The operations in flight (`running`, `running_degraded`, `stopping`), in position order,
    /// in full with their tasks.
    pub in_flight: Vec<RolloutOperation>,
}

/// One operation as the derivation and the scheduler see it, with its id.
#[derive(Debug, Clone)]
pub struct OperationBrief {
    pub id: String,
    pub row: OperationRow,
}

/// One operation's state change by the engine: written only if it is still `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationMove {
    pub id: String,
    pub from: OperationState,
    pub to: OperationState,
}

/// One task run to start under the engine's lease.
#[derive(Debug, Clone)]
pub struct TaskStart {
    pub id: String,
    /// Until when the run may execute, wherever it runs (`None`: a manual task, no run).
    pub deadline: Option<Timestamp>,
    /// The hash of the run's callback token (webhook runs).
    pub callback: Option<TokenHash>,
}

/// The result of a run that ended in the engine's process, to record under the run's lease token.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub task_id: String,
    pub token: i64,
    pub outcome: TaskOutcome,
}

/// Results written by one statement at most: a log may be 64 KiB.
const RESULTS_BATCH: usize = 64;

/// An operation row of a pass: the columns only a pass over an operation in flight needs are
/// read for those only.
#[derive(sqlx::FromRow)]
struct PassRowDb {
    id: String,
    target: String,
    target_config: Option<String>,
    position: i32,
    wave: i32,
    state: String,
    on_failure: String,
    pause_released: bool,
    executor_settings: Option<String>,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    updated_at: i64,
}

const IN_FLIGHT: &str = "state IN ('running', 'running_degraded', 'stopping')";

/// `$from, $from+1, …` for `n` parameters.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// `($from, …), (…)`: `rows` tuples of `width` parameters.
fn tuples(from: usize, rows: usize, width: usize) -> String {
    (0..rows).map(|row| format!("({})", placeholders(from + row * width, width))).collect::<Vec<_>>().join(", ")
}

/// The tasks of these operations, by operation, in position order.
async fn tasks_of(conn: &mut Conn<'_>, operation_ids: &[&str]) -> Result<Vec<RolloutTask>> {
    let mut tasks = Vec::new();
    for chunk in operation_ids.chunks(BATCH) {
        let sql = format!(
            "{SELECT_TASKS} WHERE operation_id IN ({}) ORDER BY operation_id, position",
            placeholders(1, chunk.len())
        );
        // Built inside `q!`, once per engine.
        let rows = q!(conn, fetch_all, chunk.iter().fold(sqlx::query_as::<_, TaskRowDb>(&sql), |q, id| q.bind(*id)))?;
        tasks.extend(tasks_rows(rows)?);
    }
    Ok(tasks)
}

/// Gives each operation its tasks.
fn attach(rows: Vec<OperationRowDb>, tasks: Vec<RolloutTask>) -> Result<Vec<RolloutOperation>> {
    let mut by_operation: std::collections::HashMap<String, Vec<RolloutTask>> = std::collections::HashMap::new();
    for task in tasks {
        by_operation.entry(task.operation_id.clone()).or_default().push(task);
    }
    rows.into_iter()
        .map(|row| {
            let tasks = by_operation.remove(&row.id).unwrap_or_default();
            row.into_operation(tasks)
        })
        .collect()
}

/// Moves operations, each only if still in its `from` state, in statements of [`BATCH`] rows;
/// returns the rows moved (in full). An operation that ends takes its tasks that will not run now
/// with it: those still `pending` or `stopped` become `cancelled`.
async fn move_rows(conn: &mut Conn<'_>, rollout_id: &str, moves: &[OperationMove]) -> Result<Vec<OperationRowDb>> {
    let now = Timestamp::now().as_micros();
    let mut moved = Vec::new();
    for chunk in moves.chunks(BATCH) {
        // A pause a person released stays released only while the operation still holds it.
        let sql = format!(
            "UPDATE rollout_operations SET state = v.column3,
                 pause_released = CASE WHEN v.column3 IN ('paused', 'failed')
                     THEN rollout_operations.pause_released ELSE FALSE END,
                 updated_at = $2,
                 started_at = CASE WHEN v.column3 = 'running' AND rollout_operations.started_at IS NULL
                     THEN $2 ELSE rollout_operations.started_at END,
                 ended_at = CASE WHEN v.column3 IN ('completed', 'failed', 'cancelled') THEN $2 ELSE NULL END
             FROM (VALUES {}) AS v
             WHERE rollout_operations.rollout_id = $1 AND rollout_operations.id = v.column1
                 AND rollout_operations.state = v.column2
             RETURNING rollout_operations.id, rollout_operations.target, rollout_operations.target_config,
                 rollout_operations.position, rollout_operations.wave, rollout_operations.state,
                 rollout_operations.on_failure, rollout_operations.pause_released,
                 rollout_operations.executor_settings, rollout_operations.started_at, rollout_operations.ended_at,
                 rollout_operations.updated_at",
            tuples(3, chunk.len(), 3)
        );
        let rows: Vec<OperationRowDb> = q!(
            conn,
            fetch_all,
            chunk.iter().fold(sqlx::query_as(&sql).bind(rollout_id).bind(now), |q, change| {
                q.bind(&change.id).bind(change.from.as_str()).bind(change.to.as_str())
            })
        )?;
        moved.extend(rows);
    }
    let ended: Vec<&str> = moved
        .iter()
        .filter(|row| row.state.parse::<OperationState>().is_ok_and(OperationState::is_terminal))
        .map(|row| row.id.as_str())
        .collect();
    for chunk in ended.chunks(BATCH) {
        let sql = format!(
            "UPDATE rollout_tasks SET state = 'cancelled', updated_at = $1, ended_at = $1
             WHERE operation_id IN ({}) AND state IN ('pending', 'stopped')",
            placeholders(2, chunk.len())
        );
        q!(conn, execute, chunk.iter().fold(sqlx::query(&sql).bind(now), |q, id| q.bind(*id)))?;
    }
    Ok(moved)
}

impl Store {
    /// What one pass of the engine reads of a rollout, whatever its workspace: the rollout, every
    /// operation's state and policy, and the operations in flight with their tasks, from one
    /// snapshot (so that the operations are one consistent set, and the tasks theirs).
    pub async fn rollout_pass(&self, id: &str) -> Result<RolloutPass> {
        snapshot!(self, |conn| {
            let rollout = fetch_rollout(conn, None, id).await?;
            let rows: Vec<PassRowDb> = q!(
                conn,
                fetch_all,
                sqlx::query_as(&format!(
                    "SELECT id, target, CASE WHEN {IN_FLIGHT} THEN target_config END AS target_config, position,
                            wave, state, on_failure, pause_released,
                            CASE WHEN {IN_FLIGHT} THEN executor_settings END AS executor_settings,
                            started_at, ended_at, updated_at
                     FROM rollout_operations WHERE rollout_id = $1 ORDER BY position"
                ))
                .bind(id)
            )?;
            let mut operations = Vec::with_capacity(rows.len());
            let mut in_flight = Vec::new();
            for row in rows {
                let brief = OperationBrief {
                    row: OperationRow {
                        position: unsigned(row.position)?,
                        wave: unsigned(row.wave)?,
                        state: row.state.parse().map_err(corrupt)?,
                        on_failure: row.on_failure.parse().map_err(corrupt)?,
                        pause_released: row.pause_released,
                    },
                    id: row.id.clone(),
                };
                if let (Some(target_config), Some(executor_settings)) = (row.target_config, row.executor_settings) {
                    in_flight.push(OperationRowDb {
                        id: row.id,
                        target: row.target,
                        target_config,
                        position: row.position,
                        wave: row.wave,
                        state: row.state,
                        on_failure: row.on_failure,
                        pause_released: row.pause_released,
                        executor_settings,
                        started_at: row.started_at,
                        ended_at: row.ended_at,
                        updated_at: row.updated_at,
                    });
                }
                operations.push(brief);
            }
            let ids: Vec<&str> = in_flight.iter().map(|row| row.id.as_str()).collect();
            let tasks = if ids.is_empty() { Vec::new() } else { tasks_of(conn, &ids).await? };
            let in_flight = attach(in_flight, tasks)?;
            Ok(RolloutPass { rollout, operations, in_flight })
        })
    }

    /// Moves operations of the rollout, each compare-and-set on its `from` state, in one
    /// transaction; returns the ids of those moved (the others had changed meanwhile).
    pub async fn move_operations(&self, rollout_id: &str, moves: &[OperationMove]) -> Result<Vec<String>> {
        if moves.is_empty() {
            return Ok(Vec::new());
        }
        transaction!(self, |tx| move_rows(tx, rollout_id, moves).await?.into_iter().map(|row| row.id).collect())
    }

    /// Starts operations (to `running`) while the rollout is still `rollout_state` (the state the
    /// scheduler chose them under: a person's stop or cancel committed meanwhile starts none),
    /// each compare-and-set on its `from` state, in one transaction. Returns those started, in
    /// full with their tasks, so that their first tasks can start in the same pass.
    pub async fn start_operations(
        &self,
        rollout_id: &str,
        rollout_state: RolloutState,
        starts: &[OperationMove],
    ) -> Result<Vec<RolloutOperation>> {
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        transaction!(self, |tx| {
            // Takes the rollout's row (PostgreSQL locks it until commit), so that a control
            // cannot change the rollout between this check and the starts.
            let current = q!(
                tx,
                execute,
                sqlx::query("UPDATE rollouts SET state = state WHERE id = $1 AND state = $2")
                    .bind(rollout_id)
                    .bind(rollout_state.as_str())
            )?;
            if current == 0 {
                return Ok(Vec::new());
            }
            let mut rows = move_rows(tx, rollout_id, starts).await?;
            rows.sort_by_key(|row| row.position);
            let ids: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
            let tasks = if ids.is_empty() { Vec::new() } else { tasks_of(tx, &ids).await? };
            attach(rows, tasks)?
        })
    }

    /// Starts runs of tasks under lease `token`, in one statement: each task that is pending,
    /// stopped, or running under an older token whose run can no longer be executing (past its
    /// deadline). Past its deadline, a run under the same token is started again too: its result
    /// was never written (a write that failed), and the task must not stay running for ever.
    /// Every run's log starts empty; a run's callback hash replaces any earlier run's. Returns
    /// the tasks started, after.
    pub async fn start_task_runs(&self, token: i64, starts: &[TaskStart]) -> Result<Vec<RolloutTask>> {
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        let now = Timestamp::now().as_micros();
        transaction!(self, |tx| {
            let mut started = Vec::with_capacity(starts.len());
            for chunk in starts.chunks(BATCH) {
                let sql = format!(
                    "UPDATE rollout_tasks SET state = 'running', run_token = $1, run_deadline = v.column2,
                         attempts = attempts + 1, started_at = $2, ended_at = NULL, updated_at = $2,
                         exit_code = NULL, error = NULL, callback_hash = v.column3, log = ''
                     FROM (VALUES {}) AS v
                     WHERE rollout_tasks.id = v.column1 AND (rollout_tasks.state IN ('pending', 'stopped')
                         OR (rollout_tasks.state = 'running' AND ((rollout_tasks.run_token < $1
                             AND rollout_tasks.run_deadline IS NULL) OR (rollout_tasks.run_token <= $1
                             AND rollout_tasks.run_deadline < $2))))
                     RETURNING rollout_tasks.id, rollout_tasks.operation_id, rollout_tasks.position,
                         rollout_tasks.step, rollout_tasks.state, rollout_tasks.attempts,
                         rollout_tasks.idempotency_key, rollout_tasks.run_token, rollout_tasks.run_deadline,
                         rollout_tasks.exit_code, rollout_tasks.error, CAST(0 AS BIGINT) AS log_bytes,
                         rollout_tasks.started_at, rollout_tasks.ended_at, rollout_tasks.updated_at",
                    tuples(3, chunk.len(), 3)
                );
                let rows: Vec<TaskRowDb> = q!(
                    tx,
                    fetch_all,
                    chunk.iter().fold(sqlx::query_as(&sql).bind(token).bind(now), |q, start| {
                        q.bind(&start.id)
                            .bind(start.deadline.map(Timestamp::as_micros))
                            .bind(start.callback.as_ref().map(TokenHash::as_str))
                    })
                )?;
                started.extend(tasks_rows(rows)?);
            }
            started
        })
    }

    /// Records the results of runs, each once: only while its task is still running under the
    /// run's token (a run that lost its lease records nothing), in one transaction. Returns the
    /// ids of the tasks written.
    pub async fn finish_tasks(&self, results: &[RunResult]) -> Result<Vec<String>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let now = Timestamp::now().as_micros();
        transaction!(self, |tx| {
            let mut written = Vec::with_capacity(results.len());
            for chunk in results.chunks(RESULTS_BATCH) {
                let sql = format!(
                    "UPDATE rollout_tasks SET state = v.column2, exit_code = v.column3, error = v.column4,
                         log = v.column5, ended_at = $1, updated_at = $1
                     FROM (VALUES {}) AS v
                     WHERE rollout_tasks.id = v.column1 AND rollout_tasks.state = 'running'
                         AND rollout_tasks.run_token = v.column6
                     RETURNING rollout_tasks.id",
                    tuples(2, chunk.len(), 6)
                );
                let rows: Vec<(String,)> = q!(
                    tx,
                    fetch_all,
                    chunk.iter().fold(sqlx::query_as(&sql).bind(now), |q, result| {
                        let outcome = &result.outcome;
                        let state = if outcome.succeeded { TaskState::Completed } else { TaskState::Failed };
                        q.bind(&result.task_id)
                            .bind(state.as_str())
                            .bind(outcome.exit_code)
                            .bind(outcome.error.as_deref())
                            .bind(bound_log(&outcome.log))
                            .bind(result.token)
                    })
                )?;
                written.extend(rows.into_iter().map(|(id,)| id));
            }
            let ids: Vec<&str> = written.iter().map(String::as_str).collect();
            for chunk in ids.chunks(BATCH) {
                keep_attempt_logs(tx, chunk).await?;
            }
            written
        })
    }
}
