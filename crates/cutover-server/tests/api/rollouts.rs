//! Rollouts driven by the engine, in process: command and manual executors, waves, failure
//! policies, controls, and the pin moving once on completion.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use cutover_server::ServerConfig;
use cutover_store::Store;
use serde_json::{Value, json};

use crate::{TestApp, error};

cutover_store::contract_tests!(
    a_command_rollout_runs_every_target_in_waves_and_moves_the_pin,
    a_failure_under_halt_fails_the_rollout_and_leaves_the_pin,
    manual_tasks_wait_for_a_person,
    a_stopped_rollout_resumes_and_reruns_the_interrupted_task,
    rollout_requests_are_validated_and_scoped,
);

/// An app whose engine runs, looking at rollouts every 50 ms.
async fn app_with_engine(store: Store) -> TestApp {
    let config = ServerConfig { engine_tick_ms: 50, engine_lease_seconds: 5, ..ServerConfig::default() };
    let app = TestApp::with_config(store, config).await;
    app.state.start_engine();
    app
}

/// `greeting` v1 pinned in `production`, v2 published; `production` has `targets` targets t-0….
async fn world(app: &TestApp, targets: usize) {
    app.post("/api/v1/artifacts", json!({"key": "greeting", "value_type": "string"})).await;
    for n in 1..=2 {
        app.post("/api/v1/artifacts/greeting/versions", json!({"content": format!("hello {n}")})).await;
    }
    let targets: Vec<Value> = (0..targets).map(|i| json!({"name": format!("t-{i}"), "config": {"i": i}})).collect();
    let (status, body) = app.post("/api/v1/environments", json!({"name": "production", "targets": targets})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .call(Method::PUT, "/api/v1/artifacts/greeting/pins/production", Some(&app.owner), Some(json!({"version": 1})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn start(app: &TestApp, body: Value) -> String {
    let (status, made) = app.post("/api/v1/rollouts", body).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    made["id"].as_str().unwrap().to_owned()
}

/// Polls the rollout until `done` holds (at most 30 s).
async fn wait_for(app: &TestApp, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, rollout) = app.get(&format!("/api/v1/rollouts/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{rollout}");
        if done(&rollout) {
            return rollout;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "waiting for {what}: {rollout:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn state_is(state: &'static str) -> impl Fn(&Value) -> bool {
    move |r| r["state"] == state
}

async fn live_version(app: &TestApp) -> Value {
    app.get("/api/v1/resolve/greeting?environment=production").await.1["version"].clone()
}

async fn a_command_rollout_runs_every_target_in_waves_and_moves_the_pin(store: Store) {
    let app = app_with_engine(store).await;
    world(&app, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("ran");
    // Each run notes what it was told, and the wave can be seen from overlapping runs.
    let script = format!(
        "printf '%s %s %s %s %s\\n' \"$CUTOVER_TARGET\" \"$CUTOVER_VERSION\" \"$(cat \"$CUTOVER_CONTENT_FILE\")\" \
         \"$CUTOVER_STEP\" \"$CUTOVER_TARGET_CONFIG\" >> {}; echo \"applied $CUTOVER_IDEMPOTENCY_KEY\"",
        record.display()
    );
    let id = start(
        &app,
        json!({"artifact": "greeting", "environment": "production", "version": 2, "max_parallel": 2,
               "executor": {"type": "command", "program": ["sh", "-c", script], "timeout_seconds": 30}}),
    )
    .await;
    let done = wait_for(&app, &id, "completion", state_is("completed")).await;
    assert_eq!(done["progress"], json!({"completed": 5}));
    assert!(done["pinned_revision"].is_i64(), "{done}");
    for (i, operation) in done["operations"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            (operation["target"].as_str(), operation["wave"].as_u64()),
            (Some(&*format!("t-{i}")), Some(i as u64 / 2))
        );
        let task = &operation["tasks"][0];
        assert_eq!(
            (task["state"].as_str(), task["attempts"].as_u64(), task["exit_code"].as_i64()),
            (Some("completed"), Some(1), Some(0))
        );
        let log_path = format!("/api/v1/rollouts/{id}/tasks/{}/log", task["id"].as_str().unwrap());
        let (status, log) = app.get(&log_path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(log, Value::String(format!("applied {}\n", task["idempotency_key"].as_str().unwrap())));
    }
    let mut ran: Vec<String> = std::fs::read_to_string(&record).unwrap().lines().map(str::to_owned).collect();
    ran.sort();
    let expected: Vec<String> = (0..5).map(|i| format!("t-{i} 2 hello 2 apply {{\"i\":{i}}}")).collect();
    assert_eq!(ran, expected, "every target once, told the target, version, content, step and config");
    assert_eq!(live_version(&app).await, json!(2), "the pin moved to the rolled-out version");
    let (_, history) = app.get("/api/v1/artifacts/greeting/pins/production/history").await;
    assert_eq!(history["items"].as_array().unwrap().len(), 2, "moved once: {history}");
    let (_, audit) = app.get("/api/v1/audit?object_type=rollout").await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"rollout.create") && actions.contains(&"rollout.completed"), "{actions:?}");
}

async fn a_failure_under_halt_fails_the_rollout_and_leaves_the_pin(store: Store) {
    let app = app_with_engine(store).await;
    world(&app, 3).await;
    let id = start(
        &app,
        json!({"artifact": "greeting", "environment": "production", "version": 2,
               "executor": {"type": "command", "program": ["sh", "-c", "echo trying >&2; test \"$CUTOVER_TARGET\" != t-1"]}}),
    )
    .await;
    let failed = wait_for(&app, &id, "failure", state_is("failed")).await;
    let states: Vec<&str> =
        failed["operations"].as_array().unwrap().iter().map(|o| o["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["completed", "failed", "pending"], "nothing starts after a failure under halt");
    let task = &failed["operations"][1]["tasks"][0];
    assert_eq!((task["exit_code"].as_i64(), task["error"].as_str()), (Some(1), Some("exited with status 1")));
    let (_, log) = app.get(&format!("/api/v1/rollouts/{id}/tasks/{}/log", task["id"].as_str().unwrap())).await;
    assert_eq!(log, json!("trying\n"));
    assert_eq!(live_version(&app).await, json!(1));
    let (status, body) = app.post(&format!("/api/v1/rollouts/{id}/retry"), json!({})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::CONFLICT,
            json!({"error": {"code": "illegal_transition", "message": "cannot retry a rollout that is failed",
                    "details": {"state": "failed", "control": "retry"}}})
        )
    );
}

async fn manual_tasks_wait_for_a_person(store: Store) {
    let app = app_with_engine(store).await;
    world(&app, 1).await;
    let id = start(
        &app,
        json!({"artifact": "greeting", "environment": "production", "version": 2, "steps": ["drain", "apply"],
               "executor": {"type": "manual"}}),
    )
    .await;
    for step in ["drain", "apply"] {
        let running = wait_for(&app, &id, step, |r| {
            r["operations"][0]["tasks"].as_array().unwrap().iter().any(|t| t["step"] == step && t["state"] == "running")
        })
        .await;
        let task = running["operations"][0]["tasks"].as_array().unwrap().iter().find(|t| t["step"] == step).unwrap();
        let path = format!("/api/v1/rollouts/{id}/tasks/{}/complete", task["id"].as_str().unwrap());
        let (status, done) = app.post(&path, json!({"message": format!("{step} done")})).await;
        assert_eq!((status, done["state"].as_str()), (StatusCode::OK, Some("completed")), "{done}");
        let (status, again) = app.post(&path, json!({})).await;
        assert_eq!((status, again["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{again}");
    }
    wait_for(&app, &id, "completion", state_is("completed")).await;
    assert_eq!(live_version(&app).await, json!(2));
}

async fn a_stopped_rollout_resumes_and_reruns_the_interrupted_task(store: Store) {
    let app = app_with_engine(store).await;
    world(&app, 1).await;
    // The first attempt hangs; a later one succeeds at once.
    let script = "if [ \"$CUTOVER_ATTEMPT\" = 1 ]; then sleep 60; fi; echo attempt $CUTOVER_ATTEMPT";
    let id = start(
        &app,
        json!({"artifact": "greeting", "environment": "production", "version": 2,
               "executor": {"type": "command", "program": ["sh", "-c", script]}}),
    )
    .await;
    wait_for(&app, &id, "the first run", |r| r["operations"][0]["tasks"][0]["state"] == "running").await;
    let (status, stopping) = app.post(&format!("/api/v1/rollouts/{id}/stop"), json!({})).await;
    assert_eq!((status, stopping["state"].as_str()), (StatusCode::OK, Some("stopping")), "{stopping}");
    let stopped = wait_for(&app, &id, "the stop", state_is("stopped")).await;
    assert_eq!(stopped["operations"][0]["state"], "stopped");
    assert_eq!(stopped["operations"][0]["tasks"][0]["state"], "stopped");
    assert_eq!(live_version(&app).await, json!(1));
    let (status, _) = app.post(&format!("/api/v1/rollouts/{id}/resume"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let done = wait_for(&app, &id, "completion", state_is("completed")).await;
    let task = &done["operations"][0]["tasks"][0];
    assert_eq!(task["attempts"], 2, "{done}");
    let (_, log) = app.get(&format!("/api/v1/rollouts/{id}/tasks/{}/log", task["id"].as_str().unwrap())).await;
    assert_eq!(log, json!("attempt 2\n"));
}

async fn rollout_requests_are_validated_and_scoped(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    let base =
        json!({"artifact": "greeting", "environment": "production", "version": 2, "executor": {"type": "manual"}});
    let with = |patch: Value| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        body
    };
    for (body, status, code) in [
        (with(json!({"executor": {"type": "ssh"}})), StatusCode::BAD_REQUEST, "invalid_field"),
        (with(json!({"executor": {"type": "command", "program": []}})), StatusCode::BAD_REQUEST, "invalid_field"),
        (with(json!({"executor": {"type": "webhook", "url": "https://x"}})), StatusCode::BAD_REQUEST, "invalid_field"),
        (with(json!({"max_parallel": 0})), StatusCode::BAD_REQUEST, "invalid_field"),
        (with(json!({"on_failure": "ignore"})), StatusCode::BAD_REQUEST, "invalid_field"),
        (with(json!({"steps": []})), StatusCode::BAD_REQUEST, "invalid_field"),
        (with(json!({"version": 7})), StatusCode::NOT_FOUND, "not_found"),
        (with(json!({"environment": "nowhere"})), StatusCode::NOT_FOUND, "not_found"),
        (with(json!({"surprise": 1})), StatusCode::BAD_REQUEST, "invalid_body"),
    ] {
        let (got, answer) = app.post("/api/v1/rollouts", body.clone()).await;
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{body}: {answer}");
    }
    app.post("/api/v1/environments", json!({"name": "bare"})).await;
    let (status, answer) = app.post("/api/v1/rollouts", with(json!({"environment": "bare"}))).await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::CONFLICT,
            error("conflict", "environment \"bare\" has no deployment targets: add some, or pin the version directly")
        )
    );
    let (_, listed) = app.get("/api/v1/rollouts").await;
    assert_eq!(listed["items"], json!([]), "nothing written by refused requests");

    let id = start(&app, base.clone()).await;
    let viewer = app.token("viewer", &[]).await;
    let (status, _) = app.call(Method::POST, "/api/v1/rollouts", Some(&viewer), Some(base.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(app.call(Method::GET, &format!("/api/v1/rollouts/{id}"), Some(&viewer), None).await.0, StatusCode::OK);
    let (_, made) = app.post("/api/v1/workspaces", json!({"name": "acme"})).await;
    let acme = made["token"]["secret"].as_str().unwrap();
    let not_found = error("not_found", &format!("rollout {id:?} not found"));
    for (method, path) in [
        (Method::GET, format!("/api/v1/rollouts/{id}")),
        (Method::POST, format!("/api/v1/rollouts/{id}/stop")),
        (Method::POST, format!("/api/v1/rollouts/{id}/cancel")),
    ] {
        let body = (method == Method::POST).then(|| json!({}));
        assert_eq!(
            app.call(method, &path, Some(acme), body).await,
            (StatusCode::NOT_FOUND, not_found.clone()),
            "{path}"
        );
    }
    let (_, theirs) = app.call(Method::GET, "/api/v1/rollouts", Some(acme), None).await;
    assert_eq!(theirs["items"], json!([]));
    let (_, listed) = app.get("/api/v1/rollouts?environment=production&state=pending").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let (status, _) = app.get("/api/v1/rollouts?state=done").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
