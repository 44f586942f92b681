//! `cutover pin`, `unpin`, `pins`, `history`, `promote` and `rollback`: which version of an
//! artifact is live in each environment, and moving it.

use std::io::{self, IsTerminal as _};

use anyhow::Context as _;
use clap::Args;
use cutover_api::{Page, Pin, PinChange, PinWrite, Promote, SetPin};
use cutover_client::PageQuery;

use super::Context;
use crate::failure;
use crate::output::{self, OutputFormat, or_dash};

#[derive(Debug, Args)]
pub struct PinArgs {
    /// Artifact key.
    key: String,
    /// Environment.
    env: String,
    /// The version to make live there (`3` or `v3`).
    #[arg(value_name = "VERSION", value_parser = crate::args::version_number, allow_negative_numbers = true)]
    number: i64,
    /// Why, for the history and the audit log.
    #[arg(long)]
    reason: Option<String>,
    /// Only if the pin is still the one opened at this revision (as `cutover pins KEY` shows;
    /// 0: nothing pinned). Refused, and nothing written, if anyone changed it since.
    #[arg(long, value_name = "REVISION")]
    if_match: Option<i64>,
}

#[derive(Debug, Args)]
pub struct UnpinArgs {
    /// Artifact key.
    key: String,
    /// Environment.
    env: String,
    /// Why, for the history and the audit log.
    #[arg(long)]
    reason: Option<String>,
    /// Only if the pin is still the one opened at this revision; refused otherwise.
    #[arg(long, value_name = "REVISION")]
    if_match: Option<i64>,
}

#[derive(Debug, Args)]
pub struct PinsArgs {
    /// Artifact key: the environments it is live in.
    #[arg(required_unless_present = "env")]
    key: Option<String>,
    /// An environment: what is live there, across artifacts. With KEY: only that artifact's pin.
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Artifact key.
    key: String,
    /// Environment.
    env: String,
    /// Intervals to show, or per page with --all (the server's default when absent).
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    /// Follows every page instead of showing the first.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Artifact key.
    key: String,
    /// The environment whose live version to promote.
    #[arg(long, value_name = "ENV")]
    from: String,
    /// An environment to make that version live in; repeat for several (all move atomically).
    #[arg(long = "to", value_name = "ENV", required = true)]
    to: Vec<String>,
    /// Shows what would change and writes nothing.
    #[arg(long)]
    dry_run: bool,
    /// Why, for the history and the audit log.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Artifact key.
    key: String,
    /// Environment.
    env: String,
    /// The version to make live [default: the one live before the current one, so that rolling
    /// back twice goes back and forth between two versions]
    #[arg(long, value_name = "N", value_parser = crate::args::version_number, allow_negative_numbers = true)]
    to: Option<i64>,
    /// Why, for the history and the audit log [default: "rollback from version N"].
    #[arg(long)]
    reason: Option<String>,
    /// Do not ask for confirmation on a protected environment (scripts must say so: without a
    /// terminal, a rollback there is refused unless --yes).
    #[arg(long, short)]
    yes: bool,
}

pub async fn pin(context: &Context, args: PinArgs) -> anyhow::Result<()> {
    let body = SetPin { version: args.number, reason: args.reason };
    let write = context.client.set_pin(&args.key, &args.env, &body, args.if_match).await?;
    let unchanged = format!("version {} of {} is already live in {}: nothing changed", args.number, args.key, args.env);
    show_write(context, &write, &unchanged)
}

pub async fn unpin(context: &Context, args: UnpinArgs) -> anyhow::Result<()> {
    let write = context.client.unpin(&args.key, &args.env, args.reason.as_deref(), args.if_match).await?;
    let unchanged = format!("nothing of {} is pinned in {}: nothing changed", args.key, args.env);
    show_write(context, &write, &unchanged)
}

pub async fn pins(context: &Context, args: PinsArgs) -> anyhow::Result<()> {
    let client = &context.client;
    match (args.key, args.env) {
        (Some(key), Some(env)) => show_pin(context, &client.get_pin(&key, &env).await?),
        (Some(key), None) => {
            let page = client.list_pins(&key).await?;
            let empty = format!("{key} is not live in any environment");
            list_pins(context, &page, "ENVIRONMENT", |pin| pin.environment.clone(), &empty)
        }
        (None, Some(env)) => {
            let page = client.environment_pins(&env).await?;
            let empty = format!("nothing is live in {env}");
            list_pins(context, &page, "ARTIFACT", |pin| pin.artifact.clone(), &empty)
        }
        // clap already requires one of them.
        (None, None) => Err(failure::usage("give an artifact KEY, --env ENV, or both")),
    }
}

