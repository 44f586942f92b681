use axum::http::StatusCode;

use crate::Ui;

#[tokio::test]
async fn the_matrix_shows_what_is_live_where_with_protected_environments_marked() {
    let ui = Ui::new().await;
    ui.world().await;
    let browser = ui.sign_in(&ui.owner).await;
    let page = ui.get("/", Some(&browser)).await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    assert!(body.contains("<a href=\"/artifacts/prompts%2Fwelcome\">prompts/welcome</a>"), "{body}");
    assert!(body.contains("production <span class=\"badge protected\""), "{body}");
    assert!(body.contains("<td data-env=\"production\">"), "{body}");
    let production = body.split("<td data-env=\"production\">").nth(1).unwrap().split("</td>").next().unwrap();
    assert!(production.contains(">v1</a>") && production.contains("behind"), "{production}");
    let staging = body.split("<td data-env=\"staging\">").nth(1).unwrap().split("</td>").next().unwrap();
    assert!(staging.contains(">v2</a>") && !staging.contains("behind"), "{staging}");

    let filtered = ui.get("/?prefix=flags/&kind=", Some(&browser)).await;
    assert!(filtered.body.contains("No artifacts match these filters"), "{}", filtered.body);
    let bad = ui.get("/?at=yesterday", Some(&browser)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn time_travel_shows_what_was_live_then_with_links_to_the_audit_log() {
    let ui = Ui::new().await;
    let browser = ui.sign_in(&ui.owner).await;
    let before = ui.get("/?at=2000-01-01T00:00", Some(&browser)).await;
    assert!(before.body.contains("Time travel: what was live at 2000-01-01 00:00:00 UTC"), "{}", before.body);
    ui.world().await;
    let now = cutover_domain::Timestamp::now().to_rfc3339();
    let page = ui.get(&format!("/?at={}", crate::pages::encode(&now)), Some(&browser)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let production = page.body.split("<td data-env=\"production\">").nth(1).unwrap().split("</td>").next().unwrap();
    assert!(production.contains("/audit?object_type=artifact&#38;object_id=prompts%2Fwelcome&#38;at="), "{production}");
    assert!(!page.body.contains("sse-connect"), "a page of the past does not listen for changes");
}

#[tokio::test]
async fn a_scoped_viewer_sees_only_its_environments() {
    let ui = Ui::new().await;
    ui.world().await;
    let viewer = ui.token("viewer", &["staging"]).await;
    let browser = ui.sign_in(&viewer).await;
    let page = ui.get("/", Some(&browser)).await;
    assert!(page.body.contains("<td data-env=\"staging\">"));
    assert!(!page.body.contains("production"), "{}", page.body);
}

pub fn encode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)]).unwrap()[1..].to_owned()
}
