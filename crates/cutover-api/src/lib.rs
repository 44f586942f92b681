//! The JSON shapes of Cutover's HTTP API under `/api/v1`, shared by the server (which derives the
//! OpenAPI document from them) and the typed client. Requests carry raw values; the server parses
//! them into domain types, so a bad value gets a field-level error rather than a serde message.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

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
    pub name: String,
    /// Name of the first owner token; `owner` when absent.
    #[serde(default)]
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
    pub name: String,
    /// Handed to rollout executors untouched.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Environment {
    pub name: String,
    pub description: String,
    /// Only owners, or tokens limited to this environment, may change what is live here.
    pub protected: bool,
    pub targets: Vec<Target>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub protected: Option<bool>,
    #[serde(default)]
    pub targets: Option<Vec<Target>>,
}

/// Fields left out are unchanged. The name cannot change: it is how tokens, pins and clients
/// refer to the environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<Target>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Artifact {
    pub key: String,
    /// `string`, `json`, `boolean` or `number`; fixed at creation.
    pub value_type: String,
    /// What the artifact is, for people and tools: `prompt`, `config`, `template`, `schema`...
    pub kind: String,
    pub description: String,
    /// Number of the newest version; 0 before the first is published.
    pub latest_version: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArtifact {
    pub key: String,
    pub value_type: String,
    /// Defaults to `config`.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Fields left out are unchanged. The key and value type cannot change once created.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateArtifact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Version {
    pub artifact: String,
    pub number: i64,
    /// Typed by the artifact's value type.
    #[schema(value_type = Object)]
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
    #[schema(value_type = Object)]
    pub content: Value,
    #[serde(default)]
    pub message: Option<String>,
    /// Pin the new version to these environments in the same transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    pub name: String,
    pub role: String,
    #[serde(default)]
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
    pub environments: Vec<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Pin one environment to a version.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPin {
    pub version: i64,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    pub artifact: String,
    pub from: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
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
    #[schema(value_type = Option<Object>)]
    pub value: Option<Value>,
    /// `string`, `json`, `boolean` or `number`.
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
    pub artifact: String,
    pub name: String,
    #[serde(default)]
    pub hypothesis: Option<String>,
    /// The control's version; the version pinned in the environment when absent.
    #[serde(default)]
    pub control: Option<i64>,
    /// The other variants' versions (1 to 19).
    pub treatments: Vec<i64>,
    /// Relative weights of the control then the treatments; equal when absent.
    #[serde(default)]
    pub weights: Option<Vec<f64>>,
    /// Share of traffic in the experiment, 0 to 1; 1 when absent.
    #[serde(default)]
    pub coverage: Option<f64>,
    pub primary_metric: String,
    #[serde(default)]
    pub guardrail_metrics: Vec<String>,
}

/// Edits an experiment: only its name and hypothesis; any other field is refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateExperiment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypothesis: Option<String>,
}

/// Completes an experiment, optionally pinning a winner.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteExperiment {
    /// The winning variant's version number, pinned to the environment in the same transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    pub metric: String,
    /// The same targeting key resolve assigned the user by.
    pub targeting_key: String,
    /// The event's value (revenue, latency...). Without one the event counts 1; a metric whose
    /// events carry values is analysed as a mean per exposed user, one without as a conversion rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// When it happened, RFC 3339; when the server received it if absent. Only events dated while
    /// an experiment ran count in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// A batch of metric events. The body may also be the bare array.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostEvents {
    /// At most 1,000 events.
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
    pub artifact: String,
    pub environment: String,
    pub version: i64,
    /// Targets at once, and the size of each wave: 1 to 1,000. Default 1.
    #[serde(default)]
    pub max_parallel: Option<u32>,
    /// `halt` (default), `continue` or `pause`.
    #[serde(default)]
    pub on_failure: Option<String>,
    /// Fail the rollout once this many targets failed, whatever `on_failure` says.
    #[serde(default)]
    pub failure_budget: Option<u32>,
    /// The steps of each target, in order; default `["apply"]`.
    #[serde(default)]
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
    pub state: String,
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
    pub state: String,
    pub max_parallel: u32,
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
    pub message: Option<String>,
}

/// A field that may be absent (`None`) or present and null (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
