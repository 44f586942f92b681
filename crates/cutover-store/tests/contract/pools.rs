use std::collections::HashSet;

use cutover_domain::pools::{
    AgentLifecycle, Blocked, BuildTransition, DesiredCount, InstancePhase, JobStatus, PoolName, PoolSettings,
    PresetParameters, plan,
};
use cutover_domain::{ArtifactKey, Timestamp, ValueType};
use cutover_store::{
    Actor, BuildOutcome, Caller, NewArtifact, NewPool, PinAuthority, PoolChanges, Store, StoreError, Workspace,
};
use serde_json::json;

use crate::environments::new_env;
use crate::{env, key, owner, setup, v};

cutover_store::contract_tests!(
    the_running_listing_holds_exactly_the_running_instance_of_the_seed_fixtures,
    sixty_four_concurrent_claims_on_32_ready_instances_hand_out_each_once,
    a_claimed_instance_is_never_deleted_and_a_deleting_one_never_claimed,
    pools_are_created_changed_paused_and_deleted_with_names_authority_and_audit,
    a_pass_reads_one_snapshot_and_the_plan_follows_it,
    a_build_result_is_recorded_once_under_its_run_token,
    agents_report_only_with_their_instance_token,
);

const OWNER: PinAuthority = PinAuthority { owner: true, limited_to: Vec::new() };

fn ok() -> BuildOutcome {
    BuildOutcome { succeeded: true, error: None, log: "done".into() }
}

fn failed() -> BuildOutcome {
    BuildOutcome { succeeded: false, error: Some("exited with status 1".into()), log: String::new() }
}

fn later() -> Timestamp {
    Timestamp::from_micros(Timestamp::now().as_micros() + 600_000_000)
}

/// Artifact `k` with versions 1 and 2 (v1 pinned in `prod`).
async fn world(store: &Store) -> (Workspace, Actor, Caller) {
    let (ws, actor) = setup(store).await;
    let artifact = NewArtifact {
        key: ArtifactKey::parse("k").unwrap(),
        value_type: ValueType::String,
        kind: "template".into(),
        description: String::new(),
    };
    store.create_artifact(&owner(&ws.id, &actor), &artifact).await.unwrap();
    for n in 1..=2 {
        store.create_version(&owner(&ws.id, &actor), &key("k"), json!(format!("v{n}")), "").await.unwrap();
    }
    store.create_environment(&owner(&ws.id, &actor), &new_env("prod"), 100).await.unwrap();
    let caller = Caller::new(&ws.id, &actor, &OWNER);
    store.pin(&caller, &key("k"), &env("prod"), Some(v(1)), None, "test").await.unwrap();
    (ws, actor, caller)
}

fn new_pool(name: &str, instances: u32, agents: &[&str]) -> NewPool {
    NewPool {
        name: PoolName::parse(name).unwrap(),
        artifact: key("k"),
        environment: env("prod"),
        parameters: PresetParameters::parse(json!({"size": "large"})).unwrap(),
        agents: agents.iter().map(|a| a.to_string()).collect(),
        executor: "provision".into(),
        timeout_seconds: 60,
        desired: DesiredCount::fixed(instances).unwrap(),
        settings: PoolSettings::default(),
    }
}

/// A new instance of `pool` whose start build ran to `outcome`; returns (instance, build) ids.
async fn built(store: &Store, pool_id: &str, outcome: Option<BuildOutcome>) -> String {
    let id = store.create_pool_instance(pool_id, 1).await.unwrap();
    if let Some(outcome) = outcome {
        let work = store.pool_work(pool_id, Timestamp::now()).await.unwrap();
        let build = work.open_builds.iter().find(|b| b.instance_id == id).unwrap().id.clone();
        let run = store.start_pool_build(&build, 1, later()).await.unwrap().expect("a pending build starts");
        assert_eq!(run.transition, BuildTransition::Start);
        assert!(store.finish_pool_build(&build, 1, &outcome).await.unwrap());
    }
    id
}

