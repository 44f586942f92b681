//! `cutover export` / `cutover import` and `cutover artifact archive | unarchive | delete`,
//! end to end against a real server.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use support::{Server, succeeded, text};

/// Every file under `dir`, by `/`-separated relative path, with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let name = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

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

fn sha256_of(server: &Server, key: &str, number: &str) -> String {
    server.json(&["version", "show", key, number])["sha256"].as_str().unwrap().to_owned()
}

fn actions(report: &Value) -> Vec<(String, String, Option<String>)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["action"].as_str().unwrap().to_owned(),
                s["artifact"].as_str().unwrap().to_owned(),
                s["environment"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn step(action: &str, artifact: &str, environment: Option<&str>) -> (String, String, Option<String>) {
    (action.to_owned(), artifact.to_owned(), environment.map(str::to_owned))
}

/// A workspace with keys containing `/`, a version live in an environment that is not the latest,
/// every value type, an artifact with no version and an archived one.
fn library(server: &Server) {
    for env in ["staging", "production"] {
        server.json(&["env", "create", env]);
    }
    server.json(&[
        "artifact",
        "create",
        "prompts/greeting",
        "--type",
        "string",
        "--kind",
        "prompt",
        "--description",
        "First words",
    ]);
    for text in ["hello", "hi there\n", "hey"] {
        server.json(&["version", "create", "prompts/greeting", "--text", text]);
    }
    server.json(&["pin", "prompts/greeting", "production", "1"]);
    server.json(&["pin", "prompts/greeting", "staging", "2"]);
    server.json(&["artifact", "create", "config/limits", "--type", "json"]);
    server.json(&["version", "create", "config/limits", "--content", r#"{"max": 3, "burst": [1, 2]}"#]);
    server.json(&["pin", "config/limits", "production", "1"]);
    server.json(&["artifact", "create", "flags/dark", "--type", "boolean"]);
    server.json(&["version", "create", "flags/dark", "--content", "true"]);
    server.json(&["artifact", "create", "empty", "--type", "number"]);
    server.json(&["artifact", "create", "old/thing", "--type", "string"]);
    server.json(&["version", "create", "old/thing", "--text", "bye"]);
    server.json(&["pin", "old/thing", "staging", "1"]);
    server.json(&["artifact", "archive", "old/thing"]);
}

#[test]
fn a_workspace_round_trips_through_a_folder_and_import_plans_before_it_writes() {
    let source = Server::fresh();
    library(&source);
    let folder = tempfile::tempdir().unwrap();
    let first = folder.path().join("first");
    let exported = source.json(&["export", first.to_str().unwrap()]);

    let hello = sha256_of(&source, "prompts/greeting", "1");
    let hi = sha256_of(&source, "prompts/greeting", "2");
    let hey = sha256_of(&source, "prompts/greeting", "3");
    let files = tree(&first);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    let hello_file = format!("prompts/greeting@{}.txt", &hello[..12]);
    let hi_file = format!("prompts/greeting@{}.txt", &hi[..12]);
    let mut expected = vec![
        "_cutover.json",
        "config/limits.json",
        "flags/dark.json",
        "old/thing.txt",
        "prompts/greeting.txt",
        hello_file.as_str(),
        hi_file.as_str(),
    ];
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert_eq!(files["prompts/greeting.txt"], b"hey");
    assert_eq!(files[&hi_file], b"hi there\n");
    assert_eq!(files["config/limits.json"], b"{\n  \"burst\": [\n    1,\n    2\n  ],\n  \"max\": 3\n}\n");
    assert_eq!(files["flags/dark.json"], b"true\n");
    let manifest: Value = serde_json::from_slice(&files["_cutover.json"]).unwrap();
    assert_eq!(manifest, exported, "--output json prints the manifest");
    assert_eq!(
        manifest["artifacts"][4],
        json!({
            "key": "prompts/greeting", "value_type": "string", "kind": "prompt", "description": "First words",
            "latest": {"file": "prompts/greeting.txt", "sha256": hey},
            "pinned": [{"file": hello_file, "sha256": hello}, {"file": hi_file, "sha256": hi}],
            "pins": {"production": hello, "staging": hi}
        })
    );
    assert_eq!(manifest["artifacts"][1], json!({"key": "empty", "value_type": "number", "kind": "config"}));
    assert_eq!(manifest["artifacts"][3]["archived"], true);

    // Into a fresh workspace: the plan first, and a dry run writes nothing.
    let target = Server::fresh();
    for env in ["staging", "production"] {
        target.json(&["env", "create", env]);
    }
    let plan = target.json(&["import", first.to_str().unwrap(), "--pin", "--dry-run"]);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(
        actions(&plan),
        [
            step("create", "config/limits", None),
            step("publish", "config/limits", None),
            step("pin", "config/limits", Some("production")),
            step("create", "empty", None),
            step("create", "flags/dark", None),
            step("publish", "flags/dark", None),
            step("create", "old/thing", None),
            step("publish", "old/thing", None),
            step("pin", "old/thing", Some("staging")),
            step("archive", "old/thing", None),
            step("create", "prompts/greeting", None),
            step("publish", "prompts/greeting", None),
            step("publish", "prompts/greeting", None),
            step("publish", "prompts/greeting", None),
            step("pin", "prompts/greeting", Some("production")),
            step("pin", "prompts/greeting", Some("staging")),
        ]
    );
    assert_eq!(target.json(&["artifact", "list"])["items"], json!([]), "a dry run writes nothing");

    let done = target.json(&["import", first.to_str().unwrap(), "--pin"]);
    assert_eq!(done["dry_run"], false);
    assert_eq!(
        done["steps"][13],
        json!({"action": "publish", "artifact": "prompts/greeting", "file": "prompts/greeting.txt", "sha256": hey, "version": 3})
    );
    assert_eq!(
        done["steps"][14],
        json!({"action": "pin", "artifact": "prompts/greeting", "environment": "production", "sha256": hello, "version": 1})
    );
    let second = folder.path().join("second");
    target.json(&["export", second.to_str().unwrap()]);
    assert_eq!(tree(&second), files, "export → import → export gives the same folder");

    // Again: nothing to do.
    let again = target.json(&["import", second.to_str().unwrap(), "--pin"]);
    assert!(actions(&again).iter().all(|(action, _, _)| action == "unchanged"), "{again}");
    let table = succeeded(&target.cutover(&["import", second.to_str().unwrap()]), &["import"]);
    assert!(table.starts_with("ACTION"), "{table}");

    // Edited in git: only what changed is published, and without --pin no pin moves.
    std::fs::write(second.join("prompts").join("greeting.txt"), "good morning").unwrap();
    let plan = target.json(&["import", second.to_str().unwrap(), "--dry-run"]);
    let changed: Vec<_> = actions(&plan).into_iter().filter(|(action, _, _)| action != "unchanged").collect();
    assert_eq!(changed, [step("publish", "prompts/greeting", None)]);

    // Export replaces a previous export, and refuses a folder it did not write.
    source.json(&["export", first.to_str().unwrap()]);
    assert_eq!(tree(&first), files);
    let other = folder.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.md"), "mine").unwrap();
    let refused = exits_with(&source, 2, &["export", other.to_str().unwrap()]);
    assert!(refused.contains("is not empty and holds no _cutover.json"), "{refused}");
    assert_eq!(tree(&other).len(), 1);

    // Nor does it write through a link that leads out of the folder.
    let outside = folder.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("greeting.txt"), "not yours").unwrap();
    std::fs::remove_dir_all(first.join("prompts")).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&outside, first.join("prompts")).unwrap();
        let refused = exits_with(&source, 2, &["export", first.to_str().unwrap()]);
        assert!(refused.contains("is a symbolic link"), "{refused}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        assert_eq!(std::fs::read_to_string(outside.join("greeting.txt")).unwrap(), "not yours");
    }
}

#[test]
fn import_refuses_manifests_that_would_reach_outside_the_folder_or_need_missing_environments() {
    let server = Server::fresh();
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let write = |manifest: Value| std::fs::write(dir.join("_cutover.json"), manifest.to_string()).unwrap();

    write(json!({"format": 1, "artifacts": [{"key": "a/../../etc", "value_type": "string", "kind": "prompt",
                 "latest": {"file": "a/../../etc.txt", "sha256": "00"}}]}));
    let refused = exits_with(&server, 2, &["import", dir.to_str().unwrap(), "--dry-run"]);
    assert!(refused.contains("`..` path segment"), "{refused}");

    write(json!({"format": 1, "artifacts": [{"key": "a", "value_type": "string", "kind": "prompt",
                 "latest": {"file": "../outside.txt", "sha256": "00"}}]}));
    let refused = exits_with(&server, 2, &["import", dir.to_str().unwrap()]);
    assert!(refused.contains("names file \"../outside.txt\"; export names it \"a.txt\""), "{refused}");

    std::fs::write(dir.join("a.txt"), "hello").unwrap();
    write(json!({"format": 1, "artifacts": [{"key": "a", "value_type": "string", "kind": "prompt",
                 "latest": {"file": "a.txt", "sha256": "00"}, "pins": {"production": "00"}}]}));
    let refused = exits_with(&server, 2, &["import", dir.to_str().unwrap(), "--pin"]);
    assert!(refused.contains("does not have: production"), "{refused}");
    assert_eq!(server.json(&["artifact", "list"])["items"], json!([]), "nothing was written");

    #[cfg(unix)]
    {
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), "private").unwrap();
        std::fs::remove_file(dir.join("a.txt")).unwrap();
        std::os::unix::fs::symlink(secret.path(), dir.join("a.txt")).unwrap();
        write(json!({"format": 1, "artifacts": [{"key": "a", "value_type": "string", "kind": "prompt",
                     "latest": {"file": "a.txt", "sha256": "00"}}]}));
        let refused = exits_with(&server, 2, &["import", dir.to_str().unwrap()]);
        assert!(refused.contains("is a symbolic link"), "{refused}");
        assert_eq!(server.json(&["artifact", "list"])["items"], json!([]), "nothing was published");
    }

    let refused = exits_with(&server, 2, &["import", folder.path().join("missing").to_str().unwrap()]);
    assert!(refused.contains("_cutover.json not found"), "{refused}");
}

