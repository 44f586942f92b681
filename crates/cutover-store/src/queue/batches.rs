//! Active batches: a membership table keyed `(queue, batch)`, as uber/submitqueue's
//! `active_batch` (PR #233).
//!
//! - A batch's membership is written *before* its row, in its own transaction: a batch row never
//!   exists without its membership, so the listing below never misses a live batch.
//! - Listing a queue's active batches is a primary-key-prefix scan of the membership that reads
//!   each member's row by primary key: its cost follows the live window, not the history.
//! - A member whose batch is terminal is removed on read, best effort: a failure to remove is
//!   logged and swallowed, a read never fails on index maintenance.
//! - A member whose row is missing is skipped but **not** removed: it may be a create in flight.
//!   A failed or duplicate row insert leaves its membership too; [`Store::prune_queue_memberships`]
//!   removes memberships dangling longer than an age.

use cutover_domain::Timestamp;
use cutover_domain::queue::{BatchEvent, BatchState, Position, RequestEvent, RequestState};
use serde::Serialize;

use super::{corrupt, db_id, lane_name, stored_id, stored_lane, transition};
use crate::db::{Conn, q, read, transaction};
use crate::{Result, Store, StoreError};

/// A batch as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueBatch {
    pub id: u64,
    pub position: Position,
    /// Its requests, in queue order.
    pub requests: Vec<u64>,
    /// The batches it depends on; `None` while `creating`.
    pub depends_on: Option<Vec<u64>>,
    /// Made by splitting a failed batch: it may hold the culprit.
    pub suspect: bool,
    pub state: BatchState,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What one listing of a queue's active batches found.
