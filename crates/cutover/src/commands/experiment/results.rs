//! `cutover experiment results` for people: the sample-ratio check first (a mismatch voids
//! everything below it), then one table per metric, each followed by its verdict: better, worse
//! or inconclusive at 95% (with the users an inconclusive one needs), guardrail violations loud.

use cutover_api::{ExperimentResults, Lift, MetricResult, SampleRatioCheck, VariantMetricResult};

use crate::output;

/// The whole report.
pub fn render(results: &ExperimentResults) -> String {
    let mut text = output::fields(&[
        ("experiment", results.experiment.clone()),
        ("status", results.status.clone()),
        ("exposed users", results.exposures.to_string()),
    ]);
    text.push_str("\n\n");
    text.push_str(&sample_ratio(&results.sample_ratio));
    for metric in &results.metrics {
        text.push_str("\n\n");
        text.push_str(&metric_table(metric));
    }
    if results.metrics.iter().all(|m| m.variants.iter().all(|v| v.events == 0)) {
        text.push_str("\n\nno events from exposed users yet");
    }
    text
}

fn sample_ratio(check: &SampleRatioCheck) -> String {
    let (Some(chi_squared), Some(p)) = (check.chi_squared, check.p_value) else {
        return "sample ratio: not checked yet (nobody exposed)".to_owned();
    };
    let observed = check.observed.iter().map(u64::to_string).collect::<Vec<_>>().join(" / ");
    let expected = check.expected_weights.iter().map(|w| super::percent(*w)).collect::<Vec<_>>().join(" / ");
    if check.mismatch {
        format!(
            "!!! SAMPLE RATIO MISMATCH !!!\n\
             exposures split {observed} against weights {expected} (chi-squared {chi_squared:.2}, {}, below {})\n\
             assignment or exposure recording is broken: do not trust the numbers below until that is explained",
            p_equals(p),
            check.threshold
        )
    } else {
        format!(
            "sample ratio: ok, exposures {observed} against weights {expected} (chi-squared {chi_squared:.2}, {})",
            p_equals(p)
        )
    }
}

fn metric_table(metric: &MetricResult) -> String {
    let mean = metric.kind == "mean";
    let title = format!(
        "{} ({}, {})",
        metric.metric,
        if metric.primary { "primary" } else { "guardrail" },
        if mean { "mean per exposed user" } else { "conversion rate" }
    );
    // A mean metric's "conversions" (users with any event) mean nothing next to its mean.
    let mut header = vec!["VARIANT", "VERSION", "EXPOSURES"];
    if !mean {
        header.push("CONVERSIONS");
    }
    header.extend([if mean { "MEAN" } else { "RATE" }, "ABS LIFT [95% CI]", "REL LIFT", "P-VALUE"]);
    let rows = metric.variants.iter().enumerate().map(|(i, variant)| row(i, variant, mean));
    let table = output::table_of(header.into_iter().map(str::to_owned).collect(), rows);
    let mut text = format!("{title}\n{table}");
    for variant in metric.variants.iter().skip(1) {
        text.push('\n');
        text.push_str(&verdict_line(variant));
    }
    text
}

/// One line per treatment: what the comparison says at 95%.
fn verdict_line(variant: &VariantMetricResult) -> String {
    let name = &variant.variant;
    let Some(lift) = variant.lift.clone().flatten() else {
        return format!("{name}: no verdict yet (too little data to compare)");
    };
    let p = lift.p_value.map_or_else(|| "no p-value".to_owned(), p_equals);
    match lift.verdict.as_str() {
        "better" => format!("{name}: better than control at 95% ({p})"),
        "worse" if lift.guardrail_violated => {
            format!("!!! {name}: GUARDRAIL VIOLATED: worse than control at 95% ({p})")
        }
        "worse" => format!("{name}: worse than control at 95% ({p})"),
        _ => match (lift.additional_users_needed, lift.users_needed_per_variant) {
            (Some(more), Some(per_variant)) => format!(
                "{name}: inconclusive at 95% ({p}); at the observed effect, about {more} more users \
                 ({per_variant} per variant) for 80% power"
            ),
            _ => format!("{name}: inconclusive at 95% ({p}); no effect observed to size a test for"),
        },
    }
}

