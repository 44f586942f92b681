//! Wakes this replica's engine when another replica made work for it. A write that makes engine
//! work (a rollout created or controlled, a task's result reported, a queue or pool changed)
//! declares the engine effect, and on PostgreSQL the effect is sent with `NOTIFY` on
//! [`ENGINE_CHANNEL`] inside the writing transaction (delivered to every replica at commit,
//! never for a rollback). Each engine `LISTEN`s there, so a replica acts within milliseconds
//! rather than on its next tick. In this process the same effect wakes the engine through the
//! store's commit hook (`crate::effects`); with SQLite there is one process and nothing to send.
//!
//! The engine has a channel of its own, apart from the resolve view's change notices
//! (`crate::resolve::notify`): neither listener wakes for the other's traffic. A lost
//! connection may have lost notices: the engine is woken (a pass costs little) while the
//! listener reconnects; its tick is the backstop.

use std::sync::Arc;
use std::time::Duration;

use cutover_store::Store;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, watch};

pub use cutover_store::effects::ENGINE_CHANNEL;

/// How long to wait before connecting again after the listener could not connect.
const RECONNECT: Duration = Duration::from_secs(1);

/// Listens for engine notices (PostgreSQL only: `None` on SQLite) and wakes `wake` on each,
/// until `shutdown` turns true.
pub fn spawn(
    store: &Store,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let pool = store.postgres_pool()?.clone();
    Some(tokio::spawn(async move {
        let mut listener: Option<PgListener> = None;
        loop {
            let Some(connected) = listener.as_mut() else {
                match listen(&pool).await {
                    Ok(made) => {
                        listener = Some(made);
                        // Notices sent while nobody listened are lost: look now.
                        wake.notify_one();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot LISTEN for engine work; relying on the tick");
                        tokio::select! {
                            () = tokio::time::sleep(RECONNECT) => {}
                            _ = shutdown.wait_for(|stopping| *stopping) => break,
                        }
                    }
                }
                continue;
            };
            tokio::select! {
                _ = shutdown.wait_for(|stopping| *stopping) => break,
                notice = connected.try_recv() => match notice {
                    Ok(Some(_)) => wake.notify_one(),
                    // The connection dropped; the next receive reconnects and listens again.
                    Ok(None) => wake.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "engine listener failed; reconnecting");
                        listener = None;
                        wake.notify_one();
                    }
                },
            }
        }
    }))
}

async fn listen(pool: &sqlx::PgPool) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(ENGINE_CHANNEL).await?;
    Ok(listener)
}
