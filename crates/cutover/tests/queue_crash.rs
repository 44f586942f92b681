//! Crash safety of the submit queue: `cutover serve` killed with SIGKILL while a check runs, then
//! started again on the same data (SQLite, and PostgreSQL when `CUTOVER_TEST_DATABASE_URL` is
//! set). Every request lands once, in queue order; the check the crash cut off is given up only
//! after its deadline (timeout + 5 s of grace) and its batch is checked again as the next
//! attempt, with a new idempotency key; no key runs twice and no two runs of a batch overlap.
//! On PostgreSQL also with two replicas: one drives the queue (its lease), and when it is killed
//! the other, running all along, takes over.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{PgDatabase, Server};

const REQUESTS: u64 = 3;
/// The queue's check timeout; a lost run is given up this long plus the grace after it started.
const TIMEOUT: Duration = Duration::from_secs(2);
const GRACE: Duration = Duration::from_secs(5);

/// 2 s leases, 100 ms ticks, and the check `check`, which records every run in `<dir>/runs`.
/// Before the restart (no `<dir>/restarted`) a run takes 3 s, so the SIGKILL cuts it off; its
/// shell outlives the server and ends on its own. After the restart a run takes 0.2 s.
fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("cutover.toml");
    let (r, restarted) = (dir.join("runs"), dir.join("restarted"));
    let (r, restarted) = (r.display(), restarted.display());
    let script = format!(
        "echo \"start $CUTOVER_IDEMPOTENCY_KEY $CUTOVER_BATCH $CUTOVER_ATTEMPT $PPID $(date +%s%N)\" >> {r}; \
         if [ -e {restarted} ]; then sleep 0.2; else sleep 3; fi; \
         echo \"end $CUTOVER_IDEMPOTENCY_KEY $CUTOVER_BATCH $CUTOVER_ATTEMPT $PPID $(date +%s%N)\" >> {r}"
    );
    assert!(!script.contains('\''), "a TOML literal string");
    let text = format!(
        "engine_lease_seconds = 2\nengine_tick_ms = 100\n[executors.check]\nprogram = [\"sh\", \"-c\", '{script}']\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[derive(Debug)]
struct Line {
    kind: String,
    key: String,
    batch: u64,
    attempt: u32,
    /// The server that ran it.
    server: u32,
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
                batch: f[2].parse().unwrap(),
                attempt: f[3].parse().unwrap(),
                server: f[4].parse().unwrap(),
                at: f[5].parse().unwrap(),
            }
        })
        .collect()
}