fn row(index: usize, variant: &VariantMetricResult, mean: bool) -> Vec<String> {
    let value = if mean { variant.mean.map(significant) } else { variant.conversion_rate.map(rate) };
    // The control has no lift; a treatment has none when either side lacks the data to compare
    // (the wire's `null`, which reads back as absent).
    let lift = match (index, variant.lift.clone().flatten()) {
        (0, _) => ["-".to_owned(), "-".to_owned(), "-".to_owned()],
        (_, None) => ["n/a".to_owned(), "n/a".to_owned(), "n/a".to_owned()],
        (_, Some(lift)) => lift_cells(&lift, mean),
    };
    let mut cells = vec![variant.variant.clone(), variant.version.to_string(), variant.exposures.to_string()];
    if !mean {
        cells.push(variant.conversions.to_string());
    }
    cells.push(value.unwrap_or_else(|| "-".to_owned()));
    cells.extend(lift);
    cells
}

/// Absolute lift with its interval (percentage points for rates), relative lift, p-value.
fn lift_cells(lift: &Lift, mean: bool) -> [String; 3] {
    let show = |x: f64| if mean { signed(significant(x), x) } else { signed(format!("{:.2}", x * 100.0), x) };
    let unit = if mean { "" } else { " pp" };
    let absolute = match lift.absolute_interval {
        Some(ci) => format!("{}{unit} [{}, {}]", show(lift.absolute), show(ci.low), show(ci.high)),
        None => format!("{}{unit}", show(lift.absolute)),
    };
    let relative = lift.relative.map_or_else(|| "-".to_owned(), |r| signed(format!("{:.1}%", r * 100.0), r));
    [absolute, relative, lift.p_value.map_or_else(|| "-".to_owned(), p_value)]
}

/// `text` (the formatted `x`) with a `+` in front when `x` is positive.
fn signed(text: String, x: f64) -> String {
    if x > 0.0 && !text.starts_with('+') { format!("+{text}") } else { text }
}

