//! The words change requests and batches are stored and shown with, and the only moves between
//! them.
//!
//! A request: `started → validated → batched → processing → landed | error`, plus `cancelling` (an
//! intent a person expressed, not terminal) and `cancelled`. A batch: `creating → created →
//! speculating → merging → succeeded | failed`, plus `cancelling → cancelled`. In both, a terminal
//! outcome wins a race against a cancel: a `cancelling` request or batch may still land, fail or
//! succeed, because the landing transaction or the check's verdict may already be under way.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// Where a change request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Submitted; its content is not validated yet.
    Started,
    /// Valid, waiting to be put in a batch.
    Validated,
    /// In a batch whose check has not started.
    Batched,
    /// In a batch that is being checked.
    Processing,
    /// Published and pinned to the environment. Terminal.
    Landed,
    /// Refused: invalid content, or the culprit of a failed check. Terminal.
    Error,
    /// A cancel was asked for; not terminal (the landing may win).
    Cancelling,
    /// Cancelled. Terminal.
    Cancelled,
}

/// What happens to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestEvent {
    /// Its content passed validation.
    Validate,
    /// It was put in a new batch.
    Batch,
    /// The check of its batch started.
    Process,
    /// Its batch was split (bisection) or lost a cancelled member: it is in a new batch at the
    /// same place in the queue.
    Rebatch,
    /// Its batch landed.
    Land,
    /// Refused: validation failed, or it is the culprit of a failed check.
    Fail,
    /// A person asked to cancel it.
    Cancel,
    /// The cancel took effect.
    ConfirmCancel,
}

impl RequestState {
    /// Every state, in the order of the documentation.
    pub const ALL: [RequestState; 8] = [
        Self::Started,
        Self::Validated,
        Self::Batched,
        Self::Processing,
        Self::Landed,
        Self::Error,
        Self::Cancelling,
        Self::Cancelled,
    ];

    /// Whether nothing leaves this state: `landed`, `error`, `cancelled`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Landed | Self::Error | Self::Cancelled)
    }

    /// The state `event` leads to, or why it is not allowed.
    pub fn after(self, event: RequestEvent) -> Result<RequestState, IllegalRequestTransition> {
        use RequestEvent as E;
        use RequestState::*;
        let next = match (self, event) {
            (Started, E::Validate) => Validated,
            (Validated, E::Batch) => Batched,
            (Batched, E::Process) => Processing,
            (Batched | Processing, E::Rebatch) => Batched,
            (Processing | Cancelling, E::Land) => Landed,
            (Started | Processing | Cancelling, E::Fail) => Error,
            (Started | Validated | Batched | Processing, E::Cancel) => Cancelling,
            (Cancelling, E::ConfirmCancel) => Cancelled,
            _ => return Err(IllegalRequestTransition { state: self, event }),
        };
        Ok(next)
    }
}

/// A move the request's state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a change request that is {state} cannot {event}")]
pub struct IllegalRequestTransition {
    pub state: RequestState,
    pub event: RequestEvent,
}

/// Where a batch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Membership written, row being written: inert, not yet eligible as a dependency.
    Creating,
    /// Dependencies final (set in one compare-and-set); waiting for a check.
    Created,
    /// Being checked on top of the predicted state of the batches ahead of it.
    Speculating,
    /// Its check passed on the state that is now live: landing (publish and pin) is under way.
    Merging,
    /// Landed. Terminal.
    Succeeded,
    /// Its check failed: split, or its single request refused. Terminal.
    Failed,
    /// A cancel was asked for (a member was cancelled); a verdict may still win.
    Cancelling,
    /// Cancelled; its other members are in a new batch. Terminal.
    Cancelled,
}

/// What happens to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchEvent {
    /// Its row and dependencies are written.
    Create,
    /// A check of it started (the first, or a new one after a re-plan).
    Speculate,
    /// Its check passed and everything it depends on landed.
    Merge,
    /// The landing transaction committed.
    Succeed,
    /// Its check failed for good.
    Fail,
    /// One of its members was cancelled.
    Cancel,
    /// The cancel took effect.
    ConfirmCancel,
}

impl BatchState {
    /// Every state, in the order of the documentation.
    pub const ALL: [BatchState; 8] = [
        Self::Creating,
        Self::Created,
        Self::Speculating,
        Self::Merging,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelling,
        Self::Cancelled,
    ];

