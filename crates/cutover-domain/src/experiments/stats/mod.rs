//! The numbers behind an experiment's results: a two-proportion z-test for conversion rates,
//! Welch's t-test for means, a sample-ratio-mismatch check, and verdicts with the sample size an
//! inconclusive comparison needs.
//!
//! Distributions come from `statrs`. Every function takes plain counts or summaries (never raw
//! events), so results for millions of exposures cost the same as for ten. Degenerate inputs never
//! panic and never produce NaN: a whole comparison is `None` when an arm cannot be summarised at
//! all, and each statistic is `None` on its own when the variance it needs is zero.

mod means;
mod power;
mod proportions;
mod sample_ratio;

use statrs::distribution::{ContinuousCDF, Normal};

pub use means::{MeanSummary, welch_t_test};
pub use power::{Direction, POWER, Verdict, users_per_arm_for_means, users_per_arm_for_rates, verdict};
pub use proportions::{ConversionCounts, two_proportion_z_test};
pub use sample_ratio::{SAMPLE_RATIO_MISMATCH_P, SampleRatio, sample_ratio_mismatch};

/// The confidence level of every interval reported.
pub const CONFIDENCE: f64 = 0.95;

/// A two-sided confidence interval at [`CONFIDENCE`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    fn around(centre: f64, half_width: f64) -> Self {
        Self { low: centre - half_width, high: centre + half_width }
    }
}

/// A variant measured against the control.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// The control's conversion rate or mean.
    pub control: f64,
    /// The variant's conversion rate or mean.
    pub treatment: f64,
    /// `treatment - control`.
    pub absolute_lift: f64,
    /// `(treatment - control) / control`; `None` when the control is 0.
    pub relative_lift: Option<f64>,
    /// Confidence interval of the absolute lift; `None` when its standard error is 0 (every arm
    /// all-or-nothing, or without variance), where no interval can be drawn.
    pub interval: Option<Interval>,
    /// The z or t statistic; `None` with the p-value.
    pub statistic: Option<f64>,
    /// Two-sided p-value of "no difference"; `None` when the test's standard error is 0.
    pub p_value: Option<f64>,
    /// Welch–Satterthwaite degrees of freedom of a t-test; `None` for a z-test.
    pub degrees_of_freedom: Option<f64>,
}

impl Comparison {
    fn lifts(control: f64, treatment: f64) -> (f64, Option<f64>) {
        let absolute = treatment - control;
        (absolute, (control != 0.0).then(|| absolute / control))
    }
}

/// The two-sided p-value of a standard normal statistic, from the upper tail (not `1 - cdf`) so
/// that tiny p-values keep their precision.
fn normal_two_sided_p(z: f64) -> f64 {
    (2.0 * Normal::standard().sf(z.abs())).min(1.0)
}

/// The critical value for a two-sided interval at [`CONFIDENCE`] under the standard normal.
fn normal_critical_value() -> f64 {
    Normal::standard().inverse_cdf(1.0 - (1.0 - CONFIDENCE) / 2.0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn finite(c: &Comparison) -> bool {
        let interval = c.interval.is_none_or(|i| i.low.is_finite() && i.high.is_finite() && i.low <= i.high);
        [c.control, c.treatment, c.absolute_lift].iter().all(|v| v.is_finite())
            && c.relative_lift.is_none_or(f64::is_finite)
            && c.statistic.is_none_or(|s| !s.is_nan())
            && c.p_value.is_none_or(|p| (0.0..=1.0).contains(&p))
            && c.degrees_of_freedom.is_none_or(|df| df.is_finite() && df >= 1.0)
            && interval
    }

    fn counts() -> impl Strategy<Value = ConversionCounts> {
        (0u64..100_000_000, 0.0f64..=1.0)
            .prop_map(|(exposures, rate)| ConversionCounts { exposures, conversions: (exposures as f64 * rate) as u64 })
    }

    fn summary() -> impl Strategy<Value = MeanSummary> {
        let variance = prop_oneof![Just(0.0), 0.0f64..1e12, 1e-300f64..1e-200];
        (0u64..100_000_000, -1e9f64..1e9, variance).prop_map(|(n, mean, variance)| MeanSummary { n, mean, variance })
    }

    proptest! {
        #[test]
        fn z_tests_never_produce_nan(control in counts(), treatment in counts()) {
            if let Some(c) = two_proportion_z_test(control, treatment) {
                prop_assert!(finite(&c), "{c:?}");
            }
        }

        #[test]
        fn welch_tests_never_produce_nan(control in summary(), treatment in summary()) {
            if let Some(c) = welch_t_test(control, treatment) {
                prop_assert!(finite(&c), "{c:?}");
            }
        }

        #[test]
        fn sample_ratio_checks_never_produce_nan(
            exposures in prop::collection::vec(0u64..100_000_000, 2..=20),
            weight in 0.01f64..100.0,
        ) {
            let weights = vec![weight; exposures.len()];
            if let Some(check) = sample_ratio_mismatch(&exposures, &weights) {
                prop_assert!(check.chi_squared.is_finite() && (0.0..=1.0).contains(&check.p_value), "{check:?}");
            }
        }
    }
}
