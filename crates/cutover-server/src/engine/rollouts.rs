//! The rollout reconciler. For each live rollout whose lease this replica holds, one pass reads
//! the rollout once (every operation's state, and in full only the operations in flight with
//! their tasks: `Store::rollout_pass`), then:
//!
//! 1. drives each running operation through its tasks in order: its next task is to start (a
//!    run under the lease's token, or a takeover of a run orphaned by a crash once its deadline
//!    has passed), or the operation settles when its last task completed or one failed;
//! 2. settles operations being stopped once nothing of theirs runs;
//! 3. writes those settlements in one statement, and derives the rollout's state from the rows
//!    read with its own writes applied (each compare-and-set on what it read; a person's control
//!    meanwhile changed the rollout's state, which the compare-and-set of the derived state then
//!    refuses); the pin moves in the same transaction on completion;
//! 4. starts the operations the scheduler allows (waves, `max_parallel`) in one statement, and
//!    every task run of the pass in one more.
//!
//! A pass's cost so grows with the operations in flight and the changes it makes, not with the
//! rollout's size beyond one narrow read of its operation rows.
//!
//! Task runs execute in this process; their results are written by the next pass, all in one
//! statement, each under its run's lease token, so a run that lost its lease cannot record over
//! a newer one (a crash before that write loses the result like a crash during the run: the task
//! runs again, with the same idempotency key, once its deadline has passed). A webhook run's result arrives through the
//! callback endpoint (on any replica) and is fenced by the run's callback token instead; once its
//! task has a result, the run here has nothing left to do and is dropped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cutover_domain::Timestamp;
use cutover_domain::rollouts::{
    CallbackToken, ExecutorSpec, OperationRow, OperationState, RolloutRead, TaskState, WebhookSecret, derive_state,
    halted_operation_state, startable,
};
use cutover_store::{
    OperationMove, Rollout, RolloutOperation, RolloutPass, RolloutTask, RunResult, Store, TaskOutcome, TaskStart,
};
use serde_json::Value;
use tokio::sync::{Notify, OnceCell, watch};

use super::admission::Admission;
use super::executors::{RunEnd, TaskContext, run_command};
use super::webhook::{Webhook, run_webhook};
use super::{EngineConfig, Reconciler};
use crate::config::ExecutorConfig;

/// Extra time after a run's timeout before another replica may consider it dead.
const DEADLINE_GRACE: Duration = Duration::from_secs(5);

struct LocalRun {
    rollout: String,
    token: i64,
    /// A webhook run only waits for its receiver: it is dropped, not stopped, at shutdown.
    webhook: bool,
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

/// What one run executes.
enum Runnable {
    Command(ExecutorConfig),
    Webhook { url: String, secret: WebhookSecret },
}

/// Drives rollouts.
pub struct RolloutReconciler {
    store: Store,
    /// This process, as lease owner: unique per start, so that a restarted replica waits for
    /// its previous self's leases to expire like anyone else.
    owner: String,
    config: EngineConfig,
    wake: Arc<Notify>,
    /// Task runs executing in this process, by task id.
    runs: Arc<Mutex<HashMap<String, LocalRun>>>,
    /// Results of runs that ended here, written by the next pass, all in one statement (each
    /// under its run's lease token).
    results: Arc<Mutex<Vec<RunResult>>>,
    /// Leases held, by rollout id: released when the rollout ends or at shutdown.
    held: Mutex<HashMap<String, i64>>,
    /// Base of the callback URLs sent to webhook receivers.
    public_url: String,
    /// Delivers webhooks; redirects are not followed (a 3xx fails the task), names resolve
    /// through the address policy.
    client: reqwest::Client,
    /// The declared executors, the address policy and the key webhook secrets are sealed with.
    admission: Arc<Admission>,
    /// Rollouts whose pin move waits for a pool to warm their version, since when.
    warming: Mutex<HashMap<String, std::time::Instant>>,
}

impl RolloutReconciler {
    pub fn new(
        store: Store,
        config: EngineConfig,
        wake: Arc<Notify>,
        public_url: String,
        admission: Arc<Admission>,
    ) -> anyhow::Result<Self> {
        let client = super::webhook::client(&admission)?;
        Ok(Self {
            public_url,
            client,
            admission,
            store,
            owner: format!("replica-{}", uuid::Uuid::now_v7()),
            config,
            wake,
            runs: Arc::default(),
            results: Arc::default(),
            held: Mutex::default(),
            warming: Mutex::default(),
        })
    }

