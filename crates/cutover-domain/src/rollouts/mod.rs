//! Rollouts: apply a version to every deployment target of an environment, one operation per
//! target, with the rollout's state derived from all of its operations. Pure: the store reads and
//! writes the rows, the engine drives the work; both ask this module what the rows mean.
//!
//! - [`OperationState`] (= [`RolloutState`]) and [`TaskState`]: the stored vocabulary.
//! - [`RolloutPolicy`]: `max_parallel`, [`OnFailure`], [`FailureBudget`]; [`RolloutPolicy::plan`]
//!   lays out a new rollout's operations in waves.
//! - [`derive_state`]: the rollout's state from a [`RolloutRead`] of all its operations, failing
//!   closed on an incomplete read.
//! - [`startable`]: which operations may start now.
//! - [`RolloutControl`]: stop, resume, cancel, release, retry.
//! - [`TaskLog`], [`bound_log`]: a task's output kept within [`MAX_TASK_LOG_BYTES`], one marker.
//!
//! `docs/rollouts.md` states the rules these functions hold.
#![warn(missing_docs)]

mod controls;
mod derive;
mod executor;
mod log;
mod operation;
mod policy;
mod schedule;
mod state;

pub use controls::{IllegalControl, RolloutControl, halted_operation_state};
pub use derive::{Derived, RolloutRead, derive_state};
pub use executor::{
    CallbackToken, DEFAULT_TASK_TIMEOUT_SECONDS, ExecutorRequest, ExecutorSpec, MAX_STEPS, MAX_TASK_TIMEOUT_SECONDS,
    WebhookSecret, check_executor_name, parse_steps,
};
pub use log::{MAX_TASK_LOG_BYTES, TaskLog, bound_log};
pub use operation::OperationRow;
pub use policy::{FailureBudget, MaxParallel, OnFailure, RolloutPolicy};
pub use schedule::startable;
pub use state::{OperationState, RolloutState, TaskState};
