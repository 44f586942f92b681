use std::sync::Arc;

use axum::http::{Method, StatusCode};
use cutover_store::Store;
use serde_json::{Value, json};

use crate::pins::{put, world};
use crate::{TestApp, error};

cutover_store::contract_tests!(
    experiments_are_created_listed_and_walk_their_lifecycle,
    illegal_transitions_answer_409_naming_the_status,
    completing_with_a_winner_pins_it,
    patch_accepts_only_name_and_hypothesis,
    sixteen_concurrent_creates_give_one_201_and_fifteen_409,
    experiments_of_another_workspace_are_not_found,
    protected_environments_refuse_editors_experiments,
    deleted_experiments_stay_readable_and_leave_lists,
);

/// `world` with version 1 pinned in production.
async fn pinned_world(app: &TestApp, versions: usize) {
    world(app, versions).await;
    let (status, body) = put(app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1}), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn new_experiment() -> Value {
    json!({
        "artifact": "greeting",
        "name": "friendlier greeting",
        "hypothesis": "hello 2 converts better",
        "treatments": [2],
        "primary_metric": "signup.completed"
    })
}

async fn create(app: &TestApp) -> String {
    let (status, body) = app.post("/api/v1/environments/production/experiments", new_experiment()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn experiments_are_created_listed_and_walk_their_lifecycle(store: Store) {
    let app = TestApp::new(store).await;
    pinned_world(&app, 2).await;
    let (status, made) = app.post("/api/v1/environments/production/experiments", new_experiment()).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["variants"], json!([{"version": 1, "weight": 0.5}, {"version": 2, "weight": 0.5}]));
    assert_eq!((made["status"].as_str(), made["coverage"].as_f64()), (Some("created"), Some(1.0)));
    assert_eq!((made["artifact"].as_str(), made["environment"].as_str()), (Some("greeting"), Some("production")));
    assert!(made.get("started_at").is_none() && made.get("ended_at").is_none());
    let id = made["id"].as_str().unwrap();

    let (status, started) = app.post(&format!("/api/v1/experiments/{id}/start"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(started["experiment"]["status"], "running");
    assert!(started["experiment"]["started_at"].is_string());
    assert!(started.get("pinned").is_none());
    let (_, running) = app.get("/api/v1/environments/production/experiments?status=running").await;
    assert_eq!(running["items"].as_array().unwrap().len(), 1);
    let (_, created) = app.get("/api/v1/environments/production/experiments?status=created").await;
    assert_eq!(created["items"], json!([]));
    let (status, bad) = app.get("/api/v1/environments/production/experiments?status=done").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");

    assert_eq!(app.post(&format!("/api/v1/experiments/{id}/pause"), json!({})).await.0, StatusCode::OK);
    assert_eq!(app.post(&format!("/api/v1/experiments/{id}/resume"), json!({})).await.0, StatusCode::OK);
    // complete with no body at all
    let (status, done) =
        app.call(Method::POST, &format!("/api/v1/experiments/{id}/complete"), Some(&app.owner), None).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["experiment"]["status"], "completed");
    assert!(done["experiment"]["ended_at"].is_string());
    assert_eq!(done["experiment"]["started_at"], started["experiment"]["started_at"]);

    let (status, shown) = app.get(&format!("/api/v1/experiments/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, done["experiment"]);
    let (_, audit) = app.get(&format!("/api/v1/audit?object_type=experiment&object_id={id}")).await;
    let actions: Vec<_> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["experiment.complete", "experiment.resume", "experiment.pause", "experiment.start", "experiment.create"]
    );

    let (status, body) = app
        .post(
            "/api/v1/environments/production/experiments",
            json!({"artifact": "greeting", "name": "x", "treatments": [7], "primary_metric": "m"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, error("not_found", "version 7 of artifact \"greeting\" not found"))
    );
    let (status, _) = app.post("/api/v1/environments/nowhere/experiments", new_experiment()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn illegal_transitions_answer_409_naming_the_status(store: Store) {
    let app = TestApp::new(store).await;
    pinned_world(&app, 2).await;
    let id = create(&app).await;
    let (status, body) = app.post(&format!("/api/v1/experiments/{id}/pause"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({"error": {
            "code": "illegal_transition",
            "message": "cannot pause an experiment that is created",
            "details": {"status": "created", "action": "pause"}
        }})
    );
    app.post(&format!("/api/v1/experiments/{id}/start"), json!({})).await;
    let (status, body) = app.post(&format!("/api/v1/experiments/{id}/start"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["message"], "cannot start an experiment that is running");
    assert_eq!(body["error"]["details"]["status"], "running");
    app.post(&format!("/api/v1/experiments/{id}/complete"), json!({})).await;
    let (status, body) = app.post(&format!("/api/v1/experiments/{id}/resume"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["message"], "cannot resume an experiment that is completed");
}

async fn completing_with_a_winner_pins_it(store: Store) {
    let app = TestApp::new(store).await;
    pinned_world(&app, 3).await;
    let id = create(&app).await;
    app.post(&format!("/api/v1/experiments/{id}/start"), json!({})).await;
    let (status, body) = app.post(&format!("/api/v1/experiments/{id}/complete"), json!({"winner": 3})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "3 is not a variant: {body}");
    let (status, body) = app.post(&format!("/api/v1/experiments/{id}/complete"), json!({"winner": "2"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app.post(&format!("/api/v1/experiments/{id}/complete"), json!({"winner": 2})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["experiment"]["status"], "completed");
    assert_eq!(
        body["pinned"]["changes"],
        json!([{"artifact": "greeting", "environment": "production", "from": 1, "to": 2}])
    );
    let (_, pin) = app.get("/api/v1/artifacts/greeting/pins/production").await;
    assert_eq!(pin["version"], 2);
    assert_eq!(pin["revision"], body["pinned"]["revision"]);
    // resolve sees it at once
    let (status, resolved) = app.get("/api/v1/resolve/greeting?environment=production").await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!((resolved["version"].clone(), resolved["value"].clone()), (json!(2), json!("hello 2")));
}

async fn patch_accepts_only_name_and_hypothesis(store: Store) {
    let app = TestApp::new(store).await;
    pinned_world(&app, 2).await;
    let id = create(&app).await;
    let (status, body) = app.patch(&format!("/api/v1/experiments/{id}"), json!({"name": "renamed"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["name"].as_str(), body["hypothesis"].as_str()),
        (Some("renamed"), Some("hello 2 converts better"))
    );
    for field in [json!({"status": "running"}), json!({"coverage": 0.5}), json!({"started_at": "2020-01-01T00:00:00Z"})]
    {
        let (status, body) = app.patch(&format!("/api/v1/experiments/{id}"), field.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
        assert_eq!(body["error"]["code"], "invalid_body");
    }
    let (status, body) = app.patch(&format!("/api/v1/experiments/{id}"), json!({"name": ""})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, shown) = app.get(&format!("/api/v1/experiments/{id}")).await;
    assert_eq!(shown["status"], "created");
}

async fn sixteen_concurrent_creates_give_one_201_and_fifteen_409(store: Store) {
    let app = Arc::new(TestApp::new(store).await);
    pinned_world(&app, 2).await;
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.post("/api/v1/environments/production/experiments", new_experiment()).await })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    let created = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    assert_eq!(created, 1, "{answers:?}");
    let conflict = error("conflict", "an active experiment already exists for artifact \"greeting\" in \"production\"");
    for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!((*status, body), (StatusCode::CONFLICT, &conflict));
    }
    let (_, listed) = app.get("/api/v1/environments/production/experiments").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

async fn experiments_of_another_workspace_are_not_found(store: Store) {
    let app = TestApp::new(store).await;
    pinned_world(&app, 2).await;
    let id = create(&app).await;
    let (status, made) = app.post("/api/v1/workspaces", json!({"name": "acme"})).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let acme = made["token"]["secret"].as_str().unwrap();
    let not_found = error("not_found", &format!("experiment {id:?} not found"));
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/experiments/{id}"), None),
        (Method::PATCH, format!("/api/v1/experiments/{id}"), Some(json!({"name": "mine"}))),
        (Method::DELETE, format!("/api/v1/experiments/{id}"), None),
        (Method::POST, format!("/api/v1/experiments/{id}/start"), Some(json!({}))),
        (Method::GET, format!("/api/v1/experiments/{id}/results"), None),
    ] {
        let answer = app.call(method.clone(), &path, Some(acme), body).await;
        assert_eq!(answer, (StatusCode::NOT_FOUND, not_found.clone()), "{method} {path}");
    }
    let (_, shown) = app.get(&format!("/api/v1/experiments/{id}")).await;
    assert_eq!(shown["status"], "created");
}

async fn protected_environments_refuse_editors_experiments(store: Store) {
    let app = TestApp::new(store).await;
    pinned_world(&app, 2).await;
    app.patch("/api/v1/environments/production", json!({"protected": true})).await;
    let editor = app.token("editor", &[]).await;
    let viewer = app.token("viewer", &[]).await;
    let path = "/api/v1/environments/production/experiments";
    let (status, _) = app.call(Method::POST, path, Some(&viewer), Some(new_experiment())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app.call(Method::POST, path, Some(&editor), Some(new_experiment())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let id = create(&app).await;
    let (status, _) = app.call(Method::POST, &format!("/api/v1/experiments/{id}/start"), Some(&editor), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.call(Method::GET, &format!("/api/v1/experiments/{id}"), Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK);
}

async fn deleted_experiments_stay_readable_and_leave_lists(store: Store) {
    let app = TestApp::new(store).await;
    pinned_world(&app, 2).await;
    let id = create(&app).await;
    let (status, deleted) = app.delete(&format!("/api/v1/experiments/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert!(deleted["deleted_at"].is_string());
    let (status, shown) = app.get(&format!("/api/v1/experiments/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["deleted_at"], deleted["deleted_at"]);
    let (_, listed) = app.get("/api/v1/environments/production/experiments").await;
    assert_eq!(listed["items"], json!([]));
    let (status, _) = app.post(&format!("/api/v1/experiments/{id}/start"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    create(&app).await;
}
