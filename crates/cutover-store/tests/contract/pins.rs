use cutover_domain::{ArtifactKey, PageLimit, ValueType};
use cutover_store::{Actor, NewArtifact, PinAuthority, PinChange, Publish, Store, StoreError, Workspace};
use serde_json::json;

use crate::environments::new_env;
use crate::{env, envs, key, owner, setup, v};

cutover_store::contract_tests!(
    moving_a_pin_closes_the_old_interval_and_keeps_history,
    one_active_pin_per_environment_holds_under_concurrent_moves,
    a_change_log_follower_misses_no_revision_of_concurrent_writers,
    the_database_refuses_a_second_active_pin,
    a_version_s_environment_set_is_replaced_whole,
    publishing_onto_owned_environments_conflicts_unless_moving,
    promote_copies_what_is_live_atomically_and_dry_runs_write_nothing,
    protected_environments_need_an_owner_or_a_scoped_token,
    a_stale_expected_revision_is_refused,
    environments_with_live_pins_cannot_be_deleted,
    live_pins_and_the_change_log_follow_every_write,
    pins_at_a_moment_are_the_intervals_open_then,
);

/// An artifact `k` with `versions` string versions and environments `dev`, `staging`, `prod`.
async fn world(store: &Store, versions: i64) -> (Workspace, Actor) {
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
    for name in ["dev", "staging", "prod"] {
        store.create_environment(&owner(&ws.id, &actor), &new_env(name), 100).await.unwrap();
    }
    (ws, actor)
}

async fn pin(
    store: &Store,
    ws: &Workspace,
    actor: &Actor,
    environment: &str,
    version: Option<i64>,
) -> Result<cutover_store::PinWrite, StoreError> {
    store.pin(&owner(&ws.id, actor), &key("k"), &env(environment), version.map(v), None, "test").await
}

async fn moving_a_pin_closes_the_old_interval_and_keeps_history(store: Store) {
    let (ws, actor) = world(&store, 3).await;
    let first = pin(&store, &ws, &actor, "prod", Some(1)).await.unwrap();
    assert_eq!(first.changes, [PinChange { artifact: key("k"), environment: env("prod"), from: None, to: Some(1) }]);
    let second = pin(&store, &ws, &actor, "prod", Some(2)).await.unwrap();
    assert_eq!(second.revision, Some(first.revision.unwrap() + 1));
    let same = pin(&store, &ws, &actor, "prod", Some(2)).await.unwrap();
    assert_eq!(same.revision, None, "pinning what is already live changes nothing");

    let live = store.get_pin(&ws.id, &key("k"), &env("prod")).await.unwrap().unwrap();
    assert_eq!((live.version, live.revision, live.ended_at), (2, second.revision.unwrap(), None));
    let history = store.pin_history(&ws.id, &key("k"), &env("prod"), None, PageLimit::default()).await.unwrap();
    let versions: Vec<_> = history.items.iter().map(|p| p.version).collect();
    assert_eq!(versions, [2, 1]);
    let closed = &history.items[1];
    assert_eq!(closed.ended_by.as_ref(), Some(&actor));
    assert_eq!(closed.started_by, actor);
    assert!(closed.ended_at.is_some());

    pin(&store, &ws, &actor, "prod", None).await.unwrap();
    assert!(store.get_pin(&ws.id, &key("k"), &env("prod")).await.unwrap().is_none());
    assert_eq!(
        store.pin_history(&ws.id, &key("k"), &env("prod"), None, PageLimit::default()).await.unwrap().items.len(),
        2
    );
    let err = pin(&store, &ws, &actor, "prod", Some(9)).await.unwrap_err();
    assert_eq!(err.to_string(), "version 9 of artifact \"k\" not found");
}

async fn one_active_pin_per_environment_holds_under_concurrent_moves(store: Store) {
    let (ws, actor) = world(&store, 8).await;
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let (store, ws, actor) = (store.clone(), ws.clone(), actor.clone());
            tokio::spawn(async move { pin(&store, &ws, &actor, "prod", Some(i % 8 + 1)).await })
        })
        .collect();
    for writer in writers {
        match writer.await.unwrap() {
            Ok(_) | Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("a concurrent pin failed with {other:?}"),
        }
    }
    let live = store.list_pins(&ws.id, &key("k")).await.unwrap();
    assert_eq!(live.len(), 1);
    let history = store
        .pin_history(&ws.id, &key("k"), &env("prod"), None, PageLimit::parse(Some(200)).unwrap())
        .await
        .unwrap()
        .items;
    assert_eq!(history.iter().filter(|p| p.ended_at.is_none()).count(), 1);
}

