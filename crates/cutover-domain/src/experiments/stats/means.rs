use statrs::distribution::{Continuous, ContinuousCDF, Normal, StudentsT};

use super::{CONFIDENCE, Comparison, Interval};

/// Student's t as Welch's test needs it: statrs's distribution with two repairs for the sample
/// sizes experiments reach, found by checking statrs 0.18 against scipy:
///
/// - its inverse CDF loses digits past about 1e5 degrees of freedom (7% off at 1e7) and does not
///   return at all for some larger ones, so quantiles are solved with Newton's method on its
///   survival function, starting from its inverse only where that is exact (up to 1000);
/// - past 1e8 degrees of freedom its survival function loses digits too (1e-6 at 1e9), while
///   Student's t there is the standard normal to within `(t² + 1) / (4 df)` relative (under 1e-7
///   for |t| < 6), so the normal is used.
enum StudentT {
    Exact(StudentsT),
    Normal(Normal),
}

impl StudentT {
    const NORMAL_BEYOND: f64 = 1e8;
    const EXACT_INVERSE_UP_TO: f64 = 1_000.0;

    fn new(degrees_of_freedom: f64) -> Option<Self> {
        if degrees_of_freedom > Self::NORMAL_BEYOND {
            return Some(Self::Normal(Normal::standard()));
        }
        StudentsT::new(0.0, 1.0, degrees_of_freedom).ok().map(Self::Exact)
    }

    fn sf(&self, x: f64) -> f64 {
        match self {
            Self::Exact(t) => t.sf(x),
            Self::Normal(n) => n.sf(x),
        }
    }

    /// The `x` with `sf(x) = upper_tail`, for `upper_tail < 0.5`.
    fn upper_quantile(&self, upper_tail: f64) -> f64 {
        let t = match self {
            Self::Normal(n) => return n.inverse_cdf(1.0 - upper_tail),
            Self::Exact(t) => t,
        };
        let mut x = if t.freedom() <= Self::EXACT_INVERSE_UP_TO {
            t.inverse_cdf(1.0 - upper_tail)
        } else {
            // Below the root, where the tail is convex: Newton climbs to it without overshooting.
            Normal::standard().inverse_cdf(1.0 - upper_tail)
        };
        for _ in 0..32 {
            let step = (t.sf(x) - upper_tail) / t.pdf(x);
            if !step.is_finite() {
                break;
            }
            x += step;
            if step.abs() <= 1e-15 * x.abs() {
                break;
            }
        }
        x
    }
}

/// One arm of a valued metric, summarised: how many values, their mean and their sample variance
/// (divided by `n - 1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanSummary {
    pub n: u64,
    pub mean: f64,
    pub variance: f64,
}

impl MeanSummary {
    /// The summary of `n` values from their running sum and sum of squares, as aggregate tables
    /// keep them. `None` for fewer than two values or non-finite sums.
    ///
    /// The variance is `(Σx² - (Σx)²/n) / (n - 1)`, clamped at 0: where values are huge next to
    /// their spread that subtraction loses digits, which matters for, say, timestamps, not for the
    /// revenues and durations metrics carry.
    pub fn from_sums(n: u64, sum: f64, sum_of_squares: f64) -> Option<Self> {
        if n < 2 || !sum.is_finite() || !sum_of_squares.is_finite() {
            return None;
        }
        let count = n as f64;
        let variance = ((sum_of_squares - sum * sum / count) / (count - 1.0)).max(0.0);
        Some(Self { n, mean: sum / count, variance })
    }

    fn is_usable(self) -> bool {
        self.n >= 2 && self.mean.is_finite() && self.variance.is_finite() && self.variance >= 0.0
    }
}

