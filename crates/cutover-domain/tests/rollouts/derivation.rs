//! The rollout state projection: fail closed, monotone, and `completed` only when it is true.

use cutover_domain::rollouts::{
    Derived, OnFailure, OperationRow, OperationState, RolloutRead, RolloutState, derive_state,
};
use proptest::prelude::*;

use crate::generators::{failure_budget, non_terminal_state, operations, state, terminal_state};

fn complete(stored: RolloutState, operations: &[OperationRow]) -> RolloutRead<'_> {
    RolloutRead { stored, expected_operations: operations.len(), operations, failure_budget: None }
}

#[test]
fn ten_thousand_operations_are_derived_from_every_row() {
    let mut ops: Vec<OperationRow> = (0..10_000)
        .map(|position| OperationRow {
            position,
            wave: position / 50,
            state: OperationState::Completed,
            on_failure: OnFailure::Continue,
            pause_released: false,
        })
        .collect();
    assert_eq!(derive_state(&complete(OperationState::Running, &ops)), Derived::State(OperationState::Completed));
    ops[9_999].state = OperationState::Running;
    assert_eq!(derive_state(&complete(OperationState::Running, &ops)), Derived::State(OperationState::Running));
    ops[5_000].state = OperationState::Failed;
    let derived = derive_state(&complete(OperationState::Running, &ops));
    assert_eq!(derived, Derived::State(OperationState::RunningDegraded));
}

proptest! {
    #[test]
    fn never_completed_with_an_operation_that_did_not_complete(
        stored in non_terminal_state(), ops in operations(40), failure_budget in failure_budget(),
    ) {
        let read = RolloutRead { failure_budget, ..complete(stored, &ops) };
        if derive_state(&read) == Derived::State(OperationState::Completed) {
            prop_assert!(!ops.is_empty());
            prop_assert!(ops.iter().all(|op| op.state == OperationState::Completed), "{:?}", ops);
        }
    }

    #[test]
    fn every_operation_completed_is_completed(stored in non_terminal_state(), n in 1..40usize) {
        let ops: Vec<_> = (0..n as u32)
            .map(|position| OperationRow {
                position,
                wave: 0,
                state: OperationState::Completed,
                on_failure: OnFailure::Halt,
                pause_released: false,
            })
            .collect();
        prop_assert_eq!(derive_state(&complete(stored, &ops)), Derived::State(OperationState::Completed));
    }

    #[test]
    fn never_terminal_from_a_partial_or_empty_read(
        stored in non_terminal_state(), ops in operations(40), expected in 0..45usize, failure_budget in failure_budget(),
    ) {
        let read = RolloutRead { stored, expected_operations: expected, operations: &ops, failure_budget };
        let derived = derive_state(&read);
        if expected == 0 || expected != ops.len() {
            prop_assert_eq!(derived, Derived::IncompleteRead { expected, read: ops.len() });
        }
        if derived.state().is_some_and(RolloutState::is_terminal) {
            prop_assert!(read.is_complete());
        }
        let empty = RolloutRead { operations: &[], ..read };
        prop_assert!(!derive_state(&empty).state().is_some_and(RolloutState::is_terminal));
    }

    #[test]
    fn a_terminal_rollout_never_leaves_its_state(
        stored in terminal_state(), ops in operations(40), expected in 0..45usize, failure_budget in failure_budget(),
    ) {
        let read = RolloutRead { stored, expected_operations: expected, operations: &ops, failure_budget };
        prop_assert_eq!(derive_state(&read), Derived::State(stored));
        prop_assert_eq!(derive_state(&read).change_from(stored), None);
    }

    #[test]
    fn a_failure_under_halt_or_a_spent_budget_always_fails_the_rollout(
        stored in non_terminal_state(), mut ops in operations(40), failure_budget in failure_budget(),
    ) {
        let failed = ops.iter().filter(|op| op.state == OperationState::Failed).count();
        let halting = ops.iter().any(|op| op.state == OperationState::Failed && op.on_failure == OnFailure::Halt);
        let spent = failure_budget.is_some_and(|b| b.is_spent(failed));
        let derived = derive_state(&RolloutRead { failure_budget, ..complete(stored, &ops) });
        if !ops.is_empty() && (halting || spent) {
            prop_assert_eq!(derived, Derived::State(OperationState::Failed));
        }
        ops.reverse();
        let reversed = RolloutRead { failure_budget, ..complete(stored, &ops) };
        prop_assert_eq!(derive_state(&reversed), derived, "row order must not matter");
    }

    #[test]
    fn a_stop_holds_unless_the_outcome_is_decided(stored in state(), ops in operations(40)) {
        prop_assume!(stored.is_stop());
        if let Some(derived) = derive_state(&complete(stored, &ops)).state() {
            prop_assert!(derived.is_stop() || derived.is_terminal(), "{stored} became {derived}");
        }
    }

    #[test]
    fn an_unreleased_pause_never_settles_into_a_terminal_state_by_itself(
        stored in non_terminal_state(), ops in operations(40),
    ) {
        let holding = ops.iter().any(|op| {
            let held_failure = op.state == OperationState::Failed && op.on_failure == OnFailure::Pause;
            (held_failure || op.state == OperationState::Paused) && !op.pause_released
        });
        let halting = ops.iter().any(|op| op.state == OperationState::Failed && op.on_failure == OnFailure::Halt);
        let derived = derive_state(&complete(stored, &ops));
        if holding && !halting {
            prop_assert!(!derived.state().is_some_and(RolloutState::is_terminal), "{:?} derived {:?}", ops, derived);
        }
    }
}
