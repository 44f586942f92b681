//! The official OpenFeature OFREP providers, unmodified, against a running `cutover serve`:
//! Python `openfeature-provider-ofrep` (PyPI), JavaScript `@openfeature/ofrep-provider` (npm), and
//! the web provider `@openfeature/ofrep-web-provider` with its change stream. Flag keys carry a
//! `/`, as artifact keys do, which the providers send unencoded.
//! `.ci/run` installs them into `.ci/venv` and `crates/cutover/tests/providers/node_modules`;
//! without them these tests are skipped, except under CI, where they fail.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Server;

fn providers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/providers")
}

/// The command that runs one provider's evaluator, if it is installed.
fn evaluator(language: &str) -> Option<Command> {
    let (program, script, installed) = match language {
        "python" => {
            let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.ci/venv/bin/python");
            (python.clone(), "evaluate.py", python.exists())
        }
        "web" => (
            PathBuf::from("node"),
            "watch.mjs",
            providers_dir().join("node_modules/@openfeature/ofrep-web-provider").exists(),
        ),
        _ => (
            PathBuf::from("node"),
            "evaluate.mjs",
            providers_dir().join("node_modules/@openfeature/ofrep-provider").exists(),
        ),
    };
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "the {language} OFREP provider must be installed under CI (see .ci/run)"
        );
        eprintln!("skipping: the {language} OFREP provider is not installed (see .ci/run)");
        return None;
    }
    let mut command = Command::new(program);
    command.current_dir(providers_dir()).arg(script);
    Some(command)
}

fn evaluate(language: &str, server: &Server, token: &str, spec: &Value) -> Option<Vec<Value>> {
    let mut command = evaluator(language)?;
    let output = command.args([&server.base, token, &spec.to_string()]).output().expect("run the evaluator");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{language} evaluator failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    Some(results.as_array().expect("a list").clone())
}

fn scenario(language: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let owner = server.owner_token();
    server.ok("POST", "/api/v1/environments", &owner, Some(json!({"name": "production"})));
    server.ok("POST", "/api/v1/artifacts", &owner, Some(json!({"key": "prompts/greeting", "value_type": "string"})));
    server.ok("POST", "/api/v1/artifacts", &owner, Some(json!({"key": "limits", "value_type": "json"})));
    server.ok("POST", "/api/v1/artifacts", &owner, Some(json!({"key": "unpinned", "value_type": "string"})));
    server.ok(
        "POST",
        "/api/v1/artifacts/prompts%2Fgreeting/versions",
        &owner,
        Some(json!({"content": "hello", "environments": ["production"]})),
    );
    server.ok("POST", "/api/v1/artifacts/prompts%2Fgreeting/versions", &owner, Some(json!({"content": "bonjour"})));
    server.ok(
        "POST",
        "/api/v1/artifacts/limits/versions",
        &owner,
        Some(json!({"content": {"max": 3, "tiers": ["a", "b"]}, "environments": ["production"]})),
    );
    server.ok("POST", "/api/v1/artifacts/unpinned/versions", &owner, Some(json!({"content": "never live"})));
    let sdk = server.ok(
        "POST",
        "/api/v1/tokens",
        &owner,
        Some(json!({"name": "app", "role": "sdk", "environments": ["production"]})),
    );
    let sdk = sdk["secret"].as_str().unwrap().to_owned();

    let spec = json!([
        {"flag": "prompts/greeting", "type": "string", "default": "fallback"},
        {"flag": "limits", "type": "object", "default": {"max": 0}},
        {"flag": "unpinned", "type": "string", "default": "fallback"},
        {"flag": "missing", "type": "string", "default": "fallback"},
    ]);
    let Some(results) = evaluate(language, &server, &sdk, &spec) else { return };
    let [greeting, limits, unpinned, missing] = &results[..] else { panic!("{results:?}") };
    assert_eq!(
        (&greeting["value"], &greeting["variant"], &greeting["reason"]),
        (&json!("hello"), &json!("v1"), &json!("STATIC")),
        "{greeting}"
    );
    assert_eq!(greeting["error_code"], Value::Null);
    assert_eq!(limits["value"], json!({"max": 3, "tiers": ["a", "b"]}), "{limits}");
    assert_eq!(limits["reason"], "STATIC");
    // Nothing pinned: the client's default.
    assert_eq!(unpinned["value"], "fallback", "{unpinned}");
    if language == "python" {
        assert_eq!((&unpinned["reason"], &unpinned["error_code"]), (&json!("DISABLED"), &Value::Null), "{unpinned}");
    }
    assert_eq!(
        (&missing["value"], &missing["error_code"]),
        (&json!("fallback"), &json!("FLAG_NOT_FOUND")),
        "{missing}"
    );

    // Move the pin: the next evaluation sees the new version.
    server.ok("PUT", "/api/v1/artifacts/prompts%2Fgreeting/pins/production", &owner, Some(json!({"version": 2})));
    let moved = evaluate(
        language,
        &server,
        &sdk,
        &json!([{"flag": "prompts/greeting", "type": "string", "default": "fallback"}]),
    )
    .unwrap();
    assert_eq!((&moved[0]["value"], &moved[0]["variant"]), (&json!("bonjour"), &json!("v2")), "{moved:?}");

    // A bad token: the default, with the provider's error for a refused request.
    let refused = evaluate(
        language,
        &server,
        "cutover_not-a-token",
        &json!([{"flag": "prompts/greeting", "type": "string", "default": "fallback"}]),
    )
    .unwrap();
    assert_eq!((&refused[0]["value"], &refused[0]["reason"]), (&json!("fallback"), &json!("ERROR")), "{refused:?}");
    assert_eq!(refused[0]["error_code"], "GENERAL", "{refused:?}");
}

