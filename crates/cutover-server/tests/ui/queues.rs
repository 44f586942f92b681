//! The queue pages: the list and a queue's counts as the API gives them, submitting from the
//! page (and a refused draft shown again, nothing written), a manual check passed on the page
//! and the request landed, pause, resume and cancel; viewers see no controls and are refused,
//! queues outside a token's scope or workspace are not found. On both engines.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use cutover_server::ServerConfig;
use cutover_server::config::ExecutorConfig;
use cutover_store::Store;
use serde_json::{Value, json};

use crate::{ORIGIN, Ui};

cutover_store::contract_tests!(
    a_change_is_submitted_checked_by_hand_and_landed_from_the_pages,
    a_refused_draft_is_shown_again_and_nothing_is_written,
    viewers_see_no_queue_controls_and_other_scopes_and_workspaces_see_no_queue,
);

/// A UI whose engine runs, with the world (staging, protected production, `prompts/welcome`),
/// a number artifact `limits/max`, a manual queue `main` guarding staging and a command queue
/// `auto` guarding staging whose checks never finish.
async fn queue_ui(store: Store) -> Ui {
    let program = vec!["sh".to_owned(), "-c".to_owned(), "sleep 600".to_owned()];
    let check =
        ExecutorConfig { program, env: vec!["PATH".into()], working_dir: None, timeout_seconds: 600, workspaces: None };
    let config = ServerConfig {
        engine_tick_ms: 50,
        engine_lease_seconds: 5,
        executors: BTreeMap::from([("check".to_owned(), check)]),
        ..ServerConfig::default()
    };
    let ui = Ui::on_store(store, config, true).await;
    ui.world().await;
    let (status, body) = ui
        .api(Method::POST, "/api/v1/artifacts", &ui.owner, Some(json!({"key": "limits/max", "value_type": "number"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for (name, executor) in [("main", json!({"type": "manual"})), ("auto", json!({"type": "command", "name": "check"}))]
    {
        let body = json!({"name": name, "environment": "staging", "max_wait_seconds": 0, "executor": executor});
        let (status, body) = ui.api(Method::POST, "/api/v1/queues", &ui.owner, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    ui
}

async fn api_get(ui: &Ui, path: &str) -> Value {
    let (status, body) = ui.api(Method::GET, path, &ui.owner, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// Waits for queue `name` to run a check, and answers its id.
async fn running_check(ui: &Ui, name: &str) -> u64 {
    let started = Instant::now();
    loop {
        let queue = api_get(ui, &format!("/api/v1/queues/{name}")).await;
        if let Some(check) = queue["running_checks"].as_array().unwrap().first() {
            return check["id"].as_u64().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no check started: {queue:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits for request `id` of `main` to reach `state`.
async fn reaches(ui: &Ui, id: u64, state: &str) -> Value {
    let started = Instant::now();
    loop {
        let request = api_get(ui, &format!("/api/v1/queues/main/requests/{id}")).await;
        if request["state"] == state {
            return request;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never {state}: {request:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn a_change_is_submitted_checked_by_hand_and_landed_from_the_pages(store: Store) {
    let ui = queue_ui(store).await;
    let browser = ui.sign_in(&ui.owner).await;
    let list = ui.get("/queues", Some(&browser)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(list.body.contains("<a href=\"/queues/main\">main</a>"), "{}", list.body);
    assert!(list.body.contains("<td>command check (600 s)</td>"), "{}", list.body);
    assert!(list.body.contains("hx-get=\"/ui/queues\""), "the table refreshes itself");
    assert!(list.body.contains("<a href=\"/queues\" aria-current=\"page\">Queue</a>"), "{}", list.body);
    let fragment = ui.get("/ui/queues", Some(&browser)).await;
    assert!(fragment.body.starts_with("<div id=\"queues\""), "{}", fragment.body);

    let page = ui.get("/queues/main", Some(&browser)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("hx-get=\"/ui/queues/main\""), "the panel refreshes itself");
    assert!(page.body.contains("action=\"/queues/main/requests\""), "{}", page.body);
    assert!(page.body.contains("<option value=\"prompts/welcome\">prompts/welcome</option>"), "{}", page.body);
    assert!(page.body.contains("<option value=\"limits/max\">limits/max</option>"), "{}", page.body);
    assert!(page.body.contains("/queues/main/pause\""), "{}", page.body);

    let content = "Hello.\nBe kind & brief.\n";
    let fields =
        [("csrf", browser.csrf.as_str()), ("artifact", "prompts/welcome"), ("content", content), ("message", "kinder")];
    let submitted = ui.post("/queues/main/requests", Some(&browser), Some(ORIGIN), &fields).await;
    assert_eq!(submitted.status, StatusCode::SEE_OTHER, "{}", submitted.body);
    assert_eq!(submitted.headers["location"], "/queues/main/requests/1");

    let check = running_check(&ui, "main").await;
    let page = ui.get("/queues/main", Some(&browser)).await;
    assert!(page.body.contains(&format!("/queues/main/checks/{check}/pass\"")), "{}", page.body);
    assert!(page.body.contains(&format!("/queues/main/checks/{check}/fail\"")), "{}", page.body);
    assert!(page.body.contains("<tr data-request=\"1\">"), "{}", page.body);
    assert!(page.body.contains("/queues/main/requests/1/cancel\""), "a live request can be cancelled");
    let counts = "<dd id=\"counts\">1 live request in the queue, 1 active batch, 1 running check, 0 landed</dd>";
    assert!(page.body.contains(counts), "{}", page.body);
    let settings = "<dd>4 checks at once, batches of at most 8, waits at most 0 s for a batch to fill, 1 retry on a failure that may be a flake</dd>";
    assert!(page.body.contains(settings), "{}", page.body);
    let auto = ui.get("/queues/auto", Some(&browser)).await;
    assert!(!auto.body.contains("/checks/"), "a command queue's checks are not reported by hand: {}", auto.body);

    let passed = ui
        .post(&format!("/queues/main/checks/{check}/pass"), Some(&browser), Some(ORIGIN), &[("csrf", &browser.csrf)])
        .await;
    assert_eq!(passed.status, StatusCode::SEE_OTHER, "{}", passed.body);
    assert_eq!(passed.headers["location"], "/queues/main");
    let again = ui
        .post(&format!("/queues/main/checks/{check}/pass"), Some(&browser), Some(ORIGIN), &[("csrf", &browser.csrf)])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "a check is reported once: {}", again.body);
    let landed = reaches(&ui, 1, "landed").await;
    assert_eq!(landed["landed_versions"], json!({"prompts/welcome": 3}));
    let pin = api_get(&ui, "/api/v1/artifacts/prompts%2Fwelcome/pins/staging").await;
    assert_eq!(pin["version"], 3, "{pin}");

    let request = ui.get("/queues/main/requests/1", Some(&browser)).await;
    assert_eq!(request.status, StatusCode::OK, "{}", request.body);
    assert!(request.body.contains("<pre class=\"content\">Hello.\nBe kind &#38; brief.\n</pre>"), "{}", request.body);
    assert!(
        request.body.contains("<a href=\"/artifacts/prompts%2Fwelcome#v3\">prompts/welcome v3</a>"),
        "{}",
        request.body
    );
    assert!(
        request.body.contains("<td>started</td>\n    <td>→ validated</td>\n    <td>owner</td>"),
        "{}",
        request.body
    );
    assert!(request.body.contains("→ landed"), "{}", request.body);
    assert!(!request.body.contains("/cancel\""), "a landed request cannot be cancelled: {}", request.body);
    assert!(request.body.contains("hx-get=\"/ui/queues/main/requests/1\""), "the request refreshes itself");
    let page = ui.get("/queues/main", Some(&browser)).await;
    let counts = "<dd id=\"counts\">0 live requests in the queue, 0 active batches, 0 running checks, 1 landed</dd>";
    assert!(page.body.contains(counts), "{}", page.body);
    assert!(page.body.contains("Nothing in the queue."), "{}", page.body);

    // Paused, a request waits; it is cancelled from the page.
    let paused = ui.post("/queues/main/pause", Some(&browser), Some(ORIGIN), &[("csrf", &browser.csrf)]).await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", paused.body);
    assert_eq!(api_get(&ui, "/api/v1/queues/main").await["paused"], true);
    let page = ui.get("/queues/main", Some(&browser)).await;
    assert!(page.body.contains("/queues/main/resume\"") && !page.body.contains("/queues/main/pause\""));
    let fields = [("csrf", browser.csrf.as_str()), ("artifact", "limits/max"), ("content", "12"), ("hotfix", "on")];
    let submitted = ui.post("/queues/main/requests", Some(&browser), Some(ORIGIN), &fields).await;
    assert_eq!(submitted.headers["location"], "/queues/main/requests/2", "{}", submitted.body);
    let request = api_get(&ui, "/api/v1/queues/main/requests/2").await;
    assert_eq!(
        (request["lane"].clone(), request["changes"].clone()),
        (json!("hotfix"), json!([{"artifact": "limits/max", "content": 12}]))
    );
    let cancelled =
        ui.post("/queues/main/requests/2/cancel", Some(&browser), Some(ORIGIN), &[("csrf", &browser.csrf)]).await;
    assert_eq!(cancelled.status, StatusCode::SEE_OTHER, "{}", cancelled.body);
    assert_eq!(cancelled.headers["location"], "/queues/main/requests/2");
    let resumed = ui.post("/queues/main/resume", Some(&browser), Some(ORIGIN), &[("csrf", &browser.csrf)]).await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    reaches(&ui, 2, "cancelled").await;
    let page = ui.get("/queues/main/requests/2", Some(&browser)).await;
    assert!(
        page.body.contains("→ cancelling</td>\n    <td>owner</td>\n    <td>cancel asked for</td>"),
        "{}",
        page.body
    );
    let again =
        ui.post("/queues/main/requests/2/cancel", Some(&browser), Some(ORIGIN), &[("csrf", &browser.csrf)]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);

    // A failed check says why: the reason typed beside the Fail button is the refused request's error.
    let fields = [("csrf", browser.csrf.as_str()), ("artifact", "prompts/welcome"), ("content", "Be rude.")];
    let submitted = ui.post("/queues/main/requests", Some(&browser), Some(ORIGIN), &fields).await;
    assert_eq!(submitted.headers["location"], "/queues/main/requests/3", "{}", submitted.body);
    let check = running_check(&ui, "main").await;
    let page = ui.get("/queues/main", Some(&browser)).await;
    assert!(page.body.contains("name=\"output\""), "the Fail button takes a reason: {}", page.body);
    let bell = [("csrf", browser.csrf.as_str()), ("output", "bell \u{7}")];
    let refused = ui.post(&format!("/queues/main/checks/{check}/fail"), Some(&browser), Some(ORIGIN), &bell).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "as the API: {}", refused.body);
    // The queue retries a failure once (it may be a flake): both attempts fail.
    for _ in 0..2 {
        let check = running_check(&ui, "main").await;
        let fields = [("csrf", browser.csrf.as_str()), ("output", "too rude for the welcome page")];
        let failed = ui.post(&format!("/queues/main/checks/{check}/fail"), Some(&browser), Some(ORIGIN), &fields).await;
        assert_eq!(failed.status, StatusCode::SEE_OTHER, "{}", failed.body);
    }
    let refused = reaches(&ui, 3, "error").await;
    assert_eq!(refused["error"], "too rude for the welcome page", "{refused}");

    let nope = ui.post("/queues/main/explode", Some(&browser), Some(ORIGIN), &[("csrf", &browser.csrf)]).await;
    assert_eq!(nope.status, StatusCode::NOT_FOUND);
    assert_eq!(ui.get("/queues/absent", Some(&browser)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(ui.get("/queues/main/requests/99", Some(&browser)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(ui.get("/queues/Bad%20Name", Some(&browser)).await.status, StatusCode::BAD_REQUEST);
}

async fn a_refused_draft_is_shown_again_and_nothing_is_written(store: Store) {
    let ui = queue_ui(store).await;
    let browser = ui.sign_in(&ui.owner).await;
    let cases = [
        ("limits/max", "twelve", "", "content is not valid JSON"),
        ("limits/max", "\"twelve\"", "", "changes[0].content"),
        ("prompts/absent", "hi", "", "not found"),
        ("prompts/welcome", "hi", "bell \u{7}", "message: must not contain control characters"),
    ];
    for (artifact, content, message, error) in cases {
        let fields =
            [("csrf", browser.csrf.as_str()), ("artifact", artifact), ("content", content), ("message", message)];
        let answer = ui.post("/queues/main/requests", Some(&browser), Some(ORIGIN), &fields).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        let banner =
            answer.body.split("<p class=\"banner error\" role=\"alert\">").nth(1).expect("the reason is shown");
        assert!(banner.split("</p>").next().unwrap().contains(error), "{error}: {banner}");
        let draft = askama_escape(content);
        assert!(answer.body.contains(&format!(">{draft}</textarea>")), "the draft is kept: {}", answer.body);
    }
    // The CSRF token and the Origin are checked before anything.
    let fields = [("artifact", "prompts/welcome"), ("content", "hi")];
    let answer = ui.post("/queues/main/requests", Some(&browser), Some(ORIGIN), &fields).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    let fields = [("csrf", browser.csrf.as_str()), ("artifact", "prompts/welcome"), ("content", "hi")];
    let answer = ui.post("/queues/main/requests", Some(&browser), Some("http://evil.example"), &fields).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    let answer = ui.post("/queues/main/pause", Some(&browser), Some(ORIGIN), &[("csrf", "0000")]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert_eq!(api_get(&ui, "/api/v1/queues/main/requests").await, json!([]), "nothing written");
    assert_eq!(api_get(&ui, "/api/v1/queues/main").await["paused"], false);
}

fn askama_escape(text: &str) -> String {
    text.replace('&', "&#38;").replace('"', "&#34;").replace('<', "&#60;").replace('>', "&#62;")
}

async fn viewers_see_no_queue_controls_and_other_scopes_and_workspaces_see_no_queue(store: Store) {
    let ui = queue_ui(store).await;
    let (status, body) = ui
        .api(
            Method::POST,
            "/api/v1/queues/main/requests",
            &ui.owner,
            Some(json!({"changes": [{"artifact": "prompts/welcome", "content": "by API"}], "message": "m"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let check = running_check(&ui, "main").await;

    let viewer = ui.token("viewer", &[]).await;
    let reader = ui.sign_in(&viewer).await;
    let page = ui.get("/queues/main", Some(&reader)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<tr data-check=\"") && page.body.contains("<tr data-request=\"1\">"), "{}", page.body);
    assert_eq!(page.body.matches("<button").count(), 1, "a viewer's only button signs out: {}", page.body);
    assert!(!page.body.contains("/queues/main/requests\""), "no submit form: {}", page.body);
    let request = ui.get("/queues/main/requests/1", Some(&reader)).await;
    assert_eq!(request.body.matches("<button").count(), 1, "{}", request.body);
    let forged = [
        ("/queues/main/pause".to_owned(), vec![]),
        ("/queues/main/requests/1/cancel".to_owned(), vec![]),
        (format!("/queues/main/checks/{check}/pass"), vec![]),
        ("/queues/main/requests".to_owned(), vec![("artifact", "prompts/welcome"), ("content", "x")]),
    ];
    for (path, mut fields) in forged {
        fields.push(("csrf", reader.csrf.as_str()));
        let answer = ui.post(&path, Some(&reader), Some(ORIGIN), &fields).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}: {}", answer.body);
    }
    let queue = api_get(&ui, "/api/v1/queues/main").await;
    assert_eq!((queue["paused"].clone(), queue["running_checks"][0]["id"].clone()), (json!(false), json!(check)));
    assert_eq!(api_get(&ui, "/api/v1/queues/main/requests/1").await["state"], "processing", "nothing written");

    // A command queue's checks are not reported by hand, even by forging the form.
    let owner = ui.sign_in(&ui.owner).await;
    let answer = ui.post("/queues/auto/checks/1/pass", Some(&owner), Some(ORIGIN), &[("csrf", &owner.csrf)]).await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    assert!(answer.body.contains("only manual checks are reported"), "{}", answer.body);

    let elsewhere = ui.token("editor", &["production"]).await;
    let scoped = ui.sign_in(&elsewhere).await;
    let list = ui.get("/queues", Some(&scoped)).await;
    assert!(!list.body.contains("/queues/main"), "{}", list.body);
    for path in ["/queues/main", "/ui/queues/main", "/queues/main/requests/1", "/ui/queues/main/requests/1"] {
        assert_eq!(ui.get(path, Some(&scoped)).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    for path in ["/queues/main/pause", "/queues/main/requests/1/cancel", &format!("/queues/main/checks/{check}/pass")] {
        let answer = ui.post(path, Some(&scoped), Some(ORIGIN), &[("csrf", &scoped.csrf)]).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}: {}", answer.body);
    }

    let (status, made) = ui.api(Method::POST, "/api/v1/workspaces", &ui.owner, Some(json!({"name": "acme"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let acme = ui.sign_in(made["token"]["secret"].as_str().unwrap()).await;
    let list = ui.get("/queues", Some(&acme)).await;
    assert!(list.body.contains("No queues yet."), "{}", list.body);
    assert_eq!(ui.get("/queues/main", Some(&acme)).await.status, StatusCode::NOT_FOUND);
    let answer = ui.post("/queues/main/pause", Some(&acme), Some(ORIGIN), &[("csrf", &acme.csrf)]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.body);
    assert_eq!(api_get(&ui, "/api/v1/queues/main").await["paused"], false, "nothing written");
}
