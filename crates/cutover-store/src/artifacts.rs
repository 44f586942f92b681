use cutover_domain::{
    ArtifactKey, AuditObject, Content, EnvironmentName, PageLimit, Timestamp, ValueType, VersionNumber,
};
use serde_json::Value;

use crate::audit::{Change, paginate, record};
use crate::db::{Conn, new_id, q, read, transaction};
use crate::{
    Actor, Artifact, ArtifactChanges, Caller, NewArtifact, Page, PinWrite, Result, Store, StoreError, Version, pins,
};

/// A version to publish, and where to pin it.
pub struct Publish<'a> {
    pub content: Value,
    pub message: &'a str,
    pub environments: &'a [EnvironmentName],
    /// Take environments owned by other versions instead of refusing.
    pub move_pins: bool,
}

#[derive(sqlx::FromRow)]
struct ArtifactRow {
    id: String,
    key: String,
    value_type: String,
    kind: String,
    description: String,
    latest_version: i64,
    created_at: i64,
    updated_at: i64,
    archived_at: Option<i64>,
}

const COLUMNS: &str = "id, key, value_type, kind, description, latest_version, created_at, updated_at, archived_at";

fn corrupt(e: impl ToString) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl TryFrom<ArtifactRow> for Artifact {
    type Error = StoreError;

    fn try_from(row: ArtifactRow) -> Result<Self> {
        Ok(Artifact {
            key: ArtifactKey::parse(&row.key).map_err(corrupt)?,
            value_type: row.value_type.parse::<ValueType>().map_err(corrupt)?,
            id: row.id,
            kind: row.kind,
            description: row.description,
            latest_version: row.latest_version,
            created_at: Timestamp::from_micros(row.created_at),
            updated_at: Timestamp::from_micros(row.updated_at),
            archived_at: row.archived_at.map(Timestamp::from_micros),
        })
    }
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    number: i64,
    content: String,
    sha256: String,
    message: String,
    author_token_id: String,
    author_name: String,
    created_at: i64,
}

const VERSION_COLUMNS: &str = "number, content, sha256, message, author_token_id, author_name, created_at";

impl VersionRow {
    fn into_version(self, artifact: &ArtifactKey) -> Result<Version> {
        Ok(Version {
            artifact: artifact.clone(),
            number: self.number,
            content: Content::from_stored(self.content)?,
            sha256: self.sha256,
            message: self.message,
            author: Actor { token_id: self.author_token_id, name: self.author_name },
            created_at: Timestamp::from_micros(self.created_at),
        })
    }
}

pub(crate) async fn fetch(conn: &mut Conn<'_>, workspace_id: &str, key: &ArtifactKey) -> Result<Artifact> {
    let row: Option<ArtifactRow> = q!(
        conn,
        fetch_optional,
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM artifacts WHERE workspace_id = $1 AND key = $2"))
            .bind(workspace_id)
            .bind(key.as_str())
    )?;
    row.ok_or_else(|| StoreError::NotFound(format!("artifact {:?}", key.as_str())))?.try_into()
}

/// Inserts the next version of `artifact` (its number from the artifact row's counter) and its
/// audit event, in the caller's transaction.
pub(crate) async fn insert_version(
    tx: &mut Conn<'_>,
    workspace_id: &str,
    actor: &Actor,
    artifact: &Artifact,
    content: &Content,
    message: &str,
) -> Result<Version> {
    let now = Timestamp::now().as_micros();
    let (number,): (i64,) = q!(
        tx,
        fetch_one,
        sqlx::query_as(
            "UPDATE artifacts SET latest_version = latest_version + 1, updated_at = $1
             WHERE id = $2 RETURNING latest_version"
        )
        .bind(now)
        .bind(&artifact.id)
    )?;
    let row: VersionRow = q!(
        tx,
        fetch_one,
        sqlx::query_as(&format!(
            "INSERT INTO versions (artifact_id, number, content, sha256, message, author_token_id, author_name, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {VERSION_COLUMNS}"
        ))
        .bind(&artifact.id)
        .bind(number)
        .bind(content.as_json())
        .bind(content.sha256())
        .bind(message)
        .bind(&actor.token_id)
        .bind(&actor.name)
        .bind(now)
    )?;
    let version = row.into_version(&artifact.key)?;
    let summary = serde_json::json!({"number": version.number, "sha256": version.sha256, "message": version.message});
    record(
        tx,
        workspace_id,
        actor,
        Change::new("version.create", AuditObject::Artifact, artifact.key.as_str()).after(&summary),
    )
    .await?;
    Ok(version)
}

