//! A rollout's policy: how many targets run at once, what a failure does, how many failures it
//! takes to give up. Fixed when the rollout is created and stored on each operation, so that
//! editing a policy never changes a rollout in flight.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{OperationRow, OperationState};
use crate::{DomainError, limits};

/// What the rollout does when an operation fails. Absent means [`OnFailure::Halt`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The rollout fails at once; nothing more starts.
    #[default]
    Halt,
    /// The other targets carry on; the rollout is `running_degraded`, then `failed` once all settle.
    Continue,
    /// The rollout is `paused` until a person releases the failure (then it counts as under
    /// `continue`) or retries it.
    Pause,
}

impl OnFailure {
    /// Every policy, in the order of the documentation.
    pub const ALL: [OnFailure; 3] = [Self::Halt, Self::Continue, Self::Pause];

    /// The name stored on each operation and accepted by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Halt => "halt",
            Self::Continue => "continue",
            Self::Pause => "pause",
        }
    }

    /// Parses an optional policy, an absent one being [`OnFailure::Halt`].
    pub fn parse_or_halt(input: Option<&str>) -> Result<Self, DomainError> {
        input.map(str::parse).transpose().map(Option::unwrap_or_default)
    }
}

impl fmt::Display for OnFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OnFailure {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| DomainError::invalid("on_failure", format!("{s:?} is not one of halt, continue, pause")))
    }
}

/// How many targets may run at once: 1 to [`limits::MAX_TARGETS`]. Also the size of a wave of a
/// new rollout (see [`RolloutPolicy::plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct MaxParallel(u32);

impl MaxParallel {
    /// One target at a time, the default: the slowest and the safest.
    pub const ONE: MaxParallel = MaxParallel(1);

    /// Checks a caller's value.
    pub fn parse(max_parallel: u32) -> Result<Self, DomainError> {
        check_count("max_parallel", max_parallel)?;
        Ok(Self(max_parallel))
    }

    /// The number of targets.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The wave of the operation at `position` in the order: waves of `max_parallel` targets.
    pub fn wave_of(self, position: u32) -> u32 {
        position / self.0
    }
}

impl Default for MaxParallel {
    fn default() -> Self {
        Self::ONE
    }
}

/// "Halt after K failed targets": once this many operations have failed, the rollout fails,
/// whatever their `on_failure`. 1 to [`limits::MAX_TARGETS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct FailureBudget(u32);

impl FailureBudget {
    /// Checks a caller's value.
    pub fn parse(failures: u32) -> Result<Self, DomainError> {
        check_count("failure_budget", failures)?;
        Ok(Self(failures))
    }

    /// The number of failed targets that fails the rollout.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Whether `failed` failed operations use up the budget.
    pub fn is_spent(self, failed: usize) -> bool {
        u32::try_from(failed).map_or(true, |failed| failed >= self.0)
    }
}

fn check_count(field: &'static str, n: u32) -> Result<(), DomainError> {
    if n == 0 || n as usize > limits::MAX_TARGETS {
        return Err(DomainError::invalid(field, format!("must be between 1 and {}", limits::MAX_TARGETS)));
    }
    Ok(())
}

/// The policy a rollout is created with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RolloutPolicy {
    /// How many targets run at once, and the size of each wave.
    pub max_parallel: MaxParallel,
    /// What a failed operation does to the rollout.
    pub on_failure: OnFailure,
    /// How many failed operations fail the rollout whatever `on_failure` says; `None`: no budget.
    pub failure_budget: Option<FailureBudget>,
}

impl RolloutPolicy {
    /// Parses a caller's policy; every part is optional and defaults to one target at a time,
    /// `halt`, and no failure budget.
    pub fn parse(
        max_parallel: Option<u32>,
        on_failure: Option<&str>,
        failure_budget: Option<u32>,
    ) -> Result<Self, DomainError> {
        Ok(Self {
            max_parallel: max_parallel.map(MaxParallel::parse).transpose()?.unwrap_or_default(),
            on_failure: OnFailure::parse_or_halt(on_failure)?,
            failure_budget: failure_budget.map(FailureBudget::parse).transpose()?,
        })
    }

    /// The operations of a new rollout over `targets` targets, in the targets' order: pending,
    /// positions `0..targets`, in waves of `max_parallel`, each with this policy's `on_failure`.
    pub fn plan(&self, targets: usize) -> Vec<OperationRow> {
        (0..)
            .take(targets)
            .map(|position| OperationRow {
                position,
                wave: self.max_parallel.wave_of(position),
                state: OperationState::Pending,
                on_failure: self.on_failure,
                pause_released: false,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_on_failure_is_halt() {
        assert_eq!(OnFailure::parse_or_halt(None).unwrap(), OnFailure::Halt);
        assert_eq!(OnFailure::default(), OnFailure::Halt);
        assert_eq!(OnFailure::parse_or_halt(Some("pause")).unwrap(), OnFailure::Pause);
        assert_eq!(OnFailure::parse_or_halt(Some("retry")).unwrap_err().field(), "on_failure");
    }

    #[test]
    fn on_failure_round_trips_through_its_names() {
        for p in OnFailure::ALL {
            assert_eq!(p.as_str().parse::<OnFailure>().unwrap(), p);
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }

    #[test]
    fn max_parallel_and_the_failure_budget_are_between_one_and_the_target_limit() {
        assert_eq!(MaxParallel::parse(0).unwrap_err().field(), "max_parallel");
        assert_eq!(FailureBudget::parse(0).unwrap_err().field(), "failure_budget");
        assert!(MaxParallel::parse(1_001).is_err());
        assert_eq!(MaxParallel::parse(1_000).unwrap().get(), 1_000);
        assert_eq!(FailureBudget::parse(3).unwrap().get(), 3);
    }

    #[test]
    fn a_failure_budget_is_spent_when_the_failures_reach_it() {
        let budget = FailureBudget::parse(2).unwrap();
        assert!(!budget.is_spent(1));
        assert!(budget.is_spent(2));
        assert!(budget.is_spent(usize::MAX));
    }

    #[test]
    fn the_default_policy_is_one_target_at_a_time_halting_with_no_budget() {
        let policy = RolloutPolicy::parse(None, None, None).unwrap();
        assert_eq!(policy, RolloutPolicy::default());
        assert_eq!((policy.max_parallel.get(), policy.on_failure, policy.failure_budget), (1, OnFailure::Halt, None));
    }

    #[test]
    fn a_plan_puts_targets_in_order_in_waves_of_max_parallel() {
        let policy = RolloutPolicy::parse(Some(2), Some("continue"), Some(1)).unwrap();
        let plan = policy.plan(5);
        let layout: Vec<_> = plan.iter().map(|op| (op.position, op.wave)).collect();
        assert_eq!(layout, [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2)]);
        assert!(plan.iter().all(|op| op.state == OperationState::Pending && op.on_failure == OnFailure::Continue));
        assert!(plan.iter().all(|op| !op.pause_released));
        assert!(policy.plan(0).is_empty());
    }
}
