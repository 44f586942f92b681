//! Experiments: an (artifact, environment) split between versions of the artifact, with a
//! lifecycle changed only by actions. At most one non-completed experiment holds an (artifact,
//! environment); a partial unique index keeps that true under concurrency.
//!
//! Soft delete: a deleted experiment stays readable by id (with `deleted_at` set, so its results
//! remain available) but is hidden from lists, refuses every further change, and frees its
//! (artifact, environment) for a new experiment.

use cutover_domain::{
    ArtifactKey, AuditObject, DomainError, EnvironmentName, ExperimentAction, ExperimentDraft, ExperimentName,
    ExperimentStatus, Hypothesis, Lifecycle, NewExperiment, Timestamp, Variant, Variants,
};
use serde::Deserialize;

use crate::audit::{Change, record};
use crate::db::{Conn, new_id, q, read, transaction};
use crate::pins::{active_version, apply, ensure_version, lock_workspace, new_revision};
use crate::{
    Caller, Experiment, ExperimentChanges, ExperimentOutcome, ExperimentSpec, PinAuthority, Result, Store, StoreError,
    artifacts, environments, stored_environment, stored_key,
};

#[derive(sqlx::FromRow)]
struct ExperimentRow {
    id: String,
    artifact: String,
    environment: String,
    name: String,
    hypothesis: String,
    variants: String,
    coverage: f64,
    seed: String,
    primary_metric: String,
    guardrail_metrics: String,
    status: String,
    created_at: i64,
    updated_at: i64,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    deleted_at: Option<i64>,
}

/// Experiment rows with their artifact key and environment name; callers add `WHERE …`.
const SELECT_EXPERIMENTS: &str = "SELECT x.id, a.key AS artifact, e.name AS environment,
            x.name, x.hypothesis, x.variants, x.coverage, x.seed, x.primary_metric, x.guardrail_metrics, x.status,
            x.created_at, x.updated_at, x.started_at, x.ended_at, x.deleted_at
     FROM experiments x JOIN artifacts a ON a.id = x.artifact_id JOIN environments e ON e.id = x.environment_id";

#[derive(Deserialize)]
struct StoredVariant {
    version: i64,
    weight: f64,
}

impl TryFrom<ExperimentRow> for Experiment {
    type Error = StoreError;

    fn try_from(row: ExperimentRow) -> Result<Self> {
        let variants: Vec<StoredVariant> = serde_json::from_str(&row.variants)?;
        let status: ExperimentStatus =
            row.status.parse().map_err(|e: DomainError| StoreError::Corrupt(e.to_string()))?;
        Ok(Experiment {
            id: row.id,
            artifact: stored_key(&row.artifact)?,
            environment: stored_environment(&row.environment)?,
            name: row.name,
            hypothesis: row.hypothesis,
            variants: Variants::from_stored(
                variants.into_iter().map(|v| Variant { version: v.version, weight: v.weight }),
            ),
            coverage: cutover_domain::Coverage::parse(row.coverage)
                .map_err(|e| StoreError::Corrupt(format!("experiment coverage: {e}")))?,
            seed: row.seed,
            primary_metric: row.primary_metric,
            guardrail_metrics: serde_json::from_str(&row.guardrail_metrics)?,
            lifecycle: Lifecycle::from_stored(
                status,
                Timestamp::from_micros(row.created_at),
                Timestamp::from_micros(row.updated_at),
                row.started_at.map(Timestamp::from_micros),
                row.ended_at.map(Timestamp::from_micros),
            ),
            deleted_at: row.deleted_at.map(Timestamp::from_micros),
        })
    }
}

fn active_exists(artifact: &str, environment: &str) -> StoreError {
    StoreError::conflict(format!("an active experiment already exists for artifact {artifact:?} in {environment:?}"))
}

/// One experiment of the workspace, deleted or not; another workspace's id is not found.
async fn fetch(conn: &mut Conn<'_>, workspace_id: &str, id: &str) -> Result<Experiment> {
    let row: Option<ExperimentRow> = q!(
        conn,
        fetch_optional,
        sqlx::query_as(&format!("{SELECT_EXPERIMENTS} WHERE x.workspace_id = $1 AND x.id = $2"))
            .bind(workspace_id)
            .bind(id)
    )?;
    row.ok_or_else(|| StoreError::NotFound(format!("experiment {id:?}")))?.try_into()
}

