//! Prometheus metrics of warm pools: instances created and failed, claims and claim misses
//! with the time a claim takes (the figure that says whether a pool does its job), and the
//! desired, running and ready counts each reconciler pass sees.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Labels of pool metrics: the pool's name (pool names are unique per workspace; a workspace
/// label would make the series per tenant, which operators rarely want).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

fn claim_histogram() -> Histogram {
    // 100 µs to ~3 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

#[derive(Clone)]
pub struct PoolMetrics {
    pub created: Family<PoolLabels, Counter>,
    pub failed: Family<PoolLabels, Counter>,
    pub claimed: Family<PoolLabels, Counter>,
    pub claim_misses: Family<PoolLabels, Counter>,
    pub claim_duration: Family<PoolLabels, Histogram, fn() -> Histogram>,
    pub desired: Family<PoolLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    pub running: Family<PoolLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    pub ready: Family<PoolLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
}

impl PoolMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            created: Family::default(),
            failed: Family::default(),
            claimed: Family::default(),
            claim_misses: Family::default(),
            claim_duration: Family::new_with_constructor(claim_histogram),
            desired: Family::default(),
            running: Family::default(),
            ready: Family::default(),
        };
        registry.register(
            "pool_instances_created",
            "Pool instances created (start builds queued)",
            metrics.created.clone(),
        );
        registry.register("pool_builds_failed", "Pool builds that failed", metrics.failed.clone());
        registry.register("pool_claims", "Instances handed out by claims", metrics.claimed.clone());
        registry.register("pool_claim_misses", "Claims answered pool_empty", metrics.claim_misses.clone());
        registry.register_with_unit(
            "pool_claim_duration",
            "Time a claim takes in the store, hit or miss",
            Unit::Seconds,
            metrics.claim_duration.clone(),
        );
        registry.register("pool_desired_instances", "What a pool's schedule asks for now", metrics.desired.clone());
        registry.register("pool_running_instances", "A pool's running instances", metrics.running.clone());
        registry.register("pool_ready_instances", "A pool's running and ready instances", metrics.ready.clone());
        metrics
    }

    /// A claim answered: handed out (`hit`) or `pool_empty`, and how long it took.
    pub fn claim(&self, pool: &str, hit: bool, took: Duration) {
        let labels = PoolLabels { pool: pool.to_owned() };
        if hit {
            self.claimed.get_or_create(&labels).inc();
        } else {
            self.claim_misses.get_or_create(&labels).inc();
        }
        self.claim_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// The counts of one reconciler pass.
    pub fn counts(&self, pool: &str, counts: &cutover_domain::pools::PoolCounts) {
        let labels = PoolLabels { pool: pool.to_owned() };
        self.desired.get_or_create(&labels).set(i64::from(counts.desired));
        self.running.get_or_create(&labels).set(i64::from(counts.running));
        self.ready.get_or_create(&labels).set(i64::from(counts.ready));
    }
}
