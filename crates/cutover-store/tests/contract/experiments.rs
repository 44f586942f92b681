use cutover_domain::{ArtifactKey, ExperimentAction, ExperimentStatus, PageLimit, ValueType};
use cutover_store::{
    Actor, AuditFilter, ExperimentChanges, ExperimentSpec, NewArtifact, PinAuthority, Store, StoreError, Workspace,
};
use serde_json::json;

use crate::environments::new_env;
use crate::{env, key, owner, setup, v};

cutover_store::contract_tests!(
    an_experiment_walks_its_lifecycle_with_timestamps_set_by_the_domain,
    illegal_transitions_conflict_naming_the_current_status,
    completing_with_a_winner_pins_it_in_the_same_transaction,
    soft_delete_keeps_an_experiment_readable_but_hides_it_from_lists,
    one_active_experiment_per_environment_holds_under_16_concurrent_creates,
    variants_must_be_versions_of_the_artifact,
    experiments_are_scoped_to_their_workspace,
    the_database_refuses_a_second_active_experiment,
    a_corrupt_coverage_fails_closed_instead_of_exposing_everyone,
    the_resolve_snapshot_is_one_revision_of_everything,
);

/// An artifact `k` with `versions` versions, environments `dev` and `prod`, version 1 pinned in prod.
pub async fn world(store: &Store, versions: i64) -> (Workspace, Actor) {
    let (ws, actor) = setup(store).await;
    let artifact = NewArtifact {
        key: ArtifactKey::parse("k").unwrap(),
        value_type: ValueType::String,
        kind: "config".into(),
        description: String::new(),
    };
    store.create_artifact(&owner(&ws.id, &actor), &artifact).await.unwrap();
    for n in 1..=versions {
        store.create_version(&owner(&ws.id, &actor), &key("k"), json!(format!("v{n}")), "").await.unwrap();
    }
    for name in ["dev", "prod"] {
        store.create_environment(&owner(&ws.id, &actor), &new_env(name), 100).await.unwrap();
    }
    store.pin(&owner(&ws.id, &actor), &key("k"), &env("prod"), Some(v(1)), None, "test").await.unwrap();
    (ws, actor)
}

pub fn spec(treatments: &[i64]) -> ExperimentSpec {
    ExperimentSpec {
        name: "checkout copy".into(),
        hypothesis: "v2 converts better".into(),
        treatments: treatments.to_vec(),
        primary_metric: "checkout.completed".into(),
        ..ExperimentSpec::default()
    }
}

pub async fn act(
    store: &Store,
    ws: &Workspace,
    actor: &Actor,
    id: &str,
    action: ExperimentAction,
) -> Result<cutover_store::ExperimentOutcome, StoreError> {
    store.experiment_action(&owner(&ws.id, actor), id, action, None).await
}

