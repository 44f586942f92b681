//! What the store returns: domain-typed records. They serialise to the before/after of audit
//! events, so internal ids are skipped.

use cutover_domain::{ArtifactKey, Content, DeploymentTargets, EnvironmentName, Role, Timestamp, ValueType};
use serde::Serialize;
use serde_json::Value;

/// Who did something: a token and the name it was given when created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub token_id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub admin: bool,
    pub revision: i64,
    pub created_at: Timestamp,
}

/// An environment a token is limited to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopedEnvironment {
    #[serde(skip)]
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Token {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Empty: the whole workspace.
    pub environments: Vec<ScopedEnvironment>,
    pub created_at: Timestamp,
    pub created_by: Option<Actor>,
    pub revoked_at: Option<Timestamp>,
}

/// An authenticated caller: its token and workspace.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token: Token,
    pub workspace: Workspace,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor { token_id: self.token.id.clone(), name: self.token.name.clone() }
    }

    /// Whether the token may act on this environment: unscoped tokens may act on all.
    pub fn may_touch(&self, environment: &str) -> bool {
        self.token.environments.is_empty() || self.token.environments.iter().any(|e| e.name == environment)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    #[serde(skip)]
    pub id: String,
    pub name: EnvironmentName,
    pub description: String,
    pub protected: bool,
    pub targets: DeploymentTargets,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewEnvironment {
    pub name: EnvironmentName,
    pub description: String,
    pub protected: bool,
    pub targets: DeploymentTargets,
}

/// Changes to an environment; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentChanges {
    pub description: Option<String>,
    pub protected: Option<bool>,
    pub targets: Option<DeploymentTargets>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    #[serde(skip)]
    pub id: String,
    pub key: ArtifactKey,
    pub value_type: ValueType,
    pub kind: String,
    pub description: String,
    pub latest_version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewArtifact {
    pub key: ArtifactKey,
    pub value_type: ValueType,
    pub kind: String,
    pub description: String,
}

#[derive(Debug, Clone, Default)]
pub struct ArtifactChanges {
    pub kind: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Version {
    pub artifact: ArtifactKey,
    pub number: i64,
    #[serde(serialize_with = "serialize_content")]
    pub content: Content,
    pub sha256: String,
    pub message: String,
    pub author: Actor,
    pub created_at: Timestamp,
}

fn serialize_content<S: serde::Serializer>(content: &Content, s: S) -> Result<S::Ok, S::Error> {
    content.value().serialize(s)
}

#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub seq: i64,
    pub at: Timestamp,
    pub actor: Actor,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Which audit events to list; all conditions must hold.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub actor_token_id: Option<String>,
}

/// A page of results and where the next one starts.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<cutover_domain::Cursor>,
}