pub async fn history(context: &Context, args: HistoryArgs) -> anyhow::Result<()> {
    let client = &context.client;
    let mut query = PageQuery { limit: args.limit, cursor: None };
    let mut page = client.pin_history(&args.key, &args.env, &query).await?;
    if args.all {
        while let Some(cursor) = page.next_cursor.take() {
            query.cursor = Some(cursor);
            let next = client.pin_history(&args.key, &args.env, &query).await?;
            page.items.extend(next.items);
            page.next_cursor = next.next_cursor;
        }
    }
    if context.output == OutputFormat::Json {
        return output::json(&page);
    }
    if page.items.is_empty() {
        return output::emit(&format!("nothing of {} has been pinned in {}", args.key, args.env));
    }
    let rows = page.items.iter().map(|pin| {
        [
            pin.version.to_string(),
            pin.started_at.clone(),
            pin.ended_at.clone().unwrap_or_else(|| "live".to_owned()),
            pin.started_by.name.clone(),
            pin.ended_by.as_ref().map_or_else(|| "-".to_owned(), |actor| actor.name.clone()),
            or_dash(&pin.reason),
        ]
    });
    output::emit(&output::table(["VERSION", "FROM", "UNTIL", "OPENED BY", "CLOSED BY", "REASON"], rows))?;
    if page.next_cursor.is_some() {
        output::note("(older intervals not shown: raise --limit or use --all to see more)");
    }
    Ok(())
}

pub async fn promote(context: &Context, args: PromoteArgs) -> anyhow::Result<()> {
    let body = Promote {
        artifact: args.key.clone(),
        from: args.from.clone(),
        to: args.to,
        dry_run: args.dry_run,
        reason: args.reason,
    };
    let promoted = context.client.promote(&body).await?;
    if context.output == OutputFormat::Json {
        return output::json(&promoted);
    }
    let what = format!("version {} of {} (live in {})", promoted.version, promoted.artifact, args.from);
    if promoted.changes.is_empty() {
        return output::emit(&format!("{what} is already live in every target: nothing to change"));
    }
    output::emit(&changes_table(&promoted.changes))?;
    match (promoted.dry_run, promoted.revision) {
        (true, _) => output::emit(&format!("dry run: nothing was written; this would promote {what}")),
        (false, Some(revision)) => output::emit(&format!("promoted {what} at revision {revision}")),
        (false, None) => output::emit(&format!("promoted {what}")),
    }
}

pub async fn rollback(context: &Context, args: RollbackArgs) -> anyhow::Result<()> {
    let client = &context.client;
    let (key, env) = (args.key.as_str(), args.env.as_str());
    let (current, target) = match args.to {
        Some(number) => {
            let current = live_pin(context, key, env).await?;
            client.get_version(key, number).await?;
            (current, number)
        }
        None => previous_version(context, key, env).await?,
    };
    if current.as_ref().is_some_and(|pin| pin.version == target) {
        let unchanged = format!("version {target} of {key} is already live in {env}: nothing changed");
        return show_write(context, &PinWrite { revision: None, changes: Vec::new() }, &unchanged);
    }
    let from = current.as_ref().map_or_else(|| "nothing".to_owned(), |pin| format!("version {}", pin.version));
    if args.to.is_none() && current.as_ref().is_some_and(|pin| pin.reason.starts_with("rollback")) {
        output::note(&format!(
            "note: {from} was itself made live by a rollback; rolling back again makes version {target} live again \
             (--to N picks the version)"
        ));
    }
    if !args.yes && client.get_environment(env).await?.protected {
        let plan = format!("{env} is protected: this makes version {target} of {key} live there (now {from})");
        confirm(&plan)?;
    }
    let reason = args.reason.unwrap_or_else(|| match &current {
        Some(pin) => format!("rollback from version {}", pin.version),
        None => "rollback".to_owned(),
    });
    // The revision of what the history said is live (0: nothing), so that a change made since
    // it was read is refused instead of overwritten.
    let expected = current.as_ref().map_or(0, |pin| pin.revision);
    let body = SetPin { version: target, reason: Some(reason) };
    let write = client.set_pin(key, env, &body, Some(expected)).await.map_err(|err| {
        failure::explain(err, 412, || {
            format!(
                "the pin of {key} in {env} changed while rolling back, so nothing was written; see `cutover history \
                 {key} {env}`"
            )
        })
    })?;
    let unchanged = format!("version {target} of {key} is already live in {env}: nothing changed");
    show_write(context, &write, &unchanged)
}

/// Says what is about to happen and asks on the terminal; without one, refuses (scripts pass
/// `--yes`).
pub(crate) fn confirm(plan: &str) -> anyhow::Result<()> {
    if !io::stdin().is_terminal() {
        return Err(failure::usage(format!(
            "{plan}; nothing was written: pass --yes to do it without being asked (no terminal to ask on)"
        )));
    }
    output::note(plan);
    eprint!("Go ahead? [y/N] ");
    let mut answer = String::new();
    io::stdin().read_line(&mut answer).context("reading the answer")?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES") {
        Ok(())
    } else {
        Err(anyhow::anyhow!("not confirmed: nothing was written"))
    }
}

