//! `cutover resolve`: what is live for an artifact in an environment, as clients see it.

use clap::Args;
use serde_json::Value;

use super::Context;
use crate::output::{self, OutputFormat};

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Artifact key.
    key: String,
    /// The environment (an `sdk` token is bound to one and may leave it out).
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
}

pub async fn run(context: &Context, args: ResolveArgs) -> anyhow::Result<()> {
    let resolved = context.client.resolve(&args.key, args.env.as_deref()).await?;
    if context.output == OutputFormat::Json {
        return output::json(&resolved);
    }
    let version = resolved.version.map_or_else(|| "- (nothing pinned)".to_owned(), |v| v.to_string());
    output::emit(&output::fields(&[
        ("artifact", resolved.artifact.clone()),
        ("environment", resolved.environment.clone()),
        ("version", version),
        ("type", resolved.value_type.clone()),
        ("revision", resolved.revision.to_string()),
    ]))?;
    let value = match &resolved.value {
        None => "(no value: clients fall back to their default)".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => serde_json::to_string_pretty(other)?,
    };
    output::emit(&format!("\n{value}"))
}
