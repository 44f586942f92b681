//! End to end: the real `cutover` binary serving on a free port with its own data directory, and
//! the same binary as the CLI against it. Each test starts its own server; [`Server`] kills it
//! when dropped, also when the test panics.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cutover_api::CreateEnvironment;
use cutover_client::{Client, ClientError};
use serde_json::Value;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_cutover");
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Every variable the binary reads; the tests set what they need and nothing leaks in.
const CUTOVER_VARS: &[&str] = &[
    "CUTOVER_SERVER",
    "CUTOVER_TOKEN",
    "CUTOVER_OUTPUT",
    "CUTOVER_DATA_DIR",
    "CUTOVER_CONFIG",
    "CUTOVER_LISTEN",
    "CUTOVER_DATABASE_URL",
    "CUTOVER_NO_MIGRATE",
    "CUTOVER_MAX_BODY_BYTES",
    "CUTOVER_MAX_ENVIRONMENTS",
    "CUTOVER_MAX_CONNECTIONS",
];

/// A `cutover` command with a clean environment.
fn cutover_command() -> Command {
    let mut command = Command::new(BIN);
    for var in CUTOVER_VARS {
        command.env_remove(var);
    }
    command.stdin(Stdio::null());
    command
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address").port()
}

struct Server {
    child: Child,
    url: String,
    owner_token: String,
    data_dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Self {
        let data_dir = tempfile::tempdir().expect("a data directory");
        let port = free_port();
        let log = |name: &str| File::create(data_dir.path().join(name)).expect("a log file");
        let child = cutover_command()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir.path())
            .stdout(log("server.stdout"))
            .stderr(log("server.stderr"))
            .spawn()
            .expect("starting cutover serve");
        let mut server = Self { child, url: format!("http://127.0.0.1:{port}"), owner_token: String::new(), data_dir };
        server.wait_until_healthy(port);
        let token_file = server.data_dir.path().join("cutover-owner-token");
        server.owner_token = std::fs::read_to_string(&token_file)
            .unwrap_or_else(|err| panic!("reading {}: {err}", token_file.display()))
            .trim()
            .to_owned();
        assert!(!server.owner_token.is_empty(), "the owner token file is empty");
        server
    }

    fn wait_until_healthy(&mut self, port: u16) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("checking the server") {
                panic!("the server exited with {status}\n{}", self.logs());
            }
            if healthz(port) {
                return;
            }
            assert!(Instant::now() < deadline, "no healthy server after {STARTUP_TIMEOUT:?}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.data_dir.path().join(name)).unwrap_or_default();
        format!("--- server stdout ---\n{}\n--- server stderr ---\n{}", read("server.stdout"), read("server.stderr"))
    }

    /// Runs `cutover ARGS` as the owner.
    fn cutover(&self, args: &[&str]) -> Output {
        self.cutover_as(&self.owner_token, args)
    }

    fn cutover_as(&self, token: &str, args: &[&str]) -> Output {
        cutover_command()
            .env("CUTOVER_SERVER", &self.url)
            .env("CUTOVER_TOKEN", token)
            .args(args)
            .output()
            .expect("running cutover")
    }

    /// Runs `cutover --output json ARGS` as the owner, expecting success and JSON.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let output = self.cutover(&all);
        stdout_json(&succeeded(&output, args))
    }

    /// The error the server gives `token` for `call`, asked through the client library, so that
    /// tests can check the CLI passes the server's own words on.
    fn api_error<F, Fut, T>(&self, token: &str, call: F) -> ClientError
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
        T: std::fmt::Debug,
    {
        let client = Client::new(&self.url, Some(token.to_owned())).expect("a client");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(call(client)).expect_err("the server should refuse")
    }
}

