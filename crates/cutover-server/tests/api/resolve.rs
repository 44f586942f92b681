use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cutover_store::Store;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::TestApp;
use crate::pins::{put, world};

cutover_store::contract_tests!(
    native_resolve_follows_pins_at_once,
    sdk_tokens_resolve_only_their_environment,
    ofrep_single_flag_evaluation,
    ofrep_errors_follow_the_protocol,
    ofrep_bulk_carries_an_etag_and_answers_304,
    the_change_stream_replays_and_follows,
    ofrep_reads_keys_with_slashes_encoded_or_not,
    ofrep_refuses_a_body_without_context,
    ofrep_refuses_ambiguous_credentials,
    bulk_answers_advertise_a_stream_url_with_a_ticket_not_the_token,
    resolve_is_invisible_across_workspaces,
    bulk_answers_are_compressed_as_accept_encoding_asks,
    an_answer_built_per_caller_is_sent_plain,
);

/// The smallest evaluation request OFREP allows.
const CONTEXT: &str = r#"{"context": {}}"#;

pub async fn ofrep(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app.router.clone().oneshot(request.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (status, body, headers)
}

async fn native_resolve_follows_pins_at_once(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    let path = "/api/v1/resolve/greeting?environment=production";
    let (status, unpinned) = app.get(path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(unpinned["version"], Value::Null);
    assert_eq!(unpinned["value"], Value::Null);
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1}), None).await;
    let (_, live) = app.get(path).await;
    assert_eq!(
        live,
        json!({"artifact": "greeting", "environment": "production", "version": 1, "value": "hello 1",
               "value_type": "string", "revision": live["revision"]})
    );
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 2}), None).await;
    let (_, moved) = app.get(path).await;
    assert_eq!(
        (moved["value"].clone(), moved["revision"].as_i64()),
        (json!("hello 2"), Some(live["revision"].as_i64().unwrap() + 1))
    );
    assert_eq!(app.get("/api/v1/resolve/nope?environment=production").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/resolve/greeting?environment=qa").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/resolve/greeting").await.0, StatusCode::BAD_REQUEST);
}

async fn sdk_tokens_resolve_only_their_environment(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 1).await;
    put(
        &app,
        "/api/v1/artifacts/greeting/versions/1/environments",
        json!({"environments": ["dev", "production"]}),
        None,
    )
    .await;
    let sdk = app.token("sdk", &["production"]).await;
    let (status, body) = app.call(Method::GET, "/api/v1/resolve/greeting", Some(&sdk), None).await;
    assert_eq!((status, body["environment"].clone()), (StatusCode::OK, json!("production")));
    let (status, _) = app.call(Method::GET, "/api/v1/resolve/greeting?environment=dev", Some(&sdk), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body, _) =
        ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&sdk), r#"{"context": {"environment": "dev"}}"#, &[])
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let scoped = app.token("viewer", &["dev"]).await;
    let (status, _) =
        app.call(Method::GET, "/api/v1/resolve/greeting?environment=production", Some(&scoped), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn ofrep_single_flag_evaluation(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    app.post("/api/v1/artifacts", json!({"key": "limits", "value_type": "json"})).await;
    app.post("/api/v1/artifacts/limits/versions", json!({"content": {"max": 3}, "environments": ["production"]})).await;
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 2}), None).await;
    let sdk = app.token("sdk", &["production"]).await;
    let (status, body, headers) =
        ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&sdk), r#"{"context": {"targetingKey": "user-1"}}"#, &[])
            .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let revision = body["metadata"]["revision"].clone();
    assert_eq!(
        body,
        json!({"key": "greeting", "value": "hello 2", "reason": "STATIC", "variant": "v2",
               "metadata": {"environment": "production", "version": 2, "revision": revision}})
    );
    let (_, json_flag, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/limits", Some(&sdk), CONTEXT, &[]).await;
    assert_eq!(json_flag["value"], json!({"max": 3}));
    // Nothing pinned: no value, so the client's default applies.
    let (status, disabled, _) = ofrep(
        &app,
        "/ofrep/v1/evaluate/flags/greeting",
        Some(&app.owner),
        r#"{"context": {"environment": "dev"}}"#,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        disabled,
        json!({"key": "greeting", "reason": "DISABLED", "variant": null, "metadata": {"environment": "dev", "revision": revision}})
    );
}

