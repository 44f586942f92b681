use cutover_domain::{DeploymentTarget, DeploymentTargets, EnvironmentName, PageLimit, Role, TargetName};
use cutover_store::{AuditFilter, EnvironmentChanges, NewEnvironment, Store, StoreError};

use crate::{env, envs, owner, setup};

cutover_store::contract_tests!(
    environments_are_created_listed_updated_and_deleted_with_audit,
    duplicate_environment_names_conflict_and_write_nothing,
    the_environment_limit_holds_under_concurrent_creates,
    deleting_an_environment_a_live_token_depends_on_is_refused,
);

pub fn new_env(name: &str) -> NewEnvironment {
    NewEnvironment {
        name: EnvironmentName::parse(name).unwrap(),
        description: String::new(),
        protected: false,
        targets: DeploymentTargets::default(),
        position: None,
    }
}

async fn environments_are_created_listed_updated_and_deleted_with_audit(store: Store) {
    let (ws, actor) = setup(&store).await;
    let created = store.create_environment(&owner(&ws.id, &actor), &new_env("staging"), 100).await.unwrap();
    store.create_environment(&owner(&ws.id, &actor), &new_env("production"), 100).await.unwrap();
    let names = |store: Store, ws: String| async move {
        store.list_environments(&ws).await.unwrap().into_iter().map(|e| e.name.into_string()).collect::<Vec<_>>()
    };
    // Listed in the order they were made (new ones go last), not by name…
    assert_eq!(names(store.clone(), ws.id.clone()).await, ["staging", "production"]);
    // …until a position says otherwise; equal positions list by name.
    let first = EnvironmentChanges { position: Some(1), ..Default::default() };
    let moved = store.update_environment(&owner(&ws.id, &actor), &env("production"), &first).await.unwrap();
    assert_eq!(moved.position, 1);
    assert_eq!(names(store.clone(), ws.id.clone()).await, ["production", "staging"]);
    let dev = NewEnvironment { position: Some(1), ..new_env("dev") };
    store.create_environment(&owner(&ws.id, &actor), &dev, 100).await.unwrap();
    assert_eq!(names(store.clone(), ws.id.clone()).await, ["dev", "production", "staging"]);
    store.delete_environment(&owner(&ws.id, &actor), &env("dev")).await.unwrap();

    let targets = DeploymentTargets::parse(vec![DeploymentTarget {
        name: TargetName::parse("eu-1").unwrap(),
        config: Default::default(),
    }])
    .unwrap();
    let changes = EnvironmentChanges { protected: Some(true), targets: Some(targets.clone()), ..Default::default() };
    let updated = store.update_environment(&owner(&ws.id, &actor), &env("staging"), &changes).await.unwrap();
    assert!(updated.protected);
    assert_eq!(updated.targets, targets);
    assert_eq!(updated.created_at, created.created_at);
    assert_eq!(store.get_environment(&ws.id, &env("staging")).await.unwrap().targets, targets);

    store.delete_environment(&owner(&ws.id, &actor), &env("staging")).await.unwrap();
    assert!(matches!(store.get_environment(&ws.id, &env("staging")).await, Err(StoreError::NotFound(_))));

    let filter = AuditFilter {
        object_type: Some(cutover_domain::AuditObject::Environment),
        object_id: Some("staging".into()),
        ..Default::default()
    };
    let events = store.list_audit(&ws.id, &filter, None, PageLimit::default()).await.unwrap().items;
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["environment.delete", "environment.update", "environment.create"]);
    assert_eq!(events[1].before.as_ref().unwrap()["protected"], false);
    assert_eq!(events[1].after.as_ref().unwrap()["protected"], true);
    assert_eq!(events[0].actor, actor);
}

async fn duplicate_environment_names_conflict_and_write_nothing(store: Store) {
    let (ws, actor) = setup(&store).await;
    store.create_environment(&owner(&ws.id, &actor), &new_env("dev"), 100).await.unwrap();
    let err = store.create_environment(&owner(&ws.id, &actor), &new_env("dev"), 100).await.unwrap_err();
    assert_eq!(err.to_string(), "environment \"dev\" already exists");
    let filter = AuditFilter { object_type: Some(cutover_domain::AuditObject::Environment), ..Default::default() };
    assert_eq!(store.list_audit(&ws.id, &filter, None, PageLimit::default()).await.unwrap().items.len(), 1);
    // The failed create did not take a slot of the limit.
    store.create_environment(&owner(&ws.id, &actor), &new_env("other"), 2).await.unwrap();
}

async fn the_environment_limit_holds_under_concurrent_creates(store: Store) {
    let (ws, actor) = setup(&store).await;
    let attempts: Vec<_> = (0..12)
        .map(|i| {
            let (store, caller) = (store.clone(), owner(&ws.id, &actor));
            tokio::spawn(async move { store.create_environment(&caller, &new_env(&format!("env-{i}")), 5).await })
        })
        .collect();
    let mut created = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::LimitReached(_)) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(created, 5);
    assert_eq!(store.list_environments(&ws.id).await.unwrap().len(), 5);
}

async fn deleting_an_environment_a_live_token_depends_on_is_refused(store: Store) {
    let (ws, actor) = setup(&store).await;
    store.create_environment(&owner(&ws.id, &actor), &new_env("production"), 100).await.unwrap();
    let (token, _) =
        store.create_token(&owner(&ws.id, &actor), "app", Role::Sdk, &envs(&["production"])).await.unwrap();
    let err = store.delete_environment(&owner(&ws.id, &actor), &env("production")).await.unwrap_err();
    match err {
        StoreError::Conflict { details: Some(details), .. } => assert_eq!(details["tokens"][0]["name"], "app"),
        other => panic!("expected a conflict naming the token, got {other:?}"),
    }
    store.get_environment(&ws.id, &env("production")).await.unwrap();
    store.revoke_token(&owner(&ws.id, &actor), &token.id).await.unwrap();
    store.delete_environment(&owner(&ws.id, &actor), &env("production")).await.unwrap();
}
