use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cutover_store::Store;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::TestApp;
use crate::pins::{put, world};

cutover_store::contract_tests!(
    native_resolve_follows_pins_at_once,
    sdk_tokens_resolve_only_their_environment,
    ofrep_single_flag_evaluation,
    ofrep_errors_follow_the_protocol,
    ofrep_bulk_carries_an_etag_and_answers_304,
    the_change_stream_replays_and_follows,
    resolve_is_invisible_across_workspaces,
);

pub async fn ofrep(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app.router.clone().oneshot(request.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (status, body, headers)
}

async fn native_resolve_follows_pins_at_once(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    let path = "/api/v1/resolve/greeting?environment=production";
    let (status, unpinned) = app.get(path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(unpinned["version"], Value::Null);
    assert_eq!(unpinned["value"], Value::Null);
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1}), None).await;
    let (_, live) = app.get(path).await;
    assert_eq!(
        live,
        json!({"artifact": "greeting", "environment": "production", "version": 1, "value": "hello 1",
               "value_type": "string", "revision": live["revision"]})
    );
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 2}), None).await;
    let (_, moved) = app.get(path).await;
    assert_eq!(
        (moved["value"].clone(), moved["revision"].as_i64()),
        (json!("hello 2"), Some(live["revision"].as_i64().unwrap() + 1))
    );
    assert_eq!(app.get("/api/v1/resolve/nope?environment=production").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/resolve/greeting?environment=qa").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/resolve/greeting").await.0, StatusCode::BAD_REQUEST);
}

async fn sdk_tokens_resolve_only_their_environment(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 1).await;
    put(
        &app,
        "/api/v1/artifacts/greeting/versions/1/environments",
        json!({"environments": ["dev", "production"]}),
        None,
    )
    .await;
    let sdk = app.token("sdk", &["production"]).await;
    let (status, body) = app.call(Method::GET, "/api/v1/resolve/greeting", Some(&sdk), None).await;
    assert_eq!((status, body["environment"].clone()), (StatusCode::OK, json!("production")));
    let (status, _) = app.call(Method::GET, "/api/v1/resolve/greeting?environment=dev", Some(&sdk), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body, _) =
        ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&sdk), r#"{"context": {"environment": "dev"}}"#, &[])
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let scoped = app.token("viewer", &["dev"]).await;
    let (status, _) =
        app.call(Method::GET, "/api/v1/resolve/greeting?environment=production", Some(&scoped), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn ofrep_single_flag_evaluation(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    app.post("/api/v1/artifacts", json!({"key": "limits", "value_type": "json"})).await;
    app.post("/api/v1/artifacts/limits/versions", json!({"content": {"max": 3}, "environments": ["production"]})).await;
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 2}), None).await;
    let sdk = app.token("sdk", &["production"]).await;
    let (status, body, headers) =
        ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&sdk), r#"{"context": {"targetingKey": "user-1"}}"#, &[])
            .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let revision = body["metadata"]["revision"].clone();
    assert_eq!(
        body,
        json!({"key": "greeting", "value": "hello 2", "reason": "STATIC", "variant": "v2",
               "metadata": {"environment": "production", "version": 2, "revision": revision}})
    );
    let (_, json_flag, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/limits", Some(&sdk), "{}", &[]).await;
    assert_eq!(json_flag["value"], json!({"max": 3}));
    // Nothing pinned: no value, so the client's default applies.
    let (status, disabled, _) = ofrep(
        &app,
        "/ofrep/v1/evaluate/flags/greeting",
        Some(&app.owner),
        r#"{"context": {"environment": "dev"}}"#,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        disabled,
        json!({"key": "greeting", "reason": "DISABLED", "variant": null, "metadata": {"environment": "dev", "revision": revision}})
    );
}

async fn ofrep_errors_follow_the_protocol(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 1).await;
    let sdk = app.token("sdk", &["production"]).await;
    let (status, body, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/nope", Some(&sdk), "{}", &[]).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({"key": "nope", "errorCode": "FLAG_NOT_FOUND", "errorDetails": "flag \"nope\" was not found"})
        )
    );
    let (status, body, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&sdk), "{not json", &[]).await;
    assert_eq!(
        (status, body["key"].clone(), body["errorCode"].clone()),
        (StatusCode::BAD_REQUEST, json!("greeting"), json!("PARSE_ERROR"))
    );
    let (status, body, _) =
        ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&app.owner), r#"{"context": {}}"#, &[]).await;
    assert_eq!((status, body["errorCode"].clone()), (StatusCode::BAD_REQUEST, json!("INVALID_CONTEXT")));
    assert!(body["errorDetails"].is_string());
    let (status, body, _) = ofrep(
        &app,
        "/ofrep/v1/evaluate/flags/greeting",
        Some(&app.owner),
        r#"{"context": {"environment": "qa"}}"#,
        &[],
    )
    .await;
    assert_eq!((status, body["errorCode"].clone()), (StatusCode::BAD_REQUEST, json!("INVALID_CONTEXT")));
    let (status, body, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", None, "{}", &[]).await;
    assert_eq!((status, body["errorCode"].clone()), (StatusCode::UNAUTHORIZED, json!("GENERAL")));
    let (status, _, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some("cutover_bad"), "{}", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body, _) =
        ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", None, "{}", &[("x-api-key", sdk.as_str())]).await;
    assert_eq!((status, body["reason"].clone()), (StatusCode::OK, json!("DISABLED")));
}