    /// Whether the pin move of a rollout about to complete waits for a pool: one in its
    /// environment, of its artifact, that has fewer ready instances of the version than it keeps
    /// of the pinned one, and can still get there (not paused, the version's starts not at the
    /// failure limit). The wait lasts at most the pool's build timeout plus a minute, then the pin
    /// moves anyway (logged): a pool never holds a release back for good.
    async fn waits_for_pools(&self, rollout: &Rollout) -> anyhow::Result<bool> {
        let now = Timestamp::now();
        for pool in self.store.list_pools(&rollout.workspace_id).await? {
            if pool.artifact != rollout.artifact || pool.environment != rollout.environment {
                continue;
            }
            let work = self.store.pool_work(&pool.id, now).await?;
            let warmth = cutover_domain::pools::warmth(&work.snapshot, rollout.version.get());
            if !warmth.worth_waiting() {
                continue;
            }
            let since = *self
                .warming
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(rollout.id.clone())
                .or_insert_with(|| {
                    tracing::info!(rollout = %rollout.id, pool = %pool.name, ready = warmth.ready, wanted = warmth.wanted,
                        "every target is done; the pin moves once the pool is warm");
                    std::time::Instant::now()
                });
            let limit = Duration::from_secs(u64::from(pool.timeout_seconds) + 60);
            if since.elapsed() < limit {
                return Ok(true);
            }
            tracing::warn!(rollout = %rollout.id, pool = %pool.name, ready = warmth.ready, wanted = warmth.wanted,
                "the pool did not warm the version in time; moving the pin anyway");
        }
        self.warming.lock().unwrap_or_else(PoisonError::into_inner).remove(&rollout.id);
        Ok(false)
    }

    /// Writes the results of the runs that ended here since the last pass, in one transaction.
    /// Those the store refuses (the run lost its lease, or the task was settled otherwise) are
    /// dropped; after a failed write all are kept for the next pass.
    async fn record_results(&self) -> anyhow::Result<()> {
        let results = std::mem::take(&mut *self.results.lock().unwrap_or_else(PoisonError::into_inner));
        match self.store.finish_tasks(&results).await {
            Ok(written) => {
                if written.len() < results.len() {
                    for result in results.iter().filter(|r| !written.contains(&r.task_id)) {
                        tracing::info!(
                            task = result.task_id,
                            "the task has a result or a newer run; this run's is not recorded"
                        );
                    }
                }
                Ok(())
            }
            Err(e) => {
                let mut pending = self.results.lock().unwrap_or_else(PoisonError::into_inner);
                let newer = std::mem::replace(&mut *pending, results);
                pending.extend(newer);
                Err(e.into())
            }
        }
    }

