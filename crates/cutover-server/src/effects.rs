//! The one place this process acts on what a committed write changed (the store's
//! [`Effects`](cutover_store::effects::Effects), declared by each write inside its transaction):
//! the resolve view is rebuilt before the write returns (a client reads its own writes), cached
//! tokens are checked again, the engine wakes. Other replicas learn of the same effects through
//! PostgreSQL `NOTIFY`, sent inside the transaction ([`crate::resolve::notify`]).
//!
//! A new capability declares its effects in its store writes; it never calls these by hand.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use cutover_store::effects::{CommitHook, Effect, Effects};
use tokio::sync::Notify;

use crate::resolve::Resolver;
use crate::tokens::TokenCache;

/// Acts on committed effects. Holds weak references: the store outlives no server of its own.
pub struct AfterCommit {
    pub resolver: Weak<Resolver>,
    pub tokens: Weak<TokenCache>,
    pub engine_wake: Weak<Notify>,
}

impl AfterCommit {
    pub fn new(resolver: &Arc<Resolver>, tokens: &Arc<TokenCache>, engine_wake: &Arc<Notify>) -> Arc<Self> {
        Arc::new(Self {
            resolver: Arc::downgrade(resolver),
            tokens: Arc::downgrade(tokens),
            engine_wake: Arc::downgrade(engine_wake),
        })
    }
}

impl CommitHook for AfterCommit {
    fn committed<'a>(&'a self, effects: &'a Effects) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            for effect in effects.iter() {
                match effect {
                    Effect::Resolve(workspace_id) => {
                        let Some(resolver) = self.resolver.upgrade() else { continue };
                        if let Err(e) = resolver.refresh(workspace_id).await {
                            tracing::error!(error = %e, workspace_id, "could not refresh the resolve view; the timer will retry");
                        }
                    }
                    Effect::Tokens(workspace_id) => {
                        let Some(tokens) = self.tokens.upgrade() else { continue };
                        // Forgets the tokens it cannot check: a revoked token must not stay cached.
                        if let Err(e) = tokens.revalidate(Some(workspace_id), true).await {
                            tracing::warn!(error = %e, workspace_id, "could not check cached tokens; forgot them");
                        }
                    }
                    Effect::Engine => {
                        if let Some(wake) = self.engine_wake.upgrade() {
                            wake.notify_one();
                        }
                    }
                }
            }
        })
    }
}
