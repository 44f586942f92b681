//! The JSON shapes of Cutover's HTTP API under `/api/v1`, shared by the server (which derives the
//! OpenAPI document from them) and the typed client. Requests carry raw values; the server parses
//! them into domain types, so a bad value gets a field-level error rather than a serde message.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

pub mod pools;
pub mod queue;
pub mod schema;

pub use pools::{
    CreatePool, DesiredCount, Pool, PoolAgent, PoolBlocked, PoolBuild, PoolCounts, PoolInstance, PoolSchedule,
    ReportAgentState, UpdatePool,
};

/// The one error shape: every failure of every route.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `invalid_field`, `not_found`, `conflict`, `unauthorized`, ...
    pub code: String,
    /// For a person.
    pub message: String,
    /// Structured context, e.g. `{"field": "name"}` or the objects in conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// One page of a list. Pass `next_cursor` back as `?cursor=` for the next page; it is absent on
/// the last page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Who did something: the token, and the name it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Actor {
    pub token_id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    /// The administrative workspace: its owners may create workspaces.
    pub admin: bool,
    /// Bumped by every change to what resolve returns.
    pub revision: i64,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)]
    pub name: String,
    /// Name of the first owner token; `owner` when absent.
    #[serde(default)]
    #[schema(
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$",
        min_length = 1,
        max_length = 100
    )]
    pub token_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceCreated {
    pub workspace: Workspace,
    pub token: TokenCreated,
}

/// The token the request was made with, and its workspace.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub workspace: Workspace,
    pub token: Token,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,62}$", min_length = 1, max_length = 63)]
    pub name: String,
    /// Handed to rollout executors untouched.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Environment {
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)]
    pub name: String,
    pub description: String,
    /// Only owners, or tokens limited to this environment, may change what is live here.
    pub protected: bool,
    pub targets: Vec<Target>,
    /// Where the environment is listed (lists go from low to high, ties by name): the order
    /// its users set, such as dev, staging, production. New environments go last.
    #[serde(default)]
    pub position: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)]
    pub name: String,
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$", max_length = 4096)]
    pub description: Option<String>,
    #[serde(default)]
    pub protected: Option<bool>,
    #[serde(default)]
    #[schema(schema_with = schema::targets)]
    pub targets: Option<Vec<Target>>,
    /// Where to list it (1 to 1000000); left out: after every environment there is.
    #[serde(default, deserialize_with = "integer::option_i64", skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000000)]
    pub position: Option<i64>,
}

/// Fields left out are unchanged. The name cannot change: it is how tokens, pins and clients
/// refer to the environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$", max_length = 4096)]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::targets)]
    pub targets: Option<Vec<Target>>,
    /// Where to list it (1 to 1000000).
    #[serde(default, deserialize_with = "integer::option_i64", skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000000)]
    pub position: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Artifact {
    #[schema(pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128)]
    pub key: String,
    /// `string`, `json`, `boolean` or `number`; fixed at creation.
    #[schema(value_type = ValueTypeName)]
    pub value_type: String,
    /// What the artifact is, for people and tools: `prompt`, `config`, `template`, `schema`...
    pub kind: String,
    pub description: String,
    /// Number of the newest version; 0 before the first is published.
    pub latest_version: i64,
    pub created_at: String,
    pub updated_at: String,
    /// Set while archived: hidden from lists and resolve, taking no new versions or pins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArtifact {
    #[schema(pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128)]
    pub key: String,
    #[schema(value_type = ValueTypeName)]
    pub value_type: String,
    /// Defaults to `config`.
    #[serde(default)]
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)]
    pub kind: Option<String>,
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$", max_length = 4096)]
    pub description: Option<String>,
}

/// Fields left out are unchanged. The key and value type cannot change once created.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateArtifact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$", max_length = 4096)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Version {
    pub artifact: String,
    pub number: i64,
    /// Typed by the artifact's value type.
    pub content: Value,
    /// Of the raw text for `string` artifacts, of the compact JSON (keys sorted) otherwise.
    pub sha256: String,
    pub message: String,
    pub author: Actor,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVersion {
    /// Must match the artifact's value type: a string, any JSON, a boolean or a number.
    pub content: Value,
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$", max_length = 4096)]
    pub message: Option<String>,
    /// Pin the new version to these environments in the same transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::optional_environment_names)]
    pub environments: Option<Vec<String>>,
    /// Move listed environments owned by other versions instead of refusing with 409.
    #[serde(default, rename = "move", skip_serializing_if = "std::ops::Not::not")]
    pub move_pins: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub id: String,
    pub name: String,
    /// `owner`, `editor`, `viewer` or `sdk`.
    #[schema(value_type = RoleName)]
    pub role: String,
    /// Environments the token is limited to; empty means all. An `sdk` token has exactly one.
    pub environments: Vec<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    #[schema(
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$",
        min_length = 1,
        max_length = 100
    )]
    pub name: String,
    #[schema(value_type = RoleName)]
    pub role: String,
    #[serde(default)]
    #[schema(schema_with = schema::optional_environment_names)]
    pub environments: Option<Vec<String>>,
}

