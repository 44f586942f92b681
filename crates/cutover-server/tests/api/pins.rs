use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cutover_store::Store;
use serde_json::{Value, json};

use crate::{TestApp, error};

cutover_store::contract_tests!(
    pins_move_with_history_and_the_environment_view,
    a_version_s_environments_are_replaced_whole_over_http,
    publishing_with_environments_conflicts_listing_every_one,
    if_match_guards_against_stale_writes,
    promote_dry_runs_then_applies,
    protected_environments_refuse_editors,
    pin_requests_are_validated,
);

/// Artifact `greeting` (string) with versions 1..=n and environments dev, staging, production.
pub async fn world(app: &TestApp, versions: usize) {
    app.post("/api/v1/artifacts", json!({"key": "greeting", "value_type": "string"})).await;
    for n in 1..=versions {
        app.post("/api/v1/artifacts/greeting/versions", json!({"content": format!("hello {n}")})).await;
    }
    for env in ["dev", "staging", "production"] {
        app.post("/api/v1/environments", json!({"name": env})).await;
    }
}

pub async fn put(app: &TestApp, path: &str, body: Value, if_match: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::put(path)
        .header(header::AUTHORIZATION, format!("Bearer {}", app.owner))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(revision) = if_match {
        request = request.header(header::IF_MATCH, revision);
    }
    app.send(request.body(Body::from(body.to_string())).unwrap()).await
}

async fn pins_move_with_history_and_the_environment_view(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    let (status, first) =
        put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1, "reason": "launch"}), None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let r1 = first["revision"].as_i64().unwrap();
    assert_eq!(
        first,
        json!({"revision": r1, "changes": [{"artifact": "greeting", "environment": "production", "from": null, "to": 1}]})
    );
    let (_, second) = put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 2}), None).await;
    assert_eq!(second["revision"], r1 + 1);

    let (_, who) = app.get("/api/v1/whoami").await;
    let owner = json!({"token_id": who["token"]["id"], "name": "owner"});
    let (status, history) = app.get("/api/v1/artifacts/greeting/pins/production/history").await;
    assert_eq!(status, StatusCode::OK);
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["version"], 2);
    assert!(items[0].get("ended_at").is_none());
    assert_eq!(items[1]["version"], 1);
    assert_eq!(items[1]["reason"], "launch");
    assert_eq!(items[1]["started_by"], owner);
    assert_eq!(items[1]["ended_by"], owner);
    assert!(items[1]["ended_at"].is_string());

    let (_, pins) = app.get("/api/v1/artifacts/greeting/pins").await;
    assert_eq!(
        pins["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["environment"].clone(), p["version"].clone()))
            .collect::<Vec<_>>(),
        [(json!("production"), json!(2))]
    );
    let (_, live) = app.get("/api/v1/environments/production/pins").await;
    assert_eq!(live["items"][0]["artifact"], "greeting");
    assert_eq!(live["items"][0]["revision"], r1 + 1);

    let (status, unpinned) = app.delete("/api/v1/artifacts/greeting/pins/production?reason=incident").await;
    assert_eq!((status, unpinned["changes"][0]["to"].clone()), (StatusCode::OK, Value::Null));
    assert_eq!(app.get("/api/v1/artifacts/greeting/pins/production").await.0, StatusCode::NOT_FOUND);
    let (_, history) = app.get("/api/v1/artifacts/greeting/pins/production/history?limit=1").await;
    assert_eq!(history["items"][0]["end_reason"], "incident");
    assert!(history["next_cursor"].is_string());
    let (_, audit) = app.get("/api/v1/audit?object_type=artifact&object_id=greeting&limit=3").await;
    let actions: Vec<_> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["pin.clear", "pin.set", "pin.set"]);
}

