//! The submit queue over HTTP: queues created, validated and scoped; changes checked by a
//! declared command and landed; a broken change refused with its check's output while the rest
//! land; a manual check reported by a person; 32 submits and 8 cancels racing a running queue.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use cutover_server::ServerConfig;
use cutover_server::config::ExecutorConfig;
use cutover_store::Store;
use serde_json::{Value, json};

use crate::{TestApp, error};

cutover_store::contract_tests!(
    a_queue_is_created_shown_validated_and_scoped,
    queues_of_another_workspace_are_not_found,
    a_change_is_checked_with_its_candidate_content_and_lands,
    a_broken_change_is_refused_with_its_checks_output_while_the_rest_land,
    a_manual_check_is_reported_by_a_person,
    a_webhook_check_is_delivered_signed_and_reported_through_its_callback,
    thirty_two_submits_and_eight_cancels_race_a_running_queue,
);

/// `check` runs `sh -c script` for every check.
fn checker(script: &str) -> BTreeMap<String, ExecutorConfig> {
    let program = vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
    let config =
        ExecutorConfig { program, env: vec!["PATH".into()], working_dir: None, timeout_seconds: 600, workspaces: None };
    BTreeMap::from([("check".to_owned(), config)])
}

async fn app(store: Store, script: &str, engine: bool) -> TestApp {
    let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
    let config = ServerConfig {
        engine_tick_ms: 50,
        engine_lease_seconds: 5,
        executors: checker(script),
        ..ServerConfig::default()
    };
    let app = TestApp::with_config(store, config).await;
    if engine {
        app.state.start_engine().unwrap();
    }
    app
}

