//! Archiving and deleting artifacts.
//!
//! Archiving hides an artifact from lists and from resolve and keeps everything (versions, pin
//! history, audit): unarchiving brings back exactly what was live. Deleting removes the artifact,
//! its versions and its pin history, and is refused while anything refers to it; the audit log
//! keeps the record.

use cutover_domain::{ArtifactKey, AuditObject, Timestamp};
use serde_json::{Value, json};

use crate::audit::{Change, record};
use crate::db::{Conn, q, transaction};
use crate::{Artifact, Caller, PinChange, Result, Store, StoreError, artifacts, pins, stored_environment};

/// How many of each kind of reference an `artifact_in_use` refusal names.
const NAMED: i64 = 100;

/// What refers to an artifact. `live` selects what stops archiving (running work); otherwise
/// every row that refers to it, which stops deleting.
#[derive(Debug, Default)]
struct References {
    pins: Vec<Value>,
    experiments: Vec<Value>,
    rollouts: Vec<Value>,
    pools: Vec<Value>,
}

impl References {
    fn is_empty(&self) -> bool {
        self.pins.is_empty() && self.experiments.is_empty() && self.rollouts.is_empty() && self.pools.is_empty()
    }

    /// "pinned in production, staging; experiments 0193…; …", for the message.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        let list = |items: &[Value], field: &str| {
            items.iter().filter_map(|i| i[field].as_str().map(str::to_owned)).collect::<Vec<_>>().join(", ")
        };
        if !self.pins.is_empty() {
            parts.push(format!("pinned in {}", list(&self.pins, "environment")));
        }
        if !self.experiments.is_empty() {
            parts.push(format!("experiments {}", list(&self.experiments, "id")));
        }
        if !self.rollouts.is_empty() {
            parts.push(format!("rollouts {}", list(&self.rollouts, "id")));
        }
        if !self.pools.is_empty() {
            parts.push(format!("pools {}", list(&self.pools, "name")));
        }
        parts.join("; ")
    }

    fn details(self) -> Value {
        json!({"environments": self.pins, "experiments": self.experiments, "rollouts": self.rollouts, "pools": self.pools})
    }
}

async fn references(conn: &mut Conn<'_>, artifact: &Artifact, live: bool) -> Result<References> {
    let pins = if live {
        Vec::new()
    } else {
        pins::owners(conn, &artifact.id)
            .await?
            .into_iter()
            .take(NAMED as usize)
            .map(|(environment, version)| json!({"environment": environment, "version": version}))
            .collect()
    };
    let (experiments_live, rollouts_live, pools_live) = if live {
        (
            "AND x.deleted_at IS NULL AND x.status <> 'completed'",
            "AND r.state NOT IN ('completed', 'failed', 'cancelled')",
            "AND deleted_at IS NULL",
        )
    } else {
        ("", "", "")
    };
    let experiments: Vec<(String, String, String, bool)> = q!(
        conn,
        fetch_all,
        sqlx::query_as(&format!(
            "SELECT x.id, e.name, x.status, x.deleted_at IS NOT NULL FROM experiments x
             JOIN environments e ON e.id = x.environment_id
             WHERE x.artifact_id = $1 {experiments_live} ORDER BY x.id LIMIT $2"
        ))
        .bind(&artifact.id)
        .bind(NAMED)
    )?;
    let rollouts: Vec<(String, String, String)> = q!(
        conn,
        fetch_all,
        sqlx::query_as(&format!(
            "SELECT r.id, e.name, r.state FROM rollouts r JOIN environments e ON e.id = r.environment_id
             WHERE r.artifact_id = $1 {rollouts_live} ORDER BY r.id LIMIT $2"
        ))
        .bind(&artifact.id)
        .bind(NAMED)
    )?;
    let pools: Vec<(String, bool)> = q!(
        conn,
        fetch_all,
        sqlx::query_as(&format!(
            "SELECT name, deleted_at IS NOT NULL FROM pools WHERE artifact_id = $1 {pools_live} ORDER BY id LIMIT $2"
        ))
        .bind(&artifact.id)
        .bind(NAMED)
    )?;
    Ok(References {
        pins,
        experiments: experiments
            .into_iter()
            .map(|(id, environment, status, deleted)| {
                json!({"id": id, "environment": environment, "status": status, "deleted": deleted})
            })
            .collect(),
        rollouts: rollouts
            .into_iter()
            .map(|(id, environment, state)| json!({"id": id, "environment": environment, "state": state}))
            .collect(),
        pools: pools.into_iter().map(|(name, deleted)| json!({"name": name, "deleted": deleted})).collect(),
    })
}

