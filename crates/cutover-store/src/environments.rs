use cutover_domain::{AuditObject, DeploymentTargets, EnvironmentName, Timestamp};

use crate::audit::{Change, record};
use crate::db::{Conn, new_id, q, read, transaction};
use crate::{Caller, Environment, EnvironmentChanges, NewEnvironment, Result, Store, StoreError};

#[derive(sqlx::FromRow)]
struct EnvironmentRow {
    id: String,
    name: String,
    description: String,
    protected: bool,
    targets: String,
    position: i64,
    created_at: i64,
    updated_at: i64,
}

const COLUMNS: &str = "id, name, description, protected, targets, position, created_at, updated_at";

impl TryFrom<EnvironmentRow> for Environment {
    type Error = StoreError;

    fn try_from(row: EnvironmentRow) -> Result<Self> {
        Ok(Environment {
            name: EnvironmentName::parse(&row.name).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            targets: DeploymentTargets::from_stored(&row.targets)?,
            id: row.id,
            description: row.description,
            protected: row.protected,
            position: row.position,
            created_at: Timestamp::from_micros(row.created_at),
            updated_at: Timestamp::from_micros(row.updated_at),
        })
    }
}

pub(crate) async fn fetch(conn: &mut Conn<'_>, workspace_id: &str, name: &EnvironmentName) -> Result<Environment> {
    let row: Option<EnvironmentRow> = q!(
        conn,
        fetch_optional,
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM environments WHERE workspace_id = $1 AND name = $2"))
            .bind(workspace_id)
            .bind(name.as_str())
    )?;
    row.ok_or_else(|| StoreError::NotFound(format!("environment {:?}", name.as_str())))?.try_into()
}

