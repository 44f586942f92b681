//! Exposures, metric events and results: resolve records who saw which variant, events are
//! attributed to it, and results match scipy's numbers for the same raw data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use cutover_domain::Timestamp;
use cutover_server::{AppState, ServerConfig};
use cutover_store::{Exposure, Store};
use serde_json::{Map, Value, json};

use crate::pins::{put, world};
use crate::{TestApp, error};

cutover_store::contract_tests!(
    results_match_scipy_for_a_whole_experiment,
    resolve_records_each_user_once_and_nothing_while_paused,
    a_concurrent_burst_on_two_replicas_records_each_user_exactly_once,
    events_are_validated_as_a_whole_batch,
    results_and_events_respect_roles_and_workspaces,
);

const FIXTURES: &str = "../cutover-domain/tests/fixtures/stats.json";

/// `greeting` with `versions` versions, v1 pinned in production, and an experiment on it there
/// (treatments 2..=versions, primary metric `checkout`, guardrail `revenue`), started.
async fn running(app: &TestApp, versions: usize, coverage: f64) -> String {
    world(app, versions).await;
    put(app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1}), None).await;
    let treatments: Vec<usize> = (2..=versions).collect();
    let (status, made) = app
        .post(
            "/api/v1/environments/production/experiments",
            json!({"artifact": "greeting", "name": "checkout copy", "treatments": treatments, "coverage": coverage,
                   "primary_metric": "checkout", "guardrail_metrics": ["revenue"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(app.post(&format!("/api/v1/experiments/{id}/start"), json!({})).await.0, StatusCode::OK);
    id
}

/// `actual` has exactly `expected`'s shape and values, numbers within a relative 1e-9.
fn assert_matches(actual: &Value, expected: &Value, at: &str) {
    match (actual, expected) {
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
            assert!((a - e).abs() <= 1e-9 * e.abs().max(1e-12), "{at}: {a} != {e}");
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{at}: {actual} != {expected}");
            for (i, (a, e)) in a.iter().zip(e).enumerate() {
                assert_matches(a, e, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(a), Value::Object(e)) => {
            let (mut keys_a, mut keys_e): (Vec<_>, Vec<_>) = (a.keys().collect(), e.keys().collect());
            keys_a.sort();
            keys_e.sort();
            assert_eq!(keys_a, keys_e, "{at}");
            for (key, e) in e {
                assert_matches(&a[key], e, &format!("{at}.{key}"));
            }
        }
        _ => assert_eq!(actual, expected, "{at}"),
    }
}

/// The whole answer expected from the fixture, with the fields scipy does not compute added
/// (versions, test names, the relative interval as the absolute one over the control, verdicts).
/// `needed` is the users per arm of each inconclusive comparison, by (metric, variant).
fn expected_results(id: &str, fixture: &Value, needed: &[((&str, usize), u64)]) -> Value {
    let expected = &fixture["expected"];
    let exposed: Vec<u64> = serde_json::from_value(fixture["exposed"].clone()).unwrap();
    let mut metrics = Vec::new();
    for metric in expected["metrics"].as_array().unwrap() {
        let kind = metric["kind"].as_str().unwrap();
        let variants = metric["variants"].as_array().unwrap();
        let control = variants[0][if kind == "mean" { "mean" } else { "conversion_rate" }].as_f64().unwrap();
        let variants: Vec<Value> = variants
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut v: Map<String, Value> = v.as_object().unwrap().clone();
                v.insert("version".into(), json!(i + 1));
                if let Some(lift) = v.get_mut("lift") {
                    let interval = lift["absolute_interval"].clone();
                    lift["absolute_interval"] = json!({"low": interval[0], "high": interval[1]});
                    lift["relative_interval"] = json!({
                        "low": interval[0].as_f64().unwrap() / control,
                        "high": interval[1].as_f64().unwrap() / control,
                    });
                    lift["test"] = json!(if kind == "mean" { "welch_t" } else { "two_proportion_z" });
                    // At 95%; the primary metric should rise, the guardrail (revenue) not.
                    let primary = metric["metric"] == "checkout";
                    let significant = lift["p_value"].as_f64().unwrap() < 0.05;
                    let up = lift["absolute"].as_f64().unwrap() > 0.0;
                    let verdict = match (significant, up == primary) {
                        (false, _) => "inconclusive",
                        (true, true) => "better",
                        (true, false) => "worse",
                    };
                    lift["verdict"] = json!(verdict);
                    lift["guardrail_violated"] = json!(!primary && verdict == "worse");
                    let key = (metric["metric"].as_str().unwrap(), i);
                    if let Some((_, n)) = needed.iter().find(|(k, _)| *k == key) {
                        lift["users_needed_per_variant"] = json!(n);
                        lift["additional_users_needed"] = json!(2 * n - exposed[0] - exposed[i]);
                    }
                }
                Value::Object(v)
            })
            .collect();
        let primary = metric["metric"] == "checkout";
        let violated = variants.iter().any(|v| v["lift"]["guardrail_violated"] == true);
        metrics.push(json!({
            "metric": metric["metric"], "kind": kind, "primary": primary, "variants": variants,
            "direction": if primary { "higher_is_better" } else { "lower_is_better" },
            "guardrail_violated": violated,
        }));
    }
    let third = 1.0 / 3.0;
    json!({
        "experiment": id,
        "status": "running",
        "exposures": exposed.iter().sum::<u64>(),
        "sample_ratio": {
            "observed": exposed,
            "expected_weights": [third, third, third],
            "chi_squared": expected["sample_ratio"]["chi_squared"],
            "p_value": expected["sample_ratio"]["p_value"],
            "mismatch": expected["sample_ratio"]["mismatch"],
            "threshold": 0.001,
        },
        "metrics": metrics,
    })
}

async fn results_match_scipy_for_a_whole_experiment(store: Store) {
    let app = TestApp::new(store).await;
    let id = running(&app, 3, 1.0).await;
    let fixtures: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURES).unwrap()).unwrap();
    let fixture = &fixtures["experiment_results"];
    // Exposures as resolve would record them, with the variant each user landed in.
    let keys = ["control", "treatment-1", "treatment-2"];
    let mut exposures = Vec::new();
    for (variant, n) in fixture["exposed"].as_array().unwrap().iter().enumerate() {
        for i in 0..n.as_u64().unwrap() {
            exposures.push(Exposure {
                experiment_id: id.clone(),
                targeting_key: format!("{}-{i}", keys[variant]),
                variant: variant as u32,
                at: Timestamp::now(),
            });
        }
    }
    app.store.record_exposures(&exposures).await.unwrap();

    let sdk = app.token("sdk", &["production"]).await;
    let events = fixture["events"].clone();
    let count = events.as_array().unwrap().len();
    let posted = app.call(Method::POST, "/api/v1/events", Some(&sdk), Some(json!({"events": events}))).await;
    assert_eq!(posted, (StatusCode::OK, json!({"received": count, "attributed": count})));

    let (status, results) = app.get(&format!("/api/v1/experiments/{id}/results")).await;
    assert_eq!(status, StatusCode::OK, "{results}");
    // Checkout, control 40/400 against treatment-2 50/420: Cohen's h 0.061046, so at 80% power
    // 2 × ((1.959964 + 0.841621) / 0.061046)² = 4212.3 users per arm (statsmodels NormalIndPower).
    // Revenue's treatment-2 needs the arms' variances, which the fixture does not list: the
    // domain's unit tests check that formula; here it is taken as answered.
    let revenue_needed = results["metrics"][1]["variants"][2]["lift"]["users_needed_per_variant"].as_u64().unwrap();
    assert!(revenue_needed > 420, "{results}");
    let needed = [(("checkout", 2), 4213), (("revenue", 2), revenue_needed)];
    assert_matches(&results, &expected_results(&id, fixture, &needed), "results");
    // Revenue rose significantly with treatment-1: as a guardrail, that is flagged.
    assert_eq!(results["metrics"][1]["guardrail_violated"], true, "{results}");
}

