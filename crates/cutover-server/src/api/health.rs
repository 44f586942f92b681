use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use cutover_api::{Health, HealthDetails};

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok".into(), details: None })
}

/// Readiness: the database answers.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = cutover_api::ErrorBody))
)]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<axum::Json<Health>> {
    // While the store knows the database is down, `ping` fails at once: no wait for a timeout.
    match state.store.ping().await {
        Ok(()) => {
            let engine = state.engine_health.report();
            let details = (!engine.is_empty()).then_some(HealthDetails { engine });
            Ok(axum::Json(Health { status: "ready".into(), details }))
        }
        Err(e) => {
            tracing::debug!(error = %e, "readiness check failed");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database is not reachable"))
        }
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.encode())
}

static SPEC: LazyLock<String> = LazyLock::new(|| crate::openapi().to_pretty_json().unwrap_or_default());

/// This document: OpenAPI 3.1 of every route.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health", responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], SPEC.as_str())
}
