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
    pub name: EnvironmentName,
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
    pub fn may_touch(&self, environment: impl AsRef<str>) -> bool {
        let environment = environment.as_ref();
        cutover_domain::access::in_scope(self.token.environments.iter().map(|e| e.name.as_str()), environment)
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
    /// Where the environment is listed: lower first, ties by name.
    pub position: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewEnvironment {
    pub name: EnvironmentName,
    pub description: String,
    pub protected: bool,
    pub targets: DeploymentTargets,
    /// `None`: after every environment the workspace has.
    pub position: Option<i64>,
}

/// Changes to an environment; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentChanges {
    pub description: Option<String>,
    pub protected: Option<bool>,
    pub targets: Option<DeploymentTargets>,
    /// Where the environment is listed: lower first, ties by name.
    pub position: Option<i64>,
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
    /// When it was archived: hidden from lists and resolve, refusing new versions and pins.
    pub archived_at: Option<Timestamp>,
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
    pub object_type: Option<cutover_domain::AuditObject>,
    pub object_id: Option<String>,
    /// The actor's name (as audit tables show it) or token id.
    pub actor: Option<String>,
    /// Actions starting with this: a whole action (`pin.set`) or a prefix (`pin.`).
    pub action: Option<String>,
    /// Made at or after this moment.
    pub since: Option<cutover_domain::Timestamp>,
    /// Made before this moment.
    pub until: Option<cutover_domain::Timestamp>,
}

/// A page of results and where the next one starts.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<cutover_domain::Cursor>,
}

/// One interval during which a version owned an environment.
#[derive(Debug, Clone, Serialize)]
pub struct Pin {
    pub artifact: ArtifactKey,
    pub environment: EnvironmentName,
    pub version: i64,
    /// The workspace revision that opened this interval; `If-Match` compares against it.
    pub revision: i64,
    pub reason: String,
    pub started_at: Timestamp,
    pub started_by: Actor,
    pub ended_at: Option<Timestamp>,
    pub ended_by: Option<Actor>,
    pub end_reason: Option<String>,
}

/// What one write did to one environment of an artifact: `from` and `to` versions (None:
/// nothing pinned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PinChange {
    pub artifact: ArtifactKey,
    pub environment: EnvironmentName,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// The outcome of a pin write: the workspace revision it made (None when nothing changed) and
/// each change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinWrite {
    pub revision: Option<i64>,
    pub changes: Vec<PinChange>,
}

/// What a token may do to environments (the domain's one rule): owners may change protected
/// environments; a token limited to some environments acts only on those, and may change them
/// even when protected.
pub type PinAuthority = cutover_domain::EnvironmentScope;

/// Who makes a write, built once from the token: its workspace, the token as the actor the
/// audit log names, and its authority over environments.
#[derive(Debug, Clone)]
pub struct Caller {
    pub workspace_id: String,
    pub actor: Actor,
    pub authority: PinAuthority,
}

impl Caller {
    pub fn new(workspace_id: &str, actor: &Actor, authority: &PinAuthority) -> Self {
        Self { workspace_id: workspace_id.to_owned(), actor: actor.clone(), authority: authority.clone() }
    }

    /// The caller a token makes.
    pub fn of(principal: &Principal) -> Self {
        Self {
            workspace_id: principal.workspace.id.clone(),
            actor: principal.actor(),
            authority: authority_of(principal),
        }
    }
}

/// The authority of a token, as the store checks it.
pub fn authority_of(principal: &Principal) -> PinAuthority {
    PinAuthority {
        owner: principal.token.role == cutover_domain::Role::Owner,
        limited_to: principal.token.environments.iter().map(|e| e.name.as_str().to_owned()).collect(),
    }
}

/// Whether `authority` may change what is live in `environment`: `None` when allowed,
/// otherwise why not.
pub(crate) fn refuses(authority: &PinAuthority, environment: &Environment) -> Option<String> {
    authority.may_change(environment.name.as_str(), environment.protected).err().map(|refusal| refusal.to_string())
}

/// What is live for one (artifact, environment), with everything resolve returns.
#[derive(Debug, Clone)]
pub struct LivePin {
    pub artifact: ArtifactKey,
    pub value_type: ValueType,
    pub environment: EnvironmentName,
    pub version: i64,
    pub revision: i64,
    pub content: Content,
}

/// One revision of a workspace, as the change stream replays it.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeRecord {
    pub revision: i64,
    pub at: Timestamp,
    pub pins: Vec<PinChange>,
}

/// An experiment: an (artifact, environment) split between versions of the artifact.
#[derive(Debug, Clone, Serialize)]
pub struct Experiment {
    pub id: String,
    pub artifact: ArtifactKey,
    pub environment: EnvironmentName,
    pub name: String,
    pub hypothesis: String,
    /// The first is the control.
    pub variants: cutover_domain::Variants,
    pub coverage: cutover_domain::Coverage,
    pub seed: String,
    pub primary_metric: String,
    pub guardrail_metrics: Vec<String>,
    /// Status and timestamps, set only by the domain's lifecycle.
    #[serde(flatten)]
    pub lifecycle: cutover_domain::Lifecycle,
    pub deleted_at: Option<Timestamp>,
}

/// A new experiment as a caller describes it. `control` defaults to the version pinned in the
/// environment; `weights`, when given, cover the control then the treatments.
#[derive(Debug, Clone, Default)]
pub struct ExperimentSpec {
    pub name: String,
    pub hypothesis: String,
    pub control: Option<i64>,
    pub treatments: Vec<i64>,
    pub weights: Option<Vec<f64>>,
    pub coverage: Option<f64>,
    pub primary_metric: String,
    pub guardrail_metrics: Vec<String>,
}