    /// Whether nothing leaves this state: `succeeded`, `failed`, `cancelled`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// Whether the batch takes part in scheduling: a dependency of the batches behind it, checked,
    /// landed. `creating` is inert; terminal and `cancelling` batches are on their way out.
    pub fn is_schedulable(self) -> bool {
        matches!(self, Self::Created | Self::Speculating | Self::Merging)
    }

    /// The state `event` leads to, or why it is not allowed.
    ///
    /// A merging batch cannot be cancelled: its landing is under way and wins.
    pub fn after(self, event: BatchEvent) -> Result<BatchState, IllegalBatchTransition> {
        use BatchEvent as E;
        use BatchState::*;
        let next = match (self, event) {
            (Creating, E::Create) => Created,
            (Created | Speculating, E::Speculate) => Speculating,
            (Speculating, E::Merge) => Merging,
            (Merging | Cancelling, E::Succeed) => Succeeded,
            (Speculating | Cancelling, E::Fail) => Failed,
            (Creating | Created | Speculating, E::Cancel) => Cancelling,
            (Cancelling, E::ConfirmCancel) => Cancelled,
            _ => return Err(IllegalBatchTransition { state: self, event }),
        };
        Ok(next)
    }
}

/// A move the batch's state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a batch that is {state} cannot {event}")]
pub struct IllegalBatchTransition {
    pub state: BatchState,
    pub event: BatchEvent,
}

macro_rules! names {
    ($type:ty, $field:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $type {
            /// The name stored in the database and shown by the API.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }
        }
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $type {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                const ALL: &[$type] = &[$(<$type>::$variant),+];
                ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let names: Vec<&str> = ALL.iter().map(|v| v.as_str()).collect();
                    DomainError::invalid($field, format!("{s:?} is not one of {}", names.join(", ")))
                })
            }
        }
    };
}

names!(RequestState, "state", {
    Started => "started", Validated => "validated", Batched => "batched", Processing => "processing",
    Landed => "landed", Error => "error", Cancelling => "cancelling", Cancelled => "cancelled",
});
names!(BatchState, "state", {
    Creating => "creating", Created => "created", Speculating => "speculating", Merging => "merging",
    Succeeded => "succeeded", Failed => "failed", Cancelling => "cancelling", Cancelled => "cancelled",
});
names!(RequestEvent, "event", {
    Validate => "validate", Batch => "batch", Process => "process", Rebatch => "rebatch", Land => "land",
    Fail => "fail", Cancel => "cancel", ConfirmCancel => "confirm_cancel",
});
names!(BatchEvent, "event", {
    Create => "create", Speculate => "speculate", Merge => "merge", Succeed => "succeed", Fail => "fail",
    Cancel => "cancel", ConfirmCancel => "confirm_cancel",
});

#[cfg(test)]
mod tests {
    use super::BatchEvent as BE;
    use super::RequestEvent as RE;
    use super::*;

    const REQUEST_EVENTS: [RequestEvent; 8] =
        [RE::Validate, RE::Batch, RE::Process, RE::Rebatch, RE::Land, RE::Fail, RE::Cancel, RE::ConfirmCancel];
    const BATCH_EVENTS: [BatchEvent; 7] =
        [BE::Create, BE::Speculate, BE::Merge, BE::Succeed, BE::Fail, BE::Cancel, BE::ConfirmCancel];

    /// Every legal request move; any (state, event) pair not listed is refused.
    const REQUEST_TABLE: &[(RequestState, RequestEvent, RequestState)] = {
        use RequestState::*;
        &[
            (Started, RE::Validate, Validated),
            (Started, RE::Fail, Error),
            (Started, RE::Cancel, Cancelling),
            (Validated, RE::Batch, Batched),
            (Validated, RE::Cancel, Cancelling),
            (Batched, RE::Process, Processing),
            (Batched, RE::Rebatch, Batched),
            (Batched, RE::Cancel, Cancelling),
            (Processing, RE::Rebatch, Batched),
            (Processing, RE::Land, Landed),
            (Processing, RE::Fail, Error),
            (Processing, RE::Cancel, Cancelling),
            (Cancelling, RE::Land, Landed),
            (Cancelling, RE::Fail, Error),
            (Cancelling, RE::ConfirmCancel, Cancelled),
        ]
    };

