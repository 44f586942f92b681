use super::{Comparison, Interval, normal_critical_value, normal_two_sided_p};

/// One arm of a conversion metric: how many users were exposed and how many of them converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversionCounts {
    pub exposures: u64,
    pub conversions: u64,
}

impl ConversionCounts {
    /// The conversion rate, or `None` without exposures or with more conversions than exposures.
    pub fn rate(self) -> Option<f64> {
        (self.exposures > 0 && self.conversions <= self.exposures)
            .then(|| self.conversions as f64 / self.exposures as f64)
    }
}

/// Two-proportion z-test of `treatment`'s conversion rate against `control`'s.
///
/// The confidence interval of the difference uses the unpooled standard error
/// `sqrt(p1(1-p1)/n1 + p2(1-p2)/n2)` (Wald), which does not assume the rates are equal; the p-value
/// uses the pooled standard error `sqrt(p(1-p)(1/n1 + 1/n2))` with `p` the rate of both arms
/// together, the standard error under the null hypothesis it tests. The pooled test is the same
/// test as Pearson's chi-squared on the 2×2 table without continuity correction.
///
/// `None` when either arm has no exposures or more conversions than exposures (a count of users
/// who converted cannot exceed the users exposed). When no user or every user converted in both
/// arms the p-value is `None`; when both arms are all-or-nothing the interval is `None`.
pub fn two_proportion_z_test(control: ConversionCounts, treatment: ConversionCounts) -> Option<Comparison> {
    let (p1, p2) = (control.rate()?, treatment.rate()?);
    let (n1, n2) = (control.exposures as f64, treatment.exposures as f64);
    let (absolute_lift, relative_lift) = Comparison::lifts(p1, p2);

    let unpooled_se = (p1 * (1.0 - p1) / n1 + p2 * (1.0 - p2) / n2).sqrt();
    let interval = (unpooled_se > 0.0).then(|| Interval::around(absolute_lift, normal_critical_value() * unpooled_se));

    let pooled = (control.conversions + treatment.conversions) as f64 / (n1 + n2);
    let pooled_se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    let statistic = (pooled_se > 0.0).then(|| absolute_lift / pooled_se);

    Some(Comparison {
        control: p1,
        treatment: p2,
        absolute_lift,
        relative_lift,
        interval,
        statistic,
        p_value: statistic.map(normal_two_sided_p),
        degrees_of_freedom: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(exposures: u64, conversions: u64) -> ConversionCounts {
        ConversionCounts { exposures, conversions }
    }

    #[test]
    fn an_arm_without_exposures_cannot_be_compared() {
        assert_eq!(two_proportion_z_test(counts(0, 0), counts(100, 10)), None);
        assert_eq!(two_proportion_z_test(counts(100, 10), counts(0, 0)), None);
    }

    #[test]
    fn more_conversions_than_exposures_is_refused() {
        assert_eq!(two_proportion_z_test(counts(10, 11), counts(100, 10)), None);
    }

    #[test]
    fn no_conversions_anywhere_gives_rates_but_no_test() {
        let c = two_proportion_z_test(counts(1_000, 0), counts(1_000, 0)).unwrap();
        assert_eq!((c.control, c.treatment, c.absolute_lift, c.relative_lift), (0.0, 0.0, 0.0, None));
        assert_eq!((c.interval, c.statistic, c.p_value), (None, None, None));
    }

    #[test]
    fn all_or_nothing_arms_still_get_a_p_value() {
        let c = two_proportion_z_test(counts(100, 0), counts(100, 100)).unwrap();
        assert_eq!(c.interval, None);
        assert!(c.p_value.unwrap() < 1e-40, "{c:?}");
    }

    #[test]
    fn identical_arms_have_no_lift_and_a_p_value_of_one() {
        let c = two_proportion_z_test(counts(5_000, 250), counts(5_000, 250)).unwrap();
        assert_eq!((c.absolute_lift, c.relative_lift, c.p_value), (0.0, Some(0.0), Some(1.0)));
        let interval = c.interval.unwrap();
        assert!(interval.low < 0.0 && interval.high > 0.0 && (interval.low + interval.high).abs() < 1e-15);
    }
}
