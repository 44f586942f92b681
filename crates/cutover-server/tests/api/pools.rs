//! Warm pools over HTTP: pools created, shown and scoped; the reconciler filling a pool through
//! a declared provisioner; 64 concurrent claims on 32 ready instances; agents reporting with
//! their instance's token.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cutover_server::ServerConfig;
use cutover_server::config::ExecutorConfig;
use cutover_store::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{TestApp, error};

cutover_store::contract_tests!(
    a_pool_is_created_shown_validated_and_scoped,
    pools_of_another_workspace_are_not_found,
    the_reconciler_fills_a_pool_and_64_concurrent_claims_get_32_instances_and_32_pool_empty,
    agents_report_with_their_instance_token_and_make_it_ready,
    a_new_version_replaces_the_pool_instances,
    a_build_cut_off_mid_run_runs_again_with_its_key_and_never_creates_twice,
    a_rollout_toward_the_next_version_warms_it_before_the_pin_moves,
    a_rollout_moves_the_pin_only_once_the_pool_is_warm_for_its_version,
    an_experiment_warms_its_treatments_until_it_completes,
);

/// `provision` runs `sh -c script` for every build.
fn provisioner(script: &str) -> BTreeMap<String, ExecutorConfig> {
    let program = vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
    let config =
        ExecutorConfig { program, env: vec!["PATH".into()], working_dir: None, timeout_seconds: 600, workspaces: None };
    BTreeMap::from([("provision".to_owned(), config)])
}

async fn app(store: Store, script: &str, engine: bool) -> TestApp {
    let config = ServerConfig {
        engine_tick_ms: 50,
        engine_lease_seconds: 5,
        executors: provisioner(script),
        ..ServerConfig::default()
    };
    let app = TestApp::with_config(store, config).await;
    if engine {
        app.state.start_engine().unwrap();
    }
    app
}

