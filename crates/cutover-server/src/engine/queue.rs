//! The queue reconciler. For each queue whose lease this replica holds, a pass repeats until the
//! planner has nothing to do:
//!
//! 1. read one consistent view of the queue (live requests, active batches through the
//!    membership, their checks, what has landed);
//! 2. give up checks whose run was lost (running past their deadline, not run here: their
//!    replica died), and stop local runs of checks that are no longer running;
//! 3. ask the domain's planner (`cutover_domain::queue::plan`, the code the simulator drives)
//!    and apply its actions, each in one transaction fenced by the lease token; a started check
//!    runs through the executor the queue names.
//!
//! Checks carry an idempotency key per (batch, attempt). A replica killed mid-check loses
//! nothing: the check stays `running` until its deadline (timeout + grace), then the replica
//! holding the lease abandons it and the planner checks the batch again as its next attempt. The
//! lease keeps two replicas from driving one queue; the deadline keeps them from running one
//! attempt twice at once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cutover_domain::Timestamp;
use cutover_domain::queue::{Action, plan};
use cutover_domain::rollouts::ExecutorSpec;
use cutover_store::{Applied, CheckRun, Store, StoreError};
use serde_json::Value;
use tokio::sync::{Notify, watch};

use super::admission::Admission;
use super::executors::{self, ProgramEnd};
use super::queue_metrics::QueueMetrics;
use super::{EngineConfig, Reconciler};

/// Extra time after a check's timeout before another replica may give its run up as lost.
const DEADLINE_GRACE: Duration = Duration::from_secs(5);
/// Most plan-and-apply rounds in one pass of one queue.
const MAX_ROUNDS: usize = 64;
/// How often dangling batch memberships are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

struct LocalRun {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

/// Drives submit queues.
pub struct QueueReconciler {
    store: Store,
    owner: String,
    config: EngineConfig,
    wake: Arc<Notify>,
    admission: Arc<Admission>,
    metrics: QueueMetrics,
    /// Memberships whose batch row is still missing after this long are pruned.
    prune_after: Duration,
    last_prune: Mutex<Option<Instant>>,
    /// Check runs executing in this process, by (queue id, check id).
    runs: Arc<Mutex<HashMap<(String, u64), LocalRun>>>,
    /// Leases held, by queue id.
    held: Mutex<HashMap<String, i64>>,
    /// Base of the callback URLs sent to webhook receivers.
    public_url: String,
    /// Delivers webhook checks: no redirects, names resolved through the address policy.
    client: reqwest::Client,
}

impl QueueReconciler {
    pub fn new(
        store: Store,
        config: EngineConfig,
        wake: Arc<Notify>,
        admission: Arc<Admission>,
        metrics: QueueMetrics,
        prune_after: Duration,
        public_url: String,
    ) -> anyhow::Result<Self> {
        let client = super::webhook::client(&admission)?;
        Ok(Self {
            public_url,
            client,
            store,
            owner: format!("replica-{}", uuid::Uuid::now_v7()),
            config,
            wake,
            admission,
            metrics,
            prune_after,
            last_prune: Mutex::new(None),
            runs: Arc::default(),
            held: Mutex::default(),
        })
    }

