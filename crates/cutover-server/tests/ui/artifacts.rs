use axum::http::{Method, StatusCode, header};
use serde_json::json;

use crate::{ORIGIN, Ui};

#[tokio::test]
async fn publishing_checks_the_value_type_and_keeps_the_draft() {
    let ui = Ui::new().await;
    ui.world().await;
    let (status, _) = ui
        .api(
            Method::POST,
            "/api/v1/artifacts",
            &ui.owner,
            Some(json!({"key": "model", "value_type": "number", "kind": "config"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let browser = ui.sign_in(&ui.owner).await;
    let csrf = browser.csrf.as_str();

    let bad = ui
        .post(
            "/artifacts/model/versions",
            Some(&browser),
            Some(ORIGIN),
            &[("csrf", csrf), ("content", "[1, 2]"), ("message", "m")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("role=\"alert\""), "{}", bad.body);
    assert!(bad.body.contains("[1, 2]</textarea>"), "the draft is kept: {}", bad.body);
    let bad = ui
        .post(
            "/artifacts/model/versions",
            Some(&browser),
            Some(ORIGIN),
            &[("csrf", csrf), ("content", "{nope"), ("message", "")],
        )
        .await;
    assert!(bad.body.contains("content is not valid JSON"), "{}", bad.body);

    let good = ui
        .post(
            "/artifacts/model/versions",
            Some(&browser),
            Some(ORIGIN),
            &[("csrf", csrf), ("content", "0.2"), ("message", "first")],
        )
        .await;
    assert_eq!(good.status, StatusCode::SEE_OTHER, "{}", good.body);
    assert_eq!(good.headers.get(header::LOCATION).unwrap(), "/artifacts/model?published=1");
    let (_, version) = ui.api(Method::GET, "/api/v1/artifacts/model/versions/1", &ui.owner, None).await;
    assert_eq!((version["content"].clone(), version["message"].clone()), (json!(0.2), json!("first")));

    let text = ui
        .post(
            "/artifacts/prompts%2Fwelcome/versions",
            Some(&browser),
            Some(ORIGIN),
            &[("csrf", csrf), ("content", "Hi.\n"), ("message", "shorter")],
        )
        .await;
    assert_eq!(text.status, StatusCode::SEE_OTHER);
    let page = ui.get("/artifacts/prompts%2Fwelcome", Some(&browser)).await;
    let v3 = page.body.find("id=\"v3\"").unwrap();
    assert!(v3 < page.body.find("id=\"v2\"").unwrap(), "newest first");
    assert!(page.body.contains("shorter") && page.body.contains("Publish v4"));
}

#[tokio::test]
async fn diffs_show_lines_for_text_and_fields_for_json() {
    let ui = Ui::new().await;
    ui.world().await;
    let browser = ui.sign_in(&ui.owner).await;
    let page = ui.get("/artifacts/prompts%2Fwelcome/diff?from=1&to=2", Some(&browser)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains("<div class=\"removed\"><span class=\"mark\" aria-label=\"removed\">-</span>Be brief.</div>"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("<div class=\"added\"><span class=\"mark\" aria-label=\"added\">+</span>Be very brief.</div>")
    );
    let live = ui.get("/artifacts/prompts%2Fwelcome/diff?env=production&to=2", Some(&browser)).await;
    assert!(live.body.contains("v1 (live in production)"), "{}", live.body);
    let same = ui.get("/artifacts/prompts%2Fwelcome/diff?env=staging&to=2", Some(&browser)).await;
    assert!(same.body.contains("have the same content"));
    assert_eq!(
        ui.get("/artifacts/prompts%2Fwelcome/diff?from=1&to=9", Some(&browser)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(ui.get("/artifacts/prompts%2Fwelcome/diff", Some(&browser)).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_preview_shows_both_answers_and_its_confirmation_moves_the_pin() {
    let ui = Ui::new().await;
    ui.world().await;
    let browser = ui.sign_in(&ui.owner).await;
    let preview = ui.get("/artifacts/prompts%2Fwelcome/preview?from=staging&to=production", Some(&browser)).await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert!(preview.body.contains("production goes from v1 to v2"), "{}", preview.body);
    assert!(preview.body.contains("cutover promote prompts/welcome --from staging --to production"));
    let before = preview.body.split("id=\"before\">").nth(1).unwrap().split("</pre>").next().unwrap();
    let after = preview.body.split("id=\"after\">").nth(1).unwrap().split("</pre>").next().unwrap();
    assert!(before.contains("&#34;variant&#34;: &#34;v1&#34;"), "{before}");
    assert!(after.contains("&#34;variant&#34;: &#34;v2&#34;") && after.contains("Be very brief."), "{after}");

    let promoted = ui
        .post(
            "/artifacts/prompts%2Fwelcome/promote",
            Some(&browser),
            Some(ORIGIN),
            &[("csrf", &browser.csrf), ("from", "staging"), ("to", "production"), ("reason", "ship it")],
        )
        .await;
    assert_eq!(promoted.status, StatusCode::SEE_OTHER, "{}", promoted.body);
    let history = ui.get("/artifacts/prompts%2Fwelcome/history/production", Some(&browser)).await;
    assert!(history.body.contains("ship it"), "{}", history.body);
    assert!(history.body.contains("Roll back to v1"));
}

#[tokio::test]
async fn a_stale_rollback_is_refused_saying_who_changed_it() {
    let ui = Ui::new().await;
    ui.world().await;
    let browser = ui.sign_in(&ui.owner).await;
    let (status, _) = ui
        .api(
            Method::PUT,
            "/api/v1/artifacts/prompts%2Fwelcome/pins/staging",
            &ui.owner,
            Some(json!({"version": 1, "reason": "first"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let page = ui.get("/artifacts/prompts%2Fwelcome/history/staging", Some(&browser)).await;
    let expected = page.body.split("name=\"expected\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    // Someone else moves the pin after the page was drawn.
    let bob = ui.token("editor", &[]).await;
    let (status, _) = ui
        .api(
            Method::PUT,
            "/api/v1/artifacts/prompts%2Fwelcome/pins/staging",
            &bob,
            Some(json!({"version": 2, "reason": "back again"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let fields =
        [("csrf", browser.csrf.as_str()), ("env", "staging"), ("version", "1"), ("expected", expected.as_str())];
    let refused = ui.post("/artifacts/prompts%2Fwelcome/pin", Some(&browser), Some(ORIGIN), &fields).await;
    assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED);
    assert!(
        refused.body.contains("staging was changed by editor meanwhile: v2 has been live there since"),
        "{}",
        refused.body
    );
    let (_, pin) = ui.api(Method::GET, "/api/v1/artifacts/prompts%2Fwelcome/pins/staging", &ui.owner, None).await;
    assert_eq!(pin["version"], 2, "nothing was written");
}

#[tokio::test]
async fn a_viewer_sees_no_write_controls_and_a_forged_post_is_forbidden() {
    let ui = Ui::new().await;
    ui.world().await;
    let viewer = ui.token("viewer", &[]).await;
    let browser = ui.sign_in(&viewer).await;
    for path in ["/artifacts/prompts%2Fwelcome", "/artifacts/prompts%2Fwelcome/history/production"] {
        let page = ui.get(path, Some(&browser)).await;
        assert_eq!(page.status, StatusCode::OK);
        for control in ["Publish v", "Make live", "Promote…", "Roll back"] {
            assert!(!page.body.contains(control), "{path} shows {control}");
        }
    }
    let forged = ui
        .post(
            "/artifacts/prompts%2Fwelcome/pin",
            Some(&browser),
            Some(ORIGIN),
            &[("csrf", &browser.csrf), ("env", "production"), ("version", "2"), ("expected", "0")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.body.contains("a viewer token cannot change anything"), "{}", forged.body);
    let forged = ui
        .post(
            "/artifacts/prompts%2Fwelcome/versions",
            Some(&browser),
            Some(ORIGIN),
            &[("csrf", &browser.csrf), ("content", "x")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(
        ui.get("/artifacts/prompts%2Fwelcome/preview?env=staging&version=1", Some(&browser)).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_scoped_editor_cannot_touch_other_environments() {
    let ui = Ui::new().await;
    ui.world().await;
    let editor = ui.token("editor", &["staging"]).await;
    let browser = ui.sign_in(&editor).await;
    let forged = ui
        .post(
            "/artifacts/prompts%2Fwelcome/pin",
            Some(&browser),
            Some(ORIGIN),
            &[("csrf", &browser.csrf), ("env", "production"), ("version", "2"), ("expected", "0")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    assert_eq!(
        ui.get("/artifacts/prompts%2Fwelcome/history/production", Some(&browser)).await.status,
        StatusCode::FORBIDDEN
    );
}
