//! The submit queue: queues, change requests with their history, batches and checks.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::integer;

/// A new queue guarding `environment`: change requests land there in order, after checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQueue {
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)]
    pub name: String,
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$", min_length = 1, max_length = 63)]
    pub environment: String,
    /// W: checks running at once. Default 4.
    #[serde(default, deserialize_with = "integer::option_u32")]
    #[schema(minimum = 1, maximum = 64)]
    pub budget: Option<u32>,
    /// Most requests per batch. Default 8.
    #[serde(default, deserialize_with = "integer::option_u32")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_batch_size: Option<u32>,
    /// Longest a request waits for its batch to fill. Default 60.
    #[serde(default, deserialize_with = "integer::option_u32")]
    #[schema(minimum = 0, maximum = 3600)]
    pub max_wait_seconds: Option<u32>,
    /// Times a single request's failed check runs again before the request is refused (a flaky
    /// check). Default 1.
    #[serde(default, deserialize_with = "integer::option_u32")]
    #[schema(minimum = 0, maximum = 5)]
    pub max_flake_retries: Option<u32>,
    /// What runs checks: `{"type": "command", "name": "check", "timeout_seconds": 600}` (an
    /// executor the server's operator declared), `{"type": "webhook", "url": "https://…",
    /// "secret": "…", "timeout_seconds": 600}` (a signed POST per check; the receiver reports
    /// through the check's callback) or `{"type": "manual"}` (a person reports each check's
    /// result).
    #[schema(value_type = Object)]
    pub executor: Value,
}

/// A queue with what it holds now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Queue {
    pub name: String,
    pub environment: String,
    pub budget: u32,
    pub max_batch_size: u32,
    pub max_wait_seconds: u32,
    pub max_flake_retries: u32,
    /// `command` (with `name` and `timeout_seconds`) or `manual`.
    #[schema(value_type = Object)]
    pub executor: Value,
    pub paused: bool,
    /// Change requests not yet terminal.
    pub depth: u64,
    pub active_batches: u64,
    /// Checks running now: a manual check is reported on its id.
    pub running_checks: Vec<RunningCheck>,
    pub landed: u64,
    pub created_at: String,
    pub updated_at: String,
    pub created_by: String,
}

/// A check running now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunningCheck {
    pub id: u64,
    pub batch: u64,
    pub attempt: u32,
    pub started_at: String,
}

/// New content for one artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueChange {
    #[schema(pattern = r"^[a-z0-9][a-z0-9._/-]{0,127}$", min_length = 1, max_length = 128)]
    pub artifact: String,
    /// The new content: valid for the artifact's value type.
    #[schema(value_type = Object)]
    pub content: Value,
}

/// A change request: new content for one or more artifacts, with a message.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitChangeRequest {
    #[schema(min_items = 1, max_items = 50)]
    pub changes: Vec<QueueChange>,
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$", max_length = 4096)]
    pub message: String,
    /// The hotfix lane: batched first, ahead of every normal batch not already landing. Audited.
    #[serde(default)]
    pub hotfix: bool,
}

/// One transition of a change request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestTransition {
    pub at: String,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
}

/// A change request. `history` is present when one request is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangeRequest {
    pub id: u64,
    pub queue: String,
    /// `started`, `validated`, `batched`, `processing`, `landed`, `error`, `cancelling` or
    /// `cancelled`.
    pub state: String,
    /// `normal` or `hotfix`.
    pub lane: String,
    pub changes: Vec<QueueChange>,
    pub message: String,
    pub author: String,
    /// Why it was refused (the failing check's output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landed_at: Option<String>,
    /// The version each artifact got when it landed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub landed_versions: Option<std::collections::BTreeMap<String, i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<RequestTransition>>,
}

/// A batch of change requests checked and landed together.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueBatch {
    pub id: u64,
    /// `creating`, `created`, `speculating`, `merging`, `succeeded`, `failed`, `cancelling` or
    /// `cancelled`.
    pub state: String,
    pub lane: String,
    /// Batches form in this order; parts of a split batch keep their parent's.
    pub seq: u64,
    pub requests: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<u64>>,
    /// A part of a failed batch being bisected.
    pub suspect: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A person's report of a manual check.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckReport {
    /// Kept as the check's output (a failed check's output becomes the culprit's error).
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$", max_length = 65536)]
    pub output: String,
}

/// A webhook receiver's report on the check it was sent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckCallback {
    /// `passed` or `failed`.
    #[schema(pattern = "^(passed|failed)$")]
    pub status: String,
    /// Kept as the check's output (a failed check's output becomes the culprit's error).
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$", max_length = 65536)]
    pub output: Option<String>,
}
