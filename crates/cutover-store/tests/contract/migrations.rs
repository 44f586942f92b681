//! The two dialects' migrations cannot drift apart by accident: each SQLite migration has a
//! PostgreSQL twin with the same name, line for line identical except for the lines listed in
//! [`ALLOWED`], each with its reason. A new dialect difference is added there, on purpose.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One permitted difference: in `file`, a line that reads `sqlite` in the SQLite migration may
/// read `postgres` in the PostgreSQL one (whole lines, surrounding whitespace ignored).
struct Allowed {
    file: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
    reason: &'static str,
}

const ALLOWED: &[Allowed] = &[
    Allowed {
        file: "0001_foundation.sql",
        sqlite: "seq INTEGER PRIMARY KEY AUTOINCREMENT,",
        postgres: "seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,",
        reason: "the audit log's identity column: each engine has its own syntax for one",
    },
    Allowed {
        file: "0004_exposures.sql",
        sqlite: ") WITHOUT ROWID; -- one B-tree keyed by the primary key: half the writes of a rowid table and its index",
        postgres: ");",
        reason: "WITHOUT ROWID is SQLite only (PostgreSQL tables have no rowid to drop)",
    },
    Allowed {
        file: "0004_exposures.sql",
        sqlite: ") WITHOUT ROWID;",
        postgres: ");",
        reason: "WITHOUT ROWID is SQLite only (PostgreSQL tables have no rowid to drop)",
    },
];

fn migrations(dialect: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dialect)
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// Every difference between the two versions of `file` that [`ALLOWED`] does not permit, and the
/// entries of [`ALLOWED`] it used.
fn drift(file: &str, sqlite: &str, postgres: &str) -> (Vec<String>, BTreeSet<usize>) {
    let sqlite: Vec<&str> = sqlite.lines().collect();
    let postgres: Vec<&str> = postgres.lines().collect();
    let mut used = BTreeSet::new();
    if sqlite.len() != postgres.len() {
        let message = format!(
            "{file}: {} lines in sqlite, {} in postgres; keep the twins line for line (one dialect-specific line each)",
            sqlite.len(),
            postgres.len()
        );
        return (vec![message], used);
    }
    let mut problems = Vec::new();
    for (number, (s, p)) in sqlite.iter().zip(&postgres).enumerate() {
        let (s, p) = (s.trim(), p.trim());
        if s == p {
            continue;
        }
        match ALLOWED.iter().position(|a| a.file == file && a.sqlite == s && a.postgres == p) {
            Some(entry) => {
                used.insert(entry);
            }
            None => problems.push(format!("{file}:{}: sqlite `{s}` but postgres `{p}`", number + 1)),
        }
    }
    (problems, used)
}

#[test]
fn every_migration_has_a_twin_identical_but_for_the_allowed_lines() {
    let sqlite_dir = migrations("sqlite");
    let postgres_dir = migrations("postgres");
    let files = names(&sqlite_dir);
    assert_eq!(files, names(&postgres_dir), "both dialects have the same migrations");
    assert!(files.len() >= 7, "{files:?}");

    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for file in &files {
        let read = |dir: &Path| std::fs::read_to_string(dir.join(file)).unwrap();
        let (found, entries) = drift(file, &read(&sqlite_dir), &read(&postgres_dir));
        problems.extend(found);
        used.extend(entries);
    }
    assert!(
        problems.is_empty(),
        "the dialects drifted; align them or add to ALLOWED with a reason:\n{}",
        problems.join("\n")
    );

    let unused: Vec<_> = ALLOWED
        .iter()
        .enumerate()
        .filter(|(i, _)| !used.contains(i))
        .map(|(_, a)| format!("{}: `{}` / `{}` ({})", a.file, a.sqlite, a.postgres, a.reason))
        .collect();
    assert!(unused.is_empty(), "allowed differences that no longer occur; remove them:\n{}", unused.join("\n"));
}

#[test]
fn a_difference_that_is_not_allowed_is_reported_with_its_line() {
    let sqlite = "CREATE TABLE t (\n    id TEXT PRIMARY KEY,\n    at BIGINT NOT NULL\n);\n";
    let postgres = "CREATE TABLE t (\n    id TEXT PRIMARY KEY,\n    at TIMESTAMPTZ NOT NULL\n);\n";
    let (problems, _) = drift("0002_pins.sql", sqlite, postgres);
    assert_eq!(problems, ["0002_pins.sql:3: sqlite `at BIGINT NOT NULL` but postgres `at TIMESTAMPTZ NOT NULL`"]);

    // An allowed line is allowed only in its own file.
    let (problems, _) = drift("0002_pins.sql", ") WITHOUT ROWID;", ");");
    assert_eq!(problems, ["0002_pins.sql:1: sqlite `) WITHOUT ROWID;` but postgres `);`"]);
    let (problems, used) = drift("0004_exposures.sql", ") WITHOUT ROWID;", ");");
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(used.len(), 1);

    let (problems, _) = drift("0003_experiments.sql", "a\nb\n", "a\n");
    assert_eq!(
        problems,
        [
            "0003_experiments.sql: 2 lines in sqlite, 1 in postgres; keep the twins line for line (one dialect-specific line each)"
        ]
    );
}
