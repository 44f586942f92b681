//! `cutover artifact`: versioned things, such as prompts and configs.

use clap::{Subcommand, ValueEnum};
use cutover_api::{Artifact, CreateArtifact, Page, UpdateArtifact};
use cutover_client::PageQuery;

use super::Context;
use crate::failure::usage;
use crate::output::{self, OutputFormat, or_dash};

#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// Lists artifacts by key.
    List {
        /// Artifacts per page (the server's default when absent).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// Follows every page instead of showing the first.
        #[arg(long)]
        all: bool,
    },
    /// Shows one artifact.
    Show { key: String },
    /// Creates an artifact; its key and value type never change.
    Create {
        /// Lowercase letters, digits and `. _ / -`, e.g. `prompts/welcome`.
        key: String,
        /// What every version's content must be.
        #[arg(long = "type", value_enum, value_name = "TYPE")]
        value_type: ValueType,
        /// What the artifact is: prompt, config, template, schema... (the server defaults to
        /// config).
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Changes an artifact's kind or description.
    Update {
        key: String,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ValueType {
    String,
    Json,
    Boolean,
    Number,
}

impl ValueType {
    fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Json => "json",
            Self::Boolean => "boolean",
            Self::Number => "number",
        }
    }
}

pub async fn run(context: &Context, command: ArtifactCommand) -> anyhow::Result<()> {
    let client = &context.client;
    match command {
        ArtifactCommand::List { limit, all } => {
            let page = if all {
                all_artifacts(context, limit).await?
            } else {
                let query = PageQuery { limit, cursor: None };
                client.list_artifacts(&query).await?
            };
            list(context, &page)
        }
        ArtifactCommand::Show { key } => show(context, &client.get_artifact(&key).await?),
        ArtifactCommand::Create { key, value_type, kind, description } => {
            let body = CreateArtifact { key, value_type: value_type.as_str().to_owned(), kind, description };
            show(context, &client.create_artifact(&body).await?)
        }
        ArtifactCommand::Update { key, kind, description } => {
            if kind.is_none() && description.is_none() {
                return Err(usage("nothing to update: give --kind or --description"));
            }
            let body = UpdateArtifact { kind, description };
            show(context, &client.update_artifact(&key, &body).await?)
        }
    }
}

/// Every page, as one page without a cursor.
async fn all_artifacts(context: &Context, limit: Option<u32>) -> anyhow::Result<Page<Artifact>> {
    let mut items = Vec::new();
    let mut query = PageQuery { limit, cursor: None };
    loop {
        let page = context.client.list_artifacts(&query).await?;
        items.extend(page.items);
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => {
                return Ok(Page { items, next_cursor: None });
            }
        }
    }
}

fn list(context: &Context, page: &Page<Artifact>) -> anyhow::Result<()> {
    if context.output == OutputFormat::Json {
        return output::json(page);
    }
    if page.items.is_empty() {
        return output::emit("no artifacts");
    }
    let rows = page.items.iter().map(|artifact| {
        [
            artifact.key.clone(),
            artifact.value_type.clone(),
            artifact.kind.clone(),
            latest(artifact),
            or_dash(&artifact.description),
        ]
    });
    output::emit(&output::table(["KEY", "TYPE", "KIND", "LATEST", "DESCRIPTION"], rows))?;
    if page.next_cursor.is_some() {
        output::note("(more artifacts: use --all to list every page)");
    }
    Ok(())
}

fn show(context: &Context, artifact: &Artifact) -> anyhow::Result<()> {
    if context.output == OutputFormat::Json {
        return output::json(artifact);
    }
    output::emit(&output::fields(&[
        ("key", artifact.key.clone()),
        ("type", artifact.value_type.clone()),
        ("kind", artifact.kind.clone()),
        ("description", or_dash(&artifact.description)),
        ("latest version", latest(artifact)),
        ("created", artifact.created_at.clone()),
        ("updated", artifact.updated_at.clone()),
    ]))
}

fn latest(artifact: &Artifact) -> String {
    match artifact.latest_version {
        0 => "-".to_owned(),
        n => n.to_string(),
    }
}
