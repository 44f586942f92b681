use cutover_domain::{ExperimentAction, MetricName, Timestamp};
use cutover_store::{EngineKind, EventsOutcome, ExperimentSpec, Exposure, MetricEvent, MetricSums, Store};

use crate::experiments::{act, spec, world};
use crate::{env, key, owner};

cutover_store::contract_tests!(
    exposures_count_once_per_user_across_batches,
    events_count_in_the_variant_their_user_was_exposed_to,
    events_outside_the_running_window_do_not_count,
    a_scoped_caller_only_feeds_experiments_in_its_environments,
    totals_stay_exact_under_16_concurrent_writers,
    another_workspace_cannot_read_totals,
    a_flush_sets_aside_the_rows_the_database_refuses_and_records_the_rest,
    a_batch_larger_than_one_statements_parameter_limit_is_recorded_whole,
);

fn exposure(experiment: &str, user: &str, variant: u32) -> Exposure {
    Exposure { experiment_id: experiment.into(), targeting_key: user.into(), variant, at: Timestamp::now() }
}

fn event(metric: &str, user: &str, value: Option<f64>) -> MetricEvent {
    MetricEvent { metric: MetricName::parse(metric).unwrap(), targeting_key: user.into(), value, at: Timestamp::now() }
}

/// A running experiment on `k` in prod (versions 1, 2) tracking `checkout.completed` and the
/// guardrail `latency`.
async fn running(store: &Store) -> (cutover_store::Workspace, cutover_store::Actor, String) {
    let (ws, actor) = world(store, 2).await;
    let spec = ExperimentSpec { guardrail_metrics: vec!["latency".into()], ..spec(&[2]) };
    let made = store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("prod"), &spec).await.unwrap();
    act(store, &ws, &actor, &made.id, ExperimentAction::Start).await.unwrap();
    (ws, actor, made.id)
}

async fn exposures_count_once_per_user_across_batches(store: Store) {
    let (ws, _, id) = running(&store).await;
    let first = [exposure(&id, "a", 0), exposure(&id, "b", 1), exposure(&id, "a", 0), exposure(&id, "c", 1)];
    assert_eq!(store.record_exposures(&first).await.unwrap(), 3, "a duplicate inside a batch counts once");
    let second = [exposure(&id, "b", 1), exposure(&id, "d", 0)];
    assert_eq!(store.record_exposures(&second).await.unwrap(), 1, "a user already recorded is skipped");
    assert_eq!(store.record_exposures(&[]).await.unwrap(), 0);
    let totals = store.experiment_totals(&ws.id, &id).await.unwrap();
    assert_eq!(totals.exposures, [2, 2]);
    assert_eq!(totals.metrics.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(), ["checkout.completed", "latency"]);
    assert!(totals.metrics.iter().all(|(_, v)| v == &vec![MetricSums::default(); 2]));
}

async fn events_count_in_the_variant_their_user_was_exposed_to(store: Store) {
    let (ws, _, id) = running(&store).await;
    store.record_exposures(&[exposure(&id, "a", 0), exposure(&id, "b", 1), exposure(&id, "c", 1)]).await.unwrap();
    let batch = [
        event("checkout.completed", "a", Some(2.0)),
        event("checkout.completed", "a", Some(3.0)),
        event("checkout.completed", "b", None),
        event("checkout.completed", "never-exposed", Some(100.0)),
        event("latency", "c", Some(120.0)),
        event("untracked", "a", Some(1.0)),
    ];
    let outcome = store.record_events(&ws.id, None, &batch).await.unwrap();
    assert_eq!(outcome, EventsOutcome { received: 6, attributed: 4 });
    // A later event of `a` moves their total from 5 to 9: the sum of squares follows (81, not 25 + 16).
    store.record_events(&ws.id, None, &[event("checkout.completed", "a", Some(4.0))]).await.unwrap();

    let totals = store.experiment_totals(&ws.id, &id).await.unwrap();
    let (_, primary) = &totals.metrics[0];
    assert_eq!(
        primary[0],
        MetricSums { conversions: 1, events: 3, valued_events: 3, sum: 9.0, sum_of_squares: 81.0 },
        "control: one user, three events"
    );
    assert_eq!(primary[1], MetricSums { conversions: 1, events: 1, valued_events: 0, sum: 1.0, sum_of_squares: 1.0 });
    let (name, guardrail) = &totals.metrics[1];
    assert_eq!(name, "latency");
    assert_eq!(guardrail[0], MetricSums::default());
    assert_eq!(
        guardrail[1],
        MetricSums { conversions: 1, events: 1, valued_events: 1, sum: 120.0, sum_of_squares: 14_400.0 }
    );
}