/// Welch's t-test of `treatment`'s mean against `control`'s, not assuming equal variances.
///
/// The standard error is `sqrt(v1/n1 + v2/n2)`; the degrees of freedom are Welch–Satterthwaite's;
/// the interval of the difference and the two-sided p-value both use Student's t with those
/// degrees of freedom.
///
/// `None` when an arm has fewer than two values, a non-finite mean or variance, or a negative
/// variance, or when the means are too far apart for their difference to be a finite number. When both variances are 0 there is no standard error: the interval, statistic,
/// p-value and degrees of freedom are `None`.
pub fn welch_t_test(control: MeanSummary, treatment: MeanSummary) -> Option<Comparison> {
    if !(control.is_usable() && treatment.is_usable()) {
        return None;
    }
    let (absolute_lift, relative_lift) = Comparison::lifts(control.mean, treatment.mean);
    if !absolute_lift.is_finite() {
        return None;
    }
    let a = control.variance / control.n as f64;
    let b = treatment.variance / treatment.n as f64;
    let mut comparison = Comparison {
        control: control.mean,
        treatment: treatment.mean,
        absolute_lift,
        relative_lift,
        interval: None,
        statistic: None,
        p_value: None,
        degrees_of_freedom: None,
    };
    let se = (a + b).sqrt();
    if !(se > 0.0 && se.is_finite()) {
        return Some(comparison);
    }
    // (a + b)² / (a²/(n1-1) + b²/(n2-1)), written with shares of a + b so it cannot underflow.
    let (share_a, share_b) = (a / (a + b), b / (a + b));
    let df = 1.0 / (share_a * share_a / (control.n - 1) as f64 + share_b * share_b / (treatment.n - 1) as f64);
    let t = StudentT::new(df)?;
    let statistic = absolute_lift / se;
    let critical = t.upper_quantile((1.0 - CONFIDENCE) / 2.0);
    comparison.interval = Some(Interval::around(absolute_lift, critical * se));
    comparison.statistic = Some(statistic);
    comparison.p_value = Some((2.0 * t.sf(statistic.abs())).min(1.0));
    comparison.degrees_of_freedom = Some(df);
    Some(comparison)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(n: u64, mean: f64, variance: f64) -> MeanSummary {
        MeanSummary { n, mean, variance }
    }

    #[test]
    fn fewer_than_two_values_or_broken_summaries_cannot_be_compared() {
        let ok = summary(10, 1.0, 1.0);
        for bad in [summary(1, 1.0, 0.0), summary(0, 0.0, 0.0), summary(10, f64::NAN, 1.0), summary(10, 1.0, -1.0)] {
            assert_eq!(welch_t_test(bad, ok), None, "{bad:?}");
            assert_eq!(welch_t_test(ok, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn no_variance_in_either_arm_gives_means_but_no_test() {
        let c = welch_t_test(summary(10, 2.0, 0.0), summary(10, 3.0, 0.0)).unwrap();
        assert_eq!((c.absolute_lift, c.relative_lift), (1.0, Some(0.5)));
        assert_eq!((c.interval, c.statistic, c.p_value, c.degrees_of_freedom), (None, None, None, None));
    }

    #[test]
    fn no_variance_in_one_arm_leaves_the_other_arms_degrees_of_freedom() {
        let c = welch_t_test(summary(10, 2.0, 0.0), summary(25, 3.0, 4.0)).unwrap();
        assert!((c.degrees_of_freedom.unwrap() - 24.0).abs() < 1e-12, "{c:?}");
    }

    #[test]
    fn tiny_variances_do_not_underflow_the_degrees_of_freedom() {
        let c = welch_t_test(summary(50, 1.0, 1e-300), summary(50, 1.0 + 1e-150, 1e-300)).unwrap();
        assert!((c.degrees_of_freedom.unwrap() - 98.0).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn critical_values_hold_for_any_degrees_of_freedom() {
        // scipy.stats.t.ppf(0.975, df)
        let scipy = [
            (1.0, 12.706204736174694),
            (2.5, 3.5746548420036817),
            (999.0, 1.9623414611334493),
            (1_001.0, 1.9623367052808798),
            (1e5, 1.9599877075346095),
            (2e7, 1.959964103153622),
            (1e9, 1.959963986912325),
            (1e15, 1.9599639845400563),
        ];
        for (df, expected) in scipy {
            let got = StudentT::new(df).unwrap().upper_quantile(0.025);
            assert!((got - expected).abs() < 1e-8 * expected, "df {df}: {got} against {expected}");
        }
    }

    #[test]
    fn summaries_from_sums_match_the_direct_computation() {
        let values = [3.0, 5.0, 4.0, 8.0, 10.0];
        let s = MeanSummary::from_sums(5, values.iter().sum(), values.iter().map(|v| v * v).sum()).unwrap();
        assert_eq!((s.n, s.mean), (5, 6.0));
        assert!((s.variance - 8.5).abs() < 1e-12);
        assert_eq!(MeanSummary::from_sums(1, 3.0, 9.0), None);
        assert_eq!(MeanSummary::from_sums(4, 8.0, 16.0).unwrap().variance, 0.0);
    }
}
