//! Rollouts driven by the engine, in process: command, webhook and manual executors, waves,
//! failure policies, controls, and the pin moving once on completion.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use cutover_server::ServerConfig;
use cutover_server::config::ExecutorConfig;
use cutover_store::Store;
use serde_json::{Value, json};

use crate::{TestApp, error};

cutover_store::contract_tests!(
    a_command_rollout_runs_every_target_in_waves_and_moves_the_pin,
    a_failure_under_halt_fails_the_rollout_and_leaves_the_pin,
    manual_tasks_wait_for_a_person,
    a_stopped_rollout_resumes_and_reruns_the_interrupted_task,
    rollout_requests_are_validated_and_scoped,
    a_webhook_rollout_is_delivered_signed_retried_and_completed_by_callbacks,
    a_webhook_fails_at_once_when_refused_and_at_its_timeout_without_a_result,
    a_new_run_of_a_webhook_task_gets_a_new_callback_token,
    an_editor_of_another_workspace_runs_only_what_the_operator_declared,
    webhooks_to_loopback_are_refused_at_creation_unless_the_operator_allows_them,
    every_operation_and_task_of_a_terminal_rollout_ends_terminal,
    a_killed_run_keeps_its_output_and_every_attempt_keeps_its_log,
);

/// Executors declared by the operator: each `(name, script)` runs `sh -c script`.
fn scripts(declared: &[(&str, &str)]) -> BTreeMap<String, ExecutorConfig> {
    declared
        .iter()
        .map(|(name, script)| {
            let program = vec!["sh".to_owned(), "-c".to_owned(), (*script).to_owned()];
            (
                name.to_string(),
                ExecutorConfig {
                    program,
                    env: vec!["PATH".into()],
                    working_dir: None,
                    timeout_seconds: 600,
                    workspaces: None,
                },
            )
        })
        .collect()
}

