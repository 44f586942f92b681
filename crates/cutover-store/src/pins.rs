//! Pins: which version owns each (artifact, environment), changed in one transaction with its
//! history, audit events, a revision bump and a change record.

use std::collections::BTreeMap;

use cutover_domain::{ArtifactKey, AuditObject, Content, EnvironmentName, PageLimit, Timestamp, VersionNumber};

use crate::audit::{Change, paginate, record};
use crate::db::{Conn, new_id, q, read, transaction};
use crate::{
    Actor, Artifact, Caller, ChangeRecord, Environment, LivePin, Page, Pin, PinAuthority, PinChange, PinWrite, Result,
    Store, StoreError, artifacts, environments, stored_environment, stored_key,
};

#[derive(sqlx::FromRow)]
struct PinRow {
    artifact: String,
    environment: String,
    version: i64,
    revision: i64,
    reason: String,
    started_at: i64,
    started_by_id: String,
    started_by: String,
    ended_at: Option<i64>,
    ended_by_id: Option<String>,
    ended_by: Option<String>,
    end_reason: Option<String>,
}

/// Pin rows with their artifact key and environment name; callers add `WHERE …`.
const SELECT_PINS: &str = "SELECT a.key AS artifact, e.name AS environment, p.version, p.revision, p.reason,
            p.started_at, p.started_by_id, p.started_by, p.ended_at, p.ended_by_id, p.ended_by, p.end_reason
     FROM pins p JOIN artifacts a ON a.id = p.artifact_id JOIN environments e ON e.id = p.environment_id";

impl TryFrom<PinRow> for Pin {
    type Error = StoreError;

    fn try_from(row: PinRow) -> Result<Self> {
        let ended_by = match (row.ended_by_id, row.ended_by) {
            (Some(token_id), Some(name)) => Some(Actor { token_id, name }),
            _ => None,
        };
        Ok(Pin {
            artifact: stored_key(&row.artifact)?,
            environment: stored_environment(&row.environment)?,
            version: row.version,
            revision: row.revision,
            reason: row.reason,
            started_at: Timestamp::from_micros(row.started_at),
            started_by: Actor { token_id: row.started_by_id, name: row.started_by },
            ended_at: row.ended_at.map(Timestamp::from_micros),
            ended_by,
            end_reason: row.end_reason,
        })
    }
}

/// The environments named, all of which must exist (404 listing those that do not).
pub(crate) async fn environments_named(
    conn: &mut Conn<'_>,
    workspace_id: &str,
    names: &[EnvironmentName],
) -> Result<Vec<Environment>> {
    let mut found = Vec::with_capacity(names.len());
    let mut missing = Vec::new();
    for name in names {
        match environments::fetch(conn, workspace_id, name).await {
            Ok(environment) => found.push(environment),
            Err(StoreError::NotFound(_)) => missing.push(name.as_str().to_owned()),
            Err(e) => return Err(e),
        }
    }
    if missing.is_empty() { Ok(found) } else { Err(StoreError::NotFoundMany { what: "environments", names: missing }) }
}

pub(crate) async fn active_version(
    conn: &mut Conn<'_>,
    artifact_id: &str,
    environment_id: &str,
) -> Result<Option<(i64, i64)>> {
    Ok(q!(
        conn,
        fetch_optional,
        sqlx::query_as(
            "SELECT version, revision FROM pins WHERE artifact_id = $1 AND environment_id = $2 AND ended_at IS NULL"
        )
        .bind(artifact_id)
        .bind(environment_id)
    )?)
}

/// Every environment of the artifact and the version owning it.
pub(crate) async fn owners(conn: &mut Conn<'_>, artifact_id: &str) -> Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = q!(
        conn,
        fetch_all,
        sqlx::query_as(
            "SELECT e.name, p.version FROM pins p JOIN environments e ON e.id = p.environment_id
             WHERE p.artifact_id = $1 AND p.ended_at IS NULL"
        )
        .bind(artifact_id)
    )?;
    Ok(rows.into_iter().collect())
}

pub(crate) async fn ensure_version(conn: &mut Conn<'_>, artifact: &Artifact, number: i64) -> Result<()> {
    let found: Option<(i64,)> = q!(
        conn,
        fetch_optional,
        sqlx::query_as("SELECT number FROM versions WHERE artifact_id = $1 AND number = $2")
            .bind(&artifact.id)
            .bind(number)
    )?;
    found
        .map(|_| ())
        .ok_or_else(|| StoreError::NotFound(format!("version {number} of artifact {:?}", artifact.key.as_str())))
}

