//! The HTTP API, driven through the router without a socket. Tests listed in
//! `cutover_store::contract_tests!` run on SQLite and on PostgreSQL.

mod archive;
mod artifacts;
mod audit;
mod auth;
mod environments;
mod errors;
mod events;
mod experiments;
mod health;
mod pins;
mod pools;
mod queue;
mod resilience;
mod resolve;
mod rollouts;
mod split;
mod tokens;
mod workspaces;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cutover_domain::WorkspaceName;
use cutover_server::{AppState, ServerConfig, app};
use cutover_store::Store;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A server on a test database, with the bootstrap owner token.
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub store: Store,
    pub owner: String,
}

impl TestApp {
    pub async fn new(store: Store) -> Self {
        Self::with_config(store, ServerConfig::default()).await
    }

    pub async fn with_config(store: Store, config: ServerConfig) -> Self {
        let made = store.bootstrap(&WorkspaceName::parse("default").unwrap()).await.unwrap().unwrap();
        let state = AppState::new(store.clone(), config);
        let router = app(state.clone());
        Self { router, state, store, owner: made.secret.expose().to_owned() }
    }

    /// Sends a request; `body` is sent as JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        self.send(request.unwrap()).await
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(&self.owner), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(&self.owner), Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(&self.owner), Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(&self.owner), None).await
    }

    /// Creates a token with the owner's and returns its secret.
    pub async fn token(&self, role: &str, environments: &[&str]) -> String {
        let (status, body) = self
            .post("/api/v1/tokens", serde_json::json!({"name": role, "role": role, "environments": environments}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["secret"].as_str().unwrap().to_owned()
    }
}

/// The one error shape, whole.
pub fn error(code: &str, message: &str) -> Value {
    serde_json::json!({"error": {"code": code, "message": message}})
}