async fn ofrep_errors_follow_the_protocol(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 1).await;
    let sdk = app.token("sdk", &["production"]).await;
    let (status, body, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/nope", Some(&sdk), CONTEXT, &[]).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({"key": "nope", "errorCode": "FLAG_NOT_FOUND", "errorDetails": "flag \"nope\" was not found"})
        )
    );
    let (status, body, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&sdk), "{not json", &[]).await;
    assert_eq!(
        (status, body["key"].clone(), body["errorCode"].clone()),
        (StatusCode::BAD_REQUEST, json!("greeting"), json!("PARSE_ERROR"))
    );
    let (status, body, _) =
        ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&app.owner), r#"{"context": {}}"#, &[]).await;
    assert_eq!((status, body["errorCode"].clone()), (StatusCode::BAD_REQUEST, json!("INVALID_CONTEXT")));
    assert!(body["errorDetails"].is_string());
    let (status, body, _) = ofrep(
        &app,
        "/ofrep/v1/evaluate/flags/greeting",
        Some(&app.owner),
        r#"{"context": {"environment": "qa"}}"#,
        &[],
    )
    .await;
    assert_eq!((status, body["errorCode"].clone()), (StatusCode::BAD_REQUEST, json!("INVALID_CONTEXT")));
    let (status, body, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", None, CONTEXT, &[]).await;
    assert_eq!((status, body["errorCode"].clone()), (StatusCode::UNAUTHORIZED, json!("GENERAL")));
    let (status, _, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some("cutover_bad"), CONTEXT, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body, _) =
        ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", None, CONTEXT, &[("x-api-key", sdk.as_str())]).await;
    assert_eq!((status, body["reason"].clone()), (StatusCode::OK, json!("DISABLED")));
}

async fn ofrep_bulk_carries_an_etag_and_answers_304(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1}), None).await;
    let sdk = app.token("sdk", &["production"]).await;
    let body = r#"{"context": {"targetingKey": "u1"}}"#;
    let (status, bulk, headers) = ofrep(&app, "/ofrep/v1/evaluate/flags", Some(&sdk), body, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bulk["flags"].as_array().unwrap().len(), 1);
    assert_eq!(bulk["flags"][0]["value"], "hello 1");
    assert_eq!(bulk["eventStreams"][0]["type"], "sse");
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let (status, empty, again) =
        ofrep(&app, "/ofrep/v1/evaluate/flags", Some(&sdk), body, &[("if-none-match", &etag)]).await;
    assert_eq!((status, empty), (StatusCode::NOT_MODIFIED, Value::Null));
    assert_eq!(again[header::ETAG], etag.as_str());
    // Another user's context is another answer.
    let (status, _, _) = ofrep(
        &app,
        "/ofrep/v1/evaluate/flags",
        Some(&sdk),
        r#"{"context": {"targetingKey": "u2"}}"#,
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 2}), None).await;
    let (status, moved, headers) =
        ofrep(&app, "/ofrep/v1/evaluate/flags", Some(&sdk), body, &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(moved["flags"][0]["value"], "hello 2");
    assert_ne!(headers[header::ETAG], etag.as_str());
}

