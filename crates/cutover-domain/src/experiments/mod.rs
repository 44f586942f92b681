//! Experiments: split an environment's traffic between versions of an artifact, deterministically
//! per user, and judge the outcome.
//!
//! - [`bucketing`]: GrowthBook's v2 bucketing, and [`bucketing::assign`] on top of it.
//! - [`NewExperiment`]: what a new experiment must satisfy (variants, weights, coverage, metrics).
//! - [`Lifecycle`]: `created → running ⇄ paused → completed`, changed only by actions.
//! - [`stats`]: z-test, Welch's t-test and the sample-ratio-mismatch check.

pub mod bucketing;
mod definition;
mod lifecycle;
pub mod stats;

pub use definition::{
    Coverage, ExperimentDraft, ExperimentName, ExperimentSeed, Hypothesis, MAX_GUARDRAIL_METRICS, MAX_VARIANTS,
    MIN_VARIANTS, NewExperiment, Variant, Variants,
};
pub use lifecycle::{ExperimentAction, ExperimentStatus, IllegalTransition, Lifecycle};

/// How a variant is named in answers and results: `control`, `treatment-1`, `treatment-2`…
pub fn variant_key(index: usize) -> String {
    if index == 0 { "control".to_owned() } else { format!("treatment-{index}") }
}