/// String artifacts `a` to `d`, a number artifact `n`, environments `production` and `live`
/// (protected).
async fn world(app: &TestApp) {
    for k in ["a", "b", "c", "d"] {
        let (status, body) = app.post("/api/v1/artifacts", json!({"key": k, "value_type": "string"})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    app.post("/api/v1/artifacts", json!({"key": "n", "value_type": "number"})).await;
    for (name, protected) in [("production", false), ("live", true)] {
        let (status, body) = app.post("/api/v1/environments", json!({"name": name, "protected": protected})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

fn queue_body(name: &str, executor: Value) -> Value {
    json!({"name": name, "environment": "production", "budget": 4, "max_batch_size": 4, "max_wait_seconds": 0,
           "executor": executor})
}

async fn make_queue(app: &TestApp, executor: Value) {
    let (status, body) = app.post("/api/v1/queues", queue_body("main", executor)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn submit(app: &TestApp, changes: Value, message: &str) -> u64 {
    let (status, body) =
        app.post("/api/v1/queues/main/requests", json!({"changes": changes, "message": message})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_u64().unwrap()
}

/// Polls until no request of `main` is live (at most 120 s); returns every request, oldest first.
async fn settle(app: &TestApp) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let (status, live) = app.get("/api/v1/queues/main/requests?state=live").await;
        assert_eq!(status, StatusCode::OK, "{live}");
        if live.as_array().unwrap().is_empty() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the queue did not settle: {live:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, all) = app.get("/api/v1/queues/main/requests?limit=200").await;
    let mut all = all.as_array().unwrap().clone();
    all.reverse();
    all
}

async fn request(app: &TestApp, id: u64) -> Value {
    let (status, body) = app.get(&format!("/api/v1/queues/main/requests/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn states(request: &Value) -> Vec<String> {
    request["history"].as_array().unwrap().iter().map(|t| t["to"].as_str().unwrap().to_owned()).collect()
}

async fn a_queue_is_created_shown_validated_and_scoped(store: Store) {
    let app = app(store, "exit 0", false).await;
    world(&app).await;
    let (status, made) = app
        .post(
            "/api/v1/queues",
            json!({"name": "main", "environment": "production", "executor": {"type": "command", "name": "check"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (status, shown) = app.get("/api/v1/queues/main").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        shown,
        json!({
            "name": "main", "environment": "production", "budget": 4, "max_batch_size": 8, "max_wait_seconds": 60,
            "max_flake_retries": 1, "executor": {"type": "command", "name": "check", "timeout_seconds": 600},
            "paused": false, "depth": 0, "active_batches": 0, "running_checks": [], "landed": 0,
            "created_at": shown["created_at"], "updated_at": shown["updated_at"], "created_by": shown["created_by"],
        })
    );
    assert_eq!(made, shown);
    assert_eq!(app.get("/api/v1/queues").await.1, json!([shown]));

    // Bad input: one error shape, the field named, nothing written.
    let invalid = |field: &str, message: &str| json!({"error": {"code": "invalid_field", "message": format!("{field}: {message}"), "details": {"field": field}}});
    let base = json!({"name": "other", "environment": "production", "executor": {"type": "manual"}});
    let with = |patch: Value| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        body
    };
    for (body, field, message) in [
        (with(json!({"budget": 0})), "budget", "must be between 1 and 64"),
        (with(json!({"max_batch_size": 101})), "max_batch_size", "must be between 1 and 100"),
        (with(json!({"max_wait_seconds": 3601})), "max_wait_seconds", "must be between 0 and 3600"),
    ] {
        assert_eq!(
            app.post("/api/v1/queues", body.clone()).await,
            (StatusCode::BAD_REQUEST, invalid(field, message)),
            "{body}"
        );
    }
    let (status, body) =
        app.post("/api/v1/queues", with(json!({"executor": {"type": "command", "name": "nope"}}))).await;
    assert_eq!(
        (status, &body["error"]["details"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("executor.name")),
        "{body}"
    );
    let (status, body) =
        app.post("/api/v1/queues", with(json!({"executor": {"type": "command", "program": "/bin/sh"}}))).await;
    assert_eq!((status, &body["error"]["details"]["field"]), (StatusCode::BAD_REQUEST, &json!("executor")), "{body}");
    // A webhook to an address the policy refuses (loopback, without `webhook_allow`): judged
    // without any traffic.
    let loopback =
        with(json!({"executor": {"type": "webhook", "url": "http://127.0.0.1:9/x", "secret": "0123456789"}}));
    let (status, body) = app.post("/api/v1/queues", loopback).await;
    assert_eq!(
        (status, &body["error"]["details"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("executor.url")),
        "{body}"
    );
    let (status, body) = app.post("/api/v1/queues", with(json!({"name": "Bad"}))).await;
    assert_eq!((status, &body["error"]["details"]["field"]), (StatusCode::BAD_REQUEST, &json!("name")), "{body}");
    let (status, body) = app.post("/api/v1/queues", with(json!({"environment": "nowhere"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(app.get("/api/v1/queues").await.1.as_array().unwrap().len(), 1, "nothing written");
    let (status, body) = app.post("/api/v1/queues", with(json!({"name": "main"}))).await;
    assert_eq!((status, body), (StatusCode::CONFLICT, error("conflict", "a queue named \"main\" already exists")));

    // Submits: content checked against the value type, nothing written on failure.
    let (status, body) = app
        .post(
            "/api/v1/queues/main/requests",
            json!({"changes": [{"artifact": "n", "content": "text"}], "message": "m"}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["details"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("changes[0].content")),
        "{body}"
    );
    let (status, body) = app.post("/api/v1/queues/main/requests", json!({"changes": []})).await;
    assert_eq!((status, &body["error"]["details"]["field"]), (StatusCode::BAD_REQUEST, &json!("changes")), "{body}");
    let (status, _) =
        app.post("/api/v1/queues/main/requests", json!({"changes": [{"artifact": "zz", "content": "x"}]})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/queues/main/requests").await.1, json!([]));
    assert_eq!(
        app.get("/api/v1/queues/main/requests/7").await,
        (StatusCode::NOT_FOUND, error("not_found", "change request 7 of queue \"main\" not found"))
    );
    assert_eq!(app.get("/api/v1/queues/main/requests/x").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/api/v1/queues/main/batches?state=dead").await.0, StatusCode::BAD_REQUEST);

    // Roles and scopes: a viewer reads but cannot submit; a token scoped to `live` does not see it.
    let viewer = app.token("viewer", &[]).await;
    let body = json!({"changes": [{"artifact": "a", "content": "x"}]});
    assert_eq!(app.call(Method::GET, "/api/v1/queues/main", Some(&viewer), None).await.0, StatusCode::OK);
    assert_eq!(
        app.call(Method::POST, "/api/v1/queues/main/requests", Some(&viewer), Some(body.clone())).await.0,
        StatusCode::FORBIDDEN
    );
    let scoped = app.token("editor", &["live"]).await;
    assert_eq!(
        app.call(Method::GET, "/api/v1/queues/main", Some(&scoped), None).await,
        (StatusCode::NOT_FOUND, error("not_found", "queue \"main\" not found"))
    );
    assert_eq!(app.call(Method::GET, "/api/v1/queues", Some(&scoped), None).await.1, json!([]));
    // An editor cannot create a queue on a protected environment.
    let editor = app.token("editor", &[]).await;
    let on_live = json!({"name": "guard", "environment": "live", "executor": {"type": "manual"}});
    assert_eq!(app.call(Method::POST, "/api/v1/queues", Some(&editor), Some(on_live)).await.0, StatusCode::FORBIDDEN);
}

async fn queues_of_another_workspace_are_not_found(store: Store) {
    let app = app(store, "exit 0", false).await;
    world(&app).await;
    make_queue(&app, json!({"type": "manual"})).await;
    let id = submit(&app, json!([{"artifact": "a", "content": "x"}]), "m").await;
    let (status, made) = app.post("/api/v1/workspaces", json!({"name": "acme"})).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let acme = made["token"]["secret"].as_str().unwrap();
    let not_found = error("not_found", "queue \"main\" not found");
    for (method, path, body) in [
        (Method::GET, "/api/v1/queues/main".to_owned(), None),
        (Method::GET, "/api/v1/queues/main/requests".to_owned(), None),
        (
            Method::POST,
            "/api/v1/queues/main/requests".to_owned(),
            Some(json!({"changes": [{"artifact": "a", "content": "y"}]})),
        ),
        (Method::GET, format!("/api/v1/queues/main/requests/{id}"), None),
        (Method::POST, format!("/api/v1/queues/main/requests/{id}/cancel"), None),
        (Method::GET, "/api/v1/queues/main/batches?state=active".to_owned(), None),
        (Method::POST, "/api/v1/queues/main/pause".to_owned(), None),
        (Method::POST, "/api/v1/queues/main/resume".to_owned(), None),
        (Method::POST, "/api/v1/queues/main/checks/1/pass".to_owned(), Some(json!({}))),
    ] {
        let answer = app.call(method.clone(), &path, Some(acme), body).await;
        assert_eq!(answer, (StatusCode::NOT_FOUND, not_found.clone()), "{method} {path}");
    }
    assert_eq!(app.call(Method::GET, "/api/v1/queues", Some(acme), None).await.1, json!([]));
    assert_eq!(request(&app, id).await["state"], "validated", "untouched");
}

async fn a_change_is_checked_with_its_candidate_content_and_lands(store: Store) {
    // The check passes only when it is handed the candidate content as files and as JSON.
    let script = r#"test "$(cat "$CUTOVER_CANDIDATE_DIR/a")" = "hello" && grep -q '"n":42' "$CUTOVER_CANDIDATE_FILE" && test "$CUTOVER_ARTIFACTS" = "a,n" && echo "checked $CUTOVER_IDEMPOTENCY_KEY""#;
    let app = app(store, script, true).await;
    world(&app).await;
    make_queue(&app, json!({"type": "command", "name": "check"})).await;
    let id =
        submit(&app, json!([{"artifact": "a", "content": "hello"}, {"artifact": "n", "content": 42}]), "greet").await;
    settle(&app).await;
    let landed = request(&app, id).await;
    assert_eq!(landed["state"], "landed", "{landed:#}");
    assert_eq!(landed["landed_versions"], json!({"a": 1, "n": 1}));
    assert_eq!(states(&landed), ["started", "validated", "batched", "processing", "landed"]);
    let (_, pin) = app.get("/api/v1/artifacts/a/pins/production").await;
    assert_eq!(pin["version"], 1, "{pin}");
    let (_, resolved) = app.get("/api/v1/artifacts/n/versions/1").await;
    assert_eq!(resolved["content"], 42);
    let (_, queue) = app.get("/api/v1/queues/main").await;
    assert_eq!(
        (queue["depth"].clone(), queue["landed"].clone(), queue["active_batches"].clone()),
        (json!(0), json!(1), json!(0))
    );
    let (_, audit) = app.get("/api/v1/audit?object_type=queue").await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["queue.land", "queue.submit", "queue.create"]);
    let (status, body) = app.post(&format!("/api/v1/queues/main/requests/{id}/cancel"), json!(null)).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::CONFLICT,
            error(
                "conflict",
                &format!("change request {id} is already landed; only a request still in the queue can be cancelled")
            )
        )
    );
    let (_, metrics) = app.call(Method::GET, "/metrics", None, None).await;
    let text = metrics.as_str().unwrap();
    assert!(text.contains("cutover_queue_landed_total{queue=\"main\"} 1"), "{text}");
    assert!(text.contains("cutover_queue_checks_total{queue=\"main\"} 1"), "{text}");
}

async fn a_broken_change_is_refused_with_its_checks_output_while_the_rest_land(store: Store) {
    // The check prints a NUL byte too (PostgreSQL's text refuses it: it is kept as U+FFFD).
    let script = r#"if grep -q broken "$CUTOVER_CANDIDATE_FILE"; then printf 'lint: broken content in %s\0!\n' "$CUTOVER_ARTIFACTS"; exit 3; fi"#;
    let app = app(store, script, true).await;
    world(&app).await;
    make_queue(&app, json!({"type": "command", "name": "check"})).await;
    app.post("/api/v1/queues/main/pause", json!(null)).await;
    let good1 = submit(&app, json!([{"artifact": "a", "content": "one"}]), "one").await;
    let bad = submit(&app, json!([{"artifact": "a", "content": "broken"}]), "two").await;
    let good2 = submit(&app, json!([{"artifact": "a", "content": "three"}]), "three").await;
    let (status, resumed) = app.post("/api/v1/queues/main/resume", json!(null)).await;
    assert_eq!((status, resumed["paused"].clone()), (StatusCode::OK, json!(false)));
    settle(&app).await;
    let refused = request(&app, bad).await;
    assert_eq!(refused["state"], "error", "{refused:#}");
    assert_eq!(refused["error"], "lint: broken content in a\u{fffd}!\n[exited with status 3]");
    for id in [good1, good2] {
        assert_eq!(request(&app, id).await["state"], "landed");
    }
    // What production saw: one, then three; never the broken content.
    let (_, history) = app.get("/api/v1/artifacts/a/pins/production/history").await;
    let versions: Vec<i64> =
        history["items"].as_array().unwrap().iter().map(|p| p["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, [2, 1], "{history:#}");
    let (_, v2) = app.get("/api/v1/artifacts/a/versions/2").await;
    assert_eq!(v2["content"], "three");
}

async fn a_manual_check_is_reported_by_a_person(store: Store) {
    let app = app(store, "exit 0", true).await;
    world(&app).await;
    make_queue(&app, json!({"type": "manual"})).await;
    let id = submit(&app, json!([{"artifact": "b", "content": "by hand"}]), "m").await;
    let started = Instant::now();
    let check = loop {
        let (_, queue) = app.get("/api/v1/queues/main").await;
        if let Some(check) = queue["running_checks"].as_array().unwrap().first() {
            break check["id"].as_u64().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no check started: {queue}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let viewer = app.token("viewer", &[]).await;
    let path = format!("/api/v1/queues/main/checks/{check}/pass");
    assert_eq!(app.call(Method::POST, &path, Some(&viewer), Some(json!({}))).await.0, StatusCode::FORBIDDEN);
    let (status, body) = app.post(&path, json!({"output": "bad\u{0}byte"})).await;
    assert_eq!((status, &body["error"]["details"]["field"]), (StatusCode::BAD_REQUEST, &json!("output")), "{body}");
    assert_eq!(app.post(&path, json!({"output": "looked good"})).await, (StatusCode::NO_CONTENT, Value::Null));
    let (status, body) = app.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "check_not_running");
    settle(&app).await;
    assert_eq!(request(&app, id).await["state"], "landed");
}

/// 32 submits and 8 cancels race a running queue whose checks fail on broken content. Every
/// request ends terminal exactly once; each artifact's pin history is exactly the landed
/// requests touching it, in queue order; every landing was checked on exactly what landed.
async fn thirty_two_submits_and_eight_cancels_race_a_running_queue(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        r#"cp "$CUTOVER_CANDIDATE_FILE" "{}/check-$CUTOVER_CHECK.json"; sleep 0.02; if grep -q broken "$CUTOVER_CANDIDATE_FILE"; then echo broken; exit 1; fi"#,
        dir.path().display()
    );
    let app = app(store, &script, true).await;
    world(&app).await;
    make_queue(&app, json!({"type": "command", "name": "check"})).await;
    let keys = ["a", "b", "c", "d"];
    let broken = [5_usize, 17, 26];
    let submits = (0..32_usize).map(|i| {
        let app = &app;
        async move {
            let mut changes = vec![json!({"artifact": keys[i % 4], "content": format!("r{i}-{}", keys[i % 4])})];
            if i % 3 == 0 {
                let other = keys[(i + 1) % 4];
                let content = if broken.contains(&i) { "broken".to_owned() } else { format!("r{i}-{other}") };
                changes.push(json!({"artifact": other, "content": content}));
            } else if broken.contains(&i) {
                changes[0]["content"] = json!("broken");
            }
            submit(app, Value::Array(changes), &format!("change {i}")).await
        }
    });
    let ids: Vec<u64> = futures_util::future::join_all(submits).await;
    let cancels = ids.iter().skip(3).step_by(4).take(8).map(|id| {
        let app = &app;
        async move {
            let (status, body) = app.post(&format!("/api/v1/queues/main/requests/{id}/cancel"), json!(null)).await;
            assert!(matches!(status, StatusCode::ACCEPTED | StatusCode::CONFLICT), "{status} {body}");
            (*id, status)
        }
    });
    let cancelled: Vec<(u64, StatusCode)> = futures_util::future::join_all(cancels).await;
    let all = settle(&app).await;
    assert_eq!(all.len(), 32);

    let mut landed_on: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for listed in &all {
        let id = listed["id"].as_u64().unwrap();
        let shown = request(&app, id).await;
        let terminal: Vec<String> =
            states(&shown).into_iter().filter(|s| ["landed", "error", "cancelled"].contains(&s.as_str())).collect();
        assert_eq!(terminal.len(), 1, "request {id} ends terminal exactly once: {shown:#}");
        assert_eq!(shown["state"].as_str().unwrap(), terminal[0]);
        let changes = shown["changes"].as_array().unwrap();
        let is_broken = changes.iter().any(|c| c["content"] == "broken");
        match terminal[0].as_str() {
            "landed" => {
                assert!(!is_broken, "a broken change landed: {shown:#}");
                for change in changes {
                    landed_on.entry(change["artifact"].as_str().unwrap().to_owned()).or_default().push(id);
                }
                // The landing names the check that passed; it saw exactly this request's content.
                let reason =
                    shown["history"].as_array().unwrap().last().unwrap()["reason"].as_str().unwrap().to_owned();
                let check: u64 =
                    reason.split("after check ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
                let seen: Value = serde_json::from_str(
                    &std::fs::read_to_string(dir.path().join(format!("check-{check}.json"))).unwrap(),
                )
                .unwrap();
                let batch: Vec<u64> = serde_json::from_value(seen["requests"].clone()).unwrap();
                assert!(batch.contains(&id), "check {check} checked request {id}: {seen}");
                for change in changes {
                    let artifact = change["artifact"].as_str().unwrap();
                    let last = batch.iter().rev().find(|r| {
                        all.iter().any(|x| {
                            x["id"].as_u64() == Some(**r)
                                && x["changes"].as_array().unwrap().iter().any(|c| c["artifact"] == artifact)
                        })
                    });
                    if last == Some(&id) {
                        assert_eq!(seen["artifacts"][artifact], change["content"], "check {check} saw what landed");
                    }
                }
            }
            "error" => assert!(is_broken, "a good change was refused: {shown:#}"),
            _ => assert!(cancelled.iter().any(|(c, s)| *c == id && *s == StatusCode::ACCEPTED), "{shown:#}"),
        }
    }
    for (artifact, mut expected) in landed_on {
        expected.sort_unstable();
        let (_, history) = app.get(&format!("/api/v1/artifacts/{artifact}/pins/production/history?limit=200")).await;
        let mut order: Vec<u64> = history["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let reason = p["reason"].as_str().unwrap();
                reason.split("request ").nth(1).unwrap().split(':').next().unwrap().parse().unwrap()
            })
            .collect();
        order.reverse();
        assert_eq!(order, expected, "the pin history of {artifact} is the landed order");
    }
    let (_, queue) = app.get("/api/v1/queues/main").await;
    assert_eq!(queue["active_batches"], 0, "{queue}");
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 32);
}

/// POSTs a receiver's report to a check's callback URL.
async fn report_back(url: &str, token: &str, body: Value) -> StatusCode {
    let response = reqwest::Client::new().post(url).bearer_auth(token).json(&body).send().await.unwrap();
    StatusCode::from_u16(response.status().as_u16()).unwrap()
}

async fn a_webhook_check_is_delivered_signed_and_reported_through_its_callback(store: Store) {
    use crate::rollouts::{next_delivery, receiver, served_app_with_engine};
    let app = served_app_with_engine(store).await;
    world(&app).await;
    let (url, _all, mut deliveries) = receiver().await;
    let secret = "a-webhook-secret";
    make_queue(
        &app,
        json!({"type": "webhook", "url": format!("{url}/checks"), "secret": secret, "timeout_seconds": 30}),
    )
    .await;
    let (_, shown) = app.get("/api/v1/queues/main").await;
    assert_eq!(
        shown["executor"],
        json!({"type": "webhook", "url": format!("{url}/checks"), "timeout_seconds": 30}),
        "the secret is never shown"
    );

    let good = submit(&app, json!([{"artifact": "a", "content": "checked by a service"}]), "good").await;
    let delivery = next_delivery(&mut deliveries).await;
    let payload = delivery.payload();
    assert_eq!(payload["requests"], json!([good]));
    assert_eq!(payload["artifacts"], json!({"a": "checked by a service"}));
    assert_eq!(delivery.header("idempotency-key"), payload["idempotency_key"].as_str().unwrap());
    let timestamp: u64 = delivery.header("x-cutover-timestamp").parse().unwrap();
    let expected = cutover_server::engine::webhook::signature(secret, timestamp, delivery.body.as_bytes());
    assert_eq!(delivery.header("x-cutover-signature"), expected);
    let callback = payload["callback_url"].as_str().unwrap().to_owned();
    let token = payload["callback_token"].as_str().unwrap().to_owned();
    assert_eq!(
        report_back(&callback, "cutover_callback_wrong", json!({"status": "passed"})).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(report_back(&callback, &token, json!({"status": "maybe"})).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        report_back(&callback, &token, json!({"status": "passed", "output": "fine"})).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(report_back(&callback, &token, json!({"status": "passed"})).await, StatusCode::CONFLICT, "once");
    settle(&app).await;
    assert_eq!(request(&app, good).await["state"], "landed");

    let bad = submit(&app, json!([{"artifact": "a", "content": "nope"}]), "bad").await;
    let payload = next_delivery(&mut deliveries).await.payload();
    let status = report_back(
        payload["callback_url"].as_str().unwrap(),
        payload["callback_token"].as_str().unwrap(),
        json!({"status": "failed", "output": "the service said no"}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // One flake retry (max_flake_retries defaults to 1): the same request is delivered again.
    let retry = next_delivery(&mut deliveries).await.payload();
    assert_eq!((retry["requests"].clone(), retry["attempt"].clone()), (json!([bad]), json!(2)));
    let status = report_back(
        retry["callback_url"].as_str().unwrap(),
        retry["callback_token"].as_str().unwrap(),
        json!({"status": "failed", "output": "the service said no"}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    settle(&app).await;
    let refused = request(&app, bad).await;
    assert_eq!((refused["state"].as_str(), refused["error"].as_str()), (Some("error"), Some("the service said no")));
}
