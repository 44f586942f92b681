use std::collections::HashMap;

use cutover_domain::{AuditObject, EnvironmentName, Role, Timestamp, TokenHash, TokenSecret};

use crate::audit::{Change, record};
use crate::db::{Conn, new_id, q, read, transaction};
use crate::workspaces::WorkspaceRow;
use crate::{Actor, Caller, Principal, Result, ScopedEnvironment, Store, StoreError, Token};

pub(crate) struct NewToken {
    pub name: String,
    pub role: Role,
    pub environments: Vec<ScopedEnvironment>,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    name: String,
    role: String,
    created_at: i64,
    created_by_id: Option<String>,
    created_by: Option<String>,
    revoked_at: Option<i64>,
}

const TOKEN_COLUMNS: &str = "t.id, t.name, t.role, t.created_at, t.created_by_id, t.created_by, t.revoked_at";

impl TokenRow {
    fn into_token(self, environments: Vec<ScopedEnvironment>) -> Result<Token> {
        let role = self.role.parse::<Role>().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let created_by = match (self.created_by_id, self.created_by) {
            (Some(token_id), Some(name)) => Some(Actor { token_id, name }),
            _ => None,
        };
        Ok(Token {
            id: self.id,
            name: self.name,
            role,
            environments,
            created_at: Timestamp::from_micros(self.created_at),
            created_by,
            revoked_at: self.revoked_at.map(Timestamp::from_micros),
        })
    }
}

pub(crate) async fn insert_token(
    conn: &mut Conn<'_>,
    workspace_id: &str,
    actor: &Actor,
    new: &NewToken,
) -> Result<(Token, TokenSecret)> {
    let secret = TokenSecret::generate();
    let row: TokenRow = q!(
        conn,
        fetch_one,
        sqlx::query_as(
            "INSERT INTO tokens (id, workspace_id, name, role, hash, created_at, created_by_id, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING id, name, role, created_at, created_by_id, created_by, revoked_at"
        )
        .bind(new_id())
        .bind(workspace_id)
        .bind(&new.name)
        .bind(new.role.as_str())
        .bind(secret.hash().as_str())
        .bind(Timestamp::now().as_micros())
        .bind(&actor.token_id)
        .bind(&actor.name)
    )?;
    for env in &new.environments {
        q!(
            conn,
            execute,
            sqlx::query("INSERT INTO token_environments (token_id, environment_id) VALUES ($1, $2)")
                .bind(&row.id)
                .bind(&env.id)
        )?;
    }
    Ok((row.into_token(new.environments.clone())?, secret))
}

/// Looks up environments by name; every name must exist (404 listing those that do not).
pub(crate) async fn find_environments(
    conn: &mut Conn<'_>,
    workspace_id: &str,
    names: &[EnvironmentName],
) -> Result<Vec<ScopedEnvironment>> {
    let mut found = Vec::with_capacity(names.len());
    let mut missing = Vec::new();
    for name in names {
        let row: Option<(String,)> = q!(
            conn,
            fetch_optional,
            sqlx::query_as("SELECT id FROM environments WHERE workspace_id = $1 AND name = $2")
                .bind(workspace_id)
                .bind(name.as_str())
        )?;
        match row {
            Some((id,)) => found.push(ScopedEnvironment { id, name: name.clone() }),
            None => missing.push(name.as_str().to_owned()),
        }
    }
    if missing.is_empty() { Ok(found) } else { Err(StoreError::NotFoundMany { what: "environments", names: missing }) }
}

/// Every token's environment scope in a workspace, by token id.
async fn scopes(
    conn: &mut Conn<'_>,
    workspace_id: &str,
    token_id: Option<&str>,
) -> Result<HashMap<String, Vec<ScopedEnvironment>>> {
    let rows: Vec<(String, String, String)> = q!(
        conn,
        fetch_all,
        sqlx::query_as(
            "SELECT te.token_id, e.id, e.name
             FROM token_environments te JOIN environments e ON e.id = te.environment_id
             WHERE e.workspace_id = $1 AND ($2 IS NULL OR te.token_id = $2)
             ORDER BY e.name"
        )
        .bind(workspace_id)
        .bind(token_id)
    )?;
    let mut by_token: HashMap<String, Vec<ScopedEnvironment>> = HashMap::new();
    for (token_id, id, name) in rows {
        by_token.entry(token_id).or_default().push(ScopedEnvironment { id, name: crate::stored_environment(&name)? });
    }
    Ok(by_token)
}

#[derive(sqlx::FromRow)]
struct AuthRow {
    hash: String,
    #[sqlx(flatten)]
    token: TokenRow,
    workspace_id: String,
    workspace_name: String,
    workspace_admin: bool,
    workspace_revision: i64,
    workspace_created_at: i64,
}

