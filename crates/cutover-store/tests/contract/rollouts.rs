use std::time::Duration;

use cutover_domain::rollouts::{ExecutorSpec, OperationState, RolloutControl, RolloutPolicy, RolloutState, TaskState};
use cutover_domain::{ArtifactKey, DeploymentTarget, DeploymentTargets, PageLimit, TargetName, Timestamp, ValueType};
use cutover_store::{Actor, NewArtifact, NewRollout, PinAuthority, Store, StoreError, TaskOutcome, Workspace};
use serde_json::json;

use crate::environments::new_env;
use crate::{env, key, owner, setup, v};

cutover_store::contract_tests!(
    webhook_secrets_stored_in_plain_text_are_sealed_once,
    a_rollout_is_created_with_one_operation_per_target_in_waves,
    a_rollout_needs_targets_an_existing_version_and_authority,
    controls_follow_the_domain_and_refuse_illegal_ones_unchanged,
    a_lease_has_one_holder_among_16_racers_and_expires_to_another,
    completing_moves_the_pin_once_under_8_racing_engines,
    a_task_result_is_recorded_once_under_its_run_token,
    a_crashed_run_is_taken_over_only_after_its_deadline,
    each_attempt_of_a_task_keeps_its_own_log_a_stopped_one_included,
    a_rollout_that_ends_leaves_no_operation_or_task_looking_alive,
);

/// Artifact `k` with 2 versions (v1 pinned in prod), environment `prod` with `targets` targets.
async fn world(store: &Store, targets: usize) -> (Workspace, Actor) {
    let (ws, actor) = setup(store).await;
    let artifact = NewArtifact {
        key: ArtifactKey::parse("k").unwrap(),
        value_type: ValueType::String,
        kind: "config".into(),
        description: String::new(),
    };
    store.create_artifact(&owner(&ws.id, &actor), &artifact).await.unwrap();
    for n in 1..=2 {
        store.create_version(&owner(&ws.id, &actor), &key("k"), json!(format!("v{n}")), "").await.unwrap();
    }
    let targets = (0..targets)
        .map(|i| DeploymentTarget {
            name: TargetName::parse(&format!("region-{i}")).unwrap(),
            config: json!({"index": i}).as_object().unwrap().clone(),
        })
        .collect();
    let prod = cutover_store::NewEnvironment { targets: DeploymentTargets::parse(targets).unwrap(), ..new_env("prod") };
    store.create_environment(&owner(&ws.id, &actor), &prod, 100).await.unwrap();
    store.pin(&owner(&ws.id, &actor), &key("k"), &env("prod"), Some(v(1)), None, "test").await.unwrap();
    (ws, actor)
}

fn rollout(max_parallel: u32, steps: &[&str]) -> NewRollout {
    NewRollout {
        artifact: key("k"),
        environment: env("prod"),
        version: v(2),
        policy: RolloutPolicy::parse(Some(max_parallel), None, None).unwrap(),
        steps: steps.iter().map(|s| s.to_string()).collect(),
        executor: ExecutorSpec::Manual {},
    }
}

