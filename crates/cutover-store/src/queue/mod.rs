//! The submit queue: queues, change requests with their history, batches, the active-batch
//! membership and checks. What the states mean and how batches are planned is the domain's
//! (`cutover_domain::queue`); `docs/queue.md` says why the tables have this shape.
//!
//! - this file: queues (create, read, pause) and change requests (submit, read, cancel);
//! - `batches.rs`: the active-batch membership (uber/submitqueue's `active_batch`): listing,
//!   self-healing on read, creating a batch membership-first, pruning;
//! - `engine.rs`: the reconciler's view of a queue and its writes (batches, checks, landings).

use std::collections::BTreeMap;

use cutover_domain::queue::{Lane, QueueName, QueueSettings, RequestEvent, RequestState};
use cutover_domain::rollouts::ExecutorSpec;
use cutover_domain::{ArtifactKey, AuditObject, Content, EnvironmentName, Timestamp};
use serde::Serialize;
use serde_json::Value;

use crate::audit::{Change, record};
use crate::db::{Conn, new_id, q, read, transaction};
use crate::{Actor, Caller, Result, Store, StoreError, artifacts, environments};

mod batches;
mod engine;

pub use batches::{ActiveListing, BatchSpec, QueueBatch};
pub use engine::{Applied, CheckRun, QueueWork, RunningCheck};

/// What creating a queue takes, parsed.
#[derive(Debug, Clone)]
pub struct NewQueue {
    pub name: QueueName,
    pub environment: EnvironmentName,
    pub settings: QueueSettings,
    /// What runs checks (a declared command executor, a webhook, or a person).
    pub executor: ExecutorSpec,
}

/// A queue as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Queue {
    pub id: String,
    pub name: String,
    pub environment: EnvironmentName,
    pub settings: QueueSettings,
    #[serde(skip)]
    pub executor: ExecutorSpec,
    pub paused: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: Actor,
    #[serde(skip)]
    pub workspace_id: String,
}

/// A queue with what it holds now.
#[derive(Debug, Clone, Serialize)]
pub struct QueueStatus {
    #[serde(flatten)]
    pub queue: Queue,
    /// Requests not yet terminal.
    pub depth: u64,
    /// Batches not yet terminal.
    pub active_batches: u64,
    /// Checks running now, oldest first.
    pub running_checks: Vec<RunningCheckSummary>,
    /// Requests landed since the queue was created.
    pub landed: u64,
}

/// A check running now (a manual check waits for a person's report on its id).
#[derive(Debug, Clone, Serialize)]
pub struct RunningCheckSummary {
    pub id: u64,
    pub batch: u64,
    pub attempt: u32,
    pub started_at: Timestamp,
}

/// New content for one artifact.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RequestChange {
    pub artifact: ArtifactKey,
    pub content: Value,
}

/// What submitting a change request takes.
#[derive(Debug, Clone)]
pub struct NewChangeRequest {
    pub changes: Vec<RequestChange>,
    pub message: String,
    /// The hotfix lane: batched first, ahead of every normal batch not landing.
    pub hotfix: bool,
}

/// One transition of a request: who, when, why.
#[derive(Debug, Clone, Serialize)]
pub struct RequestTransition {
    pub at: Timestamp,
    pub actor: String,
    pub from: Option<RequestState>,
    pub to: RequestState,
    pub reason: String,
}

/// A change request.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeRequest {
    pub queue: String,
    pub id: u64,
    pub lane: Lane,
    pub state: RequestState,
    pub changes: Vec<RequestChange>,
    pub message: String,
    pub author: Actor,
    /// Why it was refused (the failing check's output), when it was.
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub landed_at: Option<Timestamp>,
    /// The versions it published, per artifact, when it landed.
    pub landed_versions: Option<BTreeMap<String, i64>>,
    /// Its transitions, oldest first (only when asked for one request).
    pub history: Vec<RequestTransition>,
}

#[derive(sqlx::FromRow)]
struct QueueRow {
    id: String,
    workspace_id: String,
    name: String,
    environment: String,
    budget: i32,
    max_batch_size: i32,
    max_wait_seconds: i32,
    max_flake_retries: i32,
    executor: String,
    paused: bool,
    created_at: i64,
    updated_at: i64,
    created_by_token_id: Option<String>,
    created_by_name: String,
}