/// Reads SSE frames until `count` events (lines starting with `data:`) have arrived.
async fn read_events(body: &mut Body, count: usize) -> String {
    let mut text = String::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while text.lines().filter(|l| l.starts_with("data:")).count() < count {
            let Some(frame) = body.frame().await else { break };
            if let Ok(data) = frame.unwrap().into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{count} events within 10 s; got {text:?}");
    text
}

async fn the_change_stream_replays_and_follows(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    let (_, first) = put(&app, "/api/v1/artifacts/greeting/pins/dev", json!({"version": 1}), None).await;
    let after = first["revision"].as_i64().unwrap();
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 2}), None).await;

    let request = Request::get("/api/v1/stream")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.owner))
        .header("last-event-id", after.to_string())
        .body(Body::empty())
        .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = response.into_body();
    let replayed = read_events(&mut body, 1).await;
    assert!(replayed.contains(&format!("id: {}", after + 1)), "{replayed}");
    assert!(replayed.contains("event: change"), "{replayed}");
    assert!(replayed.contains(r#""environment":"production","from":null,"to":2"#), "{replayed}");

    put(&app, "/api/v1/artifacts/greeting/pins/dev", json!({"version": 2}), None).await;
    let live = read_events(&mut body, 1).await;
    assert!(live.contains(&format!("id: {}", after + 2)), "{live}");
    assert!(live.contains(r#""environment":"dev","from":1,"to":2"#), "{live}");

    // OFREP's format.
    let sdk = app.token("sdk", &["production"]).await;
    let request = Request::get(format!("/api/v1/stream?format=ofrep&last_event_id={after}"))
        .header(header::AUTHORIZATION, format!("Bearer {sdk}"))
        .body(Body::empty())
        .unwrap();
    let mut body = app.router.clone().oneshot(request).await.unwrap().into_body();
    let ofrep = read_events(&mut body, 2).await;
    assert!(ofrep.contains("event: message"), "{ofrep}");
    assert!(ofrep.contains(r#""type":"refetchEvaluation""#), "{ofrep}");
    let request = Request::get("/api/v1/stream?format=xml")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.owner))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.router.clone().oneshot(request).await.unwrap().status(), StatusCode::BAD_REQUEST);
}

async fn resolve_is_invisible_across_workspaces(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 1).await;
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1}), None).await;
    let (_, other) = app.post("/api/v1/workspaces", json!({"name": "other"})).await;
    let intruder = other["token"]["secret"].as_str().unwrap();
    let (status, _) =
        app.call(Method::GET, "/api/v1/resolve/greeting?environment=production", Some(intruder), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body, _) = ofrep(
        &app,
        "/ofrep/v1/evaluate/flags/greeting",
        Some(intruder),
        r#"{"context": {"environment": "production"}}"#,
        &[],
    )
    .await;
    assert!(status.is_client_error() && !body.to_string().contains("hello"), "{status} {body}");
    for path in [
        "/api/v1/artifacts/greeting/pins",
        "/api/v1/artifacts/greeting/pins/production/history",
        "/api/v1/environments/production/pins",
    ] {
        assert_eq!(app.call(Method::GET, path, Some(intruder), None).await.0, StatusCode::NOT_FOUND, "{path}");
    }
}

async fn ofrep_reads_keys_with_slashes_encoded_or_not(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 1).await;
    app.post("/api/v1/artifacts", json!({"key": "prompts/support.system", "value_type": "string"})).await;
    app.post(
        "/api/v1/artifacts/prompts%2Fsupport.system/versions",
        json!({"content": "be kind", "environments": ["production"]}),
    )
    .await;
    let sdk = app.token("sdk", &["production"]).await;
    for path in ["/ofrep/v1/evaluate/flags/prompts/support.system", "/ofrep/v1/evaluate/flags/prompts%2Fsupport.system"]
    {
        let (status, body, _) = ofrep(&app, path, Some(&sdk), CONTEXT, &[]).await;
        let revision = body["metadata"]["revision"].clone();
        assert_eq!(
            (status, body),
            (
                StatusCode::OK,
                json!({"key": "prompts/support.system", "value": "be kind", "reason": "STATIC", "variant": "v1",
                       "metadata": {"environment": "production", "version": 1, "revision": revision}})
            ),
            "{path}"
        );
    }
    let (status, body, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/prompts/nope", Some(&sdk), CONTEXT, &[]).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({"key": "prompts/nope", "errorCode": "FLAG_NOT_FOUND", "errorDetails": "flag \"prompts/nope\" was not found"})
        )
    );
    // Unknown routes under /ofrep/ answer in OFREP's shape, not the API's.
    let (status, body, _) = ofrep(&app, "/ofrep/v2/evaluate/flags", Some(&sdk), CONTEXT, &[]).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({"errorCode": "GENERAL", "errorDetails": "no OFREP route for POST /ofrep/v2/evaluate/flags"})
        )
    );
    let request = Request::get("/ofrep/v1/evaluate/flags/greeting")
        .header(header::AUTHORIZATION, format!("Bearer {sdk}"))
        .body(Body::empty())
        .unwrap();
    let (status, body) = app.send(request).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"errorCode": "GENERAL", "errorDetails": "GET is not allowed on /ofrep/v1/evaluate/flags/greeting"})
        )
    );
}

