//! Experiment results at scale: seeds one running experiment with N exposures (10 million by
//! default) through the same store path resolve's flusher uses, then times
//! `GET /api/v1/experiments/{id}/results` through the whole router.
//!
//! ```text
//! cargo run --release -p cutover-server --example results_bench -- \
//!     postgres://postgres@127.0.0.1:5432/postgres [EXPOSURES] [REQUESTS]
//! ```
//!
//! The PostgreSQL url names a server; the bench makes (and afterwards drops) its own database
//! `cutover_results_bench` there. A `sqlite://PATH` url works too.

mod common;

use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use cutover_domain::{MetricName, Timestamp, WorkspaceName};
use cutover_server::{AppState, ServerConfig, app};
use cutover_store::{ConnectOptions, Exposure, MetricEvent, Store};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const BATCH: usize = 20_000;
use common::{fresh_database, percentile};

const DATABASE: &str = "cutover_results_bench";

struct Api {
    router: axum::Router,
    token: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .expect("a valid request");
        let response = self.router.clone().oneshot(request).await.expect("the router answers");
        let status = response.status();
        let bytes = response.into_body().collect().await.expect("a body").to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, answer) = self.call(method, path, Some(body)).await;
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        answer
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let exposures: u64 = args.next().map_or(Ok(10_000_000), |n| n.parse())?;
    let requests: usize = args.next().map_or(Ok(50), |n| n.parse())?;

    let database = fresh_database(&url, DATABASE).await?;
    let store = Store::connect(&database, &ConnectOptions::default()).await?;
    store.migrate().await?;
    let made = store.bootstrap(&WorkspaceName::parse("default")?).await?.expect("a fresh database");
    let api = Api {
        router: app(AppState::new(store.clone(), ServerConfig::default())),
        token: made.secret.expose().to_owned(),
    };
    api.ok("POST", "/api/v1/environments", json!({"name": "production"})).await;
    api.ok("POST", "/api/v1/artifacts", json!({"key": "checkout", "value_type": "string"})).await;
    for n in 1..=2 {
        let body = json!({"content": format!("copy {n}")});
        api.ok("POST", "/api/v1/artifacts/checkout/versions", body).await;
    }
    api.ok("PUT", "/api/v1/artifacts/checkout/pins/production", json!({"version": 1})).await;
    let experiment = api
        .ok(
            "POST",
            "/api/v1/environments/production/experiments",
            json!({"artifact": "checkout", "name": "bench", "treatments": [2], "primary_metric": "purchase",
                   "guardrail_metrics": ["revenue"]}),
        )
        .await;
    let id = experiment["id"].as_str().expect("an id").to_owned();
    api.ok("POST", &format!("/api/v1/experiments/{id}/start"), json!({})).await;

    eprintln!("seeding {exposures} exposures in batches of {BATCH} (the flusher's store path)...");
    let seeding = Instant::now();
    let mut written = 0;
    while written < exposures {
        let batch: Vec<Exposure> = (written..(written + BATCH as u64).min(exposures))
            .map(|i| Exposure {
                experiment_id: id.clone(),
                targeting_key: format!("user-{i:08}"),
                variant: u32::from(i % 2 == 1),
                at: Timestamp::now(),
            })
            .collect();
        written += store.record_exposures(&batch).await?;
        if written % 1_000_000 < BATCH as u64 {
            let rate = written as f64 / seeding.elapsed().as_secs_f64();
            eprintln!("  {written:>10} exposures, {rate:.0}/s");
        }
    }
    let seeded = seeding.elapsed();
    // Conversions and values for 0.1% of users, so that every total row exists.
    let (purchase, revenue) = (MetricName::parse("purchase")?, MetricName::parse("revenue")?);
    let events: Vec<MetricEvent> = (0..exposures)
        .step_by(1_000)
        .flat_map(|i| {
            let user = format!("user-{i:08}");
            let at = Timestamp::now();
            [
                MetricEvent { metric: purchase.clone(), targeting_key: user.clone(), value: None, at },
                MetricEvent { metric: revenue.clone(), targeting_key: user, value: Some(10.0 + (i % 7) as f64), at },
            ]
        })
        .collect();
    let eventing = Instant::now();
    for chunk in events.chunks(1_000) {
        store.record_events(&made.workspace.id, None, chunk).await?;
    }
    let evented = eventing.elapsed();

    let path = format!("/api/v1/experiments/{id}/results");
    let (status, first) = api.call("GET", &path, None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let mut times = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        let (status, _) = api.call("GET", &path, None).await;
        times.push(started.elapsed());
        assert_eq!(status, StatusCode::OK);
    }
    times.sort();
    println!("engine: {:?}; database: {database}", store.kind());
    println!("exposures: {} (results say {})", exposures, first["exposures"]);
    println!(
        "seeding: {:.1} s, {:.0} exposures/s; {} events in {:.1} s ({:.0}/s)",
        seeded.as_secs_f64(),
        exposures as f64 / seeded.as_secs_f64(),
        events.len(),
        evented.as_secs_f64(),
        events.len() as f64 / evented.as_secs_f64()
    );
    println!(
        "GET results x{requests}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    store.close().await;
    if url.starts_with("postgres") {
        let admin = sqlx::PgPool::connect(&url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {DATABASE}")).execute(&admin).await?;
    }
    Ok(())
}
