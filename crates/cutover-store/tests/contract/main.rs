//! The storage contract: every test runs against SQLite and against PostgreSQL.

mod archive;
mod artifacts;
mod audit;
mod effects;
mod environments;
mod events;
mod experiments;
mod migrations;
mod pins;
mod plans;
mod pools;
mod queue;
mod rollouts;
mod sessions;
mod tokens;
mod workspaces;

use cutover_domain::{ArtifactKey, EnvironmentName, VersionNumber, WorkspaceName};
use cutover_store::{Actor, Caller, PinAuthority, Principal, Store, Workspace};

/// An artifact key the test knows to be valid.
pub fn key(raw: &str) -> ArtifactKey {
    ArtifactKey::parse(raw).unwrap()
}

/// An environment name the test knows to be valid.
pub fn env(raw: &str) -> EnvironmentName {
    EnvironmentName::parse(raw).unwrap()
}

/// Environment names the test knows to be valid.
pub fn envs(raw: &[&str]) -> Vec<EnvironmentName> {
    raw.iter().copied().map(env).collect()
}

/// A version number the test knows to be valid.
pub fn v(number: i64) -> VersionNumber {
    VersionNumber::parse("version", number).unwrap()
}

/// The workspace's owner as a caller: unscoped, may change protected environments.
pub fn owner(workspace_id: &str, actor: &Actor) -> Caller {
    Caller::new(workspace_id, actor, &PinAuthority { owner: true, limited_to: Vec::new() })
}

/// A bootstrapped workspace and its owner, as most tests start.
pub async fn setup(store: &Store) -> (Workspace, Actor) {
    let made = store.bootstrap(&WorkspaceName::parse("default").unwrap()).await.unwrap().expect("first bootstrap");
    let actor = Actor { token_id: made.token.id.clone(), name: made.token.name.clone() };
    (made.workspace, actor)
}

pub async fn principal(store: &Store, secret: &cutover_domain::TokenSecret) -> Option<Principal> {
    store.authenticate(&secret.hash()).await.unwrap()
}
