//! Warm pools at scale: the running-instances query with a handful of historical builds and
//! with a million, and claims under 64-way concurrency.
//!
//! ```text
//! cargo run --release -p cutover-server --example pool_bench -- \
//!     postgres://postgres@127.0.0.1:5432/postgres [HISTORICAL_BUILDS] [READY_FOR_CLAIMS]
//! ```
//!
//! The PostgreSQL url names a server; the bench makes its own database `cutover_pool_bench`
//! there. A `sqlite://PATH` url works too (claims are then serialised by SQLite's one writer).
//! It prints the query's p50 and its plan before and after the history is added, then the
//! claims' p50 and p99.

mod common;

use std::time::{Duration, Instant};

use cutover_domain::pools::{DesiredCount, PoolName, PoolSettings, PresetParameters};
use cutover_domain::{ArtifactKey, EnvironmentName, Timestamp, ValueType, VersionNumber, WorkspaceName};
use cutover_store::{BuildOutcome, Caller, ConnectOptions, NewArtifact, NewEnvironment, NewPool, PinAuthority, Store};

use common::{fresh_database, ms, percentile, settle};

const DATABASE: &str = "cutover_pool_bench";
const LIVE: usize = 10;

/// A running, ready instance of the pool (no agents), through the engine's store path.
async fn ready_instance(store: &Store, pool_id: &str) -> anyhow::Result<String> {
    let id = store.create_pool_instance(pool_id, 1).await?;
    let build = store
        .pool_work(pool_id, Timestamp::now())
        .await?
        .open_builds
        .into_iter()
        .find(|b| b.instance_id == id)
        .ok_or_else(|| anyhow::anyhow!("no build"))?
        .id;
    let deadline = Timestamp::from_micros(Timestamp::now().as_micros() + 600_000_000);
    store.start_pool_build(&build, 1, deadline).await?;
    store.finish_pool_build(&build, 1, &BuildOutcome { succeeded: true, error: None, log: String::new() }).await?;
    Ok(id)
}

async fn time_query(store: &Store, workspace: &str, runs: usize) -> anyhow::Result<Duration> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let running = store.running_pool_instances(workspace, "bench").await?;
        times.push(started.elapsed());
        assert_eq!(running.len(), LIVE);
    }
    times.sort();
    Ok(percentile(&times, 0.5))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let historical: u64 = args.next().map_or(Ok(1_000_000), |n| n.parse())?;
    let claimable: usize = args.next().map_or(Ok(640), |n| n.parse())?;

    let database = fresh_database(&url, DATABASE).await?;
    let options = ConnectOptions { max_connections: 70, ..ConnectOptions::default() };
    let store = Store::connect(&database, &options).await?;
    store.migrate().await?;
    let made = store.bootstrap(&WorkspaceName::parse("default")?).await?.expect("a fresh database");
    let ws = made.workspace.id.clone();
    let actor = cutover_store::Actor { token_id: made.token.id.clone(), name: made.token.name.clone() };
    let caller = Caller::new(&ws, &actor, &PinAuthority { owner: true, limited_to: Vec::new() });
    let environment = NewEnvironment {
        name: cutover_domain::EnvironmentName::parse("production")?,
        description: String::new(),
        protected: false,
        targets: cutover_domain::DeploymentTargets::default(),
        position: None,
    };
    store.create_environment(&caller, &environment, 100).await?;
    let artifact = NewArtifact {
        key: ArtifactKey::parse("runner")?,
        value_type: ValueType::String,
        kind: "template".into(),
        description: String::new(),
    };
    store.create_artifact(&caller, &artifact).await?;
    let (runner, production) = (ArtifactKey::parse("runner")?, EnvironmentName::parse("production")?);
    store.create_version(&caller, &runner, serde_json::json!("image"), "").await?;
    store.pin(&caller, &runner, &production, Some(VersionNumber::FIRST), None, "bench").await?;
    let new_pool = |name: &str| -> anyhow::Result<NewPool> {
        Ok(NewPool {
            name: PoolName::parse(name)?,
            artifact: runner.clone(),
            environment: production.clone(),
            parameters: PresetParameters::default(),
            agents: Vec::new(),
            executor: "provision".into(),
            timeout_seconds: 60,
            desired: DesiredCount::fixed(0)?,
            settings: PoolSettings::default(),
        })
    };
    let pool = store.create_pool(&caller, &new_pool("bench")?).await?;
    for _ in 0..LIVE {
        ready_instance(&store, &pool.id).await?;
    }
    settle(&store).await?;
    let small = time_query(&store, &ws, 1_000).await?;
    let small_plan = store.explain_running_pool_instances(&pool.id).await?;

    eprintln!("adding {historical} historical builds (deleted instances, a start and a delete each)...");
    let started = Instant::now();
    let instances = historical / 2;
    store
        .execute_for_tests(&format!(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {instances})
             INSERT INTO pool_instances (id, workspace_id, pool_id, origin_pool_id, created_at, delete_requested_at, deleted_at)
             SELECT '0000-history-' || n, '{ws}', '{pool}', '{pool}', n, n, n FROM g",
            pool = pool.id
        ))
        .await?;
    for (number, transition) in [(1, "start"), (2, "delete")] {
        store
            .execute_for_tests(&format!(
                "INSERT INTO pool_builds (id, instance_id, pool_id, number, transition, status, idempotency_key, created_at)
                 SELECT id || '-{number}', id, pool_id, {number}, '{transition}', 'succeeded', id, created_at
                 FROM pool_instances WHERE id LIKE '0000-history-%'"
            ))
            .await?;
    }
    // Each deleted instance points at its last build, as the store keeps it (migration 0014).
    store
        .execute_for_tests("UPDATE pool_instances SET latest_build_id = id || '-2' WHERE id LIKE '0000-history-%'")
        .await?;
    settle(&store).await?;
    eprintln!("  in {:.1} s", started.elapsed().as_secs_f64());
    let large = time_query(&store, &ws, 1_000).await?;
    let large_plan = store.explain_running_pool_instances(&pool.id).await?;

    println!("running instances ({LIVE} live), p50 of 1000:");
    println!("  with {} historical builds: {}", LIVE, ms(small));
    println!("  with {historical} historical builds: {}", ms(large));
    println!("  ratio: {:.2}", large.as_secs_f64() / small.as_secs_f64());
    println!("\nplan, few builds:\n  {}", small_plan.join("\n  "));
    println!("\nplan, {historical} historical builds:\n  {}", large_plan.join("\n  "));

    // Claims: 64 claimers take every ready instance of another pool, one at a time each.
    let claims = store.create_pool(&caller, &new_pool("claims")?).await?;
    for _ in 0..claimable {
        ready_instance(&store, &claims.id).await?;
    }
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (store, caller) = (store.clone(), caller.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            loop {
                let started = Instant::now();
                let claimed = store.claim_pool_instance(&caller, "claims").await?;
                times.push(started.elapsed());
                if claimed.is_none() {
                    return Ok::<_, anyhow::Error>(times);
                }
            }
        }));
    }
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await??);
    }
    times.sort();
    println!(
        "\nclaims, 64 at once until {claimable} instances are gone ({} claims with the misses): p50 {}, p99 {}",
        times.len(),
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99))
    );
    Ok(())
}
