//! Cutover's server: the HTTP API (axum) over the store.
//!
//! [`app`] builds the whole router from state, so tests drive it without a socket; [`run`] adds
//! configuration, migration, first-start bootstrap, logging and graceful shutdown.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
mod convert;
pub mod effects;
pub mod engine;
pub mod error;
pub mod extract;
pub mod metrics;
mod openapi;
pub mod resolve;
pub mod router;
mod startup;
pub mod tokens;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::response::IntoResponse;
use cutover_store::Store;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use config::ServerConfig;
pub use openapi::openapi;
pub use startup::{migrate, run};

use crate::error::ApiError;

/// What every request can reach: one reference-counted pointer, so that the clone every handler's
/// `State` extractor makes is one count, not one per part.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    pub store: Store,
    pub config: Arc<ServerConfig>,
    pub metrics: Arc<metrics::Metrics>,
    pub resolver: Arc<resolve::Resolver>,
    /// Tokens seen, by hash: authentication without a database round trip.
    pub tokens: Arc<tokens::TokenCache>,
    /// First exposures of users to experiment variants, buffered for the database.
    pub exposures: Arc<resolve::exposures::Exposures>,
    /// Wakes the engine's reconcilers after a change they act on (a new rollout, a control).
    pub engine_wake: Arc<tokio::sync::Notify>,
    /// What each reconciler is doing (throttled after failures), for `/readyz` and `/metrics`.
    pub engine_health: Arc<engine::health::EngineHealth>,
    /// Turns true when the server starts shutting down; long-lived streams end then.
    pub shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    /// What clients may ask the engine to run, and where webhooks may go.
    pub admission: Arc<engine::admission::Admission>,
    /// Signs and checks change-stream tickets; derived once from the secret key, not per request.
    pub tickets: Arc<resolve::ticket::TicketKey>,
}

impl AppState {
    pub fn new(store: Store, config: ServerConfig) -> Self {
        let token_ttl = std::time::Duration::from_secs(config.token_cache_seconds);
        let tokens = Arc::new(tokens::TokenCache::new(store.clone(), token_ttl));
        let resolver = Arc::new(resolve::Resolver::new(store.clone()));
        let shutdown = Arc::new(tokio::sync::watch::Sender::new(false));
        let metrics = Arc::new(metrics::Metrics::default());
        let exposures = Arc::new(resolve::exposures::Exposures::new(&metrics));
        let engine_wake = Arc::new(tokio::sync::Notify::new());
        let engine_health = Arc::new(engine::health::EngineHealth::new(&metrics));
        let admission = Arc::new(engine::admission::Admission::from_config(&config));
        let tickets = Arc::new(resolve::ticket::TicketKey::from_secret(config.secret_key.as_deref()));
        store.on_commit(effects::AfterCommit::new(&resolver, &tokens, &engine_wake));
        Self(Arc::new(Shared {
            store,
            config: Arc::new(config),
            metrics,
            resolver,
            tokens,
            exposures,
            engine_wake,
            engine_health,
            shutdown,
            admission,
            tickets,
        }))
    }

    /// Starts the engine's reconcilers; they stop when [`AppState::shutdown`] turns true.
    pub fn start_engine(&self) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let config = self.config.engine();
        // Each reconciler has its own wake (a `Notify` wakes one waiter); a change for the
        // engine wakes them all.
        let rollouts_wake = Arc::new(tokio::sync::Notify::new());
        let pools_wake = Arc::new(tokio::sync::Notify::new());
        let queue_wake = Arc::new(tokio::sync::Notify::new());
        // Other replicas' work for the engine arrives as PostgreSQL notices.
        let notices = engine::notices::spawn(&self.store, self.engine_wake.clone(), self.shutdown.subscribe());
        let forward = {
            let (engine, wakes) =
                (self.engine_wake.clone(), [rollouts_wake.clone(), pools_wake.clone(), queue_wake.clone()]);
            let mut shutdown = self.shutdown.subscribe();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = engine.notified() => wakes.iter().for_each(|wake| wake.notify_one()),
                        _ = shutdown.wait_for(|stopping| *stopping) => break,
                    }
                }
            })
        };
        let rollouts = engine::rollouts::RolloutReconciler::new(
            self.store.clone(),
            config,
            rollouts_wake.clone(),
            self.config.public_url(),
            self.admission.clone(),
        )?;
        let rollouts = engine::spawn(
            Arc::new(rollouts),
            rollouts_wake,
            config,
            self.engine_health.clone(),
            self.shutdown.subscribe(),
        );
        let pools = engine::pools::PoolReconciler::new(
            self.store.clone(),
            config,
            pools_wake.clone(),
            self.config.public_url(),
            self.admission.clone(),
            self.metrics.pools.clone(),
        );
        let pools =
            engine::spawn(Arc::new(pools), pools_wake, config, self.engine_health.clone(), self.shutdown.subscribe());
        let queue = engine::queue::QueueReconciler::new(
            self.store.clone(),
            config,
            queue_wake.clone(),
            self.admission.clone(),
            self.metrics.queues.clone(),
            std::time::Duration::from_secs(self.config.queue_prune_seconds),
            self.config.public_url(),
        )?;
        let queue =
            engine::spawn(Arc::new(queue), queue_wake, config, self.engine_health.clone(), self.shutdown.subscribe());
        Ok(tokio::spawn(async move {
            let _ = rollouts.await;
            let _ = pools.await;
            let _ = queue.await;
            let _ = forward.await;
            if let Some(notices) = notices {
                let _ = notices.await;
            }
        }))
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let (router, _) = router::router().split_for_parts();
    router
        .merge(ui::router())
        .route_layer(metrics::Track(state.metrics.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::extract::Request| {
            let route = request
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .map_or("unmatched", axum::extract::MatchedPath::as_str);
            tracing::info_span!("request", http.method = %request.method(), http.route = route, http.path = %request.uri().path())
        }))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            ApiError::internal().into_response()
        }))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> axum::response::Response {
    if uri.path().starts_with("/ofrep/") {
        return resolve::ofrep::no_route(axum::http::StatusCode::NOT_FOUND, &method, uri.path());
    }
    ApiError::not_found(format!("no route for {method} {}", uri.path())).into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> axum::response::Response {
    if uri.path().starts_with("/ofrep/") {
        return resolve::ofrep::no_route(axum::http::StatusCode::METHOD_NOT_ALLOWED, &method, uri.path());
    }
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
    .into_response()
}
