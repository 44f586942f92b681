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
                let mut txn = $store.checked(pool.begin()).await?;
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

/// A fresh, time-ordered id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
