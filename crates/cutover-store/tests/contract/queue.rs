//! The submit queue's storage: the active-batch membership (the four behaviours of
//! uber/submitqueue's `active_batch`, named as there), pruning, and the planner's actions applied
//! in transactions fenced by the lease.

use std::time::Duration;

use cutover_domain::queue::{
    Action, BatchState, Lane, Outcomes, Position, QueueName, QueueSettings, RequestState, plan,
};
use cutover_domain::rollouts::ExecutorSpec;
use cutover_domain::{ArtifactKey, PageLimit, Timestamp, ValueType};
use cutover_store::{
    Actor, Applied, BatchSpec, Caller, NewArtifact, NewChangeRequest, NewQueue, PinAuthority, RequestChange, Store,
    StoreError, Workspace,
};
use serde_json::json;

use crate::environments::new_env;
use crate::{env, key, owner, setup};

cutover_store::contract_tests!(
    active_listing_self_heals_terminal_membership,
    active_listing_skips_dangling_membership_without_deleting,
    create_keeps_membership_on_duplicate,
    create_keeps_membership_on_failed_insert,
    prune_removes_only_memberships_dangling_longer_than_the_age,
    a_request_is_validated_batched_checked_and_landed_in_one_transaction_with_its_history,
    a_submit_with_bad_content_or_rights_writes_nothing,
    a_failed_batch_is_split_and_its_culprit_refused_with_the_checks_output_while_the_rest_land,
    a_write_from_a_replica_that_lost_the_lease_is_refused,
);

/// A workspace with string artifacts `a`, `b`, `c`, a number artifact `n`, environment `prod`
/// and a queue `q` on it (checks reported by hand, batches formed at once).
async fn world(store: &Store) -> (Workspace, Caller, String) {
    let (ws, actor) = setup(store).await;
    let caller = owner(&ws.id, &actor);
    for (k, value_type) in
        [("a", ValueType::String), ("b", ValueType::String), ("c", ValueType::String), ("n", ValueType::Number)]
    {
        let artifact = NewArtifact {
            key: ArtifactKey::parse(k).unwrap(),
            value_type,
            kind: "config".into(),
            description: String::new(),
        };
        store.create_artifact(&caller, &artifact).await.unwrap();
    }
    store.create_environment(&caller, &new_env("prod"), 100).await.unwrap();
    let new = NewQueue {
        name: QueueName::parse("q").unwrap(),
        environment: env("prod"),
        settings: QueueSettings { max_wait_seconds: 0, max_batch_size: 4, ..QueueSettings::DEFAULT },
        executor: ExecutorSpec::Manual {},
    };
    let queue = store.create_queue(&caller, &new).await.unwrap();
    (ws, caller, queue.queue.id)
}

fn change(k: &str, content: serde_json::Value) -> RequestChange {
    RequestChange { artifact: key(k), content }
}

async fn submit(store: &Store, caller: &Caller, changes: Vec<RequestChange>) -> u64 {
    let new = NewChangeRequest { changes, message: "change".into(), hotfix: false };
    store.submit_change_request(caller, "q", &new).await.unwrap().id
}

async fn lease(store: &Store, queue_id: &str, owner: &str) -> Option<i64> {
    store.acquire_lease(&format!("queue:{queue_id}"), owner, Duration::from_secs(60)).await.unwrap()
}

fn spec(seq: u64, requests: &[u64]) -> BatchSpec {
    BatchSpec {
        position: Position { lane: Lane::Normal, seq, offset: 0 },
        requests: requests.to_vec(),
        suspect: false,
        depends_on: Vec::new(),
    }
}

fn later() -> Timestamp {
    Timestamp::from_micros(Timestamp::now().as_micros() + 600_000_000)
}