async fn a_rollout_is_created_with_one_operation_per_target_in_waves(store: Store) {
    let (ws, actor) = world(&store, 5).await;
    let made = store.create_rollout(&owner(&ws.id, &actor), &rollout(2, &["drain", "apply"])).await.unwrap();
    assert_eq!(made.rollout.state, RolloutState::Pending);
    assert_eq!((made.rollout.operation_count, made.rollout.version.get()), (5, 2));
    let layout: Vec<(String, u32, u32)> =
        made.operations.iter().map(|o| (o.target.clone(), o.position, o.wave)).collect();
    assert_eq!(
        layout,
        (0..5).map(|i| (format!("region-{i}"), i, i / 2)).collect::<Vec<_>>(),
        "targets' order, waves of max_parallel"
    );
    for operation in &made.operations {
        assert_eq!(operation.state, OperationState::Pending);
        assert_eq!(operation.target_config["index"], json!(operation.position));
        let steps: Vec<(&str, TaskState)> = operation.tasks.iter().map(|t| (t.step.as_str(), t.state)).collect();
        assert_eq!(steps, [("drain", TaskState::Pending), ("apply", TaskState::Pending)]);
    }
    let keys: std::collections::HashSet<&str> =
        made.operations.iter().flat_map(|o| o.tasks.iter().map(|t| t.idempotency_key.as_str())).collect();
    assert_eq!(keys.len(), 10, "one idempotency key per task");
    assert_eq!(store.get_rollout(&ws.id, &made.rollout.id).await.unwrap().operations.len(), 5);
    let listed = store.list_rollouts(&ws.id, Some(&env("prod")), Some(RolloutState::Pending), 50).await.unwrap();
    assert_eq!(listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [made.rollout.id.as_str()]);
    assert!(store.list_rollouts(&ws.id, None, Some(RolloutState::Running), 50).await.unwrap().is_empty());
    assert_eq!(store.live_rollouts().await.unwrap(), std::slice::from_ref(&made.rollout.id));
    let filter =
        cutover_store::AuditFilter { object_type: Some(cutover_domain::AuditObject::Rollout), ..Default::default() };
    let audit = store.list_audit(&ws.id, &filter, None, PageLimit::default()).await.unwrap();
    let actions: Vec<&str> = audit.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["rollout.create"]);
}

async fn a_rollout_needs_targets_an_existing_version_and_authority(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let missing = NewRollout { version: v(9), ..rollout(1, &["apply"]) };
    assert!(matches!(store.create_rollout(&owner(&ws.id, &actor), &missing).await, Err(StoreError::NotFound(_))));
    store.create_environment(&owner(&ws.id, &actor), &new_env("bare"), 100).await.unwrap();
    let bare = NewRollout { environment: env("bare"), ..rollout(1, &["apply"]) };
    let err = store.create_rollout(&owner(&ws.id, &actor), &bare).await.unwrap_err();
    assert!(err.to_string().contains("has no deployment targets"), "{err}");
    let scoped = PinAuthority { owner: false, limited_to: vec!["bare".into()] };
    assert!(matches!(
        store.create_rollout(&cutover_store::Caller::new(&ws.id, &actor, &scoped), &rollout(1, &["apply"])).await,
        Err(StoreError::Forbidden(_))
    ));
    assert!(store.list_rollouts(&ws.id, None, None, 50).await.unwrap().is_empty(), "nothing written");
}

async fn controls_follow_the_domain_and_refuse_illegal_ones_unchanged(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let id = store.create_rollout(&owner(&ws.id, &actor), &rollout(1, &["apply"])).await.unwrap().rollout.id;
    let err = store.rollout_control(&owner(&ws.id, &actor), &id, RolloutControl::Resume).await.unwrap_err();
    assert_eq!(err.to_string(), "cannot resume a rollout that is pending");
    assert!(matches!(err, StoreError::IllegalControl(_)), "{err:?}");
    let stopped = store.rollout_control(&owner(&ws.id, &actor), &id, RolloutControl::Stop).await.unwrap();
    assert_eq!(stopped.rollout.state, RolloutState::Stopping);
    let cancelled = store.rollout_control(&owner(&ws.id, &actor), &id, RolloutControl::Cancel).await.unwrap();
    assert_eq!(cancelled.rollout.state, RolloutState::Cancelled);
    assert!(cancelled.rollout.ended_at.is_some());
    assert!(cancelled.operations.iter().all(|o| o.state == OperationState::Cancelled));
    assert!(store.live_rollouts().await.unwrap().is_empty());
    let again = store.rollout_control(&owner(&ws.id, &actor), &id, RolloutControl::Resume).await.unwrap_err();
    assert_eq!(again.to_string(), "cannot resume a rollout that is cancelled");
}