const SELECT_QUEUES: &str = "SELECT q.id, q.workspace_id, q.name, e.name AS environment, q.budget, q.max_batch_size,
        q.max_wait_seconds, q.max_flake_retries, q.executor, q.paused, q.created_at, q.updated_at,
        q.created_by_token_id, q.created_by_name
     FROM queues q JOIN environments e ON e.id = q.environment_id";

pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn unsigned(n: i32) -> Result<u32> {
    u32::try_from(n).map_err(|_| corrupt(format!("{n} stored where a count belongs")))
}

pub(crate) fn stored_id(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| corrupt(format!("{n} stored where an id belongs")))
}

pub(crate) fn db_id(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl TryFrom<QueueRow> for Queue {
    type Error = StoreError;

    fn try_from(row: QueueRow) -> Result<Self> {
        let settings = QueueSettings::parse(
            Some(unsigned(row.budget)?),
            Some(unsigned(row.max_batch_size)?),
            Some(unsigned(row.max_wait_seconds)?),
            Some(unsigned(row.max_flake_retries)?),
        )
        .map_err(corrupt)?;
        Ok(Queue {
            id: row.id,
            name: row.name,
            environment: crate::stored_environment(&row.environment)?,
            settings,
            executor: serde_json::from_str(&row.executor)?,
            paused: row.paused,
            created_at: Timestamp::from_micros(row.created_at),
            updated_at: Timestamp::from_micros(row.updated_at),
            created_by: Actor { token_id: row.created_by_token_id.unwrap_or_default(), name: row.created_by_name },
            workspace_id: row.workspace_id,
        })
    }
}

pub(crate) fn lane_name(lane: Lane) -> &'static str {
    match lane {
        Lane::Hotfix => "hotfix",
        Lane::Normal => "normal",
    }
}

pub(crate) fn stored_lane(raw: &str) -> Result<Lane> {
    match raw {
        "hotfix" => Ok(Lane::Hotfix),
        "normal" => Ok(Lane::Normal),
        other => Err(corrupt(format!("lane {other:?}"))),
    }
}

pub(crate) fn stored_request_state(raw: &str) -> Result<RequestState> {
    raw.parse().map_err(corrupt)
}

/// A queue of the workspace, by name.
pub(crate) async fn fetch(conn: &mut Conn<'_>, workspace_id: &str, name: &str) -> Result<Queue> {
    let row: Option<QueueRow> = q!(
        conn,
        fetch_optional,
        sqlx::query_as(&format!("{SELECT_QUEUES} WHERE q.workspace_id = $1 AND q.name = $2"))
            .bind(workspace_id)
            .bind(name)
    )?;
    row.ok_or_else(|| StoreError::NotFound(format!("queue {name:?}")))?.try_into()
}

/// A queue by id, whatever its workspace: for the engine.
pub(crate) async fn fetch_by_id(conn: &mut Conn<'_>, id: &str) -> Result<Queue> {
    let row: Option<QueueRow> =
        q!(conn, fetch_optional, sqlx::query_as(&format!("{SELECT_QUEUES} WHERE q.id = $1")).bind(id))?;
    row.ok_or_else(|| StoreError::NotFound(format!("queue {id:?}")))?.try_into()
}

/// Takes the queue row's write lock: every write to a queue (a submit, a cancel, the engine's
/// actions) runs one at a time, on every replica.
pub(crate) async fn lock(conn: &mut Conn<'_>, queue_id: &str) -> Result<()> {
    q!(conn, execute, sqlx::query("UPDATE queues SET updated_at = updated_at WHERE id = $1").bind(queue_id))?;
    Ok(())
}

/// Whether the caller may change what is live in the queue's environment (submitting lands
/// content there, so it takes the right to pin there).
async fn authorize(conn: &mut Conn<'_>, caller: &Caller, environment: &EnvironmentName) -> Result<()> {
    let environment = environments::fetch(conn, &caller.workspace_id, environment).await?;
    match crate::refuses(&caller.authority, &environment) {
        Some(why) => Err(StoreError::Forbidden(why)),
        None => Ok(()),
    }
}

