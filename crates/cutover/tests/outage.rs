//! A PostgreSQL outage seen by a real `cutover serve`: resolve keeps answering from memory for
//! longer than every cache lifetime, writes fail fast with 503 and `Retry-After` and write
//! nothing, and when the database is back the server recovers by itself and applies what it
//! missed (a token revoked meanwhile on another replica).
//!
//! The shared PostgreSQL server is never stopped: server A reaches it through a loopback TCP
//! proxy that the test cuts (open connections closed, new ones refused) and restores. Server B
//! reaches it directly, as a replica on the other side of a network partition would.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{PgDatabase, Server};

/// A loopback TCP proxy to one upstream address that can be cut and restored.
struct Proxy {
    port: u16,
    shared: Arc<ProxyShared>,
}

struct ProxyShared {
    upstream: String,
    /// What the test wants: accepting and forwarding, or refusing.
    open: AtomicBool,
    /// What the accept loop does now (so that cut and restore can wait for it).
    listening: AtomicBool,
    stopped: AtomicBool,
    connections: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(ProxyShared {
            upstream: upstream.to_owned(),
            open: AtomicBool::new(true),
            listening: AtomicBool::new(true),
            stopped: AtomicBool::new(false),
            connections: Mutex::default(),
        });
        let accept = shared.clone();
        std::thread::spawn(move || accept_loop(listener, port, &accept));
        Self { port, shared }
    }

    /// Closes every open connection and refuses new ones (the port is closed: connection refused).
    fn cut(&self) {
        self.shared.open.store(false, Ordering::SeqCst);
        wait_until(|| !self.shared.listening.load(Ordering::SeqCst));
        for connection in self.shared.connections.lock().unwrap().drain(..) {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.shared.open.store(true, Ordering::SeqCst);
        wait_until(|| self.shared.listening.load(Ordering::SeqCst));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        for connection in self.shared.connections.lock().unwrap().drain(..) {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }
}

fn wait_until(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "the proxy did not change state");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn accept_loop(listener: TcpListener, port: u16, shared: &ProxyShared) {
    let mut listener = Some(listener);
    while !shared.stopped.load(Ordering::SeqCst) {
        if !shared.open.load(Ordering::SeqCst) {
            listener = None;
            shared.listening.store(false, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let Some(bound) = listener.as_ref() else {
            // Rebinding the same port: std sets SO_REUSEADDR, so closed connections do not hold it.
            if let Ok(again) = TcpListener::bind(("127.0.0.1", port)) {
                again.set_nonblocking(true).unwrap();
                listener = Some(again);
                shared.listening.store(true, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        bound.set_nonblocking(true).unwrap();
        match bound.accept() {
            Ok((client, _)) => {
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(&shared.upstream) else { continue };
                let mut connections = shared.connections.lock().unwrap();
                connections.push(client.try_clone().unwrap());
                connections.push(server.try_clone().unwrap());
                pump(client.try_clone().unwrap(), server.try_clone().unwrap());
                pump(server, client);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// The database url with its host and port replaced, and the upstream `host:port`.
fn through_proxy(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a database url");
    let (authority, path) = rest.split_once('/').expect("a database path");
    let (credentials, host) = match authority.rsplit_once('@') {
        Some((credentials, host)) => (format!("{credentials}@"), host),
        None => (String::new(), authority),
    };
    let host = if host.contains(':') { host.to_owned() } else { format!("{host}:5432") };
    (format!("{scheme}://{credentials}127.0.0.1:{port}/{path}"), host)
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
    took: Duration,
}

/// One request, with the `Retry-After` header and how long the answer took.
fn call(server: &Server, method: &str, path: &str, token: &str, body: Option<&Value>) -> Answer {
    let started = Instant::now();
    let address = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let took = started.elapsed();
    let (head, payload) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let retry_after = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
        .map(|(_, value)| value.trim().to_owned());
    let body = serde_json::from_str(payload).unwrap_or(Value::Null);
    Answer { status, retry_after, body, took }
}

fn ofrep(server: &Server, token: &str) -> Answer {
    call(server, "POST", "/ofrep/v1/evaluate/flags/greeting", token, Some(&json!({"context": {}})))
}

/// Polls until `check` holds, for at most `within`; answers how long it took.
fn eventually(within: Duration, what: &str, check: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

#[test]
fn resolve_outlives_a_database_outage_writes_fail_fast_and_the_server_recovers_by_itself() {
    let Some(database) = PgDatabase::create() else { return };
    let (_, upstream) = through_proxy(&database.url, 0);
    let host = upstream.rsplit_once(':').map_or(upstream.as_str(), |(host, _)| host);
    assert!(
        matches!(host, "127.0.0.1" | "localhost" | "[::1]"),
        "this test proxies to a loopback PostgreSQL only, not {host}"
    );
    let proxy = Proxy::start(&upstream);
    let (proxied, _) = through_proxy(&database.url, proxy.port);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Tokens are trusted for 1 s between checks: the outage below lasts several lifetimes.
    let config = dir_a.path().join("cutover.toml");
    std::fs::write(&config, "token_cache_seconds = 1\n").unwrap();
    let a = Server::start_with(dir_a.path(), Some(&proxied), Some(&config));
    let b = Server::start(dir_b.path(), Some(&database.url));
    let owner = support::shared_owner_token(&[&a, &b]);

    b.ok("POST", "/api/v1/environments", &owner, Some(json!({"name": "production"})));
    b.ok("POST", "/api/v1/artifacts", &owner, Some(json!({"key": "greeting", "value_type": "string"})));
    let pin = json!({"content": "one", "environments": ["production"]});
    b.ok("POST", "/api/v1/artifacts/greeting/versions", &owner, Some(pin));
    let sdk = b.ok(
        "POST",
        "/api/v1/tokens",
        &owner,
        Some(json!({"name": "app", "role": "sdk", "environments": ["production"]})),
    );
    let sdk = sdk["secret"].as_str().unwrap().to_owned();
    let revoked_during = b.ok("POST", "/api/v1/tokens", &owner, Some(json!({"name": "during", "role": "viewer"})));
    let revoked_after = b.ok("POST", "/api/v1/tokens", &owner, Some(json!({"name": "after", "role": "viewer"})));
    eventually(Duration::from_secs(5), "A resolves what B pinned", || ofrep(&a, &sdk).body["value"] == "one");
    let resolved_one = ofrep(&a, &sdk).body;
    assert_eq!(resolved_one["variant"], "v1", "{resolved_one}");
    for token in [&owner, &revoked_during["secret"].as_str().unwrap().to_owned()] {
        assert_eq!(call(&a, "GET", "/api/v1/whoami", token, None).status, 200);
    }

    // A client writing all along: every write answers 201 or 503, and every 201 survives.
    let stop = AtomicBool::new(false);
    let (load, refused_writes) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let (mut answers, started) = (Vec::new(), Instant::now());
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
                let key = format!("load-{}", answers.len());
                let body = json!({"key": key, "value_type": "string"});
                answers.push((key, call(&a, "POST", "/api/v1/artifacts", &owner, Some(&body)).status));
                std::thread::sleep(Duration::from_millis(5));
            }
            answers
        });
        std::thread::sleep(Duration::from_millis(200));
        proxy.cut();
        let outage = Instant::now();
        let unavailable =
            json!({"error": {"code": "unavailable", "message": "the database is not reachable; retry later"}});
        let mut writes = Vec::new();
        let mut resolves = 0;
        // Four token lifetimes.
        while outage.elapsed() < Duration::from_secs(4) {
            let answer = ofrep(&a, &sdk);
            assert_eq!((answer.status, &answer.body), (200, &resolved_one), "resolve during the outage");
            assert!(answer.took < Duration::from_millis(500), "resolve took {:?} during the outage", answer.took);
            resolves += 1;
            if writes.len() < 3 && outage.elapsed() > Duration::from_millis(500 * writes.len() as u64) {
                let key = format!("during-{}", writes.len());
                let write =
                    call(&a, "POST", "/api/v1/artifacts", &owner, Some(&json!({"key": key, "value_type": "string"})));
                assert_eq!((write.status, &write.body, write.retry_after.as_deref()), (503, &unavailable, Some("1")));
                writes.push(write.took);
                let ready = call(&a, "GET", "/readyz", &owner, None);
                assert_eq!((ready.status, ready.retry_after.as_deref()), (503, Some("1")), "{}", ready.body);
                assert!(ready.took < Duration::from_secs(2), "/readyz took {:?}", ready.took);
            }
            if resolves == 20 {
                // Another replica, still connected, revokes a token A has cached: A cannot know yet.
                let id = revoked_during["token"]["id"].as_str().unwrap();
                b.ok("DELETE", &format!("/api/v1/tokens/{id}"), &owner, None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("{resolves} resolves during the outage, all 200; writes answered 503 in {writes:?}");
        // The first write may wait for one connection attempt (the acquire timeout, 1 s); later ones
        // know the database is down and answer at once.
        assert!(writes[0] < Duration::from_secs(3), "the first write took {:?}", writes[0]);
        assert!(writes[1..].iter().all(|took| *took < Duration::from_millis(500)), "{writes:?}");

        proxy.restore();
        let write = json!({"key": "after", "value_type": "string"});
        let recovered = eventually(Duration::from_secs(10), "A writes again", || {
            call(&a, "POST", "/api/v1/artifacts", &owner, Some(&write)).status == 201
        });
        eprintln!("writes work again {recovered:?} after the database came back");
        stop.store(true, Ordering::SeqCst);
        (writer.join().unwrap(), writes.len())
    });
    let acknowledged: Vec<&String> = load.iter().filter(|(_, status)| *status == 201).map(|(key, _)| key).collect();
    let refused = load.iter().filter(|(_, status)| *status == 503).count();
    assert_eq!(acknowledged.len() + refused, load.len(), "only 201 or 503: {load:?}");
    assert!(!acknowledged.is_empty() && refused > 0, "{load:?}");
    eprintln!("the writing client: {} acknowledged, {refused} refused with 503", acknowledged.len());
    for key in acknowledged {
        assert_eq!(call(&b, "GET", &format!("/api/v1/artifacts/{key}"), &owner, None).status, 200, "{key} was lost");
    }
    assert_eq!(call(&a, "GET", "/readyz", &owner, None).status, 200);
    // Nothing refused during the outage was written.
    for n in 0..refused_writes {
        assert_eq!(call(&b, "GET", &format!("/api/v1/artifacts/during-{n}"), &owner, None).status, 404);
    }
    // The revocation A missed is applied now that it can ask.
    let secret = revoked_during["secret"].as_str().unwrap();
    eventually(Duration::from_secs(5), "A honours the revocation made during the outage", || {
        call(&a, "GET", "/api/v1/whoami", secret, None).status == 401
    });
    // Change notices flow again: a revocation and a pin made through B reach A at once.
    let secret = revoked_after["secret"].as_str().unwrap();
    assert_eq!(call(&a, "GET", "/api/v1/whoami", secret, None).status, 200);
    let id = revoked_after["token"]["id"].as_str().unwrap();
    b.ok("DELETE", &format!("/api/v1/tokens/{id}"), &owner, None);
    eventually(Duration::from_secs(3), "A honours a revocation made after the outage", || {
        call(&a, "GET", "/api/v1/whoami", secret, None).status == 401
    });
    b.ok(
        "POST",
        "/api/v1/artifacts/greeting/versions",
        &owner,
        Some(json!({"content": "two", "environments": ["production"], "move": true})),
    );
    eventually(Duration::from_secs(3), "A resolves a pin made after the outage", || {
        ofrep(&a, &sdk).body["value"] == "two"
    });
}