/// An app whose engine runs, looking at rollouts every 50 ms, with these executors declared.
async fn app_with_engine(store: Store, declared: &[(&str, &str)]) -> TestApp {
    let config = ServerConfig {
        engine_tick_ms: 50,
        engine_lease_seconds: 5,
        executors: scripts(declared),
        ..ServerConfig::default()
    };
    let app = TestApp::with_config(store, config).await;
    app.state.start_engine().unwrap();
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

/// Resolve is refreshed just after the rollout completes, not in the same request: polls for it.
async fn wait_for_live_version(app: &TestApp, version: i64) {
    let started = Instant::now();
    while live_version(app).await != json!(version) {
        assert!(started.elapsed() < Duration::from_secs(10), "version {version} never went live");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A control, again while it answers "changed while this was decided; try again" (the engine
/// moved the rollout between the control's read and its write).
async fn control(app: &TestApp, id: &str, control: &str) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = app.post(&format!("/api/v1/rollouts/{id}/{control}"), json!({})).await;
        if status == StatusCode::OK {
            return body;
        }
        let racing = status == StatusCode::CONFLICT && body["error"]["code"] == "conflict";
        assert!(racing && started.elapsed() < Duration::from_secs(10), "{control}: {status} {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn a_command_rollout_runs_every_target_in_waves_and_moves_the_pin(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("ran");
    // Each run notes what it was told, and the wave can be seen from overlapping runs.
    let script = format!(
        "printf '%s %s %s %s %s\\n' \"$CUTOVER_TARGET\" \"$CUTOVER_VERSION\" \"$(cat \"$CUTOVER_CONTENT_FILE\")\" \
         \"$CUTOVER_STEP\" \"$CUTOVER_TARGET_CONFIG\" >> {}; echo \"applied $CUTOVER_IDEMPOTENCY_KEY\"",
        record.display()
    );
    let app = app_with_engine(store, &[("apply", &script)]).await;
    world(&app, 5).await;
    let id = start(
        &app,
        json!({"artifact": "greeting", "environment": "production", "version": 2, "max_parallel": 2,
               "executor": {"type": "command", "name": "apply", "timeout_seconds": 30}}),
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
    wait_for_live_version(&app, 2).await;
    let (_, history) = app.get("/api/v1/artifacts/greeting/pins/production/history").await;
    assert_eq!(history["items"].as_array().unwrap().len(), 2, "moved once: {history}");
    let (_, audit) = app.get("/api/v1/audit?object_type=rollout").await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"rollout.create") && actions.contains(&"rollout.completed"), "{actions:?}");
}

async fn a_failure_under_halt_fails_the_rollout_and_leaves_the_pin(store: Store) {
    let app = app_with_engine(store, &[("apply", "echo trying >&2; test \"$CUTOVER_TARGET\" != t-1")]).await;
    world(&app, 3).await;
    let id = start(
        &app,
        json!({"artifact": "greeting", "environment": "production", "version": 2,
               "executor": {"type": "command", "name": "apply"}}),
    )
    .await;
    let failed = wait_for(&app, &id, "failure", state_is("failed")).await;
    let states: Vec<&str> =
        failed["operations"].as_array().unwrap().iter().map(|o| o["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["completed", "failed", "cancelled"], "nothing starts after a failure under halt");
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
    let app = app_with_engine(store, &[]).await;
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
    wait_for_live_version(&app, 2).await;
}

async fn a_stopped_rollout_resumes_and_reruns_the_interrupted_task(store: Store) {
    // The first attempt hangs; a later one succeeds at once.
    let script = "if [ \"$CUTOVER_ATTEMPT\" = 1 ]; then sleep 60; fi; echo attempt $CUTOVER_ATTEMPT";
    let app = app_with_engine(store, &[("apply", script)]).await;
    world(&app, 1).await;
    let id = start(
        &app,
        json!({"artifact": "greeting", "environment": "production", "version": 2,
               "executor": {"type": "command", "name": "apply"}}),
    )
    .await;
    wait_for(&app, &id, "the first run", |r| r["operations"][0]["tasks"][0]["state"] == "running").await;
    let stopping = control(&app, &id, "stop").await;
    assert_eq!(stopping["state"].as_str(), Some("stopping"), "{stopping}");
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
        (
            with(json!({"executor": {"type": "command", "program": ["/bin/cat"]}})),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (with(json!({"executor": {"type": "command", "name": "deploy"}})), StatusCode::BAD_REQUEST, "invalid_field"),
        (with(json!({"executor": {"type": "webhook", "url": "https://x"}})), StatusCode::BAD_REQUEST, "invalid_field"),
        (
            with(json!({"executor": {"type": "webhook", "url": "https://x", "secret": "short"}})),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
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

const SECRET: &str = "webhook-secret-1";

/// What a webhook receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) path: String,
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) body: String,
}

impl Delivery {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    pub(crate) fn payload(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Clone)]
struct Receiver {
    all: Arc<Mutex<Vec<Delivery>>>,
    accepted: tokio::sync::mpsc::UnboundedSender<Delivery>,
}

/// A webhook receiver on 127.0.0.1 recording every delivery: `/flaky` answers 503 to the first
/// delivery of each task and 200 after, `/refuse` 400, anything else 200. Accepted deliveries
/// are also sent on the channel. Returns its base URL.
pub(crate) async fn receiver() -> (String, Arc<Mutex<Vec<Delivery>>>, tokio::sync::mpsc::UnboundedReceiver<Delivery>) {
    async fn receive(
        axum::extract::State(receiver): axum::extract::State<Receiver>,
        uri: axum::http::Uri,
        headers: axum::http::HeaderMap,
        body: String,
    ) -> StatusCode {
        let delivery = Delivery { path: uri.path().to_owned(), headers, body };
        let mut all = receiver.all.lock().unwrap();
        let key = delivery.header("idempotency-key").to_owned();
        let seen = all.iter().filter(|d| d.header("idempotency-key") == key).count();
        all.push(delivery.clone());
        let status = match uri.path() {
            "/flaky" if seen == 0 => StatusCode::SERVICE_UNAVAILABLE,
            "/refuse" => StatusCode::BAD_REQUEST,
            _ => StatusCode::OK,
        };
        if status == StatusCode::OK {
            receiver.accepted.send(delivery).unwrap();
        }
        status
    }
    let (accepted, deliveries) = tokio::sync::mpsc::unbounded_channel();
    let all = Arc::<Mutex<Vec<Delivery>>>::default();
    let router = axum::Router::new().fallback(receive).with_state(Receiver { all: all.clone(), accepted });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, router).into_future());
    (url, all, deliveries)
}

/// An app with its engine, served on a socket so that receivers can call back on its public URL.
pub(crate) async fn served_app_with_engine(store: Store) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_url = format!("http://{}/", listener.local_addr().unwrap());
    let config = ServerConfig {
        engine_tick_ms: 50,
        engine_lease_seconds: 5,
        public_url: Some(public_url),
        // The receivers of these tests listen on loopback, which webhooks may not reach unless
        // the operator allows it.
        webhook_allow: vec!["127.0.0.1".into()],
        ..ServerConfig::default()
    };
    let app = TestApp::with_config(store, config).await;
    tokio::spawn(axum::serve(listener, app.router.clone()).into_future());
    app.state.start_engine().unwrap();
    app
}

pub(crate) async fn next_delivery(deliveries: &mut tokio::sync::mpsc::UnboundedReceiver<Delivery>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(20), deliveries.recv()).await.expect("a delivery").unwrap()
}

/// POSTs to a callback URL, as a receiver does.
async fn call_back(url: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap())
}

fn webhook_rollout(url: String, timeout_seconds: u32) -> Value {
    json!({"artifact": "greeting", "environment": "production", "version": 2,
           "executor": {"type": "webhook", "url": url, "secret": SECRET, "timeout_seconds": timeout_seconds}})
}

async fn a_webhook_rollout_is_delivered_signed_retried_and_completed_by_callbacks(store: Store) {
    use hmac::Mac;
    let app = served_app_with_engine(store).await;
    world(&app, 2).await;
    let (url, all, mut deliveries) = receiver().await;
    let id = start(&app, webhook_rollout(format!("{url}/flaky"), 30)).await;
    let (_, created) = app.get(&format!("/api/v1/rollouts/{id}")).await;
    for i in 0..2 {
        let delivery = next_delivery(&mut deliveries).await;
        let payload = delivery.payload();
        let task = &created["operations"][i]["tasks"][0];
        let task_id = task["id"].as_str().unwrap();
        let callback_url = format!("{}/api/v1/rollouts/{id}/tasks/{task_id}/callback", app.state.config.public_url());
        assert_eq!(
            payload,
            json!({"rollout_id": id, "task_id": task_id, "artifact": "greeting", "environment": "production",
                   "target": format!("t-{i}"), "target_config": {"i": i}, "version": 2, "step": "apply",
                   "attempt": 1, "idempotency_key": task["idempotency_key"], "value_type": "string",
                   "content": "hello 2", "callback_url": callback_url,
                   "callback_token": payload["callback_token"]})
        );
        assert_eq!(delivery.header("idempotency-key"), task["idempotency_key"].as_str().unwrap());
        assert_eq!(delivery.header("content-type"), "application/json");
        let timestamp = delivery.header("x-cutover-timestamp");
        let sent: u64 = timestamp.parse().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(sent.abs_diff(now) < 60, "{sent} vs {now}");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.{}", delivery.body).as_bytes());
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(delivery.header("x-cutover-signature"), expected, "signed with the secret");

        let token = payload["callback_token"].as_str().unwrap();
        let (status, _) =
            call_back(&callback_url, Some("cutover_callback_wrong"), json!({"status": "completed"})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = call_back(&callback_url, None, json!({"status": "completed"})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = call_back(&callback_url, Some(app.owner.as_str()), json!({"status": "completed"})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "an API token is not a callback token");
        let unknown = format!("{}/api/v1/rollouts/{id}/tasks/nope/callback", app.state.config.public_url());
        assert_eq!(call_back(&unknown, Some(token), json!({"status": "running"})).await.0, StatusCode::NOT_FOUND);

        let (status, running) = call_back(
            &callback_url,
            Some(token),
            json!({"status": "running", "message": "halfway", "log": "bin\u{0}ary"}),
        )
        .await;
        assert_eq!((status, running["state"].as_str()), (StatusCode::OK, Some("running")), "{running}");
        let (status, done) =
            call_back(&callback_url, Some(token), json!({"status": "completed", "log": "applied\n"})).await;
        assert_eq!((status, done["state"].as_str()), (StatusCode::OK, Some("completed")), "{done}");
        let (status, again) = call_back(&callback_url, Some(token), json!({"status": "failed"})).await;
        assert_eq!((status, again["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{again}");
        let (_, log) = app.get(&format!("/api/v1/rollouts/{id}/tasks/{task_id}/log")).await;
        let log = log.as_str().unwrap();
        assert!(log.starts_with("delivery 1: 503 Service Unavailable; retrying in 500 ms\n"), "{log}");
        // A NUL byte (which PostgreSQL's text refuses) is kept as U+FFFD, not a 500.
        assert!(log.contains("halfway\nbin\u{fffd}ary\n") && log.ends_with("applied\n"), "{log}");
    }
    let done = wait_for(&app, &id, "completion", state_is("completed")).await;
    wait_for_live_version(&app, 2).await;
    let per_task: Vec<usize> = (0..2)
        .map(|i| {
            let key = done["operations"][i]["tasks"][0]["idempotency_key"].as_str().unwrap().to_owned();
            all.lock().unwrap().iter().filter(|d| d.header("idempotency-key") == key && d.path == "/flaky").count()
        })
        .collect();
    assert_eq!(per_task, [2, 2], "a 503 is retried, once accepted it is not sent again");
    assert_eq!(done["operations"][0]["tasks"][0]["attempts"], 1);
    let (_, audit) = app.get("/api/v1/audit").await;
    assert!(!done.to_string().contains(SECRET) && !audit.to_string().contains(SECRET), "the secret is never shown");
}

async fn a_webhook_fails_at_once_when_refused_and_at_its_timeout_without_a_result(store: Store) {
    let app = served_app_with_engine(store).await;
    world(&app, 1).await;
    let (url, all, mut deliveries) = receiver().await;
    let started = Instant::now();
    let id = start(&app, webhook_rollout(format!("{url}/refuse"), 60)).await;
    let failed = wait_for(&app, &id, "the refusal", state_is("failed")).await;
    assert!(started.elapsed() < Duration::from_secs(10), "not retried until the timeout");
    let task = &failed["operations"][0]["tasks"][0];
    assert_eq!(task["error"], "the receiver refused the delivery: 400 Bad Request", "{failed}");
    assert_eq!(all.lock().unwrap().len(), 1, "a 400 is not retried");

    let id = start(&app, webhook_rollout(format!("{url}/silent"), 1)).await;
    let delivery = next_delivery(&mut deliveries).await;
    let failed = wait_for(&app, &id, "the timeout", state_is("failed")).await;
    let task = &failed["operations"][0]["tasks"][0];
    assert_eq!(task["error"], "no result within 1 s", "{failed}");
    let payload = delivery.payload();
    let late = call_back(
        payload["callback_url"].as_str().unwrap(),
        payload["callback_token"].as_str(),
        json!({"status": "completed"}),
    )
    .await;
    assert_eq!(late.0, StatusCode::CONFLICT, "too late: {late:?}");
    assert_eq!(live_version(&app).await, json!(1));
}

async fn a_new_run_of_a_webhook_task_gets_a_new_callback_token(store: Store) {
    let app = served_app_with_engine(store).await;
    world(&app, 1).await;
    let (url, _, mut deliveries) = receiver().await;
    let id = start(&app, webhook_rollout(format!("{url}/ok"), 60)).await;
    let first = next_delivery(&mut deliveries).await.payload();
    control(&app, &id, "stop").await;
    wait_for(&app, &id, "the stop", state_is("stopped")).await;
    control(&app, &id, "resume").await;
    let second = next_delivery(&mut deliveries).await.payload();
    assert_eq!((first["attempt"].as_u64(), second["attempt"].as_u64()), (Some(1), Some(2)));
    assert_eq!(first["idempotency_key"], second["idempotency_key"]);
    assert_ne!(first["callback_token"], second["callback_token"]);
    let callback_url = second["callback_url"].as_str().unwrap();
    let stale = call_back(callback_url, first["callback_token"].as_str(), json!({"status": "completed"})).await;
    assert_eq!(stale.0, StatusCode::UNAUTHORIZED, "the first run's token stopped working: {stale:?}");
    let (status, _) = call_back(callback_url, second["callback_token"].as_str(), json!({"status": "completed"})).await;
    assert_eq!(status, StatusCode::OK);
    wait_for(&app, &id, "completion", state_is("completed")).await;
    wait_for_live_version(&app, 2).await;
}

async fn an_editor_of_another_workspace_runs_only_what_the_operator_declared(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("environment");
    let mut declared = scripts(&[("print-env", &format!("env | sort > {}", seen.display()))]);
    let mut admin_only = scripts(&[("admin-only", "id")]).remove("admin-only").unwrap();
    admin_only.workspaces = Some(vec!["default".into()]);
    declared.insert("admin-only".into(), admin_only);
    let config =
        ServerConfig { engine_tick_ms: 50, engine_lease_seconds: 5, executors: declared, ..ServerConfig::default() };
    let admin = TestApp::with_config(store, config).await;
    admin.state.start_engine().unwrap();
    let (_, made) = admin.post("/api/v1/workspaces", json!({"name": "tenant"})).await;
    let tenant_owner = made["token"]["secret"].as_str().unwrap().to_owned();
    // The tenant's own world, driven by its editor.
    let tenant = Some(tenant_owner.as_str());
    let post = Method::POST;
    admin
        .call(post.clone(), "/api/v1/artifacts", tenant, Some(json!({"key": "greeting", "value_type": "string"})))
        .await;
    admin.call(post.clone(), "/api/v1/artifacts/greeting/versions", tenant, Some(json!({"content": "hi"}))).await;
    let environment = json!({"name": "production", "targets": [{"name": "t-0"}]});
    let (status, body) = admin.call(post.clone(), "/api/v1/environments", tenant, Some(environment)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, token) = admin.call(post, "/api/v1/tokens", tenant, Some(json!({"name": "ed", "role": "editor"}))).await;
    let editor = token["secret"].as_str().unwrap().to_owned();
    let attempt = |executor: Value| {
        let body = json!({"artifact": "greeting", "environment": "production", "version": 1, "executor": executor});
        admin.call(Method::POST, "/api/v1/rollouts", Some(&editor), Some(body))
    };
    let token_file = "/tmp/cutover-owner-token";
    let (status, refused) = attempt(json!({"type": "command", "program": ["/bin/cat", token_file]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_field");
    assert_eq!(refused["error"]["details"]["field"], "executor");
    assert!(refused["error"]["message"].as_str().unwrap().contains("unknown field `program`"), "{refused}");
    for name in ["admin-only", "sh", "../../bin/sh"] {
        let (status, refused) = attempt(json!({"type": "command", "name": name})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {refused}");
        assert_eq!(refused["error"]["details"]["field"], "executor.name", "{refused}");
    }
    let (_, refused) = attempt(json!({"type": "command", "name": "admin-only"})).await;
    assert_eq!(
        refused,
        json!({"error": {"code": "invalid_field",
            "message": "executor.name: no executor named \"admin-only\" is declared for this workspace; it may use: print-env",
            "details": {"field": "executor.name"}}})
    );
    let (_, listed) = admin.call(Method::GET, "/api/v1/rollouts", Some(&editor), None).await;
    assert_eq!(listed["items"], json!([]), "nothing written by refused requests");

    // What it may run, runs with the task's variables and nothing else of the server's.
    let (status, made) = attempt(json!({"type": "command", "name": "print-env"})).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap();
    let started = Instant::now();
    let done = loop {
        let (_, rollout) = admin.call(Method::GET, &format!("/api/v1/rollouts/{id}"), Some(&editor), None).await;
        if rollout["state"] == "completed" {
            break rollout;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{rollout}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["operations"][0]["tasks"][0]["exit_code"], 0);
    let environment = std::fs::read_to_string(&seen).unwrap();
    let names: Vec<&str> = environment.lines().filter_map(|line| line.split_once('=').map(|(name, _)| name)).collect();
    let foreign: Vec<&&str> = names
        .iter()
        .filter(|name| !name.starts_with("CUTOVER_") && !["PATH", "PWD", "SHLVL", "_"].contains(name))
        .collect();
    assert!(foreign.is_empty(), "only PATH and the task's variables: {foreign:?}");
    assert!(names.contains(&"CUTOVER_CONTENT_FILE") && names.contains(&"CUTOVER_TARGET"), "{names:?}");
}

async fn webhooks_to_loopback_are_refused_at_creation_unless_the_operator_allows_them(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 1).await;
    for url in ["http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/hook", "http://127.1:9/"] {
        let (status, refused) = app.post("/api/v1/rollouts", webhook_rollout(url.into(), 10)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {refused}");
        assert_eq!(refused["error"]["details"]["field"], "executor.url", "{url}: {refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("a loopback address") && message.contains("webhook_allow"), "{url}: {message}");
    }
    let (_, listed) = app.get("/api/v1/rollouts").await;
    assert_eq!(listed["items"], json!([]), "nothing written by refused requests");
    let (status, refused) = app
        .post(
            "/api/v1/rollouts",
            json!({"artifact": "greeting", "environment": "production", "version": 2,
                   "executor": {"type": "webhook", "url": "http://127.0.0.1:9/", "secret": "line\nbreak-secret"}}),
        )
        .await;
    assert_eq!(
        (status, refused),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": "invalid_field", "message": "executor.secret: must not contain control characters",
                    "details": {"field": "executor.secret"}}})
        )
    );
}

#[tokio::test]
async fn a_webhook_secret_is_not_in_the_database_file_in_plain_text() {
    let db = cutover_store::testing::TestDb::sqlite().await;
    let config = ServerConfig { webhook_allow: vec!["127.0.0.1".into()], ..ServerConfig::default() };
    let app = TestApp::with_config(db.store.clone(), config).await;
    world(&app, 1).await;
    start(&app, webhook_rollout("http://127.0.0.1:9/hook".into(), 10)).await;
    let url = db.url();
    let path = url.strip_prefix("sqlite://").unwrap();
    let mut stored = Vec::new();
    for file in [path.to_owned(), format!("{path}-wal")] {
        stored.extend(std::fs::read(&file).unwrap_or_default());
    }
    let contains = |needle: &[u8]| stored.windows(needle.len()).any(|window| window == needle);
    assert!(contains(b"sealed:v1:"), "the sealed secret is stored");
    assert!(!contains(SECRET.as_bytes()), "the secret itself is not");
}

/// Every operation and task state of the rollout, by target: `(operation, [task…])`.
fn row_states(rollout: &Value) -> Vec<(String, Vec<String>)> {
    let name = |v: &Value| v["state"].as_str().unwrap().to_owned();
    rollout["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (name(o), o["tasks"].as_array().unwrap().iter().map(name).collect()))
        .collect()
}

fn every_row_terminal(rollout: &Value) -> bool {
    let terminal = |s: &str| matches!(s, "completed" | "failed" | "cancelled");
    row_states(rollout).iter().all(|(o, tasks)| terminal(o) && tasks.iter().all(|t| terminal(t)))
}

fn owned(rows: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    rows.iter().map(|(o, t)| (o.to_string(), t.iter().map(|s| s.to_string()).collect())).collect()
}

async fn every_operation_and_task_of_a_terminal_rollout_ends_terminal(store: Store) {
    // t-0 hangs, t-1 fails at once, the others succeed.
    let script = "case \"$CUTOVER_TARGET\" in t-0) sleep 60;; t-1) exit 1;; esac";
    let app = app_with_engine(store, &[("apply", script), ("ok", "true")]).await;
    world(&app, 4).await;
    let body = |executor: &str, max_parallel: u32| {
        json!({"artifact": "greeting", "environment": "production", "version": 2, "max_parallel": max_parallel,
               "steps": ["drain", "apply"], "executor": {"type": "command", "name": executor}})
    };

    // Failed under halt: t-0 was running when t-1 failed; t-2 and t-3 never started.
    let id = start(&app, body("apply", 2)).await;
    let failed = wait_for(&app, &id, "every row to end", every_row_terminal).await;
    assert_eq!(failed["state"], "failed");
    let expected: &[(&str, &[&str])] = &[
        ("cancelled", &["cancelled", "cancelled"]),
        ("failed", &["failed", "cancelled"]),
        ("cancelled", &["cancelled", "cancelled"]),
        ("cancelled", &["cancelled", "cancelled"]),
    ];
    assert_eq!(row_states(&failed), owned(expected), "{failed:#}");

    // Cancelled by a person while t-0 runs.
    let id = start(&app, body("apply", 1)).await;
    wait_for(&app, &id, "t-0 to run", |r| r["operations"][0]["tasks"][0]["state"] == "running").await;
    control(&app, &id, "cancel").await;
    let cancelled = wait_for(&app, &id, "every row to end", every_row_terminal).await;
    assert_eq!(cancelled["state"], "cancelled");
    let expected = [("cancelled", &["cancelled", "cancelled"][..]); 4];
    assert_eq!(row_states(&cancelled), owned(&expected), "{cancelled:#}");

    // Completed.
    let id = start(&app, body("ok", 4)).await;
    let completed = wait_for(&app, &id, "completion", state_is("completed")).await;
    let expected = [("completed", &["completed", "completed"][..]); 4];
    assert_eq!(row_states(&completed), owned(&expected), "{completed:#}");
}

async fn a_killed_run_keeps_its_output_and_every_attempt_keeps_its_log(store: Store) {
    // The first attempt prints, then hangs until it is stopped; the second fails; the third passes.
    let script = "echo \"attempt $CUTOVER_ATTEMPT\"; case $CUTOVER_ATTEMPT in 1) sleep 60;; 2) exit 3;; esac";
    let app = app_with_engine(store, &[("apply", script)]).await;
    world(&app, 1).await;
    let id = start(
        &app,
        json!({"artifact": "greeting", "environment": "production", "version": 2, "on_failure": "pause",
               "executor": {"type": "command", "name": "apply"}}),
    )
    .await;
    let running = wait_for(&app, &id, "the first run", |r| r["operations"][0]["tasks"][0]["state"] == "running").await;
    let task = running["operations"][0]["tasks"][0]["id"].as_str().unwrap().to_owned();
    let log_path = format!("/api/v1/rollouts/{id}/tasks/{task}/log");
    // Give the program time to print before it is killed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    control(&app, &id, "stop").await;
    wait_for(&app, &id, "the stop", state_is("stopped")).await;
    assert_eq!(app.get(&log_path).await, (StatusCode::OK, json!("attempt 1\n")), "a killed run keeps its output");
    control(&app, &id, "resume").await;
    wait_for(&app, &id, "the pause after the second attempt", state_is("paused")).await;
    control(&app, &id, "retry").await;
    let done = wait_for(&app, &id, "completion", state_is("completed")).await;
    assert_eq!(done["operations"][0]["tasks"][0]["attempts"], 3, "{done}");
    assert_eq!(app.get(&log_path).await, (StatusCode::OK, json!("attempt 3\n")), "the latest by default");
    for attempt in 1..=3 {
        let (status, log) = app.get(&format!("{log_path}?attempt={attempt}")).await;
        assert_eq!((status, log), (StatusCode::OK, json!(format!("attempt {attempt}\n"))));
    }
    assert_eq!(
        app.get(&format!("{log_path}?attempt=4")).await,
        (
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "not_found",
                   "message": format!("attempt 4 of task {task:?} (it has run 3 times) not found")}})
        )
    );
    let (status, body) = app.get(&format!("{log_path}?attempt=0")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_field")), "{body}");
    let (status, body) = app.get(&format!("{log_path}?attempt=two")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")), "{body}");
}

/// Two replicas on one PostgreSQL database: A serves the API and runs no engine; B runs the
/// engine with a tick of an hour. A rollout created through A is driven to completion by B, so B
/// woke on A's notice (`NOTIFY` at commit), not on its tick: B's own writes and runs wake it after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_engine_on_another_replica_wakes_on_a_notice_not_its_tick() {
    let Some(db) = cutover_store::testing::TestDb::postgres().await else { return };
    let declared = ServerConfig { executors: scripts(&[("ok", "true")]), ..ServerConfig::default() };
    let a = TestApp::with_config(db.store.clone(), declared).await;
    world(&a, 2).await;

    let other = Store::connect(&db.url(), &cutover_store::ConnectOptions::default()).await.unwrap();
    let hour = ServerConfig {
        engine_tick_ms: 3_600_000,
        engine_lease_seconds: 5,
        executors: scripts(&[("ok", "true")]),
        ..ServerConfig::default()
    };
    let b = cutover_server::AppState::new(other.clone(), hour);
    let engine = b.start_engine().unwrap();
    // B's first pass runs at once, on nothing; after it, only a wake can run another.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let id = start(
        &a,
        json!({"artifact": "greeting", "environment": "production", "version": 2, "max_parallel": 1,
               "executor": {"type": "command", "name": "ok"}}),
    )
    .await;
    let rollout = wait_for(&a, &id, "replica B to complete the rollout", state_is("completed")).await;
    assert_eq!(row_states(&rollout), owned(&[("completed", &["completed"]), ("completed", &["completed"])]));
    assert!(rollout["pinned_revision"].is_i64(), "the pin moved on completion: {rollout:#}");

    b.shutdown.send_replace(true);
    engine.await.unwrap();
    other.close().await;
}
