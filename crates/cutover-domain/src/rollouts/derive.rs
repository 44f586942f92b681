//! The rollout's state as a projection of all of its operation rows.
//!
//! One pass over the rows, no sorting: 10,000 operations cost 10,000 matches.

use super::operation::Standing;
use super::{FailureBudget, OperationRow, OperationState, RolloutState};

/// Everything a rollout's state is derived from, as one read returned it.
#[derive(Debug, Clone, Copy)]
pub struct RolloutRead<'a> {
    /// The state on the rollout row when it was read; the derived state is written with
    /// compare-and-set against it.
    pub stored: RolloutState,
    /// How many operations the rollout was created with (kept on the rollout row). A read that
    /// returns another number of rows is incomplete.
    pub expected_operations: usize,
    /// The operation rows the read returned, in any order.
    pub operations: &'a [OperationRow],
    /// The rollout's failure budget, if it has one.
    pub failure_budget: Option<FailureBudget>,
}

impl RolloutRead<'_> {
    /// Whether the read holds the rollout's whole, non-empty set of operations.
    pub fn is_complete(&self) -> bool {
        self.expected_operations > 0 && self.operations.len() == self.expected_operations
    }
}

/// What a read says about the rollout's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derived {
    /// The rollout's state now; the same as the stored one when nothing changed.
    State(RolloutState),
    /// The read did not return the rollout's whole set of operations (or the rollout has none), so
    /// nothing is derived and nothing may be written: fail closed, read again.
    IncompleteRead {
        /// The number of operations the rollout has.
        expected: usize,
        /// The number of rows the read returned.
        read: usize,
    },
}

impl Derived {
    /// The derived state, if the read allowed one.
    pub fn state(self) -> Option<RolloutState> {
        match self {
            Self::State(state) => Some(state),
            Self::IncompleteRead { .. } => None,
        }
    }

    /// The state to compare-and-set over `stored`: `None` when it is unchanged or the read was
    /// incomplete.
    pub fn change_from(self, stored: RolloutState) -> Option<RolloutState> {
        self.state().filter(|&state| state != stored)
    }
}

/// Derives the rollout's state from all of its operations; the precedence, first match wins, is
/// the table of `docs/rollouts.md`:
///
/// 1. a terminal stored state stays (terminal is forever);
/// 2. an incomplete read derives nothing ([`Derived::IncompleteRead`]);
/// 3. an operation failed under `halt`, or the failure budget spent: `failed`;
/// 4. every operation completed: `completed`;
/// 5. every operation settled, none holding a pause: `failed` if any failed, else `cancelled`;
/// 6. a stop in effect: `stopping` while an operation is in flight, then `stopped`;
/// 7. an unreleased pause: `paused`;
/// 8. an operation failed (under `continue`, or a released pause) or cancelled: `running_degraded`;
/// 9. nothing started on a rollout stored `pending`: `pending`; otherwise `running`.
pub fn derive_state(read: &RolloutRead<'_>) -> Derived {
    if read.stored.is_terminal() {
        return Derived::State(read.stored);
    }
    if !read.is_complete() {
        return Derived::IncompleteRead { expected: read.expected_operations, read: read.operations.len() };
    }
    Derived::State(Tally::of(read.operations).state(read.stored, read.failure_budget))
}

/// How many operations stand where, from one pass over the rows.
#[derive(Debug, Default)]
struct Tally {
    total: usize,
    pending: usize,
    stopped: usize,
    in_flight: usize,
    holding: usize,
    completed: usize,
    cancelled: usize,
    failed_halting: usize,
    /// Every `failed` operation, whatever its policy: what the failure budget counts.
    failed: usize,
}

impl Tally {
    fn of(operations: &[OperationRow]) -> Self {
        let mut tally = Tally { total: operations.len(), ..Tally::default() };
        for op in operations {
            match op.standing() {
                Standing::Pending => tally.pending += 1,
                Standing::Stopped => tally.stopped += 1,
                Standing::InFlight => tally.in_flight += 1,
                Standing::Holding => tally.holding += 1,
                Standing::Completed => tally.completed += 1,
                Standing::Cancelled => tally.cancelled += 1,
                Standing::FailedHalting => tally.failed_halting += 1,
                Standing::FailedCarryingOn => {}
            }
            tally.failed += usize::from(op.state == OperationState::Failed);
        }
        tally
    }