/// What the change stream relies on: revisions become visible in order, so a reader that has
/// seen revision R never later finds a revision below R. Eight writers move pins in their own
/// environments while a follower reads the change log after the last revision it saw, and the
/// resolve snapshot; every revision must reach the follower in order, none skipped.
async fn a_change_log_follower_misses_no_revision_of_concurrent_writers(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let environments: Vec<String> = (0..8).map(|i| format!("w{i}")).collect();
    for name in &environments {
        store.create_environment(&owner(&ws.id, &actor), &new_env(name), 100).await.unwrap();
    }
    let start = store.resolve_snapshot(&ws.id).await.unwrap().revision;
    let moves = 25;
    let writers: Vec<_> = environments
        .iter()
        .map(|name| {
            let (store, ws, actor, name) = (store.clone(), ws.clone(), actor.clone(), name.clone());
            tokio::spawn(async move {
                let mut revisions = Vec::new();
                for n in 0..moves {
                    let write = pin(&store, &ws, &actor, &name, Some(n % 2 + 1)).await.unwrap();
                    revisions.push(write.revision.unwrap());
                }
                revisions
            })
        })
        .collect();
    let total = start + environments.len() as i64 * moves;
    let follower = {
        let (store, ws) = (store.clone(), ws.clone());
        tokio::spawn(async move {
            let mut followed = Vec::new();
            let mut last = start;
            while last < total {
                for change in store.changes_since(&ws.id, last, 1_000).await.unwrap() {
                    assert_eq!(change.revision, last + 1, "the follower skipped a revision after {last}");
                    last = change.revision;
                    followed.push(last);
                }
                // A view read after the log is at least as new, and its revision is logged.
                let view = store.resolve_snapshot(&ws.id).await.unwrap().revision;
                assert!(view >= last, "a view went behind the log: {view} < {last}");
                if view > start {
                    let logged = store.changes_since(&ws.id, view - 1, 1).await.unwrap();
                    assert_eq!(logged.first().map(|c| c.revision), Some(view), "a view's revision is logged");
                }
                tokio::task::yield_now().await;
            }
            followed
        })
    };
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    written.sort_unstable();
    let every: Vec<i64> = (start + 1..=total).collect();
    assert_eq!(written, every, "each write got its own revision, no gaps");
    assert_eq!(follower.await.unwrap(), every);
}

async fn the_database_refuses_a_second_active_pin(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    pin(&store, &ws, &actor, "prod", Some(1)).await.unwrap();
    // Bypass the application: copy the active row under a new id.
    let copy = "INSERT INTO pins (id, workspace_id, artifact_id, environment_id, version, revision, reason, started_at, started_by_id, started_by)
                SELECT 'dup', workspace_id, artifact_id, environment_id, 2, revision, reason, started_at, started_by_id, started_by
                FROM pins WHERE ended_at IS NULL";
    let result = match store.postgres_pool() {
        Some(pool) => sqlx::query(copy).execute(pool).await.map(|_| ()),
        None => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", store.sqlite_path().unwrap())).await.unwrap();
            sqlx::query(copy).execute(&pool).await.map(|_| ())
        }
    };
    let err = result.unwrap_err();
    assert!(err.as_database_error().is_some_and(|e| e.is_unique_violation()), "{err:?}");
}

async fn a_version_s_environment_set_is_replaced_whole(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let set = |version: i64, envs: &[&str]| {
        let (store, ws, actor) = (store.clone(), ws.clone(), actor.clone());
        let envs = crate::envs(envs);
        async move { store.set_version_environments(&owner(&ws.id, &actor), &key("k"), v(version), &envs, "").await }
    };
    set(1, &["dev", "staging", "prod"]).await.unwrap();
    let moved = set(2, &["dev", "staging"]).await.unwrap();
    assert_eq!(moved.changes.len(), 2);
    let owners = |pins: Vec<cutover_store::Pin>| {
        pins.into_iter().map(|p| (p.environment.into_string(), p.version)).collect::<Vec<_>>()
    };
    assert_eq!(
        owners(store.list_pins(&ws.id, &key("k")).await.unwrap()),
        [("dev".into(), 2), ("prod".into(), 1), ("staging".into(), 2)]
    );
    // Listing fewer releases the rest of what version 2 owned.
    set(2, &["dev"]).await.unwrap();
    assert_eq!(owners(store.list_pins(&ws.id, &key("k")).await.unwrap()), [("dev".into(), 2), ("prod".into(), 1)]);
    set(2, &[]).await.unwrap();
    assert_eq!(owners(store.list_pins(&ws.id, &key("k")).await.unwrap()), [("prod".into(), 1)]);
    match set(1, &["prod", "nope", "gone"]).await.unwrap_err() {
        StoreError::NotFoundMany { names, .. } => assert_eq!(names, ["nope", "gone"]),
        other => panic!("{other:?}"),
    }
}

