//! Bad targeting keys are refused on every resolve path, and an exposure the database refuses
//! is set aside and counted instead of blocking every other user's.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use cutover_server::resolve::LiveExperiment;
use cutover_store::Store;
use serde_json::{Value, json};

use crate::TestApp;
use crate::pins::{put, world};

cutover_store::contract_tests!(
    bad_targeting_keys_are_refused_on_every_resolve_path_and_expose_nobody,
    an_exposure_the_database_refuses_is_set_aside_and_counted,
);

const INVALID: &str = "must be 1 to 256 characters without control characters";

/// `greeting` pinned at 1 in production, with a running experiment of 1 against 2.
async fn running_experiment(app: &TestApp) -> String {
    world(app, 2).await;
    put(app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1}), None).await;
    let (status, created) = app
        .post(
            "/api/v1/environments/production/experiments",
            json!({"artifact": "greeting", "name": "split", "treatments": [2], "primary_metric": "clicks"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, body) = app.post(&format!("/api/v1/experiments/{id}/start"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    id
}

async fn bad_targeting_keys_are_refused_on_every_resolve_path_and_expose_nobody(store: Store) {
    let app = TestApp::new(store).await;
    running_experiment(&app).await;
    app.post("/api/v1/artifacts", json!({"key": "plain", "value_type": "string"})).await;
    app.post("/api/v1/artifacts/plain/versions", json!({"content": "p", "environments": ["production"]})).await;
    let sdk = app.token("sdk", &["production"]).await;
    let long = "x".repeat(257);
    let bad: [(Value, String); 5] = [
        (json!("nul\u{0}byte"), format!("context.targetingKey: {INVALID}")),
        (json!("line\nbreak"), format!("context.targetingKey: {INVALID}")),
        (json!("   "), format!("context.targetingKey: {INVALID}")),
        (json!(long), format!("context.targetingKey: {INVALID}")),
        (json!(42), "context.targetingKey must be a string".to_owned()),
    ];
    for (key, details) in &bad {
        let body = json!({"context": {"targetingKey": key}}).to_string();
        // In an experiment or not: the context is what is wrong.
        for flag in ["greeting", "plain"] {
            let path = format!("/ofrep/v1/evaluate/flags/{flag}");
            let (status, answer, _) = crate::resolve::ofrep(&app, &path, Some(&sdk), &body, &[]).await;
            assert_eq!(
                (status, answer),
                (
                    StatusCode::BAD_REQUEST,
                    json!({"key": flag, "errorCode": "INVALID_CONTEXT", "errorDetails": details})
                ),
                "{key}"
            );
        }
        let (status, answer, _) = crate::resolve::ofrep(&app, "/ofrep/v1/evaluate/flags", Some(&sdk), &body, &[]).await;
        assert_eq!(
            (status, answer),
            (StatusCode::BAD_REQUEST, json!({"errorCode": "INVALID_CONTEXT", "errorDetails": details})),
            "{key}"
        );
    }
    for key in ["nul%00byte", "tab%09", "%20%20", &"x".repeat(257)] {
        let (status, answer) =
            app.get(&format!("/api/v1/resolve/greeting?environment=production&targeting_key={key}")).await;
        assert_eq!(
            (status, answer),
            (
                StatusCode::BAD_REQUEST,
                json!({"error": {"code": "invalid_query", "message": format!("targeting_key: {INVALID}"),
                                 "details": {"field": "targeting_key"}}})
            ),
            "{key}"
        );
    }
    assert_eq!(app.state.exposures.flush(&app.store).await.unwrap(), 0, "nobody was exposed");

    // A valid key at the limit is assigned and exposed.
    let at_limit = "é".repeat(256);
    let body = json!({"context": {"targetingKey": at_limit}}).to_string();
    let (status, answer, _) =
        crate::resolve::ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&sdk), &body, &[]).await;
    assert_eq!((status, &answer["reason"]), (StatusCode::OK, &json!("SPLIT")), "{answer}");
    assert_eq!(app.state.exposures.flush(&app.store).await.unwrap(), 1);
}

async fn an_exposure_the_database_refuses_is_set_aside_and_counted(store: Store) {
    let app = TestApp::new(store).await;
    let id = running_experiment(&app).await;
    let workspace = app.get("/api/v1/whoami").await.1["workspace"]["id"].as_str().unwrap().to_owned();
    let view = app.state.resolver.view(&workspace).await.unwrap();
    let live = view.experiment("production", "greeting").unwrap();
    // Resolve refuses such rows; the buffer is fed directly, as a bug or an older server could.
    // A row of an experiment the database does not know is refused by both engines; a NUL byte
    // by PostgreSQL only.
    let unknown = Arc::new(LiveExperiment {
        id: "no-such-experiment".into(),
        running: true,
        seed: live.seed.clone(),
        coverage: live.coverage,
        variants: live.variants.clone(),
        values: live.values.clone(),
    });
    for user in 0..10 {
        app.state.exposures.record(live, &format!("user-{user}"), user % 2);
    }
    app.state.exposures.record(&unknown, "user-0", 0);
    app.state.exposures.record(live, "nul\u{0}byte", 1);
    let nul_refused = app.store.kind() == cutover_store::EngineKind::Postgres;

    let recorded = app.state.exposures.flush(&app.store).await.unwrap();
    assert_eq!(recorded, if nul_refused { 10 } else { 11 });
    // Nothing was kept back to block the next flush.
    assert_eq!(app.state.exposures.flush(&app.store).await.unwrap(), 0);
    let (status, results) = app.get(&format!("/api/v1/experiments/{id}/results")).await;
    assert_eq!(status, StatusCode::OK, "{results}");
    assert_eq!(results["exposures"], json!(recorded), "{results}");

    let (_, metrics) = app.call(Method::GET, "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap();
    let rejected = if nul_refused { 2 } else { 1 };
    assert!(metrics.contains(&format!("\ncutover_exposures_rejected_total {rejected}\n")), "{metrics}");
    assert!(metrics.contains(&format!("\ncutover_exposures_recorded_total {recorded}\n")), "{metrics}");
}
