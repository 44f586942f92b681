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
        /// Lists the archived artifacts (alone) instead of the others.
        #[arg(long)]
        archived: bool,
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
    /// Archives an artifact: hidden from lists and resolve (OFREP answers FLAG_NOT_FOUND), its
    /// versions, pins and history kept; refused while running work uses it.
    Archive { key: String },
    /// Brings an archived artifact back, with the pins it had.
    Unarchive { key: String },
    /// Deletes an artifact and its versions; refused while it is pinned anywhere or an
    /// experiment, rollout or pool refers to it (archive it instead). Asks first on a terminal.
    Delete {
        key: String,
        /// Do not ask (scripts must say so: without a terminal, delete is refused unless --yes).
        #[arg(long)]
        yes: bool,
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
        ArtifactCommand::List { limit, all, archived } => {
            let page = if all {
                all_artifacts(context, limit, archived).await?
            } else {
                let query = PageQuery { limit, cursor: None };
                list_page(context, &query, archived).await?
            };
            list(context, &page, archived)
        }
        ArtifactCommand::Archive { key } => show(context, &client.archive_artifact(&key).await?),
        ArtifactCommand::Unarchive { key } => show(context, &client.unarchive_artifact(&key).await?),
        ArtifactCommand::Delete { key, yes } => delete(context, &key, yes).await,
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

async fn delete(context: &Context, key: &str, yes: bool) -> anyhow::Result<()> {
    let artifact = context.client.get_artifact(key).await?;
    if !yes {
        let versions = match artifact.latest_version {
            1 => "its only version".to_owned(),
            n => format!("its {n} versions"),
        };
        super::pin::confirm(&format!(
            "this deletes artifact {key} and {versions} for good (the audit log keeps the record)"
        ))?;
    }
    context.client.delete_artifact(key).await?;
    match context.output {
        OutputFormat::Json => output::json(&serde_json::json!({"deleted": artifact})),
        OutputFormat::Table => output::emit(&format!("deleted artifact {key}")),
    }
}

async fn list_page(context: &Context, query: &PageQuery, archived: bool) -> anyhow::Result<Page<Artifact>> {
    Ok(if archived {
        context.client.list_archived_artifacts(query).await?
    } else {
        context.client.list_artifacts(query).await?
    })
}

/// Every page, as one page without a cursor.
pub(crate) async fn all_artifacts(
    context: &Context,
    limit: Option<u32>,
    archived: bool,
) -> anyhow::Result<Page<Artifact>> {
    let mut items = Vec::new();
    let mut query = PageQuery { limit, cursor: None };
    loop {
        let page = list_page(context, &query, archived).await?;
        items.extend(page.items);
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => {
                return Ok(Page { items, next_cursor: None });
            }
        }
    }
}

fn list(context: &Context, page: &Page<Artifact>, archived: bool) -> anyhow::Result<()> {
    if context.output == OutputFormat::Json {
        return output::json(page);
    }
    if page.items.is_empty() {
        return output::emit(if archived { "no archived artifacts" } else { "no artifacts" });
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
        ("archived", artifact.archived_at.clone().unwrap_or_else(|| "no".to_owned())),
    ]))
}

fn latest(artifact: &Artifact) -> String {
    match artifact.latest_version {
        0 => "-".to_owned(),
        n => n.to_string(),
    }
}
