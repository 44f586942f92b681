//! The engine: reconcilers that drive background work from database rows (rule 6 of the
//! design). Each reconciler reads state, acts idempotently, and holds a lease per unit of work so
//! that with several replicas exactly one drives each; it wakes on change notifications and on a
//! timer, and stops within a deadline at shutdown.
//!
//! Rollouts are the first reconciler ([`rollouts`]); the queue and pools will run on the same
//! runner with their own leases.

pub mod admission;
pub mod executors;
pub mod rollouts;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

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

/// Settings of the engine, from the server configuration.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// How long a lease lasts without renewal: a crashed replica's work is taken over after it.
    pub lease: Duration,
    /// How often every reconciler runs without being woken.
    pub tick: Duration,
    /// How long shutdown waits for running work before interrupting it.
    pub shutdown_deadline: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            tick: Duration::from_secs(1),
            shutdown_deadline: Duration::from_secs(10),
        }
    }
}

/// Runs `reconciler` on every `wake` and every tick until `shutdown` turns true, then shuts it
/// down within the deadline.
pub fn spawn<R: Reconciler>(
    reconciler: Arc<R>,
    wake: Arc<Notify>,
    config: EngineConfig,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut timer = tokio::time::interval(config.tick);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = timer.tick() => {}
                () = wake.notified() => {}
                _ = shutdown.wait_for(|stopping| *stopping) => break,
            }
            if let Err(e) = reconciler.reconcile().await {
                tracing::warn!(reconciler = reconciler.name(), error = %e, "reconcile failed; will retry");
            }
        }
        reconciler.shutdown(config.shutdown_deadline).await;
        tracing::info!(reconciler = reconciler.name(), "stopped");
    })
}
