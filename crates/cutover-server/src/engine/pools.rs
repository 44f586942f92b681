//! The pool reconciler. For each pool whose lease this replica holds, one pass:
//!
//! 1. read one consistent snapshot of the pool (one read-only transaction: its row, the version
//!    pinned to its environment, its live instances through the set-based query, its failure
//!    record, its open builds);
//! 2. ask the domain for the plan (`cutover_domain::pools::plan`): cancel pending starts of a
//!    superseded version, request deletes (compare-and-set: never a claimed instance), create
//!    instances (one row and one pending start build each, in one transaction), of the pinned
//!    version and pre-warmed ones of versions an active rollout or experiment targets;
//! 3. run open builds through the provisioner, the command executor the operator declared: a
//!    pending build, or a running one whose run's deadline has passed (its replica died).
//!
//! A build carries one idempotency key for its whole life, and the instance row exists before
//! the build runs: a replica killed mid-build loses nothing (the build runs again after its
//! deadline with the same key) and never creates a second instance for the same need (the
//! starting instance counts towards the desired count). Each run hands the instance a fresh
//! agent token in `CUTOVER_AGENT_TOKEN`; only its hash is stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cutover_domain::Timestamp;
use cutover_domain::pools::plan;
use cutover_store::{BuildOutcome, BuildRun, Store};
use tokio::sync::{Notify, watch};

use super::admission::Admission;
use super::executors::{self, ProgramEnd};
use super::pool_metrics::{PoolLabels, PoolMetrics};
use super::{EngineConfig, Reconciler};
use crate::config::ExecutorConfig;

/// Extra time after a run's timeout before another replica may take the build over.
const DEADLINE_GRACE: Duration = Duration::from_secs(5);

struct LocalRun {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

/// Drives pools.
pub struct PoolReconciler {
    store: Store,
    /// This process as lease owner, unique per start.
    owner: String,
    config: EngineConfig,
    wake: Arc<Notify>,
    admission: Arc<Admission>,
    metrics: PoolMetrics,
    /// Base of the URL agents report to.
    public_url: String,
    /// Build runs executing in this process, by build id.
    runs: Arc<Mutex<HashMap<String, LocalRun>>>,
    /// Leases held, by pool id.
    held: Mutex<HashMap<String, i64>>,
}

impl PoolReconciler {
    pub fn new(
        store: Store,
        config: EngineConfig,
        wake: Arc<Notify>,
        public_url: String,
        admission: Arc<Admission>,
        metrics: PoolMetrics,
    ) -> Self {
        Self {
            store,
            owner: format!("replica-{}", uuid::Uuid::now_v7()),
            config,
            wake,
            admission,
            metrics,
            public_url,
            runs: Arc::default(),
            held: Mutex::default(),
        }
    }

    fn lease_name(id: &str) -> String {
        format!("pool:{id}")
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, LocalRun>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn reconcile_pool(&self, id: &str) -> anyhow::Result<()> {
        let Some(token) = self.store.acquire_lease(&Self::lease_name(id), &self.owner, self.config.lease).await? else {
            self.held.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
            return Ok(());
        };
        self.held.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_owned(), token);
        let work = self.store.pool_work(id, Timestamp::now()).await?;
        let decided = plan(&work.snapshot);
        let name = work.pool.name.clone();
        if work.pool.deleted_at.is_none() {
            self.metrics.counts(&name, &decided.counts);
        }
        let mut changed = false;
        for instance in &decided.cancel {
            changed |= self.store.cancel_pool_start(instance).await?;
        }
        for instance in &decided.delete {
            if self.store.request_pool_delete(id, instance, "reconciler").await? {
                tracing::info!(pool = %name, instance, "pool instance deleting");
                changed = true;
            }
        }
        if let Some(version) = work.snapshot.version {
            for _ in 0..decided.create {
                let instance = self.store.create_pool_instance(id, version).await?;
                self.metrics.created.get_or_create(&PoolLabels { pool: name.clone() }).inc();
                tracing::info!(pool = %name, instance, version, "pool instance creating");
                changed = true;
            }
        }
        // Pre-warm: instances of versions an active rollout or experiment targets, before the
        // pin moves to them.
        for &(version, count) in &decided.prewarm {
            for _ in 0..count {
                let instance = self.store.create_pool_instance(id, version).await?;
                self.metrics.created.get_or_create(&PoolLabels { pool: name.clone() }).inc();
                tracing::info!(pool = %name, instance, version, "pool instance pre-warming");
                changed = true;
            }
        }
        if !work.snapshot.paused {
            let open =
                if changed { self.store.pool_work(id, Timestamp::now()).await?.open_builds } else { work.open_builds };
            let now = Timestamp::now();
            for build in open {
                let here = self.runs().get(&build.id).is_some_and(|run| !run.handle.is_finished());
                let orphaned = build.running && !here && build.run_deadline.is_none_or(|d| d < now);
                if !build.running || orphaned {
                    self.start(&build.id, token, work.pool.timeout_seconds).await?;
                }
            }
        }
        Ok(())
    }

