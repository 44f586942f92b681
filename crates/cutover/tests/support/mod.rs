//! Running the real `cutover serve` in tests, talking to it with plain HTTP/1.1, and running the
//! same binary as the CLI against it: the one harness of this crate's test binaries.

#![allow(dead_code, reason = "each test binary uses a different part of this module")]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cutover_client::{Client, ClientError};
use serde_json::Value;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_cutover");
/// Long enough for a first start (migrations) on a loaded machine.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Every variable the binary reads; tests set what they need and nothing leaks in.
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
pub fn cutover_command() -> Command {
    let mut command = Command::new(BIN);
    for var in CUTOVER_VARS {
        command.env_remove(var);
    }
    command.stdin(Stdio::null());
    command
}

/// A `cutover serve` process, killed when dropped (also when a test panics). Its stdout and
/// stderr go to `server.stdout` and `server.stderr` in its data directory.
pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    /// The data directory, when the server has one of its own ([`Server::fresh`]).
    _owned_dir: Option<TempDir>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Server {
    /// Starts a server; `database_url` None means SQLite in `data_dir`.
    pub fn start(data_dir: &Path, database_url: Option<&str>) -> Self {
        Self::start_with(data_dir, database_url, None)
    }

    /// A server on SQLite in a data directory of its own (removed when dropped), reading `config`
    /// (TOML, possibly empty) as its configuration file.
    pub fn fresh_with_config(config: &str) -> Self {
        let owned = tempfile::tempdir().expect("a data directory");
        let config_file = owned.path().join("cutover.toml");
        std::fs::write(&config_file, config).expect("writing the configuration file");
        let mut server = Self::start_with(owned.path(), None, Some(&config_file));
        server._owned_dir = Some(owned);
        server
    }

    /// A server on SQLite in a data directory of its own, with no configuration file.
    pub fn fresh() -> Self {
        Self::fresh_with_config("")
    }

    /// Starts a server with a configuration file.
    pub fn start_with(data_dir: &Path, database_url: Option<&str>, config: Option<&Path>) -> Self {
        let port = free_port();
        let log = |name: &str| File::create(data_dir.join(name)).expect("a log file");
        let mut command = cutover_command();
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .env("CUTOVER_LOG", "warn")
            .stdout(log("server.stdout"))
            .stderr(log("server.stderr"));
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let child = command.spawn().expect("start cutover serve");
        let mut server =
            Self { child, base: format!("http://127.0.0.1:{port}"), data_dir: data_dir.to_owned(), _owned_dir: None };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = server.try_wait() {
                panic!("cutover serve exited with {status}\n{}", server.logs());
            }
            if healthz(port) {
                return server;
            }
            assert!(Instant::now() < deadline, "no healthy server after {STARTUP_TIMEOUT:?}\n{}", server.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server printed, for failure messages.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.data_dir.join(name)).unwrap_or_default();
        format!("--- server stdout ---\n{}\n--- server stderr ---\n{}", read("server.stdout"), read("server.stderr"))
    }

    /// SIGKILL: no shutdown, no flush, no lease released.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn owner_token(&self) -> String {
        let token_file = self.data_dir.join("cutover-owner-token");
        let token = std::fs::read_to_string(&token_file)
            .unwrap_or_else(|err| panic!("reading {}: {err}", token_file.display()))
            .trim()
            .to_owned();
        assert!(!token.is_empty(), "the owner token file is empty");
        token
    }

    /// Runs `cutover ARGS` against this server as the owner.
    pub fn cutover(&self, args: &[&str]) -> Output {
        self.cutover_as(&self.owner_token(), args)
    }

    /// Runs `cutover ARGS` against this server with `token`.
    pub fn cutover_as(&self, token: &str, args: &[&str]) -> Output {
        cutover_command()
            .env("CUTOVER_SERVER", &self.base)
            .env("CUTOVER_TOKEN", token)
            .args(args)
            .output()
            .expect("running cutover")
    }

    /// Runs `cutover --output json ARGS` as the owner, expecting success and JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let output = self.cutover(&all);
        stdout_json(&succeeded(&output, args))
    }

    /// The error the server gives `token` for `call`, asked through the client library, so that
    /// tests can check the CLI passes the server's own words on.
    pub fn api_error<F, Fut, T>(&self, token: &str, call: F) -> ClientError
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
        T: std::fmt::Debug,
    {
        let client = Client::new(&self.base, Some(token.to_owned())).expect("a client");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(call(client)).expect_err("the server should refuse")
    }

    /// One request; answers status and JSON body (Null when empty).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> std::io::Result<(u16, Value)> {
        let address = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut raw = String::new();
        stream.read_to_string(&mut raw)?;
        let (head, payload) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let payload = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(payload)
        } else {
            payload.to_owned()
        };
        let json = if payload.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&payload).unwrap_or(Value::String(payload))
        };
        Ok((status, json))
    }

    /// A request that must succeed with a 2xx.
    pub fn ok(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.request(method, path, Some(token), body.as_ref()).expect("request");
        assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
        answer
    }
}

/// One `GET /healthz` over a plain socket: true on `200` with `{"status":"ok"}`.
pub fn healthz(port: u16) -> bool {
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

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The output's stdout, after checking the command succeeded.
pub fn succeeded(output: &Output, args: &[&str]) -> String {
    assert!(
        output.status.success(),
        "cutover {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

pub fn stdout_json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|err| panic!("not JSON ({err}):\n{stdout}"))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

/// The owner token of replicas sharing one database: exactly one of them bootstrapped it.
pub fn shared_owner_token(servers: &[&Server]) -> String {
    let found: Vec<String> =
        servers.iter().filter_map(|s| std::fs::read_to_string(s.data_dir.join("cutover-owner-token")).ok()).collect();
    assert_eq!(found.len(), 1, "exactly one replica bootstraps and writes the owner token");
    found[0].trim().to_owned()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh PostgreSQL database for tests that need one shared by several processes; dropped at
/// the end. None when `CUTOVER_TEST_DATABASE_URL` is unset outside CI.
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub fn create() -> Option<Self> {
        let admin_url = match std::env::var("CUTOVER_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var_os("CI").is_some() => panic!("CUTOVER_TEST_DATABASE_URL must be set under CI"),
            _ => {
                eprintln!("skipping: CUTOVER_TEST_DATABASE_URL is not set");
                return None;
            }
        };
        let name = format!("cutover_e2e_{}_{}", std::process::id(), free_port());
        psql(&admin_url, &format!("CREATE DATABASE {name}"));
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("CUTOVER_TEST_DATABASE_URL needs a database path"),
        };
        Some(Self { admin_url, name, url })
    }
}

fn psql(url: &str, sql: &str) {
    let status = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .stdout(Stdio::null())
        .status()
        .expect("run psql");
    assert!(status.success(), "psql: {sql}");
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let url = self.admin_url.clone();
        psql(&url, &sql);
    }
}
