//! The submit queue's active listing with 10 and with 100,000 terminal batches in history: the
//! listing reads the membership's primary-key prefix and each member's row by primary key, so its
//! cost follows the live window, not the history (target: ratio ≤ 1.2).
//!
//! ```text
//! cargo run --release -p cutover-server --example queue_bench -- \
//!     postgres://postgres@127.0.0.1:5432/postgres [HISTORY] [LIVE]
//! cargo run --release -p cutover-server --example queue_bench -- sqlite:///tmp/queue-bench.db
//! ```
//!
//! A PostgreSQL url names a server; the bench makes its own database `cutover_queue_bench`
//! there. It prints the listing's p50 and p99 and its plan with the small history and with the
//! large one, and the ratio of the medians.

mod common;

use std::time::{Duration, Instant};

use cutover_domain::queue::{Lane, Position, QueueName, QueueSettings};
use cutover_domain::rollouts::ExecutorSpec;
use cutover_domain::{ArtifactKey, EnvironmentName, ValueType, WorkspaceName};
use cutover_store::{
    BatchSpec, Caller, ConnectOptions, NewArtifact, NewChangeRequest, NewEnvironment, NewQueue, PinAuthority,
    RequestChange, Store,
};

use common::{fresh_database, ms, percentile, settle};

const DATABASE: &str = "cutover_queue_bench";

async fn time_listing(store: &Store, queue: &str, live: usize, runs: usize) -> anyhow::Result<(Duration, Duration)> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let listing = store.active_batches(queue).await?;
        times.push(started.elapsed());
        assert_eq!(listing.batches.len(), live);
    }
    times.sort();
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
}

/// `count` terminal batches (as the listing leaves them: rows without memberships), ids from
/// `first`, in one statement.
async fn history(store: &Store, queue: &str, first: u64, count: u64) -> anyhow::Result<()> {
    let sql = format!(
        "INSERT INTO queue_batches (queue_id, id, lane, seq, position_offset, requests, depends_on, suspect, state,
                                    created_at, updated_at)
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {count})
         SELECT '{queue}', {first} + i, 'normal', {first} + i, 0, '[]', '[]', FALSE,
                CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END, 0, 0
         FROM n"
    );
    store.execute_for_tests(&sql).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let large: u64 = args.next().map_or(Ok(100_000), |n| n.parse())?;
    let live: usize = args.next().map_or(Ok(10), |n| n.parse())?;
    let small: u64 = 10;

    let database = fresh_database(&url, DATABASE).await?;
    let store = Store::connect(&database, &ConnectOptions::default()).await?;
    store.migrate().await?;
    let made = store.bootstrap(&WorkspaceName::parse("default")?).await?.expect("a fresh database");
    let actor = cutover_store::Actor { token_id: made.token.id.clone(), name: made.token.name.clone() };
    let caller = Caller::new(&made.workspace.id, &actor, &PinAuthority { owner: true, limited_to: Vec::new() });
    let environment = NewEnvironment {
        name: EnvironmentName::parse("production")?,
        description: String::new(),
        protected: false,
        targets: cutover_domain::DeploymentTargets::default(),
        position: None,
    };
    store.create_environment(&caller, &environment, 100).await?;
    let key = ArtifactKey::parse("config")?;
    let artifact = NewArtifact {
        key: key.clone(),
        value_type: ValueType::String,
        kind: "config".into(),
        description: String::new(),
    };
    store.create_artifact(&caller, &artifact).await?;
    let new = NewQueue {
        name: QueueName::parse("bench")?,
        environment: EnvironmentName::parse("production")?,
        settings: QueueSettings::DEFAULT,
        executor: ExecutorSpec::Manual {},
    };
    let queue = store.create_queue(&caller, &new).await?.queue.id;
    // The live window: `live` batches of one request each.
    for seq in 0..live {
        let change = RequestChange { artifact: key.clone(), content: serde_json::json!(format!("c{seq}")) };
        let request = NewChangeRequest { changes: vec![change], message: String::new(), hotfix: false };
        let id = store.submit_change_request(&caller, "bench", &request).await?.id;
        let spec = BatchSpec {
            position: Position { lane: Lane::Normal, seq: seq as u64, offset: 0 },
            requests: vec![id],
            suspect: false,
            depends_on: Vec::new(),
        };
        store.create_queue_batch(&queue, &spec).await?;
    }
    history(&store, &queue, 1_000_000, small).await?;
    settle(&store).await?;
    time_listing(&store, &queue, live, 200).await?;
    let (small_p50, small_p99) = time_listing(&store, &queue, live, 2_000).await?;
    let small_plan = store.explain_active_batches(&queue).await?;

    eprintln!("adding {} terminal batches to the history...", large - small);
    history(&store, &queue, 1_000_000 + small, large - small).await?;
    settle(&store).await?;
    time_listing(&store, &queue, live, 200).await?;
    let (large_p50, large_p99) = time_listing(&store, &queue, live, 2_000).await?;
    let large_plan = store.explain_active_batches(&queue).await?;

    println!("engine: {:?}; live batches: {live}", store.kind());
    println!("{small:>7} terminal batches: p50 {}  p99 {}", ms(small_p50), ms(small_p99));
    println!("{large:>7} terminal batches: p50 {}  p99 {}", ms(large_p50), ms(large_p99));
    println!("ratio of p50s: {:.2} (target <= 1.2)", large_p50.as_secs_f64() / small_p50.as_secs_f64());
    println!("\nplan with {small}:\n  {}", small_plan.join("\n  "));
    println!("\nplan with {large}:\n  {}", large_plan.join("\n  "));
    Ok(())
}
