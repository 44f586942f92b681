//! `cutover serve` as a process: first start, the owner token file, and a clean shutdown that
//! ends open change streams and writes the exposures still buffered.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::Server;

#[test]
fn the_first_start_saves_the_owner_token_privately_and_shutdown_ends_streams() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), None);
    let token_file = dir.path().join("cutover-owner-token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the owner token file is readable by its owner only");
    }
    assert!(dir.path().join("cutover.db").exists(), "SQLite database in the data directory");
    let token = server.owner_token();
    assert_eq!(server.request("GET", "/api/v1/whoami", Some(&token), None).unwrap().0, 200);

    // An open change stream must not hold the shutdown up.
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&address).unwrap();
    write!(stream, "GET /api/v1/stream HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\r\n").unwrap();
    let mut head = [0u8; 64];
    let read = stream.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..read]).starts_with("HTTP/1.1 200"));

    let stopped = Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(stopped.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "cutover serve did not stop within 10 s of SIGTERM with a stream open");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "clean exit, got {status}");
    // The stream was ended, not cut: the rest of the response reads to its end.
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    assert!(stream.read_to_end(&mut rest).is_ok());

    // A second start on the same database does not bootstrap again.
    std::fs::remove_file(&token_file).unwrap();
    let again = Server::start(dir.path(), None);
    assert!(!token_file.exists(), "no new owner token on a later start");
    assert_eq!(again.request("GET", "/api/v1/whoami", Some(&token), None).unwrap().0, 200);
}

/// SIGTERM, then waits for a clean exit.
fn stop(server: &mut Server) {
    let stopped = Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(stopped.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "cutover serve did not stop within 10 s of SIGTERM\n{}", server.logs());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "clean exit, got {status}\n{}", server.logs());
}

#[test]
fn exposures_still_buffered_at_shutdown_are_written_before_the_process_exits() {
    let dir = tempfile::tempdir().unwrap();
    // No timed flush during the test: only the one at shutdown can write what resolve buffered.
    let config = dir.path().join("cutover.toml");
    std::fs::write(&config, "exposure_flush_ms = 3600000\n").unwrap();
    let mut server = Server::start_with(dir.path(), None, Some(&config));
    let owner = server.owner_token();
    server.ok("POST", "/api/v1/environments", &owner, Some(json!({"name": "production"})));
    server.ok("POST", "/api/v1/artifacts", &owner, Some(json!({"key": "greeting", "value_type": "string"})));
    let first = json!({"content": "hello", "environments": ["production"]});
    server.ok("POST", "/api/v1/artifacts/greeting/versions", &owner, Some(first));
    server.ok("POST", "/api/v1/artifacts/greeting/versions", &owner, Some(json!({"content": "hi"})));
    let spec = json!({"artifact": "greeting", "name": "split", "treatments": [2], "primary_metric": "clicks"});
    let made = server.ok("POST", "/api/v1/environments/production/experiments", &owner, Some(spec));
    let id = made["id"].as_str().unwrap().to_owned();
    server.ok("POST", &format!("/api/v1/experiments/{id}/start"), &owner, Some(json!({})));

    let mut per_variant = [0u64; 2];
    for user in 0..60 {
        let path = format!("/api/v1/resolve/greeting?environment=production&targeting_key=user-{user}");
        let resolved = server.ok("GET", &path, &owner, None);
        let variant = if resolved["variant"] == "control" { 0 } else { 1 };
        per_variant[variant] += 1;
    }
    stop(&mut server);

    let again = Server::start_with(dir.path(), None, Some(&config));
    let results = again.ok("GET", &format!("/api/v1/experiments/{id}/results"), &owner, None);
    assert_eq!(results["exposures"], 60, "{results}");
    assert_eq!(results["sample_ratio"]["observed"], json!(per_variant), "{results}");
}
