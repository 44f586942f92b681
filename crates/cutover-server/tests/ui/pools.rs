//! The pools pages: counts as the API gives them, instances, the controls the role allows,
//! claiming from the page, and pools outside a token's scope not found.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use cutover_server::ServerConfig;
use cutover_server::config::ExecutorConfig;
use serde_json::json;

use crate::{ORIGIN, Ui};

/// A UI whose engine builds pool instances with `provision` (`sh -c "exit 0"`: ready at once).
async fn pools_ui() -> Ui {
    let program = vec!["sh".to_owned(), "-c".to_owned(), "exit 0".to_owned()];
    let provision =
        ExecutorConfig { program, env: vec!["PATH".into()], working_dir: None, timeout_seconds: 600, workspaces: None };
    let config = ServerConfig {
        engine_tick_ms: 50,
        engine_lease_seconds: 5,
        executors: BTreeMap::from([("provision".to_owned(), provision)]),
        ..ServerConfig::default()
    };
    let ui = Ui::with_config(config, true).await;
    ui.world().await;
    let (status, body) = ui
        .api(
            Method::POST,
            "/api/v1/pools",
            &ui.owner,
            Some(json!({"name": "warm", "artifact": "prompts/welcome", "environment": "staging",
                        "executor": "provision", "desired": {"instances": 2}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    ui
}

#[tokio::test]
async fn the_pools_pages_show_counts_and_instances_and_claim_from_the_page() {
    let ui = pools_ui().await;
    let started = Instant::now();
    loop {
        let (_, pool) = ui.api(Method::GET, "/api/v1/pools/warm", &ui.owner, None).await;
        if pool["counts"]["ready"] == 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the pool never filled: {pool:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let browser = ui.sign_in(&ui.owner).await;
    let list = ui.get("/pools", Some(&browser)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(list.body.contains("<a href=\"/pools/warm\">warm</a>"), "{}", list.body);
    assert!(list.body.contains("hx-get=\"/ui/pools\""), "the table refreshes itself");
    let fragment = ui.get("/ui/pools", Some(&browser)).await;
    assert!(fragment.body.starts_with("<div id=\"pools\""), "{}", fragment.body);

    let page = ui.get("/pools/warm", Some(&browser)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("2 desired, 2 running, 2 ready, 0 starting"), "{}", page.body);
    assert_eq!(page.body.matches("data-instance=").count(), 2, "{}", page.body);
    assert!(page.body.contains("/pools/warm/claim\"") && page.body.contains("/pools/warm/pause\""), "{}", page.body);
    assert!(page.body.contains("1, latest #1 start succeeded"), "builds of each instance: {}", page.body);

    let claimed = ui.post("/pools/warm/claim", Some(&browser), Some(ORIGIN), &[("csrf", &browser.csrf)]).await;
    assert_eq!(claimed.status, StatusCode::SEE_OTHER, "{}", claimed.body);
    let location = claimed.headers["location"].to_str().unwrap().to_owned();
    let id = location.strip_prefix("/pools/warm?claimed=").expect("back to the pool with the claim").to_owned();
    let page = ui.get(&location, Some(&browser)).await;
    assert!(page.body.contains(&format!("Claimed instance <code>{id}</code>")), "{}", page.body);
    assert!(page.body.contains("Claimed by owner at "), "who claimed it, and when: {}", page.body);
    let (_, instance) = ui.api(Method::GET, &format!("/api/v1/instances/{id}"), &ui.owner, None).await;
    assert_eq!(instance["claimed_by"], "owner", "{instance}");

    let paused = ui.post("/pools/warm/pause", Some(&browser), Some(ORIGIN), &[("csrf", &browser.csrf)]).await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", paused.body);
    let (_, pool) = ui.api(Method::GET, "/api/v1/pools/warm", &ui.owner, None).await;
    assert_eq!(pool["paused"], true);
    let page = ui.get("/pools/warm", Some(&browser)).await;
    assert!(page.body.contains("/pools/warm/resume\"") && !page.body.contains("/pools/warm/pause\""));
    let resumed = ui.post("/pools/warm/resume", Some(&browser), Some(ORIGIN), &[("csrf", &browser.csrf)]).await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    let (_, pool) = ui.api(Method::GET, "/api/v1/pools/warm", &ui.owner, None).await;
    assert_eq!(pool["paused"], false);

    let nope = ui.post("/pools/warm/explode", Some(&browser), Some(ORIGIN), &[("csrf", &browser.csrf)]).await;
    assert_eq!(nope.status, StatusCode::NOT_FOUND);
    let missing = ui.get("/pools/absent", Some(&browser)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn viewers_see_no_pool_controls_and_scoped_tokens_do_not_see_other_pools() {
    let ui = pools_ui().await;
    let viewer = ui.token("viewer", &[]).await;
    let reader = ui.sign_in(&viewer).await;
    let page = ui.get("/pools/warm", Some(&reader)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body.matches("<button").count(), 1, "a viewer's only button signs out: {}", page.body);
    let forged = ui.post("/pools/warm/pause", Some(&reader), Some(ORIGIN), &[("csrf", &reader.csrf)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let (_, pool) = ui.api(Method::GET, "/api/v1/pools/warm", &ui.owner, None).await;
    assert_eq!(pool["paused"], false, "nothing written");

    let elsewhere = ui.token("editor", &["production"]).await;
    let scoped = ui.sign_in(&elsewhere).await;
    let list = ui.get("/pools", Some(&scoped)).await;
    assert!(!list.body.contains("/pools/warm"), "{}", list.body);
    assert_eq!(ui.get("/pools/warm", Some(&scoped)).await.status, StatusCode::NOT_FOUND);
    let claim = ui.post("/pools/warm/claim", Some(&scoped), Some(ORIGIN), &[("csrf", &scoped.csrf)]).await;
    assert_eq!(claim.status, StatusCode::NOT_FOUND);
}
