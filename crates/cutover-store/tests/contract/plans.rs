//! Reads that matter cost what is live, not what is historical: with 100,000 closed pin
//! intervals, current owners, an environment's pins and the live version of one (artifact,
//! environment) are still answered from the partial indexes, never by scanning history.

use cutover_domain::{ArtifactKey, ValueType};
use cutover_store::{NewArtifact, Store};
use serde_json::json;

use crate::environments::new_env;
use crate::{env, key, owner, setup, v};

cutover_store::contract_tests!(live_reads_use_the_partial_indexes_whatever_the_history);

const CLOSED_INTERVALS: i64 = 100_000;

/// The three reads, as the store runs them (parameters inlined for EXPLAIN).
fn reads(artifact_id: &str, environment_id: &str) -> [String; 3] {
    [
        format!("SELECT version FROM pins WHERE artifact_id = '{artifact_id}' AND ended_at IS NULL"),
        format!("SELECT artifact_id, version FROM pins WHERE environment_id = '{environment_id}' AND ended_at IS NULL"),
        format!(
            "SELECT version, revision FROM pins WHERE artifact_id = '{artifact_id}' AND environment_id = '{environment_id}' AND ended_at IS NULL"
        ),
    ]
}

async fn live_reads_use_the_partial_indexes_whatever_the_history(store: Store) {
    let (ws, actor) = setup(&store).await;
    let artifact = NewArtifact {
        key: ArtifactKey::parse("k").unwrap(),
        value_type: ValueType::Number,
        kind: "config".into(),
        description: String::new(),
    };
    store.create_artifact(&owner(&ws.id, &actor), &artifact).await.unwrap();
    store.create_version(&owner(&ws.id, &actor), &key("k"), json!(1), "").await.unwrap();
    store.create_environment(&owner(&ws.id, &actor), &new_env("prod"), 100).await.unwrap();
    store.pin(&owner(&ws.id, &actor), &key("k"), &env("prod"), Some(v(1)), None, "").await.unwrap();

    // History: copies of the live row, closed, under new ids.
    let history = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {CLOSED_INTERVALS})
         INSERT INTO pins (id, workspace_id, artifact_id, environment_id, version, revision, reason, started_at, started_by_id, started_by, ended_at)
         SELECT 'h' || i, p.workspace_id, p.artifact_id, p.environment_id, 1, 0, '', 0, 'x', 'x', 1
         FROM n, pins p WHERE p.ended_at IS NULL"
    );
    let ids = "SELECT artifact_id, environment_id FROM pins WHERE ended_at IS NULL";
    match store.postgres_pool() {
        Some(pool) => {
            sqlx::query(&history).execute(pool).await.unwrap();
            sqlx::query("ANALYZE pins").execute(pool).await.unwrap();
            let (artifact_id, environment_id): (String, String) = sqlx::query_as(ids).fetch_one(pool).await.unwrap();
            for read in reads(&artifact_id, &environment_id) {
                let plan: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN {read}")).fetch_all(pool).await.unwrap();
                let plan: Vec<_> = plan.into_iter().map(|(line,)| line).collect();
                let plan = plan.join("\n");
                assert!(plan.contains("Index") && plan.contains("pins_"), "{read}\n{plan}");
                assert!(!plan.contains("Seq Scan"), "{read}\n{plan}");
            }
        }
        None => {
            // One connection: statistics from ANALYZE are seen by the connection that gathered them.
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect(&format!("sqlite://{}", store.sqlite_path().unwrap()))
                .await
                .unwrap();
            let (artifact_id, environment_id): (String, String) = sqlx::query_as(ids).fetch_one(&pool).await.unwrap();
            let plans = || async {
                let mut plans = Vec::new();
                for read in reads(&artifact_id, &environment_id) {
                    let plan: Vec<(i64, i64, i64, String)> =
                        sqlx::query_as(&format!("EXPLAIN QUERY PLAN {read}")).fetch_all(&pool).await.unwrap();
                    plans.push(plan.into_iter().map(|(_, _, _, detail)| detail).collect::<Vec<_>>().join("\n"));
                }
                plans
            };
            let small = plans().await;
            sqlx::query(&history).execute(&pool).await.unwrap();
            let large = plans().await;
            // Cutover never runs ANALYZE on SQLite, so this is the plan it gets: the same whatever
            // the history. With statistics gathered, the index is still chosen.
            assert_eq!(small, large, "the same plans with one interval and with {CLOSED_INTERVALS} more");
            sqlx::query("ANALYZE").execute(&pool).await.unwrap();
            let analyzed = plans().await;
            for plan in large.into_iter().chain(analyzed) {
                assert!(
                    plan.contains("USING INDEX pins_one_active")
                        || plan.contains("USING INDEX pins_active_by_environment"),
                    "{plan}"
                );
            }
        }
    }
    let count = store
        .pin_history(&ws.id, &key("k"), &env("prod"), None, cutover_domain::PageLimit::parse(Some(1)).unwrap())
        .await
        .unwrap();
    assert_eq!(count.items[0].version, 1);
    assert_eq!(store.list_pins(&ws.id, &key("k")).await.unwrap().len(), 1, "history is not live");
}
