//! Running the same SQL on either engine.
//!
//! SQL is written once, with `$1`-style parameters that both SQLite and PostgreSQL accept. The
//! macros here expand a query for each engine's connection type, so the compiler checks both and
//! no generic bounds leak into every store function.

use sqlx::{PgConnection, SqliteConnection};

use crate::effects::Effects;

/// A connection (or open transaction) on one of the two engines.
pub(crate) enum Link<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

/// A connection with the effects the writes on it declared (see `effects.rs`).
pub(crate) struct Conn<'c> {
    pub(crate) link: Link<'c>,
    pub(crate) effects: Effects,
}

impl<'c> Conn<'c> {
    pub(crate) fn new(link: Link<'c>) -> Self {
        Self { link, effects: Effects::default() }
    }
}

/// `q!(conn, fetch_one, sqlx::query_as::<_, Row>(SQL).bind(x))` runs a query on `conn`.
/// `execute` evaluates to the number of rows affected.
macro_rules! q {
    ($conn:expr, execute, $query:expr) => {
        match &mut $conn.link {
            $crate::db::Link::Sqlite(c) => $query.execute(&mut **c).await.map(|r| r.rows_affected()),
            $crate::db::Link::Postgres(c) => $query.execute(&mut **c).await.map(|r| r.rows_affected()),
        }
    };
    ($conn:expr, $method:ident, $query:expr) => {
        match &mut $conn.link {
            $crate::db::Link::Sqlite(c) => $query.$method(&mut **c).await,
            $crate::db::Link::Postgres(c) => $query.$method(&mut **c).await,
        }
    };
}

/// `transaction!(store, |tx| body)`: runs `body` in a write transaction committed at its end.
/// Evaluates to `Ok(body)`. While the database is known to be unreachable it fails at once with
/// `StoreError::Unavailable` (see `health.rs`). An early return (`?`) drops the transaction, which rolls it back:
/// nothing is written. `transaction!(store, dry_run = flag, |tx| body)` rolls back when `flag`.
macro_rules! transaction {
    ($store:expr, |$tx:ident| $body:expr) => {
        $crate::db::transaction!($store, dry_run = false, |$tx| $body)
    };
    ($store:expr, dry_run = $dry_run:expr, |$tx:ident| $body:expr) => {
        match &*$store.engine {
            $crate::Engine::Sqlite { write, .. } => {
                let mut txn = $store.checked(write.begin()).await?;
                let mut conn = $crate::db::Conn::new($crate::db::Link::Sqlite(&mut *txn));
                let out = {
                    let $tx = &mut conn;
                    $body
                };
                let effects = conn.effects;
                if $dry_run {
                    txn.rollback().await?
                } else {
                    txn.commit().await.map_err(|e| $store.failed(e))?;
                    $store.hooks.run(&effects).await;
                }
                Ok::<_, $crate::StoreError>(out)
            }
            $crate::Engine::Postgres(pool) => {
                // The connection is held past the commit: the log flush below runs on it, so a
                // write that committed never waits for (nor fails on) a second connection.
                let mut held = $store.checked(pool.acquire()).await?;
                let mut txn = $store.checked(sqlx::Connection::begin_with(&mut *held, $crate::db::BEGIN_WRITE)).await?;
                let mut conn = $crate::db::Conn::new($crate::db::Link::Postgres(&mut *txn));
                let out = {
                    let $tx = &mut conn;
                    $body
                };
                let effects = conn.effects;
                if $dry_run {
                    txn.rollback().await?
                } else {
                    // Delivered to every replica at commit, never on rollback.
                    for effect in effects.iter() {
                        sqlx::query("SELECT pg_notify($1, $2)")
                            .bind(effect.channel())
                            .bind(effect.payload())
                            .execute(&mut *txn)
                            .await?;
                    }
                    txn.commit().await.map_err(|e| $store.failed(e))?;
                    $crate::db::flush_wal(&mut *held).await.map_err(|e| $store.failed(e))?;
                    // Back to the pool before the hooks, which read through it.
                    drop(held);
                    $store.hooks.run(&effects).await;
                }
                Ok::<_, $crate::StoreError>(out)
            }
        }
    };
}

