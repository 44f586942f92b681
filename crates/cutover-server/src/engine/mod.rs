//! The engine: reconcilers that drive background work from database rows (rule 6 of the
//! design). Each reconciler reads state, acts idempotently, and holds a lease per unit of work so
//! that with several replicas exactly one drives each; it wakes on change notifications and on a
//! timer, and stops within a deadline at shutdown. A pass that fails is retried after a backoff
//! that doubles with each failure in a row (from one tick up to [`EngineConfig::max_backoff`]) and
//! is reported in `/readyz` and `/metrics` ([`health`]); a success resets it.
//!
//! Rollouts are the first reconciler ([`rollouts`]); the queue and pools will run on the same
//! runner with their own leases.

pub mod admission;
pub mod executors;
pub mod health;
pub mod notices;
pub mod pool_metrics;
pub mod pools;
pub mod queue;
pub mod queue_metrics;
pub mod rollouts;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use self::health::{EngineHealth, backoff};

/// One kind of background work.
pub trait Reconciler: Send + Sync + 'static {
    /// For logs.
    fn name(&self) -> &'static str;

    /// One pass over every unit of work this replica can drive. Idempotent: running it twice, or
    /// on two replicas, or after a crash, converges on the same rows.
    fn reconcile(&self) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;

    /// Shutdown: stop local work within `deadline` and hand units back so that another replica
    /// (or the next start) continues at once.
    fn shutdown(&self, deadline: Duration) -> impl std::future::Future<Output = ()> + Send;
}

