//! `cutover status`: one screen of what is live where (artifacts × environments), the
//! experiments splitting traffic, and the rollouts in progress.
//!
//! Targets can run a version the pin does not show yet: those a rollout in progress has already
//! applied its version to (the pin moves when the whole rollout completes). Each such
//! environment gets a line under the rollouts.

use std::collections::BTreeMap;

use cutover_api::{Experiment, Rollout};
use cutover_client::PageQuery;
use serde::Serialize;

use super::{Context, ids};
use crate::output::{self, OutputFormat};

/// Rollouts looked at, newest first (the list's largest page).
const ROLLOUTS_LOOKED_AT: u32 = 200;

/// The rollout states after which nothing more happens.
const FINISHED: [&str; 3] = ["completed", "failed", "cancelled"];

/// What `--output json` prints.
#[derive(Debug, Serialize)]
struct Status {
    /// In the order the server lists them.
    environments: Vec<String>,
    artifacts: Vec<ArtifactStatus>,
    /// Running or paused.
    experiments: Vec<Experiment>,
    /// Not yet completed, failed or cancelled.
    rollouts: Vec<Rollout>,
}

#[derive(Debug, Serialize)]
struct ArtifactStatus {
    key: String,
    latest_version: i64,
    /// Environment → the version live there; environments with nothing live are left out.
    live: BTreeMap<String, i64>,
}

pub async fn run(context: &Context) -> anyhow::Result<()> {
    let status = gather(context).await?;
    if context.output == OutputFormat::Json {
        return output::json(&status);
    }
    output::emit(&render(&status))
}

