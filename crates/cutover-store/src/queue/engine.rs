//! The queue reconciler's side of the store: one consistent view of a queue for the planner, and
//! the planner's actions applied, each in one transaction under the queue's row lock and fenced
//! by the reconciler's lease token (a replica that lost the lease writes nothing).

use std::collections::BTreeMap;

use cutover_domain::queue::{
    Action, Batch, BatchEvent, BatchId, BatchState, Check, CheckBase, CheckId, CheckStatus, Footprint, Lineage,
    NewBatch, Outcomes, QueueView, Request, RequestEvent, RequestId, RequestState,
};
use cutover_domain::{ArtifactKey, AuditObject, Content, Timestamp};
use serde_json::Value;

use super::batches::{self, BatchSpec};
use super::{
    Queue, RequestChange, corrupt, db_id, fetch_by_id, lock, stored_id, stored_lane, stored_request_state, transition,
};
use crate::audit::{Change, record};
use crate::db::{Conn, q, read, snapshot, transaction};
use crate::{Actor, PinAuthority, Result, Store, StoreError, artifacts, environments, pins};

/// What the reconciler reads of a queue in one pass.
#[derive(Debug, Clone)]
pub struct QueueWork {
    pub queue: Queue,
    pub view: QueueView<ArtifactKey>,
    /// Checks running, with the run that holds each.
    pub running: Vec<RunningCheck>,
}

/// A check in `running`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningCheck {
    pub id: u64,
    pub batch: u64,
    /// The lease token of the replica that started it.
    pub run_token: i64,
    /// After this, a run that has not reported is lost (its replica died).
    pub deadline: Timestamp,
}

/// A check to run: the batch, what it assumes lands ahead of it, and the candidate content of
/// every artifact in its footprint (what is live after the requests ahead and the batch land).
#[derive(Debug, Clone)]
pub struct CheckRun {
    pub queue: Queue,
    pub check: u64,
    pub batch: u64,
    pub attempt: u32,
    pub idempotency_key: String,
    pub requests: Vec<u64>,
    pub ahead: Vec<u64>,
    pub candidate: Vec<RequestChange>,
    /// Each change of the batch's requests, in queue order: a check sees every request's content,
    /// not only the final state (a later request in the batch may replace an earlier one's).
    pub changes: Vec<(u64, RequestChange)>,
    pub run_token: i64,
}

/// What applying one action did.
#[derive(Debug)]
pub enum Applied {
    Done,
    /// The lease moved to another replica: nothing was written.
    Fenced,
    /// A check was started: run it.
    Started(Box<CheckRun>),
}

const LIVE: &str = "('started', 'validated', 'batched', 'processing', 'cancelling')";

fn lineage_to_db(l: Lineage) -> i64 {
    i64::from_ne_bytes(l.0.to_ne_bytes())
}

fn lineage_from_db(n: i64) -> Lineage {
    Lineage(u64::from_ne_bytes(n.to_ne_bytes()))
}

fn lease_name(queue_id: &str) -> String {
    format!("queue:{queue_id}")
}

/// Whether `token` is still the queue's lease token.
async fn holds(conn: &mut Conn<'_>, queue_id: &str, token: i64) -> Result<bool> {
    let row: Option<(i64,)> = q!(
        conn,
        fetch_optional,
        sqlx::query_as("SELECT token FROM leases WHERE resource = $1").bind(lease_name(queue_id))
    )?;
    Ok(row.is_some_and(|(t,)| t == token))
}

#[derive(sqlx::FromRow)]
struct LiveRequestRow {
    id: i64,
    lane: String,
    state: String,
    changes: String,
    waiting_since: i64,
}

#[derive(sqlx::FromRow)]
struct CheckRow {
    id: i64,
    batch_id: i64,
    base: String,
    status: String,
    output: Option<String>,
    run_token: i64,
    run_deadline: i64,
}

fn check_status(status: &str, output: Option<String>) -> Result<CheckStatus> {
    Ok(match status {
        "running" => CheckStatus::Running,
        "passed" => CheckStatus::Passed,
        "failed" => CheckStatus::Failed { output: output.unwrap_or_default() },
        "abandoned" => CheckStatus::Abandoned,
        other => return Err(corrupt(format!("check status {other:?}"))),
    })
}