#[test]
fn the_python_ofrep_provider_reads_what_is_live() {
    scenario("python");
}

#[test]
fn the_javascript_ofrep_provider_reads_what_is_live() {
    scenario("javascript");
}

/// The web provider hears a pin move through the stream URL the server advertises (an
/// EventSource sends no headers: the URL carries a stream ticket), as a ConfigurationChanged
/// event with the new value. The target is 100 ms; the assertion allows a loaded machine.
#[test]
fn the_web_ofrep_provider_hears_a_pin_move_through_the_change_stream() {
    let Some(mut command) = evaluator("web") else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let owner = server.owner_token();
    server.ok("POST", "/api/v1/environments", &owner, Some(json!({"name": "production"})));
    server.ok("POST", "/api/v1/artifacts", &owner, Some(json!({"key": "prompts/greeting", "value_type": "string"})));
    let versions = "/api/v1/artifacts/prompts%2Fgreeting/versions";
    server.ok("POST", versions, &owner, Some(json!({"content": "hello", "environments": ["production"]})));
    server.ok("POST", versions, &owner, Some(json!({"content": "bonjour"})));
    let sdk = server.ok(
        "POST",
        "/api/v1/tokens",
        &owner,
        Some(json!({"name": "web", "role": "sdk", "environments": ["production"]})),
    );
    let sdk = sdk["secret"].as_str().unwrap().to_owned();

    let mut child = command
        .args([&server.base, &sdk, "prompts/greeting"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the web provider");
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let line: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if lines.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let next = |within: Duration| received.recv_timeout(within);
    let (_, ready) = next(Duration::from_secs(30)).expect("the provider gets ready");
    assert_eq!(ready, json!({"event": "ready", "value": "hello"}));
    // Let the EventSource connect (it opens after the first bulk evaluation).
    std::thread::sleep(Duration::from_millis(500));

    let moved_at = Instant::now();
    server.ok("PUT", "/api/v1/artifacts/prompts%2Fgreeting/pins/production", &owner, Some(json!({"version": 2})));
    let (arrived, changed) = next(Duration::from_secs(10)).expect("a ConfigurationChanged event after the pin move");
    let latency = arrived.duration_since(moved_at);
    eprintln!("pin move to ConfigurationChanged: {} ms (target 100 ms)", latency.as_millis());
    assert_eq!((&changed["event"], &changed["value"]), (&json!("changed"), &json!("bonjour")), "{changed}");
    assert!(changed["flags"].as_array().unwrap().contains(&json!("prompts/greeting")), "{changed}");
    assert!(latency < Duration::from_secs(2), "the change took {latency:?}");

    drop(child.stdin.take().map(|mut stdin| stdin.flush()));
    let _ = child.kill();
    let _ = child.wait();
}
