//! Tokens on the request path: a cache by token hash in front of the store, so that
//! authenticating a request costs a hash and a lookup, and keeps working while the database
//! cannot be asked (resolve outlives the database; see docs/operations.md). It is
//! authentication, not resolve: every route uses it through [`crate::auth::Auth`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cutover_domain::{TokenDigest, TokenHash};
use cutover_store::{Principal, Store, StoreError};
use hashbrown::HashMap;

/// A token as last checked against the database.
struct CachedToken {
    principal: Arc<Principal>,
    checked: Instant,
    /// A background check is under way: one at a time per token.
    checking: bool,
}

/// Cached tokens, by digest (the 32 bytes of the sha256 the store keeps in hex: a request
/// hashes its token once and allocates nothing to find it).
pub struct TokenCache {
    store: Store,
    /// Shared with the background checks.
    tokens: Arc<Mutex<HashMap<TokenDigest, CachedToken>>>,
    /// How long a cached token is trusted before it is checked again: revocations normally
    /// arrive as notices at once, this bounds the damage of a missed one.
    ttl: Duration,
}

impl TokenCache {
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self { store, tokens: Arc::default(), ttl }
    }

    /// The principal of a token, from the cache or the store.
    ///
    /// A cached token is answered from memory, always: once it is older than the token TTL, it
    /// is checked again in the background, and forgotten if the database no longer knows it. If
    /// the database cannot be asked, the token stays valid until it can (resolve outlives the
    /// database); revocations made meanwhile are applied by [`TokenCache::revalidate`] when
    /// it answers again.
    pub async fn authenticate(&self, hash: &TokenHash) -> Result<Option<Arc<Principal>>, StoreError> {
        match TokenDigest::from_hash(hash) {
            Some(digest) => self.authenticate_digest(digest).await,
            // Not a hash the store could hold: nothing to cache.
            None => Ok(self.store.authenticate(hash).await?.map(Arc::new)),
        }
    }

    /// [`TokenCache::authenticate`], for a token hashed by [`TokenDigest::of_presented`].
    pub async fn authenticate_digest(&self, digest: TokenDigest) -> Result<Option<Arc<Principal>>, StoreError> {
        if let Some(principal) = self.cached(digest) {
            return Ok(Some(principal));
        }
        let Some(principal) = self.store.authenticate(&digest.to_hash()).await? else { return Ok(None) };
        let principal = Arc::new(principal);
        let entry = CachedToken { principal: principal.clone(), checked: Instant::now(), checking: false };
        lock(&self.tokens).insert(digest, entry);
        Ok(Some(principal))
    }

    /// The cached principal of a token; starts a background check when it is due.
    fn cached(&self, digest: TokenDigest) -> Option<Arc<Principal>> {
        let mut tokens = lock(&self.tokens);
        let entry = tokens.get_mut(&digest)?;
        if entry.checked.elapsed() >= self.ttl && !entry.checking {
            entry.checking = true;
            let (store, tokens) = (self.store.clone(), self.tokens.clone());
            tokio::spawn(async move {
                let found = store.authenticate(&digest.to_hash()).await;
                let mut tokens = lock(&tokens);
                match found {
                    // Only if still cached: a revocation handled meanwhile must not be undone.
                    Ok(Some(principal)) => {
                        if let Some(entry) = tokens.get_mut(&digest) {
                            *entry = CachedToken {
                                principal: Arc::new(principal),
                                checked: Instant::now(),
                                checking: false,
                            };
                        }
                    }
                    Ok(None) => {
                        tokens.remove(&digest);
                    }
                    // Not asked: keep trusting it, and check again on a later use.
                    Err(_) => {
                        if let Some(entry) = tokens.get_mut(&digest) {
                            entry.checking = false;
                        }
                    }
                }
            });
        }
        Some(entry.principal.clone())
    }

    /// Checks every cached token (of one workspace, or all) against the store: refreshes those it
    /// knows, forgets those it does not. On an error the rest stay cached and the error is
    /// returned, to try again later; with `forget_unchecked`, they are forgotten instead (after a
    /// token notice, when a revoked token must not outlive a failed check).
    pub async fn revalidate(&self, workspace_id: Option<&str>, forget_unchecked: bool) -> Result<(), StoreError> {
        let digests: Vec<TokenDigest> = lock(&self.tokens)
            .iter()
            .filter(|(_, entry)| workspace_id.is_none_or(|id| entry.principal.workspace.id == id))
            .map(|(digest, _)| *digest)
            .collect();
        for (i, digest) in digests.iter().enumerate() {
            let found = self.store.authenticate(&digest.to_hash()).await;
            let mut tokens = lock(&self.tokens);
            match found {
                Ok(Some(principal)) => {
                    if let Some(entry) = tokens.get_mut(digest) {
                        *entry =
                            CachedToken { principal: Arc::new(principal), checked: Instant::now(), checking: false };
                    }
                }
                Ok(None) => {
                    tokens.remove(digest);
                }
                Err(e) => {
                    if forget_unchecked {
                        for unchecked in &digests[i..] {
                            tokens.remove(unchecked);
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