async fn load(conn: &mut Conn<'_>, queue_id: &str) -> Result<QueueWork> {
    let queue = fetch_by_id(conn, queue_id).await?;
    let (next_seq, lineage): (i64, i64) =
        q!(conn, fetch_one, sqlx::query_as("SELECT next_seq, lineage FROM queues WHERE id = $1").bind(queue_id))?;
    let mut view = QueueView {
        paused: queue.paused,
        next_seq: stored_id(next_seq)?,
        environment: lineage_from_db(lineage),
        ..QueueView::default()
    };
    let rows: Vec<LiveRequestRow> = q!(
        conn,
        fetch_all,
        sqlx::query_as(&format!(
            "SELECT id, lane, state, changes, waiting_since FROM queue_requests
             WHERE queue_id = $1 AND state IN {LIVE} ORDER BY id"
        ))
        .bind(queue_id)
    )?;
    for row in rows {
        let changes: Vec<RequestChange> = serde_json::from_str(&row.changes)?;
        view.requests.insert(
            RequestId(stored_id(row.id)?),
            Request {
                lane: stored_lane(&row.lane)?,
                footprint: Footprint::new(changes.into_iter().map(|c| c.artifact)),
                state: stored_request_state(&row.state)?,
                waiting_since: Timestamp::from_micros(row.waiting_since),
            },
        );
    }
    // How the last changes ended, for the planner's batch size: the primary key read backwards,
    // as far as the last WINDOW finished ones (the live window and cancelled ones are passed over).
    let recent: Vec<(String,)> = q!(
        conn,
        fetch_all,
        sqlx::query_as(&format!(
            "SELECT state FROM queue_requests WHERE queue_id = $1 AND state IN ('landed', 'error')
             ORDER BY id DESC LIMIT {}",
            Outcomes::WINDOW
        ))
        .bind(queue_id)
    )?;
    let landed = recent.iter().filter(|(state,)| state == "landed").count();
    view.recent = Outcomes {
        landed: u32::try_from(landed).unwrap_or(u32::MAX),
        refused: u32::try_from(recent.len() - landed).unwrap_or(u32::MAX),
    };
    let listing = batches::list_active(conn, queue_id).await?;
    for batch in listing.batches {
        view.batches.insert(
            BatchId(batch.id),
            Batch {
                position: batch.position,
                requests: batch.requests.into_iter().map(RequestId).collect(),
                state: batch.state,
                suspect: batch.suspect,
            },
        );
    }
    let checks: Vec<CheckRow> = q!(
        conn,
        fetch_all,
        sqlx::query_as(
            "SELECT c.id, c.batch_id, c.base, c.status, c.output, c.run_token, c.run_deadline
             FROM queue_active_batches m
             JOIN queue_checks c ON c.queue_id = m.queue_id AND c.batch_id = m.batch_id
             WHERE m.queue_id = $1 ORDER BY c.id"
        )
        .bind(queue_id)
    )?;
    let mut running = Vec::new();
    for row in checks {
        let batch = BatchId(stored_id(row.batch_id)?);
        if !view.batches.contains_key(&batch) {
            continue;
        }
        let status = check_status(&row.status, row.output)?;
        let id = stored_id(row.id)?;
        if status == CheckStatus::Running {
            running.push(RunningCheck {
                id,
                batch: batch.0,
                run_token: row.run_token,
                deadline: Timestamp::from_micros(row.run_deadline),
            });
        }
        let base: CheckBase<ArtifactKey> = serde_json::from_str(&row.base)?;
        view.checks.insert(CheckId(id), Check { batch, base, status });
    }
    let heads: Vec<(String, i64)> = q!(
        conn,
        fetch_all,
        sqlx::query_as("SELECT artifact, lineage FROM queue_heads WHERE queue_id = $1").bind(queue_id)
    )?;
    for (artifact, lineage) in heads {
        view.heads.insert(crate::stored_key(&artifact)?, lineage_from_db(lineage));
    }
    Ok(QueueWork { queue, view, running })
}

/// The stored changes of `ids`.
async fn changes_of(conn: &mut Conn<'_>, queue_id: &str, ids: &[u64]) -> Result<BTreeMap<u64, Vec<RequestChange>>> {
    let mut out = BTreeMap::new();
    for &id in ids {
        let row: Option<(String,)> = q!(
            conn,
            fetch_optional,
            sqlx::query_as("SELECT changes FROM queue_requests WHERE queue_id = $1 AND id = $2")
                .bind(queue_id)
                .bind(db_id(id))
        )?;
        let (changes,) = row.ok_or_else(|| corrupt(format!("change request {id} is missing")))?;
        out.insert(id, serde_json::from_str(&changes)?);
    }
    Ok(out)
}

