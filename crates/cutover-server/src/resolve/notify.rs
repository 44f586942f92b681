//! Change notices between replicas: PostgreSQL `NOTIFY` on one channel, `LISTEN` in each
//! server. With SQLite there is one process and nothing to send.

use std::sync::Arc;
use std::time::Duration;

use cutover_store::Store;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use super::Resolver;

pub const CHANNEL: &str = "cutover_changes";

/// How often every view is rebuilt even without notices: the backstop for a lost notice.
const BACKSTOP: Duration = Duration::from_secs(30);

/// What changed in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Something resolve returns: pins, artifacts, environments.
    Resolve,
    /// Tokens: created or revoked.
    Tokens,
}

impl Notice {
    fn as_str(self) -> &'static str {
        match self {
            Self::Resolve => "resolve",
            Self::Tokens => "tokens",
        }
    }
}

/// Tells the other replicas. Best effort: the backstop timer covers a lost notice.
pub async fn send(store: &Store, notice: Notice, workspace_id: &str) {
    let Some(pool) = store.postgres_pool() else { return };
    let payload = format!("{}:{workspace_id}", notice.as_str());
    if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(&payload).execute(pool).await {
        tracing::warn!(error = %e, "could not notify other replicas");
    }
}

fn apply(resolver: &Resolver, payload: &str) -> Option<(Notice, String)> {
    let (kind, workspace_id) = payload.split_once(':')?;
    let notice = match kind {
        "resolve" => Notice::Resolve,
        "tokens" => Notice::Tokens,
        _ => return None,
    };
    if notice == Notice::Tokens {
        resolver.forget_tokens(workspace_id);
    }
    Some((notice, workspace_id.to_owned()))
}

/// Keeps the resolver current: on PostgreSQL by listening for notices; everywhere by a timer.
/// Ends when `shutdown` turns true.
pub fn spawn(
    store: Store,
    resolver: Arc<Resolver>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut listener = match store.postgres_pool() {
            Some(pool) => match PgListener::connect_with(pool).await {
                Ok(mut listener) => match listener.listen(CHANNEL).await {
                    Ok(()) => Some(listener),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot LISTEN for changes; relying on the timer");
                        None
                    }
                },
                Err(e) => {
                    tracing::error!(error = %e, "cannot LISTEN for changes; relying on the timer");
                    None
                }
            },
            None => None,
        };
        let mut backstop = tokio::time::interval(BACKSTOP);
        backstop.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = backstop.tick() => {
                    if let Err(e) = resolver.load_all().await {
                        tracing::warn!(error = %e, "periodic refresh failed");
                    }
                }
                notification = async {
                    match listener.as_mut() {
                        Some(l) => l.try_recv().await,
                        None => std::future::pending().await,
                    }
                } => match notification {
                    Ok(Some(notification)) => {
                        if let Some((Notice::Resolve, workspace_id)) = apply(&resolver, notification.payload()) {
                            if let Err(e) = resolver.refresh(&workspace_id).await {
                                tracing::warn!(error = %e, workspace_id, "refresh after a notice failed");
                            }
                        }
                    }
                    // The connection dropped and was re-established: notices may have been lost.
                    Ok(None) => {
                        resolver.forget_all_tokens();
                        if let Err(e) = resolver.load_all().await {
                            tracing::warn!(error = %e, "refresh after reconnecting failed");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "change listener failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
            }
        }
    })
}
