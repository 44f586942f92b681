//! Unit tests, and calls against a one-shot HTTP responder that records the request it got.

use cutover_api::{
    CreateExperiment, CreateRollout, CreateVersion, MetricEventIn, PostEvents, Promote, SetEnvironments, SetPin,
    UpdateEnvironment, UpdateExperiment,
};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::path::segment;
use crate::{AuditQuery, Client, ClientError, PageQuery};

/// Answers one request with `status` and `body`, and hands back the request's head and body.
async fn respond_once(status: &'static str, body: impl Into<String>) -> (String, JoinHandle<String>) {
    let body = body.into();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0_u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length = text[..head_end]
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if request.len() >= head_end + 4 + length || n == 0 {
                    break;
                }
            }
        }
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        String::from_utf8(request).unwrap()
    });
    (url, task)
}

const VERSION_JSON: &str = r#"{"artifact":"prompts/welcome","number":3,"content":"hi","sha256":"ab","message":"","author":{"token_id":"t1","name":"owner"},"created_at":"2025-01-01T00:00:00Z"}"#;

const PIN_JSON: &str = r#"{"artifact":"prompts/welcome","environment":"prod eu","version":3,"revision":7,"reason":"","started_at":"2025-01-01T00:00:00Z","started_by":{"token_id":"t1","name":"owner"}}"#;

const PIN_WRITE_JSON: &str =
    r#"{"revision":8,"changes":[{"artifact":"prompts/welcome","environment":"prod","from":3,"to":4}]}"#;

const EXPERIMENT_JSON: &str = r#"{"id":"x1","artifact":"prompts/welcome","environment":"prod eu","name":"copy","hypothesis":"","variants":[{"version":1,"weight":0.5},{"version":2,"weight":0.5}],"coverage":1.0,"seed":"s","primary_metric":"checkout","guardrail_metrics":[],"status":"running","created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z","started_at":"2025-01-01T00:00:00Z"}"#;

const ROLLOUT_JSON: &str = r#"{"id":"r1","artifact":"prompts/welcome","environment":"prod","version":2,"state":"running","max_parallel":2,"on_failure":"halt","steps":["apply"],"progress":{"running":1},"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z","created_by":"owner","operations":[{"id":"o1","target":"t-0","position":0,"wave":0,"state":"running","on_failure":"halt","pause_released":false,"executor":"manual","tasks":[TASK]}]}"#;

const TASK_JSON: &str =
    r#"{"id":"k1","step":"apply","state":"running","attempts":1,"idempotency_key":"i","log_bytes":0}"#;

