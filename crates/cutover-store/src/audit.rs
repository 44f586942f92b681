use cutover_domain::{AuditObject, Cursor, PageLimit, Timestamp};
use serde::Serialize;
use serde_json::Value;

use crate::db::{Conn, q, read};
use crate::{Actor, AuditEvent, AuditFilter, Page, Result, Store, StoreError};

/// One change, written to the audit log in the transaction that makes it.
pub(crate) struct Change<'a> {
    pub action: &'static str,
    pub object_type: AuditObject,
    pub object_id: &'a str,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl<'a> Change<'a> {
    pub fn new(action: &'static str, object_type: AuditObject, object_id: &'a str) -> Self {
        Self { action, object_type, object_id, before: None, after: None }
    }

    pub fn before(mut self, state: &impl Serialize) -> Self {
        self.before = serde_json::to_value(state).ok();
        self
    }

    pub fn after(mut self, state: &impl Serialize) -> Self {
        self.after = serde_json::to_value(state).ok();
        self
    }
}

pub(crate) async fn record(conn: &mut Conn<'_>, workspace_id: &str, actor: &Actor, change: Change<'_>) -> Result<()> {
    let before = change.before.map(|v| v.to_string());
    let after = change.after.map(|v| v.to_string());
    q!(
        conn,
        execute,
        sqlx::query(
            "INSERT INTO audit_events
                 (workspace_id, at, actor_token_id, actor_name, action, object_type, object_id, before, after)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )
        .bind(workspace_id)
        .bind(Timestamp::now().as_micros())
        .bind(&actor.token_id)
        .bind(&actor.name)
        .bind(change.action)
        .bind(change.object_type.as_str())
        .bind(change.object_id)
        .bind(&before)
        .bind(&after)
    )?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    seq: i64,
    at: i64,
    actor_token_id: String,
    actor_name: String,
    action: String,
    object_type: String,
    object_id: String,
    before: Option<String>,
    after: Option<String>,
}

impl AuditRow {
    fn into_event(self) -> Result<AuditEvent> {
        let parse = |text: Option<String>| -> Result<Option<Value>> {
            text.map(|t| serde_json::from_str(&t).map_err(StoreError::from)).transpose()
        };
        Ok(AuditEvent {
            seq: self.seq,
            at: Timestamp::from_micros(self.at),
            actor: Actor { token_id: self.actor_token_id, name: self.actor_name },
            action: self.action,
            object_type: self.object_type,
            object_id: self.object_id,
            before: parse(self.before)?,
            after: parse(self.after)?,
        })
    }
}

impl Store {
    /// The workspace's audit log, newest first, filtered in the query (every condition of
    /// `filter` must hold), so that pages are full whatever the filter.
    pub async fn list_audit(
        &self,
        workspace_id: &str,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: PageLimit,
    ) -> Result<Page<AuditEvent>> {
        let before = before.unwrap_or(i64::MAX);
        let rows: Vec<AuditRow> = read!(self, |conn| {
            q!(
                conn,
                fetch_all,
                sqlx::query_as(
                    "SELECT seq, at, actor_token_id, actor_name, action, object_type, object_id, before, after
                 FROM audit_events
                 WHERE workspace_id = $1 AND seq < $2
                   AND ($3 IS NULL OR object_type = $3)
                   AND ($4 IS NULL OR object_id = $4)
                   AND ($5 IS NULL OR actor_name = $5 OR actor_token_id = $5)
                   AND ($7 IS NULL OR substr(action, 1, length(CAST($7 AS TEXT))) = $7)
                   AND ($8 IS NULL OR at >= $8)
                   AND ($9 IS NULL OR at < $9)
                 ORDER BY seq DESC
                 LIMIT $6"
                )
                .bind(workspace_id)
                .bind(before)
                .bind(filter.object_type.map(AuditObject::as_str))
                .bind(&filter.object_id)
                .bind(&filter.actor)
                .bind(limit.probe())
                .bind(&filter.action)
                .bind(filter.since.map(|t| t.as_micros()))
                .bind(filter.until.map(|t| t.as_micros()))
            )
        })?;
        let mut items = rows.into_iter().map(AuditRow::into_event).collect::<Result<Vec<_>>>()?;
        let next = paginate(&mut items, limit).map(|last| Cursor::Before(last.seq));
        Ok(Page { items, next })
    }
}

/// Trims a probe-sized fetch to the limit; returns the last kept item when another page exists.
pub(crate) fn paginate<T>(items: &mut Vec<T>, limit: PageLimit) -> Option<&T> {
    let limit = limit.get() as usize;
    if items.len() > limit {
        items.truncate(limit);
        items.last()
    } else {
        None
    }
}