async fn request_state(conn: &mut Conn<'_>, queue_id: &str, id: u64) -> Result<RequestState> {
    let row: Option<(String,)> = q!(
        conn,
        fetch_optional,
        sqlx::query_as("SELECT state FROM queue_requests WHERE queue_id = $1 AND id = $2")
            .bind(queue_id)
            .bind(db_id(id))
    )?;
    stored_request_state(&row.ok_or_else(|| corrupt(format!("change request {id} is missing")))?.0)
}

/// Abandons every running check of a batch that ends (`why` kept as their output).
async fn abandon_checks_of(conn: &mut Conn<'_>, queue_id: &str, batch: u64, why: &str) -> Result<()> {
    q!(
        conn,
        execute,
        sqlx::query(
            "UPDATE queue_checks SET status = 'abandoned', output = $1, ended_at = $2
             WHERE queue_id = $3 AND batch_id = $4 AND status = 'running'"
        )
        .bind(why)
        .bind(Timestamp::now().as_micros())
        .bind(queue_id)
        .bind(db_id(batch))
    )?;
    Ok(())
}

/// Ends a batch by `event` from whatever non-terminal state allows it.
async fn end_batch(conn: &mut Conn<'_>, queue_id: &str, batch: u64, event: BatchEvent) -> Result<BatchState> {
    let current = batches::fetch_batch(conn, queue_id, batch).await?.state;
    let to = current.after(event).map_err(|e| StoreError::conflict(e.to_string()))?;
    if !batches::move_batch(conn, queue_id, batch, current, event).await? {
        return Err(StoreError::conflict(format!("batch {batch} changed meanwhile")));
    }
    Ok(to)
}

fn spec(new: &NewBatch, depends_on: &[BatchId]) -> BatchSpec {
    BatchSpec {
        position: new.position,
        requests: new.requests.iter().map(|r| r.0).collect(),
        suspect: new.suspect,
        depends_on: depends_on.iter().map(|b| b.0).collect(),
    }
}

/// The first line of a check's output, for a request's history.
fn summary(output: &str) -> String {
    let line = output.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
    line.chars().take(200).collect()
}

async fn check_output(conn: &mut Conn<'_>, queue_id: &str, check: u64) -> Result<String> {
    let row: Option<(Option<String>,)> = q!(
        conn,
        fetch_optional,
        sqlx::query_as("SELECT output FROM queue_checks WHERE queue_id = $1 AND id = $2")
            .bind(queue_id)
            .bind(db_id(check))
    )?;
    Ok(row.and_then(|(o,)| o).unwrap_or_default())
}

impl Store {
    /// Every queue (the engine takes each one's lease before it drives it).
    pub async fn queues_for_engine(&self) -> Result<Vec<String>> {
        read!(self, |conn| {
            let rows: Vec<(String,)> = q!(conn, fetch_all, sqlx::query_as("SELECT id FROM queues ORDER BY id"))?;
            Ok(rows.into_iter().map(|(id,)| id).collect())
        })
    }

    /// One consistent view of a queue: its live requests, active batches (through the
    /// membership), their checks and what has landed.
    pub async fn queue_work(&self, queue_id: &str) -> Result<QueueWork> {
        snapshot!(self, |conn| load(conn, queue_id).await)
    }

    /// Applies one of the planner's actions, fenced by the lease `token`. A batch the action
    /// creates gets its membership first, in a transaction of its own.
    pub async fn apply_queue_action(
        &self,
        queue_id: &str,
        token: i64,
        action: &Action<ArtifactKey>,
        deadline: Timestamp,
    ) -> Result<Applied> {
        let wanted = match action {
            Action::Cancel { rest: Some(_), .. } | Action::Form { .. } => 1,
            Action::Split { parts, .. } => parts.len(),
            _ => 0,
        };
        let mut ids = Vec::with_capacity(wanted);
        if wanted > 0 {
            let reserved = transaction!(self, |tx| {
                if holds(tx, queue_id, token).await? {
                    let mut ids = Vec::with_capacity(wanted);
                    for _ in 0..wanted {
                        ids.push(batches::reserve(tx, queue_id).await?);
                    }
                    Some(ids)
                } else {
                    None
                }
            })?;
            let Some(reserved) = reserved else { return Ok(Applied::Fenced) };
            ids = reserved;
        }
        transaction!(self, |tx| {
            lock(tx, queue_id).await?;
            if !holds(tx, queue_id, token).await? {
                return Ok(Applied::Fenced);
            }
            let applied = apply(tx, queue_id, token, action, &ids, deadline).await?;
            tx.effects.engine();
            applied
        })
    }