/// Takes the workspace row's write lock, so that pin writes of a workspace are serialised and
/// every check below reads committed state (SQLite serialises writers anyway).
pub(crate) async fn lock_workspace(conn: &mut Conn<'_>, workspace_id: &str) -> Result<()> {
    q!(conn, execute, sqlx::query("UPDATE workspaces SET revision = revision WHERE id = $1").bind(workspace_id))?;
    Ok(())
}

/// Moves each listed environment to the desired version (None: unpinned), skipping those
/// already there. One revision for the whole write.
pub(crate) async fn apply(
    conn: &mut Conn<'_>,
    workspace_id: &str,
    actor: &Actor,
    authority: &PinAuthority,
    artifact: &Artifact,
    desired: &[(Environment, Option<i64>)],
    reason: &str,
) -> Result<PinWrite> {
    let mut planned = Vec::new();
    for (environment, to) in desired {
        if let Some(why) = crate::refuses(authority, environment) {
            return Err(StoreError::Forbidden(why));
        }
        let from = active_version(conn, &artifact.id, &environment.id).await?.map(|(v, _)| v);
        if from != *to && to.is_some() {
            // Releasing an environment of an archived artifact is allowed: it is how its pins
            // are cleared before a delete. Making a version live is not.
            artifacts::refuse_archived(artifact)?;
        }
        if from != *to {
            planned.push((environment, from, *to));
        }
    }
    if planned.is_empty() {
        return Ok(PinWrite { revision: None, changes: Vec::new() });
    }
    let revision = bump_revision(conn, workspace_id).await?;
    let now = Timestamp::now().as_micros();
    let mut changes = Vec::with_capacity(planned.len());
    for (environment, from, to) in planned {
        if from.is_some() {
            q!(
                conn,
                execute,
                sqlx::query(
                    "UPDATE pins SET ended_at = $1, ended_by_id = $2, ended_by = $3, end_reason = $4
                     WHERE artifact_id = $5 AND environment_id = $6 AND ended_at IS NULL"
                )
                .bind(now)
                .bind(&actor.token_id)
                .bind(&actor.name)
                .bind(reason)
                .bind(&artifact.id)
                .bind(&environment.id)
            )?;
        }
        if let Some(version) = to {
            q!(
                conn,
                execute,
                sqlx::query(
                    "INSERT INTO pins (id, workspace_id, artifact_id, environment_id, version, revision, reason,
                                       started_at, started_by_id, started_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                )
                .bind(new_id())
                .bind(workspace_id)
                .bind(&artifact.id)
                .bind(&environment.id)
                .bind(version)
                .bind(revision)
                .bind(reason)
                .bind(now)
                .bind(&actor.token_id)
                .bind(&actor.name)
            )
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict { .. } => StoreError::conflict(format!(
                    "environment {:?} of artifact {:?} was changed by a concurrent request; retry",
                    environment.name.as_str(),
                    artifact.key.as_str()
                )),
                other => other,
            })?;
        }
        let change = PinChange { artifact: artifact.key.clone(), environment: environment.name.clone(), from, to };
        let action = if to.is_some() { "pin.set" } else { "pin.clear" };
        let before = from.map(|v| serde_json::json!({"environment": change.environment, "version": v}));
        let after = to.map(|v| serde_json::json!({"environment": change.environment, "version": v, "reason": reason, "revision": revision}));
        let mut audit = Change::new(action, AuditObject::Artifact, artifact.key.as_str());
        audit.before = before;
        audit.after = after;
        record(conn, workspace_id, actor, audit).await?;
        changes.push(change);
    }
    record_revision(conn, workspace_id, revision, &changes).await?;
    Ok(PinWrite { revision: Some(revision), changes })
}

/// Bumps the workspace revision: something resolve answers is about to change.
pub(crate) async fn bump_revision(conn: &mut Conn<'_>, workspace_id: &str) -> Result<i64> {
    conn.effects.resolve(workspace_id);
    let (revision,): (i64,) = q!(
        conn,
        fetch_one,
        sqlx::query_as("UPDATE workspaces SET revision = revision + 1 WHERE id = $1 RETURNING revision")
            .bind(workspace_id)
    )?;
    Ok(revision)
}