/// A new token and its secret, which is shown only here.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub token: Token,
    pub secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    pub at: String,
    pub actor: Actor,
    /// `environment.create`, `version.create`, `token.revoke`, ...
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    /// `/readyz` only, once the engine runs: the state of each background reconciler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<HealthDetails>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct HealthDetails {
    /// By reconciler name (`rollouts`).
    pub engine: std::collections::BTreeMap<String, ReconcilerHealth>,
}

/// What one background reconciler is doing. A throttled one keeps failing and waits longer
/// before each retry (up to a minute); the server stays ready, since resolve and the API work.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ReconcilerHealth {
    pub state: ReconcilerState,
    /// The last failure, when throttled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Failed passes in a row, when throttled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    /// When the next pass runs, when throttled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReconcilerState {
    /// Its last pass succeeded (or none has run yet).
    Ok,
    /// Its last passes failed; it backs off before the next.
    Throttled,
}

/// One interval during which a version owned an environment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Pin {
    pub artifact: String,
    pub environment: String,
    pub version: i64,
    /// The workspace revision that opened this interval; send it as `If-Match` to change the pin
    /// only if nobody else did meanwhile.
    pub revision: i64,
    pub reason: String,
    pub started_at: String,
    pub started_by: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
}

/// What a write did to one environment: the version live before and after (null: none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PinChange {
    pub artifact: String,
    pub environment: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// The outcome of a pin write.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PinWrite {
    /// The workspace revision the write made; null when nothing changed (or on a dry run).
    pub revision: Option<i64>,
    pub changes: Vec<PinChange>,
}

/// Replace the set of environments a version owns.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetEnvironments {
    #[schema(schema_with = schema::environment_names)]
    pub environments: Vec<String>,
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$", max_length = 4096)]
    pub reason: Option<String>,
}

/// Pin one environment to a version.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPin {
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "integer::i64")]
    pub version: i64,
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$", max_length = 4096)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    #[schema(pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128)]
    pub artifact: String,
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)]
    pub from: String,
    #[schema(schema_with = schema::promote_targets)]
    pub to: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$", max_length = 4096)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Promoted {
    pub artifact: String,
    /// The version live in `from`, now (or, on a dry run, to be) live in every target.
    pub version: i64,
    pub dry_run: bool,
    pub revision: Option<i64>,
    pub changes: Vec<PinChange>,
}

/// What is live for one artifact in one environment (native resolve).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Resolved {
    pub artifact: String,
    pub environment: String,
    /// Null when nothing is pinned.
    pub version: Option<i64>,
    pub value: Option<Value>,
    /// `string`, `json`, `boolean` or `number`.
    #[schema(value_type = ValueTypeName)]
    pub value_type: String,
    /// The workspace revision this answer is as of.
    pub revision: i64,
    /// The experiment that chose this answer, when one runs (or is paused) here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    /// The experiment's variant: `control`, `treatment-1`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// One arm of an experiment: a version of the artifact and its share of covered traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExperimentVariant {
    pub version: i64,
    /// Normalised: the weights of an experiment sum to 1.
    pub weight: f64,
}

/// An experiment: an (artifact, environment) split between versions of the artifact.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Experiment {
    pub id: String,
    pub artifact: String,
    pub environment: String,
    pub name: String,
    pub hypothesis: String,
    /// The first is the control.
    pub variants: Vec<ExperimentVariant>,
    /// Share of the environment's traffic in the experiment, 0 to 1.
    pub coverage: f64,
    /// Fixed at creation; assignment hashes it with the targeting key.
    pub seed: String,
    pub primary_metric: String,
    pub guardrail_metrics: Vec<String>,
    /// `created`, `running`, `paused` or `completed`.
    #[schema(value_type = ExperimentStatusName)]
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    /// Set by the first start only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Set on completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Set when deleted: a deleted experiment stays readable by id but leaves lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
}