#[derive(Debug, Clone, Default)]
pub struct ActiveListing {
    /// Members whose batch is not terminal, by id.
    pub batches: Vec<QueueBatch>,
    /// Members whose batch is terminal: removed by [`Store::active_batches`].
    pub terminal: Vec<u64>,
    /// Members without a batch row (a create in flight, or one that failed): skipped, kept.
    pub dangling: Vec<u64>,
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    batch_id: i64,
    lane: Option<String>,
    seq: Option<i64>,
    position_offset: Option<i64>,
    requests: Option<String>,
    depends_on: Option<String>,
    suspect: Option<bool>,
    state: Option<String>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct BatchRow {
    id: i64,
    lane: String,
    seq: i64,
    position_offset: i64,
    requests: String,
    depends_on: Option<String>,
    suspect: bool,
    state: String,
    created_at: i64,
    updated_at: i64,
}

impl BatchRow {
    fn into_batch(self) -> Result<QueueBatch> {
        Ok(QueueBatch {
            id: stored_id(self.id)?,
            position: Position {
                lane: stored_lane(&self.lane)?,
                seq: stored_id(self.seq)?,
                offset: u32::try_from(self.position_offset).map_err(corrupt)?,
            },
            requests: serde_json::from_str(&self.requests)?,
            depends_on: self.depends_on.as_deref().map(serde_json::from_str).transpose()?,
            suspect: self.suspect,
            state: self.state.parse().map_err(corrupt)?,
            created_at: Timestamp::from_micros(self.created_at),
            updated_at: Timestamp::from_micros(self.updated_at),
        })
    }
}

const BATCH_COLUMNS: &str =
    "id, lane, seq, position_offset, requests, depends_on, suspect, state, created_at, updated_at";

/// The active listing: the membership's primary-key prefix `(queue_id)`, each member's batch row
/// read by its primary key.
const ACTIVE_LISTING: &str = "SELECT m.batch_id, b.lane, b.seq, b.position_offset, b.requests, b.depends_on, b.suspect,
        b.state, b.created_at, b.updated_at
     FROM queue_active_batches m
     LEFT JOIN queue_batches b ON b.queue_id = m.queue_id AND b.id = m.batch_id
     WHERE m.queue_id = $1
     ORDER BY m.batch_id";

/// The membership of `queue_id`, each member with its batch row when there is one (one
/// statement: a primary-key-prefix scan joined by primary key).
pub(crate) async fn list_active(conn: &mut Conn<'_>, queue_id: &str) -> Result<ActiveListing> {
    let rows: Vec<MemberRow> = q!(conn, fetch_all, sqlx::query_as(ACTIVE_LISTING).bind(queue_id))?;
    let mut listing = ActiveListing::default();
    for row in rows {
        let id = stored_id(row.batch_id)?;
        let (
            Some(lane),
            Some(seq),
            Some(offset),
            Some(requests),
            Some(suspect),
            Some(state),
            Some(created),
            Some(updated),
        ) = (
            row.lane,
            row.seq,
            row.position_offset,
            row.requests,
            row.suspect,
            row.state,
            row.created_at,
            row.updated_at,
        )
        else {
            listing.dangling.push(id);
            continue;
        };
        let batch = BatchRow {
            id: row.batch_id,
            lane,
            seq,
            position_offset: offset,
            requests,
            depends_on: row.depends_on,
            suspect,
            state,
            created_at: created,
            updated_at: updated,
        }
        .into_batch()?;
        if batch.state.is_terminal() {
            listing.terminal.push(id);
        } else {
            listing.batches.push(batch);
        }
    }
    Ok(listing)
}

pub(crate) async fn list_recent(conn: &mut Conn<'_>, queue_id: &str, limit: u32) -> Result<Vec<QueueBatch>> {
    let rows: Vec<BatchRow> = q!(
        conn,
        fetch_all,
        sqlx::query_as(&format!(
            "SELECT {BATCH_COLUMNS} FROM queue_batches WHERE queue_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(queue_id)
        .bind(i64::from(limit))
    )?;
    rows.into_iter().map(BatchRow::into_batch).collect()
}

pub(crate) async fn fetch_batch(conn: &mut Conn<'_>, queue_id: &str, id: u64) -> Result<QueueBatch> {
    let row: Option<BatchRow> = q!(
        conn,
        fetch_optional,
        sqlx::query_as(&format!("SELECT {BATCH_COLUMNS} FROM queue_batches WHERE queue_id = $1 AND id = $2"))
            .bind(queue_id)
            .bind(db_id(id))
    )?;
    row.ok_or_else(|| StoreError::NotFound(format!("batch {id}")))?.into_batch()
}

/// Compare-and-set of a batch's state by `event`; false when it was not in `from` any more.
pub(crate) async fn move_batch(
    conn: &mut Conn<'_>,
    queue_id: &str,
    id: u64,
    from: BatchState,
    event: BatchEvent,
) -> Result<bool> {
    let to = from.after(event).map_err(|e| StoreError::conflict(e.to_string()))?;
    let moved = q!(
        conn,
        execute,
        sqlx::query(
            "UPDATE queue_batches SET state = $1, updated_at = $2 WHERE queue_id = $3 AND id = $4 AND state = $5"
        )
        .bind(to.as_str())
        .bind(Timestamp::now().as_micros())
        .bind(queue_id)
        .bind(db_id(id))
        .bind(from.as_str())
    )?;
    Ok(moved == 1)
}

/// A batch to write: its place, requests (in order), whether it is a suspect part, and what it
/// depends on once created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSpec {
    pub position: Position,
    pub requests: Vec<u64>,
    pub suspect: bool,
    pub depends_on: Vec<u64>,
}

/// Step 1 of creating a batch, in its own transaction: a new id from the queue's counter and its
/// membership.
pub(crate) async fn reserve(conn: &mut Conn<'_>, queue_id: &str) -> Result<u64> {
    let (id,): (i64,) = q!(
        conn,
        fetch_one,
        sqlx::query_as("UPDATE queues SET next_batch = next_batch + 1 WHERE id = $1 RETURNING next_batch - 1")
            .bind(queue_id)
    )?;
    let id = stored_id(id)?;
    insert_membership(conn, queue_id, id).await?;
    Ok(id)
}

pub(crate) async fn insert_membership(conn: &mut Conn<'_>, queue_id: &str, batch: u64) -> Result<()> {
    q!(
        conn,
        execute,
        sqlx::query("INSERT INTO queue_active_batches (queue_id, batch_id, created_at) VALUES ($1, $2, $3)")
            .bind(queue_id)
            .bind(db_id(batch))
            .bind(Timestamp::now().as_micros())
    )?;
    Ok(())
}

/// Step 2, in the caller's transaction: the batch row (`creating`), its requests moved into it
/// (`event`: batched, or re-batched after a split or a cancel), then `created` with its
/// dependencies in one compare-and-set. Any failure rolls the row back and leaves the
/// membership (the listing skips it; pruning removes it).
pub(crate) async fn insert_batch(
    conn: &mut Conn<'_>,
    queue_id: &str,
    id: u64,
    spec: &BatchSpec,
    event: RequestEvent,
    actor: &str,
) -> Result<()> {
    let now = Timestamp::now().as_micros();
    q!(
        conn,
        execute,
        sqlx::query(
            "INSERT INTO queue_batches (queue_id, id, lane, seq, position_offset, requests, depends_on, suspect, state,
                 created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $9, $9)"
        )
        .bind(queue_id)
        .bind(db_id(id))
        .bind(lane_name(spec.position.lane))
        .bind(db_id(spec.position.seq))
        .bind(i64::from(spec.position.offset))
        .bind(serde_json::to_string(&spec.requests)?)
        .bind(spec.suspect)
        .bind(BatchState::Creating.as_str())
        .bind(now)
    )?;
    for &request in &spec.requests {
        let state: Option<(String,)> = q!(
            conn,
            fetch_optional,
            sqlx::query_as("SELECT state FROM queue_requests WHERE queue_id = $1 AND id = $2")
                .bind(queue_id)
                .bind(db_id(request))
        )?;
        let from: RequestState = state
            .ok_or_else(|| StoreError::NotFound(format!("change request {request}")))?
            .0
            .parse()
            .map_err(corrupt)?;
        if from == RequestState::Cancelling {
            // A cancel asked for meanwhile: it stays `cancelling`, and the next plan takes it
            // out of this batch.
            continue;
        }
        let reason = match event {
            RequestEvent::Batch => format!("put in batch {id}"),
            _ => format!("moved to batch {id}"),
        };
        transition(conn, queue_id, request, from, event, actor, &reason).await?;
    }
    let created = q!(
        conn,
        execute,
        sqlx::query(
            "UPDATE queue_batches SET state = $1, depends_on = $2, updated_at = $3
             WHERE queue_id = $4 AND id = $5 AND state = $6"
        )
        .bind(BatchState::Created.as_str())
        .bind(serde_json::to_string(&spec.depends_on)?)
        .bind(now)
        .bind(queue_id)
        .bind(db_id(id))
        .bind(BatchState::Creating.as_str())
    )?;
    if created != 1 {
        return Err(StoreError::conflict(format!("batch {id} left `creating` meanwhile")));
    }
    q!(
        conn,
        execute,
        sqlx::query("UPDATE queues SET next_seq = $1 WHERE id = $2 AND next_seq < $1")
            .bind(db_id(spec.position.seq.saturating_add(1)))
            .bind(queue_id)
    )?;
    Ok(())
}

impl Store {
    /// Lists a queue's active batches through the membership, then removes (best effort) the
    /// memberships of terminal batches it found. Never fails on that removal.
    pub async fn active_batches(&self, queue_id: &str) -> Result<ActiveListing> {
        let listing = read!(self, |conn| list_active(conn, queue_id).await)?;
        if !listing.terminal.is_empty() {
            let healed: Result<()> = async {
                transaction!(self, |tx| {
                    for &id in &listing.terminal {
                        q!(
                            tx,
                            execute,
                            sqlx::query("DELETE FROM queue_active_batches WHERE queue_id = $1 AND batch_id = $2")
                                .bind(queue_id)
                                .bind(db_id(id))
                        )?;
                    }
                })
            }
            .await;
            if let Err(e) = healed {
                tracing::debug!(queue = queue_id, error = %e, "could not remove terminal batch memberships; the next read will");
            }
        }
        Ok(listing)
    }