/// One `GET /healthz` over a plain socket: true on `200` with `{"status":"ok"}`.
fn healthz(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200") && response.replace(' ', "").contains(r#""status":"ok""#)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The output's stdout, after checking the command succeeded.
fn succeeded(output: &Output, args: &[&str]) -> String {
    assert!(
        output.status.success(),
        "cutover {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn stdout_json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|err| panic!("not JSON ({err}):\n{stdout}"))
}

fn names(page: &Value, field: &str) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("a page has items")
        .iter()
        .map(|item| item[field].as_str().expect("a string field").to_owned())
        .collect()
}

#[test]
fn environments_can_be_created_listed_and_shown() {
    let server = Server::start();
    let args = [
        "env",
        "create",
        "production",
        "--protected",
        "--target",
        "eu",
        "--target",
        "us",
        "--description",
        "Live traffic",
    ];
    let created = succeeded(&server.cutover(&args), &args);
    assert!(created.contains("production"), "{created}");

    let list = server.json(&["env", "list"]);
    assert_eq!(names(&list, "name"), ["production"]);

    let shown = server.json(&["env", "show", "production"]);
    assert_eq!(shown["name"], "production");
    assert_eq!(shown["protected"], true);
    assert_eq!(shown["description"], "Live traffic");
    let targets: Vec<_> =
        shown["targets"].as_array().expect("targets").iter().map(|target| target["name"].clone()).collect();
    assert_eq!(targets, ["eu", "us"]);

    let table = succeeded(&server.cutover(&["env", "list"]), &["env", "list"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("production") && table.contains("eu, us"), "{table}");

    let updated = server.json(&["env", "update", "production", "--protected", "false", "--clear-targets"]);
    assert_eq!(updated["protected"], false);
    assert_eq!(updated["targets"], Value::Array(Vec::new()));
}

#[test]
fn versions_are_published_listed_and_shown() {
    let server = Server::start();
    let artifact = server.json(&["artifact", "create", "prompts/welcome", "--type", "string", "--kind", "prompt"]);
    assert_eq!(artifact["key"], "prompts/welcome");
    assert_eq!(artifact["value_type"], "string");

    let first = server.json(&["version", "create", "prompts/welcome", "--text", "Hello", "-m", "first"]);
    assert_eq!(first["number"], 1);
    assert_eq!(first["content"], "Hello");
    assert_eq!(first["message"], "first");

    // For a string artifact the file's text is the content, as is.
    let file = server.data_dir.path().join("welcome.txt");
    std::fs::write(&file, "Hello {{name}}\n").expect("writing the content file");
    let path = file.to_str().expect("a UTF-8 path");
    let second = server.json(&["version", "create", "prompts/welcome", "--content-file", path]);
    assert_eq!(second["number"], 2);
    assert_eq!(second["content"], "Hello {{name}}\n");

    let list = server.json(&["version", "list", "prompts/welcome"]);
    let numbers: Vec<_> =
        list["items"].as_array().expect("items").iter().map(|version| version["number"].clone()).collect();
    assert_eq!(numbers, [2, 1], "newest first");

    let shown = server.json(&["version", "show", "prompts/welcome", "1"]);
    assert_eq!(shown["content"], "Hello");
    let args = ["version", "show", "prompts/welcome", "1"];
    let table = succeeded(&server.cutover(&args), &args);
    assert!(table.contains("Hello") && table.contains("first"), "{table}");

    // Other types parse the content as JSON.
    server.json(&["artifact", "create", "app/limits", "--type", "json"]);
    let json = server.json(&["version", "create", "app/limits", "--content", r#"{"rps": 10}"#]);
    assert_eq!(json["content"]["rps"], 10);
    let artifact = server.json(&["artifact", "show", "app/limits"]);
    assert_eq!(artifact["latest_version"], 1);
}

#[test]
fn a_viewer_token_cannot_write_and_the_cli_says_what_the_server_said() {
    let server = Server::start();
    let args = ["token", "create", "dashboard", "--role", "viewer"];
    let table = succeeded(&server.cutover(&args), &args);
    assert!(table.contains("not shown again"), "{table}");

    let created = server.json(&["token", "create", "reader", "--role", "viewer"]);
    let secret = created["secret"].as_str().expect("a secret").to_owned();
    assert!(table.lines().all(|line| !line.contains(&secret)), "secrets differ");

    let whoami = stdout_json(&succeeded(&server.cutover_as(&secret, &["--output", "json", "whoami"]), &["whoami"]));
    assert_eq!(whoami["token"]["role"], "viewer");

    let refused = server.cutover_as(&secret, &["env", "create", "staging"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    let stderr = text(&refused.stderr);
    let expected = server.api_error(&secret, |client| async move {
        let body = CreateEnvironment { name: "staging".into(), ..CreateEnvironment::default() };
        client.create_environment(&body).await
    });
    let ClientError::Api { message, code, .. } = &expected else {
        panic!("expected a refusal, got {expected:?}");
    };
    assert!(stderr.starts_with(&format!("error: {message}")), "{stderr}");
    assert!(stderr.contains(code.as_str()), "{stderr}");
    assert!(server.json(&["env", "list"])["items"].as_array().is_some_and(Vec::is_empty));

    let revoked = server.json(&["token", "revoke", created["token"]["id"].as_str().expect("an id")]);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let after = server.cutover_as(&secret, &["whoami"]);
    assert_eq!(after.status.code(), Some(1), "{}", text(&after.stderr));
}

#[test]
fn an_invalid_environment_name_is_refused_with_the_server_message() {
    let server = Server::start();
    let output = server.cutover(&["env", "create", "Not Valid"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    let stderr = text(&output.stderr);
    let expected = server.api_error(&server.owner_token, |client| async move {
        let body = CreateEnvironment { name: "Not Valid".into(), ..CreateEnvironment::default() };
        client.create_environment(&body).await
    });
    let ClientError::Api { message, code, status, .. } = &expected else {
        panic!("expected a refusal, got {expected:?}");
    };
    assert!((400..500).contains(status), "{expected:?}");
    assert!(stderr.starts_with(&format!("error: {message}\n")), "{stderr}");
    assert!(stderr.contains(&format!("code: {code}")), "{stderr}");
}

#[test]
fn every_read_can_print_json() {
    let server = Server::start();
    server.json(&["artifact", "create", "flags/checkout", "--type", "boolean"]);
    server.json(&["version", "create", "flags/checkout", "--content", "true"]);
    for args in [
        &["whoami"][..],
        &["env", "list"],
        &["artifact", "list"],
        &["artifact", "list", "--all", "--limit", "1"],
        &["version", "list", "flags/checkout"],
        &["token", "list"],
        &["workspace", "list"],
        &["audit"],
        &["audit", "--object-type", "artifact", "--limit", "5"],
    ] {
        let value = server.json(args);
        assert!(value.is_object(), "{args:?}: {value}");
    }
    let audit = server.json(&["audit", "--object-type", "artifact"]);
    assert!(names(&audit, "object_type").iter().all(|t| t == "artifact"), "{audit}");
    let workspace = server.json(&["workspace", "create", "acme", "--token-name", "admin"]);
    assert_eq!(workspace["workspace"]["name"], "acme");
    assert_eq!(workspace["token"]["token"]["name"], "admin");
    assert!(workspace["token"]["secret"].is_string());
}

#[test]
fn completions_are_printed_without_a_server() {
    let output = cutover_command().args(["completions", "bash"]).output().expect("running cutover");
    let script = succeeded(&output, &["completions", "bash"]);
    assert!(script.contains("cutover"), "{script}");
    assert!(script.len() > 1000, "{script}");
}

#[test]
fn an_unreachable_server_is_named_and_exits_3() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let output =
        cutover_command().args(["--server", &url, "--token", "anything", "whoami"]).output().expect("running cutover");
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with(&format!("error: cannot reach {url}")), "{stderr}");
}

#[test]
fn without_a_token_the_cli_explains_where_it_looked() {
    let empty = tempfile::tempdir().expect("a directory");
    let output =
        cutover_command().arg("--data-dir").arg(empty.path()).args(["env", "list"]).output().expect("running cutover");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    let token_file = empty.path().join("cutover-owner-token");
    assert!(stderr.contains(&token_file.display().to_string()), "{stderr}");
}
