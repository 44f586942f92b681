//! Warm pools: keep a desired number of ready instances of a preset (a version of an artifact
//! plus parameters) in an environment, so that a claim hands one out at once. Pure: the store
//! reads and writes the rows, the engine drives the provisioner; both ask this module what the
//! rows mean.
//!
//! - [`BuildTransition`], [`JobStatus`], [`AgentLifecycle`]: the stored vocabulary.
//! - [`DesiredCount`], [`Schedule`]: how many instances, static or by cron schedules in a time
//!   zone (first match wins, overlapping schedules refused).
//! - [`PoolName`], [`PresetParameters`], [`PoolSettings`]: a pool's validated definition.
//! - [`plan`]: the reconciler's decision from one snapshot: backoff, failure limit, expired and
//!   extraneous deletes, creates, replacement of a superseded version, pre-warming of versions
//!   that active rollouts and experiments target.
//!
//! `docs/pools.md` states the rules these functions hold.
#![warn(missing_docs)]

mod definition;
mod reconcile;
mod schedule;
mod states;

pub use definition::{
    DEFAULT_BACKOFF_SECONDS, DEFAULT_FAILURE_LIMIT, MAX_PARAMETERS_BYTES, PoolName, PoolSettings, PresetParameters,
};
pub use reconcile::{
    Blocked, FailureRecord, IncomingVersion, InstancePhase, InstanceSnapshot, Plan, PoolCounts, PoolSnapshot, Warmth,
    plan, warmth,
};
pub use schedule::{DesiredCount, MAX_INSTANCES, MAX_SCHEDULES, Schedule};
pub use states::{AgentLifecycle, BuildTransition, JobStatus};
