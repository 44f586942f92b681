use axum::http::{Method, StatusCode};
use cutover_store::Store;
use serde_json::json;

use crate::{TestApp, error};

cutover_store::contract_tests!(
    tokens_are_created_shown_once_listed_and_revoked,
    token_requests_are_validated,
    the_last_owner_token_cannot_be_revoked,
    the_audit_log_filters_by_actor_and_pages,
);

async fn tokens_are_created_shown_once_listed_and_revoked(store: Store) {
    let app = TestApp::new(store).await;
    app.post("/api/v1/environments", json!({"name": "staging"})).await;
    let (status, created) =
        app.post("/api/v1/tokens", json!({"name": "ci", "role": "editor", "environments": ["staging"]})).await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("cutover_") && secret.len() == 51, "{secret}");
    let (_, who) = app.get("/api/v1/whoami").await;
    let token = json!({"id": created["token"]["id"], "name": "ci", "role": "editor", "environments": ["staging"],
                       "created_at": created["token"]["created_at"], "created_by": {"token_id": who["token"]["id"], "name": "owner"}});
    assert_eq!(created["token"], token);

    let (_, listed) = app.get("/api/v1/tokens").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert_eq!(listed["items"][1], token);
    assert!(!listed.to_string().contains(secret), "the secret is never shown again");

    let (_, me) = app.call(Method::GET, "/api/v1/whoami", Some(secret), None).await;
    assert_eq!(me["token"], token);
    let id = token["id"].as_str().unwrap();
    let (status, revoked) = app.delete(&format!("/api/v1/tokens/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(app.call(Method::GET, "/api/v1/whoami", Some(secret), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.delete("/api/v1/tokens/nope").await,
        (StatusCode::NOT_FOUND, error("not_found", "token \"nope\" not found"))
    );
}

async fn token_requests_are_validated(store: Store) {
    let app = TestApp::new(store).await;
    app.post("/api/v1/environments", json!({"name": "production"})).await;
    let cases = [
        (json!({"name": "x", "role": "admin"}), "role"),
        (json!({"name": "", "role": "viewer"}), "name"),
        (json!({"name": "x", "role": "sdk"}), "environments"),
        (json!({"name": "x", "role": "sdk", "environments": ["production", "staging"]}), "environments"),
        (json!({"name": "x", "role": "viewer", "environments": ["Prod"]}), "environments"),
    ];
    for (body, field) in cases {
        let (status, answer) = app.post("/api/v1/tokens", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["details"]["field"], field, "{body}: {answer}");
    }
    let (status, body) = app
        .post("/api/v1/tokens", json!({"name": "x", "role": "viewer", "environments": ["production", "a", "b"]}))
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "not_found", "message": "environments not found: a, b", "details": {"missing": ["a", "b"]}}})
        )
    );
    assert_eq!(app.get("/api/v1/tokens").await.1["items"].as_array().unwrap().len(), 1, "nothing written");
}

async fn the_last_owner_token_cannot_be_revoked(store: Store) {
    let app = TestApp::new(store).await;
    let (_, who) = app.get("/api/v1/whoami").await;
    let id = who["token"]["id"].as_str().unwrap();
    let (status, body) = app.delete(&format!("/api/v1/tokens/{id}")).await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::CONFLICT, json!("conflict")));
    assert_eq!(app.get("/api/v1/whoami").await.0, StatusCode::OK);
}

async fn the_audit_log_filters_by_actor_and_pages(store: Store) {
    let app = TestApp::new(store).await;
    let editor = app.token("editor", &[]).await;
    let (_, editor_who) = app.call(Method::GET, "/api/v1/whoami", Some(&editor), None).await;
    let editor_id = editor_who["token"]["id"].as_str().unwrap().to_owned();
    for key in ["a", "b", "c"] {
        let (status, _) = app
            .call(Method::POST, "/api/v1/artifacts", Some(&editor), Some(json!({"key": key, "value_type": "string"})))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    app.post("/api/v1/artifacts", json!({"key": "d", "value_type": "string"})).await;

    let (status, page) = app.get(&format!("/api/v1/audit?actor={editor_id}&limit=2")).await;
    assert_eq!(status, StatusCode::OK);
    let ids = |page: &serde_json::Value| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["object_id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&page), ["c", "b"]);
    let first = &page["items"][0];
    assert_eq!(first["action"], "artifact.create");
    assert_eq!(first["actor"], json!({"token_id": editor_id, "name": "editor"}));
    assert_eq!(first["after"]["key"], "c");
    assert!(first.get("before").is_none());
    let (_, rest) = app
        .get(&format!("/api/v1/audit?actor={editor_id}&limit=2&cursor={}", page["next_cursor"].as_str().unwrap()))
        .await;
    assert_eq!(ids(&rest), ["a"]);
    assert_eq!(app.get("/api/v1/audit?object_type=artifact&object_id=d").await.1["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.get("/api/v1/audit?cursor=a1").await.0, StatusCode::BAD_REQUEST);
    // By name, as the audit table shows actors.
    let (status, by_name) = app.get("/api/v1/audit?actor=editor&object_type=artifact").await;
    assert_eq!((status, ids(&by_name)), (StatusCode::OK, vec!["c".to_owned(), "b".into(), "a".into()]));
    // An object type the log never records is a mistake, not an empty page.
    assert_eq!(
        app.get("/api/v1/audit?object_type=version").await,
        (
            StatusCode::BAD_REQUEST,
            crate::error(
                "invalid_query",
                "object_type \"version\" is not one of workspace, environment, artifact, token, experiment, rollout, pool, queue"
            )
        )
    );
}
