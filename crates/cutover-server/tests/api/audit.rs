use axum::http::StatusCode;
use cutover_store::Store;
use serde_json::{Value, json};

use crate::{TestApp, error};

cutover_store::contract_tests!(the_audit_log_filters_by_action_and_time_range, bad_time_ranges_get_400_invalid_query,);

fn actions(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {}", e["action"].as_str().unwrap(), e["object_id"].as_str().unwrap()))
        .collect()
}

async fn the_audit_log_filters_by_action_and_time_range(store: Store) {
    let app = TestApp::new(store).await;
    for name in ["a", "b", "c"] {
        assert_eq!(app.post("/api/v1/environments", json!({"name": name})).await.0, StatusCode::CREATED);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let (status, created) = app.get("/api/v1/audit?action=environment.create").await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(actions(&created), ["environment.create c", "environment.create b", "environment.create a"]);
    let b_at = created["items"][1]["at"].as_str().unwrap().to_owned();
    let at = b_at.replace('+', "%2B");
    let (_, since) = app.get(&format!("/api/v1/audit?action=environment.&since={at}")).await;
    assert_eq!(actions(&since), ["environment.create c", "environment.create b"]);
    let (_, until) = app.get(&format!("/api/v1/audit?action=environment.&until={at}")).await;
    assert_eq!(actions(&until), ["environment.create a"]);
    // Pages are full: the filter runs in the query, not over a page.
    let (_, first) = app.get("/api/v1/audit?action=environment.create&limit=2").await;
    assert_eq!(actions(&first), ["environment.create c", "environment.create b"]);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = app.get(&format!("/api/v1/audit?action=environment.create&limit=2&cursor={cursor}")).await;
    assert_eq!(actions(&second), ["environment.create a"]);
    assert!(second.get("next_cursor").is_none(), "{second}");
}

async fn bad_time_ranges_get_400_invalid_query(store: Store) {
    let app = TestApp::new(store).await;
    let (status, body) = app.get("/api/v1/audit?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        error("invalid_query", "since \"yesterday\" is not an RFC 3339 moment (such as 2026-12-01T09:00:00Z)")
    );
    let (status, body) = app.get("/api/v1/audit?until=2026-13-01T00:00:00Z").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");
    // An empty range (since at or after until) is valid and matches nothing.
    for range in [
        "since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z",
        "since=2000-01-01T00:00:00Z&until=2000-01-01T00:00:00Z",
    ] {
        let (status, body) = app.get(&format!("/api/v1/audit?{range}")).await;
        assert_eq!((status, &body["items"]), (StatusCode::OK, &serde_json::json!([])), "{range}: {body}");
    }
    let (status, _) = app.get("/api/v1/audit?action=%01").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = app.get("/api/v1/audit?since=2026-12-01T00:00:00%2B01:00").await;
    assert_eq!(status, StatusCode::OK, "an offset is RFC 3339 too: {body}");
}