/// A new experiment in an environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExperiment {
    /// Artifact key.
    #[schema(pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128)]
    pub artifact: String,
    #[schema(
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$",
        min_length = 1,
        max_length = 100
    )]
    pub name: String,
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$", max_length = 4096)]
    pub hypothesis: Option<String>,
    /// The control's version; the version pinned in the environment when absent.
    #[serde(default, deserialize_with = "integer::option_i64")]
    #[schema(minimum = 1)]
    pub control: Option<i64>,
    /// The other variants' versions (1 to 19).
    #[serde(deserialize_with = "integer::vec_i64")]
    #[schema(schema_with = schema::treatments)]
    pub treatments: Vec<i64>,
    /// Relative weights of the control then the treatments; equal when absent.
    #[serde(default)]
    #[schema(schema_with = schema::weights)]
    pub weights: Option<Vec<f64>>,
    /// Share of traffic in the experiment, 0 to 1; 1 when absent.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub coverage: Option<f64>,
    #[schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,62}$", min_length = 1, max_length = 63)]
    pub primary_metric: String,
    #[serde(default)]
    #[schema(schema_with = schema::guardrail_metrics)]
    pub guardrail_metrics: Vec<String>,
}

/// Edits an experiment: only its name and hypothesis; any other field is refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateExperiment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$",
        min_length = 1,
        max_length = 100
    )]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$", max_length = 4096)]
    pub hypothesis: Option<String>,
}

/// Completes an experiment, optionally pinning a winner.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteExperiment {
    /// The winning variant's version number, pinned to the environment in the same transaction.
    #[serde(default, deserialize_with = "integer::option_i64", skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub winner: Option<i64>,
}

/// An experiment after an action, and the pin write of a winner, if one was pinned.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExperimentActionResult {
    pub experiment: Experiment,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<PinWrite>,
}

/// One metric event: something a user did after seeing a variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricEventIn {
    /// Metric name, as experiments name it (`primary_metric`, `guardrail_metrics`).
    #[schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,62}$", min_length = 1, max_length = 63)]
    pub metric: String,
    /// The same targeting key resolve assigned the user by.
    #[schema(
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$",
        min_length = 1,
        max_length = 256
    )]
    pub targeting_key: String,
    /// The event's value (revenue, latency...). Without one the event counts 1; a metric whose
    /// events carry values is analysed as a mean per exposed user, one without as a conversion rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -1e12, maximum = 1e12)]
    pub value: Option<f64>,
    /// When it happened, RFC 3339; when the server received it if absent. Only events dated while
    /// an experiment ran count in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub timestamp: Option<String>,
}

/// A batch of metric events. The body may also be the bare array.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostEvents {
    /// At most 1,000 events.
    #[schema(max_items = 1000)]
    pub events: Vec<MetricEventIn>,
}

/// What became of a batch of metric events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventsAccepted {
    /// Events in the batch.
    pub received: u64,
    /// (event, experiment) pairs counted: an event counts in every experiment that tracks its
    /// metric, exposed its user, and ran at its time; other events are accepted and ignored.
    pub attributed: u64,
}

/// A confidence interval at 95%.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfidenceInterval {
    pub low: f64,
    pub high: f64,
}

/// A variant against the control, on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Lift {
    /// Variant minus control (rate or mean).
    pub absolute: f64,
    /// 95% confidence interval of `absolute`; null when it has no spread to measure.
    pub absolute_interval: Option<ConfidenceInterval>,
    /// `absolute / control`; null when the control is 0.
    pub relative: Option<f64>,
    /// `absolute_interval / control`: the relative interval taking the control's value as known.
    pub relative_interval: Option<ConfidenceInterval>,
    /// Two-sided p-value of "no difference"; null when the test has no spread to measure.
    pub p_value: Option<f64>,
    /// `two_proportion_z` (conversion metrics) or `welch_t` (mean metrics).
    pub test: String,
    /// At 95%: `better` or `worse` (a significant move, judged by the metric's `direction`), or
    /// `inconclusive`.
    pub verdict: String,
    /// A guardrail metric that moved the wrong way significantly (`verdict` `worse`).
    pub guardrail_violated: bool,
    /// For an inconclusive verdict: users each arm needs to detect the observed effect at 80%
    /// power and 95% confidence (normal approximation); null when there is no effect to detect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_needed_per_variant: Option<u64>,
    /// For an inconclusive verdict: how many more exposed users that takes, control and this
    /// variant together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_users_needed: Option<u64>,
}

