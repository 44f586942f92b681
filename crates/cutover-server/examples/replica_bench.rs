//! Cross-replica change visibility: two servers (A and B, each with its own store, resolver and
//! `LISTEN` connection, as two `cutover serve` processes have) on one PostgreSQL database. Pin
//! moves land on A at a fixed rate; B's change stream (`GET /api/v1/stream`, over HTTP on
//! loopback) is read, and for each revision A answered, the time from A's answer until B's
//! stream delivered it is taken (0 when B was first). Each rate runs for S seconds.
//!
//! ```text
//! cargo run --release -p cutover-server --example replica_bench -- POSTGRES_URL [RATES,...] [SECONDS]
//! ```
//!
//! Defaults: 20 moves/s (idle) and 500 moves/s, 10 s each. The bench makes (and drops) its own
//! database `cutover_replica_bench` on the server of the url.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{drop_database, fresh_database, ms, percentile, serve_loopback};
use cutover_domain::WorkspaceName;
use cutover_server::{AppState, ServerConfig};
use cutover_store::{ConnectOptions, Store};
use serde_json::{Value, json};

const DATABASE: &str = "cutover_replica_bench";
const ENVIRONMENTS: usize = 8;

/// A replica as `cutover serve` starts one: its store, its resolver built, its listener running.
async fn replica(database: &str) -> anyhow::Result<(AppState, String)> {
    let store = Store::connect(database, &ConnectOptions { max_connections: 32, ..ConnectOptions::default() }).await?;
    let state = AppState::new(store.clone(), ServerConfig::default());
    state.resolver.load_all().await?;
    cutover_server::resolve::notify::spawn(
        store,
        state.resolver.clone(),
        state.tokens.clone(),
        state.shutdown.subscribe(),
    );
    let address = serve_loopback(state.clone()).await?;
    Ok((state, format!("http://{address}")))
}

async fn send(
    http: &reqwest::Client,
    token: &str,
    method: reqwest::Method,
    url: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let response = http.request(method.clone(), url).bearer_auth(token).json(&body).send().await?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "{method} {url}: {status} {value}");
    Ok(value)
}

/// Reads B's change stream, noting when each revision arrived.
fn watch(http: reqwest::Client, url: String, token: String, seen: Arc<Mutex<HashMap<i64, Instant>>>) {
    tokio::spawn(async move {
        let mut response = http.get(url).bearer_auth(token).send().await.expect("B's stream opens");
        assert!(response.status().is_success(), "B's stream: {}", response.status());
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            let now = Instant::now();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find('\n') {
                let line: String = buffer.drain(..=end).collect();
                if let Some(id) = line.trim_end().strip_prefix("id:").and_then(|id| id.trim().parse::<i64>().ok()) {
                    seen.lock().expect("not poisoned").entry(id).or_insert(now);
                }
            }
        }
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().filter(|u| u.starts_with("postgres")).ok_or_else(|| anyhow::anyhow!("a postgres:// url"))?;
    let rates: Vec<u64> =
        args.next().map_or(Ok(vec![20, 500]), |list| list.split(',').map(str::parse).collect::<Result<_, _>>())?;
    let seconds: u64 = args.next().map_or(Ok(10), |s| s.parse())?;

    let database = fresh_database(&url, DATABASE).await?;
    let setup = Store::connect(&database, &ConnectOptions::default()).await?;
    setup.migrate().await?;
    let made = setup.bootstrap(&WorkspaceName::parse("default")?).await?.expect("a fresh database");
    setup.close().await;
    let token = made.secret.expose().to_owned();
    let (a, a_url) = replica(&database).await?;
    let (b, b_url) = replica(&database).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;

    for n in 0..ENVIRONMENTS {
        send(
            &http,
            &token,
            reqwest::Method::POST,
            &format!("{a_url}/api/v1/environments"),
            json!({"name": format!("e-{n}")}),
        )
        .await?;
    }
    let artifacts = json!({"key": "config", "value_type": "json"});
    send(&http, &token, reqwest::Method::POST, &format!("{a_url}/api/v1/artifacts"), artifacts).await?;
    for n in 1..=2 {
        let url = format!("{a_url}/api/v1/artifacts/config/versions");
        send(&http, &token, reqwest::Method::POST, &url, json!({"content": {"n": n}})).await?;
    }

    let seen = Arc::new(Mutex::new(HashMap::new()));
    watch(http.clone(), format!("{b_url}/api/v1/stream"), token.clone(), seen.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    println!("two replicas on one PostgreSQL; moves land on A, B's change stream is read");
    for rate in rates {
        let answered: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::default();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let total = rate * seconds;
        let started = Instant::now();
        let mut writes = Vec::with_capacity(total as usize);
        for i in 0..total {
            tick.tick().await;
            let (http, token, answered) = (http.clone(), token.clone(), answered.clone());
            let environment = i as usize % ENVIRONMENTS;
            let url = format!("{a_url}/api/v1/artifacts/config/pins/e-{environment}");
            let version = 1 + (i / ENVIRONMENTS as u64) % 2;
            writes.push(tokio::spawn(async move {
                let write = send(&http, &token, reqwest::Method::PUT, &url, json!({"version": version})).await;
                let now = Instant::now();
                match write.map(|w| w["revision"].as_i64()) {
                    Ok(Some(revision)) => answered.lock().expect("not poisoned").push((revision, now)),
                    Ok(None) => {}
                    Err(e) => eprintln!("{e}"),
                }
            }));
        }
        for write in writes {
            write.await?;
        }
        let offered = started.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let answered = answered.lock().expect("not poisoned").clone();
        let seen = seen.lock().expect("not poisoned").clone();
        let mut lags: Vec<Duration> = answered
            .iter()
            .filter_map(|(revision, at)| seen.get(revision).map(|shown| shown.saturating_duration_since(*at)))
            .collect();
        let missing = answered.len() - lags.len();
        lags.sort();
        anyhow::ensure!(!lags.is_empty(), "B showed none of A's changes");
        println!(
            "{rate:>4} moves/s offered ({:.0}/s landed): B shows A's change p50 {}, p99 {}, max {} after A answered; {} changes, {missing} never shown",
            answered.len() as f64 / offered.as_secs_f64(),
            ms(percentile(&lags, 0.5)),
            ms(percentile(&lags, 0.99)),
            ms(*lags.last().expect("one at least")),
            answered.len(),
        );
    }
    a.shutdown.send_replace(true);
    b.shutdown.send_replace(true);
    a.store.close().await;
    b.store.close().await;
    drop_database(&url, DATABASE).await
}