/// Runs the instance's open delete build to `outcome`.
async fn run_delete(store: &Store, pool_id: &str, instance: &str, outcome: BuildOutcome) {
    let work = store.pool_work(pool_id, Timestamp::now()).await.unwrap();
    let build = work.open_builds.iter().find(|b| b.instance_id == instance).unwrap().id.clone();
    let run = store.start_pool_build(&build, 1, later()).await.unwrap().unwrap();
    assert_eq!(run.transition, BuildTransition::Delete);
    assert!(store.finish_pool_build(&build, 1, &outcome).await.unwrap());
}

async fn the_running_listing_holds_exactly_the_running_instance_of_the_seed_fixtures(store: Store) {
    let (ws, _, caller) = world(&store).await;
    let pool = store.create_pool(&caller, &new_pool("runners", 0, &[])).await.unwrap();
    let other = store.create_pool(&caller, &new_pool("others", 0, &[])).await.unwrap();

    let running = built(&store, &pool.id, Some(ok())).await;
    // Stopped: a succeeded start, then a succeeded stop (no API makes one: laid out by hand).
    let stopped = built(&store, &pool.id, Some(ok())).await;
    let sql = format!(
        "INSERT INTO pool_builds (id, instance_id, pool_id, number, transition, status, idempotency_key, created_at)
         VALUES ('stop-{stopped}', '{stopped}', '{}', 2, 'stop', 'succeeded', 'stop', 1)",
        pool.id
    );
    assert_eq!(store.execute_for_tests(&sql).await.unwrap(), 1);
    // The instance's pointer to its latest build moves with the build, as the store's own
    // inserts do (migration 0014).
    let sql =
        format!("UPDATE pool_instances SET latest_build_id = 'stop-{stopped}', ready_at = NULL WHERE id = '{stopped}'");
    assert_eq!(store.execute_for_tests(&sql).await.unwrap(), 1);
    let _failed = built(&store, &pool.id, Some(failed())).await;
    let canceled = built(&store, &pool.id, None).await;
    assert!(store.cancel_pool_start(&canceled).await.unwrap());
    let deleted = built(&store, &pool.id, Some(ok())).await;
    assert!(store.request_pool_delete(&pool.id, &deleted, "test").await.unwrap());
    run_delete(&store, &pool.id, &deleted, ok()).await;
    let claimed = built(&store, &pool.id, Some(ok())).await;
    let _elsewhere = built(&store, &other.id, Some(ok())).await;
    // The claim takes the oldest ready instance: `running`. Claim it back out of the way by
    // claiming twice and keeping the second for the fixture.
    let first = store.claim_pool_instance(&caller, "runners").await.unwrap().unwrap();
    assert_eq!(first.instance.id, running);
    assert_eq!(first.instance.claimed_by.as_ref().map(|a| a.name.as_str()), Some(caller.actor.name.as_str()));
    let second = store.claim_pool_instance(&caller, "runners").await.unwrap().unwrap();
    assert_eq!(second.instance.id, claimed);
    let running = built(&store, &pool.id, Some(ok())).await;

    let listed = store.running_pool_instances(&ws.id, "runners").await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, [running.as_str()]);
    let only = &listed[0];
    assert_eq!(
        (only.version, only.ready, only.transition, only.status),
        (Some(1), true, BuildTransition::Start, JobStatus::Succeeded)
    );
    assert_eq!(only.parameters, Some(json!({"size": "large"})));
    assert_eq!(only.pool, "runners");

    // Every live instance the pool owns, by id: the stopped, failed and canceled ones too.
    let all: Vec<String> =
        store.list_pool_instances(&ws.id, "runners").await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(!all.contains(&deleted) && !all.contains(&claimed));
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "ordered by id");
    // The claimed one is still readable by id, with its claimer and builds.
    let detail = store.get_pool_instance(&ws.id, &claimed).await.unwrap();
    assert!(detail.instance.claimed_at.is_some());
    assert_eq!(detail.builds.len(), 1);
    let gone = store.get_pool_instance(&ws.id, &deleted).await.unwrap();
    assert!(gone.instance.deleted_at.is_some());
    assert_eq!(
        gone.builds.iter().map(|b| b.transition).collect::<Vec<_>>(),
        [BuildTransition::Delete, BuildTransition::Start]
    );
}

