//! `cutover audit`: who changed what, newest first.

use clap::Args;
use clap::builder::PossibleValuesParser;
use cutover_api::{AuditEvent, Page};
use cutover_client::AuditQuery;
use cutover_domain::AuditObject;
use serde_json::Value;

use super::Context;
use crate::output::{self, OutputFormat};

/// Most pages `--all` follows, so that a huge log cannot run forever.
const MAX_PAGES: usize = 1_000;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only events about this type of object (versions and pins are audited on their artifact).
    #[arg(long, value_name = "TYPE", value_parser = PossibleValuesParser::new(AuditObject::names()))]
    object_type: Option<String>,
    /// Only events about this object (a name, key or id).
    #[arg(long, value_name = "ID")]
    object_id: Option<String>,
    /// Only events by this actor: the name shown in the ACTOR column, or a token id.
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
    /// Only events whose action is this or starts with it (`pin.set`, or `pin.` for every pin
    /// change).
    #[arg(long, value_name = "ACTION")]
    action: Option<String>,
    /// Only events at or after this moment (RFC 3339, e.g. 2026-12-01T09:00:00Z).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only events before this moment (RFC 3339).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Events per page, 1 to 200 [default: 50]
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    /// Start after this point: the cursor printed under the previous page.
    #[arg(long, value_name = "CURSOR", conflicts_with = "all")]
    cursor: Option<String>,
    /// Every page, newest first, until the oldest event.
    #[arg(long)]
    all: bool,
}

pub async fn run(context: &Context, args: AuditArgs) -> anyhow::Result<()> {
    let mut query = AuditQuery {
        object_type: args.object_type,
        object_id: args.object_id,
        actor: args.actor,
        action: args.action,
        since: args.since,
        until: args.until,
        limit: args.limit,
        cursor: args.cursor,
    };
    let mut page = context.client.list_audit(&query).await?;
    if args.all {
        let mut items = std::mem::take(&mut page.items);
        let mut pages = 1;
        while let Some(cursor) = page.next_cursor.take().filter(|_| pages < MAX_PAGES) {
            query.cursor = Some(cursor);
            page = context.client.list_audit(&query).await?;
            items.append(&mut page.items);
            pages += 1;
        }
        page = Page { items, next_cursor: page.next_cursor };
    }
    if context.output == OutputFormat::Json {
        return output::json(&page);
    }
    if page.items.is_empty() {
        return output::emit("no events");
    }
    let rows = page.items.iter().map(|event| {
        [
            event.id.to_string(),
            event.at.clone(),
            event.actor.name.clone(),
            event.action.clone(),
            format!("{} {}", event.object_type, event.object_id),
            change(event),
        ]
    });
    output::emit(&output::table(["ID", "AT", "ACTOR", "ACTION", "OBJECT", "CHANGE"], rows))?;
    if let Some(cursor) = &page.next_cursor {
        output::note(&format!("(older events: --cursor {cursor}, or --all)"));
    }
    Ok(())
}

/// What an event changed, in a few words: for pins the environment, from → to and why.
pub fn change(event: &AuditEvent) -> String {
    let field = |value: &Option<Value>, name: &str| value.as_ref().and_then(|v| v.get(name)).cloned();
    let version = |value: &Option<Value>| field(value, "version").and_then(|v| v.as_i64()).map(|v| format!("v{v}"));
    match event.action.as_str() {
        "pin.set" | "pin.clear" => {
            let environment = field(&event.after, "environment")
                .or_else(|| field(&event.before, "environment"))
                .and_then(|e| e.as_str().map(str::to_owned))
                .unwrap_or_default();
            let from = version(&event.before).unwrap_or_else(|| "-".to_owned());
            let to = version(&event.after).unwrap_or_else(|| "-".to_owned());
            let reason = field(&event.after, "reason").and_then(|r| r.as_str().map(str::to_owned)).unwrap_or_default();
            let mut text = format!("{environment}: {from} → {to}");
            if !reason.is_empty() {
                text.push_str(&format!(" ({reason})"));
            }
            text
        }
        "artifact.archive" => "archived".to_owned(),
        "artifact.unarchive" => "unarchived".to_owned(),
        _ => match (&event.before, &event.after) {
            (None, Some(_)) => "created".to_owned(),
            (Some(_), None) => "removed".to_owned(),
            (Some(_), Some(_)) => "changed".to_owned(),
            (None, None) => String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, before: Option<Value>, after: Option<Value>) -> AuditEvent {
        AuditEvent {
            id: 1,
            at: "2026-12-01T00:00:00Z".into(),
            actor: cutover_api::Actor { token_id: "t".into(), name: "owner".into() },
            action: action.into(),
            object_type: "artifact".into(),
            object_id: "greeting".into(),
            before,
            after,
        }
    }

    #[test]
    fn a_pin_event_says_where_from_what_to_what_and_why() {
        let moved = event(
            "pin.set",
            Some(serde_json::json!({"environment": "production", "version": 3})),
            Some(serde_json::json!({"environment": "production", "version": 2, "reason": "rollback", "revision": 9})),
        );
        assert_eq!(change(&moved), "production: v3 → v2 (rollback)");
        let first = event("pin.set", None, Some(serde_json::json!({"environment": "dev", "version": 1, "reason": ""})));
        assert_eq!(change(&first), "dev: - → v1");
        let cleared = event("pin.clear", Some(serde_json::json!({"environment": "dev", "version": 1})), None);
        assert_eq!(change(&cleared), "dev: v1 → -");
        assert_eq!(change(&event("token.create", None, Some(serde_json::json!({})))), "created");
    }

    #[test]
    fn archiving_says_archived_and_deleting_says_removed() {
        let state = Some(serde_json::json!({"key": "greeting"}));
        assert_eq!(change(&event("artifact.archive", state.clone(), state.clone())), "archived");
        assert_eq!(change(&event("artifact.unarchive", state.clone(), state.clone())), "unarchived");
        assert_eq!(change(&event("artifact.delete", state, None)), "removed");
    }
}
