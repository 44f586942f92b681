//! Rollout engine benchmark: a rollout across N targets (1,000 by default) with a no-op command
//! executor (`true`) and `max_parallel` 50, timed from creation to completion, against the time
//! to run the same processes in the same waves without the engine, measured in the same run;
//! and the time to derive the state of a rollout with 10,000 operations.
//!
//! ```text
//! cargo run --release -p cutover-server --example rollout_bench -- [DATABASE_URL] [TARGETS] [MAX_PARALLEL]
//! ```
//!
//! Without a url the bench uses a temporary SQLite database. A `postgres://` url names a server;
//! the bench makes (and drops) its own database `cutover_rollout_bench` there.
//!
//! With `ROLLOUT_BENCH_COUNT=1` it also counts the SQL statements sqlx runs from the rollout's
//! creation to its completion (by their first word) and the engine's passes (each reads the
//! live rollouts once). Counting logs every statement, which slows the run: time without it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, header};
use cutover_domain::WorkspaceName;
use cutover_domain::rollouts::{OnFailure, OperationRow, OperationState, RolloutRead, RolloutState, derive_state};
use cutover_server::config::ExecutorConfig;
use cutover_server::{AppState, ServerConfig, app};
use cutover_store::{ConnectOptions, Store};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const DATABASE: &str = "cutover_rollout_bench";

/// How often the bench reads the rollout to see it complete. Each read derives the state of
/// every operation and shares the 2 cores with the engine it measures: reading every 20 ms took
/// a fifth of the machine. The finish is seen at most this late (0.05 ms a task over 1,000).
const POLL: Duration = Duration::from_millis(50);

/// Counts the statements sqlx runs (its `sqlx::query` events) while `on`, by first word, and the
/// engine's passes (each starts with the read of the live rollouts).
#[derive(Default)]
struct StatementCounter {
    on: AtomicBool,
    counts: Mutex<BTreeMap<String, u64>>,
}

/// The statement of one `sqlx::query` event.
#[derive(Default)]
struct Statement(String);

impl tracing::field::Visit for Statement {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "db.statement" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "db.statement" && self.0.is_empty() {
            self.0 = format!("{value:?}");
        }
    }
}

/// The counter as a tracing layer.
struct Counting(Arc<StatementCounter>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counting {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" || !self.0.on.load(Ordering::Relaxed) {
            return;
        }
        let mut statement = Statement::default();
        event.record(&mut statement);
        let sql = statement.0.trim_start_matches(|c: char| c == '"' || c.is_whitespace());
        let word = sql.split_whitespace().next().unwrap_or("?").to_uppercase();
        let mut counts = self.0.counts.lock().expect("not poisoned");
        *counts.entry(word).or_default() += 1;
        if sql.contains("FROM rollouts WHERE state NOT IN") {
            *counts.entry("(engine passes)".into()).or_default() += 1;
        }
    }
}

async fn call(router: &axum::Router, token: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("a valid request");
    let response = router.clone().oneshot(request).await.expect("the router answers");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("a body").to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {value}");
    value
}

/// The same processes in the same waves (`parallel` at once, a wave starting when the previous
/// one ended), without the engine: the floor the engine adds to.
async fn baseline(targets: usize, parallel: usize) -> Duration {
    let started = Instant::now();
    let mut left = targets;
    while left > 0 {
        let wave = left.min(parallel);
        let runs: Vec<_> = (0..wave)
            .map(|_| tokio::spawn(async { tokio::process::Command::new("true").status().await.expect("run true") }))
            .collect();
        for run in runs {
            assert!(run.await.expect("joined").success());
        }
        left -= wave;
    }
    started.elapsed()
}