async fn sixty_four_concurrent_claims_on_32_ready_instances_hand_out_each_once(store: Store) {
    let (_, _, caller) = world(&store).await;
    let pool = store.create_pool(&caller, &new_pool("runners", 0, &[])).await.unwrap();
    let mut made = HashSet::new();
    for _ in 0..32 {
        made.insert(built(&store, &pool.id, Some(ok())).await);
    }
    let mut claims = Vec::new();
    for _ in 0..64 {
        let (store, caller) = (store.clone(), caller.clone());
        claims.push(tokio::spawn(async move { store.claim_pool_instance(&caller, "runners").await }));
    }
    let mut handed = Vec::new();
    let mut empty = 0;
    for claim in claims {
        match claim.await.unwrap().expect("no claim fails") {
            Some(detail) => handed.push(detail.instance.id),
            None => empty += 1,
        }
    }
    let distinct: HashSet<&String> = handed.iter().collect();
    assert_eq!((handed.len(), distinct.len(), empty), (32, 32, 32));
    assert!(handed.iter().all(|id| made.contains(id)));
}

async fn a_claimed_instance_is_never_deleted_and_a_deleting_one_never_claimed(store: Store) {
    let (_, _, caller) = world(&store).await;
    let pool = store.create_pool(&caller, &new_pool("runners", 0, &[])).await.unwrap();
    let a = built(&store, &pool.id, Some(ok())).await;
    let b = built(&store, &pool.id, Some(ok())).await;
    let claimed = store.claim_pool_instance(&caller, "runners").await.unwrap().unwrap();
    assert_eq!(claimed.instance.id, a);
    assert!(!store.request_pool_delete(&pool.id, &a, "extraneous").await.unwrap(), "a claim reserves");
    assert!(store.request_pool_delete(&pool.id, &b, "extraneous").await.unwrap());
    assert!(!store.request_pool_delete(&pool.id, &b, "again").await.unwrap(), "once");
    assert!(store.claim_pool_instance(&caller, "runners").await.unwrap().is_none(), "b is being deleted");

    // Racing: 16 claims against 16 delete requests over 8 instances; each goes one way.
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..8 {
            ids.push(built(&store, &pool.id, Some(ok())).await);
        }
        ids
    };
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (store, caller, pool_id, id) = (store.clone(), caller.clone(), pool.id.clone(), ids[i % 8].clone());
        tasks.push(tokio::spawn(async move {
            let claimed = store.claim_pool_instance(&caller, "runners").await.unwrap().map(|d| d.instance.id);
            let deleted = store.request_pool_delete(&pool_id, &id, "race").await.unwrap().then_some(id);
            (claimed, deleted)
        }));
    }
    let (mut claimed, mut deleted) = (HashSet::new(), HashSet::new());
    for task in tasks {
        let (c, d) = task.await.unwrap();
        if let Some(c) = c {
            assert!(claimed.insert(c), "claimed twice");
        }
        if let Some(d) = d {
            assert!(deleted.insert(d), "deleted twice");
        }
    }
    assert!(claimed.is_disjoint(&deleted), "claimed {claimed:?}, deleted {deleted:?}");
    assert_eq!(claimed.len() + deleted.len(), 8);
}

