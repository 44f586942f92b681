//! Rollouts checked through the public API: the state projection and the scheduler over random
//! operation sets, and whole rollouts simulated from plan to terminal state.

mod derivation;
mod generators;
mod scheduling;
mod simulation;
