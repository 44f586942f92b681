use axum::http::StatusCode;
use cutover_store::Store;
use serde_json::json;

use crate::{TestApp, error};

cutover_store::contract_tests!(
    artifacts_and_versions_round_trip,
    keys_with_slashes_travel_percent_encoded,
    content_must_match_the_value_type_and_failures_write_nothing,
    versions_page_newest_first,
    thirty_two_clients_publishing_at_once_get_consecutive_numbers,
);

async fn artifacts_and_versions_round_trip(store: Store) {
    let app = TestApp::new(store).await;
    let (status, artifact) =
        app.post("/api/v1/artifacts", json!({"key": "checkout", "value_type": "json", "description": "limits"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        artifact,
        json!({"key": "checkout", "value_type": "json", "kind": "config", "description": "limits", "latest_version": 0,
               "created_at": artifact["created_at"], "updated_at": artifact["created_at"]})
    );
    let (_, who) = app.get("/api/v1/whoami").await;
    let (status, version) =
        app.post("/api/v1/artifacts/checkout/versions", json!({"content": {"max": 3}, "message": "first"})).await;
    assert_eq!(status, StatusCode::CREATED);
    // printf '{"max":3}' | sha256sum
    assert_eq!(
        version,
        json!({"artifact": "checkout", "number": 1, "content": {"max": 3},
               "sha256": "f124daaade0b7da4a1a544a3821677b2ed12bf7cdf32e6bc00744470d60fe441",
               "message": "first", "author": {"token_id": who["token"]["id"], "name": "owner"},
               "created_at": version["created_at"]})
    );
    assert_eq!(app.get("/api/v1/artifacts/checkout/versions/1").await, (StatusCode::OK, version));
    let (_, artifact) = app.get("/api/v1/artifacts/checkout").await;
    assert_eq!(artifact["latest_version"], 1);

    let (status, updated) = app.patch("/api/v1/artifacts/checkout", json!({"kind": "schema"})).await;
    assert_eq!(
        (status, updated["kind"].clone(), updated["description"].clone()),
        (StatusCode::OK, json!("schema"), json!("limits"))
    );
    let (status, body) = app.patch("/api/v1/artifacts/checkout", json!({"value_type": "string"})).await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_body")));
}

async fn keys_with_slashes_travel_percent_encoded(store: Store) {
    let app = TestApp::new(store).await;
    let (status, _) = app
        .post("/api/v1/artifacts", json!({"key": "prompts/support.system", "value_type": "string", "kind": "prompt"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, version) =
        app.post("/api/v1/artifacts/prompts%2Fsupport.system/versions", json!({"content": "hello"})).await;
    assert_eq!(status, StatusCode::CREATED, "{version}");
    assert_eq!(version["artifact"], "prompts/support.system");
    assert_eq!(version["sha256"], "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    let (_, listed) = app.get("/api/v1/artifacts").await;
    assert_eq!(listed["items"][0]["key"], "prompts/support.system");
    // Unencoded, the slash is a path separator: no such route.
    assert_eq!(app.get("/api/v1/artifacts/prompts/support.system").await.0, StatusCode::NOT_FOUND);
}

async fn content_must_match_the_value_type_and_failures_write_nothing(store: Store) {
    let app = TestApp::new(store).await;
    for (key, value_type) in [("s", "string"), ("b", "boolean"), ("n", "number"), ("j", "json")] {
        app.post("/api/v1/artifacts", json!({"key": key, "value_type": value_type})).await;
    }
    let wrong = [("s", json!(1)), ("b", json!("true")), ("n", json!("1")), ("n", json!(null)), ("s", json!({"a": 1}))];
    for (key, content) in wrong {
        let (status, body) = app.post(&format!("/api/v1/artifacts/{key}/versions"), json!({"content": content})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key} {content}");
        assert_eq!(body["error"]["code"], "invalid_field");
        assert_eq!(body["error"]["details"], json!({"field": "content"}));
    }
    assert_eq!(
        app.post("/api/v1/artifacts/s/versions", json!({"content": 1})).await.1,
        json!({"error": {"code": "invalid_field", "details": {"field": "content"},
               "message": "content: must be a string value for this artifact, got a number"}})
    );
    let (status, body) = app.post("/api/v1/artifacts/s/versions", json!({"message": "no content"})).await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_body")));
    for key in ["s", "b", "n"] {
        assert_eq!(app.get(&format!("/api/v1/artifacts/{key}")).await.1["latest_version"], 0);
    }
    let (_, audit) = app.get("/api/v1/audit?object_type=artifact").await;
    assert!(audit["items"].as_array().unwrap().iter().all(|e| e["action"] == "artifact.create"));

    let ok = [("s", json!("text")), ("b", json!(false)), ("n", json!(2.5)), ("j", json!([1, {"a": null}]))];
    for (key, content) in ok {
        let (status, body) = app.post(&format!("/api/v1/artifacts/{key}/versions"), json!({"content": content})).await;
        assert_eq!((status, body["content"].clone()), (StatusCode::CREATED, content));
    }
    assert_eq!(
        app.post("/api/v1/artifacts/nope/versions", json!({"content": 1})).await,
        (StatusCode::NOT_FOUND, error("not_found", "artifact \"nope\" not found"))
    );
    assert_eq!(
        app.post("/api/v1/artifacts", json!({"key": "x", "value_type": "yaml"})).await.1["error"]["details"],
        json!({"field": "value_type"})
    );
}

async fn versions_page_newest_first(store: Store) {
    let app = TestApp::new(store).await;
    app.post("/api/v1/artifacts", json!({"key": "n", "value_type": "number"})).await;
    for i in 1..=5 {
        app.post("/api/v1/artifacts/n/versions", json!({"content": i})).await;
    }
    let (_, first) = app.get("/api/v1/artifacts/n/versions?limit=2").await;
    let numbers = |page: &serde_json::Value| {
        page["items"].as_array().unwrap().iter().map(|v| v["number"].as_i64().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(numbers(&first), [5, 4]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app.get(&format!("/api/v1/artifacts/n/versions?limit=2&cursor={cursor}")).await;
    assert_eq!(numbers(&second), [3, 2]);
    let (_, last) = app
        .get(&format!("/api/v1/artifacts/n/versions?limit=2&cursor={}", second["next_cursor"].as_str().unwrap()))
        .await;
    assert_eq!(numbers(&last), [1]);
    assert!(last.get("next_cursor").is_none());

    for bad in ["limit=0", "limit=201", "cursor=zzz", "limit=abc", "page=2"] {
        let (status, body) = app.get(&format!("/api/v1/artifacts/n/versions?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    assert_eq!(app.get("/api/v1/artifacts/n/versions/abc").await.1["error"]["code"], "invalid_path");
    assert_eq!(app.get("/api/v1/artifacts/n/versions/0").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.get("/api/v1/artifacts/n/versions/6").await,
        (StatusCode::NOT_FOUND, error("not_found", "version 6 of artifact \"n\" not found"))
    );
}

async fn thirty_two_clients_publishing_at_once_get_consecutive_numbers(store: Store) {
    let app = std::sync::Arc::new(TestApp::new(store).await);
    app.post("/api/v1/artifacts", json!({"key": "race", "value_type": "json"})).await;
    let clients: Vec<_> = (0..32)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(
                async move { app.post("/api/v1/artifacts/race/versions", json!({"content": {"client": i}})).await },
            )
        })
        .collect();
    let mut numbers = Vec::new();
    for client in clients {
        let (status, body) = client.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        numbers.push(body["number"].as_i64().unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=32).collect::<Vec<_>>());
}