    fn lease_name(id: &str) -> String {
        format!("queue:{id}")
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), LocalRun>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn reconcile_queue(&self, id: &str) -> anyhow::Result<()> {
        let Some(token) = self.store.acquire_lease(&Self::lease_name(id), &self.owner, self.config.lease).await? else {
            self.held.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
            return Ok(());
        };
        self.held.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_owned(), token);
        for _ in 0..MAX_ROUNDS {
            let work = self.store.queue_work(id).await?;
            let labels = QueueMetrics::labels(&work.queue.name);
            self.metrics.depth.get_or_create(&labels).set(i64::try_from(work.view.requests.len()).unwrap_or(i64::MAX));
            let now = Timestamp::now();
            let mut lost = false;
            for check in &work.running {
                let here = self.runs().get(&(id.to_owned(), check.id)).is_some_and(|r| !r.handle.is_finished());
                if !here && check.deadline < now && self.store.abandon_lost_queue_check(id, check.id, token).await? {
                    tracing::warn!(queue = %work.queue.name, check = check.id, "a check's run was lost; checking the batch again");
                    lost = true;
                }
            }
            // Local runs of checks no longer running (abandoned, or their batch ended) stop.
            let running: Vec<u64> = work.running.iter().map(|c| c.id).collect();
            for ((queue, check), run) in self.runs().iter() {
                if queue == id && !running.contains(check) {
                    run.stop.send_replace(true);
                }
            }
            if lost {
                continue;
            }
            let decided = plan(&work.view, &work.queue.settings.policy(), now);
            if decided.actions.is_empty() {
                break;
            }
            let deadline = match &work.queue.executor {
                ExecutorSpec::Manual {} => Timestamp::from_micros(i64::MAX),
                other => {
                    let seconds = u64::from(other.timeout_seconds().unwrap_or(600));
                    let micros =
                        i64::try_from((Duration::from_secs(seconds) + DEADLINE_GRACE).as_micros()).unwrap_or(i64::MAX);
                    Timestamp::from_micros(now.as_micros().saturating_add(micros))
                }
            };
            for action in &decided.actions {
                match self.store.apply_queue_action(id, token, action, deadline).await {
                    Ok(Applied::Fenced) => return Ok(()),
                    Ok(Applied::Started(run)) => {
                        self.metrics.checks.get_or_create(&labels).inc();
                        self.start(*run).await;
                    }
                    Ok(Applied::Done) => self.count(id, &work.queue.name, action).await,
                    Err(
                        e @ (StoreError::NotFound(_)
                        | StoreError::NotFoundMany { .. }
                        | StoreError::Invalid(_)
                        | StoreError::Forbidden(_)),
                    ) => {
                        let Action::Land { batch, .. } = action else { return Err(e.into()) };
                        tracing::warn!(queue = %work.queue.name, batch = batch.0, error = %e, "a batch could not land; its requests are refused");
                        self.store.fail_queue_landing(id, token, batch.0, &e.to_string()).await?;
                        self.metrics.failures.get_or_create(&labels).inc();
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Metrics of an applied action.
    async fn count(&self, id: &str, name: &str, action: &Action<cutover_domain::ArtifactKey>) {
        let labels = QueueMetrics::labels(name);
        match action {
            Action::Cancel { .. } => {
                self.metrics.cancels.get_or_create(&labels).inc();
            }
            Action::Reject { .. } => {
                self.metrics.failures.get_or_create(&labels).inc();
            }
            Action::Land { batch, .. } => {
                let Ok(work) = self.store.batch_requests(id, batch.0).await else { return };
                for request in work {
                    self.metrics.landed.get_or_create(&labels).inc();
                    if let Some(landed) = request.landed_at {
                        let waited = (landed.as_micros() - request.created_at.as_micros()).max(0) as f64 / 1e6;
                        self.metrics.time_in_queue.get_or_create(&labels).observe(waited);
                    }
                }
            }
            _ => {}
        }
    }

    /// Runs a started check where its executor says: a declared command here; a manual check
    /// waits for a person's report.
    async fn start(&self, run: CheckRun) {
        let (executor, timeout_seconds) = match run.queue.executor.clone() {
            ExecutorSpec::Command { executor, timeout_seconds } => (executor, timeout_seconds),
            ExecutorSpec::Webhook { url, secret, timeout_seconds } => {
                return self.start_webhook(run, url, &secret, timeout_seconds).await;
            }
            ExecutorSpec::Manual {} => {
                tracing::info!(queue = %run.queue.name, check = run.check, "check waiting for a person's report");
                return;
            }
        };
        let declared = match self.store.get_workspace(&run.queue.workspace_id).await {
            Ok(workspace) => self.admission.executor(&executor, &workspace.name).cloned(),
            Err(e) => Err(format!("could not read the queue's workspace: {e}")),
        };
        let (stop, stopped) = watch::channel(false);
        let (store, wake) = (self.store.clone(), self.wake.clone());
        let key = (run.queue.id.clone(), run.check);
        tracing::info!(queue = %run.queue.name, batch = run.batch, check = run.check, attempt = run.attempt, "queue check started");
        let handle = tokio::spawn(async move {
            let timeout = Duration::from_secs(u64::from(timeout_seconds));
            let (passed, output) = match declared {
                Ok(declared) => match check(&declared, timeout, &run, stopped).await {
                    Some(result) => result,
                    // Stopped: abandoned by the planner, or the server is stopping (the check
                    // stays running until its deadline, then is checked again).
                    None => return,
                },
                Err(error) => (false, error),
            };
            match store.finish_queue_check(&run.queue.id, run.check, Some(run.run_token), passed, &output).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(check = run.check, "the check is no longer running; its result is not recorded")
                }
                Err(e) => tracing::error!(check = run.check, error = %e, "could not record a check's result"),
            }
            wake.notify_one();
        });
        self.runs().insert(key, LocalRun { stop, handle });
    }

    /// A webhook check: the payload (the candidate as `candidate.json` has it, plus a callback URL
    /// and a token for this run only) is delivered, signed; the receiver reports through the
    /// callback. No result within the timeout fails the check.
    async fn start_webhook(
        &self,
        run: CheckRun,
        url: String,
        secret: &cutover_domain::secrets::SealedSecret,
        timeout_seconds: u32,
    ) {
        let token = cutover_domain::rollouts::CallbackToken::generate();
        let (store, wake) = (self.store.clone(), self.wake.clone());
        let opened = self.admission.open(secret);
        if let Err(e) = store.set_queue_check_callback(&run.queue.id, run.check, &token.hash()).await {
            tracing::error!(check = run.check, error = %e, "could not record a webhook check's callback");
            return;
        }
        let callback_url = format!("{}/api/v1/queue-checks/{}/{}/callback", self.public_url, run.queue.id, run.check);
        let payload = serde_json::json!({
            "queue": run.queue.name,
            "environment": run.queue.environment,
            "batch": run.batch,
            "check": run.check,
            "attempt": run.attempt,
            "idempotency_key": run.idempotency_key,
            "requests": run.requests,
            "ahead": run.ahead,
            "artifacts": run.candidate.iter().map(|c| (c.artifact.as_str().to_owned(), c.content.clone())).collect::<serde_json::Map<_, _>>(),
            "changes": run.changes.iter().map(|(request, c)| serde_json::json!({
                "request": request, "artifact": c.artifact, "content": c.content,
            })).collect::<Vec<_>>(),
            "callback_url": callback_url,
            "callback_token": token.expose(),
        });
        let (stop, mut stopped) = watch::channel(false);
        let (client, admission) = (self.client.clone(), self.admission.clone());
        let key = (run.queue.id.clone(), run.check);
        tracing::info!(queue = %run.queue.name, batch = run.batch, check = run.check, attempt = run.attempt, "queue check delivered to a webhook");
        let handle = tokio::spawn(async move {
            let timeout = Duration::from_secs(u64::from(timeout_seconds));
            let deadline = tokio::time::Instant::now() + timeout;
            let failure = match opened {
                Err(e) => Some(format!("could not open the webhook's secret: {e}")),
                Ok(secret) => {
                    let target = super::webhook::Target {
                        client: &client,
                        admission: &admission,
                        url: &url,
                        secret: &secret,
                        timeout,
                        idempotency_key: &run.idempotency_key,
                    };
                    let note = |text: String| async move { tracing::debug!(check = run.check, "{}", text.trim_end()) };
                    let body = payload.to_string().into_bytes();
                    match super::webhook::deliver(&target, &body, deadline, note, &mut stopped).await {
                        Err(super::webhook::Undelivered::Stopped) => return,
                        Err(super::webhook::Undelivered::Failed(error)) => Some(error),
                        Ok(()) => tokio::select! {
                            () = tokio::time::sleep_until(deadline) => Some(format!("no result within {timeout_seconds} s")),
                            // The receiver reported (the check is no longer running), or shutdown.
                            _ = stopped.wait_for(|stop| *stop) => None,
                        },
                    }
                }
            };
            if let Some(error) = failure {
                match store.finish_queue_check(&run.queue.id, run.check, Some(run.run_token), false, &error).await {
                    Ok(_) => {}
                    Err(e) => tracing::error!(check = run.check, error = %e, "could not record a check's result"),
                }
                wake.notify_one();
            }
        });
        self.runs().insert(key, LocalRun { stop, handle });
    }

    async fn prune(&self) {
        {
            let mut last = self.last_prune.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        match self.store.prune_queue_memberships(self.prune_after).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "removed batch memberships whose create never finished"),
            Err(e) => tracing::warn!(error = %e, "could not prune batch memberships; will retry"),
        }
    }
}

/// The candidate content as files: one per artifact under `candidate/` (a text artifact's text
/// as is, anything else as JSON; keys with `/` make folders): what is live once the requests
/// ahead and the batch land; and `candidate.json` with that state (`artifacts`) and every change
/// of the batch's requests in order (`changes`), so that a check sees each request's content even
/// where a later request of the batch replaces it.
fn write_candidate(scratch: &Path, run: &CheckRun) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let dir = scratch.join("candidate");
    let mut all = serde_json::Map::new();
    for change in &run.candidate {
        let path = dir.join(change.artifact.as_str());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("could not make {}: {e}", parent.display()))?;
        }
        let bytes = match &change.content {
            Value::String(text) => text.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        };
        std::fs::write(&path, bytes).map_err(|e| format!("could not write {}: {e}", path.display()))?;
        all.insert(change.artifact.as_str().to_owned(), change.content.clone());
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("could not make {}: {e}", dir.display()))?;
    let file = scratch.join("candidate.json");
    let body = serde_json::json!({
        "queue": run.queue.name,
        "environment": run.queue.environment,
        "batch": run.batch,
        "attempt": run.attempt,
        "requests": run.requests,
        "ahead": run.ahead,
        "artifacts": all,
        "changes": run.changes.iter().map(|(request, c)| serde_json::json!({
            "request": request, "artifact": c.artifact, "content": c.content,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(&file, body.to_string()).map_err(|e| format!("could not write {}: {e}", file.display()))?;
    Ok((dir, file))
}

fn ids(list: &[u64]) -> String {
    list.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// Runs one check with the declared program; `None` when stopped before it ended.
async fn check(
    declared: &crate::config::ExecutorConfig,
    timeout: Duration,
    run: &CheckRun,
    stop: watch::Receiver<bool>,
) -> Option<(bool, String)> {
    let describe = |scratch: &Path, command: &mut tokio::process::Command| {
        let (dir, file) = write_candidate(scratch, run)?;
        let artifacts: Vec<&str> = run.candidate.iter().map(|c| c.artifact.as_str()).collect();
        command
            .env("CUTOVER_QUEUE", &run.queue.name)
            .env("CUTOVER_ENVIRONMENT", run.queue.environment.as_str())
            .env("CUTOVER_BATCH", run.batch.to_string())
            .env("CUTOVER_CHECK", run.check.to_string())
            .env("CUTOVER_ATTEMPT", run.attempt.to_string())
            .env("CUTOVER_IDEMPOTENCY_KEY", &run.idempotency_key)
            .env("CUTOVER_REQUESTS", ids(&run.requests))
            .env("CUTOVER_AHEAD", ids(&run.ahead))
            .env("CUTOVER_ARTIFACTS", artifacts.join(","))
            .env("CUTOVER_CANDIDATE_DIR", &dir)
            .env("CUTOVER_CANDIDATE_FILE", &file);
        Ok(())
    };
    match executors::run_declared(declared, timeout, describe, stop).await {
        ProgramEnd::Exited { status, log } if status.success() => Some((true, log)),
        ProgramEnd::Exited { status, log } => Some((false, with_reason(log, &executors::exit_error(status)))),
        ProgramEnd::Failed { error, log } => Some((false, with_reason(log, &error))),
        ProgramEnd::Stopped { .. } => None,
    }
}

fn with_reason(log: String, reason: &str) -> String {
    if log.trim().is_empty() { reason.to_owned() } else { format!("{}\n[{reason}]", log.trim_end()) }
}

impl Reconciler for QueueReconciler {
    fn name(&self) -> &'static str {
        "queue"
    }

    async fn reconcile(&self) -> anyhow::Result<()> {
        self.runs().retain(|_, run| !run.handle.is_finished());
        self.prune().await;
        for id in self.store.queues_for_engine().await? {
            if let Err(e) = self.reconcile_queue(&id).await {
                tracing::warn!(queue = id, error = %e, "could not reconcile a queue; will retry");
            }
        }
        Ok(())
    }

    async fn shutdown(&self, deadline: Duration) {
        let runs = self.runs().drain().map(|(_, run)| (run.stop, run.handle)).collect();
        super::wind_down(runs, deadline).await;
        super::release_held(&self.store, &self.owner, &self.held, Self::lease_name).await;
    }
}
