//! End to end: the real `cutover` binary serving on a free port with its own data directory, and
//! the same binary as the CLI against it. Each test starts its own server (`support::Server`,
//! killed when dropped, also when the test panics).

mod support;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use cutover_api::CreateEnvironment;
use cutover_client::{Client, ClientError};
use serde_json::{Value, json};
use support::{STARTUP_TIMEOUT, Server, cutover_command, free_port, healthz, stdout_json, succeeded, text};

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
    let server = Server::fresh();
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

    // A target's configuration from the command line; a bare name keeps the one it has.
    let configured = server.json(&["env", "update", "production", "--target", r#"eu={"region": "eu-west-1"}"#]);
    assert_eq!(configured["targets"], serde_json::json!([{"name": "eu", "config": {"region": "eu-west-1"}}]));
    let kept = server.json(&["env", "update", "production", "--target", "eu", "--target", "us"]);
    assert_eq!(kept["targets"], serde_json::json!([{"name": "eu", "config": {"region": "eu-west-1"}}, {"name": "us"}]));
    let refused = server.cutover(&["env", "update", "production", "--target", "eu=[1]"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("must be a JSON object"), "{}", text(&refused.stderr));

    // Listed in the order made, then in the order the user sets.
    server.json(&["env", "create", "staging"]);
    server.json(&["env", "create", "dev"]);
    assert_eq!(names(&server.json(&["env", "list"]), "name"), ["production", "staging", "dev"]);
    let ordered = server.json(&["env", "order", "dev", "staging"]);
    assert_eq!(names(&ordered, "name"), ["dev", "staging", "production"]);
    assert_eq!(names(&server.json(&["env", "list"]), "name"), ["dev", "staging", "production"]);
    let unknown = server.cutover(&["env", "order", "nope"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown.stderr));
    assert!(text(&unknown.stderr).contains("no such environment: nope"), "{}", text(&unknown.stderr));
}

#[test]
fn versions_are_published_listed_and_shown() {
    let server = Server::fresh();
    let artifact = server.json(&["artifact", "create", "prompts/welcome", "--type", "string", "--kind", "prompt"]);
    assert_eq!(artifact["key"], "prompts/welcome");
    assert_eq!(artifact["value_type"], "string");

    let first = server.json(&["version", "create", "prompts/welcome", "--text", "Hello", "-m", "first"]);
    assert_eq!(first["number"], 1);
    assert_eq!(first["content"], "Hello");
    assert_eq!(first["message"], "first");

    // For a string artifact the file's text is the content, as is.
    let file = server.data_dir.join("welcome.txt");
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
    let server = Server::fresh();
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
    let server = Server::fresh();
    let output = server.cutover(&["env", "create", "Not Valid"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    let stderr = text(&output.stderr);
    let expected = server.api_error(&server.owner_token(), |client| async move {
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
    let server = Server::fresh();
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
fn queue_simulate_runs_without_a_server_and_the_same_seed_prints_the_same_report() {
    let args = [
        "queue",
        "simulate",
        "--lambda",
        "60",
        "--hours",
        "1",
        "--failure-rate",
        "0.1",
        "--flake-rate",
        "0.05",
        "--budget",
        "4",
        "--max-batch-size",
        "4",
        "--check-mean-seconds",
        "300",
        "--seed",
        "7",
        "--output",
        "json",
    ];
    let run = || succeeded(&cutover_command().args(args).output().expect("running cutover"), &args);
    let first = run();
    assert_eq!(first, run(), "a seeded simulation is deterministic");
    let report = stdout_json(&first);
    assert_eq!(report["config"]["lambda_per_hour"], 60.0);
    assert_eq!(report["config"]["budget"], 4);
    assert_eq!(report["config"]["seed"], 7);
    let strategies = report["strategies"].as_array().expect("strategies");
    let names: Vec<_> = strategies.iter().map(|s| s["strategy"].as_str().expect("a name")).collect();
    assert_eq!(names, ["serial", "optimistic-prefix", "batch-bisect", "batch-dorfman", "speculative", "oracle"]);
    for s in strategies {
        assert_eq!(s["invariant_violations"], 0, "{s}");
        let submitted = s["submitted"].as_u64().expect("submitted");
        let ended = ["landed", "rejected", "cancelled"].map(|field| s[field].as_u64().expect(field));
        assert_eq!(ended.iter().sum::<u64>(), submitted, "{s}");
        assert!(submitted > 30, "{s}");
        for field in ["mean", "p50", "p95", "p99"] {
            assert!(s["time_to_land_seconds"][field].as_f64().expect(field) > 0.0, "{s}");
        }
        for field in ["landed_per_hour", "checks_per_landed", "drained_after_hours"] {
            assert!(s[field].as_f64().expect(field) > 0.0, "{s}");
        }
    }

    let table_args = ["queue", "simulate", "--hours", "0.5", "--strategy", "oracle", "--strategy", "serial"];
    let table = succeeded(&cutover_command().args(table_args).output().expect("running cutover"), &table_args);
    let header = table.lines().find(|line| line.starts_with("STRATEGY")).expect("a header row");
    assert!(header.contains("P50") && header.contains("CHECKS/LANDED") && header.contains("VIOLATIONS"), "{table}");
    let rows: Vec<_> = table.lines().skip_while(|line| !line.starts_with("STRATEGY")).skip(1).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows[0].starts_with("oracle") && rows[1].starts_with("serial"), "in the order asked: {table}");

    let bad = ["queue", "simulate", "--failure-rate", "2"];
    let refused = cutover_command().args(bad).output().expect("running cutover");
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("--failure-rate: must be between 0 and 1"), "{}", text(&refused.stderr));
}

#[test]
fn an_unreachable_server_is_named_and_exits_3() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let output =
        cutover_command().args(["--server", &url, "--token", "anything", "whoami"]).output().expect("running cutover");
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with(&format!("error: could not reach {url}: connection refused")), "{stderr}");
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

impl Server {
    /// Runs `cutover ARGS` as the owner, expecting it to fail with exit code 1; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.cutover(args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "cutover {args:?}\nstdout:\n{}\nstderr:\n{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        assert!(output.stdout.is_empty(), "cutover {args:?} printed:\n{}", text(&output.stdout));
        text(&output.stderr)
    }

    /// Runs `cutover ARGS` as the owner (tables), expecting success; its stdout.
    fn table(&self, args: &[&str]) -> String {
        succeeded(&self.cutover(args), args)
    }
}

/// `[{"environment", "from", "to"}]` of a pin write as (environment, from, to).
fn changes(write: &Value) -> Vec<(String, Option<i64>, Option<i64>)> {
    write["changes"]
        .as_array()
        .expect("a write has changes")
        .iter()
        .map(|change| {
            (
                change["environment"].as_str().expect("an environment").to_owned(),
                change["from"].as_i64(),
                change["to"].as_i64(),
            )
        })
        .collect()
}

/// (environment or artifact, version) of each pin in a page.
fn live(page: &Value, field: &str) -> Vec<(String, i64)> {
    page["items"]
        .as_array()
        .expect("a page has items")
        .iter()
        .map(|pin| (pin[field].as_str().expect("a name").to_owned(), pin["version"].as_i64().expect("a version")))
        .collect()
}

fn versions(history: &Value) -> Vec<i64> {
    history["items"].as_array().expect("items").iter().map(|pin| pin["version"].as_i64().expect("a version")).collect()
}

/// `staging` and `production`, and `prompts/welcome` (string) with versions "one", "two", "three"
/// of which none is pinned.
fn release_setup(server: &Server) {
    server.json(&["env", "create", "staging"]);
    server.json(&["env", "create", "production"]);
    server.json(&["artifact", "create", "prompts/welcome", "--type", "string"]);
    for text in ["one", "two", "three"] {
        server.json(&["version", "create", "prompts/welcome", "--text", text]);
    }
}

#[test]
fn pins_move_promote_and_show_their_history() {
    let server = Server::fresh();
    release_setup(&server);
    const KEY: &str = "prompts/welcome";

    let pinned = server.json(&["pin", KEY, "staging", "1", "--reason", "first"]);
    assert_eq!(changes(&pinned), [("staging".to_owned(), None, Some(1))]);
    assert!(pinned["revision"].as_i64().is_some(), "{pinned}");
    let again = server.json(&["pin", KEY, "staging", "1"]);
    assert!(again["revision"].is_null() && changes(&again).is_empty(), "pinning what is live is a no-op: {again}");
    let table = server.table(&["pin", KEY, "staging", "1"]);
    assert!(table.contains("already live") && table.contains("nothing changed"), "{table}");

    let table = server.table(&["pin", KEY, "production", "1"]);
    assert!(table.starts_with("ENVIRONMENT"), "{table}");
    assert!(table.contains("production") && table.contains("- → 1"), "{table}");
    server.json(&["pin", KEY, "staging", "2", "--reason", "new copy"]);

    let pins = server.json(&["pins", KEY]);
    assert_eq!(live(&pins, "environment"), [("production".to_owned(), 1), ("staging".to_owned(), 2)]);
    let in_production = server.json(&["pins", "--env", "production"]);
    assert_eq!(live(&in_production, "artifact"), [(KEY.to_owned(), 1)]);
    let one = server.json(&["pins", KEY, "--env", "staging"]);
    assert_eq!((one["version"].as_i64(), one["reason"].as_str()), (Some(2), Some("new copy")));
    let table = server.table(&["pins", KEY]);
    let header = table.lines().next().expect("a header");
    for column in ["ENVIRONMENT", "VERSION", "REVISION", "SINCE", "BY"] {
        assert!(header.contains(column), "{table}");
    }
    let table = server.table(&["pins", "--env", "production"]);
    assert!(table.starts_with("ARTIFACT") && table.contains(KEY), "{table}");

    // A dry run shows the diff and changes nothing.
    let dry = server.json(&["promote", KEY, "--from", "staging", "--to", "production", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["version"], 2);
    assert!(dry["revision"].is_null(), "{dry}");
    assert_eq!(changes(&dry), [("production".to_owned(), Some(1), Some(2))]);
    let table = server.table(&["promote", KEY, "--from", "staging", "--to", "production", "--dry-run"]);
    assert!(table.contains("1 → 2") && table.contains("dry run: nothing was written"), "{table}");
    assert_eq!(live(&server.json(&["pins", "--env", "production"]), "artifact"), [(KEY.to_owned(), 1)]);
    assert_eq!(server.json(&["resolve", KEY, "--env", "production"])["version"], 1);

    let promoted = server.json(&["promote", KEY, "--from", "staging", "--to", "production", "--reason", "ship"]);
    assert_eq!(promoted["dry_run"], false);
    assert!(promoted["revision"].as_i64().is_some(), "{promoted}");
    assert_eq!(changes(&promoted), [("production".to_owned(), Some(1), Some(2))]);
    assert_eq!(
        live(&server.json(&["pins", KEY]), "environment"),
        [("production".to_owned(), 2), ("staging".to_owned(), 2)]
    );
    let table = server.table(&["promote", KEY, "--from", "staging", "--to", "production"]);
    assert!(table.contains("already live in every target"), "{table}");

    let resolved = server.json(&["resolve", KEY, "--env", "production"]);
    assert_eq!((resolved["version"].as_i64(), resolved["value"].as_str()), (Some(2), Some("two")));
    let table = server.table(&["resolve", KEY, "--env", "production"]);
    assert!(table.contains("two") && table.lines().any(|line| line.starts_with("version") && line.ends_with('2')));

    // Newest first: the live interval, then the closed one, with who closed it and why.
    let history = server.json(&["history", KEY, "production"]);
    assert_eq!(versions(&history), [2, 1]);
    let [open, closed] = history["items"].as_array().expect("items").as_slice() else {
        panic!("two intervals: {history}");
    };
    assert!(open.get("ended_at").is_none(), "{open}");
    assert_eq!(open["reason"], "ship");
    assert!(closed["ended_at"].is_string() && closed["ended_by"]["name"].is_string(), "{closed}");
    let table = server.table(&["history", KEY, "production"]);
    let header = table.lines().next().expect("a header");
    for column in ["VERSION", "FROM", "UNTIL", "OPENED BY", "CLOSED BY", "REASON"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(table.lines().nth(1).is_some_and(|line| line.contains("live") && line.ends_with("ship")), "{table}");
    let first_page = server.json(&["history", KEY, "staging", "--limit", "1"]);
    assert_eq!(versions(&first_page), [2]);
    assert!(first_page["next_cursor"].is_string(), "{first_page}");
    let every_page = server.json(&["history", KEY, "staging", "--limit", "1", "--all"]);
    assert_eq!(versions(&every_page), [2, 1]);
    assert!(every_page.get("next_cursor").is_none_or(Value::is_null), "{every_page}");
}

#[test]
fn if_match_refuses_a_stale_revision_and_unpin_takes_an_artifact_out() {
    let server = Server::fresh();
    release_setup(&server);
    const KEY: &str = "prompts/welcome";
    server.json(&["pin", KEY, "production", "1"]);
    let revision = server.json(&["pins", KEY, "--env", "production"])["revision"].as_i64().expect("a revision");
    server.json(&["pin", KEY, "production", "2"]);

    // The revision read before someone else moved the pin is stale now.
    let stale = revision.to_string();
    let stderr = server.fails(&["pin", KEY, "production", "3", "--if-match", &stale]);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("code: precondition_failed (HTTP 412)"), "{stderr}");
    assert_eq!(server.json(&["resolve", KEY, "--env", "production"])["version"], 2, "nothing was written");

    let current = server.json(&["pins", KEY, "--env", "production"])["revision"].as_i64().expect("a revision");
    let moved = server.json(&["pin", KEY, "production", "3", "--if-match", &current.to_string()]);
    assert_eq!(changes(&moved), [("production".to_owned(), Some(2), Some(3))]);

    let stderr = server.fails(&["unpin", KEY, "production", "--if-match", &current.to_string()]);
    assert!(stderr.contains("precondition_failed"), "{stderr}");
    let unpinned = server.json(&["unpin", KEY, "production", "--reason", "incident"]);
    assert_eq!(changes(&unpinned), [("production".to_owned(), Some(3), None)]);
    let history = server.json(&["history", KEY, "production"]);
    assert_eq!(history["items"][0]["end_reason"], "incident");
    assert!(history["items"].as_array().expect("items").iter().all(|pin| pin["ended_at"].is_string()));
    let table = server.table(&["unpin", KEY, "production"]);
    assert!(table.contains("nothing changed"), "{table}");

    // Nothing live: resolve answers no version and no value, and the pin reads say so.
    let resolved = server.json(&["resolve", KEY, "--env", "production"]);
    assert!(resolved["version"].is_null() && resolved["value"].is_null(), "{resolved}");
    let table = server.table(&["resolve", KEY, "--env", "production"]);
    assert!(table.contains("nothing pinned"), "{table}");
    assert!(server.json(&["pins", "--env", "production"])["items"].as_array().is_some_and(Vec::is_empty));
    assert_eq!(server.table(&["pins", KEY]), format!("{KEY} is not live in any environment\n"));
    let stderr = server.fails(&["pins", KEY, "--env", "production"]);
    assert!(stderr.contains("not_found"), "{stderr}");
}

#[test]
fn rollback_returns_to_the_previous_version() {
    let server = Server::fresh();
    release_setup(&server);
    const KEY: &str = "prompts/welcome";
    server.json(&["pin", KEY, "production", "1"]);
    server.json(&["pin", KEY, "production", "2"]);
    server.json(&["pin", KEY, "staging", "3"]);

    let rolled = server.json(&["rollback", KEY, "production"]);
    assert_eq!(changes(&rolled), [("production".to_owned(), Some(2), Some(1))]);
    assert_eq!(server.json(&["resolve", KEY, "--env", "production"])["value"], "one");
    let history = server.json(&["history", KEY, "production"]);
    assert_eq!(versions(&history), [1, 2, 1]);
    assert_eq!(history["items"][0]["reason"], "rollback from version 2");
    // Other environments are untouched.
    assert_eq!(server.json(&["resolve", KEY, "--env", "staging"])["version"], 3);

    // Back again: the version before the live one is 2 now.
    let table = server.table(&["rollback", KEY, "production", "--reason", "undo"]);
    assert!(table.contains("1 → 2"), "{table}");
    assert_eq!(server.json(&["history", KEY, "production"])["items"][0]["reason"], "undo");

    // Intervals with the live version are skipped: after 2 → 3 → 3 (unpinned and pinned again),
    // the previous version is still 2.
    server.json(&["pin", KEY, "production", "3"]);
    server.json(&["unpin", KEY, "production"]);
    server.json(&["pin", KEY, "production", "3"]);
    let rolled = server.json(&["rollback", KEY, "production"]);
    assert_eq!(changes(&rolled), [("production".to_owned(), Some(3), Some(2))]);

    // With nothing live, the last version that was comes back.
    server.json(&["unpin", KEY, "production"]);
    let rolled = server.json(&["rollback", KEY, "production"]);
    assert_eq!(changes(&rolled), [("production".to_owned(), None, Some(2))]);
}

#[test]
fn rollback_with_nothing_to_roll_back_to_fails_and_changes_nothing() {
    let server = Server::fresh();
    release_setup(&server);
    const KEY: &str = "prompts/welcome";

    let stderr = server.fails(&["rollback", KEY, "production"]);
    assert_eq!(
        stderr,
        format!("error: nothing to roll back to: nothing of {KEY} has ever been pinned in production\n")
    );

    server.json(&["pin", KEY, "production", "2"]);
    let stderr = server.fails(&["rollback", KEY, "production"]);
    assert!(stderr.starts_with("error: nothing to roll back to: version 2 is the only version"), "{stderr}");
    assert_eq!(versions(&server.json(&["history", KEY, "production"])), [2]);

    let stderr = server.fails(&["rollback", KEY, "nowhere"]);
    assert!(stderr.contains("not_found"), "{stderr}");
}

#[test]
fn versions_are_published_into_environments_and_given_sets_of_them() {
    let server = Server::fresh();
    release_setup(&server);
    const KEY: &str = "prompts/welcome";

    let four = server.json(&["version", "create", KEY, "--text", "four", "--env", "staging", "--env", "production"]);
    assert_eq!(four["number"], 4);
    assert_eq!(
        live(&server.json(&["pins", KEY]), "environment"),
        [("production".to_owned(), 4), ("staging".to_owned(), 4)]
    );

    // Both environments are taken: refused, listing them, and nothing is published.
    let stderr = server.fails(&["version", "create", KEY, "--text", "five", "--env", "staging", "--env", "production"]);
    assert!(stderr.starts_with("error: nothing was published: another version is live in "), "{stderr}");
    assert!(stderr.contains("staging (version 4)") && stderr.contains("production (version 4)"), "{stderr}");
    assert!(stderr.contains("; add --move to make the new version live there instead\n"), "{stderr}");
    assert!(stderr.contains("code: conflict (HTTP 409)"), "{stderr}");
    assert!(!stderr.contains("\"move\": true"), "API wording leaked: {stderr}");
    assert_eq!(server.json(&["artifact", "show", KEY])["latest_version"], 4);

    let args = ["version", "create", KEY, "--text", "five", "--env", "staging", "--move"];
    let table = server.table(&args);
    assert!(table.lines().any(|line| line.starts_with("live in") && line.ends_with("staging")), "{table}");
    assert_eq!(server.json(&["resolve", KEY, "--env", "staging"])["value"], "five");

    let set = server.json(&["version", "environments", KEY, "1", "--env", "production", "--env", "staging"]);
    let mut set = changes(&set);
    set.sort();
    assert_eq!(set, [("production".to_owned(), Some(4), Some(1)), ("staging".to_owned(), Some(5), Some(1))]);
    let cleared = server.json(&["version", "environments", KEY, "1", "--clear", "--reason", "cleanup"]);
    assert_eq!(changes(&cleared).len(), 2, "{cleared}");
    assert!(server.json(&["pins", KEY])["items"].as_array().is_some_and(Vec::is_empty));
    let table = server.table(&["version", "environments", KEY, "1", "--clear"]);
    assert!(table.contains("nothing changed"), "{table}");

    // --move without --env, and --env with --clear, are usage errors.
    let output = server.cutover(&["version", "create", KEY, "--text", "x", "--move"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let output = server.cutover(&["version", "environments", KEY, "1", "--clear", "--env", "staging"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
}

/// Runs `cutover ARGS` as the owner, expecting exit code `code`; its stderr.
fn exits_with(server: &Server, code: i32, args: &[&str]) -> String {
    let output = server.cutover(args);
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "cutover {args:?}\nstdout:\n{}\nstderr:\n{stderr}",
        text(&output.stdout)
    );
    stderr
}

#[test]
fn an_experiment_runs_from_create_to_a_pinned_winner() {
    let server = Server::fresh();
    const KEY: &str = "prompts/welcome";
    server.json(&["env", "create", "production"]);
    server.json(&["artifact", "create", KEY, "--type", "string"]);
    for text in ["one", "two"] {
        server.json(&["version", "create", KEY, "--text", text]);
    }
    server.json(&["pin", KEY, "production", "1"]);

    let created = server.json(&[
        "experiment",
        "create",
        "--env",
        "production",
        "--artifact",
        KEY,
        "--name",
        "welcome copy",
        "--hypothesis",
        "a warmer greeting converts better",
        "--treatment",
        "2",
        "--weights",
        "1,1",
        "--coverage",
        "1",
        "--primary-metric",
        "checkout",
        "--guardrail",
        "revenue",
    ]);
    let id = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(created["status"], "created");
    assert_eq!(created["variants"], serde_json::json!([{"version": 1, "weight": 0.5}, {"version": 2, "weight": 0.5}]));
    assert_eq!(created["guardrail_metrics"], serde_json::json!(["revenue"]));
    assert!(created.get("started_at").is_none(), "{created}");
    let table = server.table(&["experiment", "show", &id]);
    for expected in ["welcome copy", "control: version 1, 50%", "treatment-1: version 2, 50%", "checkout", "revenue"] {
        assert!(table.contains(expected), "{expected}: {table}");
    }
    let listed = server.json(&["experiment", "list", "--env", "production", "--status", "created"]);
    assert_eq!(names(&listed, "id"), [id.as_str()]);
    assert!(
        server.json(&["experiment", "list", "--env", "production", "--status", "running"])["items"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    let table = server.table(&["experiment", "list", "--env", "production"]);
    // Tables show the id's first 13 characters, which the commands take back.
    assert!(
        table.starts_with("ID") && table.contains(&format!("\n{} ", &id[..13])) && table.contains("1, 2"),
        "{table}"
    );

    // Illegal transitions are refused with 409, naming the current status, and exit 1.
    let stderr = server.fails(&["experiment", "pause", &id]);
    assert!(stderr.starts_with("error: cannot pause an experiment that is created"), "{stderr}");
    assert!(stderr.contains("code: illegal_transition (HTTP 409)") && stderr.contains("status: created"), "{stderr}");

    let started = server.json(&["experiment", "start", &id]);
    assert_eq!(started["experiment"]["status"], "running");
    assert!(started["experiment"]["started_at"].is_string(), "{started}");
    let stderr = server.fails(&["experiment", "start", &id]);
    assert!(stderr.contains("illegal_transition (HTTP 409)") && stderr.contains("status: running"), "{stderr}");

    // While it runs, resolve needs a targeting key, and splits users between the versions.
    let stderr = server.fails(&["resolve", KEY, "--env", "production"]);
    assert!(stderr.starts_with("error: pass --targeting-key KEY: an experiment runs"), "{stderr}");
    assert!(stderr.contains("targeting_key_missing"), "{stderr}");
    let mut control_user = None;
    let mut treated_user = None;
    let mut resolved_users = 0;
    for n in 0..40 {
        let user = format!("user-{n}");
        let resolved = server.json(&["resolve", KEY, "--env", "production", "--targeting-key", &user]);
        resolved_users += 1;
        assert_eq!(resolved["experiment"], id.as_str(), "{resolved}");
        match (resolved["variant"].as_str(), resolved["version"].as_i64(), resolved["value"].as_str()) {
            (Some("control"), Some(1), Some("one")) => control_user = Some(user),
            (Some("treatment-1"), Some(2), Some("two")) => treated_user = Some(user),
            _ => panic!("not a variant of the experiment: {resolved}"),
        }
        if control_user.is_some() && treated_user.is_some() {
            break;
        }
    }
    let (control_user, treated_user) = (control_user.expect("a control user"), treated_user.expect("a treated user"));
    // The same user always lands in the same variant.
    let table = server.table(&["resolve", KEY, "--env", "production", "--targeting-key", &treated_user]);
    assert!(table.lines().any(|l| l.starts_with("variant") && l.ends_with("treatment-1")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("experiment") && l.ends_with(&id)), "{table}");

    // Events: one on the command line, more from a file; an unknown user is accepted, not counted.
    let accepted = server.json(&["event", "send", "--metric", "checkout", "--targeting-key", &treated_user]);
    assert_eq!(accepted, serde_json::json!({"received": 1, "attributed": 1}));
    let file = server.data_dir.join("events.json");
    let events = serde_json::json!([
        {"metric": "revenue", "targeting_key": treated_user, "value": 12.5},
        {"metric": "revenue", "targeting_key": control_user, "value": 10.0},
    ]);
    std::fs::write(&file, events.to_string()).expect("writing the events file");
    let path = file.to_str().expect("a UTF-8 path");
    assert_eq!(server.json(&["event", "send", "--file", path]), serde_json::json!({"received": 2, "attributed": 2}));
    let table = server.table(&["event", "send", "--metric", "checkout", "--targeting-key", "nobody"]);
    assert_eq!(table, "recorded 1 event, counted 0 times in experiments\n");
    let stderr = exits_with(&server, 2, &["event", "send", "--metric", "checkout"]);
    assert!(stderr.contains("--targeting-key"), "{stderr}");

    let results = server.json(&["experiment", "results", &id]);
    assert_eq!(results["status"], "running");
    assert_eq!(results["exposures"], resolved_users, "{results}");
    assert_eq!(results["sample_ratio"]["mismatch"], false, "{results}");
    let metrics: Vec<_> = results["metrics"].as_array().expect("metrics").iter().map(|m| m["metric"].clone()).collect();
    assert_eq!(metrics, ["checkout", "revenue"]);
    let checkout = &results["metrics"][0]["variants"];
    assert_eq!((checkout[0]["conversions"].as_u64(), checkout[1]["conversions"].as_u64()), (Some(0), Some(1)));
    assert_eq!(results["metrics"][1]["kind"], "mean");
    let table = server.table(&["experiment", "results", &id]);
    assert!(table.contains("sample ratio: ok"), "{table}");
    assert!(table.contains("checkout (primary, conversion rate)"), "{table}");
    assert!(table.contains("revenue (guardrail, mean per exposed user)"), "{table}");
    let header = table.lines().find(|l| l.starts_with("VARIANT")).expect("a header");
    for column in ["VERSION", "EXPOSURES", "CONVERSIONS", "RATE", "ABS LIFT [95% CI]", "REL LIFT", "P-VALUE"] {
        assert!(header.contains(column), "{table}");
    }
    let treatment = table.lines().find(|l| l.starts_with("treatment-1")).expect("a treatment row");
    let exposed = checkout[1]["exposures"].as_u64().expect("exposures");
    assert!(treatment.contains(&format!(" {exposed} ")), "{table}");

    // Paused: everyone gets the control; resumed: the split again.
    assert_eq!(server.json(&["experiment", "pause", &id])["experiment"]["status"], "paused");
    let paused = server.json(&["resolve", KEY, "--env", "production", "--targeting-key", &treated_user]);
    assert_eq!((paused["variant"].as_str(), paused["version"].as_i64()), (Some("control"), Some(1)));
    let table = server.table(&["experiment", "resume", &id]);
    assert_eq!(table, format!("resumed experiment {id} (welcome copy): now running\n"));

    let edited = server.json(&["experiment", "edit", &id, "--name", "warmer welcome"]);
    assert_eq!(
        (edited["name"].as_str(), edited["hypothesis"].as_str()),
        (Some("warmer welcome"), Some("a warmer greeting converts better"))
    );
    exits_with(&server, 2, &["experiment", "edit", &id]);

    // The winner is pinned in the same step.
    let completed = server.json(&["experiment", "complete", &id, "--winner", "2"]);
    assert_eq!(completed["experiment"]["status"], "completed");
    assert!(completed["experiment"]["ended_at"].is_string(), "{completed}");
    assert_eq!(changes(&completed["pinned"]), [("production".to_owned(), Some(1), Some(2))]);
    let resolved = server.json(&["resolve", KEY, "--env", "production", "--targeting-key", &control_user]);
    assert_eq!((resolved["version"].as_i64(), resolved.get("experiment")), (Some(2), None));
    assert_eq!(server.json(&["pins", KEY, "--env", "production"])["version"], 2);
    let stderr = server.fails(&["experiment", "complete", &id]);
    assert!(stderr.contains("illegal_transition (HTTP 409)") && stderr.contains("status: completed"), "{stderr}");
    assert_eq!(server.json(&["experiment", "results", &id])["status"], "completed");

    // Deleted: gone from lists, still readable by id.
    let table = server.table(&["experiment", "delete", &id]);
    assert!(table.starts_with(&format!("deleted experiment {id}")), "{table}");
    assert!(server.json(&["experiment", "list", "--env", "production"])["items"].as_array().is_some_and(Vec::is_empty));
    assert!(server.json(&["experiment", "show", &id])["deleted_at"].is_string());
}

#[test]
fn completing_with_a_winner_prints_the_pin_change() {
    let server = Server::fresh();
    release_setup(&server);
    const KEY: &str = "prompts/welcome";
    server.json(&["pin", KEY, "production", "1"]);
    let created = server.json(&[
        "experiment",
        "create",
        "--env",
        "production",
        "--artifact",
        KEY,
        "--name",
        "three ways",
        "--treatment",
        "2",
        "--treatment",
        "3",
        "--primary-metric",
        "signup",
    ]);
    let id = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(created["variants"].as_array().map(Vec::len), Some(3));
    // One active experiment per (artifact, environment).
    let stderr = server.fails(&[
        "experiment",
        "create",
        "--env",
        "production",
        "--artifact",
        KEY,
        "--name",
        "again",
        "--treatment",
        "2",
        "--primary-metric",
        "signup",
    ]);
    assert!(stderr.contains("(HTTP 409)"), "{stderr}");
    let table = server.table(&["experiment", "start", &id]);
    assert_eq!(table, format!("started experiment {id} (three ways): now running\n"));
    let table = server.table(&["experiment", "results", &id]);
    assert!(table.contains("sample ratio: not checked yet") && table.contains("no events"), "{table}");
    let table = server.table(&["experiment", "complete", &id, "--winner", "3"]);
    assert!(table.starts_with(&format!("completed experiment {id} (three ways): now completed\n")), "{table}");
    assert!(table.contains("production") && table.contains("1 → 3"), "{table}");
}

/// A server whose engine looks at rollouts every 50 ms instead of every second; `production` has
/// targets t-0, t-1, t-2; `greeting` has versions 1 and 2, and 1 is pinned in `production`.
fn rollout_setup() -> Server {
    let server = Server::fresh_with_config(
        "engine_tick_ms = 50\n\
         [executors.apply]\nprogram = [\"sh\", \"-c\", \"echo applied to $CUTOVER_TARGET; exit 0\"]\n\
         [executors.no-luck]\nprogram = [\"sh\", \"-c\", \"echo no luck >&2; exit 7\"]\n",
    );
    server.json(&["env", "create", "production", "--target", "t-0", "--target", "t-1", "--target", "t-2"]);
    server.json(&["artifact", "create", "greeting", "--type", "string"]);
    for text in ["hello", "hello again"] {
        server.json(&["version", "create", "greeting", "--text", text]);
    }
    server.json(&["pin", "greeting", "production", "1"]);
    server
}

/// Reads the rollout until `done` holds (at most 30 s).
fn wait_for_rollout(server: &Server, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rollout = server.json(&["rollout", "show", id]);
        if done(&rollout) {
            return rollout;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {rollout:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn live_version(server: &Server) -> Option<i64> {
    server.json(&["resolve", "greeting", "--env", "production"])["version"].as_i64()
}

#[test]
fn a_command_rollout_runs_in_waves_is_watched_to_completion_and_moves_the_pin() {
    let server = rollout_setup();
    let start = [
        "rollout",
        "start",
        "--artifact",
        "greeting",
        "--env",
        "production",
        "--version",
        "2",
        "--max-parallel",
        "2",
        "--executor",
        "apply",
    ];
    let made = server.json(&start);
    let id = made["id"].as_str().expect("an id").to_owned();
    assert_eq!((made["max_parallel"].as_u64(), made["on_failure"].as_str()), (Some(2), Some("halt")));
    let operations = made["operations"].as_array().expect("operations");
    let waves: Vec<_> = operations.iter().map(|o| (o["target"].as_str(), o["wave"].as_u64())).collect();
    assert_eq!(waves, [(Some("t-0"), Some(0)), (Some("t-1"), Some(0)), (Some("t-2"), Some(1))]);

    // Not a terminal here: plain lines, one per change, ending with the rollout's state; exit 0.
    let watched = server.table(&["rollout", "watch", &id]);
    let lines: Vec<_> = watched.lines().collect();
    assert_eq!(lines.last(), Some(&"rollout completed"), "{watched}");
    for target in ["t-0", "t-1", "t-2"] {
        assert!(lines.contains(&format!("{target} completed").as_str()), "{watched}");
    }
    for line in &lines {
        let plain = line.starts_with("rollout ") || ["t-0 ", "t-1 ", "t-2 "].iter().any(|t| line.starts_with(t));
        assert!(plain && !line.contains('\u{1b}'), "not a plain progress line: {line:?}\n{watched}");
    }
    assert!(lines.windows(2).all(|pair| pair[0] != pair[1]), "a line repeated: {watched}");
    // The same watch with --output json prints the rollout as it ended, alone.
    assert_eq!(server.json(&["rollout", "watch", &id])["state"], "completed");

    let table = server.table(&["rollout", "show", &id]);
    for (field, value) in [("state", "completed"), ("targets", "3 of 3 completed"), ("max parallel", "2")] {
        assert!(table.lines().any(|l| l.starts_with(field) && l.ends_with(value)), "{field}: {table}");
    }
    let header = table.lines().find(|l| l.starts_with("TARGET")).expect("an operations table");
    for column in ["WAVE", "STATE", "STEPS", "ATTEMPTS", "ERROR"] {
        assert!(header.contains(column), "{table}");
    }
    let last = table.lines().find(|l| l.starts_with("t-2")).expect("a row for t-2");
    let cells: Vec<_> = last.split_whitespace().collect();
    assert_eq!(cells, ["t-2", "1", "completed", "apply", "completed", "1", "-"], "{table}");
    let shown = server.json(&["rollout", "show", &id]);
    assert!(shown["pinned_revision"].is_i64() && shown["ended_at"].is_string(), "{shown}");

    assert_eq!(live_version(&server), Some(2));
    assert_eq!(server.table(&["rollout", "log", &id, "t-1/apply"]), "applied to t-1\n");
    assert_eq!(server.table(&["rollout", "log", &id, "t-1/apply", "--attempt", "1"]), "applied to t-1\n");
    let stderr = server.fails(&["rollout", "log", &id, "t-1/apply", "--attempt", "2"]);
    assert!(stderr.contains("attempt 2 of task") && stderr.contains("(it has run 1 time) not found"), "{stderr}");
    let task = shown["operations"][0]["tasks"][0]["id"].as_str().expect("a task id");
    assert_eq!(server.json(&["rollout", "log", &id, task])["log"], "applied to t-0\n");
    let listed = server.json(&["rollout", "list", "--env", "production", "--state", "completed"]);
    assert_eq!(names(&listed, "id"), [id.as_str()]);
    let table = server.table(&["rollout", "list", "--state", "running"]);
    assert_eq!(table, "no running rollouts\n");

    // A terminal rollout takes no control: 409, exit 1, nothing on stdout.
    let stderr = server.fails(&["rollout", "stop", &id]);
    assert!(stderr.starts_with("error: cannot stop a rollout that is completed"), "{stderr}");
    assert!(stderr.contains("(HTTP 409)") && stderr.contains("state: completed"), "{stderr}");
    let stderr = exits_with(&server, 1, &["rollout", "log", &id, "t-9/apply"]);
    assert!(stderr.contains("has no task \"t-9/apply\""), "{stderr}");
}

#[test]
fn a_rollout_cannot_bring_its_own_program() {
    let server = rollout_setup();
    let start = ["rollout", "start", "--artifact", "greeting", "--env", "production", "--version", "2"];
    let stderr = server.fails(&[&start[..], &["--", "/bin/cat", "/etc/passwd"]].concat());
    assert!(stderr.contains("cannot run a program of its own (/bin/cat /etc/passwd)"), "{stderr}");
    assert!(stderr.contains("--executor NAME"), "{stderr}");
    let stderr = server.fails(&[&start[..], &["--executor", "cat"]].concat());
    assert!(
        stderr.contains("no executor named \"cat\" is declared for this workspace; it may use: apply, no-luck"),
        "{stderr}"
    );
    assert_eq!(server.json(&["rollout", "list"])["items"], serde_json::json!([]));
}

#[test]
fn a_failing_rollout_makes_watch_exit_1_and_leaves_the_pin() {
    let server = rollout_setup();
    let output = server.cutover(&[
        "rollout",
        "start",
        "--artifact",
        "greeting",
        "--env",
        "production",
        "--version",
        "2",
        "--watch",
        "--executor",
        "no-luck",
    ]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.starts_with("started rollout ") && stdout.ends_with("rollout failed\n"), "{stdout}");
    assert!(stdout.contains("t-0 failed apply: exited with status 7"), "{stdout}");
    assert!(stderr.ends_with("failed (t-0/apply: exited with status 7)\n"), "{stderr}");
    let id = stdout.split_whitespace().nth(2).and_then(|id| id.strip_suffix(':')).expect("the rollout's id");

    let stderr = exits_with(&server, 1, &["rollout", "watch", id]);
    assert!(stderr.starts_with(&format!("error: rollout {id} failed")), "{stderr}");
    assert_eq!(server.table(&["rollout", "log", id, "t-0/apply"]), "no luck\n");
    let table = server.table(&["rollout", "show", id]);
    let row = table.lines().find(|l| l.starts_with("t-0")).expect("a row for t-0");
    assert!(row.contains("failed") && row.ends_with("apply: exited with status 7"), "{table}");
    assert_eq!(live_version(&server), Some(1));
}

#[test]
fn manual_tasks_wait_for_a_person_and_a_pause_ends_the_watch_with_4() {
    let server = rollout_setup();
    let made = server.json(&[
        "rollout",
        "start",
        "--artifact",
        "greeting",
        "--env",
        "production",
        "--version",
        "2",
        "--max-parallel",
        "3",
        "--on-failure",
        "pause",
        "--manual",
    ]);
    let id = made["id"].as_str().expect("an id").to_owned();
    wait_for_rollout(&server, &id, "every task running", |rollout| {
        rollout["operations"].as_array().is_some_and(|ops| ops.iter().all(|o| o["tasks"][0]["state"] == "running"))
    });
    let table = server.table(&["rollout", "task", "complete", &id, "t-0/apply", "--message", "looks good"]);
    assert_eq!(table, "task t-0/apply is now completed\n");
    let failed = server.json(&["rollout", "task", "fail", &id, "t-1/apply", "--message", "smoke test failed"]);
    assert_eq!((failed["state"].as_str(), failed["error"].as_str()), (Some("failed"), Some("smoke test failed")));
    assert_eq!(server.table(&["rollout", "log", &id, "t-0/apply"]), "looks good\n");

    wait_for_rollout(&server, &id, "the pause", |rollout| rollout["state"] == "paused");
    let stderr = exits_with(&server, 4, &["rollout", "watch", &id]);
    assert!(stderr.starts_with(&format!("error: rollout {id} is paused by a failure (t-1/apply")), "{stderr}");
    assert!(stderr.contains(&format!("cutover rollout release {id}")), "{stderr}");

    assert_eq!(server.table(&["rollout", "release", &id]), format!("rollout {id} is now running\n"));
    server.json(&["rollout", "task", "complete", &id, "t-2/apply"]);
    let stderr = exits_with(&server, 1, &["rollout", "watch", &id]);
    assert!(stderr.starts_with(&format!("error: rollout {id} failed (t-1/apply: smoke test failed)")), "{stderr}");
    assert_eq!(live_version(&server), Some(1));
}

// ---- A new user's first day (issue 12) ----

/// `cutover ARGS` with only `vars` set, no server needed.
fn local(vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = cutover_command();
    command.envs(vars.iter().copied()).args(args);
    command.output().expect("running cutover")
}

#[test]
fn a_refused_token_names_the_server_that_refused_it_and_the_first_start_says_how_to_reach_it() {
    let server = Server::fresh();
    let output = server.cutover_as("not-this-servers-token", &["env", "create", "staging"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert_eq!(
        stderr,
        format!(
            "error: the server at {url} refused the token: invalid or revoked token\n  code: unauthorized (HTTP \
             401)\n  a token works only with the server that issued it: check --server / CUTOVER_SERVER and --token \
             / CUTOVER_TOKEN\n",
            url = server.base
        )
    );

    let output = server.cutover_as("not-this-servers-token", &["--output", "json", "env", "create", "staging"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    assert_eq!(
        stdout_json(&text(&output.stderr)),
        serde_json::json!({"error": {
            "code": "unauthorized",
            "message": format!("the server at {} refused the token: invalid or revoked token", server.base)
        }})
    );

    // The test server listens on a free port, not the CLI's default: its first start says how
    // to point the CLI at it.
    let printed = std::fs::read_to_string(server.data_dir.join("server.stdout")).expect("server stdout");
    assert!(printed.contains(&format!("export CUTOVER_SERVER={}\n", server.base)), "{printed}");
    assert!(printed.contains(&format!("`--server {}`", server.base)), "{printed}");
}

#[test]
fn a_server_without_a_scheme_and_versions_written_v2_are_understood() {
    let server = Server::fresh();
    release_setup(&server);
    const KEY: &str = "prompts/welcome";
    let bare = server.base.trim_start_matches("http://");
    let args = ["--server", bare, "--output", "json", "pin", KEY, "production", "v2"];
    let pinned = stdout_json(&succeeded(&server.cutover(&args), &args));
    assert_eq!(changes(&pinned), [("production".to_owned(), None, Some(2))]);
    assert_eq!(server.json(&["version", "show", KEY, "V3"])["content"], "three");

    for (given, expected) in
        [("-1", "version numbers start at 1 (got -1)"), ("0", "version numbers start at 1 (got 0)")]
    {
        let stderr = exits_with(&server, 2, &["pin", KEY, "production", given]);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("-- -1"), "clap's tip instead of a sentence: {stderr}");
    }
    let stderr = exits_with(&server, 2, &["version", "show", KEY, "latest"]);
    assert!(stderr.contains("\"latest\" is not a version number: give one such as 3 or v3"), "{stderr}");
    assert_eq!(server.json(&["history", KEY, "production"])["items"].as_array().map(Vec::len), Some(1));
}

#[test]
fn serve_listens_on_a_bare_port_and_explains_an_address_without_one() {
    let port = free_port();
    let data_dir = tempfile::tempdir().expect("a data directory");
    let mut child = cutover_command()
        .args(["serve", "--listen", &port.to_string(), "--data-dir"])
        .arg(data_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting cutover serve");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let healthy = loop {
        if healthz(port) {
            break true;
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(healthy, "serve --listen {port} did not answer on 127.0.0.1:{port}");

    let output = local(&[], &["serve", "--listen", "127.0.0.1"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("give ADDRESS:PORT (127.0.0.1:7300, 0.0.0.0:7300, [::1]:7300) or a port alone"),
        "{stderr}"
    );
}

#[test]
fn help_and_usage_show_what_applies_and_the_binary_has_a_version() {
    let output = local(&[], &["--version"]);
    assert_eq!(text(&output.stdout), format!("cutover {}\n", env!("CARGO_PKG_VERSION")));
    // One version, the binary's: subcommands do not print one under their own name.
    let output = local(&[], &["env", "--version"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(!text(&output.stdout).contains("cutover-env"), "{}", text(&output.stdout));

    let vars = [("CUTOVER_SERVER", "http://127.0.0.1:9"), ("CUTOVER_OUTPUT", "table"), ("CUTOVER_TOKEN", "t")];
    let output = local(&vars, &["pin", "prompts/welcome"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("\nUsage: cutover pin <KEY> <ENV> <VERSION>\n"), "{stderr}");

    let help = text(&local(&[], &["serve", "--help"]).stdout);
    for option in ["--server", "--token", "--output"] {
        assert!(!help.contains(option), "serve --help lists {option}:\n{help}");
    }
    assert!(help.contains("--listen") && help.contains("--data-dir"), "{help}");

    // Under JSON output, a command line clap refuses is an error in the API's shape too.
    let output = local(&[("CUTOVER_OUTPUT", "json")], &["pin", "k", "production", "-1"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stdout_json(&text(&output.stderr)),
        serde_json::json!({"error": {
            "code": "usage",
            "message": "invalid value '-1' for '<VERSION>': version numbers start at 1 (got -1)"
        }})
    );
}

#[test]
fn under_json_output_a_refusal_is_the_api_error_on_stderr() {
    let server = Server::fresh();
    let output = server.cutover(&["--output", "json", "env", "show", "nowhere"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    let expected =
        server.api_error(&server.owner_token(), |client| async move { client.get_environment("nowhere").await });
    let ClientError::Api { code, message, details, .. } = expected else { panic!("a refusal") };
    let mut error = serde_json::json!({"code": code, "message": message});
    if let Some(details) = details {
        error["details"] = details;
    }
    assert_eq!(stdout_json(&text(&output.stderr)), serde_json::json!({ "error": error }));
}

#[test]
fn an_editor_publishing_into_a_protected_environment_learns_it_lacks_the_right_first() {
    let server = Server::fresh();
    server.json(&["env", "create", "production", "--protected"]);
    server.json(&["env", "create", "staging"]);
    server.json(&["artifact", "create", "prompts/welcome", "--type", "string"]);
    server.json(&["version", "create", "prompts/welcome", "--text", "one", "--env", "production", "--env", "staging"]);
    let created = server.json(&["token", "create", "ci", "--role", "editor"]);
    let editor = created["secret"].as_str().expect("a secret");

    for extra in [&[][..], &["--move"][..]] {
        let mut args = vec!["version", "create", "prompts/welcome", "--text", "two", "--env", "production"];
        args.extend_from_slice(extra);
        let output = server.cutover_as(editor, &args);
        assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
        assert_eq!(
            text(&output.stderr),
            "error: production is protected: only owners, or tokens limited to production, can change what is live \
             there (this token, ci, has the role editor); nothing was published\n"
        );
    }
    assert_eq!(server.json(&["artifact", "show", "prompts/welcome"])["latest_version"], 1);

    // Where the editor has the right, the taken environment is explained in the CLI's words.
    let output =
        server.cutover_as(editor, &["version", "create", "prompts/welcome", "--text", "two", "--env", "staging"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(
            "error: nothing was published: another version is live in staging (version 1); add --move to make the \
             new version live there instead\n"
        ),
        "{stderr}"
    );
    let output = server.cutover_as(
        editor,
        &["--output", "json", "version", "create", "prompts/welcome", "--text", "two", "--env", "staging", "--move"],
    );
    assert_eq!(stdout_json(&succeeded(&output, &["version", "create"]))["number"], 2);
}

#[test]
fn rollback_goes_to_a_chosen_version_and_asks_before_touching_a_protected_environment() {
    let server = Server::fresh();
    release_setup(&server);
    server.json(&["env", "update", "production", "--protected", "true"]);
    const KEY: &str = "prompts/welcome";
    server.json(&["pin", KEY, "production", "3"]);

    // No terminal and no --yes: refused with what it would have done, nothing written.
    let output = server.cutover(&["rollback", KEY, "production", "--to", "v1"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        "error: production is protected: this makes version 1 of prompts/welcome live there (now version 3); \
         nothing was written: pass --yes to do it without being asked (no terminal to ask on)\n"
    );
    assert_eq!(versions(&server.json(&["history", KEY, "production"])), [3]);

    let rolled = server.json(&["rollback", KEY, "production", "--to", "1", "--yes"]);
    assert_eq!(changes(&rolled), [("production".to_owned(), Some(3), Some(1))]);
    assert_eq!(server.json(&["history", KEY, "production"])["items"][0]["reason"], "rollback from version 3");

    // A rollback of a rollback goes back, and says so.
    let output = server.cutover(&["--output", "json", "rollback", KEY, "production", "--yes"]);
    assert_eq!(
        changes(&stdout_json(&succeeded(&output, &["rollback"]))),
        [("production".to_owned(), Some(1), Some(3))]
    );
    assert_eq!(
        text(&output.stderr),
        "note: version 1 was itself made live by a rollback; rolling back again makes version 3 live again (--to N \
         picks the version)\n"
    );

    // Already live, and unknown versions, write nothing.
    let table = server.table(&["rollback", KEY, "production", "--to", "3"]);
    assert_eq!(table, "version 3 of prompts/welcome is already live in production: nothing changed\n");
    let stderr = server.fails(&["rollback", KEY, "production", "--to", "9", "--yes"]);
    assert!(stderr.contains("not_found"), "{stderr}");
    assert_eq!(versions(&server.json(&["history", KEY, "production"])), [3, 1, 3]);
}

#[test]
fn versions_are_diffed_by_line_or_field_and_shown_raw() {
    let server = Server::fresh();
    server.json(&["env", "create", "production"]);
    server.json(&["artifact", "create", "prompts/welcome", "--type", "string"]);
    for text in
        ["Hello.\nBe brief.\nSign off.", "Hello.\nBe very brief.\nSign off.", "Hello.\nBe very brief.\nSign off."]
    {
        server.json(&["version", "create", "prompts/welcome", "--text", text]);
    }
    server.json(&["pin", "prompts/welcome", "production", "1"]);

    let diff = server.table(&["version", "diff", "prompts/welcome", "1", "v2"]);
    assert_eq!(
        diff,
        "--- prompts/welcome v1\n+++ prompts/welcome v2\n@@ -1,3 +1,3 @@\n Hello.\n-Be brief.\n+Be very brief.\n Sign off.\n"
    );
    let against_live = server.table(&["version", "diff", "prompts/welcome", "--env", "production"]);
    assert!(
        against_live.starts_with("--- prompts/welcome v1 (live in production)\n+++ prompts/welcome v3\n"),
        "{against_live}"
    );
    let same = server.table(&["version", "diff", "prompts/welcome", "2", "3"]);
    assert_eq!(same, "prompts/welcome v2 and prompts/welcome v3 have the same content\n");
    let answer = server.json(&["version", "diff", "prompts/welcome", "2", "--env", "production"]);
    assert_eq!(answer["from"], serde_json::json!({"version": 1, "environment": "production"}));
    assert_eq!(answer["to"], serde_json::json!({"version": 2}));
    assert_eq!(answer["identical"], false);
    assert!(answer["diff"].as_str().is_some_and(|d| d.contains("+Be very brief.\n")), "{answer}");
    let stderr = exits_with(&server, 2, &["version", "diff", "prompts/welcome", "2"]);
    assert!(stderr.contains("give two versions to compare"), "{stderr}");

    server.json(&["artifact", "create", "model", "--type", "json"]);
    server.json(&[
        "version",
        "create",
        "model",
        "--content",
        r#"{"name": "small", "temperature": 0.2, "stop": ["a"]}"#,
    ]);
    server.json(&[
        "version",
        "create",
        "model",
        "--content",
        r#"{"name": "small", "temperature": 0.7, "stop": ["a", "b"]}"#,
    ]);
    let diff = server.table(&["version", "diff", "model", "1", "2"]);
    assert_eq!(diff, "model v1 → model v2\n+ stop[1]: \"b\"\n~ temperature: 0.2 → 0.7\n");
    let answer = server.json(&["version", "diff", "model", "1", "2"]);
    assert_eq!(
        answer["changes"],
        serde_json::json!([{"path": "stop[1]", "to": "b"}, {"path": "temperature", "from": 0.2, "to": 0.7}])
    );

    // --raw: the content alone, byte for byte, for pipes.
    let raw = succeeded(&server.cutover(&["version", "show", "prompts/welcome", "2", "--raw"]), &["--raw"]);
    assert_eq!(raw, "Hello.\nBe very brief.\nSign off.");
    let raw = succeeded(&server.cutover(&["version", "show", "model", "2", "--raw"]), &["--raw"]);
    assert_eq!(stdout_json(&raw), serde_json::json!({"name": "small", "temperature": 0.7, "stop": ["a", "b"]}));
}

/// The ID column of a table (its first), below the header.
fn first_column(table: &str) -> Vec<String> {
    table.lines().skip(1).filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect()
}

#[test]
fn experiment_and_rollout_ids_are_taken_by_unique_prefix_and_shown_short() {
    let server = Server::fresh();
    const KEY: &str = "greeting";
    server.json(&["env", "create", "production", "--target", "t-0"]);
    server.json(&["env", "create", "staging", "--target", "t-0"]);
    server.json(&["artifact", "create", KEY, "--type", "string"]);
    for text in ["one", "two"] {
        server.json(&["version", "create", KEY, "--text", text]);
    }
    let mut experiments = Vec::new();
    for env in ["production", "staging"] {
        server.json(&["pin", KEY, env, "1"]);
        let args = ["experiment", "create", "--env", env, "--artifact", KEY, "--name", env, "--treatment", "2"];
        let mut args = args.to_vec();
        args.extend(["--primary-metric", "checkout"]);
        experiments.push(server.json(&args)["id"].as_str().expect("an id").to_owned());
    }

    // The table's ids are short, and each names its experiment.
    let table = server.table(&["experiment", "list", "--env", "staging"]);
    let shown = first_column(&table);
    assert_eq!(shown.len(), 1, "{table}");
    assert!(shown[0].len() >= 13 && shown[0].len() < experiments[1].len(), "{table}");
    assert!(experiments[1].starts_with(&shown[0]), "{table}");
    assert_eq!(server.json(&["experiment", "show", &shown[0]])["id"], experiments[1].as_str());

    // A prefix long enough to tell them apart works for actions too; the whole id still does.
    let unique = |id: &str, other: &str| {
        let common = id.chars().zip(other.chars()).take_while(|(a, b)| a == b).count();
        id[..(common + 1).max(8)].to_owned()
    };
    let prefix = unique(&experiments[0], &experiments[1]);
    let started = server.json(&["experiment", "start", &prefix.to_uppercase()]);
    assert_eq!(
        (started["experiment"]["id"].as_str(), started["experiment"]["status"].as_str()),
        (Some(experiments[0].as_str()), Some("running"))
    );
    assert_eq!(server.json(&["experiment", "show", &experiments[1]])["status"], "created");

    // Both start alike (UUIDv7 ids begin with the time): an ambiguous prefix lists them.
    let common = experiments[0].chars().zip(experiments[1].chars()).take_while(|(a, b)| a == b).count();
    if common >= 8 {
        let stderr = exits_with(&server, 2, &["experiment", "show", &experiments[0][..8]]);
        assert!(
            stderr.starts_with(&format!("error: 2 experiments have an id starting with {:?}", &experiments[0][..8])),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("  {}  production on greeting in production, running", experiments[0])),
            "{stderr}"
        );
        assert!(stderr.contains(&format!("  {}  staging on greeting in staging, created", experiments[1])), "{stderr}");
    }
    let stderr = exits_with(&server, 2, &["experiment", "show", "0193"]);
    assert!(
        stderr.contains("\"0193\" is too short to name one: give the whole id or its first 8 characters or more"),
        "{stderr}"
    );
    let stderr = exits_with(&server, 1, &["experiment", "show", "ffffffff"]);
    assert!(stderr.starts_with("error: no experiment id starts with \"ffffffff\""), "{stderr}");

    // Rollouts alike: made through the API, so that this test does not depend on `rollout start`.
    let client = Client::new(&server.base, Some(server.owner_token())).expect("a client");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let rollout = runtime
        .block_on(client.create_rollout(&cutover_api::CreateRollout {
            artifact: KEY.into(),
            environment: "production".into(),
            version: 2,
            executor: serde_json::json!({"type": "manual"}),
            ..cutover_api::CreateRollout::default()
        }))
        .expect("a rollout");
    let table = server.table(&["rollout", "list"]);
    let shown = first_column(&table);
    assert_eq!(shown, [rollout.id[..13].to_owned()], "{table}");
    let stopped = server.json(&["rollout", "stop", &shown[0]]);
    assert_eq!(stopped["id"], rollout.id.as_str());
    assert_eq!(server.json(&["rollout", "show", &rollout.id[..10]])["id"], rollout.id.as_str());
}

#[test]
fn status_shows_what_is_live_where_and_what_is_under_way() {
    let server = Server::fresh();
    let empty = server.table(&["status"]);
    assert_eq!(empty, "no environments yet: `cutover env create NAME` makes one\n");
    for env in ["dev", "staging", "production"] {
        server.json(&["env", "create", env, "--target", "t-0"]);
    }
    server.json(&["artifact", "create", "prompts/greeting", "--type", "string"]);
    server.json(&["artifact", "create", "limits", "--type", "number"]);
    for text in ["one", "two", "three"] {
        server.json(&["version", "create", "prompts/greeting", "--text", text]);
    }
    server.json(&["version", "environments", "prompts/greeting", "3", "--env", "dev"]);
    server.json(&["version", "environments", "prompts/greeting", "2", "--env", "production"]);
    let args = ["experiment", "create", "--env", "production", "--artifact", "prompts/greeting", "--name", "warmer"];
    let mut args = args.to_vec();
    args.extend(["--treatment", "3", "--primary-metric", "checkout"]);
    let experiment = server.json(&args)["id"].as_str().expect("an id").to_owned();
    server.json(&["experiment", "start", &experiment]);
    let client = Client::new(&server.base, Some(server.owner_token())).expect("a client");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let rollout = runtime
        .block_on(client.create_rollout(&cutover_api::CreateRollout {
            artifact: "prompts/greeting".into(),
            environment: "staging".into(),
            version: 3,
            executor: serde_json::json!({"type": "manual"}),
            ..cutover_api::CreateRollout::default()
        }))
        .expect("a rollout");

    let table = server.table(&["status"]);
    let lines: Vec<Vec<&str>> = table.lines().map(|line| line.split_whitespace().collect()).collect();
    // Environments in the order `env list` gives them: the order they were made in.
    assert_eq!(lines[0], ["ARTIFACT", "LATEST", "DEV", "STAGING", "PRODUCTION"], "{table}");
    assert_eq!(lines[1], ["limits", "0", "-", "-", "-"], "{table}");
    assert_eq!(lines[2], ["prompts/greeting", "3", "3", "-", "2*"], "{table}");
    assert!(
        table.contains(&format!("\n{}  prompts/greeting  production   warmer  running  2, 3\n", &experiment[..13])),
        "{table}"
    );
    let rollout_line = lines.iter().find(|line| line.first() == Some(&&rollout.id[..13])).expect("the rollout's row");
    assert_eq!(rollout_line[1..4], ["prompts/greeting", "staging", "3"], "{table}");

    let answer = server.json(&["status"]);
    assert_eq!(answer["environments"], serde_json::json!(["dev", "staging", "production"]));
    assert_eq!(
        answer["artifacts"],
        serde_json::json!([
            {"key": "limits", "latest_version": 0, "live": {}},
            {"key": "prompts/greeting", "latest_version": 3, "live": {"dev": 3, "production": 2}}
        ])
    );
    assert_eq!(answer["experiments"][0]["id"], experiment.as_str());
    assert_eq!(answer["rollouts"][0]["id"], rollout.id.as_str());
}

#[test]
fn publishing_the_latest_content_again_is_pointed_out_and_if_changed_skips_it() {
    let server = Server::fresh();
    server.json(&["env", "create", "production"]);
    server.json(&["artifact", "create", "prompts/welcome", "--type", "string"]);
    server.json(&["version", "create", "prompts/welcome", "--text", "hello"]);

    let output = server.cutover(&["--output", "json", "version", "create", "prompts/welcome", "--text", "hello"]);
    assert_eq!(stdout_json(&succeeded(&output, &["version", "create"]))["number"], 2);
    assert_eq!(
        text(&output.stderr),
        "note: version 2 has the same content as version 1 (--if-changed publishes only when it differs)\n"
    );

    let args = [
        "--output",
        "json",
        "version",
        "create",
        "prompts/welcome",
        "--text",
        "hello",
        "--if-changed",
        "--env",
        "production",
    ];
    let output = server.cutover(&args);
    assert_eq!(stdout_json(&succeeded(&output, &args))["number"], 2);
    assert_eq!(
        text(&output.stderr),
        "nothing was published or pinned: version 2 of prompts/welcome already has this content\n"
    );
    assert_eq!(server.json(&["artifact", "show", "prompts/welcome"])["latest_version"], 2);
    assert!(server.json(&["pins", "prompts/welcome"])["items"].as_array().is_some_and(Vec::is_empty));

    let output =
        server.cutover(&["--output", "json", "version", "create", "prompts/welcome", "--text", "hi", "--if-changed"]);
    assert_eq!(stdout_json(&succeeded(&output, &["version", "create"]))["number"], 3);
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
}

#[test]
fn the_audit_log_shows_what_changed_filters_by_actor_name_and_pages() {
    let server = Server::fresh();
    server.json(&["env", "create", "production"]);
    server.json(&["artifact", "create", "greeting", "--type", "string"]);
    for text in ["one", "two"] {
        server.json(&["version", "create", "greeting", "--text", text]);
    }
    server.json(&["pin", "greeting", "production", "1", "--reason", "launch"]);
    server.json(&["pin", "greeting", "production", "2", "--reason", "better copy"]);

    let table = server.table(&["audit", "--object-type", "artifact", "--actor", "owner"]);
    assert!(table.lines().next().is_some_and(|header| header.contains("CHANGE")), "{table}");
    let moves: Vec<&str> = table.lines().filter(|line| line.contains("pin.set")).collect();
    assert_eq!(moves.len(), 2, "{table}");
    assert!(moves[0].contains("production: v1 → v2 (better copy)"), "{table}");
    assert!(moves[1].contains("production: - → v1 (launch)"), "{table}");
    // The name shown in the table finds the events; one that made none finds nothing.
    assert!(!server.json(&["audit", "--actor", "owner"])["items"].as_array().unwrap().is_empty());
    assert_eq!(server.json(&["audit", "--actor", "nobody"])["items"], serde_json::json!([]));

    // An unknown type is refused before asking the server.
    let output = server.cutover(&["audit", "--object-type", "version"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("possible values: workspace, environment, artifact"),
        "{}",
        text(&output.stderr)
    );

    // Pages: one at a time with --cursor, or all of them.
    let ids = |page: &Value| -> Vec<i64> {
        page["items"].as_array().expect("items").iter().map(|e| e["id"].as_i64().expect("an id")).collect()
    };
    let everything = server.json(&["audit", "--all", "--limit", "2"]);
    let all_ids = ids(&everything);
    assert!(all_ids.len() > 4 && everything.get("next_cursor").is_none(), "{everything}");
    let first = server.json(&["audit", "--limit", "2"]);
    let cursor = first["next_cursor"].as_str().expect("a next page").to_owned();
    let second = server.json(&["audit", "--limit", "2", "--cursor", &cursor]);
    let paged: Vec<i64> = [ids(&first), ids(&second)].concat();
    assert_eq!(paged, all_ids[..4], "pages follow one another without gaps");
    let output = server.cutover(&["audit", "--limit", "2"]);
    assert_eq!(text(&output.stderr), format!("(older events: --cursor {cursor}, or --all)\n"));

    // Filtered by action (a prefix) and by time, on the server.
    let pins = server.json(&["audit", "--action", "pin."]);
    assert_eq!(names(&pins, "action"), ["pin.set", "pin.set"], "{pins}");
    let newest = pins["items"][0]["at"].as_str().expect("a time").to_owned();
    let since = server.json(&["audit", "--action", "pin.", "--since", &newest]);
    assert_eq!(names(&since, "action"), ["pin.set"], "{since}");
    let until = server.json(&["audit", "--action", "pin.", "--until", &newest]);
    assert_eq!(names(&until, "action"), ["pin.set"], "{until}");
    assert_ne!(since["items"][0]["id"], until["items"][0]["id"]);
    let output = server.cutover(&["audit", "--since", "yesterday"]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("RFC 3339"), "{}", text(&output.stderr));
}

#[test]
fn a_pool_is_created_filled_by_the_engine_claimed_and_paused_from_the_cli() {
    let server = Server::fresh_with_config(
        "engine_tick_ms = 50\n[executors.provision]\nprogram = [\"sh\", \"-c\", \"exit 0\"]\n",
    );
    server.json(&["env", "create", "production"]);
    server.json(&["artifact", "create", "runner", "--type", "string"]);
    server.json(&["version", "create", "runner", "--text", "image 1"]);
    server.json(&["pin", "runner", "production", "1"]);
    let made = server.json(&[
        "pool",
        "create",
        "ci",
        "--artifact",
        "runner",
        "--env",
        "production",
        "--executor",
        "provision",
        "--instances",
        "2",
        "--schedule",
        "* 0-5 * * *=0",
        "--parameters",
        "{\"size\": \"large\"}",
    ]);
    assert_eq!((made["name"].clone(), made["version"].clone()), (json!("ci"), json!(1)));
    assert_eq!(made["desired"]["schedules"][0], json!({"cron": "* 0-5 * * *", "instances": 0}));
    assert_eq!(server.json(&["pool", "list"]).as_array().unwrap().len(), 1);

    // The engine fills it (outside 00:00–05:59 UTC; inside, the schedule asks for none).
    let deadline = Instant::now() + Duration::from_secs(30);
    let wanted = server.json(&["pool", "show", "ci"])["counts"]["desired"].as_u64().unwrap();
    loop {
        let shown = server.json(&["pool", "show", "ci"]);
        if shown["counts"]["ready"].as_u64() == Some(wanted) {
            break;
        }
        assert!(Instant::now() < deadline, "waiting for {wanted} ready: {shown:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let table = server.table(&["pool", "show", "ci"]);
    assert!(table.contains(&format!("{wanted} desired")), "{table}");
    assert_eq!(server.json(&["pool", "instances", "ci"]).as_array().unwrap().len() as u64, wanted);
    if wanted > 0 {
        let claimed = server.json(&["pool", "claim", "ci"]);
        assert_eq!((claimed["ready"].clone(), claimed["version"].clone()), (json!(true), json!(1)));
        assert!(claimed["builds"].as_array().is_some_and(|b| !b.is_empty()), "{claimed}");
    }
    let paused = server.json(&["pool", "pause", "ci"]);
    assert_eq!((paused["paused"].clone(), paused["blocked"]["reason"].clone()), (json!(true), json!("paused")));
    assert_eq!(server.json(&["pool", "resume", "ci"])["paused"], false);

    // An undeclared provisioner: the server's words, exit code 1.
    let output = server.cutover(&[
        "pool",
        "create",
        "other",
        "--artifact",
        "runner",
        "--env",
        "production",
        "--executor",
        "rm-rf",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no executor named \"rm-rf\""), "{stderr}");
}

/// A queue guarding `production` whose check refuses content containing "broken", and a manual
/// queue; `greeting` (text) and `limits` (JSON) exist.
fn queue_setup() -> Server {
    let server = Server::fresh_with_config(
        "engine_tick_ms = 50\n\
         [executors.lint]\nprogram = [\"sh\", \"-c\", \"if grep -q broken \\\"$CUTOVER_CANDIDATE_FILE\\\"; then echo lint: broken; exit 1; fi\"]\n",
    );
    server.json(&["env", "create", "production"]);
    server.json(&["artifact", "create", "greeting", "--type", "string"]);
    server.json(&["artifact", "create", "limits", "--type", "json"]);
    server
}

#[test]
fn a_change_submitted_through_the_queue_lands_and_a_broken_one_is_refused_with_its_output() {
    let server = queue_setup();
    let made =
        server.json(&["queue", "create", "main", "--env", "production", "--executor", "lint", "--max-wait", "0"]);
    assert_eq!(made["executor"], serde_json::json!({"type": "command", "name": "lint", "timeout_seconds": 600}));
    let table = server.table(&["queue", "list"]);
    assert!(table.lines().any(|l| l.starts_with("main") && l.contains("command lint (600 s)")), "{table}");

    // --wait follows the request: plain lines, exit 0 when it lands.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limits.json");
    std::fs::write(&file, r#"{"max": 10}"#).unwrap();
    let watched = server.table(&[
        "queue",
        "submit",
        "main",
        "--text",
        "greeting=Hello!",
        "--content-file",
        &format!("limits={}", file.display()),
        "-m",
        "first",
        "--wait",
    ]);
    assert!(watched.lines().last().unwrap().starts_with("request 1 landed: greeting v1, limits v1"), "{watched}");
    assert!(!watched.contains('\u{1b}'), "{watched}");
    assert_eq!(server.json(&["resolve", "limits", "--env", "production"])["value"], serde_json::json!({"max": 10}));

    let stderr = exits_with(&server, 1, &["queue", "submit", "main", "--text", "greeting=broken", "--wait"]);
    assert!(stderr.contains("request 2 error: lint: broken"), "{stderr}");
    let shown = server.json(&["queue", "status", "main", "2"]);
    assert_eq!(
        (shown["state"].as_str(), shown["error"].as_str()),
        (Some("error"), Some("lint: broken\n[exited with status 1]"))
    );
    let states: Vec<_> = shown["history"].as_array().unwrap().iter().map(|t| t["to"].as_str().unwrap()).collect();
    assert_eq!(states, ["started", "validated", "batched", "processing", "error"]);
    let table = server.table(&["queue", "status", "main"]);
    let rows: Vec<Vec<&str>> = table.lines().skip(1).map(|l| l.split_whitespace().take(3).collect()).collect();
    assert_eq!(rows, [vec!["2", "error", "normal"], vec!["1", "landed", "normal"]], "{table}");
    assert_eq!(server.json(&["resolve", "greeting", "--env", "production"])["value"], "Hello!");

    // Paused: a submit waits, watch exits 4 saying how to go on; cancel ends it.
    server.json(&["queue", "pause", "main"]);
    let waiting = server.json(&["queue", "submit", "main", "--text", "greeting=later"]);
    let id = waiting["id"].as_u64().unwrap().to_string();
    let stderr = exits_with(&server, 4, &["queue", "watch", "main"]);
    assert!(stderr.contains("`cutover queue resume main`"), "{stderr}");
    assert_eq!(server.json(&["queue", "cancel", "main", &id])["state"], "cancelling");
    server.json(&["queue", "resume", "main"]);
    let stderr = exits_with(&server, 1, &["queue", "watch", "main", "--request", &id]);
    assert!(stderr.contains(&format!("request {id} cancelled")), "{stderr}");
    let stderr = server.fails(&["queue", "cancel", "main", &id]);
    assert!(stderr.contains("already cancelled") && stderr.contains("(HTTP 409)"), "{stderr}");

    // Bad input never reaches the server.
    let stderr = exits_with(&server, 2, &["queue", "submit", "main", "--content", "limits={not json"]);
    assert!(stderr.contains("not valid JSON"), "{stderr}");
    let stderr = exits_with(&server, 2, &["queue", "submit", "main"]);
    assert!(stderr.contains("give at least one change"), "{stderr}");
}

#[test]
fn a_manual_check_is_reported_from_the_cli() {
    let server = queue_setup();
    server.json(&["queue", "create", "reviewed", "--env", "production", "--manual", "--max-wait", "0"]);
    let made = server.json(&["queue", "submit", "reviewed", "--text", "greeting=checked by hand"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let check = loop {
        let queue = server.json(&["queue", "show", "reviewed"]);
        if let Some(check) = queue["running_checks"].as_array().unwrap().first() {
            break check["id"].as_u64().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no check started: {queue}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let table = server.table(&["queue", "show", "reviewed"]);
    assert!(table.contains(&format!("check {check} (batch 1, attempt 1)")), "{table}");
    assert_eq!(
        server.table(&["queue", "report", "reviewed", &check, "pass", "-m", "read it"]),
        format!("check {check} of queue reviewed: pass\n")
    );
    let id = made["id"].as_u64().unwrap().to_string();
    server.table(&["queue", "watch", "reviewed", "--request", &id]);
    assert_eq!(server.json(&["queue", "status", "reviewed", &id])["state"], "landed");
}