    /// Records a check's result, if the check is still running under the run `token` (`None`: a
    /// person's report, for a manual check). False when it is not (abandoned, or taken over).
    pub async fn finish_queue_check(
        &self,
        queue_id: &str,
        check: u64,
        token: Option<i64>,
        passed: bool,
        output: &str,
    ) -> Result<bool> {
        // A program may print NUL, which PostgreSQL's text refuses: kept visible, as U+FFFD.
        let output = output.replace('\0', "\u{fffd}");
        transaction!(self, |tx| {
            lock(tx, queue_id).await?;
            let status = if passed { "passed" } else { "failed" };
            let moved = q!(
                tx,
                execute,
                sqlx::query(
                    "UPDATE queue_checks SET status = $1, output = $2, ended_at = $3
                     WHERE queue_id = $4 AND id = $5 AND status = 'running' AND ($6 IS NULL OR run_token = $6)"
                )
                .bind(status)
                .bind(&output)
                .bind(Timestamp::now().as_micros())
                .bind(queue_id)
                .bind(db_id(check))
                .bind(token)
            )?;
            tx.effects.engine();
            moved == 1
        })
    }

    /// Gives up a running check whose run was lost (its replica died before its deadline ended):
    /// it is abandoned, and the planner starts the batch's next attempt.
    pub async fn abandon_lost_queue_check(&self, queue_id: &str, check: u64, token: i64) -> Result<bool> {
        transaction!(self, |tx| {
            lock(tx, queue_id).await?;
            if !holds(tx, queue_id, token).await? {
                return Ok(false);
            }
            let moved = q!(
                tx,
                execute,
                sqlx::query(
                    "UPDATE queue_checks SET status = 'abandoned', output = $1, ended_at = $2
                     WHERE queue_id = $3 AND id = $4 AND status = 'running' AND run_deadline < $2"
                )
                .bind("its run was lost (the replica running it stopped); checked again")
                .bind(Timestamp::now().as_micros())
                .bind(queue_id)
                .bind(db_id(check))
            )?;
            moved == 1
        })
    }

    /// A landing that cannot be written (an artifact deleted or archived, content its type no
    /// longer takes): the batch fails and its requests get `error` saying why, so the queue goes on.
    pub async fn fail_queue_landing(&self, queue_id: &str, token: i64, batch: u64, why: &str) -> Result<bool> {
        transaction!(self, |tx| {
            lock(tx, queue_id).await?;
            if !holds(tx, queue_id, token).await? {
                return Ok(false);
            }
            let found = batches::fetch_batch(tx, queue_id, batch).await?;
            if found.state.is_terminal() {
                return Ok(false);
            }
            end_batch(tx, queue_id, batch, BatchEvent::Fail).await?;
            abandon_checks_of(tx, queue_id, batch, "its batch could not land").await?;
            for request in found.requests {
                let state = request_state(tx, queue_id, request).await?;
                if state.after(RequestEvent::Fail).is_ok() {
                    let reason = format!("could not land: {why}");
                    transition(tx, queue_id, request, state, RequestEvent::Fail, "queue", &reason).await?;
                    q!(
                        tx,
                        execute,
                        sqlx::query("UPDATE queue_requests SET error = $1 WHERE queue_id = $2 AND id = $3")
                            .bind(&reason)
                            .bind(queue_id)
                            .bind(db_id(request))
                    )?;
                }
            }
            tx.effects.engine();
            true
        })
    }
}

