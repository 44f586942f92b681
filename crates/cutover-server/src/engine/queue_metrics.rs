//! Prometheus metrics of the submit queue: depth, time in queue, checks per landed change
//! (checks ÷ landed), cancels and refusals.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Labels of queue metrics: the queue's name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

fn time_in_queue() -> Histogram {
    // 100 ms to ~1.8 h.
    Histogram::new(exponential_buckets(0.1, 2.0, 17))
}

#[derive(Clone)]
pub struct QueueMetrics {
    pub depth: Family<QueueLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    pub time_in_queue: Family<QueueLabels, Histogram, fn() -> Histogram>,
    pub checks: Family<QueueLabels, Counter>,
    pub landed: Family<QueueLabels, Counter>,
    pub cancels: Family<QueueLabels, Counter>,
    pub failures: Family<QueueLabels, Counter>,
}

impl QueueMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            depth: Family::default(),
            time_in_queue: Family::new_with_constructor(time_in_queue),
            checks: Family::default(),
            landed: Family::default(),
            cancels: Family::default(),
            failures: Family::default(),
        };
        registry.register("queue_depth", "Change requests in a queue not yet terminal", metrics.depth.clone());
        registry.register_with_unit(
            "queue_time_in_queue",
            "Time from submit to landing of a change request",
            Unit::Seconds,
            metrics.time_in_queue.clone(),
        );
        registry.register(
            "queue_checks",
            "Checks started (checks per landed change = this / queue_landed)",
            metrics.checks.clone(),
        );
        registry.register("queue_landed", "Change requests landed", metrics.landed.clone());
        registry.register("queue_cancels", "Change requests cancelled", metrics.cancels.clone());
        registry.register(
            "queue_failures",
            "Change requests refused (culprits of failed checks)",
            metrics.failures.clone(),
        );
        metrics
    }

    pub fn labels(queue: &str) -> QueueLabels {
        QueueLabels { queue: queue.to_owned() }
    }
}