    /// Every membership of a queue, batch ids in order (diagnostics and tests).
    pub async fn queue_memberships(&self, queue_id: &str) -> Result<Vec<u64>> {
        read!(self, |conn| {
            let rows: Vec<(i64,)> = q!(
                conn,
                fetch_all,
                sqlx::query_as("SELECT batch_id FROM queue_active_batches WHERE queue_id = $1 ORDER BY batch_id")
                    .bind(queue_id)
            )?;
            rows.into_iter().map(|(id,)| stored_id(id)).collect()
        })
    }

    /// Creates a batch membership-first: the membership in one transaction, then the row and its
    /// requests' moves in another. A failure of the second (a duplicate id, a request that left
    /// `validated`) leaves the membership in place. Returns the new batch's id.
    pub async fn create_queue_batch(&self, queue_id: &str, spec: &BatchSpec) -> Result<u64> {
        let id = transaction!(self, |tx| reserve(tx, queue_id).await?)?;
        self.insert_queue_batch(queue_id, id, spec).await?;
        Ok(id)
    }

    /// Step 2 alone, with a given id (tests drive duplicates and failures through it).
    pub async fn insert_queue_batch(&self, queue_id: &str, id: u64, spec: &BatchSpec) -> Result<()> {
        transaction!(self, |tx| {
            super::lock(tx, queue_id).await?;
            insert_batch(tx, queue_id, id, spec, RequestEvent::Batch, "queue").await?;
            tx.effects.engine();
        })
    }

