use axum::http::StatusCode;
use cutover_server::ServerConfig;
use cutover_store::Store;
use serde_json::json;

use crate::{TestApp, error};

cutover_store::contract_tests!(
    environments_round_trip_through_the_api,
    invalid_environments_get_400_and_nothing_is_written,
    the_per_workspace_limit_answers_409,
    deleting_a_depended_on_environment_answers_409_with_its_dependents,
);

async fn environments_round_trip_through_the_api(store: Store) {
    let app = TestApp::new(store).await;
    let (status, created) = app
        .post(
            "/api/v1/environments",
            json!({"name": "production", "description": "live", "protected": true,
                   "targets": [{"name": "eu-1", "config": {"cluster": "a"}}, {"name": "us-1"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let expected = json!({
        "name": "production", "description": "live", "protected": true,
        "targets": [{"name": "eu-1", "config": {"cluster": "a"}}, {"name": "us-1"}], "position": 1,
        "created_at": created["created_at"], "updated_at": created["created_at"],
    });
    assert_eq!(created, expected);
    assert_eq!(app.get("/api/v1/environments/production").await, (StatusCode::OK, expected.clone()));
    assert_eq!(app.get("/api/v1/environments").await, (StatusCode::OK, json!({"items": [expected]})));

    let (status, updated) =
        app.patch("/api/v1/environments/production", json!({"protected": false, "targets": []})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (updated["protected"].clone(), updated["targets"].clone(), updated["description"].clone()),
        (json!(false), json!([]), json!("live"))
    );

    // Lists follow the position, then the name; a new environment goes last.
    let (_, staging) = app.post("/api/v1/environments", json!({"name": "staging"})).await;
    assert_eq!(staging["position"], 2);
    let (_, dev) = app.post("/api/v1/environments", json!({"name": "dev", "position": 1})).await;
    assert_eq!(dev["position"], 1);
    let names = |page: serde_json::Value| {
        page["items"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(names(app.get("/api/v1/environments").await.1), ["dev", "production", "staging"]);
    let (status, moved) = app.patch("/api/v1/environments/production", json!({"position": 9})).await;
    assert_eq!((status, moved["position"].clone()), (StatusCode::OK, json!(9)));
    assert_eq!(names(app.get("/api/v1/environments").await.1), ["dev", "staging", "production"]);
    for position in [json!(0), json!(1_000_001), json!(1.5), json!("2")] {
        let (status, answer) = app.patch("/api/v1/environments/production", json!({ "position": position })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{position}: {answer}");
    }
    assert_eq!(app.get("/api/v1/environments/production").await.1["position"], 9, "nothing written");
    app.delete("/api/v1/environments/staging").await;
    app.delete("/api/v1/environments/dev").await;

    assert_eq!(app.delete("/api/v1/environments/production").await, (StatusCode::NO_CONTENT, serde_json::Value::Null));
    assert_eq!(
        app.get("/api/v1/environments/production").await,
        (StatusCode::NOT_FOUND, error("not_found", "environment \"production\" not found"))
    );
    let (_, audit) = app.get("/api/v1/audit?object_type=environment&object_id=production").await;
    let actions: Vec<_> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["environment.delete", "environment.update", "environment.update", "environment.create"]);
}

async fn invalid_environments_get_400_and_nothing_is_written(store: Store) {
    let app = TestApp::new(store).await;
    let (status, body) = app.post("/api/v1/environments", json!({"name": "Prod"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": {"code": "invalid_field", "details": {"field": "name"},
               "message": "name: \"Prod\" must start with a lowercase letter or digit (must match ^[a-z0-9][a-z0-9_-]{0,62}$)"}})
    );
    let cases = [
        json!({"name": "dev eu"}),
        json!({"name": ""}),
        json!({"name": "x".repeat(64)}),
        json!({"name": "dev", "targets": [{"name": "a"}, {"name": "a"}]}),
        json!({"name": "dev", "targets": [{"name": "Bad"}]}),
        json!({"name": "dev", "description": "bell\u{7}"}),
        json!({"name": "dev", "colour": "blue"}),
        json!({"name": 7}),
        json!({"name": "dev", "protected": "yes"}),
        json!([]),
    ];
    for case in cases {
        let (status, body) = app.post("/api/v1/environments", case.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
    assert_eq!(app.get("/api/v1/environments").await.1, json!({"items": []}));
    let (_, audit) = app.get("/api/v1/audit?object_type=environment").await;
    assert_eq!(audit, json!({"items": []}));
}

async fn the_per_workspace_limit_answers_409(store: Store) {
    let app = TestApp::with_config(store, ServerConfig { max_environments: 2, ..ServerConfig::default() }).await;
    for name in ["a", "b"] {
        assert_eq!(app.post("/api/v1/environments", json!({"name": name})).await.0, StatusCode::CREATED);
    }
    assert_eq!(
        app.post("/api/v1/environments", json!({"name": "c"})).await,
        (StatusCode::CONFLICT, error("limit_reached", "a workspace may have at most 2 environments; delete one first"))
    );
    assert_eq!(
        app.post("/api/v1/environments", json!({"name": "a"})).await,
        (StatusCode::CONFLICT, error("conflict", "environment \"a\" already exists"))
    );
}

async fn deleting_a_depended_on_environment_answers_409_with_its_dependents(store: Store) {
    let app = TestApp::new(store).await;
    app.post("/api/v1/environments", json!({"name": "production"})).await;
    let (_, token) =
        app.post("/api/v1/tokens", json!({"name": "web", "role": "sdk", "environments": ["production"]})).await;
    let id = token["token"]["id"].as_str().unwrap();
    let (status, body) = app.delete("/api/v1/environments/production").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({"error": {"code": "conflict",
               "message": "environment \"production\" is used by 1 live token(s); revoke them first",
               "details": {"tokens": [{"id": id, "name": "web"}]}}})
    );
    assert_eq!(app.get("/api/v1/environments/production").await.0, StatusCode::OK);
    app.delete(&format!("/api/v1/tokens/{id}")).await;
    assert_eq!(app.delete("/api/v1/environments/production").await.0, StatusCode::NO_CONTENT);
}
