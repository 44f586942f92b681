//! Prometheus metrics: request counts and latency by route and status, exposures, and the
//! engine's failed passes and backoff, served at `/metrics`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// Labels of the engine's metrics: which reconciler.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcilerLabels {
    pub reconciler: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~13 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

/// The counter and histogram of one (method, route, status), as registered in the families.
/// Both are handles on the registered metric (an `Arc`), so counting through them is counting in
/// the families that `/metrics` encodes.
#[derive(Clone)]
struct RouteMetrics {
    requests: Counter,
    latency: Histogram,
}

/// Which request a [`RouteMetrics`] counts. A request looks its handles up by [`RouteKeyRef`],
/// borrowing its method and route template: nothing is allocated once a key has been seen.
#[derive(Clone, Hash, PartialEq, Eq)]
struct RouteKey {
    method: Method,
    route: Box<str>,
    status: u16,
}

/// [`RouteKey`], borrowed; hashes the same (same fields, same order).
#[derive(Hash)]
struct RouteKeyRef<'a> {
    method: &'a Method,
    route: &'a str,
    status: u16,
}

impl hashbrown::Equivalent<RouteKey> for RouteKeyRef<'_> {
    fn equivalent(&self, key: &RouteKey) -> bool {
        *self.method == key.method && self.route == &*key.route && self.status == key.status
    }
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    /// The request metrics' handles by key, read without a lock; a key seen for the first time
    /// creates its metrics in the families (as the labels' first use always has) and is added.
    /// The keys are those the families hold: one per (method, route template, status) answered.
    route_metrics: ArcSwap<hashbrown::HashMap<RouteKey, RouteMetrics>>,
    /// First exposures written to the database.
    pub exposures_recorded: Counter,
    /// Exposures lost because the buffer was full while the database refused writes.
    pub exposures_dropped: Counter,
    /// Exposures the database refused on their own (a value it cannot hold), set aside.
    pub exposures_rejected: Counter,
    /// Reconciler passes that failed.
    pub engine_pass_failures: Family<ReconcilerLabels, Counter>,
    /// How long a reconciler waits before its next pass after failures (0 when healthy).
    pub engine_backoff: Family<ReconcilerLabels, Gauge<f64, AtomicU64>>,
    /// Warm pools: creates, failures, claims, counts.
    pub pools: crate::engine::pool_metrics::PoolMetrics,
    /// The submit queue: depth, time in queue, checks, landings, cancels, refusals.
    pub queues: crate::engine::queue_metrics::QueueMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cutover");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests answered, by route and status", requests.clone());
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer HTTP requests, by route and status",
            Unit::Seconds,
            latency.clone(),
        );
        let exposures_recorded = Counter::default();
        let exposures_dropped = Counter::default();
        registry.register("exposures_recorded", "First exposures written to the database", exposures_recorded.clone());
        registry.register(
            "exposures_dropped",
            "Exposures lost because the buffer was full while the database refused writes",
            exposures_dropped.clone(),
        );
        let exposures_rejected = Counter::default();
        registry.register(
            "exposures_rejected",
            "Exposures the database refused on their own, set aside so that they do not hold up the others",
            exposures_rejected.clone(),
        );
        let engine_pass_failures = Family::<ReconcilerLabels, Counter>::default();
        registry.register(
            "engine_pass_failures",
            "Reconciler passes that failed, by reconciler",
            engine_pass_failures.clone(),
        );
        let engine_backoff = Family::<ReconcilerLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "engine_backoff",
            "How long a reconciler waits before its next pass after failed ones; 0 when its last pass succeeded",
            Unit::Seconds,
            engine_backoff.clone(),
        );
        let pools = crate::engine::pool_metrics::PoolMetrics::register(&mut registry);
        let queues = crate::engine::queue_metrics::QueueMetrics::register(&mut registry);
        Self {
            pools,
            queues,
            registry,
            requests,
            latency,
            route_metrics: ArcSwap::default(),
            exposures_recorded,
            exposures_dropped,
            exposures_rejected,
            engine_pass_failures,
            engine_backoff,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts one answered request and its duration under its labels.
    fn observe(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let key = RouteKeyRef { method, route, status };
        if let Some(metrics) = self.route_metrics.load().get(&key) {
            metrics.requests.inc();
            metrics.latency.observe(seconds);
            return;
        }
        let metrics = self.register(&key);
        metrics.requests.inc();
        metrics.latency.observe(seconds);
    }

    /// The metrics of a key seen for the first time, created in the families and remembered.
    #[cold]
    fn register(&self, key: &RouteKeyRef<'_>) -> RouteMetrics {
        let labels =
            RequestLabels { method: key.method.as_str().to_owned(), route: key.route.to_owned(), status: key.status };
        // Two requests racing here get the same handles: the families create each metric once.
        let metrics = RouteMetrics {
            requests: self.requests.get_or_create(&labels).clone(),
            latency: self.latency.get_or_create(&labels).clone(),
        };
        self.route_metrics.rcu(|known| {
            let mut known = hashbrown::HashMap::clone(known);
            known.insert(
                RouteKey { method: key.method.clone(), route: key.route.into(), status: key.status },
                metrics.clone(),
            );
            Arc::new(known)
        });
        metrics
    }
}

/// Middleware: counts and times every routed request under its route template (a layer on each
/// route, where the template is known).
///
/// A plain [`tower::Layer`] rather than `axum::middleware::from_fn`, which boxes two futures per
/// request; and its state is the metrics alone, not [`crate::AppState`]: the service is cloned
/// with its route for every request.
#[derive(Clone)]
pub struct Track(pub Arc<Metrics>);

impl<S> tower::Layer<S> for Track {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked { inner, metrics: self.0.clone() }
    }
}

/// A route's service, counted and timed by [`Track`].
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> tower::Service<Request> for Tracked<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The route template is shared by every request of the route (an `Arc<str>`), the method
        // is a small value: keeping both costs no allocation.
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = request.method().clone();
        TrackedFuture {
            inner: self.inner.call(request),
            seen: Some(Seen { metrics: self.metrics.clone(), route, method, started: Instant::now() }),
        }
    }
}

/// What a request's metrics need once its answer is ready.
struct Seen {
    metrics: Arc<Metrics>,
    route: Option<MatchedPath>,
    method: Method,
    started: Instant,
}

pin_project_lite::pin_project! {
    /// The route's answer, counted when it is ready.
    pub struct TrackedFuture<F> {
        #[pin]
        inner: F,
        seen: Option<Seen>,
    }
}

impl<F, E> std::future::Future for TrackedFuture<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(seen)) = (&output, this.seen.take()) {
            let route = seen.route.as_ref().map_or("unmatched", MatchedPath::as_str);
            seen.metrics.observe(&seen.method, route, response.status().as_u16(), seen.started.elapsed().as_secs_f64());
        }
        std::task::Poll::Ready(output)
    }
}
