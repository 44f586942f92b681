use axum::http::{Method, StatusCode};
use cutover_store::Store;
use serde_json::json;

use crate::TestApp;

cutover_store::contract_tests!(health_and_readiness_answer, metrics_count_requests_by_route_and_status);

async fn health_and_readiness_answer(store: Store) {
    let app = TestApp::new(store).await;
    assert_eq!(app.call(Method::GET, "/healthz", None, None).await, (StatusCode::OK, json!({"status": "ok"})));
    assert_eq!(app.call(Method::GET, "/readyz", None, None).await, (StatusCode::OK, json!({"status": "ready"})));
}

async fn metrics_count_requests_by_route_and_status(store: Store) {
    let app = TestApp::new(store).await;
    app.get("/api/v1/environments/nope").await;
    app.get("/api/v1/environments/nope").await;
    let (status, body) = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    assert!(
        text.contains(
            r#"cutover_http_requests_total{method="GET",route="/api/v1/environments/{name}",status="404"} 2"#
        ),
        "{text}"
    );
    assert!(text.contains("cutover_http_request_duration_seconds_bucket{"), "{text}");
}

#[test]
fn the_openapi_document_matches_the_snapshot() {
    let document = cutover_server::openapi().to_pretty_json().unwrap();
    insta::assert_snapshot!("openapi", document);
}

#[test]
fn the_openapi_document_lists_every_route_of_the_api() {
    let document = cutover_server::openapi();
    let paths: Vec<_> = document.paths.paths.keys().cloned().collect();
    for route in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/openapi.json",
        "/api/v1/whoami",
        "/api/v1/workspaces",
        "/api/v1/environments",
        "/api/v1/environments/{name}",
        "/api/v1/artifacts",
        "/api/v1/artifacts/{key}",
        "/api/v1/artifacts/{key}/versions",
        "/api/v1/artifacts/{key}/versions/{n}",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/audit",
    ] {
        assert!(paths.iter().any(|p| p == route), "{route} missing from {paths:?}");
    }
    assert!(document.to_json().unwrap().contains("\"openapi\":\"3.1.0\""));
}
