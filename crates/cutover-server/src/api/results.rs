//! `GET /api/v1/experiments/{id}/results`: the numbers, computed at request time from running
//! totals (a few rows per experiment, whatever the traffic) with the domain's statistics.

use axum::extract::State;
use cutover_api::{ConfidenceInterval, ExperimentResults, Lift, MetricResult, SampleRatioCheck, VariantMetricResult};
use cutover_domain::Access;
use cutover_domain::experiments::stats::{
    Comparison, ConversionCounts, Direction, MeanSummary, SAMPLE_RATIO_MISMATCH_P, Verdict, sample_ratio_mismatch,
    two_proportion_z_test, users_per_arm_for_means, users_per_arm_for_rates, verdict, welch_t_test,
};
use cutover_store::{ExperimentTotals, MetricSums};

use super::responses::ReadErrors;
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiResult;
use crate::extract::Path;

/// Per variant: exposures, conversions, conversion rate (or mean for metrics whose events carry
/// values), and against the control the absolute and relative lift with 95% confidence intervals
/// and a two-sided p-value (two-proportion z-test; Welch's t-test for means); plus a
/// sample-ratio-mismatch check of exposures against the weights. Each comparison carries a verdict
/// at 95% (better / worse / inconclusive, with the users an inconclusive one needs at 80% power);
/// a guardrail that got significantly worse is flagged `guardrail_violated`. Deleted experiments
/// stay readable.
#[utoipa::path(
    get, path = "/api/v1/experiments/{id}/results", tag = "experiments", security(("token" = [])),
    params(("id" = String, Path, description = "Experiment id")),
    responses((status = 200, body = ExperimentResults), ReadErrors)
)]
pub async fn results(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ExperimentResults>> {
    auth.require(Access::Read)?;
    // This process's buffered exposures count at once; other replicas' within their flush interval.
    if let Err(e) = state.exposures.flush(&state.store).await {
        tracing::warn!(error = %e, "could not record buffered exposures before results");
    }
    let totals = state.store.experiment_totals(auth.workspace_id(), &id).await?;
    Ok(axum::Json(compute(&totals)))
}

/// The results of an experiment from its totals.
pub fn compute(totals: &ExperimentTotals) -> ExperimentResults {
    let experiment = &totals.experiment;
    let weights = experiment.variants.weights().to_vec();
    let check = sample_ratio_mismatch(&totals.exposures, &weights);
    let sample_ratio = SampleRatioCheck {
        observed: totals.exposures.clone(),
        expected_weights: weights,
        chi_squared: check.map(|c| c.chi_squared),
        p_value: check.map(|c| c.p_value),
        mismatch: check.is_some_and(|c| c.mismatch),
        threshold: SAMPLE_RATIO_MISMATCH_P,
    };
    let metrics = totals
        .metrics
        .iter()
        .map(|(metric, sums)| metric_result(totals, metric, *metric == experiment.primary_metric, sums))
        .collect();
    ExperimentResults {
        experiment: experiment.id.clone(),
        status: experiment.lifecycle.status().as_str().to_owned(),
        exposures: totals.exposures.iter().sum(),
        sample_ratio,
        metrics,
    }
}

fn metric_result(totals: &ExperimentTotals, metric: &str, primary: bool, sums: &[MetricSums]) -> MetricResult {
    let valued = sums.iter().any(|s| s.valued_events > 0);
    // Guardrails watch what must not rise (errors, latency); the primary metric should rise.
    let direction = if primary { Direction::HigherIsBetter } else { Direction::LowerIsBetter };
    let exposures = |i: usize| totals.exposures.get(i).copied().unwrap_or_default();
    let counts = |i: usize| ConversionCounts { exposures: exposures(i), conversions: sums[i].conversions };
    // A mean is over every exposed user, those without events counting 0.
    let summary = |i: usize| MeanSummary::from_sums(exposures(i), sums[i].sum, sums[i].sum_of_squares);
    let variants: Vec<VariantMetricResult> = (0..sums.len())
        .map(|i| {
            let n = exposures(i);
            let lift = (i > 0).then(|| {
                let (comparison, needed) = if valued {
                    let arms = summary(0).zip(summary(i));
                    (arms.and_then(|(c, t)| welch_t_test(c, t)), arms.and_then(|(c, t)| users_per_arm_for_means(c, t)))
                } else {
                    let comparison = two_proportion_z_test(counts(0), counts(i));
                    (comparison, comparison.and_then(|c| users_per_arm_for_rates(c.control, c.treatment)))
                };
                comparison.map(|c| {
                    let test = if valued { "welch_t" } else { "two_proportion_z" };
                    lift(&c, test, direction, primary, needed, [exposures(0), n])
                })
            });
            VariantMetricResult {
                variant: cutover_domain::experiments::variant_key(i),
                version: totals.experiment.variants.versions().get(i).copied().unwrap_or_default(),
                exposures: n,
                conversions: sums[i].conversions,
                events: sums[i].events,
                conversion_rate: (!valued).then(|| counts(i).rate()).flatten(),
                mean: (valued && n > 0).then(|| sums[i].sum / n as f64),
                lift,
            }
        })
        .collect();
    let guardrail_violated =
        variants.iter().any(|v| v.lift.as_ref().and_then(Option::as_ref).is_some_and(|l| l.guardrail_violated));
    MetricResult {
        metric: metric.to_owned(),
        primary,
        kind: if valued { "mean" } else { "conversion" }.into(),
        direction: match direction {
            Direction::HigherIsBetter => "higher_is_better",
            Direction::LowerIsBetter => "lower_is_better",
        }
        .into(),
        guardrail_violated,
        variants,
    }
}

fn lift(
    comparison: &Comparison,
    test: &str,
    direction: Direction,
    primary: bool,
    needed_per_arm: Option<u64>,
    exposures: [u64; 2],
) -> Lift {
    let verdict = verdict(comparison, direction);
    let needed = needed_per_arm.filter(|_| verdict == Verdict::Inconclusive);
    let absolute_interval = comparison.interval.map(|i| ConfidenceInterval { low: i.low, high: i.high });
    let relative_interval = absolute_interval
        .filter(|_| comparison.control != 0.0)
        .map(|i| ConfidenceInterval { low: i.low / comparison.control.abs(), high: i.high / comparison.control.abs() });
    Lift {
        absolute: comparison.absolute_lift,
        absolute_interval,
        relative: comparison.relative_lift,
        relative_interval,
        p_value: comparison.p_value,
        test: test.to_owned(),
        verdict: verdict.as_str().to_owned(),
        guardrail_violated: !primary && verdict == Verdict::Worse,
        users_needed_per_variant: needed,
        additional_users_needed: needed.map(|n| exposures.iter().map(|&e| n.saturating_sub(e)).sum()),
    }
}
