use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use cutover_server::engine::{EngineConfig, Reconciler};
use cutover_store::Store;
use serde_json::json;

use crate::TestApp;

cutover_store::contract_tests!(
    health_and_readiness_answer,
    metrics_count_requests_by_route_and_status,
    request_metrics_are_labelled_by_method_route_template_and_status,
    a_failing_reconciler_shows_as_throttled_in_readiness_and_metrics,
);

async fn health_and_readiness_answer(store: Store) {
    let app = TestApp::new(store).await;
    assert_eq!(app.call(Method::GET, "/healthz", None, None).await, (StatusCode::OK, json!({"status": "ok"})));
    assert_eq!(app.call(Method::GET, "/readyz", None, None).await, (StatusCode::OK, json!({"status": "ready"})));
}

/// Fails every pass, as the rollout reconciler does when it cannot list the live rollouts.
struct Failing;

impl Reconciler for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }

    async fn reconcile(&self) -> anyhow::Result<()> {
        Err(anyhow::anyhow!("cannot list live rollouts").context("rollouts"))
    }

    async fn shutdown(&self, _deadline: Duration) {}
}

async fn a_failing_reconciler_shows_as_throttled_in_readiness_and_metrics(store: Store) {
    let app = TestApp::new(store).await;
    // A long tick: the first pass runs at once and fails, the next is a minute away.
    let config = EngineConfig { tick: Duration::from_secs(60), ..EngineConfig::default() };
    let engine = cutover_server::engine::spawn(
        Arc::new(Failing),
        app.state.engine_wake.clone(),
        config,
        app.state.engine_health.clone(),
        app.state.shutdown.subscribe(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (status, mut body) = loop {
        let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
        if body["details"]["engine"]["failing"]["state"] == "throttled" || std::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Ready all the same: resolve and the API work while a reconciler backs off.
    assert_eq!(status, StatusCode::OK);
    let retry_in_ms = body["details"]["engine"]["failing"]["retry_in_ms"].take().as_u64().unwrap();
    assert!(retry_in_ms > 0 && retry_in_ms <= 60_000, "{retry_in_ms}");
    assert_eq!(
        body,
        json!({"status": "ready", "details": {"engine": {"failing": {
            "state": "throttled",
            "error": "rollouts: cannot list live rollouts",
            "failures": 1,
            "retry_in_ms": null,
        }}}})
    );

    let (status, body) = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    assert!(text.contains("cutover_engine_pass_failures_total{reconciler=\"failing\"} 1\n"), "{text}");
    assert!(text.contains("cutover_engine_backoff_seconds{reconciler=\"failing\"} 60.0\n"), "{text}");

    app.state.shutdown.send_replace(true);
    engine.await.unwrap();
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

/// The request metrics' series, whole: one per (method, route template, status) answered, in
/// both the counter and the histogram, counted through handles cached after the first request.
async fn request_metrics_are_labelled_by_method_route_template_and_status(store: Store) {
    let app = TestApp::new(store).await;
    app.post("/api/v1/environments", json!({"name": "production"})).await;
    let sdk = app.token("sdk", &["production"]).await;
    for _ in 0..3 {
        let (status, _, _) =
            crate::resolve::ofrep(&app, "/ofrep/v1/evaluate/flags/a/b", Some(&sdk), r#"{"context":{}}"#, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _, _) = crate::resolve::ofrep(&app, "/ofrep/v1/evaluate/flags/x", None, "{}", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.call(Method::GET, "/healthz", None, None).await;
    app.call(Method::GET, "/healthz", None, None).await;
    app.call(Method::GET, "/api/v1/environments/production", None, None).await;
    let (_, body) = app.call(Method::GET, "/metrics", None, None).await;
    let text = body.as_str().unwrap();
    let series = |prefix: &str| -> Vec<String> {
        let mut lines: Vec<String> =
            text.lines().filter_map(|line| line.strip_prefix(prefix)).map(str::to_owned).collect();
        lines.sort();
        lines
    };
    let expected = [
        r#"{method="GET",route="/api/v1/environments/{name}",status="401"} 1"#,
        r#"{method="GET",route="/healthz",status="200"} 2"#,
        r#"{method="POST",route="/api/v1/environments",status="201"} 1"#,
        r#"{method="POST",route="/api/v1/tokens",status="201"} 1"#,
        r#"{method="POST",route="/ofrep/v1/evaluate/flags/{*key}",status="401"} 1"#,
        r#"{method="POST",route="/ofrep/v1/evaluate/flags/{*key}",status="404"} 3"#,
    ];
    assert_eq!(series("cutover_http_requests_total"), expected, "{text}");
    assert_eq!(series("cutover_http_request_duration_seconds_count"), expected, "{text}");
    let buckets = series("cutover_http_request_duration_seconds_bucket{");
    assert_eq!(buckets.len(), 6 * 19, "18 buckets and +Inf per series: {text}");
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

#[test]
fn every_operation_states_its_errors_and_names_each_parameter_once() {
    let document: serde_json::Value = serde_json::from_str(&cutover_server::openapi().to_json().unwrap()).unwrap();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
            let mut seen: Vec<_> = parameters.iter().map(|p| (p["name"].clone(), p["in"].clone())).collect();
            seen.sort_by_key(|(name, place)| format!("{name}{place}"));
            let count = seen.len();
            seen.dedup();
            assert_eq!(seen.len(), count, "{method} {path} names a parameter twice");
            if operation.get("security").is_some() {
                assert!(responses.contains_key("401"), "{method} {path} does not list 401");
            }
            if operation.get("requestBody").is_some() && !path.starts_with("/ofrep") {
                for status in ["400", "413"] {
                    assert!(responses.contains_key(status), "{method} {path} does not list {status}");
                }
            }
        }
    }
}