async fn a_concurrent_burst_on_two_replicas_records_each_user_exactly_once(store: Store) {
    const USERS: usize = 300;
    let app = Arc::new(TestApp::new(store.clone()).await);
    let id = running(&app, 3, 1.0).await;
    // A second replica on the same database: its own snapshot, exposure buffer and flusher.
    let state = AppState::new(store.clone(), ServerConfig::default());
    let replica = Arc::new(TestApp {
        router: cutover_server::app(state.clone()),
        state,
        store: store.clone(),
        owner: app.owner.clone(),
    });
    // Both flushers write every millisecond while the burst runs, as they would under load.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let flushers: Vec<_> = [&app, &replica]
        .iter()
        .map(|server| server.state.exposures.clone().spawn(store.clone(), Duration::from_millis(1), stopping.clone()))
        .collect();
    let mut burst = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let servers = [app.clone(), replica.clone()];
        burst.spawn(async move {
            let mut answers = Vec::with_capacity(USERS);
            // Every worker asks for every user, in its own order, alternating replicas.
            for i in 0..USERS {
                let user = (i * 7 + worker * 13) % USERS;
                let path = format!("/api/v1/resolve/greeting?environment=production&targeting_key=user-{user}");
                let (status, answer) = servers[(i + worker) % 2].get(&path).await;
                assert_eq!(status, StatusCode::OK, "{answer}");
                answers.push((user, answer["variant"].as_str().unwrap().to_owned()));
            }
            answers
        });
    }
    let mut variant_of: BTreeMap<usize, String> = BTreeMap::new();
    for (user, variant) in burst.join_all().await.into_iter().flatten() {
        let first = variant_of.entry(user).or_insert_with(|| variant.clone());
        assert_eq!(*first, variant, "user-{user} always lands in one variant");
    }
    assert_eq!(variant_of.len(), USERS);
    stop.send_replace(true);
    for flusher in flushers {
        flusher.await.unwrap();
    }

    let expected: Vec<u64> = ["control", "treatment-1", "treatment-2"]
        .iter()
        .map(|name| variant_of.values().filter(|v| v == name).count() as u64)
        .collect();
    assert!(expected.iter().all(|&n| n > 0), "every variant drew users: {expected:?}");
    let (status, results) = app.get(&format!("/api/v1/experiments/{id}/results")).await;
    assert_eq!(status, StatusCode::OK, "{results}");
    assert_eq!(results["exposures"], json!(USERS), "{results}");
    assert_eq!(results["sample_ratio"]["observed"], json!(expected), "{results}");
    // Each replica counts the first exposures its own flushes wrote: together, each user once.
    let mut recorded = 0;
    for server in [&app, &replica] {
        let (_, metrics) = server.call(Method::GET, "/metrics", None, None).await;
        let line = metrics.as_str().unwrap().lines().find(|l| l.starts_with("cutover_exposures_recorded_total "));
        recorded += line.and_then(|l| l.rsplit(' ').next()).unwrap().parse::<u64>().unwrap();
    }
    assert_eq!(recorded, USERS as u64);
}