    fn state(&self, stored: RolloutState, budget: Option<FailureBudget>) -> RolloutState {
        use OperationState::*;
        let unsettled = self.pending + self.stopped + self.in_flight + self.holding;
        if self.failed_halting > 0 || budget.is_some_and(|b| b.is_spent(self.failed)) {
            Failed
        } else if self.completed == self.total {
            Completed
        } else if unsettled == 0 {
            if self.failed > 0 { Failed } else { Cancelled }
        } else if stored.is_stop() {
            if self.in_flight > 0 { Stopping } else { Stopped }
        } else if self.holding > 0 {
            Paused
        } else if self.failed + self.cancelled > 0 {
            RunningDegraded
        } else if stored == Pending && self.pending == self.total {
            Pending
        } else {
            Running
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OperationState::*;
    use super::*;
    use crate::rollouts::OnFailure::{self, *};

    fn op(state: OperationState, on_failure: OnFailure) -> OperationRow {
        OperationRow { position: 0, wave: 0, state, on_failure, pause_released: false }
    }

    fn released(state: OperationState) -> OperationRow {
        OperationRow { pause_released: true, ..op(state, Pause) }
    }

    fn derive_from(stored: RolloutState, ops: &[OperationRow], budget: Option<u32>) -> Derived {
        let failure_budget = budget.map(|b| FailureBudget::parse(b).unwrap());
        derive_state(&RolloutRead { stored, expected_operations: ops.len(), operations: ops, failure_budget })
    }

    fn derive(stored: RolloutState, ops: &[OperationRow]) -> RolloutState {
        derive_from(stored, ops, None).state().unwrap()
    }

    #[test]
    fn a_failure_under_halt_fails_the_rollout_at_once() {
        assert_eq!(derive(Running, &[op(Failed, Halt), op(Running, Halt), op(Pending, Halt)]), Failed);
        assert_eq!(derive(Stopping, &[op(Failed, Halt), op(Running, Halt)]), Failed);
    }

    #[test]
    fn a_failure_under_continue_degrades_the_rollout_then_fails_it_once_all_settle() {
        assert_eq!(derive(Running, &[op(Failed, Continue), op(Running, Continue)]), RunningDegraded);
        assert_eq!(derive(Running, &[op(Failed, Continue), op(Pending, Continue)]), RunningDegraded);
        assert_eq!(derive(RunningDegraded, &[op(Failed, Continue), op(Completed, Continue)]), Failed);
    }

    #[test]
    fn a_failure_under_pause_pauses_the_rollout_until_released() {
        let held = [op(Failed, Pause), op(Running, Pause), op(Pending, Pause)];
        assert_eq!(derive(Running, &held), Paused);
        assert_eq!(derive(Paused, &[op(Failed, Pause), op(Completed, Pause)]), Paused, "a hold never settles");
        assert_eq!(derive(Running, &[released(Failed), op(Running, Pause)]), RunningDegraded);
        assert_eq!(derive(Running, &[released(Failed), op(Completed, Pause)]), Failed);
        assert_eq!(derive(Running, &[op(Paused, Continue), op(Running, Continue)]), Paused);
        assert_eq!(derive(Running, &[released(Paused), op(Completed, Continue)]), Running);
    }

    #[test]
    fn completed_only_when_every_operation_completed() {
        assert_eq!(derive(Running, &[op(Completed, Halt); 3]), Completed);
        assert_eq!(derive(Stopping, &[op(Completed, Halt); 3]), Completed, "the last one finished during a stop");
        assert_eq!(derive(Running, &[op(Completed, Halt), op(Cancelled, Halt)]), Cancelled);
        assert_eq!(derive(Running, &[op(Completed, Halt), op(Cancelled, Halt), op(Running, Halt)]), RunningDegraded);
    }

    #[test]
    fn a_stop_holds_until_resumed_and_is_stopping_while_work_is_in_flight() {
        let ops = [op(Completed, Halt), op(Stopping, Halt), op(Pending, Halt)];
        assert_eq!(derive(Stopping, &ops), Stopping);
        let ops = [op(Completed, Halt), op(Stopped, Halt), op(Pending, Halt)];
        assert_eq!(derive(Stopping, &ops), Stopped);
        assert_eq!(derive(Stopped, &ops), Stopped);
        assert_eq!(derive(Running, &ops), Running, "after a resume the stopped operation starts again");
        assert_eq!(derive(Stopped, &[op(Failed, Pause), op(Pending, Pause)]), Stopped, "a stop outranks a pause");
    }

    #[test]
    fn a_rollout_is_pending_until_something_starts_and_never_goes_back() {
        assert_eq!(derive(Pending, &[op(Pending, Halt); 2]), Pending);
        assert_eq!(derive(Pending, &[op(Running, Halt), op(Pending, Halt)]), Running);
        assert_eq!(derive(Running, &[op(Pending, Halt); 2]), Running);
    }

    #[test]
    fn a_spent_failure_budget_fails_the_rollout_whatever_the_policy() {
        let ops = [op(Failed, Continue), released(Failed), op(Running, Continue)];
        assert_eq!(derive_from(Running, &ops, Some(3)).state(), Some(RunningDegraded));
        assert_eq!(derive_from(Running, &ops, Some(2)).state(), Some(Failed));
        let held = [op(Failed, Pause), op(Running, Pause)];
        assert_eq!(derive_from(Running, &held, Some(1)).state(), Some(Failed), "unreleased failures count too");
    }

    #[test]
    fn a_terminal_stored_state_is_kept_whatever_the_rows_say() {
        for stored in [Completed, Failed, Cancelled] {
            assert_eq!(derive(stored, &[op(Running, Halt)]), stored);
            assert_eq!(derive_from(stored, &[], None), Derived::State(stored));
        }
    }

    #[test]
    fn a_partial_or_empty_read_derives_nothing() {
        let ops = [op(Completed, Halt); 2];
        let read = RolloutRead { stored: Running, expected_operations: 3, operations: &ops, failure_budget: None };
        assert_eq!(derive_state(&read), Derived::IncompleteRead { expected: 3, read: 2 });
        let read = RolloutRead { expected_operations: 1, ..read };
        assert!(derive_state(&read).state().is_none(), "more rows than the rollout has is not a full read");
        assert_eq!(derive_from(Running, &[], None), Derived::IncompleteRead { expected: 0, read: 0 });
    }

    #[test]
    fn only_a_changed_state_is_written() {
        assert_eq!(Derived::State(Running).change_from(Running), None);
        assert_eq!(Derived::State(Completed).change_from(Running), Some(Completed));
        assert_eq!(Derived::IncompleteRead { expected: 2, read: 1 }.change_from(Running), None);
    }
}