/// A rate as a percentage with two decimals.
fn rate(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// Four significant digits, never in exponent form: `1235`, `12.35`, `0.001235`.
fn significant(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = usize::try_from(3 - magnitude).unwrap_or(0).min(12);
    format!("{x:.decimals$}")
}

fn p_value(p: f64) -> String {
    if p < 0.0001 { "<0.0001".to_owned() } else { format!("{p:.4}") }
}

/// `p = 0.0312`, or `p < 0.0001`.
fn p_equals(p: f64) -> String {
    if p < 0.0001 { "p < 0.0001".to_owned() } else { format!("p = {p:.4}") }
}

#[cfg(test)]
mod tests {
    use cutover_api::{
        ConfidenceInterval, ExperimentResults, Lift, MetricResult, SampleRatioCheck, VariantMetricResult,
    };

    use super::{p_value, render, significant};

    fn variant(index: usize, exposures: u64, conversions: u64, lift: Option<Lift>) -> VariantMetricResult {
        VariantMetricResult {
            variant: if index == 0 { "control".into() } else { format!("treatment-{index}") },
            version: index as i64 + 1,
            exposures,
            conversions,
            events: conversions,
            conversion_rate: Some(conversions as f64 / exposures as f64),
            mean: None,
            lift: (index > 0).then_some(lift),
        }
    }

    fn results(mismatch: bool, lift: Option<Lift>) -> ExperimentResults {
        ExperimentResults {
            experiment: "x1".into(),
            status: "running".into(),
            exposures: 1000,
            sample_ratio: SampleRatioCheck {
                observed: vec![600, 400],
                expected_weights: vec![0.5, 0.5],
                chi_squared: Some(40.0),
                p_value: Some(if mismatch { 2.5e-10 } else { 0.5 }),
                mismatch,
                threshold: 0.001,
            },
            metrics: vec![MetricResult {
                metric: "checkout".into(),
                primary: true,
                kind: "conversion".into(),
                direction: "higher_is_better".into(),
                guardrail_violated: false,
                variants: vec![variant(0, 600, 60, None), variant(1, 400, 56, lift)],
            }],
        }
    }

    #[test]
    fn a_treatment_row_shows_the_lift_in_points_with_its_interval() {
        let lift = Lift {
            absolute: 0.04,
            absolute_interval: Some(ConfidenceInterval { low: 0.001, high: 0.079 }),
            relative: Some(0.4),
            relative_interval: None,
            p_value: Some(0.0312),
            test: "two_proportion_z".into(),
            verdict: "better".into(),
            guardrail_violated: false,
            users_needed_per_variant: None,
            additional_users_needed: None,
        };
        let text = render(&results(false, Some(lift)));
        assert!(text.contains("checkout (primary, conversion rate)"), "{text}");
        let header = text.lines().find(|l| l.starts_with("VARIANT")).expect("a header");
        for column in ["VERSION", "EXPOSURES", "CONVERSIONS", "RATE", "ABS LIFT [95% CI]", "REL LIFT", "P-VALUE"] {
            assert!(header.contains(column), "{text}");
        }
        let control = text.lines().find(|l| l.starts_with("control")).expect("a control row");
        assert!(control.contains("10.00%") && control.ends_with('-'), "{text}");
        let treatment = text.lines().find(|l| l.starts_with("treatment-1")).expect("a treatment row");
        assert!(treatment.contains("14.00%"), "{text}");
        assert!(treatment.contains("+4.00 pp [+0.10, +7.90]"), "{text}");
        assert!(treatment.contains("+40.0%") && treatment.ends_with("0.0312"), "{text}");
        assert!(text.contains("sample ratio: ok") && !text.contains("MISMATCH"), "{text}");
        assert!(text.contains("treatment-1: better than control at 95% (p = 0.0312)"), "{text}");
    }

    fn guardrail(verdict: &str, p: f64, needed: Option<(u64, u64)>) -> ExperimentResults {
        let lift = Lift {
            absolute: 0.5,
            absolute_interval: Some(ConfidenceInterval { low: 0.3, high: 0.7 }),
            relative: Some(0.13),
            relative_interval: None,
            p_value: Some(p),
            test: "welch_t".into(),
            verdict: verdict.into(),
            guardrail_violated: verdict == "worse",
            users_needed_per_variant: needed.map(|n| n.0),
            additional_users_needed: needed.map(|n| n.1),
        };
        let mut results = results(false, None);
        let mut treatment = variant(1, 400, 400, Some(lift));
        treatment.conversion_rate = None;
        treatment.mean = Some(4.35);
        let mut control = variant(0, 600, 600, None);
        control.conversion_rate = None;
        control.mean = Some(3.85);
        results.metrics = vec![MetricResult {
            metric: "latency_ms".into(),
            primary: false,
            kind: "mean".into(),
            direction: "lower_is_better".into(),
            guardrail_violated: verdict == "worse",
            variants: vec![control, treatment],
        }];
        results
    }

    #[test]
    fn a_guardrail_that_got_worse_is_flagged_and_a_mean_shows_no_conversions() {
        let text = render(&guardrail("worse", 0.00001, None));
        assert!(text.contains("!!! treatment-1: GUARDRAIL VIOLATED: worse than control at 95% (p < 0.0001)"), "{text}");
        let header = text.lines().find(|l| l.starts_with("VARIANT")).expect("a header");
        assert!(header.contains("MEAN") && !header.contains("CONVERSIONS"), "{text}");
        let control = text.lines().find(|l| l.starts_with("control")).expect("a control row");
        assert_eq!(control.split_whitespace().collect::<Vec<_>>(), ["control", "1", "600", "3.850", "-", "-", "-"]);
    }

    #[test]
    fn an_inconclusive_comparison_says_how_many_more_users_it_needs() {
        let text = render(&guardrail("inconclusive", 0.2, Some((4213, 7213))));
        assert!(
            text.contains(
                "treatment-1: inconclusive at 95% (p = 0.2000); at the observed effect, about 7213 more users \
                 (4213 per variant) for 80% power"
            ),
            "{text}"
        );
        assert!(!text.contains("GUARDRAIL"), "{text}");
    }

    #[test]
    fn a_sample_ratio_mismatch_comes_first_and_loudly() {
        let text = render(&results(true, None));
        let warning = text.find("!!! SAMPLE RATIO MISMATCH !!!").expect("a warning");
        assert!(warning < text.find("checkout").expect("the metric"), "{text}");
        assert!(text.contains("600 / 400 against weights 50% / 50%"), "{text}");
        assert!(text.contains("p < 0.0001, below 0.001") && text.contains("do not trust"), "{text}");
        // Too little data to compare is not the same as being the control.
        let treatment = text.lines().find(|l| l.starts_with("treatment-1")).expect("a treatment row");
        assert!(treatment.ends_with("n/a"), "{text}");
    }

    #[test]
    fn numbers_keep_four_significant_digits_without_exponents() {
        assert_eq!(significant(1234.56), "1235");
        assert_eq!(significant(12.3456), "12.35");
        assert_eq!(significant(-0.00123456), "-0.001235");
        assert_eq!(significant(123456.7), "123457");
        assert_eq!(significant(0.0), "0");
        assert_eq!(p_value(0.00001), "<0.0001");
        assert_eq!(p_value(0.5), "0.5000");
    }
}
