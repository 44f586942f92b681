//! Resolve inside an experiment: deterministic assignment by targeting key, `SPLIT` answers,
//! the control for everyone while paused, the winner once completed.

use axum::http::{Method, StatusCode, header};
use cutover_store::Store;
use serde_json::{Value, json};

use crate::TestApp;
use crate::pins::{put, world};

cutover_store::contract_tests!(a_running_experiment_splits_resolve_by_targeting_key);

/// An OFREP call with the ETag of the answer, if any.
async fn ofrep(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value, Option<String>) {
    let (status, body, headers) = crate::resolve::ofrep(app, path, Some(token), &body.to_string(), &[]).await;
    (status, body, headers.get(header::ETAG).map(|v| v.to_str().unwrap().to_owned()))
}

async fn a_running_experiment_splits_resolve_by_targeting_key(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1}), None).await;
    let (status, created) = app
        .post(
            "/api/v1/environments/production/experiments",
            json!({"artifact": "greeting", "name": "warmer greeting", "treatments": [2], "primary_metric": "clicks"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let sdk = app.token("sdk", &["production"]).await;
    let single = "/ofrep/v1/evaluate/flags/greeting";
    // Created, not started: still the pinned version.
    let (_, before, _) = ofrep(&app, &sdk, single, json!({"context": {"targetingKey": "user-1"}})).await;
    assert_eq!(before["reason"], "STATIC");
    let (_, bulk_before, etag_before) =
        ofrep(&app, &sdk, "/ofrep/v1/evaluate/flags", json!({"context": {"targetingKey": "user-1"}})).await;
    assert_eq!(bulk_before["flags"][0]["reason"], "STATIC");

    let (_, resolved) = app.get("/api/v1/resolve/greeting?environment=production").await;
    let revision_before = resolved["revision"].as_i64().unwrap();
    assert_eq!(app.post(&format!("/api/v1/experiments/{id}/start"), json!({})).await.0, StatusCode::OK);
    // Starting changes what resolve answers: a new revision, announced by the change stream.
    let (_, resolved) = app.get("/api/v1/resolve/greeting?environment=production&targeting_key=u").await;
    assert_eq!(resolved["revision"].as_i64().unwrap(), revision_before + 1);
    let mut seen = std::collections::BTreeMap::new();
    for user in 0..200 {
        let context = json!({"context": {"targetingKey": format!("user-{user}")}});
        let (status, answer, _) = ofrep(&app, &sdk, single, context.clone()).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["reason"], "SPLIT", "{answer}");
        assert_eq!(answer["metadata"]["experiment"], id.as_str());
        let variant = answer["variant"].as_str().unwrap().to_owned();
        let expected = if variant == "v1" { ("hello 1", "control") } else { ("hello 2", "treatment-1") };
        assert_eq!(
            (answer["value"].as_str().unwrap(), answer["metadata"]["experimentVariant"].as_str().unwrap()),
            expected
        );
        // The same user always lands in the same variant, natively too.
        let (_, again, _) = ofrep(&app, &sdk, single, context).await;
        assert_eq!(again["variant"], answer["variant"]);
        let (_, native) =
            app.get(&format!("/api/v1/resolve/greeting?environment=production&targeting_key=user-{user}")).await;
        assert_eq!(native["value"], answer["value"], "{native}");
        assert_eq!(native["variant"], answer["metadata"]["experimentVariant"]);
        *seen.entry(variant).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both variants are served: {seen:?}");
    assert!(seen.values().all(|n| *n > 60), "a 50/50 split over 200 users: {seen:?}");

    let (status, missing, _) = ofrep(&app, &sdk, single, json!({"context": {}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        (missing["key"].clone(), missing["errorCode"].clone()),
        (json!("greeting"), json!("TARGETING_KEY_MISSING"))
    );
    let (status, body) = app.get("/api/v1/resolve/greeting?environment=production").await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::BAD_REQUEST, json!("targeting_key_missing")));
    let (_, bulk_running, etag_running) =
        ofrep(&app, &sdk, "/ofrep/v1/evaluate/flags", json!({"context": {"targetingKey": "user-1"}})).await;
    assert_eq!(bulk_running["flags"][0]["reason"], "SPLIT");
    assert_ne!(etag_running, etag_before, "starting an experiment changes the bulk answer's ETag");

    // Paused: everyone gets the control.
    app.post(&format!("/api/v1/experiments/{id}/pause"), json!({})).await;
    for user in 0..20 {
        let (_, answer, _) =
            ofrep(&app, &sdk, single, json!({"context": {"targetingKey": format!("user-{user}")}})).await;
        assert_eq!(
            (answer["value"].as_str(), answer["variant"].as_str(), answer["reason"].as_str()),
            (Some("hello 1"), Some("v1"), Some("STATIC"))
        );
    }
    // Completed with a winner: it is pinned, and the experiment no longer answers.
    let (status, done) = app
        .call(Method::POST, &format!("/api/v1/experiments/{id}/complete"), Some(&app.owner), Some(json!({"winner": 2})))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (_, after, _) = ofrep(&app, &sdk, single, json!({"context": {}})).await;
    assert_eq!((after["value"].as_str(), after["reason"].as_str()), (Some("hello 2"), Some("STATIC")));
    assert!(after["metadata"].get("experiment").is_none());
}
