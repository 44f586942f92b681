//! Crash safety of rollouts: `cutover serve` killed with SIGKILL in the middle of a rollout, then
//! started again (SQLite), and two replicas on one PostgreSQL where the one driving the rollout is
//! killed. Either way the rollout finishes, no task runs twice at the same time, every task's
//! result is recorded once, and the pin moves once.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{PgDatabase, Server};

/// Engine settings that make a crash cheap to wait out (2 s leases, 100 ms ticks), and the
/// executor `apply`, which records its runs in `<dir>/runs`.
fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("cutover.toml");
    let script = script(&dir.join("runs"));
    assert!(!script.contains('\''), "a TOML literal string");
    let text = format!(
        "engine_lease_seconds = 2\nengine_tick_ms = 100\n[executors.apply]\nprogram = [\"sh\", \"-c\", '{script}']\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Each run notes its start and end (with its server's pid) and takes 2 s; its timeout is 3 s,
/// so a run orphaned by a crash may be taken over 8 s after it started (timeout + 5 s grace).
fn script(record: &Path) -> String {
    let r = record.display();
    format!(
        "echo \"start $CUTOVER_IDEMPOTENCY_KEY $CUTOVER_ATTEMPT $PPID $(date +%s%N)\" >> {r}; sleep 2; \
         echo \"end $CUTOVER_IDEMPOTENCY_KEY $CUTOVER_ATTEMPT $PPID $(date +%s%N)\" >> {r}"
    )
}

struct Line {
    kind: String,
    key: String,
    attempt: u32,
    pid: u32,
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
                pid: f[3].parse().unwrap(),
                at: f[4].parse().unwrap(),
            }
        })
        .collect()
}

fn setup(server: &Server, token: &str, targets: usize) {
    let targets: Vec<Value> = (0..targets).map(|i| json!({"name": format!("t-{i}")})).collect();
    server.ok("POST", "/api/v1/environments", token, Some(json!({"name": "production", "targets": targets})));
    server.ok("POST", "/api/v1/artifacts", token, Some(json!({"key": "greeting", "value_type": "string"})));
    let first = json!({"content": "one", "environments": ["production"]});
    server.ok("POST", "/api/v1/artifacts/greeting/versions", token, Some(first));
    server.ok("POST", "/api/v1/artifacts/greeting/versions", token, Some(json!({"content": "two"})));
}

/// Starts the rollout whose runs `config` records.
fn start_rollout(server: &Server, token: &str) -> String {
    let body = json!({"artifact": "greeting", "environment": "production", "version": 2, "max_parallel": 2,
                      "executor": {"type": "command", "name": "apply", "timeout_seconds": 3}});
    server.ok("POST", "/api/v1/rollouts", token, Some(body))["id"].as_str().unwrap().to_owned()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What must hold once the rollout is over, whatever crashed.
fn assert_finished_safely(server: &Server, token: &str, id: &str, record: &Path, targets: usize) {
    let mut rollout = Value::Null;
    wait_until("the rollout to complete", Duration::from_secs(60), || {
        rollout = server.ok("GET", &format!("/api/v1/rollouts/{id}"), token, None);
        assert_ne!(rollout["state"], "failed", "{rollout:#}");
        rollout["state"] == "completed"
    });
    // Every task completed, and its result was recorded once (the last attempt's).
    for operation in rollout["operations"].as_array().unwrap() {
        let task = &operation["tasks"][0];
        assert_eq!((task["state"].as_str(), task["exit_code"].as_i64()), (Some("completed"), Some(0)), "{task}");
    }
    // No task ran twice at the same time: per task, each run ended before the next started.
    let mut runs: BTreeMap<(String, u32), (Option<u128>, Option<u128>)> = BTreeMap::new();
    for line in lines(record) {
        let run = runs.entry((line.key.clone(), line.attempt)).or_default();
        if line.kind == "start" { run.0 = Some(line.at) } else { run.1 = Some(line.at) }
    }
    let mut by_task: BTreeMap<String, Vec<(u128, u128)>> = BTreeMap::new();
    for ((key, attempt), (start, end)) in runs {
        let start = start.expect("a run without a start");
        let end = end.unwrap_or_else(|| panic!("run {attempt} of {key} never ended"));
        by_task.entry(key).or_default().push((start, end));
    }
    assert_eq!(by_task.len(), targets, "every target's task ran: {by_task:?}");
    for (key, mut intervals) in by_task {
        intervals.sort();
        for pair in intervals.windows(2) {
            assert!(pair[1].0 >= pair[0].1, "{key}: a run started before the previous one ended: {intervals:?}");
        }
    }
    // The pin moved once, to the rolled-out version.
    let history = server.ok("GET", "/api/v1/artifacts/greeting/pins/production/history", token, None);
    let versions: Vec<i64> =
        history["items"].as_array().unwrap().iter().map(|p| p["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, [2, 1], "{history}");
}

#[test]
fn a_rollout_survives_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let record = dir.path().join("runs");
    let mut server = Server::start_with(dir.path(), None, Some(&config));
    let token = server.owner_token();
    setup(&server, &token, 4);
    let id = start_rollout(&server, &token);
    wait_until("the first wave to start", Duration::from_secs(20), || {
        lines(&record).iter().filter(|l| l.kind == "start").count() >= 2
    });
    server.kill();
    let killed_at = Instant::now();
    let mut server = Server::start_with(dir.path(), None, Some(&config));
    assert_finished_safely(&server, &token, &id, &record, 4);
    eprintln!("completed {:?} after the crash", killed_at.elapsed());
    // The interrupted tasks ran again, with the same idempotency key and a new attempt.
    assert!(lines(&record).iter().any(|l| l.kind == "start" && l.attempt == 2), "the crashed runs were taken over");
    server.kill();
}

#[test]
fn a_rollout_survives_the_replica_driving_it_being_killed() {
    let Some(database) = PgDatabase::create() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = config(dir_a.path());
    let record = dir_a.path().join("runs");
    let a = Server::start_with(dir_a.path(), Some(&database.url), Some(&config));
    let b = Server::start_with(dir_b.path(), Some(&database.url), Some(&config));
    let token = support::shared_owner_token(&[&a, &b]);
    setup(&a, &token, 4);
    let id = start_rollout(&a, &token);
    wait_until("the first wave to start", Duration::from_secs(20), || {
        lines(&record).iter().filter(|l| l.kind == "start").count() >= 2
    });
    // One replica drives the rollout (its lease): both first runs have the same parent.
    let first: Vec<u32> = lines(&record).iter().filter(|l| l.kind == "start").map(|l| l.pid).collect();
    assert!(first.iter().all(|pid| *pid == first[0]), "one replica runs the rollout's tasks: {first:?}");
    let (mut driver, survivor) = if a.pid() == first[0] { (a, b) } else { (b, a) };
    assert_eq!(driver.pid(), first[0], "the runs' parent is one of the replicas");
    driver.kill();
    assert_finished_safely(&survivor, &token, &id, &record, 4);
    let after: Vec<u32> =
        lines(&record).iter().filter(|l| l.kind == "start" && l.attempt == 2).map(|l| l.pid).collect();
    assert!(!after.is_empty() && after.iter().all(|pid| *pid == survivor.pid()), "the survivor took over: {after:?}");
}