/// `read!(store, |conn| body)`: runs `body` on a pooled connection (SQLite's read pool).
macro_rules! read {
    ($store:expr, |$conn:ident| $body:expr) => {
        match &*$store.engine {
            $crate::Engine::Sqlite { read, .. } => {
                let mut pooled = $store.checked(read.acquire()).await?;
                let $conn = &mut $crate::db::Conn::new($crate::db::Link::Sqlite(&mut *pooled));
                $body
            }
            $crate::Engine::Postgres(pool) => {
                let mut pooled = $store.checked(pool.acquire()).await?;
                let $conn = &mut $crate::db::Conn::new($crate::db::Link::Postgres(&mut *pooled));
                $body
            }
        }
    };
}

/// `snapshot!(store, |conn| body)`: runs `body` in a read-only transaction that sees one
/// consistent state of the database (SQLite: one WAL snapshot on a reader; PostgreSQL:
/// `REPEATABLE READ`), so that several reads cannot mix two revisions.
macro_rules! snapshot {
    ($store:expr, |$conn:ident| $body:expr) => {
        match &*$store.engine {
            $crate::Engine::Sqlite { read, .. } => {
                let mut txn = $store.checked(read.begin()).await?;
                let out = {
                    let $conn = &mut $crate::db::Conn::new($crate::db::Link::Sqlite(&mut *txn));
                    $body
                };
                txn.rollback().await?;
                out
            }
            $crate::Engine::Postgres(pool) => {
                let mut txn = $store.checked(pool.begin()).await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *txn)
                    .await
                    .map_err(|e| $store.failed(e))?;
                let out = {
                    let $conn = &mut $crate::db::Conn::new($crate::db::Link::Postgres(&mut *txn));
                    $body
                };
                txn.rollback().await?;
                out
            }
        }
    };
}

pub(crate) use {q, read, snapshot, transaction};

/// How a PostgreSQL write transaction begins: its `COMMIT` makes it visible and releases its
/// locks without waiting for the disk; [`flush_wal`] waits for the disk afterwards, before the
/// write returns. A write that takes the workspace's row lock (every write that gives a
/// revision) thus holds it only for its statements, not through an fsync of the write-ahead
/// log, and the commits of concurrent writers share fsyncs (docs/architecture.md, "Writes").
pub(crate) const BEGIN_WRITE: &str = "BEGIN; SET LOCAL synchronous_commit = off";

/// Waits until every commit this connection's server has made so far is on disk: a one-statement
/// transaction that writes to the write-ahead log (a transactional logical message, which no
/// table sees and any role may send) and commits synchronously, so PostgreSQL flushes the log
/// up to its own commit, past every commit before it. Concurrent flushes share one fsync.
pub(crate) async fn flush_wal<'e>(executor: impl sqlx::PgExecutor<'e>) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_logical_emit_message(true, 'cutover', '')").execute(executor).await?;
    Ok(())
}

/// PostgreSQL: where the write-ahead log ends now, past every commit this connection can see.
/// `None` on SQLite, whose commits are durable when visible.
pub(crate) async fn wal_position(conn: &mut Conn<'_>) -> Result<Option<String>, sqlx::Error> {
    match &mut conn.link {
        Link::Postgres(c) => {
            sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text").fetch_one(&mut **c).await.map(Some)
        }
        Link::Sqlite(_) => Ok(None),
    }
}

impl crate::Store {
    /// Returns once the write-ahead log is on disk up to `position` (from [`wal_position`]):
    /// at once when it is there already (the writers flush right after their commits), else
    /// after flushing it.
    pub(crate) async fn wait_durable(&self, position: Option<String>) -> crate::Result<()> {
        let (Some(position), Some(pool)) = (position, self.postgres_pool()) else { return Ok(()) };
        let flushed: bool = sqlx::query_scalar("SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn")
            .bind(position)
            .fetch_one(pool)
            .await
            .map_err(|e| self.failed(e))?;
        if !flushed {
            flush_wal(pool).await.map_err(|e| self.failed(e))?;
        }
        Ok(())
    }
}

/// A fresh, time-ordered id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
