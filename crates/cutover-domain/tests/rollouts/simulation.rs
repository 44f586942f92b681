//! Whole rollouts, driven the way the engine drives them: derive the state, apply a person's
//! control, start what the scheduler allows, let one operation finish; until the state is terminal.

use cutover_domain::rollouts::{
    FailureBudget, MaxParallel, OperationRow, OperationState, RolloutControl, RolloutPolicy, RolloutRead, RolloutState,
    derive_state, halted_operation_state, startable,
};
use proptest::prelude::*;

use crate::generators::{failure_budget, max_parallel, on_failure};
use crate::scheduling::{in_flight, settled};

/// A rollout's rows, and the random choices of the people and executors around it.
struct Rollout {
    stored: RolloutState,
    ops: Vec<OperationRow>,
    max_parallel: MaxParallel,
    failure_budget: Option<FailureBudget>,
    choices: Vec<u16>,
    next_choice: usize,
    retries_left: u32,
    stops_left: u32,
}

impl Rollout {
    fn new(targets: usize, policy: RolloutPolicy, choices: Vec<u16>) -> Self {
        Self {
            stored: OperationState::Pending,
            ops: policy.plan(targets),
            max_parallel: policy.max_parallel,
            failure_budget: policy.failure_budget,
            choices,
            next_choice: 0,
            retries_left: 3,
            stops_left: 2,
        }
    }

    fn choice(&mut self) -> u16 {
        let choice = self.choices.get(self.next_choice % self.choices.len().max(1)).copied().unwrap_or(1);
        self.next_choice += 1;
        choice
    }

    fn read(&self) -> RolloutRead<'_> {
        RolloutRead {
            stored: self.stored,
            expected_operations: self.ops.len(),
            operations: &self.ops,
            failure_budget: self.failure_budget,
        }
    }

    /// What the store does for `POST …/{control}`: one transaction over the rollout and its rows.
    fn control(&mut self, control: RolloutControl) {
        self.stored = control.apply(self.stored).unwrap();
        for op in &mut self.ops {
            if let Some(changed) = control.operation_change(op) {
                *op = changed;
            }
        }
    }

    /// What the reconciler does: derive, and compare-and-set when the state changed.
    fn reconcile(&mut self) {
        if let Some(next) = derive_state(&self.read()).change_from(self.stored) {
            self.stored = next;
        }
    }

    /// Starts what the scheduler allows, checking the scheduler's promises; returns how many started.
    fn start(&mut self) -> Result<usize, TestCaseError> {
        let started = startable(&self.read(), self.max_parallel);
        prop_assert!(started.is_empty() || self.stored.allows_new_work());
        for &i in &started {
            let wave = self.ops[i].wave;
            prop_assert!(self.ops.iter().filter(|op| op.wave < wave).all(settled), "wave {wave} started early");
            self.ops[i].state = OperationState::Running;
        }
        let running = self.ops.iter().filter(|op| in_flight(op)).count();
        prop_assert!(running <= self.max_parallel.get() as usize, "{running} in flight");
        Ok(started.len())
    }

    /// One step of a person or an executor; `Ok(false)` once the rollout is over.
    fn step(&mut self) -> Result<bool, TestCaseError> {
        self.reconcile();
        let choice = self.choice();
        match self.stored {
            state if state.is_terminal() => return Ok(false),
            OperationState::Paused if self.retries_left > 0 && choice % 2 == 0 => {
                self.retries_left -= 1;
                self.control(RolloutControl::Retry);
            }
            OperationState::Paused => self.control(RolloutControl::Release),
            OperationState::Stopped => self.control(RolloutControl::Resume),
            _ if choice % 97 == 0 => self.control(RolloutControl::Cancel),
            _ if choice % 31 == 0 && self.stops_left > 0 && RolloutControl::Stop.apply(self.stored).is_ok() => {
                self.stops_left -= 1;
                self.control(RolloutControl::Stop);
            }
            OperationState::RunningDegraded if choice % 7 == 0 && self.retries_left > 0 => {
                self.retries_left -= 1;
                self.control(RolloutControl::Retry);
            }
            _ => {
                self.start()?;
                let flying: Vec<usize> = (0..self.ops.len()).filter(|&i| in_flight(&self.ops[i])).collect();
                prop_assert!(!flying.is_empty(), "stalled in {} with {:?}", self.stored, self.ops);
                let op = &mut self.ops[flying[usize::from(choice) % flying.len()]];
                op.state = match op.state {
                    OperationState::Stopping => halted_operation_state(self.stored),
                    _ if choice % 5 == 0 => OperationState::Failed,
                    _ => OperationState::Completed,
                };
            }
        }
        Ok(true)
    }
}

#[test]
fn a_thousand_targets_fifty_at_a_time_complete_in_twenty_waves() {
    let policy = RolloutPolicy::parse(Some(50), None, None).unwrap();
    let mut rollout = Rollout::new(1_000, policy, vec![1]);
    let mut rounds = 0;
    loop {
        rollout.reconcile();
        if rollout.stored.is_terminal() {
            break;
        }
        let started = rollout.start().unwrap();
        assert_eq!(started, 50, "each wave starts whole");
        rounds += 1;
        rollout.ops.iter_mut().filter(|op| op.state == OperationState::Running).for_each(|op| {
            op.state = OperationState::Completed;
        });
    }
    assert_eq!((rollout.stored, rounds), (OperationState::Completed, 20));
}

proptest! {
    #[test]
    fn every_simulated_rollout_ends_terminal_and_completes_only_when_every_target_did(
        targets in 1..30usize,
        max_parallel in max_parallel(),
        on_failure in on_failure(),
        failure_budget in failure_budget(),
        choices in prop::collection::vec(any::<u16>(), 1..64),
    ) {
        let policy = RolloutPolicy { max_parallel, on_failure, failure_budget };
        let mut rollout = Rollout::new(targets, policy, choices);
        let mut steps = 0;
        while rollout.step()? {
            steps += 1;
            prop_assert!(steps < 10_000, "no end in sight: {} {:?}", rollout.stored, rollout.ops);
        }
        let terminal = rollout.stored;
        let all_completed = rollout.ops.iter().all(|op| op.state == OperationState::Completed);
        prop_assert_eq!(terminal == OperationState::Completed, all_completed, "{:?}", rollout.ops);
        rollout.reconcile();
        prop_assert_eq!(rollout.stored, terminal, "terminal is forever");
    }
}