/// One experiment that may still change: not deleted, and the caller may act on its environment.
async fn fetch_writable(
    conn: &mut Conn<'_>,
    workspace_id: &str,
    authority: &PinAuthority,
    id: &str,
) -> Result<(Experiment, crate::Environment)> {
    let loaded = fetch(conn, workspace_id, id).await?;
    if loaded.deleted_at.is_some() {
        return Err(StoreError::conflict(format!("experiment {id:?} is deleted")));
    }
    let environment = environments::fetch(conn, workspace_id, &loaded.environment).await?;
    if let Some(why) = crate::refuses(authority, &environment) {
        return Err(StoreError::Forbidden(why));
    }
    Ok((loaded, environment))
}

async fn save_lifecycle(conn: &mut Conn<'_>, id: &str, lifecycle: &Lifecycle) -> Result<()> {
    q!(
        conn,
        execute,
        sqlx::query(
            "UPDATE experiments SET status = $1, updated_at = $2, started_at = $3, ended_at = $4 WHERE id = $5"
        )
        .bind(lifecycle.status().as_str())
        .bind(lifecycle.updated_at().as_micros())
        .bind(lifecycle.started_at().map(|t| t.as_micros()))
        .bind(lifecycle.ended_at().map(|t| t.as_micros()))
        .bind(id)
    )?;
    Ok(())
}

fn action_name(action: ExperimentAction) -> &'static str {
    match action {
        ExperimentAction::Start => "experiment.start",
        ExperimentAction::Pause => "experiment.pause",
        ExperimentAction::Resume => "experiment.resume",
        ExperimentAction::Complete => "experiment.complete",
    }
}

