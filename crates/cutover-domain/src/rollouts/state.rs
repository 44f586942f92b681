//! The words rollouts, operations and tasks are stored and shown with.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// The state of a rollout or of one of its operations: one vocabulary for both, stored as the
/// snake_case names of [`OperationState::as_str`].
///
/// `completed`, `failed` and `cancelled` are terminal; `stopped` is not: it is resumable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    /// Created; nothing has started yet.
    Pending,
    /// Work is under way.
    Running,
    /// Held for a person: a failure under `on_failure = pause` waits to be released or retried.
    Paused,
    /// Still running, but a target has failed (under `continue`) or was cancelled: the rollout can
    /// no longer complete and ends `failed` once everything settles.
    RunningDegraded,
    /// A stop was asked for: nothing new starts and running tasks are being asked to stop.
    Stopping,
    /// Stopped by a person with nothing left running. Resumable, so not terminal.
    Stopped,
    /// Every target got the version. Terminal.
    Completed,
    /// Gave up: a failure under `halt`, a spent failure budget, or failures once all settled. Terminal.
    Failed,
    /// Cancelled by a person. Terminal.
    Cancelled,
}

/// A rollout's state: the same vocabulary as its operations'.
pub type RolloutState = OperationState;

impl OperationState {
    /// Every state, in the order of the documentation.
    pub const ALL: [OperationState; 9] = [
        Self::Pending,
        Self::Running,
        Self::Paused,
        Self::RunningDegraded,
        Self::Stopping,
        Self::Stopped,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The name stored in the database and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::RunningDegraded => "running_degraded",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the state is final: `completed`, `failed` or `cancelled`. Nothing leaves it.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Whether a rollout in this state lets operations and tasks that have not started yet start:
    /// `pending`, `running` and `running_degraded` do; a stop, a pause and every terminal state do
    /// not.
    pub fn allows_new_work(self) -> bool {
        matches!(self, Self::Pending | Self::Running | Self::RunningDegraded)
    }

    /// Whether a person's stop is in effect: `stopping` or `stopped`.
    pub fn is_stop(self) -> bool {
        matches!(self, Self::Stopping | Self::Stopped)
    }
}

impl fmt::Display for OperationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperationState {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
            let names = Self::ALL.map(Self::as_str).join(", ");
            DomainError::invalid("state", format!("{s:?} is not one of {names}"))
        })
    }
}

/// The state of one task (one step of an operation), stored as the names of [`TaskState::as_str`].
///
/// `completed`, `failed` and `cancelled` are terminal; `stopped` is not: it is resumable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Not started.
    Pending,
    /// Handed to its executor, no result yet.
    Running,
    /// The executor reported success. Terminal.
    Completed,
    /// The executor reported failure (or timed out). Terminal.
    Failed,
    /// Stopped before it finished; runs again when its rollout is resumed.
    Stopped,
    /// Will never run. Terminal.
    Cancelled,
}

impl TaskState {
    /// Every state, in the order of the documentation.
    pub const ALL: [TaskState; 6] =
        [Self::Pending, Self::Running, Self::Completed, Self::Failed, Self::Stopped, Self::Cancelled];

    /// The name stored in the database and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the state is final: `completed`, `failed` or `cancelled`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
            let names = Self::ALL.map(Self::as_str).join(", ");
            DomainError::invalid("state", format!("{s:?} is not one of {names}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_stored_names() {
        for s in OperationState::ALL {
            assert_eq!(s.as_str().parse::<OperationState>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(serde_json::from_value::<OperationState>(s.as_str().into()).unwrap(), s);
        }
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(RolloutState::RunningDegraded.to_string(), "running_degraded");
    }

    #[test]
    fn an_unknown_state_is_refused_with_the_list_of_known_ones() {
        let err = "done".parse::<OperationState>().unwrap_err();
        assert_eq!(err.field(), "state");
        assert!(err.to_string().contains("running_degraded"), "{err}");
        assert!("paused".parse::<TaskState>().is_err());
        assert!("Running".parse::<OperationState>().is_err());
    }

    #[test]
    fn completed_failed_and_cancelled_are_terminal_and_stopped_is_not() {
        let terminal: Vec<_> = OperationState::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, [OperationState::Completed, OperationState::Failed, OperationState::Cancelled]);
        let terminal: Vec<_> = TaskState::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, [TaskState::Completed, TaskState::Failed, TaskState::Cancelled]);
    }

    #[test]
    fn only_pending_running_and_degraded_rollouts_let_new_work_start() {
        let open: Vec<_> = OperationState::ALL.into_iter().filter(|s| s.allows_new_work()).collect();
        assert_eq!(open, [OperationState::Pending, OperationState::Running, OperationState::RunningDegraded]);
    }
}