    /// Step 1 alone: a membership for `batch` (tests write dangling ones with it).
    pub async fn insert_queue_membership(&self, queue_id: &str, batch: u64) -> Result<()> {
        transaction!(self, |tx| insert_membership(tx, queue_id, batch).await?)
    }

    /// Removes memberships whose batch row is still missing `older_than` after they were
    /// written (creates that failed or died). Returns how many.
    pub async fn prune_queue_memberships(&self, older_than: std::time::Duration) -> Result<u64> {
        let cutoff =
            Timestamp::now().as_micros().saturating_sub(i64::try_from(older_than.as_micros()).unwrap_or(i64::MAX));
        transaction!(self, |tx| {
            q!(
                tx,
                execute,
                sqlx::query(
                    "DELETE FROM queue_active_batches
                     WHERE created_at < $1
                       AND NOT EXISTS (SELECT 1 FROM queue_batches b
                                       WHERE b.queue_id = queue_active_batches.queue_id
                                         AND b.id = queue_active_batches.batch_id)"
                )
                .bind(cutoff)
            )?
        })
    }

    /// The plan of the active listing, as the engine explains it (benchmarks record it).
    pub async fn explain_active_batches(&self, queue_id: &str) -> Result<Vec<String>> {
        read!(self, |conn| {
            Ok(match self.kind() {
                crate::EngineKind::Postgres => {
                    let rows: Vec<(String,)> = q!(
                        conn,
                        fetch_all,
                        sqlx::query_as(&format!("EXPLAIN (ANALYZE, BUFFERS) {ACTIVE_LISTING}")).bind(queue_id)
                    )?;
                    rows.into_iter().map(|(line,)| line).collect()
                }
                crate::EngineKind::Sqlite => {
                    let rows: Vec<(i64, i64, i64, String)> = q!(
                        conn,
                        fetch_all,
                        sqlx::query_as(&format!("EXPLAIN QUERY PLAN {ACTIVE_LISTING}")).bind(queue_id)
                    )?;
                    rows.into_iter().map(|(id, parent, _, detail)| format!("{id} {parent} {detail}")).collect()
                }
            })
        })
    }
}