/// The artifact, with its row locked until the transaction ends, refused (409
/// `artifact_archived`) when archived: what every write that adds to an artifact (a version, an
/// experiment, a rollout, a pool) starts with, so that it cannot interleave with archiving or
/// deleting it (SQLite serialises writers anyway; on PostgreSQL the row lock orders them, and a
/// write that waited reads the row as the other left it).
pub(crate) async fn fetch_writable(conn: &mut Conn<'_>, workspace_id: &str, key: &ArtifactKey) -> Result<Artifact> {
    let artifact = fetch_locked(conn, workspace_id, key).await?;
    refuse_archived(&artifact)?;
    Ok(artifact)
}

/// The artifact, with its row locked until the transaction ends.
pub(crate) async fn fetch_locked(conn: &mut Conn<'_>, workspace_id: &str, key: &ArtifactKey) -> Result<Artifact> {
    let row: Option<ArtifactRow> = q!(
        conn,
        fetch_optional,
        sqlx::query_as(&format!(
            "UPDATE artifacts SET latest_version = latest_version WHERE workspace_id = $1 AND key = $2
             RETURNING {COLUMNS}"
        ))
        .bind(workspace_id)
        .bind(key.as_str())
    )?;
    row.ok_or_else(|| StoreError::NotFound(format!("artifact {:?}", key.as_str())))?.try_into()
}

/// Sets or clears `archived_at`.
pub(crate) async fn set_archived_at(
    conn: &mut Conn<'_>,
    artifact_id: &str,
    archived_at: Option<i64>,
    now: i64,
) -> Result<Artifact> {
    let row: ArtifactRow = q!(
        conn,
        fetch_one,
        sqlx::query_as(&format!(
            "UPDATE artifacts SET archived_at = $1, updated_at = $2 WHERE id = $3 RETURNING {COLUMNS}"
        ))
        .bind(archived_at)
        .bind(now)
        .bind(artifact_id)
    )?;
    row.try_into()
}

pub(crate) fn refuse_archived(artifact: &Artifact) -> Result<()> {
    match artifact.archived_at {
        Some(_) => {
            Err(StoreError::Archived(format!("artifact {:?} is archived; unarchive it first", artifact.key.as_str())))
        }
        None => Ok(()),
    }
}

