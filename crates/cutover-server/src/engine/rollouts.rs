//! The rollout reconciler. For each live rollout whose lease this replica holds, one pass:
//!
//! 1. drive each running operation through its tasks in order: start the next task (a run under
//!    the lease's token), take over a run orphaned by a crash once its deadline has passed, and
//!    settle the operation when its last task completed or one failed;
//! 2. settle operations being stopped once nothing of theirs runs;
//! 3. re-read every operation row and write the rollout's derived state, compare-and-set (the
//!    pin moves in the same transaction on completion);
//! 4. start the operations the scheduler allows (waves, `max_parallel`).
//!
//! Task runs execute in this process; their results are written under the lease token, so a run
//! that lost its lease cannot record over a newer one. A webhook run's result arrives through the
//! callback endpoint (on any replica) and is fenced by the run's callback token instead; once its
//! task has a result, the run here has nothing left to do and is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cutover_domain::Timestamp;
use cutover_domain::rollouts::{
    CallbackToken, ExecutorSpec, OperationState, RolloutRead, TaskState, WebhookSecret, derive_state,
    halted_operation_state, startable,
};
use cutover_store::{RolloutDetail, RolloutOperation, RolloutTask, Store, TaskOutcome};
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
        // Without these settings the client would follow redirects and resolve any address:
        // failing to build it is an error, never a fallback to defaults.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .dns_resolver(admission.resolver())
            .build()
            .map_err(|e| anyhow::anyhow!("could not build the webhook client: {e}"))?;
        Ok(Self {
            public_url,
            client,
            admission,
            store,
            owner: format!("replica-{}", uuid::Uuid::now_v7()),
            config,
            wake,
            runs: Arc::default(),
            held: Mutex::default(),
            warming: Mutex::default(),
        })
    }

    /// Whether the pin move of a rollout about to complete waits for a pool: one in its
    /// environment, of its artifact, that has fewer ready instances of the version than it keeps
    /// of the pinned one, and can still get there (not paused, the version's starts not at the
    /// failure limit). The wait lasts at most the pool's build timeout plus a minute, then the pin
    /// moves anyway (logged): a pool never holds a release back for good.
    async fn waits_for_pools(&self, detail: &RolloutDetail) -> anyhow::Result<bool> {
        let rollout = &detail.rollout;
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
        let detail = self.store.rollout_for_engine(id).await?;
        self.drop_settled_webhook_runs(&detail);
        let rollout_state = detail.rollout.state;
        let content = OnceCell::new();
        for operation in &detail.operations {
            match operation.state {
                OperationState::Running | OperationState::RunningDegraded => {
                    self.drive(&detail, &content, operation, token).await?;
                }
                OperationState::Stopping => self.settle_stopping(operation, rollout_state, token).await?,
                _ => {}
            }
        }

        // The rollout's state from every operation row, read again after the changes above.
        let detail = self.store.rollout_for_engine(id).await?;
        let rows: Vec<_> = detail.operations.iter().map(RolloutOperation::row).collect();
        let read = RolloutRead {
            stored: detail.rollout.state,
            expected_operations: detail.rollout.operation_count,
            operations: &rows,
            failure_budget: detail.rollout.policy.failure_budget,
        };
        let mut state = detail.rollout.state;
        if let Some(to) = derive_state(&read).change_from(state) {
            if to == cutover_domain::rollouts::RolloutState::Completed && self.waits_for_pools(&detail).await? {
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
            self.stop_local_runs(&detail);
            self.store.release_lease(&Self::lease_name(id), &self.owner).await?;
            self.held.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
            return Ok(());
        }
        let read = RolloutRead { stored: state, ..read };
        let mut started = false;
        for index in startable(&read, detail.rollout.policy.max_parallel) {
            let operation = &detail.operations[index];
            started |= self.store.advance_operation(&operation.id, operation.state, OperationState::Running).await?;
        }
        if started {
            // Their first tasks start on the next pass, at once.
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Moves one running operation along its tasks.
    async fn drive(
        &self,
        detail: &RolloutDetail,
        content: &OnceCell<Value>,
        operation: &RolloutOperation,
        token: i64,
    ) -> anyhow::Result<()> {
        let Some(task) = operation.tasks.iter().find(|t| t.state != TaskState::Completed) else {
            if self.store.advance_operation(&operation.id, operation.state, OperationState::Completed).await? {
                self.wake.notify_one();
            }
            return Ok(());
        };
        match task.state {
            TaskState::Failed | TaskState::Cancelled => {
                if self.store.advance_operation(&operation.id, operation.state, OperationState::Failed).await? {
                    self.wake.notify_one();
                }
            }
            TaskState::Pending | TaskState::Stopped => self.start(detail, content, operation, task, token).await?,
            TaskState::Running => {
                let manual = matches!(operation.executor, ExecutorSpec::Manual {});
                if !manual && !self.runs_here(task, token) {
                    // Orphaned by a crash or a lost lease: the store lets it start again only once
                    // the old run's deadline has passed, so it never runs twice at once.
                    self.start(detail, content, operation, task, token).await?;
                }
            }
            TaskState::Completed => {}
        }
        Ok(())
    }

    async fn start(
        &self,
        detail: &RolloutDetail,
        content: &OnceCell<Value>,
        operation: &RolloutOperation,
        task: &RolloutTask,
        token: i64,
    ) -> anyhow::Result<()> {
        let timeout = operation.executor.timeout_seconds().map(|s| Duration::from_secs(u64::from(s)));
        let deadline = timeout.map(|t| {
            let micros = i64::try_from((t + DEADLINE_GRACE).as_micros()).unwrap_or(i64::MAX);
            Timestamp::from_micros(Timestamp::now().as_micros().saturating_add(micros))
        });
        let webhook = matches!(operation.executor, ExecutorSpec::Webhook { .. });
        // Every webhook run gets its own callback token: an earlier run's stops working.
        let callback = webhook.then(CallbackToken::generate);
        let hash = callback.as_ref().map(CallbackToken::hash);
        let Some(task) = self.store.start_task_run(&task.id, token, deadline, hash.as_ref()).await? else {
            return Ok(());
        };
        let Some(timeout) = timeout else {
            // Manual: the task waits for a person.
            return Ok(());
        };
        let rollout = &detail.rollout;
        let executor = match self.runnable(&operation.executor, &rollout.workspace_id).await {
            Ok(executor) => executor,
            Err(error) => {
                let outcome = TaskOutcome { succeeded: false, exit_code: None, error: Some(error), log: String::new() };
                self.store.finish_task(&task.id, token, &outcome).await?;
                self.wake.notify_one();
                return Ok(());
            }
        };
        // Read once per pass, however many tasks start in it.
        let content = content
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
                (RunEnd::Finished(outcome), None) => store.finish_task(&task_id, token, outcome).await,
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
        self.runs().insert(task.id.clone(), LocalRun { token, webhook, stop, handle });
        Ok(())
    }

    /// What a task of this executor runs, as the configuration says now: an executor the
    /// operator removed (or no longer allows the workspace) runs nothing, and the task fails
    /// saying why.
    async fn runnable(&self, executor: &ExecutorSpec, workspace_id: &str) -> Result<Runnable, String> {
        match executor {
            ExecutorSpec::Command { executor, .. } => {
                let workspace = self
                    .store
                    .get_workspace(workspace_id)
                    .await
                    .map_err(|e| format!("could not read the rollout's workspace: {e}"))?;
                self.admission.executor(executor, &workspace.name).cloned().map(Runnable::Command)
            }
            ExecutorSpec::Webhook { url, secret, .. } => {
                Ok(Runnable::Webhook { url: url.clone(), secret: self.admission.open(secret)? })
            }
            ExecutorSpec::Manual {} => Err("a manual task runs nothing".into()),
        }
    }

    /// An operation being stopped: its runs here are asked to stop; once none runs, it settles.
    async fn settle_stopping(
        &self,
        operation: &RolloutOperation,
        rollout: cutover_domain::rollouts::RolloutState,
        token: i64,
    ) -> anyhow::Result<()> {
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
        if !running {
            let to = halted_operation_state(rollout);
            if self.store.advance_operation(&operation.id, OperationState::Stopping, to).await? {
                self.wake.notify_one();
            }
        }
        Ok(())
    }

    /// A webhook run whose task has its result (the receiver called back, perhaps on another
    /// replica) or was settled otherwise has nothing left to wait for.
    fn drop_settled_webhook_runs(&self, detail: &RolloutDetail) {
        let runs = self.runs();
        for task in detail.operations.iter().flat_map(|o| &o.tasks).filter(|t| t.state != TaskState::Running) {
            if let Some(run) = runs.get(&task.id).filter(|run| run.webhook) {
                run.handle.abort();
            }
        }
    }

    fn stop_local_runs(&self, detail: &RolloutDetail) {
        let runs = self.runs();
        for task in detail.operations.iter().flat_map(|o| &o.tasks) {
            if let Some(run) = runs.get(&task.id) {
                run.stop.send_replace(true);
            }
        }
    }
}

impl Reconciler for RolloutReconciler {
    fn name(&self) -> &'static str {
        "rollouts"
    }

    async fn reconcile(&self) -> anyhow::Result<()> {
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
        super::release_held(&self.store, &self.owner, &self.held, Self::lease_name).await;
    }
}