async fn apply(
    tx: &mut Conn<'_>,
    queue_id: &str,
    token: i64,
    action: &Action<ArtifactKey>,
    ids: &[u64],
    deadline: Timestamp,
) -> Result<Applied> {
    match action {
        Action::Cancel { request, batch, rest } => {
            if let Some(batch) = batch {
                let current = batches::fetch_batch(tx, queue_id, batch.0).await?.state;
                if current != BatchState::Cancelling {
                    end_batch(tx, queue_id, batch.0, BatchEvent::Cancel).await?;
                }
                end_batch(tx, queue_id, batch.0, BatchEvent::ConfirmCancel).await?;
                abandon_checks_of(tx, queue_id, batch.0, "its batch was cancelled").await?;
            }
            let state = request_state(tx, queue_id, request.0).await?;
            transition(tx, queue_id, request.0, state, RequestEvent::ConfirmCancel, "queue", "cancelled").await?;
            if let (Some(rest), Some(&id)) = (rest, ids.first()) {
                let depends = depends_of(tx, queue_id, batch.map(|b| b.0)).await?;
                batches::insert_batch(tx, queue_id, id, &spec(rest, &depends), RequestEvent::Rebatch, "queue").await?;
            }
        }
        Action::Abandon { check } => {
            q!(
                tx,
                execute,
                sqlx::query(
                    "UPDATE queue_checks SET status = 'abandoned', output = $1, ended_at = $2
                     WHERE queue_id = $3 AND id = $4 AND status = 'running'"
                )
                .bind("abandoned: what it checked on is no longer what the batch would land on")
                .bind(Timestamp::now().as_micros())
                .bind(queue_id)
                .bind(db_id(check.0))
            )?;
        }
        Action::Land { batch, check } => land(tx, queue_id, batch.0, check.0).await?,
        Action::Split { batch, check, parts } => {
            end_batch(tx, queue_id, batch.0, BatchEvent::Fail).await?;
            abandon_checks_of(tx, queue_id, batch.0, "its batch failed and was split").await?;
            let depends = depends_of(tx, queue_id, Some(batch.0)).await?;
            for (part, &id) in parts.iter().zip(ids) {
                batches::insert_batch(tx, queue_id, id, &spec(part, &depends), RequestEvent::Rebatch, "queue").await?;
            }
            let _ = check;
        }
        Action::Reject { batch, request, check } => {
            end_batch(tx, queue_id, batch.0, BatchEvent::Fail).await?;
            abandon_checks_of(tx, queue_id, batch.0, "its batch failed").await?;
            let output = check_output(tx, queue_id, check.0).await?;
            let state = request_state(tx, queue_id, request.0).await?;
            let reason = format!("check {} failed: {}", check.0, summary(&output));
            transition(tx, queue_id, request.0, state, RequestEvent::Fail, "queue", &reason).await?;
            q!(
                tx,
                execute,
                sqlx::query("UPDATE queue_requests SET error = $1 WHERE queue_id = $2 AND id = $3")
                    .bind(&output)
                    .bind(queue_id)
                    .bind(db_id(request.0))
            )?;
        }
        Action::Form { batch, depends_on } => {
            let Some(&id) = ids.first() else { return Err(corrupt("no batch id reserved")) };
            batches::insert_batch(tx, queue_id, id, &spec(batch, depends_on), RequestEvent::Batch, "queue").await?;
        }
        Action::Check { batch, base, attempt } => {
            let run = start_check(tx, queue_id, token, batch.0, base, *attempt, deadline).await?;
            return Ok(Applied::Started(Box::new(run)));
        }
    }
    Ok(Applied::Done)
}

/// What a replacement batch depends on: its predecessor's dependencies (the planner recomputes
/// them from footprints on every pass; this is the record kept on the row).
async fn depends_of(tx: &mut Conn<'_>, queue_id: &str, batch: Option<u64>) -> Result<Vec<BatchId>> {
    let Some(batch) = batch else { return Ok(Vec::new()) };
    let found = batches::fetch_batch(tx, queue_id, batch).await?;
    Ok(found.depends_on.unwrap_or_default().into_iter().map(BatchId).collect())
}