/// Moves a request from `from` by `event`, recording the transition. Refuses (409) what the
/// state machine does not allow.
pub(crate) async fn transition(
    conn: &mut Conn<'_>,
    queue_id: &str,
    request: u64,
    from: RequestState,
    event: RequestEvent,
    actor: &str,
    reason: &str,
) -> Result<RequestState> {
    let to = from.after(event).map_err(|e| StoreError::conflict(e.to_string()))?;
    let now = Timestamp::now().as_micros();
    let moved = q!(
        conn,
        execute,
        sqlx::query(
            "UPDATE queue_requests SET state = $1, updated_at = $2 WHERE queue_id = $3 AND id = $4 AND state = $5"
        )
        .bind(to.as_str())
        .bind(now)
        .bind(queue_id)
        .bind(db_id(request))
        .bind(from.as_str())
    )?;
    if moved != 1 {
        return Err(StoreError::conflict(format!("change request {request} is no longer {from}")));
    }
    record_transition(conn, queue_id, request, Some(from), to, actor, reason).await?;
    Ok(to)
}

pub(crate) async fn record_transition(
    conn: &mut Conn<'_>,
    queue_id: &str,
    request: u64,
    from: Option<RequestState>,
    to: RequestState,
    actor: &str,
    reason: &str,
) -> Result<()> {
    q!(
        conn,
        execute,
        sqlx::query(
            "INSERT INTO queue_request_history (queue_id, request_id, id, at, actor, from_state, to_state, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )
        .bind(queue_id)
        .bind(db_id(request))
        .bind(new_id())
        .bind(Timestamp::now().as_micros())
        .bind(actor)
        .bind(from.map(RequestState::as_str))
        .bind(to.as_str())
        .bind(reason)
    )?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct RequestRow {
    id: i64,
    lane: String,
    state: String,
    changes: String,
    message: String,
    author_token_id: Option<String>,
    author_name: String,
    error: Option<String>,
    created_at: i64,
    updated_at: i64,
    landed_at: Option<i64>,
    landed_versions: Option<String>,
}

const REQUEST_COLUMNS: &str = "id, lane, state, changes, message, author_token_id, author_name, error, created_at,
     updated_at, landed_at, landed_versions";

impl RequestRow {
    fn into_request(self, queue: &str) -> Result<ChangeRequest> {
        Ok(ChangeRequest {
            queue: queue.to_owned(),
            id: stored_id(self.id)?,
            lane: stored_lane(&self.lane)?,
            state: stored_request_state(&self.state)?,
            changes: serde_json::from_str(&self.changes)?,
            message: self.message,
            author: Actor { token_id: self.author_token_id.unwrap_or_default(), name: self.author_name },
            error: self.error,
            created_at: Timestamp::from_micros(self.created_at),
            updated_at: Timestamp::from_micros(self.updated_at),
            landed_at: self.landed_at.map(Timestamp::from_micros),
            landed_versions: self.landed_versions.as_deref().map(serde_json::from_str).transpose()?,
            history: Vec::new(),
        })
    }
}

pub(crate) async fn fetch_request(conn: &mut Conn<'_>, queue: &Queue, id: u64) -> Result<ChangeRequest> {
    let row: Option<RequestRow> = q!(
        conn,
        fetch_optional,
        sqlx::query_as(&format!("SELECT {REQUEST_COLUMNS} FROM queue_requests WHERE queue_id = $1 AND id = $2"))
            .bind(&queue.id)
            .bind(db_id(id))
    )?;
    row.ok_or_else(|| StoreError::NotFound(format!("change request {id} of queue {:?}", queue.name)))?
        .into_request(&queue.name)
}

async fn fetch_history(conn: &mut Conn<'_>, queue_id: &str, id: u64) -> Result<Vec<RequestTransition>> {
    let rows: Vec<(i64, String, Option<String>, String, String)> = q!(
        conn,
        fetch_all,
        sqlx::query_as(
            "SELECT at, actor, from_state, to_state, reason FROM queue_request_history
             WHERE queue_id = $1 AND request_id = $2 ORDER BY id"
        )
        .bind(queue_id)
        .bind(db_id(id))
    )?;
    rows.into_iter()
        .map(|(at, actor, from, to, reason)| {
            Ok(RequestTransition {
                at: Timestamp::from_micros(at),
                actor,
                from: from.as_deref().map(stored_request_state).transpose()?,
                to: stored_request_state(&to)?,
                reason,
            })
        })
        .collect()
}

async fn status(conn: &mut Conn<'_>, queue: Queue) -> Result<QueueStatus> {
    let (depth, landed): (i64, i64) = q!(
        conn,
        fetch_one,
        sqlx::query_as(
            "SELECT
                 (SELECT COUNT(*) FROM queue_requests WHERE queue_id = $1
                     AND state IN ('started', 'validated', 'batched', 'processing', 'cancelling')),
                 (SELECT COUNT(*) FROM queue_requests WHERE queue_id = $1 AND state = 'landed')"
        )
        .bind(&queue.id)
    )?;
    let active = batches::list_active(conn, &queue.id).await?;
    let running: Vec<(i64, i64, i32, i64)> = q!(
        conn,
        fetch_all,
        sqlx::query_as(
            "SELECT c.id, c.batch_id, c.attempt, c.started_at FROM queue_active_batches m
             JOIN queue_checks c ON c.queue_id = m.queue_id AND c.batch_id = m.batch_id
             WHERE m.queue_id = $1 AND c.status = 'running' ORDER BY c.id"
        )
        .bind(&queue.id)
    )?;
    let running_checks = running
        .into_iter()
        .map(|(id, batch, attempt, started_at)| {
            Ok(RunningCheckSummary {
                id: stored_id(id)?,
                batch: stored_id(batch)?,
                attempt: u32::try_from(attempt).map_err(corrupt)?,
                started_at: Timestamp::from_micros(started_at),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(QueueStatus {
        depth: u64::try_from(depth).unwrap_or(0),
        active_batches: active.batches.len() as u64,
        running_checks,
        landed: u64::try_from(landed).unwrap_or(0),
        queue,
    })
}

/// Content checked against each artifact's value type; every artifact must exist.
async fn check_changes(conn: &mut Conn<'_>, workspace_id: &str, changes: &[RequestChange]) -> Result<()> {
    if changes.is_empty() {
        return Err(cutover_domain::DomainError::invalid("changes", "must list at least one change").into());
    }
    if changes.len() > cutover_domain::queue::MAX_CHANGES {
        return Err(cutover_domain::DomainError::invalid(
            "changes",
            format!("at most {} changes per request", cutover_domain::queue::MAX_CHANGES),
        )
        .into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, change) in changes.iter().enumerate() {
        if !seen.insert(&change.artifact) {
            return Err(cutover_domain::DomainError::invalid(
                format!("changes[{i}].artifact"),
                format!("{:?} is changed twice in one request", change.artifact.as_str()),
            )
            .into());
        }
        let artifact = artifacts::fetch_writable(conn, workspace_id, &change.artifact).await?;
        Content::parse(artifact.value_type, change.content.clone())
            .map_err(|e| cutover_domain::DomainError::invalid(format!("changes[{i}].content"), e.to_string()))?;
    }
    Ok(())
}

impl Store {
    /// Creates a queue guarding an environment the caller may change.
    pub async fn create_queue(&self, caller: &Caller, new: &NewQueue) -> Result<QueueStatus> {
        transaction!(self, |tx| {
            let environment = environments::fetch(tx, &caller.workspace_id, &new.environment).await?;
            if let Some(why) = crate::refuses(&caller.authority, &environment) {
                return Err(StoreError::Forbidden(why));
            }
            let id = new_id();
            let now = Timestamp::now().as_micros();
            let s = &new.settings;
            q!(
                tx,
                execute,
                sqlx::query(
                    "INSERT INTO queues (id, workspace_id, name, environment_id, budget, max_batch_size,
                         max_wait_seconds, max_flake_retries, executor, created_at, updated_at,
                         created_by_token_id, created_by_name)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12)"
                )
                .bind(&id)
                .bind(&caller.workspace_id)
                .bind(new.name.as_str())
                .bind(&environment.id)
                .bind(i32::try_from(s.budget).unwrap_or(i32::MAX))
                .bind(i32::try_from(s.max_batch_size).unwrap_or(i32::MAX))
                .bind(i32::try_from(s.max_wait_seconds).unwrap_or(i32::MAX))
                .bind(i32::try_from(s.max_flake_retries).unwrap_or(i32::MAX))
                .bind(serde_json::to_string(&new.executor)?)
                .bind(now)
                .bind(&caller.actor.token_id)
                .bind(&caller.actor.name)
            )
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict { .. } => {
                    StoreError::conflict(format!("a queue named {:?} already exists", new.name.as_str()))
                }
                other => other,
            })?;
            let queue = fetch_by_id(tx, &id).await?;
            let audit = serde_json::json!({"queue": queue, "executor": new.executor.kind()});
            record(
                tx,
                &caller.workspace_id,
                &caller.actor,
                Change::new("queue.create", AuditObject::Queue, new.name.as_str()).after(&audit),
            )
            .await?;
            tx.effects.engine();
            status(tx, queue).await?
        })
    }

    /// The workspace's queues, by name.
    pub async fn list_queues(&self, workspace_id: &str) -> Result<Vec<QueueStatus>> {
        read!(self, |conn| {
            let rows: Vec<QueueRow> = q!(
                conn,
                fetch_all,
                sqlx::query_as(&format!("{SELECT_QUEUES} WHERE q.workspace_id = $1 ORDER BY q.name"))
                    .bind(workspace_id)
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(status(conn, row.try_into()?).await?);
            }
            Ok(out)
        })
    }

    pub async fn get_queue(&self, workspace_id: &str, name: &str) -> Result<QueueStatus> {
        read!(self, |conn| {
            let queue = fetch(conn, workspace_id, name).await?;
            status(conn, queue).await
        })
    }

    /// Pauses (freezes: nothing new is batched, checked or landed; cancels still take effect)
    /// or resumes a queue. Idempotent; audited when it changes.
    pub async fn set_queue_paused(&self, caller: &Caller, name: &str, paused: bool) -> Result<QueueStatus> {
        transaction!(self, |tx| {
            let queue = fetch(tx, &caller.workspace_id, name).await?;
            authorize(tx, caller, &queue.environment).await?;
            if queue.paused != paused {
                q!(
                    tx,
                    execute,
                    sqlx::query("UPDATE queues SET paused = $1, updated_at = $2 WHERE id = $3")
                        .bind(paused)
                        .bind(Timestamp::now().as_micros())
                        .bind(&queue.id)
                )?;
                let action = if paused { "queue.pause" } else { "queue.resume" };
                record(
                    tx,
                    &caller.workspace_id,
                    &caller.actor,
                    Change::new(action, AuditObject::Queue, name)
                        .before(&serde_json::json!({"paused": queue.paused}))
                        .after(&serde_json::json!({"paused": paused})),
                )
                .await?;
                tx.effects.engine();
            }
            let queue = fetch_by_id(tx, &queue.id).await?;
            status(tx, queue).await?
        })
    }

    /// Submits a change request. Its content is validated against each artifact's value type
    /// before anything is written (400 otherwise); it is then `validated`, waiting for a batch.
    pub async fn submit_change_request(
        &self,
        caller: &Caller,
        queue: &str,
        new: &NewChangeRequest,
    ) -> Result<ChangeRequest> {
        cutover_domain::queue::check_message(&new.message)?;
        transaction!(self, |tx| {
            let queue = fetch(tx, &caller.workspace_id, queue).await?;
            authorize(tx, caller, &queue.environment).await?;
            // The queue's lock before any artifact's: the order a landing takes them in.
            lock(tx, &queue.id).await?;
            check_changes(tx, &caller.workspace_id, &new.changes).await?;
            let (id,): (i64,) = q!(
                tx,
                fetch_one,
                sqlx::query_as(
                    "UPDATE queues SET next_request = next_request + 1 WHERE id = $1 RETURNING next_request - 1"
                )
                .bind(&queue.id)
            )?;
            let id = stored_id(id)?;
            let now = Timestamp::now().as_micros();
            let lane = if new.hotfix { Lane::Hotfix } else { Lane::Normal };
            q!(
                tx,
                execute,
                sqlx::query(
                    "INSERT INTO queue_requests (queue_id, id, lane, state, changes, message, author_token_id,
                         author_name, waiting_since, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9)"
                )
                .bind(&queue.id)
                .bind(db_id(id))
                .bind(lane_name(lane))
                .bind(RequestState::Started.as_str())
                .bind(serde_json::to_string(&new.changes)?)
                .bind(&new.message)
                .bind(&caller.actor.token_id)
                .bind(&caller.actor.name)
                .bind(now)
            )?;
            let who = caller.actor.name.as_str();
            record_transition(tx, &queue.id, id, None, RequestState::Started, who, "submitted").await?;
            let reason = "every change's content is valid for its artifact";
            transition(tx, &queue.id, id, RequestState::Started, RequestEvent::Validate, who, reason).await?;
            let keys: Vec<&str> = new.changes.iter().map(|c| c.artifact.as_str()).collect();
            let action = if new.hotfix { "queue.submit_hotfix" } else { "queue.submit" };
            record(
                tx,
                &caller.workspace_id,
                &caller.actor,
                Change::new(action, AuditObject::Queue, &queue.name).after(
                    &serde_json::json!({"request": id, "artifacts": keys, "message": new.message, "lane": lane}),
                ),
            )
            .await?;
            tx.effects.engine();
            let mut request = fetch_request(tx, &queue, id).await?;
            request.history = fetch_history(tx, &queue.id, id).await?;
            request
        })
    }

    /// One change request with its history.
    pub async fn get_change_request(&self, workspace_id: &str, queue: &str, id: u64) -> Result<ChangeRequest> {
        read!(self, |conn| {
            let queue = fetch(conn, workspace_id, queue).await?;
            let mut request = fetch_request(conn, &queue, id).await?;
            request.history = fetch_history(conn, &queue.id, id).await?;
            Ok(request)
        })
    }

    /// A queue's requests, newest first: the live ones (`live`), or all of them, at most `limit`.
    pub async fn list_change_requests(
        &self,
        workspace_id: &str,
        queue: &str,
        live: bool,
        limit: u32,
    ) -> Result<Vec<ChangeRequest>> {
        read!(self, |conn| {
            let queue = fetch(conn, workspace_id, queue).await?;
            let filter =
                if live { "AND state IN ('started', 'validated', 'batched', 'processing', 'cancelling')" } else { "" };
            let rows: Vec<RequestRow> = q!(
                conn,
                fetch_all,
                sqlx::query_as(&format!(
                    "SELECT {REQUEST_COLUMNS} FROM queue_requests WHERE queue_id = $1 {filter} ORDER BY id DESC LIMIT $2"
                ))
                .bind(&queue.id)
                .bind(i64::from(limit))
            )?;
            rows.into_iter().map(|r| r.into_request(&queue.name)).collect()
        })
    }

    /// Asks to cancel a request: it becomes `cancelling`, and the engine cancels the batch
    /// holding it (found through the active listing) and re-batches the others. A landing under
    /// way wins. Cancelling a request already cancelling changes nothing; a terminal one is 409.
    pub async fn cancel_change_request(&self, caller: &Caller, queue: &str, id: u64) -> Result<ChangeRequest> {
        transaction!(self, |tx| {
            let queue = fetch(tx, &caller.workspace_id, queue).await?;
            lock(tx, &queue.id).await?;
            let request = fetch_request(tx, &queue, id).await?;
            if request.author.token_id != caller.actor.token_id {
                authorize(tx, caller, &queue.environment).await?;
            }
            if request.state != RequestState::Cancelling {
                if request.state.is_terminal() {
                    return Err(StoreError::conflict(format!(
                        "change request {id} is already {}; only a request still in the queue can be cancelled",
                        request.state
                    )));
                }
                transition(
                    tx,
                    &queue.id,
                    id,
                    request.state,
                    RequestEvent::Cancel,
                    &caller.actor.name,
                    "cancel asked for",
                )
                .await?;
                record(
                    tx,
                    &caller.workspace_id,
                    &caller.actor,
                    Change::new("queue.cancel", AuditObject::Queue, &queue.name)
                        .after(&serde_json::json!({"request": id})),
                )
                .await?;
                tx.effects.engine();
            }
            let mut request = fetch_request(tx, &queue, id).await?;
            request.history = fetch_history(tx, &queue.id, id).await?;
            request
        })
    }

    /// A queue's batches: the active ones (through the membership, healing it), or the newest
    /// of all, at most `limit`.
    pub async fn list_queue_batches(
        &self,
        workspace_id: &str,
        queue: &str,
        active: bool,
        limit: u32,
    ) -> Result<Vec<QueueBatch>> {
        let queue = read!(self, |conn| fetch(conn, workspace_id, queue).await)?;
        if active {
            return Ok(self.active_batches(&queue.id).await?.batches);
        }
        read!(self, |conn| batches::list_recent(conn, &queue.id, limit).await)
    }

    /// The requests of one batch, by queue id (the engine's metrics after a landing).
    pub async fn batch_requests(&self, queue_id: &str, batch: u64) -> Result<Vec<ChangeRequest>> {
        read!(self, |conn| {
            let queue = fetch_by_id(conn, queue_id).await?;
            let found = batches::fetch_batch(conn, queue_id, batch).await?;
            let mut out = Vec::with_capacity(found.requests.len());
            for id in found.requests {
                out.push(fetch_request(conn, &queue, id).await?);
            }
            Ok(out)
        })
    }
}