/// One variant's numbers on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VariantMetricResult {
    /// `control`, `treatment-1`...
    pub variant: String,
    pub version: i64,
    pub exposures: u64,
    /// Exposed users with at least one event of the metric.
    pub conversions: u64,
    /// Events of the metric from exposed users.
    pub events: u64,
    /// `conversions / exposures` (conversion metrics); null without exposures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_rate: Option<f64>,
    /// Mean per exposed user of the sum of their values (mean metrics); null without exposures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Against the control; absent for the control itself, null when either side has too
    /// little data to compare.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub lift: Option<Option<Lift>>,
}

/// Results of one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricResult {
    pub metric: String,
    /// Whether this is the experiment's primary metric (the others are guardrails).
    pub primary: bool,
    /// `conversion` (events without values) or `mean` (events with values).
    pub kind: String,
    /// `higher_is_better` (the primary metric) or `lower_is_better` (guardrails: they watch
    /// what must not rise, such as errors or latency).
    pub direction: String,
    /// Whether any variant moved this guardrail the wrong way significantly.
    pub guardrail_violated: bool,
    pub variants: Vec<VariantMetricResult>,
}

/// Whether exposures split the way the weights say: Pearson's chi-squared goodness of fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SampleRatioCheck {
    /// Exposures per variant, in variant order.
    pub observed: Vec<u64>,
    /// Configured weights, in variant order.
    pub expected_weights: Vec<f64>,
    /// Null before anyone is exposed.
    pub chi_squared: Option<f64>,
    pub p_value: Option<f64>,
    /// True when `p_value` is below `threshold`: assignment or exposure logging is broken and
    /// the results should not be trusted.
    pub mismatch: bool,
    pub threshold: f64,
}

/// An experiment's results, computed from running totals at request time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExperimentResults {
    pub experiment: String,
    /// `created`, `running`, `paused` or `completed`.
    #[schema(value_type = ExperimentStatusName)]
    pub status: String,
    /// Exposed users in all variants.
    pub exposures: u64,
    pub sample_ratio: SampleRatioCheck,
    /// The primary metric first, then the guardrails.
    pub metrics: Vec<MetricResult>,
}

/// A new rollout: `version` of `artifact` to every deployment target of `environment`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRollout {
    #[schema(pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128)]
    pub artifact: String,
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)]
    pub environment: String,
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "integer::i64")]
    pub version: i64,
    /// Targets at once, and the size of each wave: 1 to 1,000. Default 1.
    #[serde(default, deserialize_with = "integer::option_u32")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_parallel: Option<u32>,
    /// `halt` (default), `continue` or `pause`.
    #[serde(default)]
    #[schema(value_type = Option<OnFailureName>)]
    pub on_failure: Option<String>,
    /// Fail the rollout once this many targets failed, whatever `on_failure` says.
    #[serde(default, deserialize_with = "integer::option_u32")]
    #[schema(minimum = 1, maximum = 1000)]
    pub failure_budget: Option<u32>,
    /// The steps of each target, in order; default `["apply"]`.
    #[serde(default)]
    #[schema(schema_with = schema::steps)]
    pub steps: Option<Vec<String>>,
    /// What runs each task: `{"type": "command", "name": "deploy", "timeout_seconds": 600}` (an
    /// executor the server's operator declared), `{"type": "webhook", "url": "https://…",
    /// "secret": "…"}` or `{"type": "manual"}`.
    #[schema(value_type = Object)]
    pub executor: Value,
}

/// One step of one target.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutTask {
    pub id: String,
    pub step: String,
    /// `pending`, `running`, `completed`, `failed`, `stopped` or `cancelled`.
    #[schema(value_type = TaskStateName)]
    pub state: String,
    /// Runs so far; every run carries the same idempotency key.
    pub attempts: u32,
    pub idempotency_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Size of the kept output; `GET …/tasks/{task}/log` returns it.
    pub log_bytes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

/// One deployment target's share of a rollout.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutOperation {
    pub id: String,
    pub target: String,
    pub position: u32,
    pub wave: u32,
    /// One of the rollout states.
    #[schema(value_type = RolloutStateName)]
    pub state: String,
    #[schema(value_type = OnFailureName)]
    pub on_failure: String,
    pub pause_released: bool,
    /// `command` or `manual`.
    pub executor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    pub tasks: Vec<RolloutTask>,
}

