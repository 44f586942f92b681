//! `cutover resolve`: what is live for an artifact in an environment, as clients see it.

use clap::Args;
use cutover_client::ClientError;
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
    /// Who is asking: where an experiment runs, picks (and records) the user's variant.
    #[arg(long, value_name = "KEY")]
    targeting_key: Option<String>,
}

pub async fn run(context: &Context, args: ResolveArgs) -> anyhow::Result<()> {
    let resolved =
        context.client.resolve(&args.key, args.env.as_deref(), args.targeting_key.as_deref()).await.map_err(|err| {
            match &err {
                ClientError::Api { code, .. } if code == "targeting_key_missing" => {
                    anyhow::Error::new(err).context("pass --targeting-key KEY")
                }
                _ => err.into(),
            }
        })?;
    if context.output == OutputFormat::Json {
        return output::json(&resolved);
    }
    let version = resolved.version.map_or_else(|| "- (nothing pinned)".to_owned(), |v| v.to_string());
    let mut fields = vec![
        ("artifact", resolved.artifact.clone()),
        ("environment", resolved.environment.clone()),
        ("version", version),
        ("type", resolved.value_type.clone()),
        ("revision", resolved.revision.to_string()),
    ];
    if let Some(experiment) = &resolved.experiment {
        fields.push(("experiment", experiment.clone()));
    }
    if let Some(variant) = &resolved.variant {
        fields.push(("variant", variant.clone()));
    }
    output::emit(&output::fields(&fields))?;
    let value = match &resolved.value {
        None => "(no value: clients fall back to their default)".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => serde_json::to_string_pretty(other)?,
    };
    output::emit(&format!("\n{value}"))
}
