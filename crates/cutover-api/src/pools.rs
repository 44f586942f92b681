//! Warm pools: pools of ready instances of a preset, claims, instances and agents' reports.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::integer;

/// How many instances a pool keeps: `instances`, unless one of `schedules` matches the local
/// time in `timezone` (the first that matches wins; overlapping schedules are refused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DesiredCount {
    #[serde(deserialize_with = "integer::u32")]
    #[schema(minimum = 0, maximum = 100)]
    pub instances: u32,
    /// An IANA time zone; default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<PoolSchedule>,
}

/// While `cron` (five fields, minute `*`: `* 8-18 * * 1-5`) matches, the pool keeps `instances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolSchedule {
    pub cron: String,
    #[serde(deserialize_with = "integer::u32")]
    #[schema(minimum = 0, maximum = 100)]
    pub instances: u32,
}

/// A new pool of ready instances of `artifact` in `environment`: each instance is built with
/// the version pinned there and `parameters`, by the executor `executor` the operator declared.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePool {
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)]
    pub name: String,
    #[schema(pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128)]
    pub artifact: String,
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)]
    pub environment: String,
    /// A JSON object handed to the provisioner (a size, a region). Default `{}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Agents every instance reports for; it is ready when all report `ready`. Default none.
    #[serde(default)]
    pub agents: Option<Vec<String>>,
    /// The name of a command executor declared under `[executors.<name>]`: the provisioner.
    pub executor: String,
    /// Seconds a build may take; at most the executor's ceiling (its default).
    #[serde(default, deserialize_with = "integer::option_u32")]
    #[schema(minimum = 1)]
    pub timeout_seconds: Option<u32>,
    pub desired: DesiredCount,
    /// Instances older than this are replaced. Default: kept until claimed.
    #[serde(default, deserialize_with = "integer::option_u32")]
    #[schema(minimum = 60, maximum = 2592000)]
    pub ttl_seconds: Option<u32>,
    /// After `n` failed starts in a row, creating waits `n × backoff_seconds`. Default 60.
    #[serde(default, deserialize_with = "integer::option_u32")]
    #[schema(minimum = 1, maximum = 3600)]
    pub backoff_seconds: Option<u32>,
    /// Failed starts in a row after which the pool stops creating until resumed. Default 3.
    #[serde(default, deserialize_with = "integer::option_u32")]
    #[schema(minimum = 1, maximum = 100)]
    pub failure_limit: Option<u32>,
}

/// Changes to a pool; absent fields stay. `ttl_seconds: null` removes the TTL.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePool {
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub desired: Option<DesiredCount>,
    #[serde(default, deserialize_with = "crate::present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>, minimum = 60, maximum = 2592000)]
    pub ttl_seconds: Option<Option<u32>>,
    #[serde(default, deserialize_with = "integer::option_u32")]
    #[schema(minimum = 1, maximum = 3600)]
    pub backoff_seconds: Option<u32>,
    #[serde(default, deserialize_with = "integer::option_u32")]
    #[schema(minimum = 1, maximum = 100)]
    pub failure_limit: Option<u32>,
}

/// Why a pool creates nothing now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolBlocked {
    /// `paused`, `no_version` (nothing pinned), `backoff` or `failure_limit`.
    pub reason: String,
    /// With `backoff`: when creating may start again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// What a pool's instances count now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolCounts {
    /// What the schedule asks for now (0 while nothing is pinned).
    pub desired: u32,
    /// Running instances (latest build a succeeded start), of any version.
    pub running: u32,
    /// Running with every agent ready.
    pub ready: u32,
    /// Being built, of the current version.
    pub starting: u32,
    /// Running past their TTL, about to be replaced.
    pub expired: u32,
    /// Failed starts in a row of the current version.
    pub failures: u32,
    /// Starting or running instances pre-warmed for versions an active rollout or experiment in
    /// the environment targets (not pinned yet, never handed out by a claim).
    #[serde(default)]
    pub prewarming: u32,
}

/// A pool. `counts`, `version` and `blocked` are present when one pool is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Pool {
    pub name: String,
    pub artifact: String,
    pub environment: String,
    #[schema(value_type = Object)]
    pub parameters: Value,
    pub agents: Vec<String>,
    pub executor: String,
    pub timeout_seconds: u32,
    pub desired: DesiredCount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
    pub backoff_seconds: u32,
    pub failure_limit: u32,
    pub paused: bool,
    /// The version pinned to the environment: what new instances get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<PoolCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<PoolBlocked>,
    pub created_at: String,
    pub updated_at: String,
    pub created_by: String,
}

/// One build of an instance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PoolBuild {
    pub id: String,
    pub number: u32,
    #[schema(value_type = BuildTransitionName)]
    pub transition: String,
    #[schema(value_type = JobStatusName)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// The same on every attempt of the build.
    pub idempotency_key: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

/// An agent's last reported state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolAgent {
    pub name: String,
    #[schema(value_type = AgentStateName)]
    pub state: String,
    pub updated_at: String,
}

/// An instance. `builds` and `agent_states` are present when one instance is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PoolInstance {
    pub id: String,
    /// The pool that made it.
    pub pool: String,
    /// Its current preset's version: the newest successful start's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Its latest build's transition and status.
    #[schema(value_type = BuildTransitionName)]
    pub transition: String,
    #[schema(value_type = JobStatusName)]
    pub status: String,
    /// Running, and every agent reports `ready`.
    pub ready: bool,
    pub agents: u32,
    pub agents_ready: u32,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builds: Option<Vec<PoolBuild>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_states: Option<Vec<PoolAgent>>,
}

/// An agent's report, authenticated with its instance's agent token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportAgentState {
    #[schema(value_type = AgentStateName)]
    pub state: String,
}

/// What a build does (schema only).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum BuildTransitionName {
    Start,
    Stop,
    Delete,
}

/// Where a build's job is (schema only).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum JobStatusName {
    Pending,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

/// An agent's lifecycle state (schema only).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum AgentStateName {
    Created,
    Starting,
    Ready,
    Error,
    ShuttingDown,
    Off,
}