async fn events_outside_the_running_window_do_not_count(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let made = store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("prod"), &spec(&[2])).await.unwrap();
    // Not started: nothing counts, not even with an exposure on record.
    store.record_exposures(&[exposure(&made.id, "a", 1)]).await.unwrap();
    let early = store.record_events(&ws.id, None, &[event("checkout.completed", "a", None)]).await.unwrap();
    assert_eq!(early.attributed, 0);

    let started = act(&store, &ws, &actor, &made.id, ExperimentAction::Start).await.unwrap().experiment;
    let started_at = started.lifecycle.started_at().unwrap();
    let before = MetricEvent {
        at: Timestamp::from_micros(started_at.as_micros() - 1),
        ..event("checkout.completed", "a", None)
    };
    assert_eq!(store.record_events(&ws.id, None, &[before]).await.unwrap().attributed, 0, "dated before the start");
    let during = event("checkout.completed", "a", None);
    assert_eq!(store.record_events(&ws.id, None, std::slice::from_ref(&during)).await.unwrap().attributed, 1);

    let completed = act(&store, &ws, &actor, &made.id, ExperimentAction::Complete).await.unwrap().experiment;
    let ended_at = completed.lifecycle.ended_at().unwrap();
    // Late delivery of an event that happened while it ran still counts; one dated after does not.
    let late = MetricEvent { at: ended_at, ..event("checkout.completed", "a", None) };
    assert_eq!(store.record_events(&ws.id, None, &[late]).await.unwrap().attributed, 1);
    let after = MetricEvent { at: Timestamp::from_micros(ended_at.as_micros() + 1), ..during };
    assert_eq!(store.record_events(&ws.id, None, &[after]).await.unwrap().attributed, 0);

    let totals = store.experiment_totals(&ws.id, &made.id).await.unwrap();
    assert_eq!(totals.metrics[0].1[1].events, 2);
}

async fn a_scoped_caller_only_feeds_experiments_in_its_environments(store: Store) {
    let (ws, _, id) = running(&store).await;
    store.record_exposures(&[exposure(&id, "a", 0)]).await.unwrap();
    let batch = [event("checkout.completed", "a", None)];
    let dev_only = store.record_events(&ws.id, Some(&["dev".to_owned()]), &batch).await.unwrap();
    assert_eq!(dev_only.attributed, 0, "the experiment runs in prod");
    let prod = store.record_events(&ws.id, Some(&["prod".to_owned()]), &batch).await.unwrap();
    assert_eq!(prod.attributed, 1);
}

async fn totals_stay_exact_under_16_concurrent_writers(store: Store) {
    let (ws, _, id) = running(&store).await;
    let users: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let (store, ws_id, id, users) = (store.clone(), ws.id.clone(), id.clone(), users.clone());
        tasks.push(tokio::spawn(async move {
            // Every writer exposes every user (variant by parity) then posts one event per user.
            let exposures: Vec<Exposure> =
                users.iter().enumerate().map(|(i, u)| exposure(&id, u, (i % 2) as u32)).collect();
            store.record_exposures(&exposures).await.unwrap();
            let events: Vec<MetricEvent> =
                users.iter().rev().map(|u| event("checkout.completed", u, Some(f64::from(writer)))).collect();
            store.record_events(&ws_id, None, &events).await.unwrap()
        }));
    }
    let mut attributed = 0;
    for task in tasks {
        attributed += task.await.unwrap().attributed;
    }
    assert_eq!(attributed, 16 * 40, "every writer's events found their exposure");
    let totals = store.experiment_totals(&ws.id, &id).await.unwrap();
    assert_eq!(totals.exposures, [20, 20], "each user exposed exactly once");
    // Each user's total is 0 + 1 + … + 15 = 120, whatever order the writers ran in.
    for sums in &totals.metrics[0].1 {
        assert_eq!((sums.conversions, sums.events, sums.valued_events), (20, 320, 320));
        assert_eq!(sums.sum, 20.0 * 120.0);
        assert!((sums.sum_of_squares - 20.0 * 120.0 * 120.0).abs() < 1e-6, "{}", sums.sum_of_squares);
    }
}