async fn a_version_s_environments_are_replaced_whole_over_http(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    let (status, set) = put(
        &app,
        "/api/v1/artifacts/greeting/versions/1/environments",
        json!({"environments": ["dev", "staging", "production"]}),
        None,
    )
    .await;
    assert_eq!((status, set["changes"].as_array().unwrap().len()), (StatusCode::OK, 3));
    put(&app, "/api/v1/artifacts/greeting/versions/2/environments", json!({"environments": ["dev"]}), None).await;
    let (_, cleared) = put(
        &app,
        "/api/v1/artifacts/greeting/versions/1/environments",
        json!({"environments": ["staging"], "reason": "shrink"}),
        None,
    )
    .await;
    assert_eq!(
        cleared["changes"],
        json!([{"artifact": "greeting", "environment": "production", "from": 1, "to": null}])
    );
    let (_, pins) = app.get("/api/v1/artifacts/greeting/pins").await;
    let owners: Vec<_> = pins["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}={}", p["environment"].as_str().unwrap(), p["version"]))
        .collect();
    assert_eq!(owners, ["dev=2", "staging=1"]);
    assert_eq!(
        put(
            &app,
            "/api/v1/artifacts/greeting/versions/1/environments",
            json!({"environments": ["staging", "qa", "perf"]}),
            None
        )
        .await,
        (
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "not_found", "message": "environments not found: qa, perf", "details": {"missing": ["qa", "perf"]}}})
        )
    );
    let (status, body) = put(
        &app,
        "/api/v1/artifacts/greeting/versions/1/environments",
        json!({"environments": ["Prod", "ok", "a b"]}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["message"], "environments: invalid environment names: \"Prod\", \"a b\"");
    let many: Vec<String> = (0..101).map(|i| format!("e{i}")).collect();
    assert_eq!(
        put(&app, "/api/v1/artifacts/greeting/versions/1/environments", json!({"environments": many}), None).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        put(&app, "/api/v1/artifacts/greeting/versions/9/environments", json!({"environments": []}), None).await.0,
        StatusCode::NOT_FOUND
    );
}

