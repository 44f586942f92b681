//! Exposures, recorded without slowing resolve: the request path only checks an in-memory set
//! and appends to a buffer; a background task writes the buffer in batches.
//!
//! The set and the buffer are split in [`SHARDS`] shards by (experiment, user), each behind its
//! own lock: two requests meet on a lock only when their users fall in one shard, and the flusher
//! takes each shard's buffer in one move (its capacity stays, so the next appends do not
//! reallocate), never holding more than one shard. Recording never waits for the database and
//! never blocks on a full buffer: past [`MAX_PENDING`] it drops the exposure and counts it.
//!
//! What a crash can lose: the exposures buffered since the last flush, at most
//! `exposure_flush_ms` (default 1 s) of them. A graceful shutdown loses none: the server writes
//! the buffer once more after the last request has been answered. It cannot corrupt counts: a
//! batch and the totals it moves commit in one transaction, and the database, not this process,
//! decides what is a first exposure, so a batch retried after an error, or the same user exposed
//! on several replicas, still counts once.
//!
//! A row the database refuses on its own is set aside (counted in
//! `cutover_exposures_rejected_total`) rather than retried: one bad row must never stop the
//! recording of every other user.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cutover_domain::Timestamp;
use cutover_store::{Exposure, Store, StoreError};
use hashbrown::HashTable;
use tokio::sync::{Notify, watch};

use super::LiveExperiment;

/// Independent locks: enough that two busy request threads (or a request and the flusher)
/// rarely want the same one.
const SHARDS: usize = 16;
/// A buffer this long is flushed at once, without waiting for the timer.
const FLUSH_AT: usize = 5_000;
/// Most exposures kept while the database refuses them; beyond this, new ones are dropped (and
/// counted in `cutover_exposures_dropped_total`) rather than growing without bound.
const MAX_PENDING: usize = 1_000_000;
/// Most (experiment, user, variant) entries remembered per shard; a shard's set is cleared when
/// full. Forgetting only costs a repeat trip through the buffer: the database skips users it
/// already has.
const MAX_SEEN_PER_SHARD: usize = 1_000_000 / SHARDS;

type Seen = (Arc<str>, Box<str>, u32);

#[derive(Default)]
struct Shard {
    seen: HashTable<Seen>,
    pending: Vec<Exposure>,
}

/// A shard on cache lines of its own, so that two threads locking neighbouring shards do not
/// bounce one line between cores.
#[derive(Default)]
#[repr(align(128))]
struct Padded(Mutex<Shard>);

impl Padded {
    fn lock(&self) -> MutexGuard<'_, Shard> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The exposure buffer of one process.
pub struct Exposures {
    shards: Box<[Padded]>,
    /// Exposures buffered in all shards, moved under the shard's lock with the buffer itself.
    buffered: AtomicUsize,
    hasher: std::hash::RandomState,
    full: Notify,
    dropped: prometheus_client::metrics::counter::Counter,
    recorded: prometheus_client::metrics::counter::Counter,
    rejected: prometheus_client::metrics::counter::Counter,
}

impl Exposures {
    pub fn new(metrics: &crate::metrics::Metrics) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Padded::default()).collect(),
            buffered: AtomicUsize::new(0),
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
        // The table uses the hash's low bits for the slot and its top 7 for the tag: the shard
        // takes bits from the middle.
        let shard = &self.shards[(hash >> 32) as usize % SHARDS];
        let (buffered, forgotten) = {
            let mut shard = shard.lock();
            let same = |(id, key, v): &Seen| *v == variant && **key == *targeting_key && **id == *experiment.id;
            if shard.seen.find(hash, same).is_some() {
                return;
            }
            if self.buffered.load(Ordering::Relaxed) >= MAX_PENDING {
                self.dropped.inc();
                return;
            }
            // Freed after the lock is released.
            let forgotten = (shard.seen.len() >= MAX_SEEN_PER_SHARD).then(|| std::mem::take(&mut shard.seen));
            let entry = (experiment.id.clone(), Box::<str>::from(targeting_key), variant);
            shard.seen.insert_unique(hash, entry, |e| self.hasher.hash_one((&*e.0, &*e.1, e.2)));
            shard.pending.push(Exposure {
                experiment_id: experiment.id.to_string(),
                targeting_key: targeting_key.to_owned(),
                variant,
                at: Timestamp::now(),
            });
            (self.buffered.fetch_add(1, Ordering::Relaxed) + 1, forgotten)
        };
        drop(forgotten);
        if buffered == FLUSH_AT {
            self.full.notify_one();
        }
    }

    /// Everything buffered, taken out of the shards one at a time.
    fn take(&self) -> Vec<Exposure> {
        let mut batch = Vec::with_capacity(self.buffered.load(Ordering::Relaxed));
        for shard in &self.shards {
            let mut shard = shard.lock();
            self.buffered.fetch_sub(shard.pending.len(), Ordering::Relaxed);
            batch.append(&mut shard.pending);
        }
        batch
    }

    /// Writes what is buffered. Rows the database refuses on their own are set aside and
    /// counted; when the database cannot be reached, what was not written goes back to the buffer
    /// for the next try and the error is returned.
    pub async fn flush(&self, store: &Store) -> Result<u64, StoreError> {
        let batch = self.take();
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
                // Back into one shard: any shard's buffer is written by the next flush.
                let mut shard = self.shards[0].lock();
                let room = MAX_PENDING.saturating_sub(self.buffered.load(Ordering::Relaxed));
                let kept = flush.retry.len().min(room);
                self.dropped.inc_by((flush.retry.len() - kept) as u64);
                shard.pending.extend(flush.retry.into_iter().take(kept));
                self.buffered.fetch_add(kept, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Flushes every `interval`, or sooner when the buffer fills, until `stop` turns true; then
    /// once more. The server stops it after its last request has been answered, so that nothing
    /// resolve buffered is left behind.
    pub fn spawn(
        self: Arc<Self>,
        store: Store,
        interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            // Nothing is buffered at start: the first tick is one interval away.
            let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = timer.tick() => {}
                    () = self.full.notified() => {}
                    _ = stop.wait_for(|stopping| *stopping) => break,
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