/// Runs the planner on the stored queue until it has nothing left to do, reporting every check:
/// it fails when its batch (with what it assumes lands ahead) holds a request in `broken`.
/// Returns the number of checks run.
async fn drive(store: &Store, queue_id: &str, token: i64, broken: &[u64]) -> usize {
    let mut checks = 0;
    for _ in 0..200 {
        let work = store.queue_work(queue_id).await.unwrap();
        let decided = plan(&work.view, &work.queue.settings.policy(), Timestamp::now());
        if decided.actions.is_empty() {
            return checks;
        }
        for action in &decided.actions {
            match store.apply_queue_action(queue_id, token, action, later()).await.unwrap() {
                Applied::Started(run) => {
                    checks += 1;
                    let bad = run.requests.iter().any(|r| broken.contains(r));
                    let output = if bad { format!("batch {} is broken", run.batch) } else { "ok".into() };
                    assert!(store.finish_queue_check(queue_id, run.check, Some(token), !bad, &output).await.unwrap());
                }
                Applied::Done => {}
                Applied::Fenced => panic!("the test holds the lease"),
            }
        }
    }
    panic!("the queue did not settle");
}

async fn active_listing_self_heals_terminal_membership(store: Store) {
    let (_ws, caller, queue) = world(&store).await;
    let r = submit(&store, &caller, vec![change("a", json!("x"))]).await;
    let batch = store.create_queue_batch(&queue, &spec(0, &[r])).await.unwrap();
    assert_eq!(store.active_batches(&queue).await.unwrap().batches.iter().map(|b| b.id).collect::<Vec<_>>(), [batch]);

    // The request is cancelled: its batch ends `cancelled` (terminal).
    store.cancel_change_request(&caller, "q", r).await.unwrap();
    let token = lease(&store, &queue, "test").await.unwrap();
    assert_eq!(drive(&store, &queue, token, &[]).await, 0);
    assert_eq!(store.queue_memberships(&queue).await.unwrap(), [batch], "a write does not clean the membership");

    let listing = store.active_batches(&queue).await.unwrap();
    assert!(listing.batches.is_empty(), "a terminal batch is not listed");
    assert_eq!(listing.terminal, [batch]);
    assert!(store.queue_memberships(&queue).await.unwrap().is_empty(), "the read removed the terminal membership");
    let all = store.list_queue_batches(&caller.workspace_id, "q", false, 10).await.unwrap();
    assert_eq!(all[0].state, BatchState::Cancelled, "the batch row itself stays as history");
}

async fn active_listing_skips_dangling_membership_without_deleting(store: Store) {
    let (_ws, _caller, queue) = world(&store).await;
    store.insert_queue_membership(&queue, 41).await.unwrap();
    let listing = store.active_batches(&queue).await.unwrap();
    assert!(listing.batches.is_empty());
    assert_eq!(listing.dangling, [41]);
    assert_eq!(store.queue_memberships(&queue).await.unwrap(), [41], "a create may be in flight: kept");
    // Its row arriving later makes it listed.
}

async fn create_keeps_membership_on_duplicate(store: Store) {
    let (_ws, caller, queue) = world(&store).await;
    let r1 = submit(&store, &caller, vec![change("a", json!("x"))]).await;
    let r2 = submit(&store, &caller, vec![change("b", json!("y"))]).await;
    let batch = store.create_queue_batch(&queue, &spec(0, &[r1])).await.unwrap();
    // A second insert under the same id (a retried create) fails and keeps the membership.
    let err = store.insert_queue_batch(&queue, batch, &spec(1, &[r2])).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(store.queue_memberships(&queue).await.unwrap(), [batch]);
    let listing = store.active_batches(&queue).await.unwrap();
    assert_eq!(listing.batches.len(), 1);
    assert_eq!(listing.batches[0].requests, [r1], "the first row stands");
    let request = store.get_change_request(&caller.workspace_id, "q", r2).await.unwrap();
    assert_eq!(request.state, RequestState::Validated, "the failed insert moved nothing");
}

