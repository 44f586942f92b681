use cutover_domain::{ArtifactKey, PageLimit, ValueType, WorkspaceName};
use cutover_store::{AuditFilter, NewArtifact, Store, StoreError};
use serde_json::json;

use crate::{key, owner, setup, v};

cutover_store::contract_tests!(
    versions_are_numbered_from_one_and_listed_newest_first,
    content_that_does_not_match_the_value_type_writes_nothing,
    thirty_two_concurrent_publishers_get_consecutive_numbers,
    artifacts_page_by_key,
    artifacts_are_invisible_across_workspaces,
);

fn new_artifact(key: &str, value_type: ValueType) -> NewArtifact {
    NewArtifact { key: ArtifactKey::parse(key).unwrap(), value_type, kind: "prompt".into(), description: String::new() }
}

async fn versions_are_numbered_from_one_and_listed_newest_first(store: Store) {
    let (ws, actor) = setup(&store).await;
    store.create_artifact(&owner(&ws.id, &actor), &new_artifact("prompts/greeting", ValueType::String)).await.unwrap();
    for text in ["hello", "hi", "hey"] {
        store.create_version(&owner(&ws.id, &actor), &key("prompts/greeting"), json!(text), "wording").await.unwrap();
    }
    let page =
        store.list_versions(&ws.id, &key("prompts/greeting"), None, PageLimit::parse(Some(2)).unwrap()).await.unwrap();
    assert_eq!(page.items.iter().map(|v| v.number).collect::<Vec<_>>(), [3, 2]);
    let before = page.next.unwrap().before().unwrap();
    let rest = store
        .list_versions(&ws.id, &key("prompts/greeting"), Some(before), PageLimit::parse(Some(2)).unwrap())
        .await
        .unwrap();
    assert_eq!(rest.items.iter().map(|v| v.number).collect::<Vec<_>>(), [1]);
    assert!(rest.next.is_none());

    let first = store.get_version(&ws.id, &key("prompts/greeting"), v(1)).await.unwrap();
    assert_eq!(first.content.value(), &json!("hello"));
    assert_eq!(first.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    assert_eq!(first.author, actor);
    assert_eq!(store.get_artifact(&ws.id, &key("prompts/greeting")).await.unwrap().latest_version, 3);
    assert!(matches!(store.get_version(&ws.id, &key("prompts/greeting"), v(4)).await, Err(StoreError::NotFound(_))));
}

async fn content_that_does_not_match_the_value_type_writes_nothing(store: Store) {
    let (ws, actor) = setup(&store).await;
    store.create_artifact(&owner(&ws.id, &actor), &new_artifact("flags/on", ValueType::Boolean)).await.unwrap();
    let err = store.create_version(&owner(&ws.id, &actor), &key("flags/on"), json!("yes"), "").await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(store.get_artifact(&ws.id, &key("flags/on")).await.unwrap().latest_version, 0);
    let filter = AuditFilter { object_id: Some("flags/on".into()), ..Default::default() };
    let actions: Vec<_> = store
        .list_audit(&ws.id, &filter, None, PageLimit::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["artifact.create"]);
    let v1 = store.create_version(&owner(&ws.id, &actor), &key("flags/on"), json!(true), "").await.unwrap();
    assert_eq!(v1.number, 1);
}

async fn thirty_two_concurrent_publishers_get_consecutive_numbers(store: Store) {
    let (ws, actor) = setup(&store).await;
    store.create_artifact(&owner(&ws.id, &actor), &new_artifact("config/app", ValueType::Json)).await.unwrap();
    let publishers: Vec<_> = (0..32)
        .map(|i| {
            let (store, caller) = (store.clone(), owner(&ws.id, &actor));
            tokio::spawn(async move { store.create_version(&caller, &key("config/app"), json!({"i": i}), "").await })
        })
        .collect();
    let mut numbers = Vec::new();
    for publisher in publishers {
        numbers.push(publisher.await.unwrap().expect("no publisher fails").number);
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=32).collect::<Vec<i64>>());
    let all =
        store.list_versions(&ws.id, &key("config/app"), None, PageLimit::parse(Some(200)).unwrap()).await.unwrap();
    assert_eq!(all.items.len(), 32);
}

async fn artifacts_page_by_key(store: Store) {
    let (ws, actor) = setup(&store).await;
    for key in ["c", "a", "e", "b", "d"] {
        store.create_artifact(&owner(&ws.id, &actor), &new_artifact(key, ValueType::Number)).await.unwrap();
    }
    let limit = PageLimit::parse(Some(2)).unwrap();
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_artifacts(&ws.id, after.as_deref(), limit, false).await.unwrap();
        keys.extend(page.items.iter().map(|a| a.key.to_string()));
        match page.next {
            Some(next) => after = Some(next.after().unwrap().to_owned()),
            None => break,
        }
    }
    assert_eq!(keys, ["a", "b", "c", "d", "e"]);
    let err = store.create_artifact(&owner(&ws.id, &actor), &new_artifact("a", ValueType::Json)).await.unwrap_err();
    assert_eq!(err.to_string(), "artifact \"a\" already exists");
}

async fn artifacts_are_invisible_across_workspaces(store: Store) {
    let (admin, actor) = setup(&store).await;
    let (other, first_owner, _) =
        store.create_workspace(&owner(&admin.id, &actor), &WorkspaceName::parse("b").unwrap(), "o").await.unwrap();
    let other_actor = cutover_store::Actor { token_id: first_owner.id, name: first_owner.name };
    store.create_artifact(&owner(&other.id, &other_actor), &new_artifact("secret", ValueType::String)).await.unwrap();
    store.create_version(&owner(&other.id, &other_actor), &key("secret"), json!("s3cret"), "").await.unwrap();
    assert!(matches!(store.get_artifact(&admin.id, &key("secret")).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.get_version(&admin.id, &key("secret"), v(1)).await, Err(StoreError::NotFound(_))));
    assert!(matches!(
        store.create_version(&owner(&admin.id, &actor), &key("secret"), json!("x"), "").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.list_artifacts(&admin.id, None, PageLimit::default(), false).await.unwrap().items.is_empty());
    // The same key is free in the first workspace.
    store.create_artifact(&owner(&admin.id, &actor), &new_artifact("secret", ValueType::String)).await.unwrap();
}