/// The request's body: what follows the blank line after the head.
fn body_of(request: &str) -> &str {
    request.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// The value of header `name` (case-insensitive), if the request has it.
fn header_of<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    let head = request.split_once("\r\n\r\n").map_or(request, |(head, _)| head);
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[test]
fn segments_keep_unreserved_characters_and_encode_the_rest() {
    assert_eq!(segment("prod-eu_1.x~").unwrap(), "prod-eu_1.x~");
    assert_eq!(segment("prompts/welcome").unwrap(), "prompts%2Fwelcome");
    assert_eq!(segment("100%").unwrap(), "100%25");
    assert_eq!(segment("a?b#c d").unwrap(), "a%3Fb%23c%20d");
    assert_eq!(segment("é").unwrap(), "%C3%A9");
}

#[test]
fn segments_that_url_parsing_would_rewrite_are_refused() {
    for value in ["", ".", ".."] {
        assert!(matches!(segment(value), Err(ClientError::InvalidPathValue { .. })));
    }
}

#[test]
fn the_server_error_shape_becomes_an_api_error() {
    let body = br#"{"error":{"code":"invalid_field","message":"bad name","details":{"field":"name"}}}"#;
    let err = ClientError::from_response(StatusCode::UNPROCESSABLE_ENTITY, body);
    let ClientError::Api { status, code, message, details } = &err else {
        panic!("expected an API error, got {err:?}");
    };
    assert_eq!(*status, 422);
    assert_eq!(code, "invalid_field");
    assert_eq!(message, "bad name");
    assert_eq!(details, &Some(json!({"field": "name"})));
    assert_eq!(err.to_string(), "bad name");
}

#[test]
fn a_failure_without_the_error_shape_still_explains_itself() {
    let err = ClientError::from_response(StatusCode::BAD_GATEWAY, b"<html>upstream down</html>");
    assert!(matches!(&err, ClientError::Api { code, .. } if code == "unexpected_response"));
    assert_eq!(err.to_string(), "the server answered 502 Bad Gateway: <html>upstream down</html>");
    let empty = ClientError::from_response(StatusCode::NOT_FOUND, b"");
    assert_eq!(empty.to_string(), "the server answered 404 Not Found");
}

#[test]
fn debug_output_never_shows_the_token() {
    let client = Client::new("http://127.0.0.1:7300/", Some("secret-value".into())).unwrap();
    let debug = format!("{client:?}");
    assert!(!debug.contains("secret-value"), "{debug}");
    assert_eq!(client.server_url(), "http://127.0.0.1:7300");
}

#[test]
fn server_urls_that_cannot_address_a_server_are_refused() {
    for url in ["ftp://example.com", "not a url", "http://", "127.0.0.1:http", "http://h/?q=1"] {
        assert!(matches!(Client::new(url, None), Err(ClientError::InvalidServerUrl { .. })), "{url}");
    }
}

#[test]
fn a_server_given_without_a_scheme_is_reached_over_http() {
    let cases = [
        ("127.0.0.1:7502", "http://127.0.0.1:7502"),
        ("localhost:7300/", "http://localhost:7300"),
        ("[::1]:7300", "http://[::1]:7300"),
        ("https://cutover.example/api-gw", "https://cutover.example/api-gw"),
    ];
    for (given, meant) in cases {
        assert_eq!(Client::new(given, None).unwrap().server_url(), meant, "{given}");
    }
}

#[tokio::test]
async fn requests_carry_the_bearer_token_and_encoded_keys() {
    let (url, request) = respond_once("200 OK", VERSION_JSON).await;
    let client = Client::new(&url, Some("s3cret".into())).unwrap();
    let version = client.get_version("prompts/welcome", 3).await.unwrap();
    assert_eq!(version.number, 3);
    let request = request.await.unwrap();
    assert!(request.starts_with("GET /api/v1/artifacts/prompts%2Fwelcome/versions/3 HTTP/1.1\r\n"), "{request}");
    assert!(request.to_ascii_lowercase().contains("authorization: bearer s3cret\r\n"), "{request}");
}

#[tokio::test]
async fn bodies_are_json_and_paging_goes_in_the_query() {
    let (url, request) = respond_once("201 Created", VERSION_JSON).await;
    let client = Client::new(&url, None).unwrap();
    let body =
        CreateVersion { content: json!("hi"), message: Some("first".into()), environments: None, move_pins: false };
    client.create_version("prompts/welcome", &body).await.unwrap();
    let request = request.await.unwrap();
    assert!(request.starts_with("POST /api/v1/artifacts/prompts%2Fwelcome/versions "));
    assert!(!request.to_ascii_lowercase().contains("authorization:"));
    assert!(request.ends_with(r#"{"content":"hi","message":"first"}"#), "{request}");

    let (url, request) = respond_once("200 OK", r#"{"items":[]}"#).await;
    let client = Client::new(&url, None).unwrap();
    let page = PageQuery { limit: Some(5), cursor: Some("a b&c".into()) };
    let versions = client.list_versions("k", &page).await.unwrap();
    assert!(versions.items.is_empty() && versions.next_cursor.is_none());
    let request = request.await.unwrap();
    assert!(request.starts_with("GET /api/v1/artifacts/k/versions?limit=5&cursor=a+b%26c "), "{request}");

    let (url, request) = respond_once("200 OK", r#"{"items":[]}"#).await;
    let client = Client::new(&url, None).unwrap();
    let query = AuditQuery { actor: Some("t1".into()), ..AuditQuery::default() };
    client.list_audit(&query).await.unwrap();
    assert!(request.await.unwrap().starts_with("GET /api/v1/audit?actor=t1 "));
}

#[tokio::test]
async fn only_the_fields_to_change_are_sent_in_an_update() {
    let (url, request) = respond_once(
        "200 OK",
        r#"{"name":"prod","description":"d","protected":true,"targets":[],"created_at":"x","updated_at":"y"}"#,
    )
    .await;
    let client = Client::new(&url, None).unwrap();
    let body = UpdateEnvironment { protected: Some(true), ..UpdateEnvironment::default() };
    let env = client.update_environment("prod", &body).await.unwrap();
    assert!(env.protected);
    let request = request.await.unwrap();
    assert!(request.starts_with("PATCH /api/v1/environments/prod "));
    assert!(request.ends_with(r#"{"protected":true}"#), "{request}");
}

#[tokio::test]
async fn a_refusal_is_parsed_from_the_error_shape() {
    let (url, _request) =
        respond_once("403 Forbidden", r#"{"error":{"code":"forbidden","message":"viewer tokens cannot write"}}"#).await;
    let client = Client::new(&url, None).unwrap();
    let err = client.delete_environment("prod").await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert_eq!(err.to_string(), "viewer tokens cannot write");
}

#[tokio::test]
async fn a_success_without_the_promised_json_is_a_decode_error() {
    let (url, _request) = respond_once("200 OK", "not json").await;
    let client = Client::new(&url, None).unwrap();
    let err = client.whoami().await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_named_with_the_reason() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let err = Client::new(&url, None).unwrap().health().await.unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("could not reach {url}: connection refused"));
}

#[tokio::test]
async fn a_pin_write_sends_if_match_and_encodes_both_path_values() {
    let (url, request) = respond_once("200 OK", PIN_WRITE_JSON).await;
    let client = Client::new(&url, None).unwrap();
    let body = SetPin { version: 4, reason: Some("fix typo".into()) };
    let write = client.set_pin("prompts/welcome", "prod eu", &body, Some(7)).await.unwrap();
    assert_eq!(write.revision, Some(8));
    assert_eq!(write.changes[0].from, Some(3));
    assert_eq!(write.changes[0].to, Some(4));
    let request = request.await.unwrap();
    assert!(request.starts_with("PUT /api/v1/artifacts/prompts%2Fwelcome/pins/prod%20eu HTTP/1.1\r\n"), "{request}");
    assert_eq!(header_of(&request, "if-match"), Some("\"7\""), "{request}");
    assert_eq!(body_of(&request), r#"{"version":4,"reason":"fix typo"}"#);

    // Without a revision, no precondition.
    let (url, request) = respond_once("200 OK", r#"{"revision":null,"changes":[]}"#).await;
    let client = Client::new(&url, None).unwrap();
    let write = client.set_pin("k", "prod", &SetPin { version: 1, reason: None }, None).await.unwrap();
    assert!(write.revision.is_none() && write.changes.is_empty());
    assert_eq!(header_of(&request.await.unwrap(), "if-match"), None);
}

#[tokio::test]
async fn unpinning_puts_the_reason_in_the_query() {
    let (url, request) = respond_once("200 OK", PIN_WRITE_JSON).await;
    let client = Client::new(&url, None).unwrap();
    client.unpin("prompts/welcome", "prod", Some("bad deploy & more"), Some(0)).await.unwrap();
    let request = request.await.unwrap();
    assert!(
        request.starts_with("DELETE /api/v1/artifacts/prompts%2Fwelcome/pins/prod?reason=bad+deploy+%26+more HTTP/1.1"),
        "{request}"
    );
    assert_eq!(header_of(&request, "if-match"), Some("\"0\""), "{request}");

    let (url, request) = respond_once("200 OK", PIN_WRITE_JSON).await;
    let client = Client::new(&url, None).unwrap();
    client.unpin("k", "prod", None, None).await.unwrap();
    let request = request.await.unwrap();
    assert!(request.starts_with("DELETE /api/v1/artifacts/k/pins/prod HTTP/1.1"), "{request}");
    assert_eq!(header_of(&request, "if-match"), None);
}

#[tokio::test]
async fn pin_reads_address_their_routes() {
    let (url, request) = respond_once("200 OK", PIN_JSON).await;
    let pin = Client::new(&url, None).unwrap().get_pin("prompts/welcome", "prod eu").await.unwrap();
    assert_eq!((pin.version, pin.revision), (3, 7));
    assert!(pin.ended_at.is_none() && pin.ended_by.is_none());
    assert!(request.await.unwrap().starts_with("GET /api/v1/artifacts/prompts%2Fwelcome/pins/prod%20eu HTTP/1.1"));

    let (url, request) = respond_once("200 OK", format!(r#"{{"items":[{PIN_JSON}],"next_cursor":"c1"}}"#)).await;
    let query = PageQuery { limit: Some(2), cursor: Some("c0".into()) };
    let history = Client::new(&url, None).unwrap().pin_history("a/b", "prod", &query).await.unwrap();
    assert_eq!(history.items.len(), 1);
    assert_eq!(history.next_cursor.as_deref(), Some("c1"));
    let request = request.await.unwrap();
    assert!(request.starts_with("GET /api/v1/artifacts/a%2Fb/pins/prod/history?limit=2&cursor=c0 "), "{request}");

    let (url, request) = respond_once("200 OK", r#"{"items":[]}"#).await;
    Client::new(&url, None).unwrap().list_pins("a/b").await.unwrap();
    assert!(request.await.unwrap().starts_with("GET /api/v1/artifacts/a%2Fb/pins HTTP/1.1"));

    let (url, request) = respond_once("200 OK", r#"{"items":[]}"#).await;
    Client::new(&url, None).unwrap().environment_pins("prod").await.unwrap();
    assert!(request.await.unwrap().starts_with("GET /api/v1/environments/prod/pins HTTP/1.1"));
}

#[tokio::test]
async fn a_version_s_environments_are_replaced_with_a_put() {
    let (url, request) = respond_once("200 OK", PIN_WRITE_JSON).await;
    let client = Client::new(&url, None).unwrap();
    let body = SetEnvironments { environments: vec!["prod".into(), "staging".into()], reason: None };
    client.set_version_environments("prompts/welcome", 4, &body).await.unwrap();
    let request = request.await.unwrap();
    assert!(request.starts_with("PUT /api/v1/artifacts/prompts%2Fwelcome/versions/4/environments "), "{request}");
    assert_eq!(body_of(&request), r#"{"environments":["prod","staging"],"reason":null}"#);
}

#[tokio::test]
async fn publishing_with_environments_sends_move() {
    let (url, request) = respond_once("201 Created", VERSION_JSON).await;
    let client = Client::new(&url, None).unwrap();
    let body =
        CreateVersion { content: json!(1), message: None, environments: Some(vec!["prod".into()]), move_pins: true };
    client.create_version("k", &body).await.unwrap();
    let request = request.await.unwrap();
    assert_eq!(body_of(&request), r#"{"content":1,"message":null,"environments":["prod"],"move":true}"#);
}

#[tokio::test]
async fn promote_posts_the_request_and_reads_the_diff() {
    let (url, request) = respond_once(
        "200 OK",
        r#"{"artifact":"k","version":4,"dry_run":true,"revision":null,"changes":[{"artifact":"k","environment":"prod","from":null,"to":4}]}"#,
    )
    .await;
    let client = Client::new(&url, None).unwrap();
    let body =
        Promote { artifact: "k".into(), from: "staging".into(), to: vec!["prod".into()], dry_run: true, reason: None };
    let promoted = client.promote(&body).await.unwrap();
    assert!(promoted.dry_run);
    assert_eq!(promoted.version, 4);
    assert_eq!(promoted.changes[0].from, None);
    let request = request.await.unwrap();
    assert!(request.starts_with("POST /api/v1/promote "), "{request}");
    assert_eq!(body_of(&request), r#"{"artifact":"k","from":"staging","to":["prod"],"dry_run":true,"reason":null}"#);
}

#[tokio::test]
async fn resolve_names_the_environment_in_the_query_when_given() {
    let resolved =
        r#"{"artifact":"a/b","environment":"prod","version":2,"value":{"x":1},"value_type":"json","revision":9}"#;
    let (url, request) = respond_once("200 OK", resolved).await;
    let answer = Client::new(&url, None).unwrap().resolve("a/b", Some("prod"), None).await.unwrap();
    assert_eq!(answer.version, Some(2));
    assert_eq!(answer.value, Some(json!({"x": 1})));
    assert!(request.await.unwrap().starts_with("GET /api/v1/resolve/a%2Fb?environment=prod "));

    let nothing =
        r#"{"artifact":"k","environment":"dev","version":null,"value":null,"value_type":"string","revision":0}"#;
    let (url, request) = respond_once("200 OK", nothing).await;
    let answer = Client::new(&url, None).unwrap().resolve("k", None, None).await.unwrap();
    assert!(answer.version.is_none() && answer.value.is_none());
    assert!(request.await.unwrap().starts_with("GET /api/v1/resolve/k HTTP/1.1"));
}

#[tokio::test]
async fn a_stale_if_match_is_a_412_with_the_current_revision() {
    let (url, _request) = respond_once(
        "412 Precondition Failed",
        r#"{"error":{"code":"precondition_failed","message":"the pin changed","details":{"revision":9}}}"#,
    )
    .await;
    let client = Client::new(&url, None).unwrap();
    let err = client.set_pin("k", "prod", &SetPin { version: 1, reason: None }, Some(7)).await.unwrap_err();
    let ClientError::Api { status, code, details, .. } = &err else { panic!("{err:?}") };
    assert_eq!(*status, 412);
    assert_eq!(code, "precondition_failed");
    assert_eq!(details, &Some(json!({"revision": 9})));
}

#[tokio::test]
async fn resolve_sends_the_targeting_key_and_reads_the_variant() {
    let split = r#"{"artifact":"k","environment":"prod","version":2,"value":"b","value_type":"string","revision":3,"experiment":"x1","variant":"treatment-1"}"#;
    let (url, request) = respond_once("200 OK", split).await;
    let answer = Client::new(&url, None).unwrap().resolve("k", Some("prod"), Some("user 42&")).await.unwrap();
    assert_eq!((answer.experiment.as_deref(), answer.variant.as_deref()), (Some("x1"), Some("treatment-1")));
    let request = request.await.unwrap();
    assert!(request.starts_with("GET /api/v1/resolve/k?environment=prod&targeting_key=user+42%26 "), "{request}");
}

#[tokio::test]
async fn experiments_are_listed_per_environment_with_an_optional_status() {
    let (url, request) = respond_once("200 OK", format!(r#"{{"items":[{EXPERIMENT_JSON}]}}"#)).await;
    let page = Client::new(&url, None).unwrap().list_experiments("prod eu", Some("running")).await.unwrap();
    assert_eq!(page.items[0].variants[1].version, 2);
    let request = request.await.unwrap();
    assert!(request.starts_with("GET /api/v1/environments/prod%20eu/experiments?status=running "), "{request}");

    let (url, request) = respond_once("200 OK", r#"{"items":[]}"#).await;
    Client::new(&url, None).unwrap().list_experiments("prod", None).await.unwrap();
    assert!(request.await.unwrap().starts_with("GET /api/v1/environments/prod/experiments HTTP/1.1"));
}

#[tokio::test]
async fn an_experiment_is_created_in_its_environment_and_addressed_by_id() {
    let (url, request) = respond_once("201 Created", EXPERIMENT_JSON).await;
    let body = CreateExperiment {
        artifact: "prompts/welcome".into(),
        name: "copy".into(),
        treatments: vec![2],
        weights: Some(vec![1.0, 3.0]),
        primary_metric: "checkout".into(),
        ..CreateExperiment::default()
    };
    let made = Client::new(&url, None).unwrap().create_experiment("prod eu", &body).await.unwrap();
    assert_eq!((made.id.as_str(), made.status.as_str()), ("x1", "running"));
    let request = request.await.unwrap();
    assert!(request.starts_with("POST /api/v1/environments/prod%20eu/experiments "), "{request}");
    assert_eq!(
        body_of(&request),
        r#"{"artifact":"prompts/welcome","name":"copy","hypothesis":null,"control":null,"treatments":[2],"weights":[1.0,3.0],"coverage":null,"primary_metric":"checkout","guardrail_metrics":[]}"#
    );

    let (url, request) = respond_once("200 OK", EXPERIMENT_JSON).await;
    Client::new(&url, None).unwrap().get_experiment("x/1").await.unwrap();
    assert!(request.await.unwrap().starts_with("GET /api/v1/experiments/x%2F1 HTTP/1.1"));

    let (url, request) = respond_once("200 OK", EXPERIMENT_JSON).await;
    let body = UpdateExperiment { hypothesis: Some("faster".into()), ..UpdateExperiment::default() };
    Client::new(&url, None).unwrap().update_experiment("x1", &body).await.unwrap();
    let request = request.await.unwrap();
    assert!(request.starts_with("PATCH /api/v1/experiments/x1 "), "{request}");
    assert_eq!(body_of(&request), r#"{"hypothesis":"faster"}"#);

    let (url, request) = respond_once("200 OK", EXPERIMENT_JSON).await;
    Client::new(&url, None).unwrap().delete_experiment("x1").await.unwrap();
    assert!(request.await.unwrap().starts_with("DELETE /api/v1/experiments/x1 HTTP/1.1"));
}

#[tokio::test]
async fn lifecycle_actions_post_to_their_routes_and_complete_names_the_winner() {
    let answer = format!(r#"{{"experiment":{EXPERIMENT_JSON}}}"#);
    for action in ["start", "pause", "resume"] {
        let (url, request) = respond_once("200 OK", answer.clone()).await;
        let client = Client::new(&url, None).unwrap();
        let result = match action {
            "start" => client.start_experiment("x1").await,
            "pause" => client.pause_experiment("x1").await,
            _ => client.resume_experiment("x1").await,
        };
        assert!(result.unwrap().pinned.is_none());
        let request = request.await.unwrap();
        assert!(request.starts_with(&format!("POST /api/v1/experiments/x1/{action} HTTP/1.1")), "{request}");
        assert_eq!(body_of(&request), "");
    }

    let pinned = format!(r#"{{"experiment":{EXPERIMENT_JSON},"pinned":{PIN_WRITE_JSON}}}"#);
    let (url, request) = respond_once("200 OK", pinned).await;
    let completed = Client::new(&url, None).unwrap().complete_experiment("x1", Some(2)).await.unwrap();
    assert_eq!(completed.pinned.map(|write| write.revision), Some(Some(8)));
    let request = request.await.unwrap();
    assert!(request.starts_with("POST /api/v1/experiments/x1/complete "), "{request}");
    assert_eq!(body_of(&request), r#"{"winner":2}"#);

    let (url, request) = respond_once("200 OK", answer).await;
    Client::new(&url, None).unwrap().complete_experiment("x1", None).await.unwrap();
    assert_eq!(body_of(&request.await.unwrap()), "{}");
}

#[tokio::test]
async fn an_illegal_transition_is_a_409_naming_the_status() {
    let (url, _request) = respond_once(
        "409 Conflict",
        r#"{"error":{"code":"illegal_transition","message":"cannot start an experiment that is running","details":{"status":"running","action":"start"}}}"#,
    )
    .await;
    let err = Client::new(&url, None).unwrap().start_experiment("x1").await.unwrap_err();
    let ClientError::Api { status, code, details, .. } = &err else { panic!("{err:?}") };
    assert_eq!((*status, code.as_str()), (409, "illegal_transition"));
    assert_eq!(details.as_ref().map(|d| d["status"].clone()), Some(json!("running")));
}

#[tokio::test]
async fn results_are_read_from_the_experiment_s_route() {
    let results = r#"{"experiment":"x1","status":"running","exposures":3,
        "sample_ratio":{"observed":[2,1],"expected_weights":[0.5,0.5],"chi_squared":0.33,"p_value":0.56,"mismatch":false,"threshold":0.001},
        "metrics":[{"metric":"checkout","primary":true,"kind":"conversion","direction":"higher_is_better","guardrail_violated":false,"variants":[
            {"variant":"control","version":1,"exposures":2,"conversions":1,"events":1,"conversion_rate":0.5},
            {"variant":"treatment-1","version":2,"exposures":1,"conversions":1,"events":2,"conversion_rate":1.0,
             "lift":{"absolute":0.5,"absolute_interval":{"low":-0.2,"high":1.2},"relative":1.0,"relative_interval":null,"p_value":0.4,"test":"two_proportion_z",
             "verdict":"inconclusive","guardrail_violated":false,"users_needed_per_variant":13,"additional_users_needed":23}}]}]}"#;
    let (url, request) = respond_once("200 OK", results).await;
    let answer = Client::new(&url, None).unwrap().experiment_results("x1").await.unwrap();
    assert_eq!(answer.sample_ratio.observed, [2, 1]);
    let treatment = &answer.metrics[0].variants[1];
    assert_eq!(treatment.lift.clone().flatten().map(|lift| lift.p_value), Some(Some(0.4)));
    let lift = treatment.lift.clone().flatten().unwrap();
    assert_eq!((lift.verdict.as_str(), lift.additional_users_needed), ("inconclusive", Some(23)));
    assert!(request.await.unwrap().starts_with("GET /api/v1/experiments/x1/results HTTP/1.1"));
}

#[tokio::test]
async fn events_are_posted_as_one_batch() {
    let (url, request) = respond_once("200 OK", r#"{"received":2,"attributed":1}"#).await;
    let event =
        |value| MetricEventIn { metric: "checkout".into(), targeting_key: "user-1".into(), value, timestamp: None };
    let body = PostEvents { events: vec![event(None), event(Some(9.5))] };
    let accepted = Client::new(&url, None).unwrap().post_events(&body).await.unwrap();
    assert_eq!((accepted.received, accepted.attributed), (2, 1));
    let request = request.await.unwrap();
    assert!(request.starts_with("POST /api/v1/events "), "{request}");
    assert_eq!(
        body_of(&request),
        r#"{"events":[{"metric":"checkout","targeting_key":"user-1"},{"metric":"checkout","targeting_key":"user-1","value":9.5}]}"#
    );
}

#[tokio::test]
async fn a_rollout_is_created_with_its_executor_and_read_with_its_operations() {
    let rollout = ROLLOUT_JSON.replace("TASK", TASK_JSON);
    let (url, request) = respond_once("201 Created", rollout.clone()).await;
    let body = CreateRollout {
        artifact: "prompts/welcome".into(),
        environment: "prod".into(),
        version: 2,
        max_parallel: Some(2),
        executor: json!({"type": "manual"}),
        ..CreateRollout::default()
    };
    let made = Client::new(&url, None).unwrap().create_rollout(&body).await.unwrap();
    let operations = made.operations.unwrap();
    assert_eq!((operations[0].target.as_str(), operations[0].tasks[0].id.as_str()), ("t-0", "k1"));
    let request = request.await.unwrap();
    assert!(request.starts_with("POST /api/v1/rollouts HTTP/1.1"), "{request}");
    assert_eq!(
        body_of(&request),
        r#"{"artifact":"prompts/welcome","environment":"prod","version":2,"max_parallel":2,"on_failure":null,"failure_budget":null,"steps":null,"executor":{"type":"manual"}}"#
    );

    let (url, request) = respond_once("200 OK", rollout).await;
    Client::new(&url, None).unwrap().get_rollout("r/1").await.unwrap();
    assert!(request.await.unwrap().starts_with("GET /api/v1/rollouts/r%2F1 HTTP/1.1"));
}

#[tokio::test]
async fn rollouts_are_listed_with_optional_filters() {
    let (url, request) = respond_once("200 OK", r#"{"items":[]}"#).await;
    let client = Client::new(&url, None).unwrap();
    client.list_rollouts(Some("prod eu"), Some("running"), Some(5)).await.unwrap();
    let request = request.await.unwrap();
    assert!(request.starts_with("GET /api/v1/rollouts?environment=prod+eu&state=running&limit=5 "), "{request}");

    let (url, request) = respond_once("200 OK", r#"{"items":[]}"#).await;
    Client::new(&url, None).unwrap().list_rollouts(None, None, None).await.unwrap();
    assert!(request.await.unwrap().starts_with("GET /api/v1/rollouts HTTP/1.1"));
}

#[tokio::test]
async fn rollout_controls_post_to_their_routes_without_a_body() {
    let rollout = ROLLOUT_JSON.replace("TASK", TASK_JSON);
    for control in ["stop", "resume", "cancel", "release", "retry"] {
        let (url, request) = respond_once("200 OK", rollout.clone()).await;
        let client = Client::new(&url, None).unwrap();
        let answer = match control {
            "stop" => client.stop_rollout("r1").await,
            "resume" => client.resume_rollout("r1").await,
            "cancel" => client.cancel_rollout("r1").await,
            "release" => client.release_rollout("r1").await,
            _ => client.retry_rollout("r1").await,
        };
        assert_eq!(answer.unwrap().state, "running");
        let request = request.await.unwrap();
        assert!(request.starts_with(&format!("POST /api/v1/rollouts/r1/{control} HTTP/1.1")), "{request}");
        assert_eq!(body_of(&request), "");
    }

    let (url, _request) = respond_once(
        "409 Conflict",
        r#"{"error":{"code":"illegal_transition","message":"cannot stop a rollout that is completed","details":{"state":"completed","control":"stop"}}}"#,
    )
    .await;
    let err = Client::new(&url, None).unwrap().stop_rollout("r1").await.unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert_eq!(err.to_string(), "cannot stop a rollout that is completed");
}

#[tokio::test]
async fn manual_tasks_are_reported_with_a_message_and_logs_read_as_text() {
    let (url, request) = respond_once("200 OK", TASK_JSON).await;
    let task = Client::new(&url, None).unwrap().complete_task("r1", "k/1", Some("looks good")).await.unwrap();
    assert_eq!(task.step, "apply");
    let request = request.await.unwrap();
    assert!(request.starts_with("POST /api/v1/rollouts/r1/tasks/k%2F1/complete "), "{request}");
    assert_eq!(body_of(&request), r#"{"message":"looks good"}"#);

    let (url, request) = respond_once("200 OK", TASK_JSON).await;
    Client::new(&url, None).unwrap().fail_task("r1", "k1", None).await.unwrap();
    let request = request.await.unwrap();
    assert!(request.starts_with("POST /api/v1/rollouts/r1/tasks/k1/fail "), "{request}");
    assert_eq!(body_of(&request), r#"{"message":null}"#);

    let (url, request) = respond_once("200 OK", "applied\nnot json").await;
    let log = Client::new(&url, None).unwrap().task_log("r1", "k1", None).await.unwrap();
    assert_eq!(log, "applied\nnot json");
    assert!(request.await.unwrap().starts_with("GET /api/v1/rollouts/r1/tasks/k1/log HTTP/1.1"));
}