fn derivation_median(operations: usize) -> Duration {
    let rows: Vec<OperationRow> = (0..operations)
        .map(|i| OperationRow {
            position: i as u32,
            wave: (i / 50) as u32,
            state: if i % 3 == 0 { OperationState::Running } else { OperationState::Completed },
            on_failure: OnFailure::Continue,
            pause_released: false,
        })
        .collect();
    let read = RolloutRead {
        stored: RolloutState::Running,
        expected_operations: operations,
        operations: &rows,
        failure_budget: None,
    };
    let mut times: Vec<Duration> = (0..201)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(derive_state(std::hint::black_box(&read)));
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().filter(|u| !u.is_empty());
    let targets: usize = args.next().map_or(Ok(1_000), |n| n.parse())?;
    let parallel: u32 = args.next().map_or(Ok(50), |n| n.parse())?;
    let counter = std::env::var("ROLLOUT_BENCH_COUNT").is_ok_and(|v| v == "1").then(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let counter = Arc::new(StatementCounter::default());
        let filter = tracing_subscriber::filter::Targets::new().with_target("sqlx::query", tracing::Level::TRACE);
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::Layer::with_filter(Counting(counter.clone()), filter));
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
        counter
    });

    let dir = tempfile::tempdir()?;
    let database = match &url {
        Some(url) if url.starts_with("postgres") => {
            let admin = sqlx::PgPool::connect(url).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {DATABASE}")).execute(&admin).await?;
            sqlx::query(&format!("CREATE DATABASE {DATABASE}")).execute(&admin).await?;
            let (base, _) = url.rsplit_once('/').ok_or_else(|| anyhow::anyhow!("a url ends with /DATABASE"))?;
            format!("{base}/{DATABASE}")
        }
        Some(url) => url.clone(),
        None => format!("sqlite://{}", dir.path().join("bench.db").display()),
    };
    let store = Store::connect(&database, &ConnectOptions::default()).await?;
    store.migrate().await?;
    let made = store.bootstrap(&WorkspaceName::parse("default")?).await?.expect("a fresh database");
    let token = made.secret.expose().to_owned();
    // The engine as `cutover serve` runs it, with its default tick: every wake-up comes from work
    // finishing, not from the timer.
    let noop = ExecutorConfig {
        program: vec!["true".into()],
        env: vec!["PATH".into()],
        working_dir: None,
        timeout_seconds: 600,
        workspaces: None,
    };
    let config = ServerConfig { executors: [("noop".to_owned(), noop)].into(), ..ServerConfig::default() };
    let state = AppState::new(store.clone(), config);
    let router = app(state.clone());
    let engine = state.start_engine()?;

    let targets_json: Vec<Value> = (0..targets).map(|i| json!({"name": format!("t-{i:04}")})).collect();
    call(&router, &token, "POST", "/api/v1/environments", Some(json!({"name": "fleet", "targets": targets_json})))
        .await;
    call(&router, &token, "POST", "/api/v1/artifacts", Some(json!({"key": "config", "value_type": "json"}))).await;
    for n in 1..=2 {
        let body = json!({"content": {"n": n}});
        call(&router, &token, "POST", "/api/v1/artifacts/config/versions", Some(body)).await;
    }

    let floor = baseline(targets, parallel as usize).await;
    if let Some(counter) = &counter {
        counter.on.store(true, Ordering::Relaxed);
    }
    let started = Instant::now();
    let made = call(
        &router,
        &token,
        "POST",
        "/api/v1/rollouts",
        Some(json!({"artifact": "config", "environment": "fleet", "version": 2, "max_parallel": parallel,
                    "executor": {"type": "command", "name": "noop"}})),
    )
    .await;
    let created = started.elapsed();
    let id = made["id"].as_str().expect("an id").to_owned();
    let mut last = String::new();
    let done = loop {
        let rollout = call(&router, &token, "GET", &format!("/api/v1/rollouts/{id}"), None).await;
        let progress = rollout["progress"].to_string();
        if progress != last {
            eprintln!("{:>6.2} s {progress}", started.elapsed().as_secs_f64());
            last = progress;
        }
        if rollout["state"] == "completed" {
            break started.elapsed();
        }
        assert!(rollout["state"] != "failed", "{rollout}");
        tokio::time::sleep(POLL).await;
    };
    if let Some(counter) = &counter {
        counter.on.store(false, Ordering::Relaxed);
    }
    state.shutdown.send_replace(true);
    let _ = engine.await;

    println!("engine: {:?}; targets: {targets}; max_parallel: {parallel}", store.kind());
    println!("create (rows for {targets} operations and tasks): {:.1} ms", created.as_secs_f64() * 1e3);
    println!("rollout, create to completed: {:.2} s", done.as_secs_f64());
    println!("same processes without the engine: {:.2} s", floor.as_secs_f64());
    println!(
        "engine overhead: {:.2} ms per task, {:.1} ms per wave (({:.2} s - {:.2} s) / {targets} tasks or / {} waves)",
        (done.as_secs_f64() - floor.as_secs_f64()) / targets as f64 * 1e3,
        (done.as_secs_f64() - floor.as_secs_f64()) / targets.div_ceil(parallel as usize) as f64 * 1e3,
        done.as_secs_f64(),
        floor.as_secs_f64(),
        targets.div_ceil(parallel as usize)
    );
    if let Some(counter) = &counter {
        let counts = counter.counts.lock().expect("not poisoned");
        // The bench's own polling reads (about one GET a 20 ms) are in these counts too.
        let data: u64 = counts
            .iter()
            .filter(|(word, _)| matches!(word.as_str(), "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "WITH"))
            .map(|(_, n)| n)
            .sum();
        println!(
            "statements, create to completed: {counts:?}; data statements per task: {:.2}",
            data as f64 / targets as f64
        );
    }
    for n in [1_000, 10_000] {
        println!("derive state of {n} operations: {:.1} µs (median of 201)", derivation_median(n).as_secs_f64() * 1e6);
    }
    store.close().await;
    if let Some(url) = url.filter(|u| u.starts_with("postgres")) {
        let admin = sqlx::PgPool::connect(&url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")).execute(&admin).await?;
    }
    Ok(())
}
