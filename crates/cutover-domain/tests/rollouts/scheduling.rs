//! The scheduler over random operation sets: within `max_parallel`, waves in order, nothing during
//! a stop, and never stalled while work may start.

use cutover_domain::rollouts::{
    OnFailure, OperationRow, OperationState, RolloutRead, RolloutState, derive_state, startable,
};
use proptest::prelude::*;

use crate::generators::{failure_budget, max_parallel, operations, state};

pub fn in_flight(op: &OperationRow) -> bool {
    use OperationState::*;
    matches!(op.state, Running | RunningDegraded | Stopping) || (op.state == Paused && op.pause_released)
}

/// Whether the operation no longer holds back later waves.
pub fn settled(op: &OperationRow) -> bool {
    match op.state {
        OperationState::Completed | OperationState::Cancelled => true,
        OperationState::Failed => {
            op.on_failure == OnFailure::Continue || (op.on_failure == OnFailure::Pause && op.pause_released)
        }
        _ => false,
    }
}

proptest! {
    #[test]
    fn starts_respect_max_parallel_waves_and_position_order(
        stored in state(), ops in operations(40), max_parallel in max_parallel(), failure_budget in failure_budget(),
    ) {
        let read = RolloutRead { stored, expected_operations: ops.len(), operations: &ops, failure_budget };
        let started = startable(&read, max_parallel);
        if started.is_empty() {
            return Ok(());
        }
        let running = ops.iter().filter(|op| in_flight(op)).count();
        prop_assert!(running + started.len() <= max_parallel.get() as usize);
        prop_assert!(started.windows(2).all(|w| ops[w[0]].position < ops[w[1]].position), "in position order");
        for &i in &started {
            let op = ops[i];
            prop_assert!(matches!(op.state, OperationState::Pending | OperationState::Stopped));
            prop_assert!(
                ops.iter().filter(|other| other.wave < op.wave).all(settled),
                "started wave {} before an earlier wave settled: {:?}", op.wave, ops
            );
        }
    }

    #[test]
    fn nothing_starts_when_the_rollout_does_not_allow_new_work(
        stored in state(), ops in operations(40), max_parallel in max_parallel(),
    ) {
        let read = RolloutRead { stored, expected_operations: ops.len(), operations: &ops, failure_budget: None };
        let derived = derive_state(&read).state();
        if stored.is_stop() || stored.is_terminal() || !derived.is_some_and(RolloutState::allows_new_work) {
            prop_assert!(startable(&read, max_parallel).is_empty());
        }
    }

    #[test]
    fn nothing_starts_from_a_partial_read(
        ops in operations(40), missing in 1..5usize, max_parallel in max_parallel(),
    ) {
        let read = RolloutRead {
            stored: OperationState::Running,
            expected_operations: ops.len() + missing,
            operations: &ops,
            failure_budget: None,
        };
        prop_assert!(startable(&read, max_parallel).is_empty());
    }

    #[test]
    fn an_idle_rollout_that_allows_new_work_always_starts_something(
        stored in state(), ops in operations(40), max_parallel in max_parallel(), failure_budget in failure_budget(),
    ) {
        let read = RolloutRead { stored, expected_operations: ops.len(), operations: &ops, failure_budget };
        let open = derive_state(&read).state().is_some_and(RolloutState::allows_new_work);
        if open && !ops.iter().any(in_flight) {
            prop_assert!(!startable(&read, max_parallel).is_empty(), "stalled: {:?}", ops);
        }
    }
}
