//! One operation (one deployment target) as the derivation and the scheduler see it.

use serde::{Deserialize, Serialize};

use super::{OnFailure, OperationState};

/// What the domain needs of one operation row: where it stands in the order, its state, and the
/// failure policy it was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OperationRow {
    /// Its place in the rollout's order, from 0; unique within the rollout.
    pub position: u32,
    /// Its wave: a wave starts only once every earlier wave has settled.
    pub wave: u32,
    /// Its state.
    pub state: OperationState,
    /// What its failure does to the rollout.
    pub on_failure: OnFailure,
    /// Whether a person has released the pause this operation holds (see [`OnFailure::Pause`]).
    /// Reset by a retry.
    pub pause_released: bool,
}

/// Where one operation leaves its rollout: the classes the derivation and the scheduler reason
/// about, so that both read a row the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// `pending`: may be started.
    Pending,
    /// `stopped`: may be started again once the stop is lifted.
    Stopped,
    /// Work under way: `running`, `running_degraded`, `stopping`, or a released `paused`.
    InFlight,
    /// Holds the rollout paused: an unreleased `paused`, or a `failed` under `pause` not released.
    Holding,
    /// `completed`.
    Completed,
    /// `cancelled`: will never run, and its target will not get the version.
    Cancelled,
    /// `failed` under `halt`: fails the rollout.
    FailedHalting,
    /// `failed` under `continue`, or under `pause` once released: the others carry on.
    FailedCarryingOn,
}

impl Standing {
    /// Whether the operation no longer holds back the next wave.
    pub(crate) fn lets_next_wave_start(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::FailedCarryingOn)
    }

    /// Whether the scheduler may start the operation.
    pub(crate) fn may_start(self) -> bool {
        matches!(self, Self::Pending | Self::Stopped)
    }
}

impl OperationRow {
    /// How this operation weighs on its rollout.
    pub(crate) fn standing(&self) -> Standing {
        use OperationState::*;
        match (self.state, self.on_failure) {
            (Pending, _) => Standing::Pending,
            (Stopped, _) => Standing::Stopped,
            (Running | RunningDegraded | Stopping, _) => Standing::InFlight,
            (Paused, _) if self.pause_released => Standing::InFlight,
            (Paused, _) => Standing::Holding,
            (Completed, _) => Standing::Completed,
            (Cancelled, _) => Standing::Cancelled,
            (Failed, OnFailure::Halt) => Standing::FailedHalting,
            (Failed, OnFailure::Pause) if !self.pause_released => Standing::Holding,
            (Failed, OnFailure::Continue | OnFailure::Pause) => Standing::FailedCarryingOn,
        }
    }
}
