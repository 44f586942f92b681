//! What the benchmarks share: a fresh database, fresh statistics, percentiles.
// Each benchmark uses some of these.
#![allow(dead_code)]

use std::time::Duration;

use cutover_store::Store;

/// A fresh database `name` on the PostgreSQL server of `url` (dropped and made again), or, for
/// SQLite, the url itself with its file removed.
pub async fn fresh_database(url: &str, name: &str) -> anyhow::Result<String> {
    if !url.starts_with("postgres") {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let _ = std::fs::remove_file(path);
        }
        return Ok(url.to_owned());
    }
    let admin = sqlx::PgPool::connect(url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&admin).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await?;
    admin.close().await;
    let (base, _) = url.rsplit_once('/').ok_or_else(|| anyhow::anyhow!("a postgres url ends with /DATABASE"))?;
    Ok(format!("{base}/{name}"))
}

/// The value at `p` (0 to 1) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1_000.0)
}

/// Fresh statistics before the timings: PostgreSQL vacuumed and analysed (so that autovacuum
/// does not run during them); SQLite analysed and its write-ahead log checkpointed, as a running
/// server's automatic checkpoint does (readers do not search a large log).
pub async fn settle(store: &Store) -> anyhow::Result<()> {
    match store.postgres_pool() {
        Some(pool) => {
            sqlx::query("VACUUM ANALYZE").execute(pool).await?;
        }
        None => {
            store.execute_for_tests("ANALYZE").await?;
            if let Some(path) = store.sqlite_path() {
                let direct = sqlx::SqlitePool::connect(&format!("sqlite://{path}")).await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&direct).await?;
                direct.close().await;
            }
        }
    }
    Ok(())
}

/// Serves `app(state)` on a loopback port until `state.shutdown` turns true; returns its
/// address.
pub async fn serve_loopback(state: cutover_server::AppState) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let mut stopping = state.shutdown.subscribe();
    let router = cutover_server::app(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopping.wait_for(|stopping| *stopping).await;
            })
            .await;
    });
    Ok(address)
}

/// Drops a database `fresh_database` made (SQLite files are left to their temporary directory).
pub async fn drop_database(url: &str, name: &str) -> anyhow::Result<()> {
    if url.starts_with("postgres") {
        let admin = sqlx::PgPool::connect(url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await?;
        admin.close().await;
    }
    Ok(())
}
