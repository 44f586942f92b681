//! The audit log: filters by actor, object, action and time range (all applied by the store's
//! query, so pages are full), paged newest first, each entry's before/after shown as a field
//! diff. `at` (from a time-travel cell) marks the entry of that
//! moment.

use axum::extract::{Query, State};
use axum::response::Response;
use cutover_domain::diff::{FieldChange, fields};
use cutover_domain::{Access, Cursor, PageLimit};
use cutover_store::AuditFilter;
use serde_json::Value;

use super::matrix::urlencode;
use super::page::{Layout, UiError, ok, when};
use super::session::Session;
use crate::AppState;
use crate::error::ApiError;

#[derive(Debug, Default, serde::Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    object_type: String,
    #[serde(default)]
    object_id: String,
    /// Actions starting with this (`pin.`, `version.create`…).
    #[serde(default)]
    action: String,
    /// From this moment (UTC; a `datetime-local` value or RFC 3339), inclusive.
    #[serde(default)]
    since: String,
    /// Until this moment, exclusive.
    #[serde(default)]
    until: String,
    cursor: Option<String>,
    /// Marks the entries made at this moment (microseconds).
    at: Option<i64>,
}

pub struct Entry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub changes: Vec<FieldChange>,
    pub marked: bool,
}

#[derive(askama::Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    entries: Vec<Entry>,
    types: Vec<&'static str>,
    actor: String,
    object_type: String,
    object_id: String,
    action: String,
    since: String,
    until: String,
    next: Option<String>,
}

/// A `datetime-local` value (read as UTC) or RFC 3339 as RFC 3339; empty as `None`.
fn moment(text: &str) -> Option<String> {
    let text = text.trim();
    match text.len() {
        0 => None,
        16 => Some(format!("{text}:00Z")),
        19 => Some(format!("{text}Z")),
        _ => Some(text.to_owned()),
    }
}

fn optional(text: &str) -> Result<Option<String>, UiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    cutover_domain::check_label("filter", text)?;
    Ok(Some(text.to_owned()))
}

pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<AuditQuery>,
) -> Result<Response, UiError> {
    session.auth.require(Access::Read)?;
    let object_type = match optional(&query.object_type)? {
        None => None,
        Some(raw) => Some(raw.parse::<cutover_domain::AuditObject>().map_err(|_| {
            let known = cutover_domain::AuditObject::names().collect::<Vec<_>>().join(", ");
            ApiError::bad_request("invalid_query", format!("object_type {raw:?} is not one of {known}"))
        })?),
    };
    let (since, until) =
        crate::api::audit::time_range(moment(&query.since).as_deref(), moment(&query.until).as_deref())?;
    let filter = AuditFilter {
        object_type,
        object_id: optional(&query.object_id)?,
        actor: optional(&query.actor)?,
        action: optional(&query.action)?,
        since,
        until,
    };
    let before = query.cursor.as_deref().map(|c| Cursor::parse(c)?.before()).transpose()?;
    let page = state.store.list_audit(session.auth.workspace_id(), &filter, before, PageLimit::default()).await?;
    let action = query.action.trim().to_owned();
    let entries = page
        .items
        .into_iter()
        .map(|e| Entry {
            seq: e.seq,
            marked: query.at.is_some_and(|at| (e.at.as_micros() - at).abs() < 1_000_000),
            at: when(e.at),
            actor: e.actor.name,
            action: e.action,
            object: format!("{} {}", e.object_type, e.object_id),
            changes: changes(e.before, e.after),
        })
        .collect();
    let next = page.next.map(|cursor| {
        format!(
            "/audit?actor={}&object_type={}&object_id={}&action={}&since={}&until={}&cursor={}",
            urlencode(&query.actor),
            urlencode(&query.object_type),
            urlencode(&query.object_id),
            urlencode(&action),
            urlencode(&query.since),
            urlencode(&query.until),
            urlencode(&cursor.encode())
        )
    });
    ok(&AuditPage {
        layout: Layout::new(&session, "audit", "Audit log"),
        entries,
        types: cutover_domain::AuditObject::names().collect(),
        actor: query.actor,
        object_type: query.object_type,
        object_id: query.object_id,
        action,
        since: query.since,
        until: query.until,
        next,
    })
}

/// What an entry changed, field by field; a created or deleted object lists its fields, not a
/// whole value against nothing.
fn changes(before: Option<Value>, after: Option<Value>) -> Vec<FieldChange> {
    let one_sided = before.is_none() || after.is_none();
    let empty = || Value::Object(serde_json::Map::new());
    fields(&before.unwrap_or_else(empty), &after.unwrap_or_else(empty))
        .into_iter()
        .filter(|change| !(one_sided && change.path.is_empty()))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::changes;

    #[test]
    fn a_creation_lists_its_fields_and_a_change_what_moved() {
        let created = changes(None, Some(json!({"key": "k", "kind": "prompt"})));
        let paths: Vec<_> = created.iter().map(|c| (c.path.as_str(), c.from.is_none())).collect();
        assert_eq!(paths, [("key", true), ("kind", true)]);
        let moved = changes(Some(json!({"version": 1})), Some(json!({"version": 2})));
        assert_eq!((moved.len(), moved[0].path.as_str()), (1, "version"));
    }
}