    fn lease_name(id: &str) -> String {
        format!("rollout:{id}")
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, LocalRun>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn runs_here(&self, task: &RolloutTask, token: i64) -> bool {
        self.runs().get(&task.id).is_some_and(|run| run.token == token && !run.handle.is_finished())
    }

    async fn reconcile_rollout(&self, id: &str) -> anyhow::Result<()> {
        let Some(token) = self.store.acquire_lease(&Self::lease_name(id), &self.owner, self.config.lease).await? else {
            self.held.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
            return Ok(());
        };
        self.held.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_owned(), token);
        let pass = self.store.rollout_pass(id).await?;
        self.drop_settled_webhook_runs(&pass);
        let rollout = &pass.rollout;

        // 1–2. What each operation in flight needs: a task started, or the operation settled.
        let mut moves = Vec::new();
        let mut starts = Vec::new();
        for operation in &pass.in_flight {
            match operation.state {
                OperationState::Running | OperationState::RunningDegraded => match self.next_step(operation, token) {
                    Step::Settle(to) => {
                        moves.push(OperationMove { id: operation.id.clone(), from: operation.state, to });
                    }
                    Step::Start(task) => starts.push((operation, task)),
                    Step::Wait => {}
                },
                OperationState::Stopping => {
                    if let Some(to) = self.settle_stopping(operation, rollout.state, token).await? {
                        moves.push(OperationMove { id: operation.id.clone(), from: OperationState::Stopping, to });
                    }
                }
                _ => {}
            }
        }
        // The rows as they stand after this pass's moves: what was read, and what was written
        // over it (each move compare-and-set on what was read).
        let mut rows: Vec<OperationRow> = pass.operations.iter().map(|o| o.row).collect();
        if !moves.is_empty() {
            let index: HashMap<&str, usize> =
                pass.operations.iter().enumerate().map(|(i, o)| (o.id.as_str(), i)).collect();
            for moved in self.store.move_operations(id, &moves).await? {
                let Some(change) = moves.iter().find(|m| m.id == moved) else { continue };
                if let Some(row) = index.get(moved.as_str()).map(|&i| &mut rows[i]) {
                    row.pause_released &= matches!(change.to, OperationState::Paused | OperationState::Failed);
                    row.state = change.to;
                }
            }
        }

        // 3. The rollout's state from every operation row. A person's control committed since the
        // read changed the rollout's state, so the compare-and-set below refuses a state derived
        // from rows it did not see.
        let read = RolloutRead {
            stored: rollout.state,
            expected_operations: rollout.operation_count,
            operations: &rows,
            failure_budget: rollout.policy.failure_budget,
        };
        let mut state = rollout.state;
        if let Some(to) = derive_state(&read).change_from(state) {
            if to == cutover_domain::rollouts::RolloutState::Completed && self.waits_for_pools(rollout).await? {
                // Re-checked every tick until warm (or the wait's limit).
                return Ok(());
            }
            if self.store.advance_rollout(id, state, to).await? {
                // A pin moved on completion is announced by the store's effects.
                tracing::info!(rollout = id, from = %state, to = %to, "rollout state");
                state = to;
            } else {
                // Someone else moved it (a person's control): the next pass re-reads.
                self.wake.notify_one();
                return Ok(());
            }
        }
        if state.is_terminal() {
            self.stop_local_runs(id);
            self.store.release_lease(&Self::lease_name(id), &self.owner).await?;
            self.held.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
            return Ok(());
        }

        // 4. The operations the scheduler allows start, and their first tasks with the others.
        let read = RolloutRead { stored: state, ..read };
        let chosen: Vec<OperationMove> = startable(&read, rollout.policy.max_parallel)
            .into_iter()
            .map(|i| OperationMove {
                id: pass.operations[i].id.clone(),
                from: rows[i].state,
                to: OperationState::Running,
            })
            .collect();
        let started = self.store.start_operations(id, state, &chosen).await?;
        for operation in &started {
            if let Step::Start(task) = self.next_step(operation, token) {
                starts.push((operation, task));
            }
        }
        self.start(rollout, token, &starts).await
    }