async fn a_lease_has_one_holder_among_16_racers_and_expires_to_another(store: Store) {
    let mut racers = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        racers.push(tokio::spawn(async move {
            store.acquire_lease("rollout:x", &format!("replica-{i}"), Duration::from_secs(60)).await.unwrap()
        }));
    }
    let mut held = Vec::new();
    for racer in racers {
        held.extend(racer.await.unwrap());
    }
    assert_eq!(held.len(), 1, "exactly one holder: {held:?}");
    let first = held[0];
    // Whoever holds it renews with the same token; the others are refused.
    let mut holder = None;
    for i in 0..16 {
        let owner = format!("replica-{i}");
        if store.acquire_lease("rollout:x", &owner, Duration::from_secs(60)).await.unwrap().is_some() {
            holder = Some(owner);
        }
    }
    let holder = holder.expect("a holder");
    assert_eq!(store.acquire_lease("rollout:x", &holder, Duration::from_secs(60)).await.unwrap(), Some(first));
    // Expired: another owner takes it, with a greater token.
    store.acquire_lease("rollout:y", "a", Duration::from_millis(1)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let taken = store.acquire_lease("rollout:y", "b", Duration::from_secs(60)).await.unwrap().unwrap();
    assert_eq!(taken, 2);
    assert_eq!(store.acquire_lease("rollout:y", "a", Duration::from_secs(60)).await.unwrap(), None);
    store.release_lease("rollout:y", "a").await.unwrap();
    assert_eq!(
        store.acquire_lease("rollout:y", "a", Duration::from_secs(60)).await.unwrap(),
        None,
        "not a's to release"
    );
    store.release_lease("rollout:y", "b").await.unwrap();
    assert!(store.acquire_lease("rollout:y", "a", Duration::from_secs(60)).await.unwrap().is_some());
}

async fn completing_moves_the_pin_once_under_8_racing_engines(store: Store) {
    let (ws, actor) = world(&store, 1).await;
    let id = store.create_rollout(&owner(&ws.id, &actor), &rollout(1, &["apply"])).await.unwrap().rollout.id;
    assert!(store.advance_rollout(&id, RolloutState::Pending, RolloutState::Running).await.unwrap());
    let mut racers = Vec::new();
    for _ in 0..8 {
        let (store, id) = (store.clone(), id.clone());
        racers.push(tokio::spawn(async move {
            store.advance_rollout(&id, RolloutState::Running, RolloutState::Completed).await.unwrap()
        }));
    }
    let mut won = 0;
    for racer in racers {
        won += usize::from(racer.await.unwrap());
    }
    assert_eq!(won, 1);
    let detail = store.get_rollout(&ws.id, &id).await.unwrap();
    assert_eq!(detail.rollout.state, RolloutState::Completed);
    let history = store.pin_history(&ws.id, &key("k"), &env("prod"), None, PageLimit::default()).await.unwrap();
    let versions: Vec<i64> = history.items.iter().map(|p| p.version).collect();
    assert_eq!(versions, [2, 1], "the pin moved once, to the rolled-out version");
    assert_eq!(detail.rollout.pinned_revision, Some(history.items[0].revision));
    assert!(history.items[0].reason.contains(&id));
    // Terminal is forever.
    assert!(!store.advance_rollout(&id, RolloutState::Running, RolloutState::Failed).await.unwrap());
}