async fn ofrep_refuses_a_body_without_context(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 1).await;
    let sdk = app.token("sdk", &["production"]).await;
    for (body, details) in [
        ("{}", "context is required: {\"context\": {...}}"),
        (r#"{"context": null}"#, "context is required: {\"context\": {...}}"),
        ("", "send a body: {\"context\": {...}}"),
        (r#"{"context": "production"}"#, "context must be an object"),
    ] {
        let (status, answer, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&sdk), body, &[]).await;
        assert_eq!(
            (status, answer),
            (
                StatusCode::BAD_REQUEST,
                json!({"key": "greeting", "errorCode": "INVALID_CONTEXT", "errorDetails": details})
            ),
            "{body:?}"
        );
        let (status, answer, _) = ofrep(&app, "/ofrep/v1/evaluate/flags", Some(&sdk), body, &[]).await;
        assert_eq!(
            (status, answer),
            (StatusCode::BAD_REQUEST, json!({"errorCode": "INVALID_CONTEXT", "errorDetails": details})),
            "{body:?}"
        );
    }
    let (status, answer, _) = ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&sdk), "[1]", &[]).await;
    assert_eq!((status, answer["errorCode"].clone()), (StatusCode::BAD_REQUEST, json!("PARSE_ERROR")));
}

async fn ofrep_refuses_ambiguous_credentials(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 1).await;
    let sdk = app.token("sdk", &["production"]).await;
    let other = app.token("sdk", &["production"]).await;
    let refused = json!({"errorCode": "GENERAL",
                         "errorDetails": "Authorization and X-API-Key name different tokens: send one"});
    for key in [other.as_str(), "cutover_not-a-token", ""] {
        let (status, body, _) =
            ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&sdk), CONTEXT, &[("x-api-key", key)]).await;
        let mut single = refused.clone();
        single["key"] = json!("greeting");
        assert_eq!((status, body), (StatusCode::UNAUTHORIZED, single), "{key:?}");
        let (status, body, _) =
            ofrep(&app, "/ofrep/v1/evaluate/flags", Some(&sdk), CONTEXT, &[("x-api-key", key)]).await;
        assert_eq!((status, body), (StatusCode::UNAUTHORIZED, refused.clone()), "{key:?}");
    }
    // The same token twice is not ambiguous.
    let (status, body, _) =
        ofrep(&app, "/ofrep/v1/evaluate/flags/greeting", Some(&sdk), CONTEXT, &[("x-api-key", sdk.as_str())]).await;
    assert_eq!((status, body["reason"].clone()), (StatusCode::OK, json!("DISABLED")));
    // The API refuses them alike.
    let request = Request::get("/api/v1/whoami")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.owner))
        .header("x-api-key", other.as_str())
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(request).await.0, StatusCode::UNAUTHORIZED);
}

/// Opens the stream at `uri` without any header, as a browser's EventSource does.
async fn open_stream(app: &TestApp, uri: &str, bearer: Option<&str>) -> axum::response::Response {
    let mut request = Request::get(uri);
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    app.router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
}

async fn bulk_answers_advertise_a_stream_url_with_a_ticket_not_the_token(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1}), None).await;
    put(&app, "/api/v1/artifacts/greeting/pins/dev", json!({"version": 1}), None).await;
    let sdk = app.token("sdk", &["production"]).await;
    let (status, bulk, _) = ofrep(&app, "/ofrep/v1/evaluate/flags", Some(&sdk), CONTEXT, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let uri = bulk["eventStreams"][0]["endpoint"]["requestUri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("/api/v1/stream?format=ofrep&ticket="), "{uri}");
    let secret_part = sdk.trim_start_matches("cutover_");
    assert!(!uri.contains(secret_part), "the token itself must never be in a URL: {uri}");
    // Within a window the URL is the same, so clients keep their connection.
    let (_, again, _) = ofrep(&app, "/ofrep/v1/evaluate/flags", Some(&sdk), CONTEXT, &[]).await;
    assert_eq!(again["eventStreams"][0]["endpoint"]["requestUri"], uri.as_str());

    // The URL alone opens the stream, and it follows changes in the ticket's environment.
    let response = open_stream(&app, &uri, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let (_, moved) = put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 2}), None).await;
    let event = read_events(&mut body, 1).await;
    assert!(event.contains("event: message"), "{event}");
    assert!(event.contains(&format!("id: {}", moved["revision"])), "{event}");
    assert!(event.contains(r#""type":"refetchEvaluation""#), "{event}");

    // A changed ticket, a ticket with a token, or a token in the URL: refused.
    let ticket = uri.rsplit_once("ticket=").unwrap().1;
    let forged = uri.replace(".production.", ".dev.");
    assert_eq!(open_stream(&app, &forged, None).await.status(), StatusCode::UNAUTHORIZED);
    let (status, body) =
        app.send(Request::get(uri.replace(ticket, "t1.x.y.z.1.00")).body(Body::empty()).unwrap()).await;
    assert_eq!((status, body), (StatusCode::UNAUTHORIZED, crate::error("unauthorized", "invalid stream ticket")));
    assert_eq!(open_stream(&app, &uri, Some(&sdk)).await.status(), StatusCode::UNAUTHORIZED);
    let (status, body) =
        app.send(Request::get(format!("/api/v1/stream?access_token={sdk}")).body(Body::empty()).unwrap()).await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::UNAUTHORIZED, json!("unauthorized")));

    // Revoking the token ends its tickets.
    let (_, tokens) = app.get("/api/v1/tokens").await;
    let id = tokens["items"].as_array().unwrap().iter().find(|t| t["role"] == "sdk").unwrap()["id"].clone();
    let (status, _) = app.delete(&format!("/api/v1/tokens/{}", id.as_str().unwrap())).await;
    assert!(status.is_success(), "{status}");
    let (status, body) = app.send(Request::get(&uri).body(Body::empty()).unwrap()).await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, crate::error("unauthorized", "the token of this stream ticket was revoked"))
    );
}