/// A rollout. `operations` is present when one rollout is shown, absent in lists.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Rollout {
    pub id: String,
    pub artifact: String,
    pub environment: String,
    pub version: i64,
    /// `pending`, `running`, `paused`, `running_degraded`, `stopping`, `stopped`, `completed`,
    /// `failed` or `cancelled`; derived from every operation (see docs/rollouts.md).
    #[schema(value_type = RolloutStateName)]
    pub state: String,
    pub max_parallel: u32,
    #[schema(value_type = OnFailureName)]
    pub on_failure: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_budget: Option<u32>,
    pub steps: Vec<String>,
    /// Operations per state, e.g. `{"completed": 3, "running": 2}`; with `operations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<std::collections::BTreeMap<String, usize>>,
    /// The revision of the pin write that completed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_revision: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<RolloutOperation>>,
}

/// A person's report on a `manual` task.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportTask {
    /// Kept in the task's log (and as its error when failing).
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$", max_length = 4096)]
    pub message: Option<String>,
}

/// What an audit event is about (schema only: the wire carries the string). Versions and pins
/// are audited on their artifact.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum AuditObjectTypeName {
    Workspace,
    Environment,
    Artifact,
    Token,
    Experiment,
    Rollout,
    Pool,
    Queue,
}

/// A token's role (schema only: the wire carries the string).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum RoleName {
    Owner,
    Editor,
    Viewer,
    Sdk,
}

/// What an artifact's versions hold.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ValueTypeName {
    String,
    Json,
    Boolean,
    Number,
}

/// An experiment's status.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ExperimentStatusName {
    Created,
    Running,
    Paused,
    Completed,
}

/// A rollout's (or an operation's) state.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum RolloutStateName {
    Pending,
    Running,
    Paused,
    RunningDegraded,
    Stopping,
    Stopped,
    Completed,
    Failed,
    Cancelled,
}

/// A rollout task's state.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum TaskStateName {
    Pending,
    Running,
    Completed,
    Failed,
    Stopped,
    Cancelled,
}

/// What a failed target does to the rest of a rollout.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum OnFailureName {
    Halt,
    Continue,
    Pause,
}

/// Integer fields that also take a JSON number with a zero fraction (`2.0`): JSON Schema counts
/// it as an integer, so a client generated from the document may send one.
mod integer {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    fn parse<E: Error>(number: serde_json::Number) -> Result<i64, E> {
        let whole = number
            .as_i64()
            .or_else(|| number.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18).map(|f| f as i64));
        whole.ok_or_else(|| E::custom(format!("invalid value: {number}, expected an integer")))
    }

    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        parse(serde_json::Number::deserialize(d)?)
    }

    pub fn option_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?.map(parse).transpose()
    }

    pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let n = parse::<D::Error>(serde_json::Number::deserialize(d)?)?;
        ::core::primitive::u32::try_from(n).map_err(|_| D::Error::custom(format!("invalid value: {n}, expected a u32")))
    }

    pub fn option_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        let Some(number) = Option::<serde_json::Number>::deserialize(d)? else { return Ok(None) };
        let n = parse::<D::Error>(number)?;
        u32::try_from(n).map(Some).map_err(|_| D::Error::custom(format!("invalid value: {n}, expected a u32")))
    }

    pub fn vec_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
        Vec::<serde_json::Number>::deserialize(d)?.into_iter().map(parse).collect()
    }
}

/// A field that may be absent (`None`) or present and null (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_fields_take_whole_numbers_written_with_a_fraction() {
        let pin: SetPin = serde_json::from_str(r#"{"version": 2.0}"#).unwrap();
        assert_eq!(pin.version, 2);
        assert!(serde_json::from_str::<SetPin>(r#"{"version": 2.5}"#).is_err());
        assert!(serde_json::from_str::<SetPin>(r#"{"version": "2"}"#).is_err());
        let rollout = r#"{"artifact": "a", "environment": "e", "version": 1, "max_parallel": 3.0, "executor": {}}"#;
        assert_eq!(serde_json::from_str::<CreateRollout>(rollout).unwrap().max_parallel, Some(3));
        let negative = rollout.replace("3.0", "-1");
        assert!(serde_json::from_str::<CreateRollout>(&negative).is_err());
        let experiment: CreateExperiment = serde_json::from_str(
            r#"{"artifact": "a", "name": "n", "treatments": [2.0, 3], "control": null, "primary_metric": "m"}"#,
        )
        .unwrap();
        assert_eq!((experiment.treatments, experiment.control), (vec![2, 3], None));
    }
}
