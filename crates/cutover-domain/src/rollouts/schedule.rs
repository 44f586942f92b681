//! Which operations may start now: waves in order, at most `max_parallel` at once.

use super::operation::Standing;
use super::{MaxParallel, RolloutRead, derive_state};

/// The operations that may start now, as indices into `read.operations`, in position order.
///
/// - Nothing starts unless the read is complete and the derived state lets new work start
///   (`pending`, `running`, `running_degraded`): never while stopping, stopped, paused or
///   terminal, and never from an incomplete read, which could hide running operations.
/// - Only the current wave starts: the lowest wave with an operation that has not settled
///   (settled: `completed`, `cancelled`, or `failed` under `continue` or a released pause).
/// - At most `max_parallel` operations are in flight, counting those already running anywhere.
/// - `pending` operations start, and `stopped` ones start again (after a resume).
///
/// Linear in the number of operations; only the chosen ones (at most `max_parallel`) are sorted.
pub fn startable(read: &RolloutRead<'_>, max_parallel: MaxParallel) -> Vec<usize> {
    if !derive_state(read).state().is_some_and(|state| state.allows_new_work()) {
        return Vec::new();
    }
    let mut in_flight = 0usize;
    let mut current_wave = None;
    for op in read.operations {
        let standing = op.standing();
        in_flight += usize::from(standing == Standing::InFlight);
        if !standing.lets_next_wave_start() {
            current_wave = Some(current_wave.map_or(op.wave, |wave: u32| wave.min(op.wave)));
        }
    }
    let Some(current_wave) = current_wave else { return Vec::new() };
    let slots = (max_parallel.get() as usize).saturating_sub(in_flight);
    if slots == 0 {
        return Vec::new();
    }
    let mut chosen: Vec<usize> = read
        .operations
        .iter()
        .enumerate()
        .filter(|(_, op)| op.wave == current_wave && op.standing().may_start())
        .map(|(index, _)| index)
        .collect();
    let order = |&index: &usize| (read.operations[index].position, index);
    if chosen.len() > slots {
        chosen.select_nth_unstable_by_key(slots, order);
        chosen.truncate(slots);
    }
    chosen.sort_unstable_by_key(order);
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollouts::OnFailure::{self, *};
    use crate::rollouts::OperationState::{self, *};
    use crate::rollouts::{OperationRow, RolloutState};

    fn op(position: u32, wave: u32, state: OperationState, on_failure: OnFailure) -> OperationRow {
        OperationRow { position, wave, state, on_failure, pause_released: false }
    }

    fn start(stored: RolloutState, ops: &[OperationRow], max_parallel: u32) -> Vec<u32> {
        let read = RolloutRead { stored, expected_operations: ops.len(), operations: ops, failure_budget: None };
        startable(&read, MaxParallel::parse(max_parallel).unwrap()).into_iter().map(|i| ops[i].position).collect()
    }

    #[test]
    fn the_first_wave_starts_in_position_order_up_to_max_parallel() {
        let ops = [op(3, 0, Pending, Halt), op(0, 0, Pending, Halt), op(2, 0, Pending, Halt), op(1, 0, Pending, Halt)];
        assert_eq!(start(Pending, &ops, 2), [0, 1]);
        assert_eq!(start(Pending, &ops, 10), [0, 1, 2, 3]);
    }

    #[test]
    fn running_operations_take_their_slots() {
        let ops = [op(0, 0, Running, Halt), op(1, 0, Pending, Halt), op(2, 0, Pending, Halt)];
        assert_eq!(start(Running, &ops, 2), [1]);
        assert_eq!(start(Running, &ops, 1), Vec::<u32>::new());
    }

    #[test]
    fn a_later_wave_waits_for_every_operation_of_the_earlier_ones() {
        let ops = [op(0, 0, Completed, Halt), op(1, 0, Running, Halt), op(2, 1, Pending, Halt)];
        assert_eq!(start(Running, &ops, 5), Vec::<u32>::new());
        let ops = [op(0, 0, Completed, Halt), op(1, 0, Completed, Halt), op(2, 1, Pending, Halt)];
        assert_eq!(start(Running, &ops, 5), [2]);
    }

    #[test]
    fn a_failure_under_continue_lets_the_next_wave_start_but_an_unreleased_pause_does_not() {
        let ops = [op(0, 0, Failed, Continue), op(1, 1, Pending, Continue)];
        assert_eq!(start(RunningDegraded, &ops, 1), [1]);
        let ops = [op(0, 0, Failed, Pause), op(1, 1, Pending, Pause)];
        assert_eq!(start(Running, &ops, 1), Vec::<u32>::new());
        let ops = [OperationRow { pause_released: true, ..op(0, 0, Failed, Pause) }, op(1, 1, Pending, Pause)];
        assert_eq!(start(Running, &ops, 1), [1]);
    }

    #[test]
    fn nothing_starts_during_a_stop_and_stopped_operations_start_again_after_it() {
        let ops = [op(0, 0, Stopped, Continue), op(1, 0, Pending, Continue)];
        assert_eq!(start(Stopped, &ops, 2), Vec::<u32>::new());
        assert_eq!(start(Stopping, &ops, 2), Vec::<u32>::new());
        assert_eq!(start(Running, &ops, 2), [0, 1]);
    }

    #[test]
    fn nothing_starts_once_the_rollout_is_terminal_or_the_read_incomplete() {
        let ops = [op(0, 0, Failed, Halt), op(1, 0, Pending, Halt)];
        assert_eq!(start(Running, &ops, 2), Vec::<u32>::new());
        assert_eq!(start(Cancelled, &[op(0, 0, Pending, Halt)], 2), Vec::<u32>::new());
        let ops = [op(0, 0, Pending, Halt)];
        let read = RolloutRead { stored: Running, expected_operations: 2, operations: &ops, failure_budget: None };
        assert!(startable(&read, MaxParallel::ONE).is_empty());
    }

    #[test]
    fn a_retried_operation_of_an_earlier_wave_goes_first() {
        let ops = [op(0, 0, Pending, Continue), op(1, 1, Running, Continue), op(2, 1, Pending, Continue)];
        assert_eq!(start(Running, &ops, 2), [0]);
    }
}