async fn publishing_onto_owned_environments_conflicts_unless_moving(store: Store) {
    let (ws, actor) = world(&store, 1).await;
    pin(&store, &ws, &actor, "dev", Some(1)).await.unwrap();
    pin(&store, &ws, &actor, "prod", Some(1)).await.unwrap();
    let envs = envs(&["dev", "staging", "prod"]);
    let publish = |move_pins| Publish { content: json!("new"), message: "m", environments: &envs, move_pins };
    let err = store.publish_version(&owner(&ws.id, &actor), &key("k"), publish(false)).await.unwrap_err();
    match err {
        StoreError::Conflict { details: Some(details), message } => {
            assert_eq!(
                details["environments"],
                json!([{"environment": "dev", "version": 1}, {"environment": "prod", "version": 1}])
            );
            assert!(message.contains("dev, prod"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.get_artifact(&ws.id, &key("k")).await.unwrap().latest_version, 1, "no version created");
    let (version, write) = store.publish_version(&owner(&ws.id, &actor), &key("k"), publish(true)).await.unwrap();
    assert_eq!(version.number, 2);
    assert_eq!(write.changes.len(), 3);
    assert!(store.list_pins(&ws.id, &key("k")).await.unwrap().iter().all(|p| p.version == 2));
}

async fn promote_copies_what_is_live_atomically_and_dry_runs_write_nothing(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    pin(&store, &ws, &actor, "staging", Some(2)).await.unwrap();
    pin(&store, &ws, &actor, "prod", Some(1)).await.unwrap();
    let to = envs(&["prod", "dev"]);
    let (version, dry) =
        store.promote(&owner(&ws.id, &actor), &key("k"), &env("staging"), &to, "", true).await.unwrap();
    assert_eq!(version, 2);
    assert_eq!(dry.revision, None);
    assert_eq!(
        dry.changes,
        [
            PinChange { artifact: key("k"), environment: env("prod"), from: Some(1), to: Some(2) },
            PinChange { artifact: key("k"), environment: env("dev"), from: None, to: Some(2) },
        ]
    );
    assert_eq!(
        store.get_pin(&ws.id, &key("k"), &env("prod")).await.unwrap().unwrap().version,
        1,
        "dry run wrote nothing"
    );
    let (_, real) = store.promote(&owner(&ws.id, &actor), &key("k"), &env("staging"), &to, "", false).await.unwrap();
    assert_eq!(real.changes, dry.changes);
    assert!(real.revision.is_some());
    assert_eq!(store.get_pin(&ws.id, &key("k"), &env("dev")).await.unwrap().unwrap().version, 2);
    let err = store
        .promote(&owner(&ws.id, &actor), &key("k"), &env("staging"), &envs(&["nope"]), "", false)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFoundMany { .. }), "{err:?}");
    pin(&store, &ws, &actor, "staging", None).await.unwrap();
    let err = store.promote(&owner(&ws.id, &actor), &key("k"), &env("staging"), &to, "", false).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
}

async fn protected_environments_need_an_owner_or_a_scoped_token(store: Store) {
    let (ws, actor) = world(&store, 1).await;
    let changes = cutover_store::EnvironmentChanges { protected: Some(true), ..Default::default() };
    store.update_environment(&owner(&ws.id, &actor), &env("prod"), &changes).await.unwrap();
    let editor = PinAuthority { owner: false, limited_to: vec![] };
    let err = store
        .pin(&cutover_store::Caller::new(&ws.id, &actor, &editor), &key("k"), &env("prod"), Some(v(1)), None, "")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Forbidden(_)), "{err:?}");
    assert!(store.get_pin(&ws.id, &key("k"), &env("prod")).await.unwrap().is_none());
    store
        .pin(&cutover_store::Caller::new(&ws.id, &actor, &editor), &key("k"), &env("dev"), Some(v(1)), None, "")
        .await
        .unwrap();
    let scoped = PinAuthority { owner: false, limited_to: vec!["prod".into()] };
    store
        .pin(&cutover_store::Caller::new(&ws.id, &actor, &scoped), &key("k"), &env("prod"), Some(v(1)), None, "")
        .await
        .unwrap();
    let err = store
        .pin(&cutover_store::Caller::new(&ws.id, &actor, &scoped), &key("k"), &env("staging"), Some(v(1)), None, "")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Forbidden(_)), "{err:?}");
    // A promote touching a forbidden environment writes nothing at all.
    let err = store
        .promote(
            &cutover_store::Caller::new(&ws.id, &actor, &editor),
            &key("k"),
            &env("dev"),
            &envs(&["staging", "prod"]),
            "",
            false,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Forbidden(_)), "{err:?}");
    assert!(store.get_pin(&ws.id, &key("k"), &env("staging")).await.unwrap().is_none());
}

