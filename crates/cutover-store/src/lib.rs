//! Cutover's storage: one contract, two engines.
//!
//! SQLite (WAL, foreign keys on, one writer connection so writes are serialised, a pool of
//! read-only readers) is the embedded default; PostgreSQL serves production and more than one
//! server. Both run the same SQL; migrations are per dialect and embedded in the binary.
#![forbid(unsafe_code)]

mod archive;
mod artifacts;
mod audit;
mod db;
pub mod effects;
mod environments;
mod error;
mod events;
mod experiments;
mod health;
mod leases;
mod models;
mod pins;
mod pools;
mod queue;
mod rollouts;
mod sessions;
mod snapshot;
#[cfg(feature = "testing")]
pub mod testing;
mod tokens;
mod workspaces;

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use artifacts::Publish;
pub use error::StoreError;
pub use events::ExposureFlush;
pub use models::*;
pub use pools::{
    BuildOutcome, BuildRun, InstanceDetail, NewPool, OpenBuild, Pool, PoolAgent, PoolBuild, PoolChanges, PoolInstance,
    PoolStatus, PoolWork,
};
pub use queue::{
    ActiveListing, Applied, BatchSpec, ChangeRequest, CheckRun, NewChangeRequest, NewQueue, Queue, QueueBatch,
    QueueStatus, QueueWork, RequestChange, RequestTransition, RunningCheck, RunningCheckSummary,
};
pub use rollouts::{OperationBrief, OperationMove, RolloutPass, RunResult, TaskStart};
pub use snapshot::ResolveSnapshot;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Sqlite,
    Postgres,
}

pub(crate) enum Engine {
    Sqlite { read: SqlitePool, write: SqlitePool },
    Postgres(PgPool),
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Largest number of pooled connections (SQLite: readers; its writer is always one).
    pub max_connections: u32,
    /// PostgreSQL: how long to wait for a connection (pooled or new) before the database counts
    /// as unreachable. Short, so that an outage answers 503 at once instead of hanging.
    pub acquire_timeout: Duration,
    /// SQLite: how long a write waits for the one writer connection and for locks.
    pub busy_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self { max_connections: 16, acquire_timeout: Duration::from_secs(1), busy_timeout: Duration::from_secs(10) }
    }
}

/// The store: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Store {
    engine: std::sync::Arc<Engine>,
    health: std::sync::Arc<health::Health>,
    hooks: std::sync::Arc<effects::Hooks>,
}

impl Store {
    /// Connects to `sqlite://PATH` (created if missing) or `postgres://…`. Does not migrate.
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Self> {
        let engine = if url.starts_with("sqlite:") {
            let base = SqliteConnectOptions::from_str(url)
                .map_err(|_| StoreError::UnsupportedUrl(url.to_owned()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(options.busy_timeout);
            // One writer connection: SQLite allows one writer at a time anyway, and queueing in
            // the pool avoids SQLITE_BUSY from transactions that upgrade from read to write.
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(options.busy_timeout)
                .connect_with(base.clone())
                .await?;
            let read = SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.busy_timeout)
                .connect_with(base.create_if_missing(false).read_only(true))
                .await?;
            Engine::Sqlite { read, write }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let connect = PgConnectOptions::from_str(url).map_err(|_| StoreError::UnsupportedUrl(url.to_owned()))?;
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await?;
            Engine::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let probe_timeout = match engine {
            Engine::Sqlite { .. } => options.busy_timeout,
            Engine::Postgres(_) => options.acquire_timeout,
        };
        Ok(Self {
            engine: std::sync::Arc::new(engine),
            health: std::sync::Arc::new(health::Health::new(probe_timeout)),
            hooks: std::sync::Arc::default(),
        })
    }

    /// Registers what this process does after every committed write with effects (see
    /// [`effects`]); awaited before the write returns.
    pub fn on_commit(&self, hook: std::sync::Arc<dyn effects::CommitHook>) {
        self.hooks.add(hook);
    }

    pub fn kind(&self) -> EngineKind {
        match &*self.engine {
            Engine::Sqlite { .. } => EngineKind::Sqlite,
            Engine::Postgres(_) => EngineKind::Postgres,
        }
    }

    /// The PostgreSQL pool, for engine-specific features (LISTEN/NOTIFY).
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &*self.engine {
            Engine::Postgres(pool) => Some(pool),
            Engine::Sqlite { .. } => None,
        }
    }

    /// The SQLite database file, for tools and tests that open it directly.
    pub fn sqlite_path(&self) -> Option<String> {
        match &*self.engine {
            Engine::Sqlite { write, .. } => Some(write.connect_options().get_filename().display().to_string()),
            Engine::Postgres(_) => None,
        }
    }

    fn migrator(&self) -> &'static Migrator {
        match &*self.engine {
            Engine::Sqlite { .. } => &SQLITE_MIGRATIONS,
            Engine::Postgres(_) => &POSTGRES_MIGRATIONS,
        }
    }

    /// Newest schema version this binary knows.
    pub fn known_schema_version(&self) -> i64 {
        self.migrator().iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// Applies pending migrations. Refuses a schema newer than this binary.
    pub async fn migrate(&self) -> Result<usize> {
        let pending = match self.check_schema().await {
            Ok(()) => 0,
            Err(StoreError::SchemaBehind(n)) => n,
            Err(e) => return Err(e),
        };
        match &*self.engine {
            Engine::Sqlite { write, .. } => self.migrator().run(write).await?,
            Engine::Postgres(pool) => self.migrator().run(pool).await?,
        }
        Ok(pending)
    }

    /// Ok when the schema is exactly what this binary expects.
    pub async fn check_schema(&self) -> Result<()> {
        let applied = self.applied_versions().await?;
        let known = self.known_schema_version();
        if let Some(&found) = applied.iter().find(|v| **v > known) {
            return Err(StoreError::SchemaTooNew { found, known });
        }
        let pending = self.migrator().iter().filter(|m| !applied.contains(&m.version)).count();
        if pending > 0 {
            return Err(StoreError::SchemaBehind(pending));
        }
        Ok(())
    }

    async fn applied_versions(&self) -> Result<Vec<i64>> {
        let exists_sql = match self.kind() {
            EngineKind::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            EngineKind::Postgres => {
                "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE tablename = '_sqlx_migrations' AND schemaname = current_schema()"
            }
        };
        read!(self, |conn| {
            let (exists,): (i64,) = db::q!(conn, fetch_one, sqlx::query_as(exists_sql))?;
            if exists == 0 {
                return Ok(Vec::new());
            }
            let rows: Vec<(i64,)> = db::q!(
                conn,
                fetch_all,
                sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            )?;
            Ok(rows.into_iter().map(|(v,)| v).collect())
        })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        read!(self, |conn| {
            db::q!(conn, execute, sqlx::query("SELECT 1"))?;
            Ok(())
        })
    }

    pub async fn close(&self) {
        match &*self.engine {
            Engine::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Engine::Postgres(pool) => pool.close().await,
        }
    }
}

use db::read;
