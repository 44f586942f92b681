//! The submit queue's scheduling: change requests land in an environment in order, after checks,
//! batched and checked speculatively. Pure: no clock, no IO; time is passed in.
//!
//! - [`RequestState`], [`BatchState`]: the stored vocabulary and the only legal moves.
//! - [`QueueView`]: what a queue looks like to the planner; [`QueuePolicy`]: how it schedules.
//! - [`plan`]: from a view and `now`, the [`Action`]s to take (form a batch, check a batch on a
//!   base, land, split, refuse a culprit, cancel, abandon a stale check).
//! - [`simulate`]: a deterministic discrete-event simulator that drives the same planner with faked
//!   checks and compares strategies.
//!
//! `docs/queue.md` states the rules these functions hold.

mod definition;
mod model;
mod plan;
pub mod simulate;
mod state;

pub use definition::{
    MAX_BATCH_SIZE, MAX_BUDGET, MAX_CHANGES, MAX_FLAKE_RETRIES, MAX_MESSAGE_CHARS, MAX_WAIT_SECONDS, QueueName,
    QueueSettings, check_message,
};
pub use model::{
    BaseLine, Batch, BatchId, BatchSizing, Check, CheckBase, CheckId, CheckStatus, Conflicts, Footprint, Grouping,
    Lane, Lineage, Outcomes, Position, QueuePolicy, QueueView, Request, RequestId, Scope, Split, dorfman_group_size,
};
pub use plan::{Action, NewBatch, Plan, plan};
pub use state::{BatchEvent, BatchState, IllegalBatchTransition, IllegalRequestTransition, RequestEvent, RequestState};
