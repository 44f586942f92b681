//! `cutover version`: publishing and reading the immutable versions of an artifact.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use cutover_api::{CreateVersion, SetEnvironments, Version};
use cutover_client::PageQuery;
use serde_json::Value;

use super::{Context, pin, read_file};
use crate::failure::{self, usage};
use crate::output::{self, OutputFormat, or_dash};

/// How many characters of a sha256 tables show.
const SHORT_SHA: usize = 12;

#[derive(Debug, Subcommand)]
pub enum VersionCommand {
    /// Lists an artifact's versions, newest first.
    List {
        /// Artifact key.
        key: String,
        /// Versions to show (the server's default when absent).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Shows one version and its content.
    Show {
        /// Artifact key.
        key: String,
        /// Version number.
        #[arg(value_name = "N")]
        number: i64,
    },
    /// Publishes the next version of an artifact.
    Create {
        /// Artifact key.
        key: String,
        #[command(flatten)]
        content: ContentSource,
        /// Why this version exists.
        #[arg(long, short)]
        message: Option<String>,
        /// Makes the new version live in this environment at once; repeat for several. Refused
        /// (and nothing published) if another version is live in any of them, unless --move.
        #[arg(long = "env", value_name = "ENV")]
        environments: Vec<String>,
        /// Moves the environments given with --env from the versions live there.
        #[arg(long = "move", requires = "environments")]
        move_pins: bool,
    },
    /// Replaces the set of environments a version is live in: those listed move to it, those it
    /// had and are not listed are unpinned.
    Environments {
        /// Artifact key.
        key: String,
        /// Version number.
        #[arg(value_name = "N")]
        number: i64,
        /// An environment the version is to be live in; repeat for several.
        #[arg(long = "env", value_name = "ENV", required_unless_present = "clear", conflicts_with = "clear")]
        environments: Vec<String>,
        /// Unpins the version from every environment.
        #[arg(long)]
        clear: bool,
        /// Why, for the history and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Exactly one way to give the content.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ContentSource {
    /// The content as JSON: '"hello"', '42', 'true', '{"a": 1}'.
    #[arg(long, value_name = "JSON")]
    content: Option<String>,
    /// A file holding the content (`-` for stdin): its text as is for a `string` artifact,
    /// parsed as JSON for the other types.
    #[arg(long, value_name = "PATH")]
    content_file: Option<PathBuf>,
    /// The content as plain text, for a `string` artifact.
    #[arg(long, value_name = "STRING")]
    text: Option<String>,
}

pub async fn run(context: &Context, command: VersionCommand) -> anyhow::Result<()> {
    let client = &context.client;
    match command {
        VersionCommand::List { key, limit } => {
            let query = PageQuery { limit, cursor: None };
            let page = client.list_versions(&key, &query).await?;
            if context.output == OutputFormat::Json {
                return output::json(&page);
            }
            if page.items.is_empty() {
                return output::emit(&format!("{key} has no versions yet"));
            }
            let rows = page.items.iter().map(|version| {
                [
                    version.number.to_string(),
                    version.sha256.chars().take(SHORT_SHA).collect(),
                    version.author.name.clone(),
                    version.created_at.clone(),
                    or_dash(&version.message),
                ]
            });
            output::emit(&output::table(["VERSION", "SHA256", "AUTHOR", "CREATED", "MESSAGE"], rows))?;
            if page.next_cursor.is_some() {
                output::note("(older versions not shown: raise --limit to see more)");
            }
            Ok(())
        }
        VersionCommand::Show { key, number } => show(context, &client.get_version(&key, number).await?, &[]),
        VersionCommand::Create { key, content, message, environments, move_pins } => {
            let content = read_content(context, &key, content).await?;
            let body = CreateVersion {
                content,
                message,
                environments: (!environments.is_empty()).then(|| environments.clone()),
                move_pins,
            };
            let version = client.create_version(&key, &body).await.map_err(|err| {
                failure::explain(err, 409, || {
                    if environments.is_empty() || move_pins {
                        "nothing was published".to_owned()
                    } else {
                        "nothing was published (--move takes the environments over)".to_owned()
                    }
                })
            })?;
            show(context, &version, &environments)
        }
        VersionCommand::Environments { key, number, environments, clear: _, reason } => {
            // With --clear, `environments` is empty: clap refuses both together.
            let body = SetEnvironments { environments, reason };
            let write = client.set_version_environments(&key, number, &body).await?;
            let unchanged = match body.environments.as_slice() {
                [] => format!("version {number} of {key} is not live anywhere: nothing changed"),
                listed => {
                    format!("version {number} of {key} is live in exactly {}: nothing changed", listed.join(", "))
                }
            };
            pin::show_write(context, &write, &unchanged)
        }
    }
}

async fn read_content(context: &Context, key: &str, source: ContentSource) -> anyhow::Result<Value> {
    if let Some(text) = source.text {
        return Ok(Value::String(text));
    }
    if let Some(json) = source.content {
        return serde_json::from_str(&json)
            .map_err(|err| usage(format!("--content is not valid JSON ({err}); use --text to give a plain string")));
    }
    let Some(path) = source.content_file else {
        return Err(usage("give --content, --content-file or --text"));
    };
    // The artifact's type decides whether the file is text or JSON, so ask before reading.
    let artifact = context.client.get_artifact(key).await?;
    let text = read_file(&path)?;
    if artifact.value_type == "string" {
        return Ok(Value::String(text));
    }
    serde_json::from_str(&text).map_err(|err| {
        usage(format!("{} is not valid JSON ({err}), which a {} artifact needs", path.display(), artifact.value_type))
    })
}

/// One version; `live_in` lists the environments it was just pinned to, if any.
fn show(context: &Context, version: &Version, live_in: &[String]) -> anyhow::Result<()> {
    if context.output == OutputFormat::Json {
        return output::json(version);
    }
    let author = format!("{} ({})", version.author.name, version.author.token_id);
    let mut fields = vec![
        ("artifact", version.artifact.clone()),
        ("version", version.number.to_string()),
        ("sha256", version.sha256.clone()),
        ("author", author),
        ("created", version.created_at.clone()),
        ("message", or_dash(&version.message)),
    ];
    if !live_in.is_empty() {
        fields.push(("live in", live_in.join(", ")));
    }
    output::emit(&output::fields(&fields))?;
    let content = match &version.content {
        Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other)?,
    };
    output::emit(&format!("\n{content}"))
}
