//! Web UI sessions: a cookie stands for the API token a browser signed in with. Only the
//! cookie's sha256 is stored, with an expiry; a session is valid only while its token is.

use cutover_domain::{Timestamp, TokenHash};

use crate::db::{q, read, transaction};
use crate::{Result, Store};

impl Store {
    /// Opens a session for `token_id` until `expires_at`, and forgets sessions that have expired.
    pub async fn create_ui_session(&self, session: &TokenHash, token_id: &str, expires_at: Timestamp) -> Result<()> {
        let now = Timestamp::now().as_micros();
        transaction!(self, |tx| {
            q!(tx, execute, sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1").bind(now))?;
            q!(
                tx,
                execute,
                sqlx::query("INSERT INTO ui_sessions (hash, token_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
                    .bind(session.as_str())
                    .bind(token_id)
                    .bind(now)
                    .bind(expires_at.as_micros())
            )?;
        })
    }

    /// The hash of the token a session acts as: `None` when the session is unknown or expired,
    /// or its token revoked.
    pub async fn ui_session_token(&self, session: &TokenHash) -> Result<Option<TokenHash>> {
        let now = Timestamp::now().as_micros();
        read!(self, |conn| {
            let row: Option<(String, String)> = q!(
                conn,
                fetch_optional,
                sqlx::query_as(
                    "SELECT s.hash, t.hash FROM ui_sessions s JOIN tokens t ON t.id = s.token_id
                     WHERE s.hash = $1 AND s.expires_at > $2 AND t.revoked_at IS NULL"
                )
                .bind(session.as_str())
                .bind(now)
            )?;
            Ok(row
                .filter(|(stored, _)| TokenHash::from_stored(stored.clone()).matches(session))
                .map(|(_, token)| TokenHash::from_stored(token)))
        })
    }

    /// Ends a session (signing out); ending an unknown one changes nothing.
    pub async fn end_ui_session(&self, session: &TokenHash) -> Result<()> {
        transaction!(self, |tx| {
            q!(tx, execute, sqlx::query("DELETE FROM ui_sessions WHERE hash = $1").bind(session.as_str()))?;
        })
    }
}