    /// What a running operation needs next: its first unfinished task started (or taken over from
    /// a run orphaned by a crash or a lost lease: the store lets it start again only once the old
    /// run's deadline has passed, so it never runs twice at once), or the operation settled.
    fn next_step<'a>(&self, operation: &'a RolloutOperation, token: i64) -> Step<'a> {
        let Some(task) = operation.tasks.iter().find(|t| t.state != TaskState::Completed) else {
            return Step::Settle(OperationState::Completed);
        };
        match task.state {
            TaskState::Failed | TaskState::Cancelled => Step::Settle(OperationState::Failed),
            TaskState::Pending | TaskState::Stopped => Step::Start(task),
            TaskState::Running => {
                let manual = matches!(operation.executor, ExecutorSpec::Manual {});
                if !manual && !self.runs_here(task, token) { Step::Start(task) } else { Step::Wait }
            }
            TaskState::Completed => Step::Wait,
        }
    }

    /// Starts runs of these tasks under the lease, in one write, then executes each here.
    async fn start(
        &self,
        rollout: &Rollout,
        token: i64,
        tasks: &[(&RolloutOperation, &RolloutTask)],
    ) -> anyhow::Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        let mut callbacks = HashMap::new();
        let starts: Vec<TaskStart> = tasks
            .iter()
            .map(|(operation, task)| {
                let timeout = operation.executor.timeout_seconds().map(|s| Duration::from_secs(u64::from(s)));
                let deadline = timeout.map(|t| {
                    let micros = i64::try_from((t + DEADLINE_GRACE).as_micros()).unwrap_or(i64::MAX);
                    Timestamp::from_micros(Timestamp::now().as_micros().saturating_add(micros))
                });
                // Every webhook run gets its own callback token: an earlier run's stops working.
                let callback = matches!(operation.executor, ExecutorSpec::Webhook { .. }).then(CallbackToken::generate);
                let hash = callback.as_ref().map(CallbackToken::hash);
                if let Some(callback) = callback {
                    callbacks.insert(task.id.clone(), callback);
                }
                TaskStart { id: task.id.clone(), deadline, callback: hash }
            })
            .collect();
        let operations: HashMap<&str, &RolloutOperation> = tasks.iter().map(|(o, _)| (o.id.as_str(), *o)).collect();
        let once = ReadOnce::default();
        for task in self.store.start_task_runs(token, &starts).await? {
            let Some(operation) = operations.get(task.operation_id.as_str()) else { continue };
            let callback = callbacks.remove(&task.id);
            self.run(rollout, operation, task, token, callback, &once).await?;
        }
        Ok(())
    }

    /// Executes one started run here.
    async fn run(
        &self,
        rollout: &Rollout,
        operation: &RolloutOperation,
        task: RolloutTask,
        token: i64,
        callback: Option<CallbackToken>,
        once: &ReadOnce,
    ) -> anyhow::Result<()> {
        let Some(timeout) = operation.executor.timeout_seconds().map(|s| Duration::from_secs(u64::from(s))) else {
            // Manual: the task waits for a person.
            return Ok(());
        };
        let webhook = callback.is_some();
        let hash = callback.as_ref().map(CallbackToken::hash);
        let executor = match self.runnable(&operation.executor, &rollout.workspace_id, &once.workspace).await {
            Ok(executor) => executor,
            Err(error) => {
                let outcome = TaskOutcome { succeeded: false, exit_code: None, error: Some(error), log: String::new() };
                self.store.finish_task(&task.id, token, &outcome).await?;
                self.wake.notify_one();
                return Ok(());
            }
        };
        let content = once
            .content
            .get_or_try_init(|| async {
                let version = self.store.get_version(&rollout.workspace_id, &rollout.artifact, rollout.version).await?;
                Ok::<_, cutover_store::StoreError>(version.content.value().clone())
            })
            .await?;
        let context = TaskContext {
            rollout_id: rollout.id.clone(),
            task_id: task.id.clone(),
            artifact: rollout.artifact.as_str().to_owned(),
            environment: rollout.environment.as_str().to_owned(),
            target: operation.target.clone(),
            target_config: operation.target_config.clone(),
            version: rollout.version.get(),
            step: task.step.clone(),
            idempotency_key: task.idempotency_key.clone(),
            attempt: task.attempts,
            value_type: rollout.value_type.as_str().to_owned(),
            content: content.clone(),
        };
        let (stop, stopped) = watch::channel(false);
        let (store, wake, task_id) = (self.store.clone(), self.wake.clone(), task.id.clone());
        let results = self.results.clone();
        let (client, admission) = (self.client.clone(), self.admission.clone());
        let callback_url = format!("{}/api/v1/rollouts/{}/tasks/{}/callback", self.public_url, rollout.id, task.id);
        let handle = tokio::spawn(async move {
            let end = match (&executor, callback) {
                (Runnable::Command(declared), _) => run_command(declared, timeout, &context, stopped).await,
                (Runnable::Webhook { url, secret }, Some(callback_token)) => {
                    let webhook = Webhook {
                        client: &client,
                        admission: &admission,
                        url,
                        secret,
                        timeout,
                        callback_url,
                        callback_token,
                        store: &store,
                    };
                    run_webhook(webhook, &context, stopped).await
                }
                _ => return,
            };
            let written = match (&end, &hash) {
                (RunEnd::Finished(outcome), Some(hash)) => {
                    store.webhook_result(&task_id, hash, outcome).await.map(|_| true).or_else(|e| match e {
                        // The receiver's result came first, or another run started.
                        cutover_store::StoreError::Conflict { .. } => Ok(false),
                        e => Err(e),
                    })
                }
                (RunEnd::Finished(outcome), None) => {
                    let result = RunResult { task_id: task_id.clone(), token, outcome: outcome.clone() };
                    results.lock().unwrap_or_else(PoisonError::into_inner).push(result);
                    // The pass this wakes records it.
                    wake.notify_one();
                    return;
                }
                // What a killed command printed is kept; a webhook run's log is its callbacks'.
                (RunEnd::Stopped { log }, None) => {
                    store.stop_task(&task_id, Some(token), TaskState::Stopped, Some(log.as_str())).await
                }
                (RunEnd::Stopped { .. }, Some(_)) => {
                    store.stop_task(&task_id, Some(token), TaskState::Stopped, None).await
                }
            };
            match written {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(task = task_id, "the task has a result or a newer run; this run's is not recorded")
                }
                Err(e) => tracing::error!(task = task_id, error = %e, "could not record a task's result"),
            }
            wake.notify_one();
        });
        tracing::info!(task = %task.id, target = %operation.target, step = %task.step, attempt = task.attempts, "task started");
        let run = LocalRun { rollout: rollout.id.clone(), token, webhook, stop, handle };
        self.runs().insert(task.id, run);
        Ok(())
    }

    /// What a task of this executor runs, as the configuration says now: an executor the
    /// operator removed (or no longer allows the workspace) runs nothing, and the task fails
    /// saying why.
    /// `workspace`: the workspace's name, read once per pass.
    async fn runnable(
        &self,
        executor: &ExecutorSpec,
        workspace_id: &str,
        workspace: &OnceCell<Result<String, String>>,
    ) -> Result<Runnable, String> {
        match executor {
            ExecutorSpec::Command { executor, .. } => {
                let workspace = workspace
                    .get_or_init(|| async {
                        self.store
                            .get_workspace(workspace_id)
                            .await
                            .map(|w| w.name.as_str().to_owned())
                            .map_err(|e| format!("could not read the rollout's workspace: {e}"))
                    })
                    .await
                    .clone()?;
                self.admission.executor(executor, &workspace).cloned().map(Runnable::Command)
            }
            ExecutorSpec::Webhook { url, secret, .. } => {
                Ok(Runnable::Webhook { url: url.clone(), secret: self.admission.open(secret)? })
            }
            ExecutorSpec::Manual {} => Err("a manual task runs nothing".into()),
        }
    }

    /// An operation being stopped: its runs here are asked to stop; once none runs, the state it
    /// settles in.
    async fn settle_stopping(
        &self,
        operation: &RolloutOperation,
        rollout: cutover_domain::rollouts::RolloutState,
        token: i64,
    ) -> anyhow::Result<Option<OperationState>> {
        let mut running = false;
        for task in operation.tasks.iter().filter(|t| t.state == TaskState::Running) {
            if self.runs_here(task, token) {
                if let Some(run) = self.runs().get(&task.id) {
                    run.stop.send_replace(true);
                }
                running = true;
            } else if matches!(operation.executor, ExecutorSpec::Manual {})
                || task.run_deadline.is_none_or(|d| d < Timestamp::now())
            {
                // Nothing executes it any more: a manual task, or a run past its deadline.
                self.store.stop_task(&task.id, None, TaskState::Stopped, None).await?;
            } else {
                running = true;
            }
        }
        Ok((!running).then(|| halted_operation_state(rollout)))
    }

    /// A webhook run whose task has its result (the receiver called back, perhaps on another
    /// replica) or was settled otherwise has nothing left to wait for: a run of this rollout
    /// whose task the pass did not read as running (every running task belongs to an operation
    /// in flight).
    fn drop_settled_webhook_runs(&self, pass: &RolloutPass) {
        let running: HashSet<&str> = pass
            .in_flight
            .iter()
            .flat_map(|o| &o.tasks)
            .filter(|t| t.state == TaskState::Running)
            .map(|t| t.id.as_str())
            .collect();
        for (task, run) in self.runs().iter() {
            if run.webhook && run.rollout == pass.rollout.id && !running.contains(task.as_str()) {
                run.handle.abort();
            }
        }
    }

    fn stop_local_runs(&self, rollout_id: &str) {
        for run in self.runs().values().filter(|run| run.rollout == rollout_id) {
            run.stop.send_replace(true);
        }
    }
}