async fn gather(context: &Context) -> anyhow::Result<Status> {
    let client = &context.client;
    let environments: Vec<String> = client.list_environments().await?.items.into_iter().map(|e| e.name).collect();
    let mut artifacts = Vec::new();
    let mut query = PageQuery::default();
    loop {
        let page = client.list_artifacts(&query).await?;
        artifacts.extend(page.items.into_iter().map(|artifact| ArtifactStatus {
            key: artifact.key,
            latest_version: artifact.latest_version,
            live: BTreeMap::new(),
        }));
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    let mut experiments = Vec::new();
    for environment in &environments {
        for pin in client.environment_pins(environment).await?.items {
            if let Some(artifact) = artifacts.iter_mut().find(|artifact| artifact.key == pin.artifact) {
                artifact.live.insert(pin.environment, pin.version);
            }
        }
        let listed = client.list_experiments(environment, None).await?.items;
        experiments.extend(listed.into_iter().filter(|e| matches!(e.status.as_str(), "running" | "paused")));
    }
    let rollouts = client.list_rollouts(None, None, Some(ROLLOUTS_LOOKED_AT)).await?.items;
    let mut in_progress = Vec::new();
    for rollout in rollouts.into_iter().filter(|rollout| !FINISHED.contains(&rollout.state.as_str())) {
        // The list leaves out operations; one rollout's answer counts them by state.
        let mut detail = client.get_rollout(&rollout.id).await?;
        detail.operations = None;
        in_progress.push(detail);
    }
    Ok(Status { environments, artifacts, experiments, rollouts: in_progress })
}

/// The grid, then the experiments and rollouts; a cell is the live version, `-` for none, with
/// `*` where an experiment splits the traffic.
fn render(status: &Status) -> String {
    if status.environments.is_empty() {
        return "no environments yet: `cutover env create NAME` makes one".to_owned();
    }
    let mut sections = Vec::new();
    if status.artifacts.is_empty() {
        sections.push("no artifacts yet: `cutover artifact create KEY --type string` makes one".to_owned());
    } else {
        let splitting = |key: &str, environment: &str| {
            status
                .experiments
                .iter()
                .any(|e| e.artifact == key && e.environment == environment && e.status == "running")
        };
        let mut header = vec!["ARTIFACT".to_owned(), "LATEST".to_owned()];
        header.extend(status.environments.iter().map(|name| name.to_uppercase()));
        let rows = status.artifacts.iter().map(|artifact| {
            let mut row = vec![artifact.key.clone(), artifact.latest_version.to_string()];
            row.extend(status.environments.iter().map(|environment| {
                let cell = artifact.live.get(environment).map_or_else(|| "-".to_owned(), i64::to_string);
                if splitting(&artifact.key, environment) { format!("{cell}*") } else { cell }
            }));
            row
        });
        sections.push(output::table_of(header, rows));
    }
    if status.experiments.is_empty() {
        sections.push("no experiments running".to_owned());
    } else {
        let short = ids::short_ids(status.experiments.iter().map(|e| e.id.as_str()));
        let rows = status.experiments.iter().zip(short).map(|(experiment, id)| {
            let versions: Vec<String> = experiment.variants.iter().map(|v| v.version.to_string()).collect();
            [
                id,
                experiment.artifact.clone(),
                experiment.environment.clone(),
                experiment.name.clone(),
                experiment.status.clone(),
                versions.join(", "),
            ]
        });
        let table = output::table(["EXPERIMENT", "ARTIFACT", "ENVIRONMENT", "NAME", "STATUS", "VERSIONS"], rows);
        sections.push(format!("{table}\n(* an experiment splits the traffic there)"));
    }
    if status.rollouts.is_empty() {
        sections.push("no rollouts in progress".to_owned());
    } else {
        let short = ids::short_ids(status.rollouts.iter().map(|r| r.id.as_str()));
        let rows = status.rollouts.iter().zip(short).map(|(rollout, id)| super::rollout::row(rollout, id));
        sections.push(output::table(["ROLLOUT", "ARTIFACT", "ENVIRONMENT", "VERSION", "STATE", "STARTED"], rows));
        let ahead = ahead_of_the_pin(status);
        if !ahead.is_empty() {
            sections.push(ahead.join("\n"));
        }
    }
    sections.join("\n\n")
}

/// Where a rollout in progress has already applied its version to some targets while the pin
/// still shows another: those targets run a version the grid above does not.
fn ahead_of_the_pin(status: &Status) -> Vec<String> {
    status
        .rollouts
        .iter()
        .filter_map(|rollout| {
            let progress = rollout.progress.as_ref()?;
            let done = progress.get("completed").copied().unwrap_or(0);
            let total: usize = progress.values().sum();
            let pinned = status
                .artifacts
                .iter()
                .find(|artifact| artifact.key == rollout.artifact)
                .and_then(|artifact| artifact.live.get(&rollout.environment))
                .copied();
            (done > 0 && pinned != Some(rollout.version)).then(|| {
                let shows = pinned.map_or_else(|| "nothing".to_owned(), |v| format!("version {v}"));
                format!(
                    "{}: {done} of {total} targets already run {} version {} (the pin shows {shows})",
                    rollout.environment, rollout.artifact, rollout.version
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{ArtifactStatus, Status, ahead_of_the_pin, render};

    #[test]
    fn the_grid_has_one_column_per_environment_in_order_and_dashes_where_nothing_is_live() {
        let status = Status {
            environments: vec!["dev".into(), "staging".into(), "production".into()],
            artifacts: vec![
                ArtifactStatus {
                    key: "prompts/greeting".into(),
                    latest_version: 3,
                    live: BTreeMap::from([("dev".into(), 3), ("production".into(), 2)]),
                },
                ArtifactStatus { key: "limits".into(), latest_version: 0, live: BTreeMap::new() },
            ],
            experiments: Vec::new(),
            rollouts: Vec::new(),
        };
        let text = render(&status);
        let lines: Vec<Vec<&str>> = text.lines().map(|line| line.split_whitespace().collect()).collect();
        assert_eq!(lines[0], ["ARTIFACT", "LATEST", "DEV", "STAGING", "PRODUCTION"], "{text}");
        assert_eq!(lines[1], ["prompts/greeting", "3", "3", "-", "2"], "{text}");
        assert_eq!(lines[2], ["limits", "0", "-", "-", "-"], "{text}");
        assert!(text.ends_with("no experiments running\n\nno rollouts in progress"), "{text}");
    }

    #[test]
    fn targets_a_rollout_already_moved_are_pointed_out_while_the_pin_lags() {
        let rollout: cutover_api::Rollout = serde_json::from_value(serde_json::json!({
            "id": "r1", "artifact": "prompts/greeting", "environment": "production", "version": 3,
            "state": "running", "max_parallel": 1, "on_failure": "pause", "failure_budget": null,
            "steps": ["apply"], "progress": {"completed": 2, "running": 1, "pending": 2},
            "pinned_revision": null, "created_at": "", "updated_at": "", "ended_at": null,
            "created_by": "ci", "operations": null
        }))
        .unwrap();
        let mut status = Status {
            environments: vec!["production".into()],
            artifacts: vec![ArtifactStatus {
                key: "prompts/greeting".into(),
                latest_version: 3,
                live: BTreeMap::from([("production".into(), 2)]),
            }],
            experiments: Vec::new(),
            rollouts: vec![rollout],
        };
        assert_eq!(
            ahead_of_the_pin(&status),
            ["production: 2 of 5 targets already run prompts/greeting version 3 (the pin shows version 2)"]
        );
        assert!(render(&status).ends_with("(the pin shows version 2)"), "{}", render(&status));
        status.rollouts[0].progress = Some(BTreeMap::from([("pending".into(), 5)]));
        assert!(ahead_of_the_pin(&status).is_empty(), "no target moved yet");
    }
}