/// Writes the change record of a revision, which the change stream replays.
pub(crate) async fn record_revision(
    conn: &mut Conn<'_>,
    workspace_id: &str,
    revision: i64,
    pins: &[PinChange],
) -> Result<()> {
    q!(
        conn,
        execute,
        sqlx::query("INSERT INTO changes (workspace_id, revision, at, pins) VALUES ($1, $2, $3, $4)")
            .bind(workspace_id)
            .bind(revision)
            .bind(Timestamp::now().as_micros())
            .bind(serde_json::to_string(pins)?)
    )?;
    Ok(())
}

/// A new revision for a change to what resolve answers that moves no pin (an experiment
/// starting, pausing, ending): the change stream announces it with an empty `pins` list.
pub(crate) async fn new_revision(conn: &mut Conn<'_>, workspace_id: &str) -> Result<i64> {
    conn.effects.resolve(workspace_id);
    let revision = bump_revision(conn, workspace_id).await?;
    record_revision(conn, workspace_id, revision, &[]).await?;
    Ok(revision)
}

#[derive(sqlx::FromRow)]
struct LiveRow {
    artifact: String,
    value_type: String,
    environment: String,
    version: i64,
    revision: i64,
    content: String,
}

impl Store {
    /// Pins `version` to one environment. With `expected_revision`, refuses (412) unless the
    /// environment's current pin was opened at that revision (0: nothing pinned).
    pub async fn pin(
        &self,
        caller: &Caller,
        key: &ArtifactKey,
        environment: &EnvironmentName,
        version: Option<VersionNumber>,
        expected_revision: Option<i64>,
        reason: &str,
    ) -> Result<PinWrite> {
        transaction!(self, |tx| {
            let (workspace_id, actor, authority) = (caller.workspace_id.as_str(), &caller.actor, &caller.authority);
            // What the workspace lock does not guard is read before it, so that the lock is held
            // for fewer statements: environments change without it, and a version never changes
            // (it goes only with its artifact, which is read again under the lock).
            let artifact = artifacts::fetch(tx, workspace_id, key).await?;
            let environment = environments::fetch(tx, workspace_id, environment).await?;
            let version = version.map(VersionNumber::get);
            if let Some(version) = version {
                ensure_version(tx, &artifact, version).await?;
            }
            lock_workspace(tx, workspace_id).await?;
            // Archived or deleted meanwhile: both happen under the lock.
            let locked = artifacts::fetch(tx, workspace_id, key).await?;
            if let (true, Some(version)) = (locked.id != artifact.id, version) {
                // Deleted and made again under the same key: its own versions count.
                ensure_version(tx, &locked, version).await?;
            }
            let artifact = locked;
            if let Some(expected) = expected_revision {
                let current = active_version(tx, &artifact.id, &environment.id).await?.map_or(0, |(_, r)| r);
                if current != expected {
                    return Err(StoreError::PreconditionFailed {
                        what: format!("the pin of {:?} in {:?}", artifact.key.as_str(), environment.name.as_str()),
                        expected,
                        current,
                    });
                }
            }
            apply(tx, workspace_id, actor, authority, &artifact, &[(environment, version)], reason).await?
        })
    }

    /// Replaces the set of environments `version` owns: listed ones move to it, unlisted ones it
    /// owned are released.
    pub async fn set_version_environments(
        &self,
        caller: &Caller,
        key: &ArtifactKey,
        version: VersionNumber,
        environments: &[EnvironmentName],
        reason: &str,
    ) -> Result<PinWrite> {
        transaction!(self, |tx| {
            let (workspace_id, actor, authority) = (caller.workspace_id.as_str(), &caller.actor, &caller.authority);
            lock_workspace(tx, workspace_id).await?;
            let artifact = artifacts::fetch(tx, workspace_id, key).await?;
            let version = version.get();
            ensure_version(tx, &artifact, version).await?;
            let listed = environments_named(tx, workspace_id, environments).await?;
            let owned = owners(tx, &artifact.id).await?;
            let mut desired: Vec<(Environment, Option<i64>)> = listed.into_iter().map(|e| (e, Some(version))).collect();
            let released = owned
                .iter()
                .filter(|(name, v)| **v == version && !environments.iter().any(|e| e.as_str() == name.as_str()))
                .map(|(name, _)| EnvironmentName::parse(name).map_err(|e| StoreError::Corrupt(e.to_string())))
                .collect::<Result<Vec<_>>>()?;
            for environment in environments_named(tx, workspace_id, &released).await? {
                desired.push((environment, None));
            }
            apply(tx, workspace_id, actor, authority, &artifact, &desired, reason).await?
        })
    }