async fn another_workspace_cannot_read_totals(store: Store) {
    let (ws, actor, id) = running(&store).await;
    let name = cutover_domain::WorkspaceName::parse("other").unwrap();
    let (other, _, _) = store.create_workspace(&owner(&ws.id, &actor), &name, "owner").await.unwrap();
    assert!(matches!(store.experiment_totals(&other.id, &id).await, Err(cutover_store::StoreError::NotFound(_))));
    let outcome = store.record_events(&other.id, None, &[event("checkout.completed", "a", None)]).await;
    assert_eq!(outcome.unwrap().attributed, 0);
    assert!(store.experiment_totals(&ws.id, &id).await.is_ok());
}

async fn a_flush_sets_aside_the_rows_the_database_refuses_and_records_the_rest(store: Store) {
    let (ws, _, id) = running(&store).await;
    let mut batch: Vec<Exposure> = (0..40).map(|i| exposure(&id, &format!("user-{i}"), i % 2)).collect();
    // Both engines refuse a row of an unknown experiment (foreign key); PostgreSQL also refuses a
    // NUL byte in text, which once stopped every flush after it.
    batch.insert(13, exposure("no-such-experiment", "user-x", 0));
    batch.insert(29, exposure(&id, "nul\0byte", 1));
    let flush = store.flush_exposures(batch).await;
    assert!(flush.error.is_none() && flush.retry.is_empty(), "{:?}", flush.error);
    let mut rejected: Vec<&str> = flush.rejected.iter().map(|(row, _)| row.targeting_key.as_str()).collect();
    rejected.sort_unstable();
    let nul_refused = store.kind() == EngineKind::Postgres;
    let expected: &[&str] = if nul_refused { &["nul\0byte", "user-x"] } else { &["user-x"] };
    assert_eq!(rejected, expected);
    assert_eq!(flush.recorded, if nul_refused { 40 } else { 41 });
    let totals = store.experiment_totals(&ws.id, &id).await.unwrap();
    assert_eq!(totals.exposures.iter().sum::<u64>(), flush.recorded, "totals match the rows written");

    // Nothing is left behind to block the next batch.
    let next = store.flush_exposures(vec![exposure(&id, "user-new", 0), exposure(&id, "user-0", 0)]).await;
    assert_eq!((next.recorded, next.rejected.len(), next.retry.len()), (1, 0, 0));
}

async fn a_batch_larger_than_one_statements_parameter_limit_is_recorded_whole(store: Store) {
    let (ws, _, id) = running(&store).await;
    // More rows than SQLite binds parameters in one statement (32,766), shuffled across both
    // variants, with every user of the first thousand twice.
    let rows = 40_000;
    let mut batch: Vec<Exposure> = (0..rows)
        .map(|i| exposure(&id, &format!("user-{}", (i * 7_919) % rows), ((i * 7_919) % rows % 2) as u32))
        .collect();
    batch.extend((0..1_000).map(|i| exposure(&id, &format!("user-{i}"), (i % 2) as u32)));
    assert_eq!(store.record_exposures(&batch).await.unwrap(), rows as u64);
    let totals = store.experiment_totals(&ws.id, &id).await.unwrap();
    assert_eq!(totals.exposures, [rows as u64 / 2, rows as u64 / 2]);
    // Again, with 10 new users among them: only those count.
    batch.extend((rows..rows + 10).map(|i| exposure(&id, &format!("user-{i}"), (i % 2) as u32)));
    assert_eq!(store.record_exposures(&batch).await.unwrap(), 10);
    let totals = store.experiment_totals(&ws.id, &id).await.unwrap();
    assert_eq!(totals.exposures, [rows as u64 / 2 + 5, rows as u64 / 2 + 5]);
}