/// The pin live in (key, env) now, if any.
async fn live_pin(context: &Context, key: &str, env: &str) -> anyhow::Result<Option<Pin>> {
    let query = PageQuery { limit: Some(1), cursor: None };
    let page = context
        .client
        .pin_history(key, env, &query)
        .await
        .with_context(|| format!("reading the history of {key} in {env}"))?;
    Ok(page.items.into_iter().next().filter(|pin| pin.ended_at.is_none()))
}

/// What is live in (key, env) now, if anything, and the version to roll back to: the most recent
/// interval before the live one with another version; when nothing is live, the last one that was.
async fn previous_version(context: &Context, key: &str, env: &str) -> anyhow::Result<(Option<Pin>, i64)> {
    let mut query = PageQuery::default();
    let mut current: Option<Pin> = None;
    let mut first = true;
    loop {
        let page = context
            .client
            .pin_history(key, env, &query)
            .await
            .with_context(|| format!("reading the history of {key} in {env}"))?;
        for pin in page.items {
            if std::mem::take(&mut first) && pin.ended_at.is_none() {
                current = Some(pin);
                continue;
            }
            match &current {
                Some(live) if live.version == pin.version => {}
                _ => return Ok((current, pin.version)),
            }
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    Err(anyhow::anyhow!(match current {
        Some(live) =>
            format!("nothing to roll back to: version {} is the only version of {key} ever live in {env}", live.version),
        None => format!("nothing to roll back to: nothing of {key} has ever been pinned in {env}"),
    }))
}

/// The outcome of a pin write: each environment's change and the revision, or `unchanged`.
pub fn show_write(context: &Context, write: &PinWrite, unchanged: &str) -> anyhow::Result<()> {
    if context.output == OutputFormat::Json {
        return output::json(write);
    }
    if write.changes.is_empty() {
        return output::emit(unchanged);
    }
    output::emit(&changes_table(&write.changes))?;
    match write.revision {
        Some(revision) => output::emit(&format!("revision {revision}")),
        None => Ok(()),
    }
}

fn changes_table(changes: &[PinChange]) -> String {
    let rows = changes.iter().map(|change| [change.environment.clone(), arrow(change.from, change.to)]);
    output::table(["ENVIRONMENT", "CHANGE"], rows)
}

/// `3 → 4`, with `-` for "nothing pinned".
fn arrow(from: Option<i64>, to: Option<i64>) -> String {
    let show = |version: Option<i64>| version.map_or_else(|| "-".to_owned(), |v| v.to_string());
    format!("{} → {}", show(from), show(to))
}

fn list_pins(
    context: &Context,
    page: &Page<Pin>,
    first_column: &str,
    first: impl Fn(&Pin) -> String,
    empty: &str,
) -> anyhow::Result<()> {
    if context.output == OutputFormat::Json {
        return output::json(page);
    }
    if page.items.is_empty() {
        return output::emit(empty);
    }
    let rows = page.items.iter().map(|pin| {
        [
            first(pin),
            pin.version.to_string(),
            pin.revision.to_string(),
            pin.started_at.clone(),
            pin.started_by.name.clone(),
        ]
    });
    output::emit(&output::table([first_column, "VERSION", "REVISION", "SINCE", "BY"], rows))
}

fn show_pin(context: &Context, pin: &Pin) -> anyhow::Result<()> {
    if context.output == OutputFormat::Json {
        return output::json(pin);
    }
    output::emit(&output::fields(&[
        ("artifact", pin.artifact.clone()),
        ("environment", pin.environment.clone()),
        ("version", pin.version.to_string()),
        ("revision", pin.revision.to_string()),
        ("since", pin.started_at.clone()),
        ("by", format!("{} ({})", pin.started_by.name, pin.started_by.token_id)),
        ("reason", or_dash(&pin.reason)),
    ]))
}

#[cfg(test)]
mod tests {
    use cutover_api::PinChange;

    use super::{arrow, changes_table};

    #[test]
    fn changes_show_what_was_live_before_and_after() {
        assert_eq!(arrow(Some(3), Some(4)), "3 → 4");
        assert_eq!(arrow(None, Some(1)), "- → 1");
        assert_eq!(arrow(Some(2), None), "2 → -");
        let change =
            |environment: &str, from, to| PinChange { artifact: "k".into(), environment: environment.into(), from, to };
        let text = changes_table(&[change("production", Some(1), Some(2)), change("staging", None, Some(2))]);
        let lines: Vec<_> = text.lines().collect();
        assert!(lines[0].starts_with("ENVIRONMENT") && lines[0].ends_with("CHANGE"), "{text}");
        assert!(lines[1].starts_with("production") && lines[1].ends_with("1 → 2"), "{text}");
        assert!(lines[2].starts_with("staging") && lines[2].ends_with("- → 2"), "{text}");
    }
}