impl Store {
    /// Creates an experiment on (artifact `key`, `environment`). 409 when one that is not
    /// completed already holds them, whether found first or caught by the unique index.
    pub async fn create_experiment(
        &self,
        caller: &Caller,
        key: &ArtifactKey,
        environment: &EnvironmentName,
        spec: &ExperimentSpec,
    ) -> Result<Experiment> {
        let (workspace_id, actor, authority) = (caller.workspace_id.as_str(), &caller.actor, &caller.authority);
        transaction!(self, |tx| {
            let artifact = artifacts::fetch_writable(tx, workspace_id, key).await?;
            let environment = environments::fetch(tx, workspace_id, environment).await?;
            if let Some(why) = crate::refuses(authority, &environment) {
                return Err(StoreError::Forbidden(why));
            }
            let (artifact_key, environment_name) = (artifact.key.as_str(), environment.name.as_str());
            if artifact.latest_version < 2 {
                return Err(DomainError::invalid(
                    "variants",
                    format!(
                        "artifact {artifact_key:?} has {} version(s); an experiment needs at least two",
                        artifact.latest_version
                    ),
                )
                .into());
            }
            let control = match spec.control {
                Some(control) => control,
                None => active_version(tx, &artifact.id, &environment.id).await?.map(|(v, _)| v).ok_or_else(|| {
                    DomainError::invalid(
                        "control",
                        format!(
                            "nothing of artifact {artifact_key:?} is pinned in {environment_name:?}; name the control"
                        ),
                    )
                })?,
            };
            let versions: Vec<i64> = std::iter::once(control).chain(spec.treatments.iter().copied()).collect();
            let new = NewExperiment::parse(ExperimentDraft {
                name: spec.name.clone(),
                hypothesis: spec.hypothesis.clone(),
                versions,
                weights: spec.weights.clone(),
                coverage: spec.coverage,
                primary_metric: spec.primary_metric.clone(),
                guardrail_metrics: spec.guardrail_metrics.clone(),
            })?;
            for version in new.variants.versions() {
                ensure_version(tx, &artifact, *version).await?;
            }
            let active: Option<(String,)> = q!(
                tx,
                fetch_optional,
                sqlx::query_as(
                    "SELECT id FROM experiments WHERE artifact_id = $1 AND environment_id = $2
                     AND status <> 'completed' AND deleted_at IS NULL"
                )
                .bind(&artifact.id)
                .bind(&environment.id)
            )?;
            if active.is_some() {
                return Err(active_exists(artifact_key, environment_name));
            }
            let lifecycle = Lifecycle::new(Timestamp::now());
            let id = new_id();
            let guardrails: Vec<&str> = new.guardrail_metrics.iter().map(|m| m.as_str()).collect();
            q!(
                tx,
                execute,
                sqlx::query(
                    "INSERT INTO experiments (id, workspace_id, artifact_id, environment_id, name, hypothesis, variants,
                         coverage, seed, primary_metric, guardrail_metrics, status, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)"
                )
                .bind(&id)
                .bind(workspace_id)
                .bind(&artifact.id)
                .bind(&environment.id)
                .bind(new.name.as_str())
                .bind(new.hypothesis.as_str())
                .bind(serde_json::to_string(&new.variants)?)
                .bind(new.coverage.get())
                .bind(new.seed.as_str())
                .bind(new.primary_metric.as_str())
                .bind(serde_json::to_string(&guardrails)?)
                .bind(lifecycle.status().as_str())
                .bind(lifecycle.created_at().as_micros())
            )
            .map_err(|e| match &e {
                // A concurrent create got there first: the index holds the rule.
                sqlx::Error::Database(db) if db.is_unique_violation() => active_exists(artifact_key, environment_name),
                _ => StoreError::from(e),
            })?;
            let experiment = fetch(tx, workspace_id, &id).await?;
            record(
                tx,
                workspace_id,
                actor,
                Change::new("experiment.create", AuditObject::Experiment, &id).after(&experiment),
            )
            .await?;
            experiment
        })
    }

    /// One experiment by id, deleted ones included (`deleted_at` set).
    pub async fn get_experiment(&self, workspace_id: &str, id: &str) -> Result<Experiment> {
        read!(self, |conn| Ok(fetch(conn, workspace_id, id).await?))
    }

    /// An environment's experiments that are not deleted, oldest first, optionally of one status.
    pub async fn list_experiments(
        &self,
        workspace_id: &str,
        environment: &EnvironmentName,
        status: Option<ExperimentStatus>,
    ) -> Result<Vec<Experiment>> {
        read!(self, |conn| {
            let environment = environments::fetch(conn, workspace_id, environment).await?;
            let rows: Vec<ExperimentRow> = q!(
                conn,
                fetch_all,
                sqlx::query_as(&format!(
                    "{SELECT_EXPERIMENTS}
                     WHERE x.environment_id = $1 AND x.deleted_at IS NULL AND ($2 IS NULL OR x.status = $2)
                     ORDER BY x.created_at, x.id"
                ))
                .bind(&environment.id)
                .bind(status.map(|s| s.as_str()))
            )?;
            rows.into_iter().map(Experiment::try_from).collect()
        })
    }

    /// The running and paused experiments of a workspace, each with the content of its variants'
    /// versions (in variant order): what resolve needs to split traffic. Costs the active
    /// experiments, not the history.
    pub async fn active_experiments(
        &self,
        workspace_id: &str,
    ) -> Result<Vec<(Experiment, Vec<cutover_domain::Content>)>> {
        read!(self, |conn| fetch_active(conn, workspace_id).await)
    }

    /// Edits the name and hypothesis, in any status.
    pub async fn update_experiment(
        &self,
        caller: &Caller,
        id: &str,
        changes: &ExperimentChanges,
    ) -> Result<Experiment> {
        let (workspace_id, actor, authority) = (caller.workspace_id.as_str(), &caller.actor, &caller.authority);
        let name = changes.name.as_deref().map(ExperimentName::parse).transpose()?;
        let hypothesis = changes.hypothesis.as_deref().map(Hypothesis::parse).transpose()?;
        transaction!(self, |tx| {
            let (before, _) = fetch_writable(tx, workspace_id, authority, id).await?;
            let lifecycle = before.lifecycle.touch(Timestamp::now());
            q!(
                tx,
                execute,
                sqlx::query("UPDATE experiments SET name = $1, hypothesis = $2, updated_at = $3 WHERE id = $4")
                    .bind(name.as_ref().map_or(before.name.as_str(), |n| n.as_str()))
                    .bind(hypothesis.as_ref().map_or(before.hypothesis.as_str(), |h| h.as_str()))
                    .bind(lifecycle.updated_at().as_micros())
                    .bind(id)
            )?;
            let after = fetch(tx, workspace_id, id).await?;
            record(
                tx,
                workspace_id,
                actor,
                Change::new("experiment.update", AuditObject::Experiment, id).before(&before).after(&after),
            )
            .await?;
            after
        })
    }

    /// Takes an action. `complete` may name a `winner` variant (a version number), which is pinned
    /// to the environment in the same transaction. Illegal transitions: 409 naming the status.
    pub async fn experiment_action(
        &self,
        caller: &Caller,
        id: &str,
        action: ExperimentAction,
        winner: Option<i64>,
    ) -> Result<ExperimentOutcome> {
        let (workspace_id, actor, authority) = (caller.workspace_id.as_str(), &caller.actor, &caller.authority);
        if winner.is_some() && action != ExperimentAction::Complete {
            return Err(DomainError::invalid("winner", "only `complete` takes a winner").into());
        }
        transaction!(self, |tx| {
            lock_workspace(tx, workspace_id).await?;
            let (before, environment) = fetch_writable(tx, workspace_id, authority, id).await?;
            let lifecycle = before.lifecycle.apply(action, Timestamp::now())?;
            if let Some(winner) = winner
                && before.variants.position(winner).is_none()
            {
                return Err(DomainError::invalid(
                    "winner",
                    format!("version {winner} is not a variant of experiment {id:?}"),
                )
                .into());
            }
            save_lifecycle(tx, id, &lifecycle).await?;
            let after = fetch(tx, workspace_id, id).await?;
            record(
                tx,
                workspace_id,
                actor,
                Change::new(action_name(action), AuditObject::Experiment, id).before(&before).after(&after),
            )
            .await?;
            let pinned = match winner {
                Some(winner) => {
                    let artifact = artifacts::fetch(tx, workspace_id, &after.artifact).await?;
                    let reason = format!("winner of experiment {:?} ({id})", after.name);
                    Some(
                        apply(tx, workspace_id, actor, authority, &artifact, &[(environment, Some(winner))], &reason)
                            .await?,
                    )
                }
                None => None,
            };
            // Every action changes what resolve answers; a winner's pin write made its revision.
            if pinned.as_ref().and_then(|w| w.revision).is_none() {
                new_revision(tx, workspace_id).await?;
            }
            ExperimentOutcome { experiment: after, pinned }
        })
    }

    /// Soft-deletes an experiment in any status: it stays readable by id, leaves lists and frees
    /// its (artifact, environment).
    pub async fn delete_experiment(&self, caller: &Caller, id: &str) -> Result<Experiment> {
        let (workspace_id, actor, authority) = (caller.workspace_id.as_str(), &caller.actor, &caller.authority);
        transaction!(self, |tx| {
            tx.effects.resolve(workspace_id);
            lock_workspace(tx, workspace_id).await?;
            let (before, _) = fetch_writable(tx, workspace_id, authority, id).await?;
            if matches!(before.lifecycle.status(), ExperimentStatus::Running | ExperimentStatus::Paused) {
                // It stops answering resolve.
                new_revision(tx, workspace_id).await?;
            }
            let now = Timestamp::now().as_micros();
            q!(tx, execute, sqlx::query("UPDATE experiments SET deleted_at = $1 WHERE id = $2").bind(now).bind(id))?;
            let after = fetch(tx, workspace_id, id).await?;
            record(
                tx,
                workspace_id,
                actor,
                Change::new("experiment.delete", AuditObject::Experiment, id).before(&before),
            )
            .await?;
            after
        })
    }
}

