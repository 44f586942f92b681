use cutover_domain::{ArtifactKey, PageLimit, ValueType};
use cutover_store::{NewArtifact, Store, StoreError};
use serde_json::json;

use crate::environments::new_env;
use crate::{env, key, owner, setup, v};

cutover_store::contract_tests!(
    an_archived_artifact_leaves_lists_and_the_resolve_snapshot_and_keeps_its_pins,
    deleting_removes_versions_and_pin_history_and_frees_the_key,
    a_publish_racing_an_archive_lands_first_or_is_refused,
);

async fn world(store: &Store) -> (cutover_store::Workspace, cutover_store::Actor) {
    let (ws, actor) = setup(store).await;
    let new = NewArtifact {
        key: ArtifactKey::parse("k").unwrap(),
        value_type: ValueType::String,
        kind: "prompt".into(),
        description: String::new(),
    };
    store.create_artifact(&owner(&ws.id, &actor), &new).await.unwrap();
    store.create_version(&owner(&ws.id, &actor), &key("k"), json!("one"), "").await.unwrap();
    store.create_version(&owner(&ws.id, &actor), &key("k"), json!("two"), "").await.unwrap();
    store.create_environment(&owner(&ws.id, &actor), &new_env("prod"), 100).await.unwrap();
    (ws, actor)
}

async fn an_archived_artifact_leaves_lists_and_the_resolve_snapshot_and_keeps_its_pins(store: Store) {
    let (ws, actor) = world(&store).await;
    let caller = owner(&ws.id, &actor);
    store.pin(&caller, &key("k"), &env("prod"), Some(v(1)), None, "").await.unwrap();
    let archived = store.archive_artifact(&caller, &key("k")).await.unwrap();
    assert!(archived.archived_at.is_some());
    assert!(store.list_artifacts(&ws.id, None, PageLimit::default(), false).await.unwrap().items.is_empty());
    let listed = store.list_artifacts(&ws.id, None, PageLimit::default(), true).await.unwrap().items;
    assert_eq!(listed.iter().map(|a| a.key.as_str()).collect::<Vec<_>>(), ["k"]);
    let snapshot = store.resolve_snapshot(&ws.id).await.unwrap();
    assert!(snapshot.pins.is_empty() && snapshot.artifact_types.is_empty(), "{snapshot:?}");
    // The pin is still there, for when it comes back.
    assert_eq!(store.list_pins(&ws.id, &key("k")).await.unwrap().len(), 1);
    let err = store.pin(&caller, &key("k"), &env("prod"), Some(v(2)), None, "").await.unwrap_err();
    assert!(matches!(err, StoreError::Archived(_)), "{err:?}");

    let back = store.unarchive_artifact(&caller, &key("k")).await.unwrap();
    assert_eq!(back.archived_at, None);
    let snapshot = store.resolve_snapshot(&ws.id).await.unwrap();
    assert_eq!(snapshot.pins.iter().map(|p| p.version).collect::<Vec<_>>(), [1]);
}

async fn deleting_removes_versions_and_pin_history_and_frees_the_key(store: Store) {
    let (ws, actor) = world(&store).await;
    let caller = owner(&ws.id, &actor);
    // Closed intervals refer to the versions too: they go with them.
    store.pin(&caller, &key("k"), &env("prod"), Some(v(1)), None, "").await.unwrap();
    store.pin(&caller, &key("k"), &env("prod"), Some(v(2)), None, "").await.unwrap();
    let err = store.delete_artifact(&caller, &key("k")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::InUse { details, .. } if details["environments"] == json!([{"environment": "prod", "version": 2}])),
        "{err:?}"
    );
    store.pin(&caller, &key("k"), &env("prod"), None, None, "").await.unwrap();
    let deleted = store.delete_artifact(&caller, &key("k")).await.unwrap();
    assert_eq!(deleted.latest_version, 2);
    assert!(matches!(store.get_artifact(&ws.id, &key("k")).await, Err(StoreError::NotFound(_))));
    let new =
        NewArtifact { key: key("k"), value_type: ValueType::Json, kind: "config".into(), description: String::new() };
    store.create_artifact(&caller, &new).await.unwrap();
    let first = store.create_version(&caller, &key("k"), json!({"a": 1}), "").await.unwrap();
    assert_eq!(first.number, 1);
    assert!(store.list_pins(&ws.id, &key("k")).await.unwrap().is_empty());
}

async fn a_publish_racing_an_archive_lands_first_or_is_refused(store: Store) {
    let (ws, actor) = world(&store).await;
    let caller = owner(&ws.id, &actor);
    for round in 0..16 {
        let before = store.get_artifact(&ws.id, &key("k")).await.unwrap().latest_version;
        let k = key("k");
        let (published, archived) = tokio::join!(
            store.create_version(&caller, &k, json!(format!("round {round}")), ""),
            store.archive_artifact(&caller, &k)
        );
        let archived = archived.unwrap();
        let after = store.get_artifact(&ws.id, &key("k")).await.unwrap();
        match published {
            Ok(version) => {
                assert_eq!(version.number, before + 1);
                assert_eq!(after.latest_version, before + 1);
                assert!(version.created_at <= archived.archived_at.unwrap());
            }
            Err(StoreError::Archived(_)) => assert_eq!(after.latest_version, before),
            Err(other) => panic!("round {round}: {other:?}"),
        }
        store.unarchive_artifact(&caller, &key("k")).await.unwrap();
    }
}
