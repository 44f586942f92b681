//! `cutover audit`: who changed what, newest first.

use clap::Args;
use cutover_client::AuditQuery;

use super::Context;
use crate::output::{self, OutputFormat};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only events about this type of object: environment, artifact, version, token...
    #[arg(long, value_name = "T")]
    object_type: Option<String>,
    /// Only events about this object (a name, key or id).
    #[arg(long, value_name = "ID")]
    object_id: Option<String>,
    /// Only events by this token.
    #[arg(long, value_name = "TOKEN_ID")]
    actor: Option<String>,
    /// Events to show (the server's default when absent).
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
}

pub async fn run(context: &Context, args: AuditArgs) -> anyhow::Result<()> {
    let query = AuditQuery {
        object_type: args.object_type,
        object_id: args.object_id,
        actor: args.actor,
        limit: args.limit,
        cursor: None,
    };
    let page = context.client.list_audit(&query).await?;
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
        ]
    });
    output::emit(&output::table(["ID", "AT", "ACTOR", "ACTION", "OBJECT"], rows))?;
    if page.next_cursor.is_some() {
        output::note("(older events not shown: raise --limit to see more)");
    }
    Ok(())
}
