use cutover_domain::{PageLimit, WorkspaceName};
use cutover_store::{AuditFilter, Store, StoreError};

use crate::{owner, principal, setup};

cutover_store::contract_tests!(
    bootstrap_happens_once,
    concurrent_bootstraps_make_one_admin_workspace,
    created_workspaces_get_a_working_owner_token_and_audit_in_both,
    workspace_names_are_unique,
    a_schema_newer_than_the_binary_is_refused,
);

async fn bootstrap_happens_once(store: Store) {
    let (workspace, _) = setup(&store).await;
    assert!(workspace.admin);
    assert_eq!(workspace.name, "default");
    assert!(store.bootstrap(&WorkspaceName::parse("default").unwrap()).await.unwrap().is_none());
    assert_eq!(store.list_workspaces().await.unwrap().len(), 1);
}

async fn concurrent_bootstraps_make_one_admin_workspace(store: Store) {
    let name = WorkspaceName::parse("default").unwrap();
    let attempts = (0..8).map(|_| {
        let (store, name) = (store.clone(), name.clone());
        tokio::spawn(async move { store.bootstrap(&name).await })
    });
    let mut made = 0;
    for attempt in attempts {
        if attempt.await.unwrap().unwrap().is_some() {
            made += 1;
        }
    }
    assert_eq!(made, 1);
    assert_eq!(store.list_workspaces().await.unwrap().len(), 1);
}

async fn created_workspaces_get_a_working_owner_token_and_audit_in_both(store: Store) {
    let (admin, actor) = setup(&store).await;
    let name = WorkspaceName::parse("acme").unwrap();
    let (workspace, token, secret) =
        store.create_workspace(&owner(&admin.id, &actor), &name, "acme-owner").await.unwrap();
    assert!(!workspace.admin);
    assert_eq!(token.name, "acme-owner");
    let principal = principal(&store, &secret).await.expect("new owner token authenticates");
    assert_eq!(principal.workspace.id, workspace.id);

    for ws in [&admin.id, &workspace.id] {
        let filter = AuditFilter { object_type: Some(cutover_domain::AuditObject::Workspace), ..Default::default() };
        let events = store.list_audit(ws, &filter, None, PageLimit::default()).await.unwrap().items;
        assert!(events.iter().any(|e| e.action == "workspace.create" && e.object_id == workspace.id), "{ws}");
    }
}

async fn workspace_names_are_unique(store: Store) {
    let (admin, actor) = setup(&store).await;
    let name = WorkspaceName::parse("acme").unwrap();
    store.create_workspace(&owner(&admin.id, &actor), &name, "o").await.unwrap();
    let err = store.create_workspace(&owner(&admin.id, &actor), &name, "o").await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(store.list_workspaces().await.unwrap().len(), 2);
}

async fn a_schema_newer_than_the_binary_is_refused(store: Store) {
    store.check_schema().await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), 0, "nothing pending after migrating");
    let newer = store.known_schema_version() + 1;
    setup(&store).await;
    // Pretend a newer binary migrated this database.
    let insert = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                  VALUES ($1, 'from the future', TRUE, $2, 0)";
    match store.postgres_pool() {
        Some(pool) => sqlx::query(insert).bind(newer).bind(vec![0u8; 48]).execute(pool).await.map(|_| ()),
        None => {
            let url = format!("sqlite://{}", sqlite_path(&store).await);
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query(insert).bind(newer).bind(vec![0u8; 48]).execute(&pool).await.map(|_| ())
        }
    }
    .unwrap();
    let err = store.check_schema().await.unwrap_err();
    assert!(matches!(err, StoreError::SchemaTooNew { found, .. } if found == newer), "{err:?}");
    assert!(matches!(store.migrate().await.unwrap_err(), StoreError::SchemaTooNew { .. }));
}

async fn sqlite_path(store: &Store) -> String {
    store.sqlite_path().expect("a SQLite store has a file")
}
