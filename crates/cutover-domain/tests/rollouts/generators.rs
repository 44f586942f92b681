//! Random operation sets: every state, policy and release flag, in a few waves, in any order.

use cutover_domain::rollouts::{FailureBudget, MaxParallel, OnFailure, OperationRow, OperationState};
use proptest::prelude::*;
use proptest::sample::select;

pub fn state() -> impl Strategy<Value = OperationState> {
    select(OperationState::ALL.to_vec())
}

pub fn non_terminal_state() -> impl Strategy<Value = OperationState> {
    select(OperationState::ALL.into_iter().filter(|s| !s.is_terminal()).collect::<Vec<_>>())
}

pub fn terminal_state() -> impl Strategy<Value = OperationState> {
    select(OperationState::ALL.into_iter().filter(|s| s.is_terminal()).collect::<Vec<_>>())
}

pub fn on_failure() -> impl Strategy<Value = OnFailure> {
    select(OnFailure::ALL.to_vec())
}

/// Operation states weighted towards the common ones, so that sets where everything completed,
/// or nearly, come up often enough.
fn likely_state() -> impl Strategy<Value = OperationState> {
    prop_oneof![4 => Just(OperationState::Completed), 2 => Just(OperationState::Pending), 1 => state()]
}

/// Up to 40 operations in up to 4 waves, shuffled (the domain must not depend on row order).
pub fn operations(max: usize) -> impl Strategy<Value = Vec<OperationRow>> {
    prop::collection::vec((0..4u32, likely_state(), on_failure(), any::<bool>()), 0..=max)
        .prop_map(|ops| {
            (0..)
                .zip(ops)
                .map(|(position, (wave, state, on_failure, pause_released))| OperationRow {
                    position,
                    wave,
                    state,
                    on_failure,
                    pause_released,
                })
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

pub fn failure_budget() -> impl Strategy<Value = Option<FailureBudget>> {
    prop::option::of((1..6u32).prop_map(|b| FailureBudget::parse(b).unwrap()))
}

pub fn max_parallel() -> impl Strategy<Value = MaxParallel> {
    (1..8u32).prop_map(|m| MaxParallel::parse(m).unwrap())
}
