//! `cutover queue watch`: follows a queue until it drains, or one request until it ends.
//!
//! The queue is read every half second. On a terminal: a bar of the requests seen since the
//! watch began (how many have ended) with the queue's state as its message, and a line printed
//! above it each time a request changes state. Otherwise, for logs and CI: only those lines
//! (`request 7 batched`, `request 7 landed: prompts/greeting v4`). With `--output json`: the
//! requests seen, as the watch ends.
//!
//! Exit codes: 0 when every request seen landed; 1 when one was refused or cancelled; 4 when the
//! queue is paused with requests waiting (nothing moves until a person resumes it).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use cutover_api::queue::ChangeRequest;
use cutover_client::ClientError;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::super::Context;
use crate::failure::WaitingError;
use crate::output::{self, OutputFormat};

const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long the server may not answer (a restart, a failover) before the watch gives up.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(30);

fn terminal(state: &str) -> bool {
    matches!(state, "landed" | "error" | "cancelled")
}

/// What a line says about a request in `state`.
fn line(request: &ChangeRequest) -> String {
    let mut text = format!("request {} {}", request.id, request.state);
    if let Some(versions) = &request.landed_versions {
        let landed: Vec<String> = versions.iter().map(|(k, v)| format!("{k} v{v}")).collect();
        text.push_str(&format!(": {}", landed.join(", ")));
    }
    if let Some(error) = &request.error {
        let first = error.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        text.push_str(&format!(": {first}"));
    }
    text
}

pub async fn watch(context: &Context, queue: &str, only: Option<u64>) -> anyhow::Result<()> {
    let bar = (context.output == OutputFormat::Table && std::io::stdout().is_terminal()).then(|| {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} ended  {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut seen: BTreeMap<u64, ChangeRequest> = BTreeMap::new();
    let mut answered = Instant::now();
    let paused = loop {
        let read = async {
            let queue_now = context.client.get_queue(queue).await?;
            let requests = match only {
                Some(id) => vec![context.client.get_change(queue, id).await?],
                None => context.client.list_changes(queue, true, 200).await?,
            };
            Ok::<_, ClientError>((queue_now, requests))
        };
        let (queue_now, requests) = match read.await {
            Ok(read) => {
                answered = Instant::now();
                read
            }
            Err(ClientError::Transport { .. }) if answered.elapsed() < UNREACHABLE_GRACE => {
                tokio::time::sleep(POLL_INTERVAL).await;
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        // Requests seen before that left the live list ended: read each once more.
        let mut current: Vec<ChangeRequest> = requests;
        if only.is_none() {
            let live: Vec<u64> = current.iter().map(|r| r.id).collect();
            for (id, before) in &seen {
                if !terminal(&before.state) && !live.contains(id) {
                    current.push(context.client.get_change(queue, *id).await?);
                }
            }
        }
        for request in current {
            let changed = seen.get(&request.id).is_none_or(|before| before.state != request.state);
            if changed && context.output == OutputFormat::Table {
                match &bar {
                    Some(bar) => bar.println(line(&request)),
                    None => output::emit(&line(&request))?,
                }
            }
            seen.insert(request.id, request);
        }
        let ended = seen.values().filter(|r| terminal(&r.state)).count();
        if let Some(bar) = &bar {
            bar.set_length(seen.len() as u64);
            bar.set_position(ended as u64);
            bar.set_message(format!(
                "queue {}: {} waiting, {} batches, {} checks running, {} landed{}",
                queue_now.name,
                queue_now.depth,
                queue_now.active_batches,
                queue_now.running_checks.len(),
                queue_now.landed,
                if queue_now.paused { ", PAUSED" } else { "" }
            ));
        }
        let done = match only {
            Some(id) => seen.get(&id).is_some_and(|r| terminal(&r.state)),
            None => queue_now.depth == 0 && seen.values().all(|r| terminal(&r.state)),
        };
        if done {
            break false;
        }
        if queue_now.paused && queue_now.depth > 0 {
            break true;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if context.output == OutputFormat::Json {
        output::json(&seen.values().collect::<Vec<_>>())?;
    }
    if paused {
        return Err(WaitingError(format!(
            "queue {queue} is paused with requests waiting: `cutover queue resume {queue}` lets them land"
        ))
        .into());
    }
    let failed: Vec<String> =
        seen.values().filter(|r| matches!(r.state.as_str(), "error" | "cancelled")).map(line).collect();
    if failed.is_empty() {
        return Ok(());
    }
    anyhow::bail!("{}", failed.join("; "))
}
