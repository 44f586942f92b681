//! Crash safety of warm pools: `cutover serve` killed with SIGKILL while its provisioner builds
//! a pool's instances, then started again (SQLite, and PostgreSQL when
//! `CUTOVER_TEST_DATABASE_URL` is set). The pool fills, nothing is lost, no instance is created
//! twice for the same need, every interrupted build runs again with its idempotency key, and no
//! build ever runs twice at the same time.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{PgDatabase, Server};

const DESIRED: usize = 3;

/// 2 s leases, 100 ms ticks, and the provisioner `provision`, which records every invocation in
/// `<dir>/runs` and takes 2 s.
fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("cutover.toml");
    let r = dir.join("runs");
    let r = r.display();
    let script = format!(
        "echo \"start $CUTOVER_IDEMPOTENCY_KEY $CUTOVER_ATTEMPT $CUTOVER_TRANSITION $CUTOVER_INSTANCE_ID $(date +%s%N)\" >> {r}; \
         sleep 2; \
         echo \"end $CUTOVER_IDEMPOTENCY_KEY $CUTOVER_ATTEMPT $CUTOVER_TRANSITION $CUTOVER_INSTANCE_ID $(date +%s%N)\" >> {r}"
    );
    assert!(!script.contains('\''), "a TOML literal string");
    let text = format!(
        "engine_lease_seconds = 2\nengine_tick_ms = 100\n[executors.provision]\nprogram = [\"sh\", \"-c\", '{script}']\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[derive(Debug)]
struct Line {
    kind: String,
    key: String,
    attempt: u32,
    transition: String,
    instance: String,
    at: u128,
}

fn lines(record: &Path) -> Vec<Line> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            Line {
                kind: f[0].into(),
                key: f[1].into(),
                attempt: f[2].parse().unwrap(),
                transition: f[3].into(),
                instance: f[4].into(),
                at: f[5].parse().unwrap(),
            }
        })
        .collect()
}

/// When one invocation started and ended (nanoseconds), as the provisioner recorded it.
type Run = (Option<u128>, Option<u128>);

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn setup(server: &Server, token: &str) {
    server.ok("POST", "/api/v1/environments", token, Some(json!({"name": "production"})));
    server.ok("POST", "/api/v1/artifacts", token, Some(json!({"key": "runner", "value_type": "string"})));
    let first = json!({"content": "image", "environments": ["production"]});
    server.ok("POST", "/api/v1/artifacts/runner/versions", token, Some(first));
    // A build's run may be taken over 8 s after it started (timeout 3 s + 5 s of grace).
    let pool = json!({"name": "runners", "artifact": "runner", "environment": "production", "executor": "provision",
                      "timeout_seconds": 3, "desired": {"instances": DESIRED}});
    server.ok("POST", "/api/v1/pools", token, Some(pool));
}

fn killed_mid_build_then_restarted(database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let record = dir.path().join("runs");
    let mut server = Server::start_with(dir.path(), database, Some(&config));
    let token = server.owner_token();
    setup(&server, &token);
    wait_until("the first builds to start", Duration::from_secs(20), || {
        lines(&record).iter().filter(|l| l.kind == "start").count() >= DESIRED
    });
    server.kill();
    let killed_at = Instant::now();
    // Every build that had started was cut off: none had ended when the server died.
    let cut_off: BTreeSet<String> = lines(&record).iter().map(|l| l.key.clone()).collect();
    assert!(lines(&record).iter().all(|l| l.kind == "start"), "{:?}", lines(&record));

    let mut server = Server::start_with(dir.path(), database, Some(&config));
    let mut pool = Value::Null;
    wait_until("the pool to fill", Duration::from_secs(60), || {
        pool = server.ok("GET", "/api/v1/pools/runners", &token, None);
        pool["counts"]["ready"] == DESIRED
    });
    eprintln!("filled {:?} after the crash", killed_at.elapsed());

    // Nothing lost, nothing created twice: the pool holds exactly the instances whose builds
    // the crash cut off, each with one start build that succeeded after a second attempt.
    let instances = server.ok("GET", "/api/v1/pools/runners/instances", &token, None);
    let instances = instances.as_array().unwrap();
    let ids: BTreeSet<String> = instances.iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect();
    let recorded: BTreeSet<String> = lines(&record).iter().map(|l| l.instance.clone()).collect();
    assert_eq!(ids, recorded, "the provisioner built exactly the pool's instances");
    assert_eq!(ids.len(), DESIRED, "{instances:#?}");
    for id in &ids {
        let detail = server.ok("GET", &format!("/api/v1/instances/{id}"), &token, None);
        let builds = detail["builds"].as_array().unwrap();
        assert_eq!(builds.len(), 1, "one build per instance: {detail:#}");
        let build = &builds[0];
        assert_eq!((build["transition"].as_str(), build["status"].as_str()), (Some("start"), Some("succeeded")));
        let key = build["idempotency_key"].as_str().unwrap();
        assert_eq!(key, format!("pool-instance/{id}/build/1"));
        assert!(cut_off.contains(key), "{key} was cut off by the crash");
        assert_eq!(build["attempts"], 2, "run again once after the crash: {build}");
        assert_eq!((detail["ready"].as_bool(), detail["transition"].as_str()), (Some(true), Some("start")));
    }

    // The provisioner's invocations per key: attempts 1 (cut off) and 2 (after the restart),
    // each a start of the same instance, and never two at the same time.
    let mut runs: BTreeMap<String, BTreeMap<u32, Run>> = BTreeMap::new();
    for line in lines(&record) {
        assert_eq!(line.transition, "start", "{line:?}");
        assert!(line.key.starts_with(&format!("pool-instance/{}/", line.instance)), "{line:?}");
        let run = runs.entry(line.key.clone()).or_default().entry(line.attempt).or_default();
        if line.kind == "start" { run.0 = Some(line.at) } else { run.1 = Some(line.at) }
    }
    assert_eq!(runs.len(), DESIRED, "one build per instance: {runs:?}");
    for (key, attempts) in &runs {
        assert_eq!(attempts.keys().copied().collect::<Vec<_>>(), [1, 2], "{key}: {attempts:?}");
        let (first, second) = (attempts[&1], attempts[&2]);
        // The cut-off run's shell outlives the server and ends on its own, before the takeover.
        let first_end = first.1.unwrap_or_else(|| panic!("{key}: the cut-off run never ended"));
        assert!(second.0.unwrap() >= first_end, "{key}: the second run started before the first ended");
        assert!(second.1.is_some(), "{key}: the second run ended");
    }
    server.kill();
}

#[test]
fn a_pool_survives_sigkill_mid_build_and_restart_on_sqlite() {
    killed_mid_build_then_restarted(None);
}

#[test]
fn a_pool_survives_sigkill_mid_build_and_restart_on_postgres() {
    let Some(database) = PgDatabase::create() else { return };
    killed_mid_build_then_restarted(Some(&database.url));
}
