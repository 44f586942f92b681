//! Change notices between replicas: every write's effects are sent with PostgreSQL `NOTIFY` on
//! one channel, inside the writing transaction (see `cutover_store::effects`), and each server
//! `LISTEN`s. With SQLite there is one process and nothing to send.

use std::sync::Arc;
use std::time::Duration;

use cutover_store::Store;
use cutover_store::effects::Effect;
use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, watch};

use super::Resolver;
use crate::tokens::TokenCache;

/// The channel writes announce their effects on, inside their transactions.
pub use cutover_store::effects::CHANNEL;

/// How often every view is rebuilt even without notices: the backstop for a lost notice.
const BACKSTOP: Duration = Duration::from_secs(30);

/// How often a resync that failed (the database still unreachable) is tried again.
const RESYNC_RETRY: Duration = Duration::from_secs(1);

/// Keeps the resolver current: on PostgreSQL by listening for notices; everywhere by a timer.
/// After the listener lost its connection or the database was unreachable, notices may have been
/// lost: every cached token is checked again and every view rebuilt, as soon as the database
/// answers (until then resolve answers from what it has). Ends when `shutdown` turns true.
pub fn spawn(
    store: Store,
    resolver: Arc<Resolver>,
    tokens: Arc<TokenCache>,
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
        let changed = spawn_refresher(resolver.clone());
        let mut recoveries = store.recoveries();
        let mut backstop = tokio::time::interval(BACKSTOP);
        backstop.tick().await;
        let mut retry = tokio::time::interval(RESYNC_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resync_due = false;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = backstop.tick() => {
                    if let Err(e) = resolver.load_all().await {
                        tracing::warn!(error = %e, "periodic refresh failed");
                    }
                }
                Ok(()) = recoveries.changed() => resync_due = true,
                _ = retry.tick(), if resync_due => {}
                notification = async {
                    match listener.as_mut() {
                        Some(l) => l.try_recv().await,
                        None => std::future::pending().await,
                    }
                } => match notification {
                    Ok(Some(notification)) => match Effect::parse(notification.payload()) {
                        // Rebuilt by the refresher, so that this loop keeps reading notices
                        // meanwhile; the refresher ends with the loop (the sender is dropped).
                        Some(Effect::Resolve(workspace_id)) => {
                            let _ = changed.send(workspace_id);
                        }
                        Some(Effect::Tokens(workspace_id)) => {
                            // Forgets what it cannot check: a revoked token must not stay cached.
                            if let Err(e) = tokens.revalidate(Some(&workspace_id), true).await {
                                tracing::warn!(error = %e, workspace_id, "checking tokens after a notice failed");
                            }
                        }
                        // The engine's notices have a channel of their own (`crate::engine::notices`).
                        Some(Effect::Engine) | None => {}
                    },
                    // The connection dropped; the next receive reconnects. Notices may be lost
                    // meanwhile. Cached tokens are kept: the database may be down for long.
                    Ok(None) => resync_due = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "change listener failed; retrying");
                        resync_due = true;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
            }
            if resync_due {
                resync_due = !resync(&resolver, &tokens).await;
            }
        }
    })
}

/// Rebuilds the views of the workspaces whose notices arrive on the channel. Notices that
/// arrive while a rebuild runs are taken together afterwards, one rebuild per workspace: under a
/// stream of writes a replica rebuilds as often as it can, never falling behind by a queue of
/// rebuilds each a notice late.
fn spawn_refresher(resolver: Arc<Resolver>) -> mpsc::UnboundedSender<String> {
    let (changed, mut notices) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(first) = notices.recv().await {
            let mut workspaces = vec![first];
            while let Ok(more) = notices.try_recv() {
                if !workspaces.contains(&more) {
                    workspaces.push(more);
                }
            }
            for workspace_id in workspaces {
                if let Err(e) = resolver.refresh(&workspace_id).await {
                    tracing::warn!(error = %e, workspace_id, "refresh after a notice failed");
                }
            }
        }
    });
    changed
}

/// Checks every cached token and rebuilds every view; false when the database did not answer.
async fn resync(resolver: &Resolver, tokens: &TokenCache) -> bool {
    let checked = tokens.revalidate(None, false).await;
    let loaded = match checked {
        Ok(()) => resolver.load_all().await,
        Err(e) => Err(e),
    };
    match loaded {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "resync after a lost connection failed; will retry");
            false
        }
    }
}
