use cutover_domain::{Role, TokenSecret, WorkspaceName};
use cutover_store::{Store, StoreError};

use crate::environments::new_env;
use crate::{envs, owner, principal, setup};

cutover_store::contract_tests!(
    tokens_authenticate_until_revoked,
    tokens_are_stored_only_as_hashes,
    unknown_environments_are_all_listed,
    the_last_unscoped_owner_cannot_be_revoked,
    revoking_twice_changes_nothing,
    tokens_of_one_workspace_cannot_see_or_revoke_another_s,
);

async fn tokens_authenticate_until_revoked(store: Store) {
    let (ws, actor) = setup(&store).await;
    store.create_environment(&owner(&ws.id, &actor), &new_env("production"), 100).await.unwrap();
    let (token, secret) =
        store.create_token(&owner(&ws.id, &actor), "app", Role::Sdk, &envs(&["production"])).await.unwrap();
    let who = principal(&store, &secret).await.expect("authenticates");
    assert_eq!(who.token.role, Role::Sdk);
    assert_eq!(who.token.environments.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["production"]);
    assert!(who.may_touch("production") && !who.may_touch("staging"));
    assert_eq!(who.token.created_by.as_ref(), Some(&actor));

    store.revoke_token(&owner(&ws.id, &actor), &token.id).await.unwrap();
    assert!(principal(&store, &secret).await.is_none());
    assert!(principal(&store, &TokenSecret::generate()).await.is_none());
}

async fn tokens_are_stored_only_as_hashes(store: Store) {
    let (ws, actor) = setup(&store).await;
    let (_, secret) = store.create_token(&owner(&ws.id, &actor), "ci", Role::Editor, &[]).await.unwrap();
    let query = "SELECT COUNT(*) FROM tokens WHERE hash = $1";
    let count = |value: String| {
        let store = store.clone();
        async move {
            let (n,): (i64,) = match store.postgres_pool() {
                Some(pool) => sqlx::query_as(query).bind(value).fetch_one(pool).await.unwrap(),
                None => {
                    let pool =
                        sqlx::SqlitePool::connect(&format!("sqlite://{}", store.sqlite_path().unwrap())).await.unwrap();
                    sqlx::query_as(query).bind(value).fetch_one(&pool).await.unwrap()
                }
            };
            n
        }
    };
    assert_eq!(count(secret.expose().to_owned()).await, 0, "the secret itself is not stored");
    assert_eq!(count(secret.hash().as_str().to_owned()).await, 1, "its sha256 is");
}

async fn unknown_environments_are_all_listed(store: Store) {
    let (ws, actor) = setup(&store).await;
    store.create_environment(&owner(&ws.id, &actor), &new_env("production"), 100).await.unwrap();
    let names = envs(&["nope", "production", "gone"]);
    let err = store.create_token(&owner(&ws.id, &actor), "x", Role::Viewer, &names).await.unwrap_err();
    match err {
        StoreError::NotFoundMany { names, .. } => assert_eq!(names, ["nope", "gone"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.list_tokens(&ws.id).await.unwrap().len(), 1, "nothing written");
}

async fn the_last_unscoped_owner_cannot_be_revoked(store: Store) {
    let (ws, actor) = setup(&store).await;
    let err = store.revoke_token(&owner(&ws.id, &actor), &actor.token_id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let (second, _) = store.create_token(&owner(&ws.id, &actor), "owner-2", Role::Owner, &[]).await.unwrap();
    store.revoke_token(&owner(&ws.id, &actor), &actor.token_id).await.unwrap();
    assert!(store.revoke_token(&owner(&ws.id, &actor), &second.id).await.is_err());
}

async fn revoking_twice_changes_nothing(store: Store) {
    let (ws, actor) = setup(&store).await;
    let (token, _) = store.create_token(&owner(&ws.id, &actor), "v", Role::Viewer, &[]).await.unwrap();
    let first = store.revoke_token(&owner(&ws.id, &actor), &token.id).await.unwrap();
    let second = store.revoke_token(&owner(&ws.id, &actor), &token.id).await.unwrap();
    assert_eq!(first.revoked_at, second.revoked_at);
}

async fn tokens_of_one_workspace_cannot_see_or_revoke_another_s(store: Store) {
    let (admin, actor) = setup(&store).await;
    let (other, other_owner, _) =
        store.create_workspace(&owner(&admin.id, &actor), &WorkspaceName::parse("other").unwrap(), "o").await.unwrap();
    assert!(store.list_tokens(&admin.id).await.unwrap().iter().all(|t| t.id != other_owner.id));
    let err = store.revoke_token(&owner(&admin.id, &actor), &other_owner.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.list_tokens(&other.id).await.unwrap()[0].revoked_at, None);
}