async fn an_experiment_walks_its_lifecycle_with_timestamps_set_by_the_domain(store: Store) {
    let (ws, actor) = world(&store, 3).await;
    let made = store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("prod"), &spec(&[2, 3])).await.unwrap();
    assert_eq!(made.variants.versions(), [1, 2, 3], "the control defaults to the pinned version");
    assert!((made.variants.weights().iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert_eq!(made.coverage.get(), 1.0);
    assert!(!made.seed.is_empty());
    assert_eq!(made.lifecycle.status(), ExperimentStatus::Created);
    assert_eq!(made.lifecycle.created_at(), made.lifecycle.updated_at());
    assert_eq!((made.lifecycle.started_at(), made.lifecycle.ended_at()), (None, None));

    let started = act(&store, &ws, &actor, &made.id, ExperimentAction::Start).await.unwrap().experiment;
    assert_eq!(started.lifecycle.status(), ExperimentStatus::Running);
    let started_at = started.lifecycle.started_at().expect("started_at set on start");
    let paused = act(&store, &ws, &actor, &made.id, ExperimentAction::Pause).await.unwrap().experiment;
    assert_eq!(paused.lifecycle.status(), ExperimentStatus::Paused);
    let resumed = act(&store, &ws, &actor, &made.id, ExperimentAction::Resume).await.unwrap().experiment;
    assert_eq!(resumed.lifecycle.status(), ExperimentStatus::Running);
    assert_eq!(resumed.lifecycle.started_at(), Some(started_at), "started_at is set by the first start only");
    let done = act(&store, &ws, &actor, &made.id, ExperimentAction::Complete).await.unwrap();
    assert!(done.pinned.is_none());
    let done = done.experiment;
    assert_eq!(done.lifecycle.status(), ExperimentStatus::Completed);
    assert!(done.lifecycle.ended_at().is_some());
    assert!(done.lifecycle.updated_at() >= resumed.lifecycle.updated_at());
    assert_eq!(done.seed, made.seed, "the seed is fixed at creation");

    let edited = store
        .update_experiment(
            &owner(&ws.id, &actor),
            &made.id,
            &ExperimentChanges { name: Some("renamed".into()), hypothesis: None },
        )
        .await
        .unwrap();
    assert_eq!((edited.name.as_str(), edited.hypothesis.as_str()), ("renamed", "v2 converts better"));

    let listed = store.list_experiments(&ws.id, &env("prod"), None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(store.list_experiments(&ws.id, &env("prod"), Some(ExperimentStatus::Running)).await.unwrap().is_empty());
    assert_eq!(store.list_experiments(&ws.id, &env("prod"), Some(ExperimentStatus::Completed)).await.unwrap().len(), 1);
    // Completed: the (artifact, environment) is free again.
    store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("prod"), &spec(&[3])).await.unwrap();

    let filter = AuditFilter {
        object_type: Some(cutover_domain::AuditObject::Experiment),
        object_id: Some(made.id.clone()),
        ..Default::default()
    };
    let audit = store.list_audit(&ws.id, &filter, None, PageLimit::default()).await.unwrap().items;
    let actions: Vec<_> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "experiment.update",
            "experiment.complete",
            "experiment.resume",
            "experiment.pause",
            "experiment.start",
            "experiment.create"
        ]
    );
}

async fn illegal_transitions_conflict_naming_the_current_status(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let made = store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("prod"), &spec(&[2])).await.unwrap();
    for action in [ExperimentAction::Pause, ExperimentAction::Resume, ExperimentAction::Complete] {
        let err = act(&store, &ws, &actor, &made.id, action).await.unwrap_err();
        assert!(matches!(err, StoreError::IllegalTransition(_)), "{err:?}");
        assert_eq!(err.to_string(), format!("cannot {action} an experiment that is created"));
    }
    act(&store, &ws, &actor, &made.id, ExperimentAction::Start).await.unwrap();
    let err = act(&store, &ws, &actor, &made.id, ExperimentAction::Start).await.unwrap_err();
    assert_eq!(err.to_string(), "cannot start an experiment that is running");
    act(&store, &ws, &actor, &made.id, ExperimentAction::Complete).await.unwrap();
    let err = act(&store, &ws, &actor, &made.id, ExperimentAction::Resume).await.unwrap_err();
    assert_eq!(err.to_string(), "cannot resume an experiment that is completed");
    // A refused action changes nothing.
    let now = store.get_experiment(&ws.id, &made.id).await.unwrap();
    assert_eq!(now.lifecycle.status(), ExperimentStatus::Completed);
}

