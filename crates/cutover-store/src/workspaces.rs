use cutover_domain::{AuditObject, Role, Timestamp, TokenSecret, WorkspaceName};

use crate::audit::{Change, record};
use crate::db::{Conn, new_id, q, read, transaction};
use crate::tokens::{NewToken, insert_token};
use crate::{Actor, Caller, Result, Store, StoreError, Token, Workspace};

#[derive(sqlx::FromRow)]
pub(crate) struct WorkspaceRow {
    pub id: String,
    pub name: String,
    pub admin: bool,
    pub revision: i64,
    pub created_at: i64,
}

impl From<WorkspaceRow> for Workspace {
    fn from(row: WorkspaceRow) -> Self {
        Workspace {
            id: row.id,
            name: row.name,
            admin: row.admin,
            revision: row.revision,
            created_at: Timestamp::from_micros(row.created_at),
        }
    }
}

/// What bootstrap made on the first start: the administrative workspace and its first owner.
#[derive(Debug)]
pub struct Bootstrapped {
    pub workspace: Workspace,
    pub token: Token,
    pub secret: TokenSecret,
}

/// The actor recorded for changes the server makes itself.
fn system_actor() -> Actor {
    Actor { token_id: "system".into(), name: "cutover".into() }
}

async fn insert_workspace(conn: &mut Conn<'_>, name: &WorkspaceName, admin: bool) -> Result<Workspace> {
    let row: WorkspaceRow = q!(
        conn,
        fetch_one,
        sqlx::query_as(
            "INSERT INTO workspaces (id, name, admin, created_at) VALUES ($1, $2, $3, $4)
             RETURNING id, name, admin, revision, created_at"
        )
        .bind(new_id())
        .bind(name.as_str())
        .bind(admin)
        .bind(Timestamp::now().as_micros())
    )
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict { .. } => StoreError::conflict(format!("workspace {:?} already exists", name.as_str())),
        other => other,
    })?;
    Ok(row.into())
}

impl Store {
    /// On the first start, creates the administrative workspace and an owner token for it.
    /// Returns `None` when it exists already, including when another server made it a moment ago.
    pub async fn bootstrap(&self, name: &WorkspaceName) -> Result<Option<Bootstrapped>> {
        let exists: Option<(String,)> =
            read!(self, |conn| q!(conn, fetch_optional, sqlx::query_as("SELECT id FROM workspaces WHERE admin")))?;
        if exists.is_some() {
            return Ok(None);
        }
        let made = async {
            transaction!(self, |tx| {
                let workspace = insert_workspace(tx, name, true).await?;
                let new = NewToken { name: "owner".into(), role: Role::Owner, environments: Vec::new() };
                let (token, secret) = insert_token(tx, &workspace.id, &system_actor(), &new).await?;
                record(
                    tx,
                    &workspace.id,
                    &system_actor(),
                    Change::new("workspace.create", AuditObject::Workspace, &workspace.id).after(&workspace),
                )
                .await?;
                Bootstrapped { workspace, token, secret }
            })
        }
        .await;
        match made {
            Ok(made) => Ok(Some(made)),
            // Another replica bootstrapped first: the unique index on `admin` said so.
            Err(StoreError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a workspace with its first owner token. The change is audited in the actor's
    /// workspace and in the new one.
    pub async fn create_workspace(
        &self,
        caller: &Caller,
        name: &WorkspaceName,
        token_name: &str,
    ) -> Result<(Workspace, Token, TokenSecret)> {
        let (actor_workspace_id, actor) = (caller.workspace_id.as_str(), &caller.actor);
        transaction!(self, |tx| {
            let workspace = insert_workspace(tx, name, false).await?;
            tx.effects.resolve(&workspace.id);
            let new = NewToken { name: token_name.to_owned(), role: Role::Owner, environments: Vec::new() };
            let (token, secret) = insert_token(tx, &workspace.id, actor, &new).await?;
            let change = || Change::new("workspace.create", AuditObject::Workspace, &workspace.id).after(&workspace);
            record(tx, actor_workspace_id, actor, change()).await?;
            record(tx, &workspace.id, actor, change()).await?;
            record(tx, &workspace.id, actor, Change::new("token.create", AuditObject::Token, &token.id).after(&token))
                .await?;
            (workspace, token, secret)
        })
    }

    pub async fn get_workspace(&self, id: &str) -> Result<Workspace> {
        let row: Option<WorkspaceRow> = read!(self, |conn| q!(
            conn,
            fetch_optional,
            sqlx::query_as("SELECT id, name, admin, revision, created_at FROM workspaces WHERE id = $1").bind(id)
        ))?;
        row.map(Into::into).ok_or_else(|| StoreError::NotFound(format!("workspace {id:?}")))
    }

    pub async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        let rows: Vec<WorkspaceRow> = read!(self, |conn| q!(
            conn,
            fetch_all,
            sqlx::query_as("SELECT id, name, admin, revision, created_at FROM workspaces ORDER BY name")
        ))?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
