//! The storage contract: every test runs against SQLite and against PostgreSQL.

mod artifacts;
mod effects;
mod environments;
mod events;
mod experiments;
mod migrations;
mod pins;
mod plans;
mod pools;
mod rollouts;
mod tokens;
mod workspaces;

use cutover_domain::WorkspaceName;
use cutover_store::{Actor, Principal, Store, Workspace};

/// A bootstrapped workspace and its owner, as most tests start.
pub async fn setup(store: &Store) -> (Workspace, Actor) {
    let made = store.bootstrap(&WorkspaceName::parse("default").unwrap()).await.unwrap().expect("first bootstrap");
    let actor = Actor { token_id: made.token.id.clone(), name: made.token.name.clone() };
    (made.workspace, actor)
}

pub async fn principal(store: &Store, secret: &cutover_domain::TokenSecret) -> Option<Principal> {
    store.authenticate(&secret.hash()).await.unwrap()
}