async fn completing_with_a_winner_pins_it_in_the_same_transaction(store: Store) {
    let (ws, actor) = world(&store, 3).await;
    let made = store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("prod"), &spec(&[2])).await.unwrap();
    act(&store, &ws, &actor, &made.id, ExperimentAction::Start).await.unwrap();
    let before = store.get_workspace(&ws.id).await.unwrap().revision;
    // Not a variant: refused, nothing changes.
    let err = store
        .experiment_action(&owner(&ws.id, &actor), &made.id, ExperimentAction::Complete, Some(3))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(store.get_experiment(&ws.id, &made.id).await.unwrap().lifecycle.status(), ExperimentStatus::Running);

    let done =
        store.experiment_action(&owner(&ws.id, &actor), &made.id, ExperimentAction::Complete, Some(2)).await.unwrap();
    assert_eq!(done.experiment.lifecycle.status(), ExperimentStatus::Completed);
    let write = done.pinned.expect("a winner is pinned");
    assert_eq!(write.revision, Some(before + 1));
    assert_eq!(store.get_pin(&ws.id, &key("k"), &env("prod")).await.unwrap().unwrap().version, 2);
    let filter = AuditFilter {
        object_type: Some(cutover_domain::AuditObject::Artifact),
        object_id: Some("k".into()),
        ..Default::default()
    };
    let audit = store.list_audit(&ws.id, &filter, None, PageLimit::default()).await.unwrap().items;
    assert_eq!(audit[0].action, "pin.set");
    assert_eq!(audit[0].after.as_ref().unwrap()["version"], 2);

    // A protected environment refuses a token that may not change it: nothing is completed.
    let scoped = PinAuthority { owner: false, limited_to: vec!["dev".into()] };
    let other = store
        .create_experiment(
            &owner(&ws.id, &actor),
            &key("k"),
            &env("dev"),
            &ExperimentSpec { control: Some(1), ..spec(&[3]) },
        )
        .await
        .unwrap();
    let err = store
        .experiment_action(
            &cutover_store::Caller::new(&ws.id, &actor, &scoped),
            &made.id,
            ExperimentAction::Start,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Forbidden(_)), "{err:?}");
    store
        .experiment_action(
            &cutover_store::Caller::new(&ws.id, &actor, &scoped),
            &other.id,
            ExperimentAction::Start,
            None,
        )
        .await
        .unwrap();
}

async fn soft_delete_keeps_an_experiment_readable_but_hides_it_from_lists(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let made = store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("prod"), &spec(&[2])).await.unwrap();
    act(&store, &ws, &actor, &made.id, ExperimentAction::Start).await.unwrap();
    let deleted = store.delete_experiment(&owner(&ws.id, &actor), &made.id).await.unwrap();
    assert!(deleted.deleted_at.is_some());
    let read = store.get_experiment(&ws.id, &made.id).await.unwrap();
    assert_eq!(read.lifecycle.status(), ExperimentStatus::Running);
    assert!(read.deleted_at.is_some());
    assert!(store.list_experiments(&ws.id, &env("prod"), None).await.unwrap().is_empty());
    let err = act(&store, &ws, &actor, &made.id, ExperimentAction::Pause).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let err = store.delete_experiment(&owner(&ws.id, &actor), &made.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    // Deleting freed the (artifact, environment).
    store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("prod"), &spec(&[2])).await.unwrap();
}

async fn one_active_experiment_per_environment_holds_under_16_concurrent_creates(store: Store) {
    let (ws, actor) = world(&store, 3).await;
    let creates: Vec<_> = (0..16)
        .map(|_| {
            let (store, ws, actor) = (store.clone(), ws.clone(), actor.clone());
            tokio::spawn(async move {
                store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("prod"), &spec(&[2, 3])).await
            })
        })
        .collect();
    let (mut won, mut conflicts) = (0, 0);
    for create in creates {
        match create.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { message, .. }) => {
                assert_eq!(message, "an active experiment already exists for artifact \"k\" in \"prod\"");
                conflicts += 1;
            }
            Err(other) => panic!("a concurrent create failed with {other:?}"),
        }
    }
    assert_eq!((won, conflicts), (1, 15));
    assert_eq!(store.list_experiments(&ws.id, &env("prod"), None).await.unwrap().len(), 1);
}

async fn variants_must_be_versions_of_the_artifact(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let err = store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("prod"), &spec(&[9])).await.unwrap_err();
    assert_eq!(err.to_string(), "version 9 of artifact \"k\" not found");
    let err = store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("prod"), &spec(&[1])).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "a duplicate of the control: {err:?}");
    let err = store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("dev"), &spec(&[2])).await.unwrap_err();
    assert!(err.to_string().contains("name the control"), "nothing pinned in dev: {err}");
    let err =
        store.create_experiment(&owner(&ws.id, &actor), &key("nope"), &env("prod"), &spec(&[2])).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    let one = NewArtifact {
        key: ArtifactKey::parse("single").unwrap(),
        value_type: ValueType::String,
        kind: "config".into(),
        description: String::new(),
    };
    store.create_artifact(&owner(&ws.id, &actor), &one).await.unwrap();
    store.create_version(&owner(&ws.id, &actor), &key("single"), json!("only"), "").await.unwrap();
    let err = store
        .create_experiment(
            &owner(&ws.id, &actor),
            &key("single"),
            &env("prod"),
            &ExperimentSpec { control: Some(1), ..spec(&[2]) },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at least two"), "{err}");
}

