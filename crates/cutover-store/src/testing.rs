//! Test databases: a fresh SQLite file, or a fresh PostgreSQL schema on the server named by
//! `CUTOVER_TEST_DATABASE_URL`, dropped when the test ends.
//!
//! Without that variable the PostgreSQL half of a suite is skipped, except under CI (`CI` set),
//! where a missing or unreachable database fails the test loudly.

use std::time::Duration;

use crate::{ConnectOptions, Store};

pub const DATABASE_URL_VAR: &str = "CUTOVER_TEST_DATABASE_URL";

/// A migrated store on a throwaway database.
pub struct TestDb {
    pub store: Store,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(tempfile::TempDir),
    Postgres { url: String, schema: String },
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("cutover.db").display());
        let store = Store::connect(&url, &options()).await.expect("open SQLite");
        store.migrate().await.expect("migrate SQLite");
        Self { store, cleanup: Cleanup::Sqlite(dir) }
    }

    /// `None` when no PostgreSQL is configured and this is not CI.
    pub async fn postgres() -> Option<Self> {
        let url = match std::env::var(DATABASE_URL_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var_os("CI").is_some() => {
                panic!("{DATABASE_URL_VAR} must be set under CI: the PostgreSQL half of the suite may not be skipped")
            }
            _ => {
                eprintln!("skipping the PostgreSQL half: {DATABASE_URL_VAR} is not set");
                return None;
            }
        };
        let schema = format!("cutover_test_{}", uuid::Uuid::now_v7().simple());
        let admin = Store::connect(&url, &small_pool())
            .await
            .unwrap_or_else(|e| panic!("{DATABASE_URL_VAR} is set but PostgreSQL is unreachable: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(admin.postgres_pool().expect("a PostgreSQL url"))
            .await
            .expect("create test schema");
        admin.close().await;
        let store = Store::connect(&with_search_path(&url, &schema), &options()).await.expect("connect to test schema");
        store.migrate().await.expect("migrate PostgreSQL");
        Some(Self { store, cleanup: Cleanup::Postgres { url, schema } })
    }

    /// The database url that reaches this test database (for a second server process).
    pub fn url(&self) -> String {
        match &self.cleanup {
            Cleanup::Sqlite(dir) => format!("sqlite://{}", dir.path().join("cutover.db").display()),
            Cleanup::Postgres { url, schema } => with_search_path(url, schema),
        }
    }
}

/// The defaults, but patient: a test machine running many suites at once may be slow to hand
/// out a connection, and these tests are not about outages.
fn options() -> ConnectOptions {
    ConnectOptions { acquire_timeout: Duration::from_secs(10), ..ConnectOptions::default() }
}

fn small_pool() -> ConnectOptions {
    ConnectOptions { max_connections: 1, ..options() }
}

fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Cleanup::Postgres { url, schema } = &self.cleanup else {
            return;
        };
        let (url, schema, store) = (url.clone(), schema.clone(), self.store.clone());
        // Drop runs inside the test's runtime; use a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async move {
                store.close().await;
                let admin = Store::connect(&url, &small_pool()).await.ok()?;
                let pool = admin.postgres_pool()?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(pool).await.ok()?;
                admin.close().await;
                Some(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!(
                "could not drop test schema {}",
                match &self.cleanup {
                    Cleanup::Postgres { schema, .. } => schema.as_str(),
                    Cleanup::Sqlite(_) => "",
                }
            );
        }
    }
}

/// Declares each listed `async fn(Store)` as a test on SQLite and one on PostgreSQL.
#[macro_export]
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = $crate::testing::TestDb::sqlite().await;
                    super::$name(db.store.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = $crate::testing::TestDb::postgres().await else { return };
                    super::$name(db.store.clone()).await;
                }
            )*
        }
    };
}