/// One run of a check, as the check recorded it: its key, when it started and ended (ns).
#[derive(Debug, Default, Clone)]
struct Run {
    key: String,
    starts: Vec<u128>,
    end: Option<u128>,
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What happens after the SIGKILL.
#[derive(Clone, Copy)]
enum After {
    /// The server starts again on the same data.
    Restart,
    /// A second replica on the same database, running all along, takes the queue over.
    Failover,
}

fn killed_mid_check(database: Option<&str>, after: After) {
    let (dir, other_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = config(dir.path());
    let record = dir.path().join("runs");
    let mut servers = vec![Server::start_with(dir.path(), database, Some(&config))];
    if let After::Failover = after {
        servers.push(Server::start_with(other_dir.path(), database, Some(&config)));
    }
    let token = support::shared_owner_token(&servers.iter().collect::<Vec<_>>());
    let server = &servers[0];
    server.ok("POST", "/api/v1/environments", &token, Some(json!({"name": "production"})));
    server.ok("POST", "/api/v1/artifacts", &token, Some(json!({"key": "greeting", "value_type": "string"})));
    let queue = json!({"name": "main", "environment": "production", "max_wait_seconds": 0, "budget": 2,
                       "executor": {"type": "command", "name": "check", "timeout_seconds": TIMEOUT.as_secs()}});
    server.ok("POST", "/api/v1/queues", &token, Some(queue));
    let submit = |n: u64| {
        let change = json!({"changes": [{"artifact": "greeting", "content": format!("hello {n}")}], "message": format!("change {n}")});
        server.ok("POST", "/api/v1/queues/main/requests", &token, Some(change))["id"].as_u64().unwrap()
    };
    let started = || lines(&record).iter().filter(|l| l.kind == "start").count();
    // Request 1 is checked alone; then the second check of the budget (requests after it, on
    // top of it) starts too, and the crash cuts both off.
    let mut ids = vec![submit(1)];
    wait_until("the first check to start", Duration::from_secs(20), || started() >= 1);
    ids.extend((2..=REQUESTS).map(submit));
    wait_until("the second check to start", Duration::from_secs(20), || started() >= 2);
    // One replica drives the queue: every check so far ran in one server. Kill that one.
    let cut_off: Vec<Line> = lines(&record);
    let runner = cut_off[0].server;
    assert!(cut_off.iter().all(|l| l.server == runner), "{cut_off:?}");
    let mut killed = servers.remove(servers.iter().position(|s| s.pid() == runner).expect("a check of a server"));
    killed.kill();
    let killed_at = Instant::now();
    // Every check that had started was cut off: none had ended when the server died.
    let cut_off: Vec<Line> = lines(&record);
    assert!(cut_off.iter().all(|l| l.kind == "start" && l.attempt == 1), "{cut_off:?}");
    std::fs::write(dir.path().join("restarted"), "").unwrap();

    if let After::Restart = after {
        servers.push(Server::start_with(dir.path(), database, Some(&config)));
    }
    let server = &servers[0];
    let mut requests: Vec<Value> = Vec::new();
    wait_until("every request to end", Duration::from_secs(40), || {
        requests = ids
            .iter()
            .map(|id| server.ok("GET", &format!("/api/v1/queues/main/requests/{id}"), &token, None))
            .collect();
        requests.iter().all(|r| ["landed", "error", "cancelled"].contains(&r["state"].as_str().unwrap()))
    });
    eprintln!("every request ended {:?} after the crash", killed_at.elapsed());

    // Nothing lost: every request landed, once, with its own version, in queue order.
    let mut versions = Vec::new();
    for request in &requests {
        assert_eq!(request["state"], "landed", "{request:#}\n{}", server.logs());
        let history = request["history"].as_array().unwrap();
        let landings = history.iter().filter(|t| t["to"] == "landed").count();
        assert_eq!(landings, 1, "landed once: {request:#}");
        assert_eq!(history.last().unwrap()["to"], "landed", "{request:#}");
        let version = request["landed_versions"]["greeting"].as_i64().unwrap();
        let published = server.ok("GET", &format!("/api/v1/artifacts/greeting/versions/{version}"), &token, None);
        assert_eq!(published["content"], request["changes"][0]["content"], "{published:#}");
        versions.push(version);
    }
    assert_eq!(versions, [1, 2, 3], "{requests:#?}");
    let pins = server.ok("GET", "/api/v1/artifacts/greeting/pins/production/history", &token, None);
    let mut pinned: Vec<i64> =
        pins["items"].as_array().unwrap().iter().map(|p| p["version"].as_i64().unwrap()).collect();
    pinned.reverse();
    assert_eq!(pinned, versions, "the pin moved through each landing in queue order: {pins:#}");
    // Resolve serves the last landing (its view is rebuilt after the landing commits, in the
    // engine's task: a reader that saw the request land may be a moment ahead of it).
    wait_until("resolve to serve the last landing", Duration::from_secs(5), || {
        let live = server.ok("GET", "/api/v1/resolve/greeting?environment=production", &token, None);
        live["value"] == format!("hello {REQUESTS}")
    });
    let queue = server.ok("GET", "/api/v1/queues/main", &token, None);
    assert_eq!(
        (queue["depth"].as_u64(), queue["running_checks"].as_array().map(Vec::len)),
        (Some(0), Some(0)),
        "{queue:#}"
    );

    // The checks' runs per batch and attempt: one key per run, each started once.
    let log = std::fs::read_to_string(&record).unwrap();
    let mut runs: BTreeMap<u64, BTreeMap<u32, Run>> = BTreeMap::new();
    for line in lines(&record) {
        let run = runs.entry(line.batch).or_default().entry(line.attempt).or_default();
        assert!(run.key.is_empty() || run.key == line.key, "one key per attempt: {line:?} {run:?}");
        run.key.clone_from(&line.key);
        if line.kind == "start" { run.starts.push(line.at) } else { run.end = Some(line.at) }
    }
    let mut keys = std::collections::BTreeSet::new();
    let mut queue_ids: Option<String> = None;
    for (batch, attempts) in &runs {
        let mut previous: Option<&Run> = None;
        for (attempt, run) in attempts {
            // `queue-<queue id>-batch-<n>-attempt-<k>`, one queue id for every run.
            let Some(queue_id) = run.key.strip_suffix(&format!("-batch-{batch}-attempt-{attempt}")) else {
                panic!("{run:?}: not the key of batch {batch}, attempt {attempt}")
            };
            assert!(queue_id.starts_with("queue-") && queue_id.len() > "queue-".len(), "{run:?}");
            assert_eq!(queue_ids.get_or_insert_with(|| queue_id.to_owned()), queue_id, "{run:?}");
            assert!(keys.insert(run.key.clone()), "{} used twice", run.key);
            assert_eq!(run.starts.len(), 1, "{} started {} times", run.key, run.starts.len());
            let start = run.starts[0];
            if let Some(before) = previous {
                // No two runs of one batch at once (a run still going has no end yet), and a lost
                // run is given up only after its deadline (less the moment between planning it
                // and its shell starting).
                let (before_start, before_end) = (before.starts[0], before.end.unwrap_or(u128::MAX));
                assert!(start >= before_end, "{} started while {} ran:\n{log}", run.key, before.key);
                let deadline = before_start + (TIMEOUT + GRACE).as_nanos() - Duration::from_millis(500).as_nanos();
                let after = (start - before_start) / 1_000_000;
                assert!(start >= deadline, "{} started {after} ms after {}:\n{log}", run.key, before.key);
            }
            previous = Some(run);
        }
        for run in attempts.values() {
            let end = run.end.unwrap_or_else(|| panic!("{} never ended:\n{log}", run.key));
            assert!(end >= run.starts[0], "{run:?}");
        }
        assert_eq!(
            attempts.keys().copied().collect::<Vec<_>>(),
            (1..=u32::try_from(attempts.len()).unwrap()).collect::<Vec<_>>()
        );
    }
    // Each run the crash cut off was checked again, exactly once more.
    for lost in &cut_off {
        let attempts = &runs[&lost.batch];
        assert_eq!(attempts.keys().copied().collect::<Vec<_>>(), [1, 2], "batch {}: {attempts:?}", lost.batch);
    }
    // And a batch that had not started a check before the crash was checked once.
    for (batch, attempts) in &runs {
        if !cut_off.iter().any(|l| l.batch == *batch) {
            assert_eq!(attempts.len(), 1, "batch {batch}: {attempts:?}");
        }
    }
    // After the crash, every check ran in the server left.
    let later: Vec<Line> = lines(&record).into_iter().filter(|l| l.kind == "start" && l.server == runner).collect();
    assert_eq!(later.len(), cut_off.len(), "only the cut-off runs ran in the killed server:\n{log}");
    assert!(lines(&record).iter().all(|l| l.server == runner || l.server == server.pid()), "{log}");
    for mut server in servers {
        server.kill();
    }
}

#[test]
fn a_queue_survives_sigkill_mid_check_and_restart_on_sqlite() {
    killed_mid_check(None, After::Restart);
}

#[test]
fn a_queue_survives_sigkill_mid_check_and_restart_on_postgres() {
    let Some(database) = PgDatabase::create() else { return };
    killed_mid_check(Some(&database.url), After::Restart);
}

#[test]
fn a_second_replica_takes_a_queue_over_from_one_killed_mid_check() {
    let Some(database) = PgDatabase::create() else { return };
    killed_mid_check(Some(&database.url), After::Failover);
}
