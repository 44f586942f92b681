//! Change previews before an experiment starts and before a rollout is created: what clients
//! will get, the targets touched wave by wave, the CLI command; confirming makes the change.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::{ORIGIN, Ui};

#[tokio::test]
async fn an_experiment_start_shows_each_variant_s_answer_and_share_first() {
    let ui = Ui::new().await;
    ui.world().await;
    let (status, made) = ui
        .api(
            Method::POST,
            "/api/v1/environments/staging/experiments",
            &ui.owner,
            Some(json!({"artifact": "prompts/welcome", "name": "shorter", "treatments": [1],
                        "weights": [0.75, 0.25], "coverage": 0.5, "primary_metric": "signup"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    let browser = ui.sign_in(&ui.owner).await;
    let page = ui.get(&format!("/experiments/{id}/preview"), Some(&browser)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("splits 50% of the users"), "{}", page.body);
    assert!(page.body.contains("the other 50% keep getting what is live now"), "{}", page.body);
    assert!(page.body.contains("75% of the experiment, 37.5% of all users"), "{}", page.body);
    assert!(page.body.contains("25% of the experiment, 12.5% of all users"), "{}", page.body);
    // Each variant's answer is what OFREP will send: the version's value, reason SPLIT.
    let treatment = page.body.split("data-variant=\"treatment-1\"").nth(1).unwrap();
    assert!(treatment.contains("&#34;reason&#34;: &#34;SPLIT&#34;"), "{treatment}");
    assert!(treatment.contains("Hello.\\nBe brief.\\n"), "v1's content: {treatment}");
    assert!(treatment.contains(&format!("&#34;experiment&#34;: &#34;{id}&#34;")), "{treatment}");
    assert!(page.body.contains(&format!("cutover experiment start {id}")));
    // Nothing started by looking.
    let (_, shown) = ui.api(Method::GET, &format!("/api/v1/experiments/{id}"), &ui.owner, None).await;
    assert_eq!(shown["status"], "created");
    let started =
        ui.post(&format!("/experiments/{id}/start"), Some(&browser), Some(ORIGIN), &[("csrf", &browser.csrf)]).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    // A running experiment has nothing to preview.
    assert_eq!(ui.get(&format!("/experiments/{id}/preview"), Some(&browser)).await.status, StatusCode::CONFLICT);
    let viewer = ui.token("viewer", &[]).await;
    let reader = ui.sign_in(&viewer).await;
    assert_eq!(ui.get(&format!("/experiments/{id}/preview"), Some(&reader)).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_rollout_is_previewed_wave_by_wave_then_started_from_the_page() {
    let ui = Ui::new().await;
    ui.world().await;
    let targets = json!([{"name": "eu-1"}, {"name": "eu-2"}, {"name": "us-1"}]);
    let (status, body) = ui
        .api(Method::POST, "/api/v1/environments", &ui.owner, Some(json!({"name": "edge", "targets": targets})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let browser = ui.sign_in(&ui.owner).await;
    let list = ui.get("/rollouts", Some(&browser)).await;
    assert!(list.body.contains("href=\"/rollouts/new\""), "{}", list.body);
    let form = ui.get("/rollouts/new?artifact=prompts%2Fwelcome&version=2", Some(&browser)).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(form.body.contains("<option value=\"edge\""), "only environments with targets: {}", form.body);
    assert!(!form.body.contains("<option value=\"staging\""), "{}", form.body);

    let query = "artifact=prompts%2Fwelcome&environment=edge&version=2&max_parallel=2&on_failure=pause\
                 &failure_budget=&steps=check%2C+apply&executor=manual";
    let page = ui.get(&format!("/rollouts/preview?{query}"), Some(&browser)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("touches 3 targets of edge in 2 waves"), "{}", page.body);
    assert!(page.body.contains("Wave 1: <strong>eu-1</strong>, <strong>eu-2</strong></li>"), "{}", page.body);
    assert!(page.body.contains("Wave 2: <strong>us-1</strong></li>"), "{}", page.body);
    assert!(page.body.contains("check → apply, run by a person"), "{}", page.body);
    assert!(page.body.contains("edge gets v2 (nothing is live there now)"), "{}", page.body);
    assert!(
        page.body.contains(
            "cutover rollout start --artifact prompts/welcome --env edge --version 2 --max-parallel 2 \
             --on-failure pause --step check --step apply --manual"
        ),
        "{}",
        page.body
    );
    let (_, none) = ui.api(Method::GET, "/api/v1/rollouts", &ui.owner, None).await;
    assert_eq!(none["items"], json!([]), "a preview starts nothing");

    for (bad, why) in [
        ("artifact=prompts%2Fwelcome&environment=edge&version=9", StatusCode::NOT_FOUND),
        ("artifact=prompts%2Fwelcome&environment=edge&version=2&max_parallel=0", StatusCode::BAD_REQUEST),
        ("artifact=prompts%2Fwelcome&environment=edge&version=2&executor=deploy", StatusCode::BAD_REQUEST),
        ("artifact=prompts%2Fwelcome&environment=staging&version=2", StatusCode::CONFLICT),
        ("artifact=prompts%2Fwelcome&environment=edge&version=two", StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(ui.get(&format!("/rollouts/preview?{bad}"), Some(&browser)).await.status, why, "{bad}");
    }

    let fields = [
        ("csrf", browser.csrf.as_str()),
        ("artifact", "prompts/welcome"),
        ("environment", "edge"),
        ("version", "2"),
        ("max_parallel", "2"),
        ("on_failure", "pause"),
        ("failure_budget", ""),
        ("steps", "check, apply"),
        ("executor", "manual"),
    ];
    let viewer = ui.token("viewer", &[]).await;
    let reader = ui.sign_in(&viewer).await;
    let mut forged = fields.to_vec();
    forged[0] = ("csrf", reader.csrf.as_str());
    assert_eq!(ui.post("/rollouts", Some(&reader), Some(ORIGIN), &forged).await.status, StatusCode::FORBIDDEN);
    assert_eq!(ui.get("/rollouts/new", Some(&reader)).await.status, StatusCode::FORBIDDEN);

    let made = ui.post("/rollouts", Some(&browser), Some(ORIGIN), &fields).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let location = made.headers["location"].to_str().unwrap();
    let id = location.strip_prefix("/rollouts/").unwrap();
    let (_, rollout) = ui.api(Method::GET, &format!("/api/v1/rollouts/{id}"), &ui.owner, None).await;
    assert_eq!(
        (&rollout["max_parallel"], &rollout["on_failure"], &rollout["steps"], &rollout["operations"][2]["wave"]),
        (&json!(2), &json!("pause"), &json!(["check", "apply"]), &json!(1)),
        "{rollout}"
    );
}

#[tokio::test]
async fn the_audit_page_filters_by_time_and_action_in_the_query() {
    let ui = Ui::new().await;
    ui.world().await;
    let browser = ui.sign_in(&ui.owner).await;
    let page = ui.get("/audit?action=pin.", Some(&browser)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<code>pin.set</code>") || page.body.contains("<code>pin."), "{}", page.body);
    assert!(!page.body.contains("<code>environment.create</code>"), "{}", page.body);
    let future = ui.get("/audit?since=2999-01-01T00%3A00", Some(&browser)).await;
    assert_eq!(future.status, StatusCode::OK);
    assert!(future.body.contains("No entries."), "{}", future.body);
    assert!(future.body.contains("value=\"2999-01-01T00:00\""), "the form keeps the filter: {}", future.body);
    let past = ui.get("/audit?until=2000-01-01T00%3A00%3A00", Some(&browser)).await;
    assert!(past.body.contains("No entries."), "{}", past.body);
    let everything = ui.get("/audit?since=2000-01-01T00%3A00&until=2999-01-01T00%3A00", Some(&browser)).await;
    assert!(everything.body.contains("<code>environment.create</code>"), "{}", everything.body);
    assert_eq!(ui.get("/audit?since=yesterday", Some(&browser)).await.status, StatusCode::BAD_REQUEST);
}
