//! Archiving artifacts (hidden from lists and resolve, history kept) and deleting them when
//! nothing refers to them.

use axum::http::{Method, StatusCode};
use cutover_store::Store;
use serde_json::{Value, json};

use crate::resolve::ofrep;
use crate::{TestApp, error};

cutover_store::contract_tests!(
    an_archived_artifact_leaves_lists_and_resolve_and_comes_back_with_its_pins,
    an_archived_artifact_takes_no_new_versions_pins_or_experiments,
    archiving_is_refused_while_an_experiment_uses_the_artifact,
    archiving_takes_the_right_to_change_every_environment_it_is_live_in,
    delete_is_refused_while_anything_refers_to_the_artifact_and_then_removes_it_all,
    a_pin_racing_a_delete_never_points_at_a_deleted_artifact,
);

const CONTEXT: &str = r#"{"context": {}}"#;

async fn put(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    app.call(Method::PUT, path, Some(&app.owner), Some(body)).await
}

/// `greeting` with versions `hello 1..=versions`, version 1 live in production.
async fn greeting(app: &TestApp, versions: usize) {
    app.post("/api/v1/environments", json!({"name": "production"})).await;
    app.post("/api/v1/artifacts", json!({"key": "greeting", "value_type": "string"})).await;
    for n in 1..=versions {
        let (status, body) =
            app.post("/api/v1/artifacts/greeting/versions", json!({"content": format!("hello {n}")})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = put(app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    let (_, audit) = app.get("/api/v1/audit?object_type=artifact&object_id=greeting").await;
    audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
}

async fn an_archived_artifact_leaves_lists_and_resolve_and_comes_back_with_its_pins(store: Store) {
    let app = TestApp::new(store).await;
    greeting(&app, 1).await;
    let sdk = app.token("sdk", &["production"]).await;
    let (status, live, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&sdk), CONTEXT, &[]).await;
    assert_eq!((status, live["value"].clone()), (StatusCode::OK, json!("hello 1")));
    let (_, who) = app.get("/api/v1/whoami").await;
    let workspace = who["workspace"]["id"].as_str().unwrap().to_owned();
    let revision = app.store.resolve_snapshot(&workspace).await.unwrap().revision;

    let (status, archived) = app.post("/api/v1/artifacts/greeting/archive", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{archived}");
    assert_eq!(
        archived,
        json!({"key": "greeting", "value_type": "string", "kind": "config", "description": "", "latest_version": 1,
               "created_at": archived["created_at"], "updated_at": archived["archived_at"],
               "archived_at": archived["archived_at"]})
    );
    assert!(archived["archived_at"].is_string());
    assert_eq!(app.get("/api/v1/artifacts/greeting").await, (StatusCode::OK, archived.clone()));
    assert_eq!(app.get("/api/v1/artifacts").await.1["items"], json!([]));
    assert_eq!(app.get("/api/v1/artifacts?archived=true").await.1["items"], json!([archived.clone()]));
    assert_eq!(app.get("/api/v1/artifacts?archived=false").await.1["items"], json!([]));
    let (status, body) = app.get("/api/v1/artifacts?archived=maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Resolve no longer knows it, and the change stream said so.
    let (status, gone, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&sdk), CONTEXT, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(gone["errorCode"], "FLAG_NOT_FOUND");
    let (status, bulk, _) = ofrep(&app, "/ofrep/v1/evaluate/flags", Some(&sdk), CONTEXT, &[]).await;
    assert_eq!((status, bulk["flags"].clone()), (StatusCode::OK, json!([])));
    let changes = app.store.changes_since(&workspace, revision, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        serde_json::to_value(&changes[0].pins).unwrap(),
        json!([{"artifact": "greeting", "environment": "production", "from": 1, "to": null}])
    );

    // Archiving again changes nothing.
    assert_eq!(app.post("/api/v1/artifacts/greeting/archive", json!({})).await, (StatusCode::OK, archived.clone()));

    let (status, back) = app.post("/api/v1/artifacts/greeting/unarchive", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{back}");
    assert_eq!(back.get("archived_at"), None);
    let (_, live, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&sdk), CONTEXT, &[]).await;
    assert_eq!(live["value"], "hello 1");
    let changes = app.store.changes_since(&workspace, revision + 1, 10).await.unwrap();
    assert_eq!(
        serde_json::to_value(&changes[0].pins).unwrap(),
        json!([{"artifact": "greeting", "environment": "production", "from": null, "to": 1}])
    );
    assert_eq!(app.get("/api/v1/artifacts").await.1["items"][0]["key"], "greeting");
    let actions = audit_actions(&app).await;
    assert_eq!(actions[..2], ["artifact.unarchive", "artifact.archive"]);

    let viewer = app.token("viewer", &[]).await;
    let (status, _) = app.call(Method::POST, "/api/v1/artifacts/greeting/archive", Some(&viewer), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(app.post("/api/v1/artifacts/nope/archive", json!({})).await.0, StatusCode::NOT_FOUND);
}

async fn an_archived_artifact_takes_no_new_versions_pins_or_experiments(store: Store) {
    let app = TestApp::new(store).await;
    greeting(&app, 2).await;
    app.post("/api/v1/artifacts/greeting/archive", json!({})).await;
    let refused = error("artifact_archived", "artifact \"greeting\" is archived; unarchive it first");
    let (status, body) = app.post("/api/v1/artifacts/greeting/versions", json!({"content": "hello 3"})).await;
    assert_eq!((status, body), (StatusCode::CONFLICT, refused.clone()));
    let (status, body) = put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 2})).await;
    assert_eq!((status, body), (StatusCode::CONFLICT, refused.clone()));
    let experiment = json!({"artifact": "greeting", "name": "x", "treatments": [2], "primary_metric": "m"});
    let (status, body) = app.post("/api/v1/environments/production/experiments", experiment).await;
    assert_eq!((status, body), (StatusCode::CONFLICT, refused));
    let (_, artifact) = app.get("/api/v1/artifacts/greeting").await;
    assert_eq!(artifact["latest_version"], 2, "nothing was written");
    // Taking it out of an environment is allowed: that is how it is made ready for deletion.
    let (status, body) = app.delete("/api/v1/artifacts/greeting/pins/production").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn archiving_is_refused_while_an_experiment_uses_the_artifact(store: Store) {
    let app = TestApp::new(store).await;
    greeting(&app, 2).await;
    let experiment = json!({"artifact": "greeting", "name": "x", "treatments": [2], "primary_metric": "m"});
    let (status, made) = app.post("/api/v1/environments/production/experiments", experiment).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap();
    let (status, body) = app.post("/api/v1/artifacts/greeting/archive", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({"error": {"code": "artifact_in_use",
            "message": format!("artifact \"greeting\" is in use: experiments {id}; finish or delete them first"),
            "details": {"environments": [], "experiments": [{"id": id, "environment": "production", "status": "created", "deleted": false}],
                        "rollouts": [], "pools": []}}})
    );
    assert_eq!(app.get("/api/v1/artifacts/greeting").await.1.get("archived_at"), None);
    // A deleted experiment no longer holds it back.
    assert_eq!(app.delete(&format!("/api/v1/experiments/{id}")).await.0, StatusCode::OK);
    assert_eq!(app.post("/api/v1/artifacts/greeting/archive", json!({})).await.0, StatusCode::OK);
}

async fn archiving_takes_the_right_to_change_every_environment_it_is_live_in(store: Store) {
    let app = TestApp::new(store).await;
    greeting(&app, 1).await;
    app.patch("/api/v1/environments/production", json!({"protected": true})).await;
    let editor = app.token("editor", &[]).await;
    let (status, body) = app.call(Method::POST, "/api/v1/artifacts/greeting/archive", Some(&editor), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(app.get("/api/v1/artifacts/greeting").await.1.get("archived_at"), None);
}

async fn delete_is_refused_while_anything_refers_to_the_artifact_and_then_removes_it_all(store: Store) {
    let app = TestApp::new(store).await;
    greeting(&app, 2).await;
    let (status, body) = app.delete("/api/v1/artifacts/greeting").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({"error": {"code": "artifact_in_use",
            "message": "artifact \"greeting\" is in use: pinned in production; archive it instead to hide it and keep its history",
            "details": {"environments": [{"environment": "production", "version": 1}], "experiments": [], "rollouts": [], "pools": []}}})
    );
    let scoped = app.token("editor", &["production"]).await;
    let (status, _) = app.call(Method::DELETE, "/api/v1/artifacts/greeting", Some(&scoped), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    app.delete("/api/v1/artifacts/greeting/pins/production").await;
    let (status, body) = app.delete("/api/v1/artifacts/greeting").await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(app.get("/api/v1/artifacts/greeting").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/artifacts/greeting/versions/1").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.delete("/api/v1/artifacts/greeting").await.0, StatusCode::NOT_FOUND);
    assert_eq!(audit_actions(&app).await[0], "artifact.delete", "the audit log keeps the record");

    // The key is free again, and starts over.
    app.post("/api/v1/artifacts", json!({"key": "greeting", "value_type": "json"})).await;
    let (status, version) = app.post("/api/v1/artifacts/greeting/versions", json!({"content": {"a": 1}})).await;
    assert_eq!((status, version["number"].clone()), (StatusCode::CREATED, json!(1)));

    // Any experiment, even a deleted one, keeps an artifact from being deleted.
    app.post("/api/v1/artifacts/greeting/versions", json!({"content": {"a": 2}})).await;
    let experiment =
        json!({"artifact": "greeting", "name": "x", "control": 1, "treatments": [2], "primary_metric": "m"});
    let (_, made) = app.post("/api/v1/environments/production/experiments", experiment).await;
    let id = made["id"].as_str().unwrap();
    app.delete(&format!("/api/v1/experiments/{id}")).await;
    let (status, body) = app.delete("/api/v1/artifacts/greeting").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["error"]["details"]["experiments"],
        json!([{"id": id, "environment": "production", "status": "created", "deleted": true}])
    );
}

async fn a_pin_racing_a_delete_never_points_at_a_deleted_artifact(store: Store) {
    let app = TestApp::new(store).await;
    app.post("/api/v1/environments", json!({"name": "production"})).await;
    for round in 0..16 {
        let key = format!("race-{round}");
        app.post("/api/v1/artifacts", json!({"key": key, "value_type": "string"})).await;
        app.post(&format!("/api/v1/artifacts/{key}/versions"), json!({"content": "x"})).await;
        let pin_path = format!("/api/v1/artifacts/{key}/pins/production");
        let delete_path = format!("/api/v1/artifacts/{key}");
        let (pinned, deleted) = tokio::join!(put(&app, &pin_path, json!({"version": 1})), app.delete(&delete_path));
        match (pinned.0, deleted.0) {
            (StatusCode::OK, StatusCode::CONFLICT) => {
                assert_eq!(deleted.1["error"]["code"], "artifact_in_use");
                assert_eq!(app.get(&pin_path).await.1["version"], 1);
            }
            (StatusCode::NOT_FOUND, StatusCode::NO_CONTENT) => {
                assert_eq!(app.get(&delete_path).await.0, StatusCode::NOT_FOUND);
            }
            other => panic!("round {round}: pin {pinned:?}, delete {deleted:?}: {other:?}"),
        }
        let (_, live) = app.get("/api/v1/environments/production/pins").await;
        for pin in live["items"].as_array().unwrap() {
            let artifact = pin["artifact"].as_str().unwrap();
            assert_eq!(app.get(&format!("/api/v1/artifacts/{artifact}")).await.0, StatusCode::OK);
        }
    }
}