async fn start_check(
    tx: &mut Conn<'_>,
    queue_id: &str,
    token: i64,
    batch: u64,
    base: &CheckBase<ArtifactKey>,
    attempt: u32,
    deadline: Timestamp,
) -> Result<CheckRun> {
    let queue = fetch_by_id(tx, queue_id).await?;
    let found = batches::fetch_batch(tx, queue_id, batch).await?;
    let (id,): (i64,) = q!(
        tx,
        fetch_one,
        sqlx::query_as("UPDATE queues SET next_check = next_check + 1 WHERE id = $1 RETURNING next_check - 1")
            .bind(queue_id)
    )?;
    let id = stored_id(id)?;
    let idempotency_key = format!("queue-{queue_id}-batch-{batch}-attempt-{attempt}");
    let now = Timestamp::now().as_micros();
    q!(
        tx,
        execute,
        sqlx::query(
            "INSERT INTO queue_checks (queue_id, id, batch_id, attempt, base, status, idempotency_key, run_token,
                 run_deadline, started_at)
             VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $9)"
        )
        .bind(queue_id)
        .bind(db_id(id))
        .bind(db_id(batch))
        .bind(i64::from(attempt))
        .bind(serde_json::to_string(base)?)
        .bind(&idempotency_key)
        .bind(token)
        .bind(deadline.as_micros())
        .bind(now)
    )?;
    if found.state != BatchState::Speculating
        && !batches::move_batch(tx, queue_id, batch, found.state, BatchEvent::Speculate).await?
    {
        return Err(StoreError::conflict(format!("batch {batch} changed meanwhile")));
    }
    for &request in &found.requests {
        if request_state(tx, queue_id, request).await? == RequestState::Batched {
            let reason = format!("check {id} of batch {batch} started (attempt {attempt})");
            transition(tx, queue_id, request, RequestState::Batched, RequestEvent::Process, "queue", &reason).await?;
        }
    }
    let ahead: Vec<u64> = base.requests.iter().map(|r| r.0).collect();
    let order: Vec<u64> = ahead.iter().copied().chain(found.requests.iter().copied()).collect();
    let changes = changes_of(tx, queue_id, &order).await?;
    let mut candidate: BTreeMap<ArtifactKey, Value> = BTreeMap::new();
    for request in &order {
        for change in &changes[request] {
            candidate.insert(change.artifact.clone(), change.content.clone());
        }
    }
    let footprint = Footprint::new(changes_of_batch(&changes, &found.requests));
    let candidate = footprint
        .keys()
        .iter()
        .filter_map(|k| candidate.get(k).map(|content| RequestChange { artifact: k.clone(), content: content.clone() }))
        .collect();
    let batch_changes = found.requests.iter().flat_map(|r| changes[r].iter().map(move |c| (*r, c.clone()))).collect();
    Ok(CheckRun {
        queue,
        check: id,
        batch,
        attempt,
        idempotency_key,
        requests: found.requests,
        ahead,
        candidate,
        changes: batch_changes,
        run_token: token,
    })
}

fn changes_of_batch(changes: &BTreeMap<u64, Vec<RequestChange>>, requests: &[u64]) -> Vec<ArtifactKey> {
    requests.iter().flat_map(|r| changes[r].iter().map(|c| c.artifact.clone())).collect()
}