#[test]
fn an_archived_artifact_leaves_lists_and_resolve_and_delete_waits_until_nothing_refers_to_it() {
    let server = Server::fresh();
    server.json(&["env", "create", "production"]);
    server.json(&["artifact", "create", "prompts/old", "--type", "string"]);
    server.json(&["version", "create", "prompts/old", "--text", "bye"]);
    server.json(&["pin", "prompts/old", "production", "1"]);

    let archived = server.json(&["artifact", "archive", "prompts/old"]);
    assert!(archived["archived_at"].is_string(), "{archived}");
    assert_eq!(server.json(&["artifact", "list"])["items"], json!([]));
    let listed = server.json(&["artifact", "list", "--archived"]);
    assert_eq!(listed["items"][0]["key"], "prompts/old");
    let shown = succeeded(&server.cutover(&["artifact", "show", "prompts/old"]), &["artifact", "show"]);
    assert!(shown.contains("archived"), "{shown}");

    let refused = exits_with(&server, 1, &["--output", "json", "version", "create", "prompts/old", "--text", "x"]);
    let error: Value = serde_json::from_str(refused.trim()).unwrap();
    assert_eq!(error["error"]["code"], "artifact_archived", "{error}");

    // No terminal to ask on: delete wants --yes, and writes nothing without it.
    let refused = exits_with(&server, 2, &["artifact", "delete", "prompts/old"]);
    assert!(refused.contains("pass --yes"), "{refused}");
    let refused = exits_with(&server, 1, &["--output", "json", "artifact", "delete", "prompts/old", "--yes"]);
    let error: Value = serde_json::from_str(refused.trim()).unwrap();
    assert_eq!(error["error"]["code"], "artifact_in_use");
    assert_eq!(error["error"]["details"]["environments"], json!([{"environment": "production", "version": 1}]));

    let back = server.json(&["artifact", "unarchive", "prompts/old"]);
    assert_eq!(back.get("archived_at"), None);
    assert_eq!(server.json(&["pins", "prompts/old"])["items"][0]["version"], 1, "the pins come back with it");
    server.json(&["unpin", "prompts/old", "production"]);
    let deleted = server.json(&["artifact", "delete", "prompts/old", "--yes"]);
    assert_eq!(deleted["deleted"]["key"], "prompts/old");
    let gone = exits_with(&server, 1, &["artifact", "show", "prompts/old"]);
    assert!(gone.contains("not found"), "{gone}");
    let table = succeeded(&server.cutover(&["artifact", "list", "--archived"]), &["artifact", "list"]);
    assert_eq!(table.trim(), "no archived artifacts");
}