/// What the runs a pass starts share, read once per pass however many start.
#[derive(Default)]
struct ReadOnce {
    /// The version's content.
    content: OnceCell<Value>,
    /// The rollout's workspace's name (what declared executors are allowed for), or why not.
    workspace: OnceCell<Result<String, String>>,
}

/// What a running operation needs next.
enum Step<'a> {
    Start(&'a RolloutTask),
    Settle(OperationState),
    Wait,
}

impl Reconciler for RolloutReconciler {
    fn name(&self) -> &'static str {
        "rollouts"
    }

    async fn reconcile(&self) -> anyhow::Result<()> {
        self.record_results().await?;
        self.runs().retain(|_, run| !run.handle.is_finished());
        for id in self.store.live_rollouts().await? {
            if let Err(e) = self.reconcile_rollout(&id).await {
                tracing::warn!(rollout = id, error = %e, "could not reconcile a rollout; will retry");
            }
        }
        Ok(())
    }

    async fn shutdown(&self, deadline: Duration) {
        // Runs finish on their own within the deadline; the rest are stopped (their tasks go back
        // to `stopped`, to run again with the same idempotency key wherever the rollout continues).
        // Webhook runs are dropped at once: their tasks stay running under their callback tokens,
        // so a receiver's result is still recorded, and past the deadline another replica runs
        // them again (same idempotency key, a new callback token).
        let handles: Vec<_> = {
            let mut runs = self.runs();
            let (webhooks, others): (Vec<_>, Vec<_>) = runs.drain().map(|(_, run)| run).partition(|run| run.webhook);
            for run in webhooks {
                run.handle.abort();
            }
            others.into_iter().map(|run| (run.stop, run.handle)).collect()
        };
        super::wind_down(handles, deadline).await;
        if let Err(e) = self.record_results().await {
            tracing::warn!(error = %e, "could not record the last runs' results; their tasks run again elsewhere");
        }
        super::release_held(&self.store, &self.owner, &self.held, Self::lease_name).await;
    }
}