async fn resolve_records_each_user_once_and_nothing_while_paused(store: Store) {
    let app = TestApp::new(store).await;
    let id = running(&app, 2, 0.5).await;
    let sdk = app.token("sdk", &["production"]).await;
    let mut split = [0_u64; 2];
    let (mut exposed, mut outside) = (None, None);
    for user in 0..60 {
        let key = format!("user-{user}");
        let context = json!({"context": {"targetingKey": key}}).to_string();
        let single = "/ofrep/v1/evaluate/flags/greeting";
        let (_, answer, _) = crate::resolve::ofrep(&app, single, Some(&sdk), &context, &[]).await;
        // Again through OFREP single and bulk, and natively: still one exposure.
        crate::resolve::ofrep(&app, single, Some(&sdk), &context, &[]).await;
        crate::resolve::ofrep(&app, "/ofrep/v1/evaluate/flags", Some(&sdk), &context, &[]).await;
        app.get(&format!("/api/v1/resolve/greeting?environment=production&targeting_key={key}")).await;
        match (answer["reason"].as_str().unwrap(), answer["metadata"]["experimentVariant"].as_str()) {
            ("SPLIT", Some("control")) => split[0] += 1,
            ("SPLIT", Some("treatment-1")) => {
                split[1] += 1;
                exposed = Some(key);
            }
            // Outside the coverage: the pinned version, and no exposure.
            ("STATIC", None) => outside = Some(key),
            other => panic!("unexpected answer {other:?}: {answer}"),
        }
    }
    assert!(
        split[0] > 0 && split[1] > 0 && split.iter().sum::<u64>() < 60,
        "half the traffic, both variants: {split:?}"
    );
    let (_, results) = app.get(&format!("/api/v1/experiments/{id}/results")).await;
    assert_eq!(results["sample_ratio"]["observed"], json!(split), "{results}");
    assert_eq!(results["exposures"], json!(split.iter().sum::<u64>()));

    // A conversion of an exposed user counts in their variant; one of a user outside does not.
    let batch = json!([
        {"metric": "checkout", "targeting_key": exposed.unwrap()},
        {"metric": "checkout", "targeting_key": outside.unwrap()},
    ]);
    let posted = app.call(Method::POST, "/api/v1/events", Some(&sdk), Some(batch)).await;
    assert_eq!(posted, (StatusCode::OK, json!({"received": 2, "attributed": 1})));
    let (_, results) = app.get(&format!("/api/v1/experiments/{id}/results")).await;
    let checkout = &results["metrics"][0];
    assert_eq!((checkout["metric"].as_str(), checkout["kind"].as_str()), (Some("checkout"), Some("conversion")));
    let conversions: Vec<&Value> = checkout["variants"].as_array().unwrap().iter().map(|v| &v["conversions"]).collect();
    assert_eq!(conversions, [&json!(0), &json!(1)]);

    app.post(&format!("/api/v1/experiments/{id}/pause"), json!({})).await;
    for user in 60..120 {
        app.get(&format!("/api/v1/resolve/greeting?environment=production&targeting_key=user-{user}")).await;
    }
    let (_, paused) = app.get(&format!("/api/v1/experiments/{id}/results")).await;
    assert_eq!(
        paused["sample_ratio"]["observed"],
        json!(split),
        "paused: everyone gets the control, nobody is exposed"
    );
    assert_eq!(paused["status"], "paused");
}