impl Store {
    /// The live (unrevoked) token with this hash, and its workspace.
    pub async fn authenticate(&self, hash: &TokenHash) -> Result<Option<Principal>> {
        read!(self, |conn| {
            let row: Option<AuthRow> = q!(
                conn,
                fetch_optional,
                sqlx::query_as(&format!(
                    "SELECT t.hash, {TOKEN_COLUMNS}, w.id AS workspace_id, w.name AS workspace_name,
                            w.admin AS workspace_admin, w.revision AS workspace_revision,
                            w.created_at AS workspace_created_at
                     FROM tokens t JOIN workspaces w ON w.id = t.workspace_id
                     WHERE t.hash = $1 AND t.revoked_at IS NULL"
                ))
                .bind(hash.as_str())
            )?;
            let Some(row) = row else { return Ok(None) };
            if !TokenHash::from_stored(row.hash.clone()).matches(hash) {
                return Ok(None);
            }
            let mut scope = scopes(conn, &row.workspace_id, Some(&row.token.id)).await?;
            let environments = scope.remove(&row.token.id).unwrap_or_default();
            let workspace = WorkspaceRow {
                id: row.workspace_id,
                name: row.workspace_name,
                admin: row.workspace_admin,
                revision: row.workspace_revision,
                created_at: row.workspace_created_at,
            }
            .into();
            Ok(Some(Principal { token: row.token.into_token(environments)?, workspace }))
        })
    }

    /// Creates a token; `environments` must all exist in the workspace.
    pub async fn create_token(
        &self,
        caller: &Caller,
        name: &str,
        role: Role,
        environments: &[EnvironmentName],
    ) -> Result<(Token, TokenSecret)> {
        let (workspace_id, actor) = (caller.workspace_id.as_str(), &caller.actor);
        transaction!(self, |tx| {
            tx.effects.tokens(workspace_id);
            let environments = find_environments(tx, workspace_id, environments).await?;
            let new = NewToken { name: name.to_owned(), role, environments };
            let (token, secret) = insert_token(tx, workspace_id, actor, &new).await?;
            record(tx, workspace_id, actor, Change::new("token.create", AuditObject::Token, &token.id).after(&token))
                .await?;
            (token, secret)
        })
    }

    /// Every token of the workspace, revoked ones included, oldest first.
    pub async fn list_tokens(&self, workspace_id: &str) -> Result<Vec<Token>> {
        read!(self, |conn| {
            let rows: Vec<TokenRow> = q!(
                conn,
                fetch_all,
                sqlx::query_as(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.workspace_id = $1 ORDER BY t.created_at, t.id"
                ))
                .bind(workspace_id)
            )?;
            let mut scope = scopes(conn, workspace_id, None).await?;
            rows.into_iter()
                .map(|row| {
                    let environments = scope.remove(&row.id).unwrap_or_default();
                    row.into_token(environments)
                })
                .collect()
        })
    }

    /// Revokes a token. Revoking a revoked token changes nothing. The workspace's last unscoped
    /// owner token cannot be revoked: nobody could administer the workspace afterwards.
    pub async fn revoke_token(&self, caller: &Caller, token_id: &str) -> Result<Token> {
        let (workspace_id, actor) = (caller.workspace_id.as_str(), &caller.actor);
        transaction!(self, |tx| {
            tx.effects.tokens(workspace_id);
            // Take the workspace row's write lock so concurrent revocations of the last two
            // owners are serialised (SQLite serialises writers already).
            q!(tx, execute, sqlx::query("UPDATE workspaces SET revision = revision WHERE id = $1").bind(workspace_id))?;
            let row: Option<TokenRow> = q!(
                tx,
                fetch_optional,
                sqlx::query_as(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.workspace_id = $1 AND t.id = $2"
                ))
                .bind(workspace_id)
                .bind(token_id)
            )?;
            let row = row.ok_or_else(|| StoreError::NotFound(format!("token {token_id:?}")))?;
            let environments = scopes(tx, workspace_id, Some(token_id)).await?.remove(token_id).unwrap_or_default();
            let before = row.into_token(environments)?;
            if before.revoked_at.is_some() {
                return Ok(before);
            }
            if before.role == Role::Owner && before.environments.is_empty() {
                let (others,): (i64,) = q!(
                    tx,
                    fetch_one,
                    sqlx::query_as(
                        "SELECT COUNT(*) FROM tokens t
                         WHERE t.workspace_id = $1 AND t.id <> $2 AND t.role = 'owner' AND t.revoked_at IS NULL
                           AND NOT EXISTS (SELECT 1 FROM token_environments te WHERE te.token_id = t.id)"
                    )
                    .bind(workspace_id)
                    .bind(token_id)
                )?;
                if others == 0 {
                    return Err(StoreError::conflict(
                        "this is the workspace's last owner token with access to every environment; create another before revoking it",
                    ));
                }
            }
            let now = Timestamp::now();
            q!(
                tx,
                execute,
                sqlx::query("UPDATE tokens SET revoked_at = $1, revoked_by = $2 WHERE id = $3")
                    .bind(now.as_micros())
                    .bind(&actor.token_id)
                    .bind(token_id)
            )?;
            let after = Token { revoked_at: Some(now), ..before.clone() };
            record(
                tx,
                workspace_id,
                actor,
                Change::new("token.revoke", AuditObject::Token, token_id).before(&before).after(&after),
            )
            .await?;
            after
        })
    }
}