async fn ofrep_bulk_carries_an_etag_and_answers_304(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1}), None).await;
    let sdk = app.token("sdk", &["production"]).await;
    let body = r#"{"context": {"targetingKey": "u1"}}"#;
    let (status, bulk, headers) = ofrep(&app, "/ofrep/v1/evaluate/flags", Some(&sdk), body, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bulk["flags"].as_array().unwrap().len(), 1);
    assert_eq!(bulk["flags"][0]["value"], "hello 1");
    assert_eq!(bulk["eventStreams"][0]["type"], "sse");
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let (status, empty, again) =
        ofrep(&app, "/ofrep/v1/evaluate/flags", Some(&sdk), body, &[("if-none-match", &etag)]).await;
    assert_eq!((status, empty), (StatusCode::NOT_MODIFIED, Value::Null));
    assert_eq!(again[header::ETAG], etag.as_str());
    // Another user's context is another answer.
    let (status, _, _) = ofrep(
        &app,
        "/ofrep/v1/evaluate/flags",
        Some(&sdk),
        r#"{"context": {"targetingKey": "u2"}}"#,
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 2}), None).await;
    let (status, moved, headers) =
        ofrep(&app, "/ofrep/v1/evaluate/flags", Some(&sdk), body, &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(moved["flags"][0]["value"], "hello 2");
    assert_ne!(headers[header::ETAG], etag.as_str());
}

/// Reads SSE frames until `count` events (lines starting with `data:`) have arrived.
async fn read_events(body: &mut Body, count: usize) -> String {
    let mut text = String::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while text.lines().filter(|l| l.starts_with("data:")).count() < count {
            let Some(frame) = body.frame().await else { break };
            if let Ok(data) = frame.unwrap().into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{count} events within 10 s; got {text:?}");
    text
}

async fn the_change_stream_replays_and_follows(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    let (_, first) = put(&app, "/api/v1/artifacts/greeting/pins/dev", json!({"version": 1}), None).await;
    let after = first["revision"].as_i64().unwrap();
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 2}), None).await;

    let request = Request::get("/api/v1/stream")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.owner))
        .header("last-event-id", after.to_string())
        .body(Body::empty())
        .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = response.into_body();
    let replayed = read_events(&mut body, 1).await;
    assert!(replayed.contains(&format!("id: {}", after + 1)), "{replayed}");
    assert!(replayed.contains("event: change"), "{replayed}");
    assert!(replayed.contains(r#""environment":"production","from":null,"to":2"#), "{replayed}");

    put(&app, "/api/v1/artifacts/greeting/pins/dev", json!({"version": 2}), None).await;
    let live = read_events(&mut body, 1).await;
    assert!(live.contains(&format!("id: {}", after + 2)), "{live}");
    assert!(live.contains(r#""environment":"dev","from":1,"to":2"#), "{live}");

    // OFREP's format, with the token in the query as browsers must send it.
    let sdk = app.token("sdk", &["production"]).await;
    let request = Request::get(format!("/api/v1/stream?format=ofrep&access_token={sdk}&last_event_id={after}"))
        .body(Body::empty())
        .unwrap();
    let mut body = app.router.clone().oneshot(request).await.unwrap().into_body();
    let ofrep = read_events(&mut body, 2).await;
    assert!(ofrep.contains("event: message"), "{ofrep}");
    assert!(ofrep.contains(r#""type":"refetchEvaluation""#), "{ofrep}");
    let request = Request::get("/api/v1/stream?format=xml")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.owner))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.router.clone().oneshot(request).await.unwrap().status(), StatusCode::BAD_REQUEST);
}

async fn resolve_is_invisible_across_workspaces(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 1).await;
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1}), None).await;
    let (_, other) = app.post("/api/v1/workspaces", json!({"name": "other"})).await;
    let intruder = other["token"]["secret"].as_str().unwrap();
    let (status, _) =
        app.call(Method::GET, "/api/v1/resolve/greeting?environment=production", Some(intruder), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body, _) = ofrep(
        &app,
        "/ofrep/v1/evaluate/flags/greeting",
        Some(intruder),
        r#"{"context": {"environment": "production"}}"#,
        &[],
    )
    .await;
    assert!(status.is_client_error() && !body.to_string().contains("hello"), "{status} {body}");
    for path in [
        "/api/v1/artifacts/greeting/pins",
        "/api/v1/artifacts/greeting/pins/production/history",
        "/api/v1/environments/production/pins",
    ] {
        assert_eq!(app.call(Method::GET, path, Some(intruder), None).await.0, StatusCode::NOT_FOUND, "{path}");
    }
}