/// The running and paused experiments of a workspace, with each variant's content.
pub(crate) async fn fetch_active(
    conn: &mut Conn<'_>,
    workspace_id: &str,
) -> Result<Vec<(Experiment, Vec<cutover_domain::Content>)>> {
    let rows: Vec<ExperimentRow> = q!(
        conn,
        fetch_all,
        sqlx::query_as(&format!(
            "{SELECT_EXPERIMENTS}
                 WHERE x.workspace_id = $1 AND x.deleted_at IS NULL AND x.status IN ('running', 'paused')"
        ))
        .bind(workspace_id)
    )?;
    let mut active = Vec::with_capacity(rows.len());
    for experiment in rows.into_iter().map(Experiment::try_from) {
        let experiment = experiment?;
        let mut contents = Vec::new();
        for version in experiment.variants.versions() {
            let (content,): (String,) = q!(
                conn,
                fetch_one,
                sqlx::query_as(
                    "SELECT v.content FROM versions v JOIN artifacts a ON a.id = v.artifact_id
                         WHERE a.workspace_id = $1 AND a.key = $2 AND v.number = $3"
                )
                .bind(workspace_id)
                .bind(experiment.artifact.as_str())
                .bind(version)
            )?;
            contents.push(cutover_domain::Content::from_stored(content)?);
        }
        active.push((experiment, contents));
    }
    Ok(active)
}
