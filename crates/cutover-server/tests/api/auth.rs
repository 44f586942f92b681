use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use cutover_store::Store;
use serde_json::json;

use crate::{TestApp, error};

cutover_store::contract_tests!(
    requests_without_a_valid_token_get_401,
    the_token_may_come_as_x_api_key,
    viewers_read_but_cannot_write,
    sdk_tokens_get_403_outside_resolve,
    editors_cannot_administer,
    scoped_tokens_act_only_on_their_environments,
);

async fn requests_without_a_valid_token_get_401(store: Store) {
    let app = TestApp::new(store).await;
    let missing = error("unauthorized", "missing token: send Authorization: Bearer <token>");
    assert_eq!(app.call(Method::GET, "/api/v1/environments", None, None).await, (StatusCode::UNAUTHORIZED, missing));
    let invalid = error("unauthorized", "invalid or revoked token");
    for bad in ["nope", "cutover_", "cutover_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &format!("{}x", app.owner)] {
        let got = app.call(Method::GET, "/api/v1/environments", Some(bad), None).await;
        assert_eq!(got, (StatusCode::UNAUTHORIZED, invalid.clone()), "{bad}");
    }
    // A revoked token stops working at once.
    let (_, created) = app.post("/api/v1/tokens", json!({"name": "tmp", "role": "viewer"})).await;
    let secret = created["secret"].as_str().unwrap();
    assert_eq!(app.call(Method::GET, "/api/v1/environments", Some(secret), None).await.0, StatusCode::OK);
    let id = created["token"]["id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/api/v1/tokens/{id}")).await.0, StatusCode::OK);
    assert_eq!(
        app.call(Method::GET, "/api/v1/environments", Some(secret), None).await,
        (StatusCode::UNAUTHORIZED, invalid)
    );
}

async fn the_token_may_come_as_x_api_key(store: Store) {
    let app = TestApp::new(store).await;
    let request = Request::get("/api/v1/whoami").header("X-API-Key", &app.owner).body(Body::empty()).unwrap();
    let (status, body) = app.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token"]["role"], "owner");
    assert_eq!(body["workspace"]["name"], "default");
    assert_eq!(body["workspace"]["admin"], true);
}

async fn viewers_read_but_cannot_write(store: Store) {
    let app = TestApp::new(store).await;
    app.post("/api/v1/artifacts", json!({"key": "a", "value_type": "string"})).await;
    let viewer = app.token("viewer", &[]).await;
    assert_eq!(app.call(Method::GET, "/api/v1/artifacts/a", Some(&viewer), None).await.0, StatusCode::OK);
    assert_eq!(app.call(Method::GET, "/api/v1/audit", Some(&viewer), None).await.0, StatusCode::OK);
    let denied = error("forbidden", "a viewer token cannot change anything");
    let attempts = [
        (Method::POST, "/api/v1/artifacts", json!({"key": "b", "value_type": "string"})),
        (Method::POST, "/api/v1/artifacts/a/versions", json!({"content": "x"})),
        (Method::PATCH, "/api/v1/artifacts/a", json!({"description": "x"})),
    ];
    for (method, path, body) in attempts {
        assert_eq!(
            app.call(method, path, Some(&viewer), Some(body)).await,
            (StatusCode::FORBIDDEN, denied.clone()),
            "{path}"
        );
    }
    assert_eq!(app.get("/api/v1/artifacts/a").await.1["latest_version"], 0, "nothing written");
    let admin_only = error("forbidden", "only owners can do this; this token's role is viewer");
    assert_eq!(app.call(Method::GET, "/api/v1/tokens", Some(&viewer), None).await, (StatusCode::FORBIDDEN, admin_only));
}

async fn sdk_tokens_get_403_outside_resolve(store: Store) {
    let app = TestApp::new(store).await;
    app.post("/api/v1/environments", json!({"name": "production"})).await;
    let sdk = app.token("sdk", &["production"]).await;
    let denied = error("forbidden", "an sdk token can only resolve what is live");
    for path in [
        "/api/v1/environments",
        "/api/v1/artifacts",
        "/api/v1/audit",
        "/api/v1/tokens",
        "/api/v1/environments/production",
    ] {
        assert_eq!(
            app.call(Method::GET, path, Some(&sdk), None).await,
            (StatusCode::FORBIDDEN, denied.clone()),
            "{path}"
        );
    }
}

async fn editors_cannot_administer(store: Store) {
    let app = TestApp::new(store).await;
    let editor = app.token("editor", &[]).await;
    let (status, _) = app
        .call(Method::POST, "/api/v1/artifacts", Some(&editor), Some(json!({"key": "k", "value_type": "json"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for (path, body) in [
        ("/api/v1/environments", json!({"name": "dev"})),
        ("/api/v1/tokens", json!({"name": "x", "role": "viewer"})),
        ("/api/v1/workspaces", json!({"name": "other"})),
    ] {
        let (status, body) = app.call(Method::POST, path, Some(&editor), Some(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    assert!(app.get("/api/v1/environments").await.1["items"].as_array().unwrap().is_empty());
}

async fn scoped_tokens_act_only_on_their_environments(store: Store) {
    let app = TestApp::new(store).await;
    for name in ["dev", "production"] {
        app.post("/api/v1/environments", json!({"name": name})).await;
    }
    let scoped = app.token("owner", &["dev"]).await;
    let patch = |env: &str| format!("/api/v1/environments/{env}");
    let (status, _) = app.call(Method::PATCH, &patch("dev"), Some(&scoped), Some(json!({"description": "mine"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) =
        app.call(Method::PATCH, &patch("production"), Some(&scoped), Some(json!({"description": "x"}))).await;
    assert_eq!(
        (status, body),
        (StatusCode::FORBIDDEN, error("forbidden", "this token is not allowed to act on environment \"production\""))
    );
    // It cannot mint a token wider than itself.
    let (status, _) =
        app.call(Method::POST, "/api/v1/tokens", Some(&scoped), Some(json!({"name": "wide", "role": "owner"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&scoped),
            Some(json!({"name": "narrow", "role": "viewer", "environments": ["dev"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}