async fn a_task_result_is_recorded_once_under_its_run_token(store: Store) {
    let (ws, actor) = world(&store, 1).await;
    let made = store.create_rollout(&owner(&ws.id, &actor), &rollout(1, &["apply"])).await.unwrap();
    let task = &made.operations[0].tasks[0];
    let deadline = Timestamp::from_micros(Timestamp::now().as_micros() + 60_000_000);
    let started = store.start_task(&task.id, 1, Some(deadline)).await.unwrap().expect("started");
    assert_eq!((started.state, started.attempts, started.run_token), (TaskState::Running, 1, Some(1)));
    assert!(store.start_task(&task.id, 1, Some(deadline)).await.unwrap().is_none(), "already running");
    let ok = TaskOutcome { succeeded: true, exit_code: Some(0), error: None, log: "done\n".into() };
    assert!(!store.finish_task(&task.id, 2, &ok).await.unwrap(), "another token's result is refused");
    assert!(store.finish_task(&task.id, 1, &ok).await.unwrap());
    assert!(!store.finish_task(&task.id, 1, &ok).await.unwrap(), "recorded once");
    let after = store.get_rollout(&ws.id, &made.rollout.id).await.unwrap();
    let task = &after.operations[0].tasks[0];
    assert_eq!((task.state, task.exit_code, task.log_bytes), (TaskState::Completed, Some(0), 5));
    let log = store.rollout_task_log(&ws.id, &made.rollout.id, &task.id, None).await.unwrap();
    assert_eq!(log, "done\n");
    assert!(matches!(
        store.rollout_task_log(&ws.id, &made.rollout.id, "nope", None).await,
        Err(StoreError::NotFound(message)) if message == "task \"nope\""
    ));
}

async fn a_crashed_run_is_taken_over_only_after_its_deadline(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let made = store.create_rollout(&owner(&ws.id, &actor), &rollout(1, &["apply"])).await.unwrap();
    let (a, b) = (&made.operations[0].tasks[0], &made.operations[1].tasks[0]);
    let future = Timestamp::from_micros(Timestamp::now().as_micros() + 60_000_000);
    let past = Timestamp::from_micros(Timestamp::now().as_micros() - 1);
    store.start_task(&a.id, 1, Some(future)).await.unwrap().unwrap();
    store.start_task(&b.id, 1, Some(past)).await.unwrap().unwrap();
    // A new lease holder (token 2): a run that may still be executing is left alone.
    assert!(store.start_task(&a.id, 2, Some(future)).await.unwrap().is_none());
    let again = store.start_task(&b.id, 2, Some(future)).await.unwrap().expect("taken over");
    assert_eq!(
        (again.attempts, again.run_token, again.idempotency_key.as_str()),
        (2, Some(2), b.idempotency_key.as_str())
    );
    // The old run's late result is refused; the new run's is recorded.
    let failed = TaskOutcome { succeeded: false, exit_code: Some(1), error: Some("exit 1".into()), log: String::new() };
    assert!(!store.finish_task(&b.id, 1, &failed).await.unwrap());
    assert!(store.finish_task(&b.id, 2, &failed).await.unwrap());
    let _ = ws;
}

async fn webhook_secrets_stored_in_plain_text_are_sealed_once(store: Store) {
    use cutover_domain::secrets::SecretKey;
    let (ws, actor) = world(&store, 2).await;
    // As an earlier version stored it: the secret itself.
    let legacy = ExecutorSpec::Webhook {
        url: "https://deploy.example/hook".into(),
        secret: serde_json::from_str("\"plain-secret-1\"").unwrap(),
        timeout_seconds: 10,
    };
    let id = store
        .create_rollout(&owner(&ws.id, &actor), &NewRollout { executor: legacy, ..rollout(1, &["apply"]) })
        .await
        .unwrap()
        .rollout
        .id;
    let key = SecretKey::generate();
    assert_eq!(store.seal_plain_webhook_secrets(|plain| key.seal(plain)).await.unwrap(), 2, "one per target");
    assert_eq!(store.seal_plain_webhook_secrets(|plain| key.seal(plain)).await.unwrap(), 0, "already sealed");
    for operation in store.rollout_for_engine(&id).await.unwrap().operations {
        let ExecutorSpec::Webhook { secret, url, .. } = operation.executor else { panic!("a webhook") };
        assert!(secret.is_sealed());
        assert_eq!(
            (key.open(&secret).unwrap().as_str(), url.as_str()),
            ("plain-secret-1", "https://deploy.example/hook")
        );
    }
}