async fn pools_are_created_changed_paused_and_deleted_with_names_authority_and_audit(store: Store) {
    let (ws, actor, caller) = world(&store).await;
    let pool = store.create_pool(&caller, &new_pool("runners", 2, &["main"])).await.unwrap();
    assert_eq!((pool.name.as_str(), pool.artifact.as_str(), pool.environment.as_str()), ("runners", "k", "prod"));
    assert_eq!(pool.agents, ["main"]);
    let taken = store.create_pool(&caller, &new_pool("runners", 1, &[])).await.unwrap_err();
    assert!(matches!(taken, StoreError::Conflict { .. }), "{taken:?}");
    let mut twice = new_pool("twice", 1, &["a", "a"]);
    assert!(matches!(store.create_pool(&caller, &twice).await.unwrap_err(), StoreError::Invalid(_)));
    twice.agents = vec![];
    twice.environment = env("nowhere");
    assert!(matches!(store.create_pool(&caller, &twice).await.unwrap_err(), StoreError::NotFound(_)));

    // A protected environment: an editor not scoped to it may not change its pools.
    let protected = cutover_store::NewEnvironment { protected: true, ..new_env("live") };
    store.create_environment(&owner(&ws.id, &actor), &protected, 100).await.unwrap();
    let editor = Caller::new(&ws.id, &actor, &PinAuthority { owner: false, limited_to: Vec::new() });
    let refused =
        store.create_pool(&editor, &NewPool { environment: env("live"), ..new_pool("live-runners", 1, &[]) }).await;
    assert!(matches!(refused.unwrap_err(), StoreError::Forbidden(_)));
    let scoped = Caller::new(&ws.id, &actor, &PinAuthority { owner: false, limited_to: vec!["live".into()] });
    store
        .create_pool(&scoped, &NewPool { environment: env("live"), ..new_pool("live-runners", 1, &[]) })
        .await
        .unwrap();
    assert!(matches!(
        store.set_pool_paused(&editor, "live-runners", true).await.unwrap_err(),
        StoreError::Forbidden(_)
    ));

    let changes = PoolChanges { desired: Some(DesiredCount::fixed(5).unwrap()), ..PoolChanges::default() };
    let changed = store.update_pool(&caller, "runners", &changes).await.unwrap();
    assert_eq!(changed.desired.instances, 5);
    assert!(store.set_pool_paused(&caller, "runners", true).await.unwrap().paused);
    let status = store.pool_status(&ws.id, "runners").await.unwrap();
    assert_eq!((status.version, status.counts.desired, status.blocked), (Some(1), 5, Some(Blocked::Paused)));
    assert!(!store.set_pool_paused(&caller, "runners", false).await.unwrap().paused);

    // Another workspace sees none of it.
    let (other, _, _) = store
        .create_workspace(&owner(&ws.id, &actor), &cutover_domain::WorkspaceName::parse("other").unwrap(), "o")
        .await
        .unwrap();
    assert!(matches!(store.pool_status(&other.id, "runners").await.unwrap_err(), StoreError::NotFound(_)));
    assert!(store.list_pools(&other.id).await.unwrap().is_empty());

    store.delete_pool(&caller, "runners").await.unwrap();
    assert_eq!(
        store.list_pools(&ws.id).await.unwrap().iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["live-runners"]
    );
    store.create_pool(&caller, &new_pool("runners", 1, &[])).await.expect("the name is free again");

    let filter =
        cutover_store::AuditFilter { object_type: Some(cutover_domain::AuditObject::Pool), ..Default::default() };
    let events = store.list_audit(&ws.id, &filter, None, cutover_domain::PageLimit::default()).await.unwrap();
    let actions: Vec<&str> = events.items.iter().map(|e| e.action.as_str()).collect();
    for action in ["pool.create", "pool.update", "pool.pause", "pool.resume", "pool.delete"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

async fn a_pass_reads_one_snapshot_and_the_plan_follows_it(store: Store) {
    let (ws, _, caller) = world(&store).await;
    let pool = store.create_pool(&caller, &new_pool("runners", 2, &["main"])).await.unwrap();
    let work = store.pool_work(&pool.id, Timestamp::now()).await.unwrap();
    assert_eq!((work.snapshot.desired, work.snapshot.version), (2, Some(1)));
    assert_eq!(plan(&work.snapshot).create, 2);

    // One instance starting (not ready: its agent reports nothing yet).
    let id = built(&store, &pool.id, Some(ok())).await;
    let work = store.pool_work(&pool.id, Timestamp::now()).await.unwrap();
    assert_eq!(work.snapshot.instances.len(), 1);
    assert_eq!(work.snapshot.instances[0].phase, InstancePhase::Running { ready: false });
    assert!(store.claim_pool_instance(&caller, "runners").await.unwrap().is_none(), "not ready: not handed out");
    assert_eq!(plan(&work.snapshot).create, 1);

    // Two failed starts in a row: backoff after the last build.
    built(&store, &pool.id, Some(failed())).await;
    built(&store, &pool.id, Some(failed())).await;
    let work = store.pool_work(&pool.id, Timestamp::now()).await.unwrap();
    assert_eq!(work.snapshot.failures.failed_in_a_row, 2);
    assert!(matches!(plan(&work.snapshot).blocked, Some(Blocked::Backoff { .. })));
    // A third: the hard limit (3 by default), shown by the status too.
    built(&store, &pool.id, Some(failed())).await;
    let status = store.pool_status(&ws.id, "runners").await.unwrap();
    assert_eq!((status.failures, status.blocked), (3, Some(Blocked::FailureLimit { failures: 3 })));
    let filter =
        cutover_store::AuditFilter { object_type: Some(cutover_domain::AuditObject::Pool), ..Default::default() };
    let events = store.list_audit(&ws.id, &filter, None, cutover_domain::PageLimit::default()).await.unwrap();
    let limits: Vec<_> = events.items.iter().filter(|e| e.action == "pool.failure_limit").collect();
    assert_eq!(limits.len(), 1, "said once");
    assert_eq!(limits[0].after, Some(json!({"version": 1, "failures": 3})));
    // Resume forgets them.
    store.set_pool_paused(&caller, "runners", false).await.unwrap();
    assert_eq!(store.pool_status(&ws.id, "runners").await.unwrap().failures, 0);

    // A new version pinned: the running v1 instance is outdated, creates are for v2.
    store.pin(&caller, &key("k"), &env("prod"), Some(v(2)), None, "move").await.unwrap();
    let work = store.pool_work(&pool.id, Timestamp::now()).await.unwrap();
    assert_eq!(work.snapshot.version, Some(2));
    let planned = plan(&work.snapshot);
    assert_eq!(planned.create, 2);
    assert!(!planned.delete.contains(&id), "the old one stays until new ones are ready");
}

async fn a_build_result_is_recorded_once_under_its_run_token(store: Store) {
    let (ws, _, caller) = world(&store).await;
    let pool = store.create_pool(&caller, &new_pool("runners", 1, &[])).await.unwrap();
    let id = store.create_pool_instance(&pool.id, 1).await.unwrap();
    let build = store.pool_work(&pool.id, Timestamp::now()).await.unwrap().open_builds[0].id.clone();
    let run = store.start_pool_build(&build, 7, later()).await.unwrap().unwrap();
    assert_eq!((run.instance_id.as_str(), run.version, run.attempt), (id.as_str(), Some(1), 1));
    assert_eq!(run.idempotency_key, format!("pool-instance/{id}/build/1"));
    assert!(store.start_pool_build(&build, 8, later()).await.unwrap().is_none(), "its run's deadline has not passed");
    assert!(!store.finish_pool_build(&build, 8, &ok()).await.unwrap(), "not the run's token");
    // A run whose replica died: taken over once its deadline passed, same key, a new attempt.
    let past = Timestamp::from_micros(Timestamp::now().as_micros() - 1);
    let sql = format!("UPDATE pool_builds SET run_deadline = {} WHERE id = '{build}'", past.as_micros());
    store.execute_for_tests(&sql).await.unwrap();
    let again = store.start_pool_build(&build, 8, later()).await.unwrap().unwrap();
    assert_eq!((again.attempt, again.idempotency_key.as_str()), (2, run.idempotency_key.as_str()));
    assert!(!store.finish_pool_build(&build, 7, &ok()).await.unwrap(), "the old run lost it");
    assert!(store.finish_pool_build(&build, 8, &ok()).await.unwrap());
    assert!(!store.finish_pool_build(&build, 8, &ok()).await.unwrap(), "once");
    let detail = store.get_pool_instance(&ws.id, &id).await.unwrap();
    assert_eq!((detail.builds[0].status, detail.builds[0].attempts), (JobStatus::Succeeded, 2));
    assert!(store.pool_work(&pool.id, Timestamp::now()).await.unwrap().open_builds.is_empty());
}

async fn agents_report_only_with_their_instance_token(store: Store) {
    let (ws, _, caller) = world(&store).await;
    let pool = store.create_pool(&caller, &new_pool("runners", 1, &["main", "sidecar"])).await.unwrap();
    let a = store.create_pool_instance(&pool.id, 1).await.unwrap();
    let b = store.create_pool_instance(&pool.id, 1).await.unwrap();
    let builds = store.pool_work(&pool.id, Timestamp::now()).await.unwrap().open_builds;
    let build_of = |instance: &str| builds.iter().find(|x| x.instance_id == instance).unwrap().id.clone();
    let run_a = store.start_pool_build(&build_of(&a), 1, later()).await.unwrap().unwrap();
    let run_b = store.start_pool_build(&build_of(&b), 1, later()).await.unwrap().unwrap();
    store.finish_pool_build(&build_of(&a), 1, &ok()).await.unwrap();
    let token_a = run_a.agent_token.hash();

    let reported = store.report_agent_state(&a, &token_a, "main", AgentLifecycle::Ready).await.unwrap();
    assert_eq!(reported.lifecycle, AgentLifecycle::Ready);
    let other = store.report_agent_state(&a, &run_b.agent_token.hash(), "main", AgentLifecycle::Ready).await;
    assert!(matches!(other.unwrap_err(), StoreError::Forbidden(_)), "b's token is not a's");
    // An agent the pool does not list registers with its first report, and counts from then on.
    store.report_agent_state(&a, &token_a, "gpu", AgentLifecycle::Starting).await.unwrap();
    let bad = store.report_agent_state(&a, &token_a, "Not A Name", AgentLifecycle::Ready).await;
    assert!(matches!(bad.unwrap_err(), StoreError::Invalid(_)), "a name is checked before it registers");
    store.report_agent_state(&a, &token_a, "sidecar", AgentLifecycle::Ready).await.unwrap();
    let running = store.running_pool_instances(&ws.id, "runners").await.unwrap();
    assert_eq!((running[0].ready, running[0].agents, running[0].agents_ready), (false, 3, 2), "gpu is starting");
    store.report_agent_state(&a, &token_a, "gpu", AgentLifecycle::Ready).await.unwrap();
    let running = store.running_pool_instances(&ws.id, "runners").await.unwrap();
    assert_eq!((running.len(), running[0].ready, running[0].agents, running[0].agents_ready), (1, true, 3, 3));
    let detail = store.get_pool_instance(&ws.id, &a).await.unwrap();
    assert_eq!(
        detail.agents.iter().map(|x| (x.name.as_str(), x.lifecycle)).collect::<Vec<_>>(),
        [("gpu", AgentLifecycle::Ready), ("main", AgentLifecycle::Ready), ("sidecar", AgentLifecycle::Ready)]
    );
    // Being deleted: no agent registers any more; deleting the instance revokes its token.
    assert!(store.request_pool_delete(&pool.id, &a, "test").await.unwrap());
    let late = store.report_agent_state(&a, &token_a, "late", AgentLifecycle::Ready).await;
    assert!(matches!(late.unwrap_err(), StoreError::NotFound(_)));
    run_delete(&store, &pool.id, &a, ok()).await;
    let revoked = store.report_agent_state(&a, &token_a, "main", AgentLifecycle::Off).await;
    assert!(matches!(revoked.unwrap_err(), StoreError::Forbidden(_)));
}