    async fn start(&self, build_id: &str, token: i64, timeout_seconds: u32) -> anyhow::Result<()> {
        let timeout = Duration::from_secs(u64::from(timeout_seconds));
        let micros = i64::try_from((timeout + DEADLINE_GRACE).as_micros()).unwrap_or(i64::MAX);
        let deadline = Timestamp::from_micros(Timestamp::now().as_micros().saturating_add(micros));
        let Some(run) = self.store.start_pool_build(build_id, token, deadline).await? else { return Ok(()) };
        let declared = match self.store.get_workspace(&run.pool.workspace_id).await {
            Ok(workspace) => self.admission.executor(&run.pool.executor, &workspace.name).cloned(),
            Err(e) => Err(format!("could not read the pool's workspace: {e}")),
        };
        let (stop, stopped) = watch::channel(false);
        let (store, wake, metrics) = (self.store.clone(), self.wake.clone(), self.metrics.clone());
        let agent_url = format!("{}/api/v1/instances/{}/agents", self.public_url, run.instance_id);
        let build = build_id.to_owned();
        tracing::info!(build, instance = %run.instance_id, transition = %run.transition, attempt = run.attempt, "pool build started");
        let handle = tokio::spawn(async move {
            let pool = run.pool.name.clone();
            let outcome = match declared {
                Ok(declared) => match provision(&declared, timeout, &run, &agent_url, stopped).await {
                    Some(outcome) => outcome,
                    // Stopped at shutdown: the build stays running until its deadline, then
                    // runs again (same idempotency key) wherever the pool's lease is.
                    None => return,
                },
                Err(error) => BuildOutcome { succeeded: false, error: Some(error), log: String::new() },
            };
            if !outcome.succeeded {
                metrics.failed.get_or_create(&PoolLabels { pool }).inc();
            }
            match store.finish_pool_build(&build, token, &outcome).await {
                Ok(true) => {}
                Ok(false) => tracing::info!(build, "another run owns this build now; this result is not recorded"),
                Err(e) => tracing::error!(build, error = %e, "could not record a pool build's result"),
            }
            wake.notify_one();
        });
        self.runs().insert(build_id.to_owned(), LocalRun { stop, handle });
        Ok(())
    }
}

/// Runs the provisioner for one build, with a clean environment: the build described in
/// `CUTOVER_*` variables (the agent token among them) and only the server's variables the
/// declaration lists. `None`: stopped before it ended.
async fn provision(
    declared: &ExecutorConfig,
    timeout: Duration,
    run: &BuildRun,
    agent_url: &str,
    stop: watch::Receiver<bool>,
) -> Option<BuildOutcome> {
    let describe = |_: &std::path::Path, command: &mut tokio::process::Command| {
        command
            .env("CUTOVER_POOL", &run.pool.name)
            .env("CUTOVER_ARTIFACT", run.pool.artifact.as_str())
            .env("CUTOVER_ENVIRONMENT", run.pool.environment.as_str())
            .env("CUTOVER_INSTANCE_ID", &run.instance_id)
            .env("CUTOVER_BUILD_ID", &run.build_id)
            .env("CUTOVER_TRANSITION", run.transition.as_str())
            .env("CUTOVER_VERSION", run.version.map(|v| v.to_string()).unwrap_or_default())
            .env("CUTOVER_PARAMETERS", run.parameters.to_string())
            .env("CUTOVER_AGENTS", run.pool.agents.join(","))
            .env("CUTOVER_IDEMPOTENCY_KEY", &run.idempotency_key)
            .env("CUTOVER_ATTEMPT", run.attempt.to_string())
            .env("CUTOVER_AGENT_URL", agent_url)
            .env("CUTOVER_AGENT_TOKEN", run.agent_token.expose());
        Ok(())
    };
    match executors::run_declared(declared, timeout, describe, stop).await {
        ProgramEnd::Exited { status, log } if status.success() => {
            Some(BuildOutcome { succeeded: true, error: None, log })
        }
        ProgramEnd::Exited { status, log } => {
            Some(BuildOutcome { succeeded: false, error: Some(executors::exit_error(status)), log })
        }
        ProgramEnd::Failed { error, log } => Some(BuildOutcome { succeeded: false, error: Some(error), log }),
        ProgramEnd::Stopped { .. } => None,
    }
}

impl Reconciler for PoolReconciler {
    fn name(&self) -> &'static str {
        "pools"
    }

    async fn reconcile(&self) -> anyhow::Result<()> {
        self.runs().retain(|_, run| !run.handle.is_finished());
        for id in self.store.pools_for_engine().await? {
            if let Err(e) = self.reconcile_pool(&id).await {
                tracing::warn!(pool = id, error = %e, "could not reconcile a pool; will retry");
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
