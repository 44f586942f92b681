//! What each reconciler is doing, for `/readyz` and `/metrics`: a reconciler whose passes fail is
//! *throttled* (it backs off; see [`backoff`]) and says why, as garage's workers report
//! `WorkerState::Throttled`.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cutover_api::{ReconcilerHealth, ReconcilerState};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::metrics::{Metrics, ReconcilerLabels};

/// At most this much of a failure's message is shown in `/readyz`.
const MAX_ERROR_CHARS: usize = 500;

/// How long a reconciler waits before its next pass after `failures` consecutive failed passes:
/// one tick after the first, then doubling, never more than `max`.
pub fn backoff(tick: Duration, max: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return tick.min(max);
    }
    let factor = 2u32.saturating_pow(failures - 1);
    tick.saturating_mul(factor).min(max)
}

#[derive(Debug, Clone)]
enum State {
    Ok,
    Throttled { error: String, failures: u32, retry_at: Instant },
}

/// The state of every reconciler of this process.
pub struct EngineHealth {
    states: Mutex<BTreeMap<&'static str, State>>,
    failures: Family<ReconcilerLabels, Counter>,
    backoff: Family<ReconcilerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl EngineHealth {
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            states: Mutex::default(),
            failures: metrics.engine_pass_failures.clone(),
            backoff: metrics.engine_backoff.clone(),
        }
    }

    fn labels(reconciler: &'static str) -> ReconcilerLabels {
        ReconcilerLabels { reconciler: reconciler.to_owned() }
    }

    /// A reconciler started, or one of its passes succeeded.
    pub fn succeeded(&self, reconciler: &'static str) {
        self.states.lock().unwrap_or_else(PoisonError::into_inner).insert(reconciler, State::Ok);
        self.backoff.get_or_create(&Self::labels(reconciler)).set(0.0);
    }

    /// A pass failed for the `failures`-th time in a row; the next one runs after `delay`.
    pub fn failed(&self, reconciler: &'static str, error: &anyhow::Error, failures: u32, delay: Duration) {
        let mut error = format!("{error:#}");
        if let Some((cut, _)) = error.char_indices().nth(MAX_ERROR_CHARS) {
            error.truncate(cut);
            error.push('…');
        }
        let state = State::Throttled { error, failures, retry_at: Instant::now() + delay };
        self.states.lock().unwrap_or_else(PoisonError::into_inner).insert(reconciler, state);
        let labels = Self::labels(reconciler);
        self.failures.get_or_create(&labels).inc();
        self.backoff.get_or_create(&labels).set(delay.as_secs_f64());
    }

    /// Every reconciler's state, by name; empty while the engine is not started.
    pub fn report(&self) -> BTreeMap<String, ReconcilerHealth> {
        let now = Instant::now();
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        states
            .iter()
            .map(|(name, state)| {
                let health = match state {
                    State::Ok => {
                        ReconcilerHealth { state: ReconcilerState::Ok, error: None, failures: None, retry_in_ms: None }
                    }
                    State::Throttled { error, failures, retry_at } => ReconcilerHealth {
                        state: ReconcilerState::Throttled,
                        error: Some(error.clone()),
                        failures: Some(*failures),
                        retry_in_ms: Some(
                            u64::try_from(retry_at.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX),
                        ),
                    },
                };
                ((*name).to_owned(), health)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_tick_after_each_failure_and_stops_at_the_cap() {
        let tick = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        let delays: Vec<u64> = (1..=9).map(|n| backoff(tick, max, n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(tick, max, u32::MAX), max);
        assert_eq!(backoff(Duration::from_millis(250), max, 3), Duration::from_secs(1));
    }
}
