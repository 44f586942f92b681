//! What a person may do to a rollout in flight, and what it does to the rollout and its operations.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::operation::Standing;
use super::{OperationRow, OperationState, RolloutState};
use crate::DomainError;

/// An action on a rollout, taken by a person through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutControl {
    /// No further operation or task starts, under every policy; running tasks are asked to stop.
    Stop,
    /// Lifts a stop: stopped and pending operations start again.
    Resume,
    /// Ends the rollout for good: nothing more starts, running tasks are asked to stop, the pin
    /// does not move.
    Cancel,
    /// Lets a paused rollout go on past its failures, which then count as under `continue`.
    Release,
    /// Runs the failed operations again, from the start of their first unfinished task.
    Retry,
}

impl RolloutControl {
    /// Every control, in the order of the documentation.
    pub const ALL: [RolloutControl; 5] = [Self::Stop, Self::Resume, Self::Cancel, Self::Release, Self::Retry];

    /// The name used by the API (`POST /api/v1/rollouts/{id}/{control}`) and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Resume => "resume",
            Self::Cancel => "cancel",
            Self::Release => "release",
            Self::Retry => "retry",
        }
    }

    /// The rollout's state right after this control, or why the current state does not allow it.
    ///
    /// | control | allowed from | leads to |
    /// |---|---|---|
    /// | stop | pending, running, running_degraded, paused | stopping |
    /// | resume | stopped | running |
    /// | cancel | any state but a terminal one | cancelled |
    /// | release | paused | running |
    /// | retry | running_degraded, paused | running |
    ///
    /// The state is provisional where the rows decide: the next derivation turns `stopping` into
    /// `stopped` once nothing is in flight, and `running` into `running_degraded` or `paused` when
    /// failures remain.
    pub fn apply(self, state: RolloutState) -> Result<RolloutState, IllegalControl> {
        use OperationState::*;
        let next = match (self, state) {
            (Self::Stop, Pending | Running | RunningDegraded | Paused) => Stopping,
            (Self::Resume, Stopped) => Running,
            (Self::Cancel, state) if !state.is_terminal() => Cancelled,
            (Self::Release, Paused) => Running,
            (Self::Retry, RunningDegraded | Paused) => Running,
            _ => return Err(IllegalControl { control: self, state }),
        };
        Ok(next)
    }

    /// The operation row after this control, written in the same transaction as the rollout's new
    /// state; `None` when the control leaves it as it is. Only meaningful once
    /// [`RolloutControl::apply`] has allowed the control.
    ///
    /// - stop: `running` and `running_degraded` become `stopping` (the engine asks their tasks to
    ///   stop); `pending` ones stay pending and simply do not start.
    /// - resume: nothing; the scheduler starts `stopped` and `pending` operations again.
    /// - cancel: `pending`, `stopped` and `paused` become `cancelled`; `running` and
    ///   `running_degraded` become `stopping`.
    /// - release: an operation holding a pause is marked released.
    /// - retry: `failed` becomes `pending`, its release cleared.
    pub fn operation_change(self, op: &OperationRow) -> Option<OperationRow> {
        use OperationState::*;
        let changed = |state, pause_released| Some(OperationRow { state, pause_released, ..*op });
        match (self, op.state) {
            (Self::Stop | Self::Cancel, Running | RunningDegraded) => changed(Stopping, op.pause_released),
            (Self::Cancel, Pending | Stopped | Paused) => changed(Cancelled, op.pause_released),
            (Self::Release, _) if op.standing() == Standing::Holding => changed(op.state, true),
            (Self::Retry, Failed) => changed(Pending, false),
            _ => None,
        }
    }
}

impl fmt::Display for RolloutControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RolloutControl {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
            DomainError::invalid("control", format!("{s:?} is not one of stop, resume, cancel, release, retry"))
        })
    }
}

/// A control that the rollout's current state does not allow: a conflict (409), not bad input,
/// which is why it is not a [`DomainError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {control} a rollout that is {state}")]
pub struct IllegalControl {
    /// The control that was refused.
    pub control: RolloutControl,
    /// The rollout's state when it was refused.
    pub state: RolloutState,
}

/// The state an operation in `stopping` ends in once its tasks have halted: `cancelled` when its
/// rollout is over (cancelled, or terminal for another reason), else `stopped`, to run again after
/// a resume.
pub fn halted_operation_state(rollout: RolloutState) -> OperationState {
    if rollout.is_terminal() { OperationState::Cancelled } else { OperationState::Stopped }
}

#[cfg(test)]
mod tests {
    use super::OperationState::*;
    use super::RolloutControl::*;
    use super::*;
    use crate::rollouts::OnFailure;

