//! Leases: with several replicas, one drives each unit of the engine's work (a rollout today;
//! queue batches and pools later). A lease is a row `(resource, owner, token, expires_at)` taken
//! with one portable upsert; its token grows whenever the holder changes, and fences writes.

use cutover_domain::Timestamp;

use crate::db::{q, transaction};
use crate::{Result, Store};

impl Store {
    /// Takes or renews the lease on `resource` for `owner` until `ttl` from now. Returns the
    /// lease's token when held: it grows whenever the holder changes, so that a write carrying an
    /// older token can be refused. `None`: another owner holds an unexpired lease.
    pub async fn acquire_lease(&self, resource: &str, owner: &str, ttl: std::time::Duration) -> Result<Option<i64>> {
        let now = Timestamp::now().as_micros();
        let expires = now.saturating_add(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX));
        transaction!(self, |tx| {
            let token: Option<(i64,)> = q!(
                tx,
                fetch_optional,
                sqlx::query_as(
                    "INSERT INTO leases (resource, owner, token, expires_at) VALUES ($1, $2, 1, $3)
                     ON CONFLICT (resource) DO UPDATE SET
                         token = CASE WHEN leases.owner = excluded.owner THEN leases.token ELSE leases.token + 1 END,
                         owner = excluded.owner,
                         expires_at = excluded.expires_at
                     WHERE leases.owner = excluded.owner OR leases.expires_at < $4
                     RETURNING token"
                )
                .bind(resource)
                .bind(owner)
                .bind(expires)
                .bind(now)
            )?;
            token.map(|(t,)| t)
        })
    }

    /// Gives a lease up (at shutdown, or when its work is done), if `owner` still holds it.
    pub async fn release_lease(&self, resource: &str, owner: &str) -> Result<()> {
        transaction!(self, |tx| {
            q!(
                tx,
                execute,
                sqlx::query("DELETE FROM leases WHERE resource = $1 AND owner = $2").bind(resource).bind(owner)
            )?;
        })
    }
}
