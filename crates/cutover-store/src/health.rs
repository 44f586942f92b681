//! Whether the database answers, so that an outage costs callers one short timeout rather than
//! one per request.
//!
//! The first failure to reach the database sets a flag; while it is set, every store call fails
//! at once with [`StoreError::Unavailable`] instead of waiting for a connection. A background
//! probe opens a fresh connection every [`PROBE_INTERVAL`] and clears the flag when one works;
//! each recovery is announced on [`Store::recoveries`], so that caches kept through the outage
//! can be checked against the database again.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::Connection;
use tokio::sync::watch;

use crate::{Engine, Result, Store, StoreError};

/// How often the probe tries the database while it is unreachable.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

pub(crate) struct Health {
    down: AtomicBool,
    probing: AtomicBool,
    /// How long one probe may take: the pool's acquire timeout.
    probe_timeout: Duration,
    /// Counts the recoveries.
    recoveries: watch::Sender<u64>,
}

impl Health {
    pub(crate) fn new(probe_timeout: Duration) -> Self {
        Self {
            down: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            probe_timeout,
            recoveries: watch::Sender::new(0),
        }
    }
}

impl Store {
    /// False from the first failure to reach the database until the probe reaches it again.
    pub fn is_available(&self) -> bool {
        !self.health.down.load(Ordering::Acquire)
    }

    /// Changes each time the database answers again after being unreachable.
    pub fn recoveries(&self) -> watch::Receiver<u64> {
        self.health.recoveries.subscribe()
    }

    /// Awaits `acquire` (a pooled connection or a transaction), unless the database is known to
    /// be unreachable: then fails at once.
    pub(crate) async fn checked<T>(&self, acquire: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T> {
        if !self.is_available() {
            return Err(StoreError::Unavailable("it did not answer; waiting for it to come back".into()));
        }
        acquire.await.map_err(|e| self.failed(e))
    }

    /// Converts an error met while talking to the database, noting an outage. A pool timeout
    /// while every connection is busy is contention, not an outage: it is still unavailable for
    /// this call, but the flag stays down.
    pub(crate) fn failed(&self, err: sqlx::Error) -> StoreError {
        let contention = matches!(err, sqlx::Error::PoolTimedOut) && self.pool_is_busy();
        let err = StoreError::from(err);
        if err.is_unavailable() && !contention {
            self.mark_unavailable(&err);
        }
        err
    }

    fn pool_is_busy(&self) -> bool {
        match &*self.engine {
            // One local file: a timeout is always a writer holding the lock.
            Engine::Sqlite { .. } => true,
            Engine::Postgres(pool) => pool.num_idle() == 0 && pool.size() >= pool.options().get_max_connections(),
        }
    }

    fn mark_unavailable(&self, err: &StoreError) {
        if self.health.down.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::error!(error = %err, "the database is unreachable; answering 503 until it answers again");
        if !self.health.probing.swap(true, Ordering::AcqRel) {
            let store = self.clone();
            tokio::spawn(async move { store.probe_until_reachable().await });
        }
    }

    async fn probe_until_reachable(self) {
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            if self.is_closed() {
                self.health.probing.store(false, Ordering::Release);
                return;
            }
            match tokio::time::timeout(self.health.probe_timeout, self.probe()).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => tracing::debug!(error = %e, "the database is still unreachable"),
                Err(_) => tracing::debug!("the database is still unreachable: the probe timed out"),
            }
        }
        // In this order: a failure noted between the two stores starts a new probe.
        self.health.probing.store(false, Ordering::Release);
        self.health.down.store(false, Ordering::Release);
        self.health.recoveries.send_modify(|n| *n += 1);
        tracing::warn!("the database answers again");
    }

    /// One round trip on a fresh connection (PostgreSQL), so that neither a busy pool nor its
    /// dead connections decide the answer.
    async fn probe(&self) -> Result<(), sqlx::Error> {
        match &*self.engine {
            Engine::Sqlite { read, .. } => {
                sqlx::query("SELECT 1").execute(read).await?;
            }
            Engine::Postgres(pool) => {
                let mut connection = sqlx::PgConnection::connect_with(&pool.connect_options()).await?;
                sqlx::query("SELECT 1").execute(&mut connection).await?;
                connection.close().await?;
            }
        }
        Ok(())
    }

    fn is_closed(&self) -> bool {
        match &*self.engine {
            Engine::Sqlite { read, write } => read.is_closed() || write.is_closed(),
            Engine::Postgres(pool) => pool.is_closed(),
        }
    }
}
