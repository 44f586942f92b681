use axum::http::{Method, StatusCode, header};

use crate::{Browser, ORIGIN, Ui};

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_shows_the_matrix() {
    let ui = Ui::new().await;
    let answer = ui.get("/", None).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.headers.get(header::LOCATION).unwrap(), "/sign-in");

    let page = ui.get("/sign-in", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<form method=\"post\" action=\"/sign-in\">"), "{}", page.body);

    let answer = ui.post("/sign-in", None, Some(ORIGIN), &[("token", &ui.owner)]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let cookie = answer.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(cookie.starts_with("cutover_session="), "{cookie}");
    assert!(
        cookie.contains("; HttpOnly") && cookie.contains("; SameSite=Strict") && cookie.contains("; Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "served over http: {cookie}");
    assert!(!cookie.contains(&ui.owner), "the token is not the cookie");

    let browser = ui.sign_in(&ui.owner).await;
    let matrix = ui.get("/", Some(&browser)).await;
    assert!(matrix.body.contains("Live matrix"));
    assert!(!matrix.body.contains(&ui.owner), "no secret in a page");
    assert!(!matrix.body.contains(&browser.cookie), "no session cookie in a page");
    let csp = matrix.headers.get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(matrix.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
}

#[tokio::test]
async fn a_cookie_over_https_is_secure() {
    let ui = Ui::new().await;
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/sign-in")
        .header(header::HOST, crate::HOST)
        .header(header::ORIGIN, ORIGIN)
        .header("x-forwarded-proto", "https")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(format!("token={}", ui.owner)))
        .unwrap();
    let answer = ui.send(request).await;
    assert!(answer.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().contains("; Secure"));
}

#[tokio::test]
async fn wrong_tokens_and_sdk_tokens_cannot_sign_in() {
    let ui = Ui::new().await;
    let answer = ui.post("/sign-in", None, Some(ORIGIN), &[("token", "nope")]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.body.contains("not a Cutover token"), "{}", answer.body);
    let unknown = cutover_domain::TokenSecret::generate();
    let answer = ui.post("/sign-in", None, Some(ORIGIN), &[("token", unknown.expose())]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.body.contains("unknown or revoked token"));
    assert!(!answer.body.contains(unknown.expose()), "the token is not echoed");
    ui.world().await;
    let sdk = ui.token("sdk", &["staging"]).await;
    let answer = ui.post("/sign-in", None, Some(ORIGIN), &[("token", &sdk)]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.headers.get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn state_changes_need_this_origin_and_the_session_s_csrf_token() {
    let ui = Ui::new().await;
    let browser = ui.sign_in(&ui.owner).await;
    // Signing in from another site: refused before the token is even looked at.
    let answer = ui.post("/sign-in", None, Some("http://evil.example"), &[("token", &ui.owner)]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = ui.post("/sign-in", None, None, &[("token", &ui.owner)]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);

    let forged = [("csrf", "0".repeat(64))];
    let forged: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for (origin, fields) in [
        (Some("http://evil.example"), vec![("csrf", browser.csrf.as_str())]),
        (None, vec![("csrf", browser.csrf.as_str())]),
        (Some(ORIGIN), vec![]),
        (Some(ORIGIN), forged),
    ] {
        let answer = ui.post("/sign-out", Some(&browser), origin, &fields).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{origin:?} {fields:?}");
        assert_eq!(ui.get("/", Some(&browser)).await.status, StatusCode::OK, "still signed in");
    }
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let ui = Ui::new().await;
    let browser = ui.sign_in(&ui.owner).await;
    let answer = ui.post("/sign-out", Some(&browser), Some(ORIGIN), &[("csrf", &browser.csrf)]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert!(answer.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().contains("Max-Age=0"));
    let again = ui.get("/", Some(&browser)).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "the old cookie no longer works");
}

#[tokio::test]
async fn revoking_the_token_ends_its_sessions() {
    let ui = Ui::new().await;
    let editor = ui.token("editor", &[]).await;
    let browser = ui.sign_in(&editor).await;
    let (_, tokens) = ui.api(Method::GET, "/api/v1/tokens", &ui.owner, None).await;
    let id = tokens["items"].as_array().unwrap().iter().find(|t| t["name"] == "editor").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = ui.api(Method::DELETE, &format!("/api/v1/tokens/{id}"), &ui.owner, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ui.get("/", Some(&browser)).await.status, StatusCode::SEE_OTHER);
    // A live-update request is told where to go instead of getting a page.
    let request = axum::http::Request::builder()
        .uri("/ui/matrix")
        .header(header::COOKIE, format!("cutover_session={}", browser.cookie))
        .header("hx-request", "true")
        .body(axum::body::Body::empty())
        .unwrap();
    let answer = ui.send(request).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.headers.get("hx-redirect").unwrap(), "/sign-in");
}

#[tokio::test]
async fn vendored_scripts_are_cached_long_and_the_api_is_untouched() {
    let ui = Ui::new().await;
    let htmx = ui.get("/static/vendor/htmx-2.0.11.min.js", None).await;
    assert_eq!(htmx.status, StatusCode::OK);
    assert_eq!(htmx.headers.get(header::CACHE_CONTROL).unwrap(), "public, max-age=31536000, immutable");
    assert_eq!(ui.get("/static/ui.css", None).await.headers.get(header::CACHE_CONTROL).unwrap(), "no-cache");
    assert_eq!(ui.get("/static/nope.js", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(ui.get("/healthz", None).await.status, StatusCode::OK);
    let (status, body) = ui.api(Method::GET, "/api/v1/nope", &ui.owner, None).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::NOT_FOUND, &serde_json::json!("not_found")));
    let _ = Browser { cookie: String::new(), csrf: String::new() };
}
