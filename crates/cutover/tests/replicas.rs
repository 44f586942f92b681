//! Two `cutover serve` processes on one PostgreSQL: a pin changed through one is resolved by
//! the other within a second, through LISTEN/NOTIFY (the backstop timer is 30 s).

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{PgDatabase, Server};

#[test]
fn a_pin_change_on_one_replica_is_visible_on_the_other_within_a_second() {
    let Some(database) = PgDatabase::create() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start(dir_a.path(), Some(&database.url));
    let b = Server::start(dir_b.path(), Some(&database.url));
    // Exactly one of them bootstrapped the workspace; its token works on both.
    let token = support::shared_owner_token(&[&a, &b]);

    a.ok("POST", "/api/v1/environments", &token, Some(json!({"name": "production"})));
    a.ok("POST", "/api/v1/artifacts", &token, Some(json!({"key": "greeting", "value_type": "string"})));
    a.ok(
        "POST",
        "/api/v1/artifacts/greeting/versions",
        &token,
        Some(json!({"content": "one", "environments": ["production"]})),
    );
    a.ok("POST", "/api/v1/artifacts/greeting/versions", &token, Some(json!({"content": "two"})));
    let resolve = "/api/v1/resolve/greeting?environment=production";
    wait_for(&b, resolve, &token, "one", Duration::from_secs(5));

    for (version, value) in [(2, "two"), (1, "one"), (2, "two")] {
        let started = Instant::now();
        a.ok("PUT", "/api/v1/artifacts/greeting/pins/production", &token, Some(json!({"version": version})));
        let seen = wait_for(&b, resolve, &token, value, Duration::from_secs(1));
        eprintln!("replica b saw version {version} after {seen:?} (write included: {:?})", started.elapsed());
    }
    // Revoking a token on one replica is honoured by the other at once.
    let created = a.ok("POST", "/api/v1/tokens", &token, Some(json!({"name": "tmp", "role": "viewer"})));
    let secret = created["secret"].as_str().unwrap();
    assert_eq!(b.request("GET", "/api/v1/whoami", Some(secret), None).unwrap().0, 200);
    let id = created["token"]["id"].as_str().unwrap();
    a.ok("DELETE", &format!("/api/v1/tokens/{id}"), &token, None);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if b.request("GET", "/api/v1/whoami", Some(secret), None).unwrap().0 == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "replica b still accepts a revoked token after 1 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `server` until resolve answers `value`; returns how long it took.
fn wait_for(server: &Server, path: &str, token: &str, value: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = server.request("GET", path, Some(token), None).unwrap();
        if status == 200 && body["value"] == value {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "replica did not resolve {value:?} within {within:?}: {status} {body}");
        std::thread::sleep(Duration::from_millis(2));
    }
}