/// Shutdown of the program runs a reconciler started here: those that finish within `deadline`
/// do; the others are told to stop (`stop` turns true); all are awaited.
pub(crate) async fn wind_down(runs: Vec<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>, deadline: Duration) {
    let wait = async {
        for (_, handle) in &runs {
            while !handle.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    if tokio::time::timeout(deadline, wait).await.is_err() {
        for (stop, _) in &runs {
            stop.send_replace(true);
        }
    }
    for (_, handle) in runs {
        let _ = handle.await;
    }
}

/// Gives back every lease a reconciler holds (`held`: by unit id; `lease`: its resource name), so
/// that another replica, or the next start, continues at once.
pub(crate) async fn release_held(
    store: &cutover_store::Store,
    owner: &str,
    held: &Mutex<HashMap<String, i64>>,
    lease: impl Fn(&str) -> String,
) {
    let ids: Vec<String> = held.lock().unwrap_or_else(PoisonError::into_inner).drain().map(|(id, _)| id).collect();
    for id in ids {
        if let Err(e) = store.release_lease(&lease(&id), owner).await {
            tracing::warn!(lease = lease(&id), error = %e, "could not release a lease; it expires on its own");
        }
    }
}

/// Settings of the engine, from the server configuration.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// How long a lease lasts without renewal: a crashed replica's work is taken over after it.
    pub lease: Duration,
    /// How often every reconciler runs without being woken.
    pub tick: Duration,
    /// How long shutdown waits for running work before interrupting it.
    pub shutdown_deadline: Duration,
    /// The longest wait between passes of a reconciler whose passes keep failing.
    pub max_backoff: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            tick: Duration::from_secs(1),
            shutdown_deadline: Duration::from_secs(10),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// Runs `reconciler` on every `wake` and every tick until `shutdown` turns true, then shuts it
/// down within the deadline. After a failed pass, neither the tick nor a wake runs the next one
/// before the backoff delay is over (a wake meanwhile is kept, and runs it then).
pub fn spawn<R: Reconciler>(
    reconciler: Arc<R>,
    wake: Arc<Notify>,
    config: EngineConfig,
    health: Arc<EngineHealth>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let name = reconciler.name();
        health.succeeded(name);
        let mut timer = tokio::time::interval(config.tick);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures: u32 = 0;
        let mut retry_at: Option<Instant> = None;
        loop {
            match retry_at {
                None => tokio::select! {
                    _ = timer.tick() => {}
                    () = wake.notified() => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => break,
                },
                Some(at) => tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => break,
                },
            }
            match reconciler.reconcile().await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(reconciler = name, failures, "reconcile succeeded again");
                        health.succeeded(name);
                    }
                    failures = 0;
                    retry_at = None;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let delay = backoff(config.tick, config.max_backoff, failures);
                    tracing::warn!(reconciler = name, error = %e, failures, retry_in_ms = delay.as_millis(), "reconcile failed; backing off");
                    health.failed(name, &e, failures, delay);
                    retry_at = Some(Instant::now() + delay);
                }
            }
            // The next tick is a full tick after this pass, not one missed while it ran.
            timer.reset();
        }
        reconciler.shutdown(config.shutdown_deadline).await;
        tracing::info!(reconciler = name, "stopped");
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use cutover_api::ReconcilerState;

    use super::*;
    use crate::metrics::Metrics;

    /// Fails its first `failures` passes, then succeeds; records when each pass ran.
    struct Flaky {
        failures: u32,
        passes: Mutex<Vec<Instant>>,
    }

    impl Reconciler for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }

        async fn reconcile(&self) -> anyhow::Result<()> {
            let mut passes = self.passes.lock().unwrap();
            passes.push(Instant::now());
            if passes.len() as u32 <= self.failures {
                anyhow::bail!("the database said no");
            }
            Ok(())
        }

        async fn shutdown(&self, _deadline: Duration) {}
    }

    fn gaps(passes: &[Instant]) -> Vec<u64> {
        passes.windows(2).map(|pair| (pair[1] - pair[0]).as_secs()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_reconciler_backs_off_exponentially_and_recovers_on_success() {
        let reconciler = Arc::new(Flaky { failures: 8, passes: Mutex::default() });
        let metrics = Metrics::default();
        let health = Arc::new(EngineHealth::new(&metrics));
        let wake = Arc::new(Notify::new());
        let (stop, shutdown) = watch::channel(false);
        let config = EngineConfig {
            tick: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            ..EngineConfig::default()
        };
        let handle = spawn(reconciler.clone(), wake.clone(), config, health.clone(), shutdown);

        // The first pass runs at once and fails: throttled for one tick.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let report = health.report();
        assert_eq!(report["flaky"].state, ReconcilerState::Throttled);
        assert_eq!(report["flaky"].error.as_deref(), Some("the database said no"));
        assert_eq!(report["flaky"].failures, Some(1));
        assert_eq!(report["flaky"].retry_in_ms, Some(500));

        // Eight failures in a row: 1, 2, 4 … 60 s apart (capped), then ticks again once it succeeds.
        tokio::time::sleep(Duration::from_secs(1 + 2 + 4 + 8 + 16 + 32 + 60 + 60 + 2)).await;
        let passes = reconciler.passes.lock().unwrap().clone();
        assert_eq!(gaps(&passes), [1, 2, 4, 8, 16, 32, 60, 60, 1, 1]);
        let report = health.report();
        assert_eq!(report["flaky"].state, ReconcilerState::Ok);
        assert_eq!(report["flaky"].error, None);

        let text = metrics.encode();
        assert!(text.contains("cutover_engine_pass_failures_total{reconciler=\"flaky\"} 8\n"), "{text}");
        assert!(text.contains("cutover_engine_backoff_seconds{reconciler=\"flaky\"} 0.0\n"), "{text}");

        stop.send_replace(true);
        handle.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_during_the_backoff_runs_the_next_pass_only_when_the_delay_is_over() {
        let reconciler = Arc::new(Flaky { failures: u32::MAX, passes: Mutex::default() });
        let metrics = Metrics::default();
        let health = Arc::new(EngineHealth::new(&metrics));
        let wake = Arc::new(Notify::new());
        let (stop, shutdown) = watch::channel(false);
        let config = EngineConfig {
            tick: Duration::from_secs(10),
            max_backoff: Duration::from_secs(60),
            ..EngineConfig::default()
        };
        let handle = spawn(reconciler.clone(), wake.clone(), config, health.clone(), shutdown);

        // Passes at 0 (fails: 10 s), 10 (fails: 20 s); the next is due at 30.
        tokio::time::sleep(Duration::from_secs(15)).await;
        wake.notify_one();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(reconciler.passes.lock().unwrap().len(), 2, "a wake does not cut the backoff short");
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(gaps(&reconciler.passes.lock().unwrap()), [10, 20]);
        let text = metrics.encode();
        assert!(text.contains("cutover_engine_backoff_seconds{reconciler=\"flaky\"} 40.0\n"), "{text}");

        // Shutdown is not held up by the backoff.
        stop.send_replace(true);
        handle.await.unwrap();
    }
}