async fn a_stale_expected_revision_is_refused(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let err = store.pin(&owner(&ws.id, &actor), &key("k"), &env("prod"), Some(v(1)), Some(5), "").await.unwrap_err();
    assert!(matches!(err, StoreError::PreconditionFailed { expected: 5, current: 0, .. }), "{err:?}");
    let first = store
        .pin(&owner(&ws.id, &actor), &key("k"), &env("prod"), Some(v(1)), Some(0), "")
        .await
        .unwrap()
        .revision
        .unwrap();
    store.pin(&owner(&ws.id, &actor), &key("k"), &env("prod"), Some(v(2)), Some(first), "").await.unwrap();
    let err =
        store.pin(&owner(&ws.id, &actor), &key("k"), &env("prod"), Some(v(1)), Some(first), "").await.unwrap_err();
    assert!(matches!(err, StoreError::PreconditionFailed { .. }), "{err:?}");
    assert_eq!(store.get_pin(&ws.id, &key("k"), &env("prod")).await.unwrap().unwrap().version, 2);
}

async fn environments_with_live_pins_cannot_be_deleted(store: Store) {
    let (ws, actor) = world(&store, 1).await;
    pin(&store, &ws, &actor, "dev", Some(1)).await.unwrap();
    match store.delete_environment(&owner(&ws.id, &actor), &env("dev")).await.unwrap_err() {
        StoreError::Conflict { details: Some(details), .. } => {
            assert_eq!(details["pins"], json!([{"artifact": "k", "version": 1}]))
        }
        other => panic!("{other:?}"),
    }
    pin(&store, &ws, &actor, "dev", None).await.unwrap();
    store.delete_environment(&owner(&ws.id, &actor), &env("dev")).await.unwrap();
}

async fn live_pins_and_the_change_log_follow_every_write(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let start = store.live_pins(&ws.id).await.unwrap().0;
    pin(&store, &ws, &actor, "dev", Some(1)).await.unwrap();
    pin(&store, &ws, &actor, "prod", Some(2)).await.unwrap();
    pin(&store, &ws, &actor, "dev", None).await.unwrap();
    let (revision, live) = store.live_pins(&ws.id).await.unwrap();
    assert_eq!(revision, start + 3);
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].environment.as_str(), live[0].version, live[0].content.value()), ("prod", 2, &json!("v2")));
    let changes = store.changes_since(&ws.id, start + 1, 100).await.unwrap();
    assert_eq!(changes.iter().map(|c| c.revision).collect::<Vec<_>>(), [start + 2, start + 3]);
    assert_eq!(changes[1].pins, [PinChange { artifact: key("k"), environment: env("dev"), from: Some(1), to: None }]);
}

async fn pins_at_a_moment_are_the_intervals_open_then(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let before = cutover_domain::Timestamp::now();
    pin(&store, &ws, &actor, "prod", Some(1)).await.unwrap();
    pin(&store, &ws, &actor, "staging", Some(1)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let first = cutover_domain::Timestamp::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    pin(&store, &ws, &actor, "prod", Some(2)).await.unwrap();
    pin(&store, &ws, &actor, "staging", None).await.unwrap();

    assert!(store.pins_at(&ws.id, before).await.unwrap().is_empty());
    let then: Vec<_> =
        store.pins_at(&ws.id, first).await.unwrap().into_iter().map(|p| (p.environment, p.version)).collect();
    assert_eq!(then, [(env("prod"), 1), (env("staging"), 1)]);
    let now: Vec<_> = store
        .pins_at(&ws.id, cutover_domain::Timestamp::now())
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.environment, p.version))
        .collect();
    assert_eq!(now, [(env("prod"), 2)]);
}
