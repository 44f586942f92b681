//! Exposures, recorded without slowing resolve: the request path only checks an in-memory set
//! and appends to a buffer; a background task writes the buffer in batches.
//!
//! What a crash can lose: the exposures buffered since the last flush, at most
//! `exposure_flush_ms` (default 1 s) of them. It cannot corrupt counts: a batch and the totals it
//! moves commit in one transaction, and the database, not this process, decides what is a first
//! exposure, so a batch retried after an error, or the same user exposed on several replicas,
//! still counts once.
//!
//! A row the database refuses on its own is set aside (counted in
//! `cutover_exposures_rejected_total`) rather than retried: one bad row must never stop the
//! recording of every other user.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cutover_domain::Timestamp;
use cutover_store::{Exposure, Store, StoreError};
use hashbrown::HashTable;
use tokio::sync::{Notify, watch};

use super::LiveExperiment;

/// A buffer this long is flushed at once, without waiting for the timer.
const FLUSH_AT: usize = 5_000;
/// Most exposures kept while the database refuses them; beyond this, new ones are dropped (and
/// counted in `cutover_exposures_dropped_total`) rather than growing without bound.
const MAX_PENDING: usize = 1_000_000;
/// Most (experiment, user, variant) entries remembered; the set is cleared when full. Forgetting
/// only costs a repeat trip through the buffer: the database skips users it already has.
const MAX_SEEN: usize = 1_000_000;

#[derive(Default)]
struct Inner {
    seen: HashTable<(Arc<str>, Box<str>, u32)>,
    pending: Vec<Exposure>,
}

/// The exposure buffer of one process.
pub struct Exposures {
    inner: Mutex<Inner>,
    hasher: std::hash::RandomState,
    full: Notify,
    dropped: prometheus_client::metrics::counter::Counter,
    recorded: prometheus_client::metrics::counter::Counter,
    rejected: prometheus_client::metrics::counter::Counter,
}

impl Exposures {
    pub fn new(metrics: &crate::metrics::Metrics) -> Self {
        Self {
            inner: Mutex::default(),
            hasher: std::hash::RandomState::new(),
            full: Notify::new(),
            dropped: metrics.exposures_dropped.clone(),
            recorded: metrics.exposures_recorded.clone(),
            rejected: metrics.exposures_rejected.clone(),
        }
    }

    /// Notes that `targeting_key` saw variant `index` of a running experiment. Cheap when the
    /// user was seen before: one hash and one lookup under a lock held for nanoseconds.
    pub fn record(&self, experiment: &LiveExperiment, targeting_key: &str, index: usize) {
        let variant = u32::try_from(index).unwrap_or(u32::MAX);
        let hash = self.hasher.hash_one((&*experiment.id, targeting_key, variant));
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let same = |(id, key, v): &(Arc<str>, Box<str>, u32)| {
            *v == variant && **key == *targeting_key && **id == *experiment.id
        };
        if inner.seen.find(hash, same).is_some() {
            return;
        }
        if inner.pending.len() >= MAX_PENDING {
            self.dropped.inc();
            return;
        }
        if inner.seen.len() >= MAX_SEEN {
            inner.seen.clear();
        }
        let entry = (experiment.id.clone(), Box::<str>::from(targeting_key), variant);
        inner.seen.insert_unique(hash, entry, |e| self.hasher.hash_one((&*e.0, &*e.1, e.2)));
        inner.pending.push(Exposure {
            experiment_id: experiment.id.to_string(),
            targeting_key: targeting_key.to_owned(),
            variant,
            at: Timestamp::now(),
        });
        if inner.pending.len() == FLUSH_AT {
            self.full.notify_one();
        }
    }

    /// Writes what is buffered. Rows the database refuses on their own are set aside and
    /// counted; when the database cannot be reached, what was not written goes back to the buffer
    /// for the next try and the error is returned.
    pub async fn flush(&self, store: &Store) -> Result<u64, StoreError> {
        let batch = std::mem::take(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner).pending);
        if batch.is_empty() {
            return Ok(0);
        }
        let flush = store.flush_exposures(batch).await;
        self.recorded.inc_by(flush.recorded);
        for (exposure, error) in &flush.rejected {
            tracing::warn!(
                experiment_id = exposure.experiment_id,
                targeting_key = ?exposure.targeting_key,
                %error,
                "the database refused an exposure; it is set aside"
            );
        }
        self.rejected.inc_by(flush.rejected.len() as u64);
        match flush.error {
            None => Ok(flush.recorded),
            Some(e) => {
                let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
                let room = MAX_PENDING.saturating_sub(inner.pending.len());
                let lost = flush.retry.len().saturating_sub(room);
                self.dropped.inc_by(lost as u64);
                inner.pending.extend(flush.retry.into_iter().take(room));
                Err(e)
            }
        }
    }

    /// Flushes every `interval`, or sooner when the buffer fills, until shutdown; then once more.
    pub fn spawn(
        self: Arc<Self>,
        store: Store,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(interval);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = timer.tick() => {}
                    () = self.full.notified() => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => break,
                }
                if let Err(e) = self.flush(&store).await {
                    tracing::warn!(error = %e, "could not record exposures; will retry");
                }
            }
            if let Err(e) = self.flush(&store).await {
                tracing::error!(error = %e, "could not record the last exposures before shutdown");
            }
        })
    }
}