    /// Pins the version live in `from` to each of `to`, atomically. `dry_run` computes the same
    /// changes and writes nothing.
    pub async fn promote(
        &self,
        caller: &Caller,
        key: &ArtifactKey,
        from: &EnvironmentName,
        to: &[EnvironmentName],
        reason: &str,
        dry_run: bool,
    ) -> Result<(i64, PinWrite)> {
        transaction!(self, dry_run = dry_run, |tx| {
            let (workspace_id, actor, authority) = (caller.workspace_id.as_str(), &caller.actor, &caller.authority);
            lock_workspace(tx, workspace_id).await?;
            let artifact = artifacts::fetch(tx, workspace_id, key).await?;
            let source = environments::fetch(tx, workspace_id, from).await?;
            let version = active_version(tx, &artifact.id, &source.id).await?.map(|(v, _)| v).ok_or_else(|| {
                StoreError::conflict(format!(
                    "nothing of artifact {:?} is live in {:?} to promote",
                    key.as_str(),
                    from.as_str()
                ))
            })?;
            let targets = environments_named(tx, workspace_id, to).await?;
            let desired: Vec<_> = targets.into_iter().map(|e| (e, Some(version))).collect();
            let write = apply(tx, workspace_id, actor, authority, &artifact, &desired, reason).await?;
            // A dry run's revision was never committed.
            (version, if dry_run { PinWrite { revision: None, ..write } } else { write })
        })
    }

    /// The environments an artifact is live in, by environment name.
    pub async fn list_pins(&self, workspace_id: &str, key: &ArtifactKey) -> Result<Vec<Pin>> {
        read!(self, |conn| {
            let artifact = artifacts::fetch(conn, workspace_id, key).await?;
            let rows: Vec<PinRow> = q!(
                conn,
                fetch_all,
                sqlx::query_as(&format!(
                    "{SELECT_PINS}
                     WHERE p.artifact_id = $1 AND p.ended_at IS NULL ORDER BY e.name"
                ))
                .bind(&artifact.id)
            )?;
            rows.into_iter().map(Pin::try_from).collect()
        })
    }

    /// The pin of one (artifact, environment); `None` when nothing is pinned there.
    pub async fn get_pin(
        &self,
        workspace_id: &str,
        key: &ArtifactKey,
        environment: &EnvironmentName,
    ) -> Result<Option<Pin>> {
        read!(self, |conn| {
            let artifact = artifacts::fetch(conn, workspace_id, key).await?;
            let environment = environments::fetch(conn, workspace_id, environment).await?;
            let row: Option<PinRow> = q!(
                conn,
                fetch_optional,
                sqlx::query_as(&format!(
                    "{SELECT_PINS}
                     WHERE p.artifact_id = $1 AND p.environment_id = $2 AND p.ended_at IS NULL"
                ))
                .bind(&artifact.id)
                .bind(&environment.id)
            )?;
            row.map(Pin::try_from).transpose()
        })
    }