async fn experiments_are_scoped_to_their_workspace(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let made = store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("prod"), &spec(&[2])).await.unwrap();
    let (other, _, _) = store
        .create_workspace(&owner(&ws.id, &actor), &cutover_domain::WorkspaceName::parse("other").unwrap(), "owner")
        .await
        .unwrap();
    let err = store.get_experiment(&other.id, &made.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err =
        store.experiment_action(&owner(&other.id, &actor), &made.id, ExperimentAction::Start, None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = store.get_experiment(&ws.id, "not-an-id").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn the_database_refuses_a_second_active_experiment(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let made = store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("prod"), &spec(&[2])).await.unwrap();
    // Bypass the application: copy the active row under a new id. Then complete the original and
    // the copy is accepted, since the index only covers experiments that are not completed.
    let copy = "INSERT INTO experiments (id, workspace_id, artifact_id, environment_id, name, hypothesis, variants,
                    coverage, seed, primary_metric, guardrail_metrics, status, created_at, updated_at)
                SELECT 'dup', workspace_id, artifact_id, environment_id, name, hypothesis, variants,
                    coverage, seed, primary_metric, guardrail_metrics, 'created', created_at, updated_at
                FROM experiments WHERE id = $1";
    let run = |store: Store, id: String| async move {
        match store.postgres_pool() {
            Some(pool) => sqlx::query(copy).bind(id).execute(pool).await.map(|_| ()),
            None => {
                let url = format!("sqlite://{}", store.sqlite_path().unwrap());
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                sqlx::query(copy).bind(id).execute(&pool).await.map(|_| ())
            }
        }
    };
    let err = run(store.clone(), made.id.clone()).await.unwrap_err();
    assert!(err.as_database_error().is_some_and(|e| e.is_unique_violation()), "{err:?}");
    act(&store, &ws, &actor, &made.id, ExperimentAction::Start).await.unwrap();
    act(&store, &ws, &actor, &made.id, ExperimentAction::Complete).await.unwrap();
    run(store.clone(), made.id.clone()).await.unwrap();
}

async fn a_corrupt_coverage_fails_closed_instead_of_exposing_everyone(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let made = store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("prod"), &spec(&[2])).await.unwrap();
    act(&store, &ws, &actor, &made.id, ExperimentAction::Start).await.unwrap();
    // Bypass the application, as a bad restore or a manual edit would.
    let corrupt = "UPDATE experiments SET coverage = 7";
    match store.postgres_pool() {
        Some(pool) => sqlx::query(corrupt).execute(pool).await.map(|_| ()).unwrap(),
        None => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", store.sqlite_path().unwrap())).await.unwrap();
            sqlx::query(corrupt).execute(&pool).await.map(|_| ()).unwrap();
        }
    }
    let err = store.resolve_snapshot(&ws.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("coverage"), "{err}");
}

async fn the_resolve_snapshot_is_one_revision_of_everything(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let made = store.create_experiment(&owner(&ws.id, &actor), &key("k"), &env("prod"), &spec(&[2])).await.unwrap();
    act(&store, &ws, &actor, &made.id, ExperimentAction::Start).await.unwrap();
    let snapshot = store.resolve_snapshot(&ws.id).await.unwrap();
    let revision = store.get_workspace(&ws.id).await.unwrap().revision;
    assert_eq!(snapshot.revision, revision);
    let pins: Vec<(&str, &str, i64)> =
        snapshot.pins.iter().map(|p| (p.artifact.as_str(), p.environment.as_str(), p.version)).collect();
    assert_eq!(pins, [("k", "prod", 1)]);
    assert_eq!(snapshot.artifact_types, [("k".to_owned(), ValueType::String)]);
    let environments: Vec<&str> = snapshot.environments.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(environments, ["dev", "prod"]);
    assert_eq!(snapshot.experiments.len(), 1);
    let (experiment, contents) = &snapshot.experiments[0];
    assert_eq!(experiment.id, made.id);
    let values: Vec<&serde_json::Value> = contents.iter().map(|c| c.value()).collect();
    assert_eq!(values, [&json!("v1"), &json!("v2")]);
}