impl Store {
    /// Creates an environment, keeping the workspace within `max_environments`.
    pub async fn create_environment(
        &self,
        caller: &Caller,
        new: &NewEnvironment,
        max_environments: u32,
    ) -> Result<Environment> {
        let (workspace_id, actor) = (caller.workspace_id.as_str(), &caller.actor);
        transaction!(self, |tx| {
            tx.effects.resolve(workspace_id);
            let taken = fetch(tx, workspace_id, &new.name).await;
            if taken.is_ok() {
                return Err(StoreError::conflict(format!("environment {:?} already exists", new.name.as_str())));
            }
            // The counter row is the lock: concurrent creates cannot both take the last slot.
            let slot: Option<(i64,)> = q!(
                tx,
                fetch_optional,
                sqlx::query_as(
                    "UPDATE workspaces SET environment_count = environment_count + 1
                     WHERE id = $1 AND environment_count < $2 RETURNING environment_count"
                )
                .bind(workspace_id)
                .bind(i64::from(max_environments))
            )?;
            if slot.is_none() {
                return Err(StoreError::LimitReached(format!(
                    "a workspace may have at most {max_environments} environments; delete one first"
                )));
            }
            let now = Timestamp::now().as_micros();
            let row: EnvironmentRow = q!(
                tx,
                fetch_one,
                sqlx::query_as(&format!(
                    "INSERT INTO environments
                         (id, workspace_id, name, description, protected, targets, position, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6,
                         COALESCE($8, (SELECT COALESCE(MAX(position), 0) + 1 FROM environments WHERE workspace_id = $2)),
                         $7, $7)
                     RETURNING {COLUMNS}"
                ))
                .bind(new_id())
                .bind(workspace_id)
                .bind(new.name.as_str())
                .bind(&new.description)
                .bind(new.protected)
                .bind(new.targets.to_json())
                .bind(now)
                .bind(new.position)
            )
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict { .. } => {
                    StoreError::conflict(format!("environment {:?} already exists", new.name.as_str()))
                }
                other => other,
            })?;
            let environment = Environment::try_from(row)?;
            record(
                tx,
                workspace_id,
                actor,
                Change::new("environment.create", AuditObject::Environment, environment.name.as_str())
                    .after(&environment),
            )
            .await?;
            environment
        })
    }

    pub async fn list_environments(&self, workspace_id: &str) -> Result<Vec<Environment>> {
        read!(self, |conn| fetch_all(conn, workspace_id).await)
    }

    pub async fn get_environment(&self, workspace_id: &str, name: &EnvironmentName) -> Result<Environment> {
        read!(self, |conn| fetch(conn, workspace_id, name).await)
    }

    pub async fn update_environment(
        &self,
        caller: &Caller,
        name: &EnvironmentName,
        changes: &EnvironmentChanges,
    ) -> Result<Environment> {
        let (workspace_id, actor) = (caller.workspace_id.as_str(), &caller.actor);
        transaction!(self, |tx| {
            let before = fetch(tx, workspace_id, name).await?;
            let row: EnvironmentRow = q!(
                tx,
                fetch_one,
                sqlx::query_as(&format!(
                    "UPDATE environments SET description = $1, protected = $2, targets = $3, updated_at = $4, position = $6
                     WHERE id = $5 RETURNING {COLUMNS}"
                ))
                .bind(changes.description.as_ref().unwrap_or(&before.description))
                .bind(changes.protected.unwrap_or(before.protected))
                .bind(changes.targets.as_ref().unwrap_or(&before.targets).to_json())
                .bind(Timestamp::now().as_micros())
                .bind(&before.id)
                .bind(changes.position.unwrap_or(before.position))
            )?;
            let after = Environment::try_from(row)?;
            record(
                tx,
                workspace_id,
                actor,
                Change::new("environment.update", AuditObject::Environment, name.as_str())
                    .before(&before)
                    .after(&after),
            )
            .await?;
            after
        })
    }

    /// Deletes an environment nothing depends on; otherwise 409 naming the dependents.
    pub async fn delete_environment(&self, caller: &Caller, name: &EnvironmentName) -> Result<()> {
        let (workspace_id, actor) = (caller.workspace_id.as_str(), &caller.actor);
        transaction!(self, |tx| {
            tx.effects.resolve(workspace_id);
            let environment = fetch(tx, workspace_id, name).await?;
            let dependents: Vec<(String, String)> = q!(
                tx,
                fetch_all,
                sqlx::query_as(
                    "SELECT t.id, t.name FROM token_environments te JOIN tokens t ON t.id = te.token_id
                     WHERE te.environment_id = $1 AND t.revoked_at IS NULL ORDER BY t.name"
                )
                .bind(&environment.id)
            )?;
            if !dependents.is_empty() {
                let tokens: Vec<_> =
                    dependents.iter().map(|(id, name)| serde_json::json!({"id": id, "name": name})).collect();
                return Err(StoreError::Conflict {
                    message: format!(
                        "environment {:?} is used by {} live token(s); revoke them first",
                        name.as_str(),
                        dependents.len()
                    ),
                    details: Some(serde_json::json!({ "tokens": tokens })),
                });
            }
            let live: Vec<(String, i64)> = q!(
                tx,
                fetch_all,
                sqlx::query_as(
                    "SELECT a.key, p.version FROM pins p JOIN artifacts a ON a.id = p.artifact_id
                     WHERE p.environment_id = $1 AND p.ended_at IS NULL ORDER BY a.key"
                )
                .bind(&environment.id)
            )?;
            if !live.is_empty() {
                let pins: Vec<_> =
                    live.iter().map(|(key, v)| serde_json::json!({"artifact": key, "version": v})).collect();
                return Err(StoreError::Conflict {
                    message: format!(
                        "environment {:?} has {} live pin(s); unpin them first",
                        name.as_str(),
                        live.len()
                    ),
                    details: Some(serde_json::json!({ "pins": pins })),
                });
            }
            // The closed history goes with the environment; the audit log keeps every change.
            q!(tx, execute, sqlx::query("DELETE FROM pins WHERE environment_id = $1").bind(&environment.id))?;
            // Revoked tokens keep their audit trail, not their scope rows.
            q!(
                tx,
                execute,
                sqlx::query("DELETE FROM token_environments WHERE environment_id = $1").bind(&environment.id)
            )?;
            q!(tx, execute, sqlx::query("DELETE FROM environments WHERE id = $1").bind(&environment.id))?;
            q!(
                tx,
                execute,
                sqlx::query("UPDATE workspaces SET environment_count = environment_count - 1 WHERE id = $1")
                    .bind(workspace_id)
            )?;
            record(
                tx,
                workspace_id,
                actor,
                Change::new("environment.delete", AuditObject::Environment, name.as_str()).before(&environment),
            )
            .await?;
        })
    }
}

/// Every environment of a workspace, by name.
pub(crate) async fn fetch_all(conn: &mut Conn<'_>, workspace_id: &str) -> Result<Vec<Environment>> {
    let rows: Vec<EnvironmentRow> = q!(
        conn,
        fetch_all,
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM environments WHERE workspace_id = $1 ORDER BY position, name"))
            .bind(workspace_id)
    )?;
    rows.into_iter().map(Environment::try_from).collect()
}