    /// Every allowed (control, from) pair and where it leads; every other pair is refused.
    const ALLOWED: [(RolloutControl, RolloutState, RolloutState); 14] = [
        (Stop, Pending, Stopping),
        (Stop, Running, Stopping),
        (Stop, RunningDegraded, Stopping),
        (Stop, Paused, Stopping),
        (Resume, Stopped, Running),
        (Cancel, Pending, Cancelled),
        (Cancel, Running, Cancelled),
        (Cancel, Paused, Cancelled),
        (Cancel, RunningDegraded, Cancelled),
        (Cancel, Stopping, Cancelled),
        (Cancel, Stopped, Cancelled),
        (Release, Paused, Running),
        (Retry, RunningDegraded, Running),
        (Retry, Paused, Running),
    ];

    #[test]
    fn the_control_table_is_exactly_the_documented_one() {
        for control in RolloutControl::ALL {
            for state in OperationState::ALL {
                let expected = ALLOWED.iter().find(|(c, s, _)| (*c, *s) == (control, state)).map(|(_, _, next)| *next);
                match expected {
                    Some(next) => assert_eq!(control.apply(state), Ok(next), "{control} from {state}"),
                    None => assert_eq!(control.apply(state), Err(IllegalControl { control, state })),
                }
            }
        }
    }

    #[test]
    fn no_control_leaves_a_terminal_state() {
        for control in RolloutControl::ALL {
            for state in [Completed, Failed, Cancelled] {
                assert!(control.apply(state).is_err(), "{control} from {state}");
            }
        }
    }

    #[test]
    fn an_illegal_control_names_the_current_state() {
        assert_eq!(Resume.apply(Running).unwrap_err().to_string(), "cannot resume a rollout that is running");
        assert_eq!(Retry.apply(Failed).unwrap_err().to_string(), "cannot retry a rollout that is failed");
        assert_eq!(Release.apply(Stopped).unwrap_err().to_string(), "cannot release a rollout that is stopped");
    }

    #[test]
    fn controls_round_trip_through_their_names() {
        for c in RolloutControl::ALL {
            assert_eq!(c.as_str().parse::<RolloutControl>().unwrap(), c);
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        assert_eq!("pause".parse::<RolloutControl>().unwrap_err().field(), "control");
    }

    fn op(state: OperationState, on_failure: OnFailure, pause_released: bool) -> OperationRow {
        OperationRow { position: 4, wave: 2, state, on_failure, pause_released }
    }

    fn state_after(control: RolloutControl, state: OperationState) -> OperationState {
        control.operation_change(&op(state, OnFailure::Continue, false)).map_or(state, |o| o.state)
    }

    #[test]
    fn stop_asks_running_operations_to_stop_and_leaves_the_rest() {
        let after: Vec<_> = OperationState::ALL.into_iter().map(|s| state_after(Stop, s)).collect();
        let expected = [Pending, Stopping, Paused, Stopping, Stopping, Stopped, Completed, Failed, Cancelled];
        assert_eq!(after, expected);
        assert!(OperationState::ALL.into_iter().all(|s| state_after(Resume, s) == s));
    }

    #[test]
    fn cancel_cancels_what_is_not_running_and_stops_what_is() {
        let after: Vec<_> = OperationState::ALL.into_iter().map(|s| state_after(Cancel, s)).collect();
        let expected = [Cancelled, Stopping, Cancelled, Stopping, Stopping, Cancelled, Completed, Failed, Cancelled];
        assert_eq!(after, expected);
    }

    #[test]
    fn release_marks_only_held_operations_released() {
        let held = op(Failed, OnFailure::Pause, false);
        assert_eq!(Release.operation_change(&held), Some(OperationRow { pause_released: true, ..held }));
        assert_eq!(Release.operation_change(&op(Failed, OnFailure::Continue, false)), None);
        assert_eq!(Release.operation_change(&op(Failed, OnFailure::Pause, true)), None);
        assert!(Release.operation_change(&op(Paused, OnFailure::Halt, false)).unwrap().pause_released);
    }

    #[test]
    fn retry_sends_failed_operations_back_to_pending_with_their_release_cleared() {
        let retried = Retry.operation_change(&op(Failed, OnFailure::Pause, true)).unwrap();
        assert_eq!(retried, op(Pending, OnFailure::Pause, false));
        assert_eq!(Retry.operation_change(&op(Completed, OnFailure::Pause, false)), None);
    }

    #[test]
    fn a_halted_operation_is_stopped_unless_its_rollout_is_over() {
        assert_eq!(halted_operation_state(Stopping), Stopped);
        assert_eq!(halted_operation_state(Cancelled), Cancelled);
        assert_eq!(halted_operation_state(Failed), Cancelled);
    }
}