async fn create_keeps_membership_on_failed_insert(store: Store) {
    let (_ws, caller, queue) = world(&store).await;
    let r = submit(&store, &caller, vec![change("a", json!("x"))]).await;
    // A request that does not exist makes the row's transaction fail after the membership is in.
    let err = store.create_queue_batch(&queue, &spec(0, &[r, 999])).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let memberships = store.queue_memberships(&queue).await.unwrap();
    assert_eq!(memberships.len(), 1, "the membership written first stays");
    let listing = store.active_batches(&queue).await.unwrap();
    assert!(listing.batches.is_empty());
    assert_eq!(listing.dangling, memberships);
    let request = store.get_change_request(&caller.workspace_id, "q", r).await.unwrap();
    assert_eq!(request.state, RequestState::Validated, "rolled back with the row");
}

async fn prune_removes_only_memberships_dangling_longer_than_the_age(store: Store) {
    let (_ws, caller, queue) = world(&store).await;
    let r = submit(&store, &caller, vec![change("a", json!("x"))]).await;
    let live = store.create_queue_batch(&queue, &spec(0, &[r])).await.unwrap();
    store.insert_queue_membership(&queue, 77).await.unwrap();
    assert_eq!(store.prune_queue_memberships(Duration::from_secs(600)).await.unwrap(), 0, "too young");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.prune_queue_memberships(Duration::from_millis(10)).await.unwrap(), 1);
    assert_eq!(store.queue_memberships(&queue).await.unwrap(), [live], "a membership with its row is never pruned");
}

async fn a_request_is_validated_batched_checked_and_landed_in_one_transaction_with_its_history(store: Store) {
    let (ws, caller, queue) = world(&store).await;
    let r = submit(&store, &caller, vec![change("a", json!("hello")), change("n", json!(42))]).await;
    let token = lease(&store, &queue, "test").await.unwrap();
    assert_eq!(drive(&store, &queue, token, &[]).await, 1);

    let request = store.get_change_request(&ws.id, "q", r).await.unwrap();
    assert_eq!(request.state, RequestState::Landed);
    let states: Vec<_> = request.history.iter().map(|t| t.to.as_str()).collect();
    assert_eq!(states, ["started", "validated", "batched", "processing", "landed"]);
    assert_eq!(request.history[0].actor, caller.actor.name);
    let versions = request.landed_versions.unwrap();
    assert_eq!((versions["a"], versions["n"]), (1, 1));
    for (k, content) in [("a", json!("hello")), ("n", json!(42))] {
        let pins = store.pin_history(&ws.id, &key(k), &env("prod"), None, PageLimit::default()).await.unwrap();
        assert_eq!(pins.items.len(), 1);
        assert_eq!(pins.items[0].version, 1);
        assert!(pins.items[0].reason.starts_with(&format!("queue q request {r}")), "{}", pins.items[0].reason);
        let version = store.get_version(&ws.id, &key(k), cutover_domain::VersionNumber::FIRST).await.unwrap();
        assert_eq!(version.content.as_json(), content.to_string());
    }
    assert!(store.active_batches(&queue).await.unwrap().batches.is_empty());
}

async fn a_submit_with_bad_content_or_rights_writes_nothing(store: Store) {
    let (ws, caller, _queue) = world(&store).await;
    let cases: Vec<(Vec<RequestChange>, &str)> = vec![
        (vec![], "changes"),
        (vec![change("n", json!("not a number"))], "changes[0].content"),
        (vec![change("a", json!("x")), change("a", json!("y"))], "changes[1].artifact"),
    ];
    for (changes, field) in cases {
        let new = NewChangeRequest { changes, message: "m".into(), hotfix: false };
        match store.submit_change_request(&caller, "q", &new).await.unwrap_err() {
            StoreError::Invalid(e) => assert_eq!(e.field(), field),
            other => panic!("{other:?}"),
        }
    }
    let new = NewChangeRequest { changes: vec![change("missing", json!("x"))], message: "m".into(), hotfix: false };
    assert!(matches!(store.submit_change_request(&caller, "q", &new).await, Err(StoreError::NotFound(_))));
    // A token limited to another environment may not land content in prod.
    let limited = Caller::new(
        &ws.id,
        &Actor { token_id: caller.actor.token_id.clone(), name: "ci".into() },
        &PinAuthority { owner: false, limited_to: vec!["staging".into()] },
    );
    let new = NewChangeRequest { changes: vec![change("a", json!("x"))], message: "m".into(), hotfix: false };
    assert!(matches!(store.submit_change_request(&limited, "q", &new).await, Err(StoreError::Forbidden(_))));
    assert!(store.list_change_requests(&ws.id, "q", false, 50).await.unwrap().is_empty(), "nothing written");
}

