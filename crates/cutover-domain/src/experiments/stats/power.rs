//! What a comparison means for a decision: a verdict at [`CONFIDENCE`](super::CONFIDENCE), and
//! for an inconclusive one, how many users each arm needs to detect the observed effect.
//!
//! Sample sizes use the normal approximation statsmodels' `NormalIndPower` solves, at 80% power
//! and a two-sided 5% level with equal arms: `n = 2 ((z_{α/2} + z_β) / d)²` per arm, where `d` is
//! Cohen's h (`2 asin √p₂ − 2 asin √p₁`) for conversion rates and the standardised difference
//! `Δ / √((s₁² + s₂²) / 2)` for means.

use statrs::distribution::{ContinuousCDF, Normal};

use super::{CONFIDENCE, Comparison, MeanSummary, normal_critical_value};

/// The level verdicts are drawn at: `1 − CONFIDENCE`, written out (`1.0 - 0.95` is not 0.05).
pub const SIGNIFICANCE: f64 = 0.05;
const _: () = assert!((1.0 - CONFIDENCE - SIGNIFICANCE) < 1e-12 && (SIGNIFICANCE - (1.0 - CONFIDENCE)) < 1e-12);

/// The power sample sizes are computed for.
pub const POWER: f64 = 0.8;

/// Which way a metric should move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
}

/// What a comparison says, at [`CONFIDENCE`](super::CONFIDENCE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Better,
    Worse,
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Better => "better",
            Self::Worse => "worse",
            Self::Inconclusive => "inconclusive",
        }
    }
}

/// `Better` or `Worse` when the p-value is under `1 − CONFIDENCE`, by the direction of the lift;
/// otherwise (or without a p-value) `Inconclusive`.
pub fn verdict(comparison: &Comparison, direction: Direction) -> Verdict {
    let significant = comparison.p_value.is_some_and(|p| p < SIGNIFICANCE);
    if !significant || comparison.absolute_lift == 0.0 {
        return Verdict::Inconclusive;
    }
    let up = comparison.absolute_lift > 0.0;
    match (up, direction) {
        (true, Direction::HigherIsBetter) | (false, Direction::LowerIsBetter) => Verdict::Better,
        _ => Verdict::Worse,
    }
}

/// Users per arm for a standardised effect `d`; `None` when there is no effect to detect.
fn per_arm(effect: f64) -> Option<u64> {
    if !effect.is_finite() || effect == 0.0 {
        return None;
    }
    let z_beta = Normal::standard().inverse_cdf(POWER);
    let n = 2.0 * ((normal_critical_value() + z_beta) / effect).powi(2);
    (n.is_finite() && n < u64::MAX as f64).then(|| n.ceil() as u64)
}

/// Users per arm to detect a change of conversion rate from `control` to `treatment`.
pub fn users_per_arm_for_rates(control: f64, treatment: f64) -> Option<u64> {
    if !(0.0..=1.0).contains(&control) || !(0.0..=1.0).contains(&treatment) {
        return None;
    }
    per_arm(2.0 * treatment.sqrt().asin() - 2.0 * control.sqrt().asin())
}

/// Users per arm to detect the difference of the two arms' means, with their spread.
pub fn users_per_arm_for_means(control: MeanSummary, treatment: MeanSummary) -> Option<u64> {
    let pooled_sd = ((control.variance + treatment.variance) / 2.0).sqrt();
    if pooled_sd <= 0.0 {
        return None;
    }
    per_arm((treatment.mean - control.mean) / pooled_sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comparison(absolute_lift: f64, p_value: Option<f64>) -> Comparison {
        Comparison {
            control: 1.0,
            treatment: 1.0 + absolute_lift,
            absolute_lift,
            relative_lift: Some(absolute_lift),
            interval: None,
            statistic: None,
            p_value,
            degrees_of_freedom: None,
        }
    }

    #[test]
    fn a_significant_move_is_better_or_worse_by_the_metrics_direction() {
        let up = comparison(0.13, Some(0.000_01));
        assert_eq!(verdict(&up, Direction::HigherIsBetter), Verdict::Better);
        assert_eq!(verdict(&up, Direction::LowerIsBetter), Verdict::Worse);
        let down = comparison(-0.13, Some(0.01));
        assert_eq!(verdict(&down, Direction::HigherIsBetter), Verdict::Worse);
        assert_eq!(verdict(&down, Direction::LowerIsBetter), Verdict::Better);
    }

    #[test]
    fn at_or_above_five_percent_or_without_a_p_value_it_is_inconclusive() {
        for p in [Some(0.05), Some(0.2), None] {
            assert_eq!(verdict(&comparison(0.1, p), Direction::HigherIsBetter), Verdict::Inconclusive, "{p:?}");
        }
        assert_eq!(verdict(&comparison(0.0, Some(0.0)), Direction::HigherIsBetter), Verdict::Inconclusive);
    }

    // Expected values: statsmodels `NormalIndPower().solve_power(effect_size=d, alpha=0.05,
    // power=0.8, ratio=1)`, with d = `proportion_effectsize(p2, p1)` (Cohen's h) for rates,
    // rounded up to whole users. Computed by hand from the closed form above, which agrees with
    // statsmodels' numeric solution to within 0.01 users here: 0.10 → 0.12 gives h = 0.063982,
    // n = 3834.61; 0.50 → 0.55 gives h = 0.100167, n = 1564.53; 0.20 → 0.25, h = 0.119902,
    // n = 1091.90. For means, d = 0.2 gives n = 392.44 (the figure in statsmodels' docs).
    #[test]
    fn users_per_arm_match_statsmodels_normal_power() {
        assert_eq!(users_per_arm_for_rates(0.10, 0.12), Some(3835));
        assert_eq!(users_per_arm_for_rates(0.12, 0.10), Some(3835));
        assert_eq!(users_per_arm_for_rates(0.50, 0.55), Some(1565));
        assert_eq!(users_per_arm_for_rates(0.20, 0.25), Some(1092));
        let arm = |mean: f64| MeanSummary { n: 100, mean, variance: 100.0 };
        assert_eq!(users_per_arm_for_means(arm(10.0), arm(12.0)), Some(393));
        assert_eq!(users_per_arm_for_means(arm(10.0), arm(15.0)), Some(63));
        assert_eq!(users_per_arm_for_means(arm(10.0), arm(11.0)), Some(1570));
    }

    #[test]
    fn no_effect_or_no_spread_needs_no_number() {
        assert_eq!(users_per_arm_for_rates(0.1, 0.1), None);
        assert_eq!(users_per_arm_for_rates(0.1, 1.5), None);
        let flat = MeanSummary { n: 10, mean: 1.0, variance: 0.0 };
        assert_eq!(users_per_arm_for_means(flat, MeanSummary { mean: 2.0, ..flat }), None);
    }
}