/// Changes to an experiment; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ExperimentChanges {
    pub name: Option<String>,
    pub hypothesis: Option<String>,
}

/// The result of an action: the experiment after it, and the pin write of a winner, if any.
#[derive(Debug, Clone)]
pub struct ExperimentOutcome {
    pub experiment: Experiment,
    pub pinned: Option<PinWrite>,
}

/// A user's first assignment to a variant of a running experiment, as resolve saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposure {
    pub experiment_id: String,
    pub targeting_key: String,
    /// Index into the experiment's variants; 0 is the control.
    pub variant: u32,
    pub at: Timestamp,
}

/// One metric event, validated. A user's value for a metric is the sum of their events' values;
/// an event without a value counts 1.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricEvent {
    pub metric: cutover_domain::MetricName,
    pub targeting_key: String,
    pub value: Option<f64>,
    pub at: Timestamp,
}

/// What became of a batch of metric events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EventsOutcome {
    /// Events in the batch.
    pub received: u64,
    /// (event, experiment) pairs the events were counted in: an event counts in every experiment
    /// that tracks its metric, exposed its user and was running at its time.
    pub attributed: u64,
}

/// One variant's running totals of one metric.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MetricSums {
    /// Exposed users with at least one event.
    pub conversions: u64,
    pub events: u64,
    /// Events that carried a value: a metric with any is a mean, one without is a rate.
    pub valued_events: u64,
    /// Sum over users of their value.
    pub sum: f64,
    /// Sum over users of their value squared.
    pub sum_of_squares: f64,
}

/// Everything an experiment's results are computed from: a few rows, whatever the traffic.
#[derive(Debug, Clone)]
pub struct ExperimentTotals {
    pub experiment: Experiment,
    /// Exposed users per variant, in variant order.
    pub exposures: Vec<u64>,
    /// Per tracked metric (the primary first, then the guardrails), per variant.
    pub metrics: Vec<(String, Vec<MetricSums>)>,
}

/// A rollout as a caller asks for it, validated.
#[derive(Debug, Clone)]
pub struct NewRollout {
    pub artifact: ArtifactKey,
    pub environment: EnvironmentName,
    pub version: cutover_domain::VersionNumber,
    pub policy: cutover_domain::rollouts::RolloutPolicy,
    pub steps: Vec<String>,
    pub executor: cutover_domain::rollouts::ExecutorSpec,
}

/// A rollout row: version `version` of `artifact` applied to every target of `environment`.
#[derive(Debug, Clone, Serialize)]
pub struct Rollout {
    pub id: String,
    pub artifact: ArtifactKey,
    /// The artifact's value type, for executors that hand the content on.
    pub value_type: ValueType,
    pub environment: EnvironmentName,
    pub version: cutover_domain::VersionNumber,
    pub state: cutover_domain::rollouts::RolloutState,
    pub policy: cutover_domain::rollouts::RolloutPolicy,
    pub steps: Vec<String>,
    pub operation_count: usize,
    /// The revision of the pin write that completed it.
    pub pinned_revision: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub created_by: Actor,
    #[serde(skip)]
    pub workspace_id: String,
}

/// One deployment target's share of a rollout.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutOperation {
    pub id: String,
    pub target: String,
    pub target_config: serde_json::Map<String, Value>,
    pub position: u32,
    pub wave: u32,
    pub state: cutover_domain::rollouts::OperationState,
    pub on_failure: cutover_domain::rollouts::OnFailure,
    pub pause_released: bool,
    pub executor: cutover_domain::rollouts::ExecutorSpec,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    pub tasks: Vec<RolloutTask>,
}

impl RolloutOperation {
    /// What the domain's derivation and scheduler read of this operation.
    pub fn row(&self) -> cutover_domain::rollouts::OperationRow {
        cutover_domain::rollouts::OperationRow {
            position: self.position,
            wave: self.wave,
            state: self.state,
            on_failure: self.on_failure,
            pause_released: self.pause_released,
        }
    }
}

/// One step of one operation.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutTask {
    pub id: String,
    pub operation_id: String,
    pub position: u32,
    pub step: String,
    pub state: cutover_domain::rollouts::TaskState,
    pub attempts: u32,
    pub idempotency_key: String,
    /// The lease token of the run allowed to record the result.
    pub run_token: Option<i64>,
    /// Until when the current run may still be executing, wherever it runs.
    pub run_deadline: Option<Timestamp>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// Size of the kept output; `Store::rollout_task_log` reads it.
    pub log_bytes: usize,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// A rollout with its operations and their tasks.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutDetail {
    #[serde(flatten)]
    pub rollout: Rollout,
    pub operations: Vec<RolloutOperation>,
}

/// How a task run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutcome {
    pub succeeded: bool,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub log: String,
}

/// A stored artifact key. A row that does not parse is corrupt: never a default.
pub(crate) fn stored_key(raw: &str) -> Result<ArtifactKey, crate::StoreError> {
    ArtifactKey::parse(raw).map_err(|e| crate::StoreError::Corrupt(format!("stored artifact key {raw:?}: {e}")))
}

/// A stored environment name. A row that does not parse is corrupt: never a default.
pub(crate) fn stored_environment(raw: &str) -> Result<EnvironmentName, crate::StoreError> {
    EnvironmentName::parse(raw).map_err(|e| crate::StoreError::Corrupt(format!("stored environment name {raw:?}: {e}")))
}