async fn each_attempt_of_a_task_keeps_its_own_log_a_stopped_one_included(store: Store) {
    let (ws, actor) = world(&store, 1).await;
    let made = store.create_rollout(&owner(&ws.id, &actor), &rollout(1, &["apply"])).await.unwrap();
    let (rollout_id, task) = (&made.rollout.id, &made.operations[0].tasks[0].id);
    store.start_task(task, 1, None).await.unwrap().expect("first run");
    assert!(store.stop_task(task, Some(1), TaskState::Stopped, Some("first, killed\n")).await.unwrap());
    assert_eq!(store.rollout_task_log(&ws.id, rollout_id, task, None).await.unwrap(), "first, killed\n");
    let second = store.start_task(task, 1, None).await.unwrap().expect("second run");
    assert_eq!((second.attempts, second.log_bytes), (2, 0), "a new attempt starts with an empty log");
    let failed = TaskOutcome { succeeded: false, exit_code: Some(1), error: Some("no".into()), log: "second\n".into() };
    assert!(store.finish_task(task, 1, &failed).await.unwrap());
    let log = |attempt| store.rollout_task_log(&ws.id, rollout_id, task, attempt);
    assert_eq!(log(None).await.unwrap(), "second\n");
    assert_eq!(log(Some(1)).await.unwrap(), "first, killed\n");
    assert_eq!(log(Some(2)).await.unwrap(), "second\n");
    assert!(matches!(
        log(Some(3)).await,
        Err(StoreError::NotFound(message)) if message == format!("attempt 3 of task {task:?} (it has run 2 times)")
    ));
}

async fn a_rollout_that_ends_leaves_no_operation_or_task_looking_alive(store: Store) {
    let (ws, actor) = world(&store, 3).await;
    let made = store.create_rollout(&owner(&ws.id, &actor), &rollout(2, &["drain", "apply"])).await.unwrap();
    let id = &made.rollout.id;
    let [first, second, _] = &made.operations[..] else { panic!("three operations") };
    for operation in [first, second] {
        assert!(
            store.advance_operation(&operation.id, OperationState::Pending, OperationState::Running).await.unwrap()
        );
        store.start_task(&operation.tasks[0].id, 1, None).await.unwrap().expect("started");
    }
    let failed = TaskOutcome { succeeded: false, exit_code: Some(1), error: Some("no".into()), log: String::new() };
    assert!(store.finish_task(&second.tasks[0].id, 1, &failed).await.unwrap());
    assert!(store.advance_operation(&second.id, OperationState::Running, OperationState::Failed).await.unwrap());
    assert!(store.advance_rollout(id, RolloutState::Pending, RolloutState::Failed).await.unwrap());
    let states = |detail: &cutover_store::RolloutDetail| -> Vec<(OperationState, Vec<TaskState>)> {
        detail.operations.iter().map(|o| (o.state, o.tasks.iter().map(|t| t.state).collect())).collect()
    };
    let after = store.get_rollout(&ws.id, id).await.unwrap();
    use {OperationState as O, TaskState as T};
    assert_eq!(
        states(&after),
        [
            (O::Stopping, vec![T::Running, T::Pending]),
            (O::Failed, vec![T::Failed, T::Cancelled]),
            (O::Cancelled, vec![T::Cancelled, T::Cancelled]),
        ],
        "the running one is being stopped; the rest ended with the rollout"
    );
    // Its run stopped, the running operation ends cancelled, and so does every task it had left.
    assert!(store.stop_task(&first.tasks[0].id, Some(1), TaskState::Stopped, None).await.unwrap());
    assert!(store.advance_operation(&first.id, OperationState::Stopping, OperationState::Cancelled).await.unwrap());
    let after = store.get_rollout(&ws.id, id).await.unwrap();
    assert_eq!(states(&after)[0], (O::Cancelled, vec![T::Cancelled, T::Cancelled]));
}