    /// Every interval of one (artifact, environment), newest first, below revision `before`.
    pub async fn pin_history(
        &self,
        workspace_id: &str,
        key: &ArtifactKey,
        environment: &EnvironmentName,
        before: Option<i64>,
        limit: PageLimit,
    ) -> Result<Page<Pin>> {
        read!(self, |conn| {
            let artifact = artifacts::fetch(conn, workspace_id, key).await?;
            let environment = environments::fetch(conn, workspace_id, environment).await?;
            let rows: Vec<PinRow> = q!(
                conn,
                fetch_all,
                sqlx::query_as(&format!(
                    "{SELECT_PINS}
                     WHERE p.artifact_id = $1 AND p.environment_id = $2 AND p.revision < $3
                     ORDER BY p.revision DESC LIMIT $4"
                ))
                .bind(&artifact.id)
                .bind(&environment.id)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit.probe())
            )?;
            let mut items = rows.into_iter().map(Pin::try_from).collect::<Result<Vec<_>>>()?;
            let next = paginate(&mut items, limit).map(|last| cutover_domain::Cursor::Before(last.revision));
            Ok(Page { items, next })
        })
    }

    /// What is live in one environment, across artifacts, by artifact key.
    pub async fn environment_pins(&self, workspace_id: &str, environment: &EnvironmentName) -> Result<Vec<Pin>> {
        read!(self, |conn| {
            let environment = environments::fetch(conn, workspace_id, environment).await?;
            let rows: Vec<PinRow> = q!(
                conn,
                fetch_all,
                sqlx::query_as(&format!(
                    "{SELECT_PINS}
                     WHERE p.environment_id = $1 AND p.ended_at IS NULL ORDER BY a.key"
                ))
                .bind(&environment.id)
            )?;
            rows.into_iter().map(Pin::try_from).collect()
        })
    }

    /// What was live in every environment at `at` (time travel), by artifact key then
    /// environment name: the intervals open at that moment.
    pub async fn pins_at(&self, workspace_id: &str, at: Timestamp) -> Result<Vec<Pin>> {
        read!(self, |conn| {
            let rows: Vec<PinRow> = q!(
                conn,
                fetch_all,
                sqlx::query_as(&format!(
                    "{SELECT_PINS}
                     WHERE a.workspace_id = $1 AND p.started_at <= $2 AND (p.ended_at IS NULL OR p.ended_at > $2)
                     ORDER BY a.key, e.name"
                ))
                .bind(workspace_id)
                .bind(at.as_micros())
            )?;
            rows.into_iter().map(Pin::try_from).collect()
        })
    }

    /// Everything live in a workspace with its content, and the workspace revision it is as of:
    /// what the resolve snapshot is built from. Costs the live pins, not the history.
    pub async fn live_pins(&self, workspace_id: &str) -> Result<(i64, Vec<LivePin>)> {
        read!(self, |conn| fetch_live_pins(conn, workspace_id).await)
    }

    /// Revisions of a workspace after `after`, oldest first: the change stream's replay. Only
    /// durable ones: what a crash could take back is never announced (docs/architecture.md).
    pub async fn changes_since(&self, workspace_id: &str, after: i64, limit: i64) -> Result<Vec<ChangeRecord>> {
        let (rows, position): (Vec<(i64, i64, String)>, _) = read!(self, |conn| {
            let rows = q!(
                conn,
                fetch_all,
                sqlx::query_as(
                    "SELECT revision, at, pins FROM changes WHERE workspace_id = $1 AND revision > $2
                     ORDER BY revision LIMIT $3"
                )
                .bind(workspace_id)
                .bind(after)
                .bind(limit)
            )?;
            (rows, crate::db::wal_position(conn).await?)
        });
        self.wait_durable(position).await?;
        rows.into_iter()
            .map(|(revision, at, pins)| {
                Ok(ChangeRecord { revision, at: Timestamp::from_micros(at), pins: serde_json::from_str(&pins)? })
            })
            .collect()
    }
}

/// The live pins of a workspace and the revision they are as of.
pub(crate) async fn fetch_live_pins(conn: &mut Conn<'_>, workspace_id: &str) -> Result<(i64, Vec<LivePin>)> {
    let (revision,): (i64,) =
        q!(conn, fetch_one, sqlx::query_as("SELECT revision FROM workspaces WHERE id = $1").bind(workspace_id))?;
    let rows: Vec<LiveRow> = q!(
        conn,
        fetch_all,
        sqlx::query_as(
            "SELECT a.key AS artifact, a.value_type, e.name AS environment, p.version, p.revision, v.content
                 FROM pins p
                 JOIN artifacts a ON a.id = p.artifact_id
                 JOIN environments e ON e.id = p.environment_id
                 JOIN versions v ON v.artifact_id = p.artifact_id AND v.number = p.version
                 WHERE p.workspace_id = $1 AND p.ended_at IS NULL AND a.archived_at IS NULL"
        )
        .bind(workspace_id)
    )?;
    let live = rows
        .into_iter()
        .map(|row| {
            Ok(LivePin {
                value_type: row
                    .value_type
                    .parse()
                    .map_err(|e: cutover_domain::DomainError| StoreError::Corrupt(e.to_string()))?,
                content: Content::from_stored(row.content)?,
                artifact: stored_key(&row.artifact)?,
                environment: stored_environment(&row.environment)?,
                version: row.version,
                revision: row.revision,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((revision, live))
}