async fn publishing_with_environments_conflicts_listing_every_one(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 1).await;
    put(
        &app,
        "/api/v1/artifacts/greeting/versions/1/environments",
        json!({"environments": ["dev", "production"]}),
        None,
    )
    .await;
    let (status, body) = app
        .post(
            "/api/v1/artifacts/greeting/versions",
            json!({"content": "new", "environments": ["dev", "staging", "production"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["error"]["details"],
        json!({"environments": [{"environment": "dev", "version": 1}, {"environment": "production", "version": 1}]})
    );
    assert_eq!(app.get("/api/v1/artifacts/greeting").await.1["latest_version"], 1, "nothing created");
    let (status, version) = app
        .post(
            "/api/v1/artifacts/greeting/versions",
            json!({"content": "new", "environments": ["dev", "staging", "production"], "move": true}),
        )
        .await;
    assert_eq!((status, version["number"].clone()), (StatusCode::CREATED, json!(2)));
    let (_, pins) = app.get("/api/v1/artifacts/greeting/pins").await;
    assert!(pins["items"].as_array().unwrap().iter().all(|p| p["version"] == 2));
    assert_eq!(pins["items"].as_array().unwrap().len(), 3);
}

async fn if_match_guards_against_stale_writes(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 3).await;
    let path = "/api/v1/artifacts/greeting/pins/production";
    let (status, _) = put(&app, path, json!({"version": 1}), Some("0")).await;
    assert_eq!(status, StatusCode::OK);
    let request =
        Request::get(path).header(header::AUTHORIZATION, format!("Bearer {}", app.owner)).body(Body::empty()).unwrap();
    let response = tower::ServiceExt::oneshot(app.router.clone(), request).await.unwrap();
    let etag = response.headers()[header::ETAG].to_str().unwrap().to_owned();
    let (status, _) = put(&app, path, json!({"version": 2}), Some(&etag)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = put(&app, path, json!({"version": 3}), Some(&etag)).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(body["error"]["code"], "precondition_failed");
    assert_eq!(app.get(path).await.1["version"], 2, "the stale write changed nothing");
    assert_eq!(put(&app, path, json!({"version": 3}), Some("yesterday")).await.0, StatusCode::BAD_REQUEST);
}

async fn promote_dry_runs_then_applies(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    put(&app, "/api/v1/artifacts/greeting/pins/staging", json!({"version": 2}), None).await;
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1}), None).await;
    let request = json!({"artifact": "greeting", "from": "staging", "to": ["production", "dev"], "dry_run": true});
    let (status, dry) = app.post("/api/v1/promote", request.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let changes = json!([
        {"artifact": "greeting", "environment": "production", "from": 1, "to": 2},
        {"artifact": "greeting", "environment": "dev", "from": null, "to": 2},
    ]);
    assert_eq!(
        dry,
        json!({"artifact": "greeting", "version": 2, "dry_run": true, "revision": null, "changes": changes})
    );
    assert_eq!(app.get("/api/v1/artifacts/greeting/pins/production").await.1["version"], 1);
    let mut real = request;
    real["dry_run"] = json!(false);
    let (_, applied) = app.post("/api/v1/promote", real).await;
    assert_eq!(applied["changes"], changes);
    assert!(applied["revision"].is_i64());
    assert_eq!(app.get("/api/v1/artifacts/greeting/pins/dev").await.1["version"], 2);
    let (status, body) =
        app.post("/api/v1/promote", json!({"artifact": "greeting", "from": "staging", "to": []})).await;
    assert_eq!((status, body["error"]["details"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("to")));
}

async fn protected_environments_refuse_editors(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 1).await;
    app.patch("/api/v1/environments/production", json!({"protected": true})).await;
    let editor = app.token("editor", &[]).await;
    let call = |env: &str| {
        let request = Request::put(format!("/api/v1/artifacts/greeting/pins/{env}"))
            .header(header::AUTHORIZATION, format!("Bearer {editor}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"version": 1}).to_string()))
            .unwrap();
        app.send(request)
    };
    assert_eq!(
        call("production").await,
        (
            StatusCode::FORBIDDEN,
            error(
                "forbidden",
                "environment \"production\" is protected: only owners or tokens limited to it can change what is live there"
            )
        )
    );
    assert_eq!(call("dev").await.0, StatusCode::OK);
    let (_, scoped) = app
        .post("/api/v1/tokens", json!({"name": "release-bot", "role": "editor", "environments": ["production"]}))
        .await;
    let scoped = scoped["secret"].as_str().unwrap();
    let (status, _) = app
        .call(Method::PUT, "/api/v1/artifacts/greeting/pins/production", Some(scoped), Some(json!({"version": 1})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let viewer = app.token("viewer", &[]).await;
    let (status, _) =
        app.call(Method::PUT, "/api/v1/artifacts/greeting/pins/dev", Some(&viewer), Some(json!({"version": 1}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn pin_requests_are_validated(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 1).await;
    for (path, body) in [
        ("/api/v1/artifacts/greeting/pins/production", json!({"version": "1"})),
        ("/api/v1/artifacts/greeting/pins/production", json!({"version": 1, "force": true})),
        ("/api/v1/artifacts/greeting/pins/Prod", json!({"version": 1})),
        ("/api/v1/artifacts/greeting/pins/production", json!({"version": 1, "reason": "\u{0}"})),
    ] {
        let (status, answer) = put(&app, path, body.clone(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
    }
    for version in [0, -3] {
        let (status, answer) =
            put(&app, "/api/v1/artifacts/greeting/pins/production", json!({ "version": version }), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_field", "{answer}");
        assert_eq!(answer["error"]["details"]["field"], "version", "{answer}");
    }
    assert_eq!(
        put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 7}), None).await,
        (StatusCode::NOT_FOUND, error("not_found", "version 7 of artifact \"greeting\" not found"))
    );
    assert_eq!(
        put(&app, "/api/v1/artifacts/greeting/pins/qa", json!({"version": 1}), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        put(&app, "/api/v1/artifacts/nope/pins/dev", json!({"version": 1}), None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, pins) = app.get("/api/v1/artifacts/greeting/pins").await;
    assert_eq!(pins, json!({"items": []}), "nothing written");
}