impl Store {
    pub async fn create_artifact(&self, caller: &Caller, new: &NewArtifact) -> Result<Artifact> {
        let (workspace_id, actor) = (caller.workspace_id.as_str(), &caller.actor);
        transaction!(self, |tx| {
            tx.effects.resolve(workspace_id);
            let now = Timestamp::now().as_micros();
            let row: ArtifactRow = q!(
                tx,
                fetch_one,
                sqlx::query_as(&format!(
                    "INSERT INTO artifacts (id, workspace_id, key, value_type, kind, description, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {COLUMNS}"
                ))
                .bind(new_id())
                .bind(workspace_id)
                .bind(new.key.as_str())
                .bind(new.value_type.as_str())
                .bind(&new.kind)
                .bind(&new.description)
                .bind(now)
            )
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict { .. } => StoreError::conflict(format!("artifact {:?} already exists", new.key.as_str())),
                other => other,
            })?;
            let artifact = Artifact::try_from(row)?;
            record(
                tx,
                workspace_id,
                actor,
                Change::new("artifact.create", AuditObject::Artifact, artifact.key.as_str()).after(&artifact),
            )
            .await?;
            artifact
        })
    }

    /// Artifacts ordered by key, starting after `after`: those not archived, or with `archived`
    /// only the archived ones.
    pub async fn list_artifacts(
        &self,
        workspace_id: &str,
        after: Option<&str>,
        limit: PageLimit,
        archived: bool,
    ) -> Result<Page<Artifact>> {
        let archived = if archived { "archived_at IS NOT NULL" } else { "archived_at IS NULL" };
        let rows: Vec<ArtifactRow> = read!(self, |conn| {
            q!(
                conn,
                fetch_all,
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM artifacts WHERE workspace_id = $1 AND key > $2 AND {archived}
                     ORDER BY key LIMIT $3"
                ))
                .bind(workspace_id)
                .bind(after.unwrap_or(""))
                .bind(limit.probe())
            )
        })?;
        let mut items = rows.into_iter().map(Artifact::try_from).collect::<Result<Vec<_>>>()?;
        let next = paginate(&mut items, limit).map(|last| cutover_domain::Cursor::After(last.key.as_str().to_owned()));
        Ok(Page { items, next })
    }

    pub async fn get_artifact(&self, workspace_id: &str, key: &ArtifactKey) -> Result<Artifact> {
        read!(self, |conn| fetch(conn, workspace_id, key).await)
    }

    pub async fn update_artifact(
        &self,
        caller: &Caller,
        key: &ArtifactKey,
        changes: &ArtifactChanges,
    ) -> Result<Artifact> {
        let (workspace_id, actor) = (caller.workspace_id.as_str(), &caller.actor);
        transaction!(self, |tx| {
            let before = fetch(tx, workspace_id, key).await?;
            let row: ArtifactRow = q!(
                tx,
                fetch_one,
                sqlx::query_as(&format!(
                    "UPDATE artifacts SET kind = $1, description = $2, updated_at = $3 WHERE id = $4 RETURNING {COLUMNS}"
                ))
                .bind(changes.kind.as_ref().unwrap_or(&before.kind))
                .bind(changes.description.as_ref().unwrap_or(&before.description))
                .bind(Timestamp::now().as_micros())
                .bind(&before.id)
            )?;
            let after = Artifact::try_from(row)?;
            record(
                tx,
                workspace_id,
                actor,
                Change::new("artifact.update", AuditObject::Artifact, key.as_str()).before(&before).after(&after),
            )
            .await?;
            after
        })
    }

    /// Publishes the next version of an artifact. Numbers come from the artifact row's counter,
    /// incremented under its write lock: concurrent publishers get consecutive numbers, no gaps.
    pub async fn create_version(
        &self,
        caller: &Caller,
        key: &ArtifactKey,
        content: Value,
        message: &str,
    ) -> Result<Version> {
        let publish = Publish { content, message, environments: &[], move_pins: false };
        Ok(self.publish_version(caller, key, publish).await?.0)
    }

    /// Publishes the next version and pins it to `environments` in the same transaction. If any
    /// of them is owned by another version, refuses (409 listing every one) and creates nothing,
    /// unless `move_pins`.
    pub async fn publish_version(
        &self,
        caller: &Caller,
        key: &ArtifactKey,
        publish: Publish<'_>,
    ) -> Result<(Version, PinWrite)> {
        let Publish { content, message, environments, move_pins } = publish;
        let (workspace_id, actor, authority) = (caller.workspace_id.as_str(), &caller.actor, &caller.authority);
        transaction!(self, |tx| {
            if !environments.is_empty() {
                pins::lock_workspace(tx, workspace_id).await?;
            }
            let artifact = fetch_writable(tx, workspace_id, key).await?;
            let content = Content::parse(artifact.value_type, content)?;
            let targets = pins::environments_named(tx, workspace_id, environments).await?;
            if !move_pins && !targets.is_empty() {
                let owned = pins::owners(tx, &artifact.id).await?;
                let conflicts: Vec<_> = targets
                    .iter()
                    .filter_map(|e| {
                        owned.get(e.name.as_str()).map(|v| serde_json::json!({"environment": e.name, "version": v}))
                    })
                    .collect();
                if !conflicts.is_empty() {
                    let names: Vec<_> = conflicts.iter().filter_map(|c| c["environment"].as_str()).collect();
                    return Err(StoreError::Conflict {
                        message: format!(
                            "already owned by other versions: {}; send \"move\": true to move them",
                            names.join(", ")
                        ),
                        details: Some(serde_json::json!({ "environments": conflicts })),
                    });
                }
            }
            let version = insert_version(tx, workspace_id, actor, &artifact, &content, message).await?;
            let desired: Vec<_> = targets.into_iter().map(|e| (e, Some(version.number))).collect();
            let pinned = pins::apply(tx, workspace_id, actor, authority, &artifact, &desired, message).await?;
            (version, pinned)
        })
    }

    /// Versions newest first, starting below `before`.
    pub async fn list_versions(
        &self,
        workspace_id: &str,
        key: &ArtifactKey,
        before: Option<i64>,
        limit: PageLimit,
    ) -> Result<Page<Version>> {
        read!(self, |conn| {
            let artifact = fetch(conn, workspace_id, key).await?;
            let rows: Vec<VersionRow> = q!(
                conn,
                fetch_all,
                sqlx::query_as(&format!(
                    "SELECT {VERSION_COLUMNS} FROM versions WHERE artifact_id = $1 AND number < $2
                     ORDER BY number DESC LIMIT $3"
                ))
                .bind(&artifact.id)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit.probe())
            )?;
            let mut items = rows.into_iter().map(|r| r.into_version(&artifact.key)).collect::<Result<Vec<_>>>()?;
            let next = paginate(&mut items, limit).map(|last| cutover_domain::Cursor::Before(last.number));
            Ok(Page { items, next })
        })
    }

    pub async fn get_version(&self, workspace_id: &str, key: &ArtifactKey, number: VersionNumber) -> Result<Version> {
        read!(self, |conn| {
            let artifact = fetch(conn, workspace_id, key).await?;
            let row: Option<VersionRow> = q!(
                conn,
                fetch_optional,
                sqlx::query_as(&format!(
                    "SELECT {VERSION_COLUMNS} FROM versions WHERE artifact_id = $1 AND number = $2"
                ))
                .bind(&artifact.id)
                .bind(number.get())
            )?;
            row.ok_or_else(|| StoreError::NotFound(format!("version {number} of artifact {:?}", key.as_str())))?
                .into_version(&artifact.key)
        })
    }
}

impl Store {
    /// Every artifact key of a workspace with its value type (archived ones left out): what
    /// resolve needs to tell an unknown key from one with nothing pinned.
    pub async fn artifact_types(&self, workspace_id: &str) -> Result<Vec<(String, ValueType)>> {
        read!(self, |conn| fetch_types(conn, workspace_id).await)
    }
}

/// Every artifact key of a workspace with its value type; archived artifacts are not there
/// (resolve answers `FLAG_NOT_FOUND` for them).
pub(crate) async fn fetch_types(conn: &mut Conn<'_>, workspace_id: &str) -> Result<Vec<(String, ValueType)>> {
    let rows: Vec<(String, String)> = q!(
        conn,
        fetch_all,
        sqlx::query_as("SELECT key, value_type FROM artifacts WHERE workspace_id = $1 AND archived_at IS NULL")
            .bind(workspace_id)
    )?;
    rows.into_iter().map(|(key, value_type)| Ok((key, value_type.parse::<ValueType>().map_err(corrupt)?))).collect()
}
