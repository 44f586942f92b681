use std::time::Duration;

use cutover_domain::{PageLimit, Timestamp};
use cutover_store::{AuditFilter, Store};

use crate::environments::new_env;
use crate::{owner, setup};

cutover_store::contract_tests!(the_audit_log_filters_by_action_and_time_in_the_query_and_pages_full,);

/// A moment strictly between two audited changes.
async fn between() -> Timestamp {
    tokio::time::sleep(Duration::from_millis(3)).await;
    let at = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(3)).await;
    at
}

async fn the_audit_log_filters_by_action_and_time_in_the_query_and_pages_full(store: Store) {
    let (ws, actor) = setup(&store).await;
    let caller = owner(&ws.id, &actor);
    let start = between().await;
    store.create_environment(&caller, &new_env("a"), 100).await.unwrap();
    let t1 = between().await;
    store.create_environment(&caller, &new_env("b"), 100).await.unwrap();
    let t2 = between().await;
    store.create_environment(&caller, &new_env("c"), 100).await.unwrap();
    store.delete_environment(&caller, &crate::env("c")).await.unwrap();

    let objects = |filter: AuditFilter| {
        let (store, ws) = (store.clone(), ws.id.clone());
        async move {
            let page = store.list_audit(&ws, &filter, None, PageLimit::parse(Some(200)).unwrap()).await.unwrap();
            page.items.into_iter().map(|e| format!("{} {}", e.action, e.object_id)).collect::<Vec<_>>()
        }
    };
    let action = |a: &str| Some(a.to_owned());
    assert_eq!(
        objects(AuditFilter { action: action("environment.create"), ..Default::default() }).await,
        ["environment.create c", "environment.create b", "environment.create a"]
    );
    // A prefix selects every action under it; it is not a pattern.
    assert_eq!(
        objects(AuditFilter { action: action("environment."), since: Some(t2), ..Default::default() }).await,
        ["environment.delete c", "environment.create c"]
    );
    for nothing in ["environment.%", "create", "_nvironment.create"] {
        assert!(objects(AuditFilter { action: action(nothing), ..Default::default() }).await.is_empty(), "{nothing}");
    }
    // since is inclusive, until exclusive; together they bound a window.
    assert_eq!(
        objects(AuditFilter { action: action("environment."), until: Some(t1), ..Default::default() }).await,
        ["environment.create a"]
    );
    assert_eq!(
        objects(AuditFilter { since: Some(t1), until: Some(t2), ..Default::default() }).await,
        ["environment.create b"]
    );
    assert!(
        objects(AuditFilter { until: Some(start), action: action("environment."), ..Default::default() })
            .await
            .is_empty()
    );

    // Filtering happens in the query: every page is full, and the cursor walks the filtered log.
    let filter = AuditFilter { action: action("environment.create"), ..Default::default() };
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_audit(&ws.id, &filter, before, PageLimit::parse(Some(1)).unwrap()).await.unwrap();
        assert_eq!(page.items.len(), 1);
        seen.push(page.items[0].object_id.clone());
        match page.next {
            Some(cursor) => before = Some(cursor.before().unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, ["c", "b", "a"]);
}
