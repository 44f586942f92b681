//! Running the real `cutover serve` in tests, and talking to it with plain HTTP/1.1.

#![allow(dead_code, reason = "each test binary uses a different part of this module")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `cutover serve` process, killed when dropped (also when a test panics).
pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Server {
    /// Starts a server; `database_url` None means SQLite in `data_dir`.
    pub fn start(data_dir: &Path, database_url: Option<&str>) -> Self {
        Self::start_with(data_dir, database_url, None)
    }

    /// Starts a server with a configuration file.
    pub fn start_with(data_dir: &Path, database_url: Option<&str>, config: Option<&Path>) -> Self {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_cutover"));
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .env("CUTOVER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let child = command.spawn().expect("start cutover serve");
        let server = Self { child, base: format!("http://127.0.0.1:{port}"), data_dir: data_dir.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(server.request("GET", "/healthz", None, None), Ok((200, _))) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cutover serve did not answer /healthz within 30 s");
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
        std::fs::read_to_string(self.data_dir.join("cutover-owner-token")).expect("owner token file").trim().to_owned()
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
