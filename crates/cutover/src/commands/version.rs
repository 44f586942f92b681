//! `cutover version`: publishing and reading the immutable versions of an artifact.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use cutover_api::{CreateVersion, SetEnvironments, Version};
use cutover_client::{ClientError, PageQuery};
use serde_json::{Value, json};

use super::{Context, diff, pin, read_file, rights};
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
        /// Version number (`3` or `v3`).
        #[arg(value_name = "N", value_parser = crate::args::version_number, allow_negative_numbers = true)]
        number: i64,
        /// The content alone, byte for byte as hashed (text as is, JSON compact), for pipes:
        /// `cutover version show KEY 3 --raw | sha256sum` gives the version's sha256.
        #[arg(long)]
        raw: bool,
    },
    /// What changed between two versions: a line diff for text, a field diff for JSON.
    #[command(after_help = "Examples:\n  cutover version diff prompts/greeting 2 3\n  \
                            cutover version diff prompts/greeting 3 --env production   (live in production → 3)\n  \
                            cutover version diff prompts/greeting --env production     (live in production → latest)")]
    Diff {
        /// Artifact key.
        key: String,
        /// Two versions, the older first; with --env, at most one (the latest when absent).
        #[arg(value_name = "VERSION", num_args = 0..=2, value_parser = crate::args::version_number, allow_negative_numbers = true)]
        versions: Vec<i64>,
        /// Compares what is live in this environment with VERSION.
        #[arg(long, value_name = "ENV")]
        env: Option<String>,
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
        /// Publishes only if the content differs from the latest version's; otherwise nothing is
        /// published (nor pinned) and the latest version is shown.
        #[arg(long)]
        if_changed: bool,
    },
    /// Replaces the set of environments a version is live in: those listed move to it, those it
    /// had and are not listed are unpinned.
    Environments {
        /// Artifact key.
        key: String,
        /// Version number (`3` or `v3`).
        #[arg(value_name = "N", value_parser = crate::args::version_number, allow_negative_numbers = true)]
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
        VersionCommand::Show { key, number, raw: false } => {
            show(context, &client.get_version(&key, number).await?, &[])
        }
        VersionCommand::Show { key, number, raw: true } => {
            let version = client.get_version(&key, number).await?;
            match &version.content {
                Value::String(text) => output::emit_raw(text),
                other => output::emit_raw(&serde_json::to_string(other)?),
            }
        }
        VersionCommand::Diff { key, versions, env } => diff(context, &key, &versions, env.as_deref()).await,
        VersionCommand::Create { key, content, message, environments, move_pins, if_changed } => {
            let content = read_content(context, &key, content).await?;
            let latest = match client.get_artifact(&key).await?.latest_version {
                0 => None,
                number => Some(client.get_version(&key, number).await?),
            };
            if if_changed && let Some(latest) = latest.as_ref().filter(|latest| latest.content == content) {
                output::note(&format!(
                    "nothing was published{}: version {} of {key} already has this content",
                    if environments.is_empty() { "" } else { " or pinned" },
                    latest.number
                ));
                return show(context, latest, &[]);
            }
            if !environments.is_empty() {
                rights::check_pin_rights(context, &environments).await?;
            }
            let body = CreateVersion {
                content,
                message,
                environments: (!environments.is_empty()).then(|| environments.clone()),
                move_pins,
            };
            let version = client.create_version(&key, &body).await.map_err(|err| match err {
                ClientError::Api { status: 409, code, details, .. } if !move_pins => {
                    let message = taken_message(details.as_ref());
                    anyhow::Error::new(ClientError::Api { status: 409, code, message, details })
                }
                err => failure::explain(err, 409, || "nothing was published".to_owned()),
            })?;
            if let Some(latest) = latest.filter(|latest| latest.sha256 == version.sha256) {
                output::note(&format!(
                    "note: version {} has the same content as version {} (--if-changed publishes only when it \
                     differs)",
                    version.number, latest.number
                ));
            }
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

/// The server's refusal to publish into taken environments, in the CLI's words: which version
/// holds each, and the flag that moves them.
fn taken_message(details: Option<&Value>) -> String {
    let taken: Vec<String> = details
        .and_then(|details| details["environments"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|taken| {
            let environment = taken["environment"].as_str()?;
            Some(match taken["version"].as_i64() {
                Some(version) => format!("{environment} (version {version})"),
                None => environment.to_owned(),
            })
        })
        .collect();
    let held = if taken.is_empty() { "some of them".to_owned() } else { taken.join(", ") };
    format!(
        "nothing was published: another version is live in {held}; add --move to make the new version live there \
         instead"
    )
}

/// `version diff`: from the older version (or what is live in `env`) to the newer one.
async fn diff(context: &Context, key: &str, versions: &[i64], env: Option<&str>) -> anyhow::Result<()> {
    let client = &context.client;
    let (from, to) = match (env, versions) {
        (None, [from, to]) => (*from, *to),
        (Some(env), [] | [_]) => {
            let live = client.get_pin(key, env).await.map_err(|err| {
                failure::explain(err, 404, || format!("nothing of {key} is live in {env} to compare with"))
            })?;
            let to = match versions {
                [to] => *to,
                _ => client.get_artifact(key).await?.latest_version,
            };
            (live.version, to)
        }
        (None, _) => return Err(usage("give two versions to compare (`2 3`), or --env ENV and at most one")),
        (Some(_), _) => return Err(usage("with --env, give at most one version: it is compared with what is live")),
    };
    let (old, new) = (client.get_version(key, from).await?, client.get_version(key, to).await?);
    let label = |number: i64| match env {
        Some(env) if number == from => format!("{key} v{number} (live in {env})"),
        _ => format!("{key} v{number}"),
    };
    let side = |number: i64| match env {
        Some(env) if number == from => json!({"version": number, "environment": env}),
        _ => json!({"version": number}),
    };
    let identical = old.sha256 == new.sha256;
    let (text, mut answer) = match (&old.content, &new.content) {
        (Value::String(before), Value::String(after)) => {
            let lines = diff::lines(before, after, &label(from), &label(to));
            (lines.clone(), json!({"diff": lines}))
        }
        (before, after) => {
            let changes = diff::fields(before, after);
            (diff::render_fields(&changes), json!({"changes": changes}))
        }
    };
    answer["artifact"] = json!(key);
    answer["from"] = side(from);
    answer["to"] = side(to);
    answer["identical"] = json!(identical);
    if context.output == OutputFormat::Json {
        return output::json(&answer);
    }
    if identical {
        return output::emit(&format!("{} and {} have the same content", label(from), label(to)));
    }
    if matches!(old.content, Value::String(_)) {
        return output::emit(text.trim_end());
    }
    output::emit(&format!("{} → {}\n{}", label(from), label(to), text.trim_end()))
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