    /// Every legal batch move; any (state, event) pair not listed is refused.
    const BATCH_TABLE: &[(BatchState, BatchEvent, BatchState)] = {
        use BatchState::*;
        &[
            (Creating, BE::Create, Created),
            (Creating, BE::Cancel, Cancelling),
            (Created, BE::Speculate, Speculating),
            (Created, BE::Cancel, Cancelling),
            (Speculating, BE::Speculate, Speculating),
            (Speculating, BE::Merge, Merging),
            (Speculating, BE::Fail, Failed),
            (Speculating, BE::Cancel, Cancelling),
            (Merging, BE::Succeed, Succeeded),
            (Cancelling, BE::Succeed, Succeeded),
            (Cancelling, BE::Fail, Failed),
            (Cancelling, BE::ConfirmCancel, Cancelled),
        ]
    };

    #[test]
    fn the_request_transition_table_is_exactly_the_documented_one() {
        for state in RequestState::ALL {
            for event in REQUEST_EVENTS {
                let expected = REQUEST_TABLE.iter().find(|(s, e, _)| *s == state && *e == event).map(|row| row.2);
                match expected {
                    Some(next) => assert_eq!(state.after(event), Ok(next), "{event} from {state}"),
                    None => assert_eq!(state.after(event), Err(IllegalRequestTransition { state, event })),
                }
            }
        }
    }

    #[test]
    fn the_batch_transition_table_is_exactly_the_documented_one() {
        for state in BatchState::ALL {
            for event in BATCH_EVENTS {
                let expected = BATCH_TABLE.iter().find(|(s, e, _)| *s == state && *e == event).map(|row| row.2);
                match expected {
                    Some(next) => assert_eq!(state.after(event), Ok(next), "{event} from {state}"),
                    None => assert_eq!(state.after(event), Err(IllegalBatchTransition { state, event })),
                }
            }
        }
    }

    #[test]
    fn nothing_leaves_a_terminal_state() {
        for state in RequestState::ALL.into_iter().filter(|s| s.is_terminal()) {
            assert!(REQUEST_EVENTS.iter().all(|&e| state.after(e).is_err()), "{state}");
        }
        for state in BatchState::ALL.into_iter().filter(|s| s.is_terminal()) {
            assert!(BATCH_EVENTS.iter().all(|&e| state.after(e).is_err()), "{state}");
        }
    }

    #[test]
    fn a_terminal_outcome_wins_a_race_against_a_cancel() {
        assert_eq!(RequestState::Cancelling.after(RE::Land), Ok(RequestState::Landed));
        assert_eq!(RequestState::Cancelling.after(RE::Fail), Ok(RequestState::Error));
        assert_eq!(BatchState::Cancelling.after(BE::Succeed), Ok(BatchState::Succeeded));
        assert_eq!(BatchState::Cancelling.after(BE::Fail), Ok(BatchState::Failed));
        // A landing under way is not cancelled.
        assert!(BatchState::Merging.after(BE::Cancel).is_err());
    }

    #[test]
    fn an_illegal_move_names_the_state_and_the_event() {
        let err = RequestState::Landed.after(RE::Cancel).unwrap_err();
        assert_eq!(err.to_string(), "a change request that is landed cannot cancel");
        let err = BatchState::Merging.after(BE::Cancel).unwrap_err();
        assert_eq!(err.to_string(), "a batch that is merging cannot cancel");
    }

    #[test]
    fn states_and_events_round_trip_through_their_names() {
        for s in RequestState::ALL {
            assert_eq!(s.as_str().parse::<RequestState>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in BatchState::ALL {
            assert_eq!(s.as_str().parse::<BatchState>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for e in REQUEST_EVENTS {
            assert_eq!(e.to_string().parse::<RequestEvent>(), Ok(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.to_string());
        }
        for e in BATCH_EVENTS {
            assert_eq!(e.to_string().parse::<BatchEvent>(), Ok(e));
        }
        assert_eq!("done".parse::<RequestState>().unwrap_err().field(), "state");
        assert_eq!("merge_now".parse::<BatchEvent>().unwrap_err().field(), "event");
    }
}