/// A bulk answer's raw bytes and headers.
async fn bulk_raw(
    app: &TestApp,
    token: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, axum::body::Bytes) {
    let mut request = Request::post("/ofrep/v1/evaluate/flags")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app.router.clone().oneshot(request.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.into_body().collect().await.unwrap().to_bytes())
}

/// The body decoded as its `Content-Encoding` says; a gzip body must be exactly one member.
fn decoded(headers: &axum::http::HeaderMap, bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap()) {
        None => out.extend_from_slice(bytes),
        Some("gzip") => {
            let mut decoder = flate2::read::GzDecoder::new(bytes);
            decoder.read_to_end(&mut out).unwrap();
            let mut rest = Vec::new();
            decoder.into_inner().read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty(), "bytes after the gzip member");
        }
        Some("br") => {
            brotli::BrotliDecompress(&mut &bytes[..], &mut out).unwrap();
        }
        Some("zstd") => out = zstd::stream::decode_all(bytes).unwrap(),
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    }
    out
}

async fn bulk_answers_are_compressed_as_accept_encoding_asks(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    // Enough flags for compression to matter.
    for n in 0..200 {
        let key = format!("flag-{n:03}");
        app.post("/api/v1/artifacts", json!({"key": key, "value_type": "json"})).await;
        let (status, body) = app
            .post(
                &format!("/api/v1/artifacts/{key}/versions"),
                json!({"content": {"enabled": true, "label": format!("feature {n}")}, "environments": ["production"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1}), None).await;
    let sdk = app.token("sdk", &["production"]).await;
    let context = r#"{"context": {"targetingKey": "u1"}}"#;
    let (status, plain_headers, plain) = bulk_raw(&app, &sdk, context, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(plain_headers.get(header::CONTENT_ENCODING), None);
    assert_eq!(plain_headers[header::VARY], "accept-encoding");
    assert_eq!(plain_headers[header::CONTENT_LENGTH], plain.len().to_string().as_str());
    let answer: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(answer["flags"].as_array().unwrap().len(), 201);
    let plain_etag = plain_headers[header::ETAG].to_str().unwrap().to_owned();
    let tagged = |coding: &str| format!("{}-{coding}\"", plain_etag.trim_end_matches('"'));

    let cases: &[(&str, Option<&str>)] = &[
        ("gzip", Some("gzip")),
        ("br", Some("br")),
        ("zstd", Some("zstd")),
        ("gzip, deflate, br, zstd", Some("br")),
        ("br;q=0.5, gzip;q=0.8", Some("gzip")),
        ("identity, zstd;q=0.9", None),
        ("gzip;q=0", None),
        ("deflate", None),
        ("*;q=0", None),
        ("", None),
    ];
    for &(accept, coding) in cases {
        // Twice: compressed by the first request, served from the cache by the second.
        for _ in 0..2 {
            let (status, headers, bytes) = bulk_raw(&app, &sdk, context, &[("accept-encoding", accept)]).await;
            assert_eq!(status, StatusCode::OK, "{accept}");
            assert_eq!(headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap()), coding, "{accept}");
            assert_eq!(headers[header::VARY], "accept-encoding");
            assert_eq!(headers[header::CONTENT_LENGTH], bytes.len().to_string().as_str());
            assert!(
                decoded(&headers, &bytes)[..] == plain[..],
                "{accept}: the decoded body differs from the plain one"
            );
            let etag = coding.map_or_else(|| plain_etag.clone(), tagged);
            assert_eq!(headers[header::ETAG], etag.as_str(), "{accept}");
            if coding.is_some() {
                assert!(bytes.len() * 4 < plain.len(), "{accept}: {} of {} bytes", bytes.len(), plain.len());
            }
            // Its own ETag answers 304, with the same headers; the other coding's does not.
            let (status, headers, bytes) =
                bulk_raw(&app, &sdk, context, &[("accept-encoding", accept), ("if-none-match", &etag)]).await;
            assert_eq!((status, bytes.len()), (StatusCode::NOT_MODIFIED, 0), "{accept}");
            assert_eq!(headers[header::ETAG], etag.as_str(), "{accept}");
            assert_eq!(headers[header::VARY], "accept-encoding");
            let other = if coding.is_some() { plain_etag.clone() } else { tagged("gzip") };
            let (status, _, _) =
                bulk_raw(&app, &sdk, context, &[("accept-encoding", accept), ("if-none-match", &other)]).await;
            assert_eq!(status, StatusCode::OK, "{accept}");
        }
    }

    // Another token's answer differs by its stream ticket only, compressed too, and that ticket
    // opens the stream.
    let other = app.token("sdk", &["production"]).await;
    let (_, headers, bytes) = bulk_raw(&app, &other, context, &[("accept-encoding", "gzip")]).await;
    let theirs: Value = serde_json::from_slice(&decoded(&headers, &bytes)).unwrap();
    assert_eq!(theirs["flags"], answer["flags"]);
    let (ours, uri) =
        (&answer["eventStreams"][0]["endpoint"]["requestUri"], &theirs["eventStreams"][0]["endpoint"]["requestUri"]);
    assert_ne!(ours, uri);
    for encoding in ["br", "zstd"] {
        let (_, headers, bytes) = bulk_raw(&app, &other, context, &[("accept-encoding", encoding)]).await;
        assert_eq!(serde_json::from_slice::<Value>(&decoded(&headers, &bytes)).unwrap(), theirs, "{encoding}");
    }
    assert_eq!(open_stream(&app, uri.as_str().unwrap(), None).await.status(), StatusCode::OK);

    // A new revision is a new answer in every coding.
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 2}), None).await;
    for encoding in ["gzip", "br", "zstd"] {
        let (status, headers, bytes) =
            bulk_raw(&app, &sdk, context, &[("accept-encoding", encoding), ("if-none-match", &tagged(encoding))]).await;
        assert_eq!(status, StatusCode::OK, "{encoding}");
        let moved: Value = serde_json::from_slice(&decoded(&headers, &bytes)).unwrap();
        let greeting = moved["flags"].as_array().unwrap().iter().find(|f| f["key"] == "greeting").unwrap();
        assert_eq!(greeting["value"], "hello 2", "{encoding}");
    }
}

async fn an_answer_built_per_caller_is_sent_plain(store: Store) {
    let app = TestApp::new(store).await;
    world(&app, 2).await;
    put(&app, "/api/v1/artifacts/greeting/pins/production", json!({"version": 1}), None).await;
    let (status, created) = app
        .post(
            "/api/v1/environments/production/experiments",
            json!({"artifact": "greeting", "name": "warmer", "treatments": [2], "primary_metric": "clicks"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.post(&format!("/api/v1/experiments/{id}/start"), json!({})).await.0, StatusCode::OK);
    let sdk = app.token("sdk", &["production"]).await;
    let context = r#"{"context": {"targetingKey": "u1"}}"#;
    let (status, plain_headers, plain) = bulk_raw(&app, &sdk, context, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, bytes) = bulk_raw(&app, &sdk, context, &[("accept-encoding", "gzip, br, zstd")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get(header::CONTENT_ENCODING), None);
    assert_eq!(headers[header::VARY], "accept-encoding");
    assert_eq!((&headers[header::ETAG], bytes), (&plain_headers[header::ETAG], plain));
}