async fn a_failed_batch_is_split_and_its_culprit_refused_with_the_checks_output_while_the_rest_land(store: Store) {
    let (ws, caller, queue) = world(&store).await;
    let r1 = submit(&store, &caller, vec![change("a", json!("1"))]).await;
    let r2 = submit(&store, &caller, vec![change("a", json!("2"))]).await;
    let r3 = submit(&store, &caller, vec![change("b", json!("3"))]).await;
    let r4 = submit(&store, &caller, vec![change("a", json!("4"))]).await;
    let token = lease(&store, &queue, "test").await.unwrap();
    drive(&store, &queue, token, &[r2]).await;

    let state = |r| {
        let store = store.clone();
        let ws = ws.id.clone();
        async move { store.get_change_request(&ws, "q", r).await.unwrap() }
    };
    let culprit = state(r2).await;
    assert_eq!(culprit.state, RequestState::Error);
    assert!(culprit.error.as_deref().unwrap().contains("is broken"), "{:?}", culprit.error);
    for r in [r1, r3, r4] {
        assert_eq!(state(r).await.state, RequestState::Landed, "request {r}");
    }
    // Pin history of `a` is exactly the landed order, and never held the culprit's content.
    let pins = store.pin_history(&ws.id, &key("a"), &env("prod"), None, PageLimit::default()).await.unwrap();
    let mut reasons: Vec<_> = pins.items.iter().map(|p| p.reason.clone()).collect();
    reasons.reverse();
    assert_eq!(reasons.len(), 2);
    assert!(reasons[0].starts_with(&format!("queue q request {r1}")));
    assert!(reasons[1].starts_with(&format!("queue q request {r4}")));
    // The planner's view counts how the recent changes ended: the batch size follows it.
    let recent = store.queue_work(&queue).await.unwrap().view.recent;
    assert_eq!(recent, Outcomes { landed: 3, refused: 1 });
}

async fn a_write_from_a_replica_that_lost_the_lease_is_refused(store: Store) {
    let (_ws, caller, queue) = world(&store).await;
    let r = submit(&store, &caller, vec![change("a", json!("x"))]).await;
    let old = lease(&store, &queue, "replica-1").await.unwrap();
    // Replica 1 stalls past its lease; replica 2 takes over.
    store.acquire_lease(&format!("queue:{queue}"), "replica-1", Duration::ZERO).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let new = lease(&store, &queue, "replica-2").await.unwrap();
    assert!(new > old);
    let work = store.queue_work(&queue).await.unwrap();
    let decided = plan(&work.view, &work.queue.settings.policy(), Timestamp::now());
    let form = decided.actions.iter().find(|a| matches!(a, Action::Form { .. })).expect("a batch forms");
    assert!(matches!(store.apply_queue_action(&queue, old, form, later()).await.unwrap(), Applied::Fenced));
    assert!(store.queue_memberships(&queue).await.unwrap().is_empty(), "nothing written, not even a membership");
    assert!(matches!(store.apply_queue_action(&queue, new, form, later()).await.unwrap(), Applied::Done));
    let request = store.get_change_request(&caller.workspace_id, "q", r).await.unwrap();
    assert_eq!(request.state, RequestState::Batched);
}