async fn events_are_validated_as_a_whole_batch(store: Store) {
    let app = TestApp::new(store).await;
    let id = running(&app, 2, 1.0).await;
    // An exposed user, so that a valid event in a refused batch would count if anything were written.
    let (_, answer) = app.get("/api/v1/resolve/greeting?environment=production&targeting_key=alice").await;
    assert!(answer["variant"].is_string(), "{answer}");
    let good = json!({"metric": "checkout", "targeting_key": "alice"});
    let future = "2999-01-01T00:00:00Z";
    let cases = [
        (json!([good, {"targeting_key": "alice"}]), "events[1]: missing field `metric`"),
        (json!([good, {"metric": "Check Out", "targeting_key": "alice"}]), ""),
        (
            json!([good, {"metric": "checkout", "targeting_key": ""}]),
            "events[1]: targeting_key must be 1 to 256 characters without control characters",
        ),
        (
            json!([good, {"metric": "checkout", "targeting_key": "a", "value": 1e13}]),
            "events[1]: value 10000000000000 is out of range (at most 1e12 in magnitude)",
        ),
        (json!([good, {"metric": "checkout", "targeting_key": "a", "timestamp": "yesterday"}]), ""),
        (
            json!([good, {"metric": "checkout", "targeting_key": "a", "timestamp": future}]),
            "events[1]: timestamp is more than 5 minutes in the future",
        ),
        (json!([good, {"metric": "checkout", "targeting_key": "a", "colour": "red"}]), ""),
        (json!({"events": [good], "extra": 1}), "unknown field `extra`, expected `events`"),
        (json!({"evnts": [good]}), "unknown field `evnts`, expected `events`"),
        (json!({"events": "all"}), "`events` must be an array"),
        (json!("checkout"), "send {\"events\": [...]} or an array of events"),
        (Value::Array(vec![good.clone(); 1_001]), "1001 events in one batch; send at most 1000"),
    ];
    for (body, message) in cases {
        let (status, answer) = app.post("/api/v1/events", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_body", "{answer}");
        if message.is_empty() {
            assert!(answer["error"]["message"].as_str().unwrap().starts_with("events[1]: "), "{answer}");
        } else {
            assert_eq!(answer, error("invalid_body", message));
        }
    }
    let (_, results) = app.get(&format!("/api/v1/experiments/{id}/results")).await;
    assert_eq!(
        results["metrics"][0]["variants"][0]["events"].as_u64().unwrap()
            + results["metrics"][0]["variants"][1]["events"].as_u64().unwrap(),
        0,
        "nothing written by refused batches"
    );
    // Both body shapes are accepted; an empty batch is fine.
    assert_eq!(app.post("/api/v1/events", json!([])).await, (StatusCode::OK, json!({"received": 0, "attributed": 0})));
    assert_eq!(
        app.post("/api/v1/events", json!({"events": [good]})).await,
        (StatusCode::OK, json!({"received": 1, "attributed": 1}))
    );
}

async fn results_and_events_respect_roles_and_workspaces(store: Store) {
    let app = TestApp::new(store).await;
    let id = running(&app, 2, 1.0).await;
    let results = format!("/api/v1/experiments/{id}/results");
    let viewer = app.token("viewer", &[]).await;
    assert_eq!(app.call(Method::GET, &results, Some(&viewer), None).await.0, StatusCode::OK);
    let sdk = app.token("sdk", &["production"]).await;
    assert_eq!(app.call(Method::GET, &results, Some(&sdk), None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.call(Method::POST, "/api/v1/events", None, Some(json!([]))).await.0, StatusCode::UNAUTHORIZED);
    // An sdk token of staging feeds nothing in production.
    app.get("/api/v1/resolve/greeting?environment=production&targeting_key=bob").await;
    let staging = app.token("sdk", &["staging"]).await;
    let event = json!([{"metric": "checkout", "targeting_key": "bob"}]);
    let posted = app.call(Method::POST, "/api/v1/events", Some(&staging), Some(event.clone())).await;
    assert_eq!(posted, (StatusCode::OK, json!({"received": 1, "attributed": 0})));
    // Another workspace: the experiment does not exist there, and its events feed nothing here.
    let (_, made) = app.post("/api/v1/workspaces", json!({"name": "acme"})).await;
    let acme = made["token"]["secret"].as_str().unwrap();
    let answer = app.call(Method::GET, &results, Some(acme), None).await;
    assert_eq!(answer, (StatusCode::NOT_FOUND, error("not_found", &format!("experiment {id:?} not found"))));
    let posted = app.call(Method::POST, "/api/v1/events", Some(acme), Some(event)).await;
    assert_eq!(posted, (StatusCode::OK, json!({"received": 1, "attributed": 0})));
}
