use statrs::distribution::{ChiSquared, ContinuousCDF};

/// Below this p-value the observed split is flagged as a sample-ratio mismatch: assignment or
/// exposure logging is broken, and the results should not be trusted.
pub const SAMPLE_RATIO_MISMATCH_P: f64 = 0.001;

/// Whether exposures split between variants the way the weights say they should.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SampleRatio {
    /// Pearson's chi-squared statistic of observed against expected exposures.
    pub chi_squared: f64,
    pub degrees_of_freedom: usize,
    pub p_value: f64,
    /// `p_value < SAMPLE_RATIO_MISMATCH_P`.
    pub mismatch: bool,
}

/// Chi-squared goodness of fit of `exposures` per variant against the configured `weights`
/// (relative; normalised here).
///
/// `None` when the lengths differ, there are fewer than two variants, nobody was exposed, or a
/// weight is not a positive finite number.
pub fn sample_ratio_mismatch(exposures: &[u64], weights: &[f64]) -> Option<SampleRatio> {
    if exposures.len() != weights.len() || exposures.len() < 2 {
        return None;
    }
    if weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
        return None;
    }
    let total_weight: f64 = weights.iter().sum();
    let total = exposures.iter().map(|&e| e as f64).sum::<f64>();
    if total == 0.0 || !total_weight.is_finite() {
        return None;
    }
    let chi_squared = exposures
        .iter()
        .zip(weights)
        .map(|(&observed, weight)| {
            let expected = total * weight / total_weight;
            (observed as f64 - expected).powi(2) / expected
        })
        .sum::<f64>();
    let degrees_of_freedom = exposures.len() - 1;
    let p_value = ChiSquared::new(degrees_of_freedom as f64).ok()?.sf(chi_squared);
    Some(SampleRatio { chi_squared, degrees_of_freedom, p_value, mismatch: p_value < SAMPLE_RATIO_MISMATCH_P })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_split_is_no_mismatch() {
        let check = sample_ratio_mismatch(&[500, 500], &[0.5, 0.5]).unwrap();
        assert_eq!((check.chi_squared, check.p_value, check.mismatch), (0.0, 1.0, false));
    }

    #[test]
    fn a_skewed_split_is_flagged() {
        let check = sample_ratio_mismatch(&[10_000, 10_600], &[1.0, 1.0]).unwrap();
        assert!(check.mismatch && check.p_value < SAMPLE_RATIO_MISMATCH_P, "{check:?}");
        assert_eq!(check.degrees_of_freedom, 1);
    }

    #[test]
    fn nothing_to_check_without_exposures_or_with_mismatched_inputs() {
        assert_eq!(sample_ratio_mismatch(&[0, 0], &[0.5, 0.5]), None);
        assert_eq!(sample_ratio_mismatch(&[10, 10], &[1.0]), None);
        assert_eq!(sample_ratio_mismatch(&[10], &[1.0]), None);
        assert_eq!(sample_ratio_mismatch(&[10, 10], &[1.0, 0.0]), None);
        assert_eq!(sample_ratio_mismatch(&[10, 10], &[1.0, f64::NAN]), None);
    }

    #[test]
    fn a_variant_nobody_reached_is_a_mismatch_when_it_should_have_been_reached() {
        let check = sample_ratio_mismatch(&[1_000, 0], &[0.5, 0.5]).unwrap();
        assert!(check.mismatch, "{check:?}");
    }
}