/// Publishes and pins the batch's requests in queue order, in this one transaction.
async fn land(tx: &mut Conn<'_>, queue_id: &str, batch: u64, check: u64) -> Result<()> {
    let queue = fetch_by_id(tx, queue_id).await?;
    let found = batches::fetch_batch(tx, queue_id, batch).await?;
    let passed: Option<(String, i64)> = q!(
        tx,
        fetch_optional,
        sqlx::query_as("SELECT status, batch_id FROM queue_checks WHERE queue_id = $1 AND id = $2")
            .bind(queue_id)
            .bind(db_id(check))
    )?;
    if passed != Some(("passed".to_owned(), db_id(batch))) {
        return Err(StoreError::conflict(format!("check {check} of batch {batch} has not passed")));
    }
    if !batches::move_batch(tx, queue_id, batch, found.state, BatchEvent::Merge).await? {
        return Err(StoreError::conflict(format!("batch {batch} changed meanwhile")));
    }
    pins::lock_workspace(tx, &queue.workspace_id).await?;
    let environment = environments::fetch(tx, &queue.workspace_id, &queue.environment).await?;
    let owner = PinAuthority { owner: true, limited_to: Vec::new() };
    let changes = changes_of(tx, queue_id, &found.requests).await?;
    let (mut lineage,): (i64,) =
        q!(tx, fetch_one, sqlx::query_as("SELECT lineage FROM queues WHERE id = $1").bind(queue_id))?;
    let now = Timestamp::now().as_micros();
    for &request in &found.requests {
        let row: (Option<String>, String, String) = q!(
            tx,
            fetch_one,
            sqlx::query_as(
                "SELECT author_token_id, author_name, message FROM queue_requests WHERE queue_id = $1 AND id = $2"
            )
            .bind(queue_id)
            .bind(db_id(request))
        )?;
        let author = Actor { token_id: row.0.unwrap_or_default(), name: row.1 };
        let message = row.2;
        let reason = format!("queue {} request {request}: {message}", queue.name);
        let mut landed = BTreeMap::new();
        for change in &changes[&request] {
            let artifact = artifacts::fetch_writable(tx, &queue.workspace_id, &change.artifact).await?;
            let content = Content::parse(artifact.value_type, change.content.clone())?;
            let version =
                artifacts::insert_version(tx, &queue.workspace_id, &author, &artifact, &content, &message).await?;
            pins::apply(
                tx,
                &queue.workspace_id,
                &author,
                &owner,
                &artifact,
                &[(environment.clone(), Some(version.number))],
                &reason,
            )
            .await?;
            let head: Option<(i64,)> = q!(
                tx,
                fetch_optional,
                sqlx::query_as("SELECT lineage FROM queue_heads WHERE queue_id = $1 AND artifact = $2")
                    .bind(queue_id)
                    .bind(change.artifact.as_str())
            )?;
            let next = lineage_from_db(head.map_or(0, |(l,)| l)).then(RequestId(request));
            q!(
                tx,
                execute,
                sqlx::query(
                    "INSERT INTO queue_heads (queue_id, artifact, lineage) VALUES ($1, $2, $3)
                     ON CONFLICT (queue_id, artifact) DO UPDATE SET lineage = excluded.lineage"
                )
                .bind(queue_id)
                .bind(change.artifact.as_str())
                .bind(lineage_to_db(next))
            )?;
            landed.insert(change.artifact.as_str().to_owned(), version.number);
        }
        lineage = lineage_to_db(lineage_from_db(lineage).then(RequestId(request)));
        let state = request_state(tx, queue_id, request).await?;
        let why = format!("landed with batch {batch} after check {check} passed");
        transition(tx, queue_id, request, state, RequestEvent::Land, "queue", &why).await?;
        q!(
            tx,
            execute,
            sqlx::query(
                "UPDATE queue_requests SET landed_at = $1, landed_versions = $2 WHERE queue_id = $3 AND id = $4"
            )
            .bind(now)
            .bind(serde_json::to_string(&landed)?)
            .bind(queue_id)
            .bind(db_id(request))
        )?;
    }
    q!(tx, execute, sqlx::query("UPDATE queues SET lineage = $1 WHERE id = $2").bind(lineage).bind(queue_id))?;
    batches::move_batch(tx, queue_id, batch, BatchState::Merging, BatchEvent::Succeed).await?;
    abandon_checks_of(tx, queue_id, batch, "its batch landed").await?;
    let system = Actor { token_id: queue.created_by.token_id.clone(), name: format!("queue {}", queue.name) };
    record(
        tx,
        &queue.workspace_id,
        &system,
        Change::new("queue.land", AuditObject::Queue, &queue.name)
            .after(&serde_json::json!({"batch": batch, "check": check, "requests": found.requests})),
    )
    .await?;
    Ok(())
}

impl Store {
    /// Gives a running webhook check the hash of its receiver's callback token.
    pub async fn set_queue_check_callback(
        &self,
        queue_id: &str,
        check: u64,
        hash: &cutover_domain::TokenHash,
    ) -> Result<()> {
        transaction!(self, |tx| {
            q!(
                tx,
                execute,
                sqlx::query(
                    "UPDATE queue_checks SET callback_hash = $1 WHERE queue_id = $2 AND id = $3 AND status = 'running'"
                )
                .bind(hash.as_str())
                .bind(queue_id)
                .bind(db_id(check))
            )?;
        })
    }

    /// The callback hash of a running webhook check, by the queue's id; `None` when the check is
    /// not running (or is not a webhook check); not found when the queue has no such check.
    pub async fn queue_check_callback(&self, queue_id: &str, check: u64) -> Result<Option<cutover_domain::TokenHash>> {
        read!(self, |conn| {
            let row: Option<(String, Option<String>)> = q!(
                conn,
                fetch_optional,
                sqlx::query_as("SELECT status, callback_hash FROM queue_checks WHERE queue_id = $1 AND id = $2")
                    .bind(queue_id)
                    .bind(db_id(check))
            )?;
            let (status, hash) = row.ok_or_else(|| StoreError::NotFound(format!("check {check}")))?;
            Ok(hash.filter(|_| status == "running").map(cutover_domain::TokenHash::from_stored))
        })
    }
}