/// `runner` v1 and v2, v1 pinned in `production`; `live` is protected.
async fn world(app: &TestApp) {
    app.post("/api/v1/artifacts", json!({"key": "runner", "value_type": "string"})).await;
    for n in 1..=2 {
        app.post("/api/v1/artifacts/runner/versions", json!({"content": format!("image {n}")})).await;
    }
    for (name, protected) in [("production", false), ("live", true)] {
        let (status, body) = app.post("/api/v1/environments", json!({"name": name, "protected": protected})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    pin(app, 1).await;
}

async fn pin(app: &TestApp, version: i64) {
    let (status, body) = app
        .call(
            Method::PUT,
            "/api/v1/artifacts/runner/pins/production",
            Some(&app.owner),
            Some(json!({"version": version})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn pool_body(name: &str, instances: u32) -> Value {
    json!({"name": name, "artifact": "runner", "environment": "production", "executor": "provision",
           "desired": {"instances": instances}, "parameters": {"size": "large"}})
}

/// Polls the pool until `done` holds (at most 60 s).
async fn wait_for(app: &TestApp, pool: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, shown) = app.get(&format!("/api/v1/pools/{pool}")).await;
        assert_eq!(status, StatusCode::OK, "{shown}");
        if done(&shown) {
            return shown;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "waiting for {what}: {shown:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn a_pool_is_created_shown_validated_and_scoped(store: Store) {
    let app = app(store, "exit 0", false).await;
    world(&app).await;
    let (status, made) = app.post("/api/v1/pools", pool_body("ci", 2)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (status, shown) = app.get("/api/v1/pools/ci").await;
    assert_eq!(status, StatusCode::OK);
    let owner_name = shown["created_by"].clone();
    assert_eq!(
        shown,
        json!({
            "name": "ci", "artifact": "runner", "environment": "production", "parameters": {"size": "large"},
            "agents": [], "executor": "provision", "timeout_seconds": 600,
            "desired": {"instances": 2, "timezone": "UTC"}, "backoff_seconds": 60, "failure_limit": 3,
            "paused": false, "version": 1,
            "counts": {"desired": 2, "running": 0, "ready": 0, "starting": 0, "expired": 0, "failures": 0,
                       "prewarming": 0},
            "created_at": shown["created_at"], "updated_at": shown["updated_at"], "created_by": owner_name,
        })
    );
    assert_eq!(made, shown);
    let (_, listed) = app.get("/api/v1/pools").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(listed[0].get("counts").is_none());

    // Bad input: one error shape, a field named, nothing written.
    let invalid = |field: &str, message: &str| json!({"error": {"code": "invalid_field", "message": format!("{field}: {message}"), "details": {"field": field}}});
    let cases = [
        (json!({"name": "Bad Name"}), "name"),
        (json!({"executor": "rm-rf"}), "executor"),
        (json!({"desired": {"instances": 101}}), "desired.instances"),
        (json!({"desired": {"instances": 1, "timezone": "Mars/Base"}}), "desired.timezone"),
        (
            json!({"desired": {"instances": 1, "schedules": [{"cron": "* 8-12 * * *", "instances": 3}, {"cron": "* 12 * * 1", "instances": 1}]}}),
            "desired.schedules[1].cron",
        ),
        (json!({"parameters": [1, 2]}), "parameters"),
        (json!({"ttl_seconds": 5}), "ttl_seconds"),
        (json!({"timeout_seconds": 601}), "timeout_seconds"),
        (json!({"agents": ["Main"]}), "agents"),
    ];
    for (change, field) in cases {
        let mut body = pool_body("other", 1);
        body.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
        let (status, answer) = app.post("/api/v1/pools", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["details"]["field"], field, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_field");
    }
    let (_, answer) = app.post("/api/v1/pools", json!({"name": "x", "artifact": "runner", "environment": "production", "executor": "provision", "desired": {"instances": 1}, "ttl_seconds": 5})).await;
    assert_eq!(answer, invalid("ttl_seconds", "must be between 60 and 2592000 (30 days)"));
    let (status, answer) = app.post("/api/v1/pools", pool_body("ci", 1)).await;
    assert_eq!(
        (status, answer),
        (StatusCode::CONFLICT, json!({"error": {"code": "conflict", "message": "a pool named \"ci\" already exists"}}))
    );
    let (_, listed) = app.get("/api/v1/pools").await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "nothing written");

    // Roles and scope: a viewer reads but changes nothing; an editor does not touch a protected
    // environment; a token scoped elsewhere does not even see the pool.
    let viewer = app.token("viewer", &[]).await;
    assert_eq!(app.call(Method::GET, "/api/v1/pools/ci", Some(&viewer), None).await.0, StatusCode::OK);
    let (status, _) = app.call(Method::POST, "/api/v1/pools/ci/claim", Some(&viewer), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let editor = app.token("editor", &[]).await;
    let mut live = pool_body("live-ci", 1);
    live["environment"] = json!("live");
    let (status, answer) = app.call(Method::POST, "/api/v1/pools", Some(&editor), Some(live.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(app.post("/api/v1/pools", live).await.0, StatusCode::CREATED);
    let (status, _) = app.call(Method::POST, "/api/v1/pools/live-ci/pause", Some(&editor), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let scoped = app.token("editor", &["live"]).await;
    let (status, answer) = app.call(Method::GET, "/api/v1/pools/ci", Some(&scoped), None).await;
    assert_eq!((status, answer), (StatusCode::NOT_FOUND, error("not_found", "pool \"ci\" not found")));
    let (_, listed) = app.call(Method::GET, "/api/v1/pools", Some(&scoped), None).await;
    assert_eq!(listed.as_array().unwrap().iter().map(|p| p["name"].clone()).collect::<Vec<_>>(), [json!("live-ci")]);
    let (status, paused) = app.call(Method::POST, "/api/v1/pools/live-ci/pause", Some(&scoped), None).await;
    assert_eq!(
        (status, paused["paused"].clone(), paused["blocked"].clone()),
        (StatusCode::OK, json!(true), json!({"reason": "paused"}))
    );

    // PATCH, nothing ready: a claim is a 409 pool_empty.
    let (status, changed) =
        app.patch("/api/v1/pools/ci", json!({"desired": {"instances": 4}, "ttl_seconds": 3600})).await;
    assert_eq!(
        (status, changed["desired"]["instances"].clone(), changed["ttl_seconds"].clone()),
        (StatusCode::OK, json!(4), json!(3600))
    );
    let (status, answer) = app.post("/api/v1/pools/ci/claim", json!({})).await;
    assert_eq!(
        (status, answer),
        (StatusCode::CONFLICT, error("pool_empty", "pool \"ci\" has no ready instance; retry later"))
    );
    let (status, answer) = app.get("/api/v1/pools/Nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, _) = app.delete("/api/v1/pools/ci").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/pools/ci").await.0, StatusCode::NOT_FOUND);

    // Audited.
    let (_, audit) = app.get("/api/v1/audit?object_type=pool").await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["pool.create", "pool.update", "pool.pause", "pool.delete"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

async fn pools_of_another_workspace_are_not_found(store: Store) {
    let app = app(store, "exit 0", false).await;
    world(&app).await;
    assert_eq!(app.post("/api/v1/pools", pool_body("ci", 1)).await.0, StatusCode::CREATED);
    let instance = app
        .store
        .create_pool_instance(
            &app.store.list_pools(&app.state.store.list_workspaces().await.unwrap()[0].id).await.unwrap()[0].id,
            1,
        )
        .await
        .unwrap();
    let (status, made) = app.post("/api/v1/workspaces", json!({"name": "acme"})).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let acme = made["token"]["secret"].as_str().unwrap();
    let not_found = error("not_found", "pool \"ci\" not found");
    for (method, path, body) in [
        (Method::GET, "/api/v1/pools/ci", None),
        (Method::PATCH, "/api/v1/pools/ci", Some(json!({"desired": {"instances": 0}}))),
        (Method::DELETE, "/api/v1/pools/ci", None),
        (Method::POST, "/api/v1/pools/ci/pause", None),
        (Method::POST, "/api/v1/pools/ci/claim", None),
        (Method::GET, "/api/v1/pools/ci/instances", None),
    ] {
        let answer = app.call(method.clone(), path, Some(acme), body).await;
        assert_eq!(answer, (StatusCode::NOT_FOUND, not_found.clone()), "{method} {path}");
    }
    let answer = app.call(Method::GET, &format!("/api/v1/instances/{instance}"), Some(acme), None).await;
    assert_eq!(answer, (StatusCode::NOT_FOUND, error("not_found", &format!("instance {instance:?} not found"))));
    let (_, listed) = app.call(Method::GET, "/api/v1/pools", Some(acme), None).await;
    assert_eq!(listed, json!([]));
    assert_eq!(app.get("/api/v1/pools/ci").await.1["paused"], false, "untouched");
}

/// Claims `pool` over HTTP, `n` at once.
async fn claims(app: &TestApp, pool: &str, n: usize) -> Vec<(StatusCode, Value)> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (router, token, path) = (app.router.clone(), app.owner.clone(), format!("/api/v1/pools/{pool}/claim"));
        tasks.push(tokio::spawn(async move {
            let request = Request::builder()
                .method(Method::POST)
                .uri(path)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
            (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

async fn the_reconciler_fills_a_pool_and_64_concurrent_claims_get_32_instances_and_32_pool_empty(store: Store) {
    // Builds are quick until the marker exists, then slow: replacements of claimed instances
    // stay starting while the claims race, so exactly the first 32 can be handed out.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("slow");
    let script = format!("test -e '{}' && sleep 30; exit 0", marker.display());
    let app = app(store, &script, true).await;
    world(&app).await;
    assert_eq!(app.post("/api/v1/pools", pool_body("ci", 32)).await.0, StatusCode::CREATED);
    wait_for(&app, "ci", "32 ready instances", |p| p["counts"]["ready"] == 32).await;
    std::fs::write(&marker, b"").unwrap();

    let answers = claims(&app, "ci", 64).await;
    let mut handed = HashSet::new();
    let mut empty = 0;
    for (status, body) in &answers {
        match *status {
            StatusCode::OK => {
                assert!(handed.insert(body["id"].as_str().unwrap().to_owned()), "handed out twice: {body}");
                assert_eq!((body["ready"].clone(), body["version"].clone()), (json!(true), json!(1)));
                assert!(body["claimed_at"].is_string(), "{body}");
            }
            StatusCode::CONFLICT => {
                assert_eq!(body["error"]["code"], "pool_empty");
                empty += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!((handed.len(), empty), (32, 32));
    // The claimed instances left the pool; the reconciler builds their replacements.
    let shown = wait_for(&app, "ci", "replacements starting", |p| p["counts"]["starting"] == 32).await;
    assert_eq!(shown["counts"]["ready"], 0);
    let any = handed.iter().next().unwrap();
    let (status, instance) = app.get(&format!("/api/v1/instances/{any}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(instance["builds"][0]["transition"], "start");
    assert_eq!(instance["builds"][0]["status"], "succeeded");
    let (_, metrics) = app.get("/metrics").await;
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(metrics.contains("cutover_pool_claims_total{pool=\"ci\"} 32\n"), "{metrics}");
    assert!(metrics.contains("cutover_pool_claim_misses_total{pool=\"ci\"} 32\n"), "{metrics}");
    assert!(metrics.contains("cutover_pool_claim_duration_seconds_count{pool=\"ci\"} 64\n"), "{metrics}");
}

async fn agents_report_with_their_instance_token_and_make_it_ready(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("echo \"$CUTOVER_INSTANCE_ID $CUTOVER_AGENT_TOKEN\" >> '{}/tokens'", dir.path().display());
    let app = app(store, &script, true).await;
    world(&app).await;
    let mut body = pool_body("ci", 2);
    body["agents"] = json!(["main"]);
    assert_eq!(app.post("/api/v1/pools", body).await.0, StatusCode::CREATED);
    let shown = wait_for(&app, "ci", "2 running", |p| p["counts"]["running"] == 2).await;
    assert_eq!(shown["counts"]["ready"], 0, "the agents have not reported");
    let tokens = std::fs::read_to_string(dir.path().join("tokens")).unwrap();
    let pairs: Vec<(String, String)> =
        tokens.lines().map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())).unwrap()).collect();
    let ((a, token_a), (b, _)) = (&pairs[0], &pairs[1]);

    let report = |instance: String, token: Option<String>, state: &'static str| {
        let app = &app;
        async move {
            let path = format!("/api/v1/instances/{instance}/agents/main/state");
            app.call(Method::POST, &path, token.as_deref(), Some(json!({"state": state}))).await
        }
    };
    let (status, answer) = report(a.clone(), None, "ready").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let (status, answer) = report(b.clone(), Some(token_a.clone()), "ready").await;
    assert_eq!(
        (status, answer),
        (StatusCode::UNAUTHORIZED, error("unauthorized", "this token does not report for this instance"))
    );
    let (status, answer) = report(a.clone(), Some(app.owner.clone()), "ready").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an API token is not an agent token: {answer}");
    let (status, answer) = report(a.clone(), Some(token_a.clone()), "sleepy").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = report(a.clone(), Some(token_a.clone()), "ready").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!((answer["name"].clone(), answer["state"].clone()), (json!("main"), json!("ready")));

    wait_for(&app, "ci", "one ready", |p| p["counts"]["ready"] == 1).await;
    let (status, claimed) = app.post("/api/v1/pools/ci/claim", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    assert_eq!(claimed["id"], json!(a));
    assert_eq!(claimed["agent_states"][0]["state"], "ready");
    let (status, _) = app.post("/api/v1/pools/ci/claim", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "b's agent is not ready");
}

async fn a_new_version_replaces_the_pool_instances(store: Store) {
    let app = app(store, "exit 0", true).await;
    world(&app).await;
    assert_eq!(app.post("/api/v1/pools", pool_body("ci", 2)).await.0, StatusCode::CREATED);
    wait_for(&app, "ci", "2 ready", |p| p["counts"]["ready"] == 2).await;
    let (_, before) = app.get("/api/v1/pools/ci/instances").await;
    pin(&app, 2).await;
    // Ready instances of v2 first, then the v1 ones go.
    let started = Instant::now();
    let after = loop {
        let (_, after) = app.get("/api/v1/pools/ci/instances").await;
        let ready: Vec<Value> =
            after.as_array().unwrap().iter().filter(|i| i["ready"] == true).map(|i| i["version"].clone()).collect();
        let running = after
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["status"] == "succeeded" && i["transition"] == "start")
            .count();
        if ready == [json!(2), json!(2)] && running == 2 {
            break after;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "waiting for v2 to replace v1: {after:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(app.get("/api/v1/pools/ci").await.1["version"], 2);
    assert!(after.as_array().unwrap().iter().all(|i| i["version"] != 1 || i["transition"] == "delete"), "{after:#}");
    for old in before.as_array().unwrap() {
        let (_, gone) = app.get(&format!("/api/v1/instances/{}", old["id"].as_str().unwrap())).await;
        assert_eq!(gone["builds"][0]["transition"], "delete", "{gone}");
    }
}

async fn a_build_cut_off_mid_run_runs_again_with_its_key_and_never_creates_twice(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    // The first attempt hangs (until its replica goes away); the second completes.
    let script = format!(
        "echo \"$CUTOVER_INSTANCE_ID $CUTOVER_IDEMPOTENCY_KEY $CUTOVER_ATTEMPT\" >> '{}'; \
         test \"$CUTOVER_ATTEMPT\" = 1 && sleep 60; exit 0",
        keys.display()
    );
    let config = |executors| ServerConfig {
        engine_tick_ms: 50,
        engine_lease_seconds: 1,
        engine_shutdown_seconds: 0,
        executors,
        ..ServerConfig::default()
    };
    let first = TestApp::with_config(store.clone(), config(provisioner(&script))).await;
    first.state.start_engine().unwrap();
    world(&first).await;
    let mut body = pool_body("ci", 1);
    body["timeout_seconds"] = json!(3);
    assert_eq!(first.post("/api/v1/pools", body).await.0, StatusCode::CREATED);
    let started = Instant::now();
    while std::fs::read_to_string(&keys).unwrap_or_default().lines().count() < 1 {
        assert!(started.elapsed() < Duration::from_secs(30), "the first attempt never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The replica goes away mid-build: its run never records a result.
    first.state.shutdown.send_replace(true);

    // Another replica on the same database takes the build over once the run's deadline (its
    // timeout and a grace) has passed: same instance, same key, the next attempt.
    let made = store.bootstrap(&cutover_domain::WorkspaceName::parse("default").unwrap()).await.unwrap();
    assert!(made.is_none(), "the same database");
    let state = cutover_server::AppState::new(store.clone(), config(provisioner(&script)));
    state.start_engine().unwrap();
    let second =
        TestApp { router: cutover_server::app(state.clone()), state, store: store.clone(), owner: first.owner.clone() };
    wait_for(&second, "ci", "the instance ready after the takeover", |p| p["counts"]["ready"] == 1).await;
    let lines: Vec<String> = std::fs::read_to_string(&keys).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let (one, two): (Vec<&str>, Vec<&str>) = (lines[0].split(' ').collect(), lines[1].split(' ').collect());
    assert_eq!((one[0], one[1], one[2]), (two[0], two[1], "1"), "same instance and key: {lines:?}");
    assert_eq!(two[2], "2");
    let (_, instances) = second.get("/api/v1/pools/ci/instances").await;
    assert_eq!(instances.as_array().unwrap().len(), 1, "never created twice: {instances:#}");
    let (_, instance) = second.get(&format!("/api/v1/instances/{}", one[0])).await;
    assert_eq!(
        (instance["builds"][0]["attempts"].clone(), instance["builds"][0]["status"].clone()),
        (json!(2), json!("succeeded"))
    );
}

/// The ids of the pool's ready instances of `version`.
async fn ready_of(app: &TestApp, pool: &str, version: i64) -> HashSet<String> {
    let (_, listed) = app.get(&format!("/api/v1/pools/{pool}/instances")).await;
    listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["ready"] == true && i["version"] == version)
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_rollout_toward_the_next_version_warms_it_before_the_pin_moves(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let mut executors = provisioner("exit 0");
    // The rollout's task waits for the test to open the gate: the pin stays on v1 until then.
    let wait = format!("while [ ! -f '{}' ]; do sleep 0.05; done", gate.display());
    let apply = ExecutorConfig {
        program: vec!["sh".into(), "-c".into(), wait],
        env: vec!["PATH".into()],
        working_dir: None,
        timeout_seconds: 600,
        workspaces: None,
    };
    executors.insert("apply".into(), apply);
    let config = ServerConfig { engine_tick_ms: 50, engine_lease_seconds: 5, executors, ..ServerConfig::default() };
    let app = TestApp::with_config(store, config).await;
    app.state.start_engine().unwrap();
    world(&app).await;
    let (status, body) =
        app.post("/api/v1/environments", json!({"name": "staging", "targets": [{"name": "t-0"}]})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .call(Method::PUT, "/api/v1/artifacts/runner/pins/staging", Some(&app.owner), Some(json!({"version": 1})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut pool = pool_body("ci", 2);
    pool["environment"] = json!("staging");
    assert_eq!(app.post("/api/v1/pools", pool).await.0, StatusCode::CREATED);
    wait_for(&app, "ci", "2 ready of v1", |p| p["counts"]["ready"] == 2).await;
    let current = ready_of(&app, "ci", 1).await;
    assert_eq!(current.len(), 2);

    let rollout = json!({"artifact": "runner", "environment": "staging", "version": 2,
                         "executor": {"type": "command", "name": "apply", "timeout_seconds": 60}});
    let (status, made) = app.post("/api/v1/rollouts", rollout).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    // v2 warms beside v1 while the rollout runs; the pin has not moved.
    let shown =
        wait_for(&app, "ci", "2 pre-warmed of v2", |p| p["counts"]["prewarming"] == 2 && p["counts"]["ready"] == 4)
            .await;
    assert_eq!((shown["version"].clone(), shown["counts"]["desired"].clone()), (json!(1), json!(2)), "{shown:#}");
    let (_, rollout) = app.get(&format!("/api/v1/rollouts/{id}")).await;
    assert_ne!(rollout["state"], "completed", "{rollout:#}");
    let warm = ready_of(&app, "ci", 2).await;
    assert_eq!(warm.len(), 2);
    assert_eq!(ready_of(&app, "ci", 1).await, current, "v1 is kept as it is");
    // A claim hands out the pinned version, never a pre-warmed one.
    let (status, claimed) = app.post("/api/v1/pools/ci/claim", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    assert_eq!(claimed["version"], 1, "{claimed:#}");
    assert!(current.contains(claimed["id"].as_str().unwrap()));

    // The rollout completes and moves the pin: the warm instances are the pool's at once, the
    // v1 one left goes, and nothing new is built.
    std::fs::write(&gate, "open").unwrap();
    let shown = wait_for(&app, "ci", "v2 current", |p| {
        p["version"] == 2 && p["counts"]["ready"] == 2 && p["counts"]["prewarming"] == 0 && p["counts"]["running"] == 2
    })
    .await;
    assert_eq!(shown["counts"]["starting"], 0, "{shown:#}");
    assert_eq!(ready_of(&app, "ci", 2).await, warm, "the pre-warmed instances took over");
    let (_, listed) = app.get("/api/v1/pools/ci/instances").await;
    let live: Vec<&Value> = listed.as_array().unwrap().iter().filter(|i| i["transition"] == "start").collect();
    assert_eq!(live.len(), 2, "no instance built after the pin moved: {listed:#}");
}

async fn a_rollout_moves_the_pin_only_once_the_pool_is_warm_for_its_version(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    // Starts of v2 wait for the test to open the gate; everything else is instant.
    let script = format!(
        "if [ \"$CUTOVER_VERSION\" = 2 ] && [ \"$CUTOVER_TRANSITION\" = start ]; then \
         while [ ! -f '{}' ]; do sleep 0.05; done; fi",
        gate.display()
    );
    let mut executors = provisioner(&script);
    let apply = ExecutorConfig {
        program: vec!["sh".into(), "-c".into(), "exit 0".into()],
        env: vec!["PATH".into()],
        working_dir: None,
        timeout_seconds: 600,
        workspaces: None,
    };
    executors.insert("apply".into(), apply);
    let config = ServerConfig { engine_tick_ms: 50, engine_lease_seconds: 5, executors, ..ServerConfig::default() };
    let app = TestApp::with_config(store, config).await;
    app.state.start_engine().unwrap();
    world(&app).await;
    let (status, body) = app
        .post("/api/v1/environments", json!({"name": "staging", "targets": [{"name": "t-0"}, {"name": "t-1"}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.call(Method::PUT, "/api/v1/artifacts/runner/pins/staging", Some(&app.owner), Some(json!({"version": 1}))).await;
    let mut pool = pool_body("ci", 2);
    pool["environment"] = json!("staging");
    assert_eq!(app.post("/api/v1/pools", pool).await.0, StatusCode::CREATED);
    wait_for(&app, "ci", "2 ready of v1", |p| p["counts"]["ready"] == 2).await;

    let rollout = json!({"artifact": "runner", "environment": "staging", "version": 2,
                         "executor": {"type": "command", "name": "apply"}});
    let (status, made) = app.post("/api/v1/rollouts", rollout).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    // Every target is done, but v2 is not warm: the rollout has not completed, the pin stays.
    let started = Instant::now();
    loop {
        let (_, shown) = app.get(&format!("/api/v1/rollouts/{id}")).await;
        let done = shown["operations"].as_array().unwrap().iter().all(|o| o["state"] == "completed");
        if done {
            assert_ne!(shown["state"], "completed", "{shown:#}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "targets not done: {shown:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, rollout_now) = app.get(&format!("/api/v1/rollouts/{id}")).await;
    assert_ne!(rollout_now["state"], "completed", "the pin waits for the pool: {rollout_now:#}");
    let (_, pin) = app.get("/api/v1/artifacts/runner/pins/staging").await;
    assert_eq!(pin["version"], 1, "{pin}");

    // Once v2 is warm, the rollout completes and the pin moves onto ready instances.
    std::fs::write(&gate, "open").unwrap();
    let started = Instant::now();
    loop {
        let (_, shown) = app.get(&format!("/api/v1/rollouts/{id}")).await;
        if shown["state"] == "completed" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "rollout not completed: {shown:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(app.get("/api/v1/artifacts/runner/pins/staging").await.1["version"], 2);
    assert_eq!(ready_of(&app, "ci", 2).await.len(), 2, "the pin moved onto a warm pool");
}

async fn an_experiment_warms_its_treatments_until_it_completes(store: Store) {
    let app = app(store, "exit 0", true).await;
    world(&app).await;
    assert_eq!(app.post("/api/v1/pools", pool_body("ci", 1)).await.0, StatusCode::CREATED);
    wait_for(&app, "ci", "1 ready", |p| p["counts"]["ready"] == 1).await;
    let (status, made) = app
        .post(
            "/api/v1/environments/production/experiments",
            json!({"artifact": "runner", "name": "bigger image", "treatments": [2], "coverage": 1.0,
                   "primary_metric": "boot"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    // Created but not started: nothing warms yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get("/api/v1/pools/ci").await.1["counts"]["prewarming"], 0);
    assert_eq!(app.post(&format!("/api/v1/experiments/{id}/start"), json!({})).await.0, StatusCode::OK);
    wait_for(&app, "ci", "v2 pre-warmed", |p| p["counts"]["prewarming"] == 1 && p["counts"]["ready"] == 2).await;
    assert_eq!(ready_of(&app, "ci", 2).await.len(), 1);
    let (status, body) = app.post(&format!("/api/v1/experiments/{id}/complete"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // No longer targeted: the v2 instance is superseded and goes; v1 stays.
    wait_for(&app, "ci", "v2 gone", |p| p["counts"]["prewarming"] == 0 && p["counts"]["running"] == 1).await;
    assert!(ready_of(&app, "ci", 2).await.is_empty());
    assert_eq!(ready_of(&app, "ci", 1).await.len(), 1);
}
