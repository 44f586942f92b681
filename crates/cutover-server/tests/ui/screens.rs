use axum::http::{Method, StatusCode};
use cutover_domain::Timestamp;
use cutover_store::Exposure;
use serde_json::json;

use crate::{ORIGIN, Ui};

#[tokio::test]
async fn experiment_results_show_the_api_s_numbers_and_actions_follow_the_status() {
    let ui = Ui::new().await;
    ui.world().await;
    let (status, made) = ui
        .api(
            Method::POST,
            "/api/v1/environments/staging/experiments",
            &ui.owner,
            Some(json!({"artifact": "prompts/welcome", "name": "shorter", "treatments": [1], "primary_metric": "signup"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    let browser = ui.sign_in(&ui.owner).await;
    let list = ui.get("/experiments", Some(&browser)).await;
    assert!(list.body.contains(&format!("<a href=\"/experiments/{id}\">shorter</a>")), "{}", list.body);

    let page = ui.get(&format!("/experiments/{id}"), Some(&browser)).await;
    // Starting goes through the preview (tests/ui/previews.rs).
    assert!(page.body.contains(&format!("href=\"/experiments/{id}/preview\"")), "{}", page.body);
    assert!(!page.body.contains("/pause\""));
    let started =
        ui.post(&format!("/experiments/{id}/start"), Some(&browser), Some(ORIGIN), &[("csrf", &browser.csrf)]).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);

    let exposures: Vec<Exposure> = (0..40)
        .map(|i| Exposure {
            experiment_id: id.clone(),
            targeting_key: format!("u{i}"),
            variant: i % 2,
            at: Timestamp::now(),
        })
        .collect();
    ui.store.record_exposures(&exposures).await.unwrap();
    let sdk = ui.token("sdk", &["staging"]).await;
    let events: Vec<_> = (0..12).map(|i| json!({"metric": "signup", "targeting_key": format!("u{i}")})).collect();
    let (status, body) = ui.api(Method::POST, "/api/v1/events", &sdk, Some(json!({"events": events}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (_, results) = ui.api(Method::GET, &format!("/api/v1/experiments/{id}/results"), &ui.owner, None).await;
    let page = ui.get(&format!("/experiments/{id}"), Some(&browser)).await;
    assert!(page.body.contains("Sample ratio as expected"), "{}", page.body);
    assert!(page.body.contains(&format!("{} users exposed", results["exposures"])), "{}", page.body);
    let signup = &results["metrics"][0];
    for variant in signup["variants"].as_array().unwrap() {
        let row = format!(
            "<td>{} (v{})</td>\n      <td>{}</td>\n      <td>{}</td>",
            variant["variant"].as_str().unwrap(),
            variant["version"],
            variant["exposures"],
            variant["conversions"]
        );
        assert!(page.body.contains(&row), "{row} in {}", page.body);
    }
    let lift = &signup["variants"][1]["lift"];
    if let Some(p) = lift["p_value"].as_f64() {
        assert!(page.body.contains(&format!("{p:.4}")), "p-value {p}");
    }
    assert!(page.body.contains("<svg class=\"interval\""), "the interval is drawn");
    assert!(page.body.contains("/pause\"") && page.body.contains("/complete\"") && !page.body.contains("/start\""));
}

#[tokio::test]
async fn a_rollout_shows_its_targets_and_only_the_controls_its_state_allows() {
    let ui = Ui::new().await;
    ui.world().await;
    let (status, body) = ui
        .api(
            Method::POST,
            "/api/v1/environments",
            &ui.owner,
            Some(json!({"name": "edge", "targets": [{"name": "eu-1"}, {"name": "us-1"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, made) = ui
        .api(
            Method::POST,
            "/api/v1/rollouts",
            &ui.owner,
            Some(json!({"artifact": "prompts/welcome", "environment": "edge", "version": 2, "executor": {"type": "manual"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    let browser = ui.sign_in(&ui.owner).await;
    let list = ui.get("/rollouts", Some(&browser)).await;
    assert!(list.body.contains(&format!("<a href=\"/rollouts/{id}\">prompts/welcome v2</a>")), "{}", list.body);
    let page = ui.get(&format!("/rollouts/{id}"), Some(&browser)).await;
    assert!(page.body.contains("data-target=\"eu-1\"") && page.body.contains("data-target=\"us-1\""), "{}", page.body);
    assert!(
        page.body.contains("/stop\"") && page.body.contains("/cancel\"") && !page.body.contains("/resume\""),
        "{}",
        page.body
    );
    let stopped =
        ui.post(&format!("/rollouts/{id}/stop"), Some(&browser), Some(ORIGIN), &[("csrf", &browser.csrf)]).await;
    assert_eq!(stopped.status, StatusCode::SEE_OTHER, "{}", stopped.body);
    let (_, rollout) = ui.api(Method::GET, &format!("/api/v1/rollouts/{id}"), &ui.owner, None).await;
    assert_ne!(rollout["state"], "pending", "{rollout}");
    let fragment = ui.get(&format!("/ui/rollouts/{id}"), Some(&browser)).await;
    assert!(fragment.body.starts_with("<div id=\"rollout\""), "{}", fragment.body);

    let viewer = ui.token("viewer", &[]).await;
    let reader = ui.sign_in(&viewer).await;
    let page = ui.get(&format!("/rollouts/{id}"), Some(&reader)).await;
    assert_eq!(page.body.matches("<button").count(), 1, "a viewer's only button signs out: {}", page.body);
}

#[tokio::test]
async fn the_audit_log_filters_and_shows_what_changed() {
    let ui = Ui::new().await;
    ui.world().await;
    let browser = ui.sign_in(&ui.owner).await;
    let page = ui.get("/audit?object_type=artifact&object_id=prompts%2Fwelcome&action=pin", Some(&browser)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<code>pin.set</code>") || page.body.contains("<code>pin"), "{}", page.body);
    assert!(!page.body.contains("<code>environment.create</code>"));
    let bad = ui.get("/audit?object_type=nope", Some(&browser)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}
