//! Whatever a client sends, the answer is the one error shape and never a 500.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cutover_server::ServerConfig;
use cutover_store::Store;
use serde_json::json;

use crate::{TestApp, error};

cutover_store::contract_tests!(
    malformed_requests_get_clear_4xx_answers,
    no_garbage_body_produces_a_500,
    bad_body_and_query_values_are_blamed_on_their_field
);

async fn malformed_requests_get_clear_4xx_answers(store: Store) {
    let app = TestApp::with_config(store, ServerConfig { max_body_bytes: 1024, ..ServerConfig::default() }).await;
    let raw = |body: &'static str, content_type: Option<&str>| {
        let mut request =
            Request::post("/api/v1/environments").header(header::AUTHORIZATION, format!("Bearer {}", app.owner));
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        request.body(Body::from(body)).unwrap()
    };
    let (status, body) = app.send(raw("{\"name\": ", Some("application/json"))).await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::BAD_REQUEST, json!("malformed_json")));
    assert_eq!(
        app.send(raw("{\"name\": \"dev\"}", Some("text/plain"))).await,
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error("unsupported_media_type", "send the body as JSON with Content-Type: application/json")
        )
    );
    assert_eq!(app.send(raw("{\"name\": \"dev\"}", None)).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) =
        app.post("/api/v1/environments", json!({"name": "dev", "description": "x".repeat(2000)})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            error("payload_too_large", "the request body is larger than the server accepts")
        )
    );
    let (status, body) = app.post("/api/v1/environments", json!({"name": "dev", "extra": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_body");
    assert!(body["error"]["message"].as_str().unwrap().contains("unknown field `extra`"), "{body}");
    assert_eq!(
        app.get("/api/v1/nothing").await,
        (StatusCode::NOT_FOUND, error("not_found", "no route for GET /api/v1/nothing"))
    );
    assert_eq!(
        app.call(Method::PUT, "/api/v1/environments", Some(&app.owner), None).await,
        (StatusCode::METHOD_NOT_ALLOWED, error("method_not_allowed", "PUT is not allowed on /api/v1/environments"))
    );
    assert_eq!(app.get("/api/v1/environments").await.1, json!({"items": []}), "nothing written");
}

async fn no_garbage_body_produces_a_500(store: Store) {
    let app = TestApp::new(store).await;
    app.post("/api/v1/artifacts", json!({"key": "a", "value_type": "json"})).await;
    app.post("/api/v1/environments", json!({"name": "e"})).await;
    let bodies = [
        json!(null),
        json!(1),
        json!("s"),
        json!([]),
        json!({}),
        json!({"name": null}),
        json!({"name": "\u{0}"}),
        json!({"key": "a/../b", "value_type": "json"}),
        json!({"name": "x", "role": "owner", "environments": [1]}),
        json!({"content": {"deep": [[[[[[[[[[1]]]]]]]]]]}}),
        json!({"name": "é", "targets": "eu"}),
        json!({"limit": -1}),
        json!({"name": "a".repeat(10_000)}),
    ];
    let routes = [
        (Method::POST, "/api/v1/environments"),
        (Method::PATCH, "/api/v1/environments/e"),
        (Method::POST, "/api/v1/artifacts"),
        (Method::PATCH, "/api/v1/artifacts/a"),
        (Method::POST, "/api/v1/artifacts/a/versions"),
        (Method::POST, "/api/v1/tokens"),
        (Method::POST, "/api/v1/workspaces"),
    ];
    for (method, path) in routes {
        for body in &bodies {
            let (status, answer) = app.call(method.clone(), path, Some(&app.owner), Some(body.clone())).await;
            assert!(status.is_success() || status.is_client_error(), "{method} {path} {body}: {status} {answer}");
            if status.is_client_error() {
                assert!(answer["error"]["code"].is_string() && answer["error"]["message"].is_string(), "{answer}");
            }
        }
    }
    for path in
        ["/api/v1/artifacts/%FF%FE", "/api/v1/environments/%00", "/api/v1/artifacts/a/versions/99999999999999999999"]
    {
        let (status, _) = app.get(path).await;
        assert!(status.is_client_error(), "{path}: {status}");
    }
}

/// A value of the body or the query that breaks a naming rule is `invalid_field` naming the field
/// it came from (not `invalid_path`, and not the rule's own name for it), and writes nothing.
async fn bad_body_and_query_values_are_blamed_on_their_field(store: Store) {
    let app = TestApp::new(store).await;
    let invalid = |field: &str, message: &str| json!({"error": {"code": "invalid_field", "message": format!("{field}: {message}"), "details": {"field": field}}});
    let empty_key = "must not be empty (must match ^[a-z0-9][a-z0-9._/-]{0,127}$)";
    let empty_name = "must not be empty (must match ^[a-z0-9][a-z0-9_-]{0,62}$)";
    let rollout = |artifact: &str, environment: &str| json!({"artifact": artifact, "environment": environment, "version": 1, "executor": {"type": "manual"}});
    assert_eq!(
        app.post("/api/v1/rollouts", rollout("", "production")).await,
        (StatusCode::BAD_REQUEST, invalid("artifact", empty_key))
    );
    assert_eq!(
        app.post("/api/v1/rollouts", rollout("greeting", "Prod")).await,
        (
            StatusCode::BAD_REQUEST,
            invalid(
                "environment",
                "\"Prod\" must start with a lowercase letter or digit (must match ^[a-z0-9][a-z0-9_-]{0,62}$)"
            )
        )
    );
    assert_eq!(
        app.post(
            "/api/v1/environments/production/experiments",
            json!({"artifact": "", "name": "x", "treatments": [2], "primary_metric": "clicks"})
        )
        .await,
        (StatusCode::BAD_REQUEST, invalid("artifact", empty_key))
    );
    assert_eq!(
        app.get("/api/v1/rollouts?environment=").await,
        (StatusCode::BAD_REQUEST, invalid("environment", empty_name))
    );
    assert_eq!(
        app.post("/api/v1/promote", json!({"artifact": "Greeting", "from": "staging", "to": ["production"]})).await,
        (
            StatusCode::BAD_REQUEST,
            invalid(
                "artifact",
                "\"Greeting\" must start with a lowercase letter or digit (must match ^[a-z0-9][a-z0-9._/-]{0,127}$)"
            )
        )
    );
    assert_eq!(app.get("/api/v1/rollouts").await, (StatusCode::OK, json!({"items": []})));
    assert_eq!(app.get("/api/v1/environments/production/experiments").await.0, StatusCode::NOT_FOUND);
}