/// Announces that every environment the artifact owns appears (`archived` false) or disappears
/// (true) for resolve: one revision, one change record, as a pin move would.
async fn announce(
    conn: &mut Conn<'_>,
    workspace_id: &str,
    caller: &Caller,
    artifact: &Artifact,
    archived: bool,
) -> Result<()> {
    let owned = pins::owners(conn, &artifact.id).await?;
    let mut changes = Vec::with_capacity(owned.len());
    for (environment, version) in owned {
        let environment = stored_environment(&environment)?;
        // Taking an environment's live value away, or giving it back, is a change to what is
        // live there: the same right as moving its pin.
        let found = pins::environments_named(conn, workspace_id, std::slice::from_ref(&environment)).await?;
        if let Some(why) = found.first().and_then(|e| crate::refuses(&caller.authority, e)) {
            return Err(StoreError::Forbidden(why));
        }
        let (from, to) = if archived { (Some(version), None) } else { (None, Some(version)) };
        changes.push(PinChange { artifact: artifact.key.clone(), environment, from, to });
    }
    let revision = pins::bump_revision(conn, workspace_id).await?;
    pins::record_revision(conn, workspace_id, revision, &changes).await
}

impl Store {
    /// Archives an artifact: hidden from lists and resolve, refusing new versions, pins,
    /// experiments, rollouts and pools, everything kept. Refused (409 `artifact_in_use`) while an
    /// experiment that is not completed, an unfinished rollout or a pool uses it. Archiving an
    /// archived artifact changes nothing.
    pub async fn archive_artifact(&self, caller: &Caller, key: &ArtifactKey) -> Result<Artifact> {
        self.set_archived(caller, key, true).await
    }

    /// Brings an archived artifact back, with the pins it had. Unarchiving one that is not
    /// archived changes nothing.
    pub async fn unarchive_artifact(&self, caller: &Caller, key: &ArtifactKey) -> Result<Artifact> {
        self.set_archived(caller, key, false).await
    }

    async fn set_archived(&self, caller: &Caller, key: &ArtifactKey, archived: bool) -> Result<Artifact> {
        let workspace_id = caller.workspace_id.as_str();
        transaction!(self, |tx| {
            // The order every pin write takes: the workspace, then the artifact.
            pins::lock_workspace(tx, workspace_id).await?;
            let before = artifacts::fetch_locked(tx, workspace_id, key).await?;
            if before.archived_at.is_some() == archived {
                return Ok(before);
            }
            if archived {
                let running = references(tx, &before, true).await?;
                if !running.is_empty() {
                    return Err(StoreError::InUse {
                        message: format!(
                            "artifact {:?} is in use: {}; finish or delete them first",
                            key.as_str(),
                            running.describe()
                        ),
                        details: running.details(),
                    });
                }
            }
            announce(tx, workspace_id, caller, &before, archived).await?;
            let now = Timestamp::now().as_micros();
            let after = artifacts::set_archived_at(tx, &before.id, archived.then_some(now), now).await?;
            let action = if archived { "artifact.archive" } else { "artifact.unarchive" };
            record(
                tx,
                workspace_id,
                &caller.actor,
                Change::new(action, AuditObject::Artifact, key.as_str()).before(&before).after(&after),
            )
            .await?;
            after
        })
    }

    /// Deletes an artifact with its versions and pin history. Refused (409 `artifact_in_use`,
    /// naming them) while it is pinned anywhere or any experiment, rollout or pool (even a
    /// finished or deleted one, whose records keep referring to its versions) refers to it.
    pub async fn delete_artifact(&self, caller: &Caller, key: &ArtifactKey) -> Result<Artifact> {
        let workspace_id = caller.workspace_id.as_str();
        transaction!(self, |tx| {
            tx.effects.resolve(workspace_id);
            // Holding the workspace's pin lock and the artifact's row: a pin, version,
            // experiment, rollout or pool racing this delete either committed before (and is
            // seen below) or waits and then finds no artifact.
            pins::lock_workspace(tx, workspace_id).await?;
            let artifact = artifacts::fetch_locked(tx, workspace_id, key).await?;
            let used = references(tx, &artifact, false).await?;
            if !used.is_empty() {
                return Err(StoreError::InUse {
                    message: format!(
                        "artifact {:?} is in use: {}; archive it instead to hide it and keep its history",
                        key.as_str(),
                        used.describe()
                    ),
                    details: used.details(),
                });
            }
            q!(tx, execute, sqlx::query("DELETE FROM pins WHERE artifact_id = $1").bind(&artifact.id))?;
            q!(tx, execute, sqlx::query("DELETE FROM versions WHERE artifact_id = $1").bind(&artifact.id))?;
            q!(tx, execute, sqlx::query("DELETE FROM artifacts WHERE id = $1").bind(&artifact.id))?;
            record(
                tx,
                workspace_id,
                &caller.actor,
                Change::new("artifact.delete", AuditObject::Artifact, key.as_str()).before(&artifact),
            )
            .await?;
            artifact
        })
    }
}
