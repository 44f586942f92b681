//! Write throughput in one workspace: C clients, each moving the pin of one artifact in an
//! environment of its own between two versions (`PUT /api/v1/artifacts/config/pins/e-N`), as
//! fast as the server answers, for S seconds, over HTTP on loopback (keep-alive connections).
//! Prints moves per second, p50 and p99 latency, and errors, for each client count.
//!
//! ```text
//! cargo run --release -p cutover-server --example writes_bench -- [DATABASE_URL] [CLIENTS,...] [SECONDS]
//! ```
//!
//! Defaults: a temporary SQLite database, 8 and 32 clients, 15 s each. A `postgres://` url names
//! a server; the bench makes (and drops) its own database `cutover_writes_bench` there.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{drop_database, fresh_database, ms, percentile, serve_loopback, settle};
use cutover_domain::WorkspaceName;
use cutover_server::{AppState, ServerConfig};
use cutover_store::{ConnectOptions, Store};
use serde_json::{Value, json};

const DATABASE: &str = "cutover_writes_bench";

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "{method} {path}: {status} {value}");
        Ok(value)
    }
}

/// One round: `clients` movers for `seconds`; each move's latency, and the errors.
async fn round(api: &Arc<Api>, clients: usize, seconds: u64) -> (Vec<Duration>, usize, Duration) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let movers: Vec<_> = (0..clients)
        .map(|client| {
            let api = api.clone();
            tokio::spawn(async move {
                let (mut times, mut errors) = (Vec::new(), 0_usize);
                let path = format!("/api/v1/artifacts/config/pins/e-{client:02}");
                let mut version = 1;
                while Instant::now() < deadline {
                    version = 3 - version;
                    let began = Instant::now();
                    match api.send(reqwest::Method::PUT, &path, json!({"version": version})).await {
                        Ok(_) => times.push(began.elapsed()),
                        Err(e) => {
                            if errors == 0 {
                                eprintln!("client {client}: {e}");
                            }
                            errors += 1;
                        }
                    }
                }
                (times, errors)
            })
        })
        .collect();
    let (mut all, mut errors) = (Vec::new(), 0);
    for mover in movers {
        let (times, failed) = mover.await.expect("a mover ends");
        all.extend(times);
        errors += failed;
    }
    let elapsed = started.elapsed();
    all.sort();
    (all, errors, elapsed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = tempfile::tempdir()?;
    let url = args
        .next()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let rounds: Vec<usize> =
        args.next().map_or(Ok(vec![8, 32]), |list| list.split(',').map(str::parse).collect::<Result<_, _>>())?;
    let seconds: u64 = args.next().map_or(Ok(15), |s| s.parse())?;

    let database = fresh_database(&url, DATABASE).await?;
    let options = ConnectOptions { max_connections: 32, ..ConnectOptions::default() };
    let store = Store::connect(&database, &options).await?;
    store.migrate().await?;
    let made = store.bootstrap(&WorkspaceName::parse("default")?).await?.expect("a fresh database");
    let state = AppState::new(store.clone(), ServerConfig::default());
    let address = serve_loopback(state.clone()).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let api = Arc::new(Api { http, base: format!("http://{address}"), token: made.secret.expose().to_owned() });

    let most = rounds.iter().copied().max().unwrap_or(8);
    for n in 0..most {
        api.send(reqwest::Method::POST, "/api/v1/environments", json!({"name": format!("e-{n:02}")})).await?;
    }
    api.send(reqwest::Method::POST, "/api/v1/artifacts", json!({"key": "config", "value_type": "json"})).await?;
    for n in 1..=2 {
        api.send(reqwest::Method::POST, "/api/v1/artifacts/config/versions", json!({"content": {"n": n}})).await?;
    }

    println!("engine: {:?}; one workspace, one artifact, an environment per client", store.kind());
    for clients in rounds {
        settle(&store).await?;
        let (times, errors, elapsed) = round(&api, clients, seconds).await;
        anyhow::ensure!(!times.is_empty(), "no move succeeded");
        println!(
            "{clients:>3} clients, {:.1} s: {:>6.0} moves/s, p50 {}, p99 {}, max {}, {} moves, {errors} errors",
            elapsed.as_secs_f64(),
            times.len() as f64 / elapsed.as_secs_f64(),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(*times.last().expect("one move at least")),
            times.len(),
        );
    }
    state.shutdown.send_replace(true);
    store.close().await;
    drop_database(&url, DATABASE).await
}
