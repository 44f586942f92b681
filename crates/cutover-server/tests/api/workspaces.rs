use axum::http::{Method, StatusCode};
use cutover_store::Store;
use serde_json::json;

use crate::{TestApp, error};

cutover_store::contract_tests!(
    admin_owners_create_workspaces_with_a_first_owner_token,
    a_token_of_one_workspace_gets_404_on_every_object_of_another,
);

async fn admin_owners_create_workspaces_with_a_first_owner_token(store: Store) {
    let app = TestApp::new(store).await;
    let (status, created) = app.post("/api/v1/workspaces", json!({"name": "acme", "token_name": "acme-admin"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["workspace"]["name"], "acme");
    assert_eq!(created["workspace"]["admin"], false);
    assert_eq!(created["token"]["token"]["role"], "owner");
    let acme = created["token"]["secret"].as_str().unwrap();
    let (_, who) = app.call(Method::GET, "/api/v1/whoami", Some(acme), None).await;
    assert_eq!(who["workspace"]["name"], "acme");
    assert_eq!(who["token"]["name"], "acme-admin");

    // Owners of other workspaces cannot make or list workspaces.
    let (status, body) = app.call(Method::POST, "/api/v1/workspaces", Some(acme), Some(json!({"name": "evil"}))).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::FORBIDDEN,
            error("forbidden", "only owners of the administrative workspace can manage workspaces")
        )
    );
    assert_eq!(app.call(Method::GET, "/api/v1/workspaces", Some(acme), None).await.0, StatusCode::FORBIDDEN);
    let (_, listed) = app.get("/api/v1/workspaces").await;
    let names: Vec<_> = listed["items"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["acme", "default"]);
    assert_eq!(
        app.post("/api/v1/workspaces", json!({"name": "acme"})).await,
        (StatusCode::CONFLICT, error("conflict", "workspace \"acme\" already exists"))
    );
    assert_eq!(app.post("/api/v1/workspaces", json!({"name": "Bad Name"})).await.0, StatusCode::BAD_REQUEST);
}

async fn a_token_of_one_workspace_gets_404_on_every_object_of_another(store: Store) {
    let app = TestApp::new(store).await;
    app.post("/api/v1/environments", json!({"name": "production"})).await;
    app.post("/api/v1/artifacts", json!({"key": "secret/prompt", "value_type": "string"})).await;
    app.post("/api/v1/artifacts/secret%2Fprompt/versions", json!({"content": "classified"})).await;
    let (_, viewer) = app.post("/api/v1/tokens", json!({"name": "v", "role": "viewer"})).await;
    let viewer_id = viewer["token"]["id"].as_str().unwrap();

    let (_, other) = app.post("/api/v1/workspaces", json!({"name": "other"})).await;
    let intruder = other["token"]["secret"].as_str().unwrap();
    let attempts = [
        (Method::GET, "/api/v1/environments/production".to_owned(), None),
        (Method::PATCH, "/api/v1/environments/production".to_owned(), Some(json!({"protected": true}))),
        (Method::DELETE, "/api/v1/environments/production".to_owned(), None),
        (Method::GET, "/api/v1/artifacts/secret%2Fprompt".to_owned(), None),
        (Method::PATCH, "/api/v1/artifacts/secret%2Fprompt".to_owned(), Some(json!({"description": "x"}))),
        (Method::GET, "/api/v1/artifacts/secret%2Fprompt/versions".to_owned(), None),
        (Method::GET, "/api/v1/artifacts/secret%2Fprompt/versions/1".to_owned(), None),
        (Method::POST, "/api/v1/artifacts/secret%2Fprompt/versions".to_owned(), Some(json!({"content": "x"}))),
        (Method::DELETE, format!("/api/v1/tokens/{viewer_id}"), None),
    ];
    for (method, path, body) in attempts {
        let (status, answer) = app.call(method.clone(), &path, Some(intruder), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert!(!answer.to_string().contains("classified"));
    }
    for path in ["/api/v1/environments", "/api/v1/artifacts", "/api/v1/audit"] {
        let (_, listed) = app.call(Method::GET, path, Some(intruder), None).await;
        assert!(
            !listed.to_string().contains("production") && !listed.to_string().contains("secret/prompt"),
            "{path}: {listed}"
        );
    }
    let (_, tokens) = app.call(Method::GET, "/api/v1/tokens", Some(intruder), None).await;
    assert_eq!(tokens["items"].as_array().unwrap().len(), 1);
    // Nothing of the first workspace changed.
    let (_, env) = app.get("/api/v1/environments/production").await;
    assert_eq!(env["protected"], false);
    assert_eq!(app.get("/api/v1/artifacts/secret%2Fprompt").await.1["latest_version"], 1);
}
