//! Effects: each committed write declares what it changed; the store sends them to other
//! replicas with `NOTIFY` inside the transaction (PostgreSQL) and runs this process's hooks
//! after the commit. Nothing is announced for a write that rolled back.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cutover_store::Store;
use cutover_store::effects::{CHANNEL, CommitHook, Effect, Effects};

use crate::experiments::world;
use crate::{env, envs, key, owner, v};

cutover_store::contract_tests!(committed_writes_announce_their_effects_and_rolled_back_ones_nothing);

#[derive(Default)]
struct Recorder(Mutex<Vec<Effect>>);

impl CommitHook for Recorder {
    fn committed<'a>(&'a self, effects: &'a Effects) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move { self.0.lock().unwrap().extend(effects.iter().cloned()) })
    }
}

impl Recorder {
    fn take(&self) -> Vec<Effect> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

async fn committed_writes_announce_their_effects_and_rolled_back_ones_nothing(store: Store) {
    let (ws, actor) = world(&store, 2).await;
    let recorder = Arc::new(Recorder::default());
    store.on_commit(recorder.clone());
    let mut listener = match store.postgres_pool() {
        Some(pool) => {
            let mut listener = sqlx::postgres::PgListener::connect_with(pool).await.unwrap();
            listener.listen(CHANNEL).await.unwrap();
            Some(listener)
        }
        None => None,
    };
    let resolve = Effect::Resolve(ws.id.clone());

    store.pin(&owner(&ws.id, &actor), &key("k"), &env("dev"), Some(v(2)), None, "try").await.unwrap();
    assert_eq!(recorder.take(), std::slice::from_ref(&resolve), "a pin move changes what resolve answers");
    store.create_token(&owner(&ws.id, &actor), "ci", cutover_domain::Role::Viewer, &[]).await.unwrap();
    assert_eq!(recorder.take(), [Effect::Tokens(ws.id.clone())]);

    // A dry run and a refused write roll back: no effect, no notice.
    let to = envs(&["prod"]);
    store.promote(&owner(&ws.id, &actor), &key("k"), &env("dev"), &to, "preview", true).await.unwrap();
    assert!(store.pin(&owner(&ws.id, &actor), &key("k"), &env("nowhere"), Some(v(1)), None, "").await.is_err());
    assert_eq!(recorder.take(), [], "nothing committed, nothing announced");

    if let Some(listener) = listener.as_mut() {
        let mut received = Vec::new();
        while let Ok(Ok(notification)) = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await {
            let effect = Effect::parse(notification.payload()).expect("a notice the listener understands");
            // Tests running beside this one share the database, and so the channel.
            if matches!(&effect, Effect::Resolve(id) | Effect::Tokens(id) if *id == ws.id) {
                received.push(effect);
            }
        }
        assert_eq!(received, [resolve, Effect::Tokens(ws.id.clone())], "one notice per committed effect, in order");
    }
}
