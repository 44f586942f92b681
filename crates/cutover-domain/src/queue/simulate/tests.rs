//! The simulator against closed forms, and the planner's properties over random workloads.

use proptest::prelude::{ProptestConfig, prop_assert, prop_assert_eq, proptest};
use proptest::strategy::Strategy as _;

use super::*;

/// A workload with no failures, no flakes and checks of exactly `check_mean_seconds`.
fn deterministic(lambda_per_hour: f64, hours: f64) -> SimConfig {
    SimConfig {
        lambda_per_hour,
        failure_rate: 0.0,
        flake_rate: 0.0,
        check_sigma: 0.0,
        check_mean_seconds: 300.0,
        hours,
        seed: 42,
        ..SimConfig::default()
    }
}

/// Mean and standard error of `values` by the method of batch means (`batches` consecutive
/// groups), which stays honest when consecutive values are correlated, as waits in a queue are.
fn batch_means(values: &[f64], batches: usize) -> (f64, f64) {
    let size = values.len() / batches;
    let means: Vec<f64> = values.chunks_exact(size).map(|c| c.iter().sum::<f64>() / size as f64).collect();
    let mean = means.iter().sum::<f64>() / means.len() as f64;
    let variance = means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (means.len() - 1) as f64;
    (mean, (variance / means.len() as f64).sqrt())
}

/// Serial with deterministic checks and Poisson arrivals is an M/D/1 queue: the mean wait before
/// the check starts is Wq = ρD / (2(1 − ρ)), ρ = λD (Pollaczek–Khinchine). Here D = 300 s and
/// λ = 6/h, so ρ = 0.5 and Wq = 150 s; time to land is Wq + D.
///
/// Tolerance: four standard errors of the simulated mean, estimated from the run itself by batch
/// means (about 2.4 s over ~48,000 changes), and the test also requires that standard error to be
/// under 2% of Wq, so a noisy run cannot pass by being vague. A scheduler that added one check
/// time of delay, or started checks a planning step late, would be off by far more.
#[test]
fn serial_with_deterministic_checks_waits_as_an_m_d_1_queue() {
    let (lambda, d) = (6.0, 300.0);
    let report = simulate(&deterministic(lambda, 8_000.0), Strategy::Serial).unwrap();
    assert_eq!(report.invariant_violations, 0);
    assert_eq!(report.landed, report.submitted);
    let waits: Vec<f64> = report.times_to_land.iter().map(|t| t - d).collect();
    assert!(waits.iter().all(|&w| w >= -1e-6), "nothing lands before its check ran");
    let rho = lambda / 3_600.0 * d;
    let expected = rho * d / (2.0 * (1.0 - rho));
    let (mean, se) = batch_means(&waits, 40);
    assert!(se < 0.02 * expected, "standard error {se:.2} s is too large to judge");
    eprintln!("mean wait {mean:.2} s, M/D/1 {expected:.2} s, standard error {se:.2} s");
    assert!((mean - expected).abs() < 4.0 * se, "mean wait {mean:.1} s, M/D/1 says {expected:.1} s (se {se:.2})");
}

/// Dorfman's two-stage scheme: a batch of n is checked once, and when it fails each member is
/// checked alone, so the expected checks per change are 1/n + 1 − (1 − p)^n. Batch + Dorfman runs
/// exactly that when batches are full (max_wait long, so batches only form full), nothing flakes,
/// no retry is made, and one check runs at a time (W = 1: each single is checked on what is live,
/// never on a guess, so no check is wasted). Bisection (batch-bisect) is a different scheme with
/// fewer checks at these numbers, and the test tells them apart.
///
/// Tolerance: per batch the checks are 1 + n·Bernoulli(q), q = 1 − (1 − p)^n, so per change the
/// standard deviation is √(q(1 − q)) ≈ 0.47 and over ~2,500 batches the standard error is ≈ 0.0095;
/// the test allows four of them (0.038). Bisection's expectation is ≈ 0.08 lower.
#[test]
fn batch_dorfman_spends_the_checks_of_dorfmans_formula() {
    let (n, p) = (8u32, 0.05);
    let config = SimConfig {
        failure_rate: p,
        max_batch_size: n,
        max_wait_seconds: 86_400.0,
        max_flake_retries: 0,
        ..deterministic(20.0, 1_000.0)
    };
    let report = compare(&config, &[Strategy::BatchDorfman, Strategy::BatchBisect]).unwrap();
    let [dorfman, bisect] = [&report.strategies[0], &report.strategies[1]];
    for r in [dorfman, bisect] {
        assert_eq!(r.invariant_violations, 0, "{:?}", r.strategy);
        assert_eq!(r.landed + r.rejected, r.submitted);
        assert_eq!(r.good_rejected, 0, "without flakes only broken changes are refused");
    }
    let n = f64::from(n);
    let q = 1.0 - (1.0 - p).powf(n);
    let expected = 1.0 / n + q;
    let batches = dorfman.submitted as f64 / n;
    let tolerance = 4.0 * (q * (1.0 - q)).sqrt() / batches.sqrt();
    let per_change = |r: &StrategyReport| r.checks as f64 / r.submitted as f64;
    assert!(
        (per_change(dorfman) - expected).abs() < tolerance,
        "{:.4} checks per change, Dorfman says {expected:.4} ± {tolerance:.4}",
        per_change(dorfman)
    );
    assert!(per_change(bisect) < expected - tolerance, "bisection is not Dorfman's scheme");
}

#[test]
fn the_same_seed_gives_the_same_report_and_another_seed_another() {
    let config = SimConfig { hours: 1.0, cancel_rate: 0.1, hotfix_rate: 0.1, ..SimConfig::default() };
    let a = compare(&config, &Strategy::ALL).unwrap();
    assert_eq!(a, compare(&config, &Strategy::ALL).unwrap());
    let b = compare(&SimConfig { seed: 2, ..config }, &Strategy::ALL).unwrap();
    assert_ne!(a.strategies, b.strategies);
}

#[test]
fn the_oracle_checks_each_landed_change_at_most_once_and_never_refuses_a_good_one() {
    let config = SimConfig { hours: 2.0, failure_rate: 0.2, flake_rate: 0.05, ..SimConfig::default() };
    let report = simulate(&config, Strategy::Oracle).unwrap();
    assert_eq!(report.good_rejected, 0);
    assert!(report.checks <= report.landed, "{} checks for {} landed", report.checks, report.landed);
}

#[test]
fn settings_out_of_range_name_their_flag() {
    let bad = [
        (SimConfig { lambda_per_hour: 0.0, ..SimConfig::default() }, "lambda"),
        (SimConfig { failure_rate: 1.5, ..SimConfig::default() }, "failure-rate"),
        (SimConfig { flake_rate: 1.0, ..SimConfig::default() }, "flake-rate"),
        (SimConfig { budget: 0, ..SimConfig::default() }, "budget"),
        (SimConfig { check_mean_seconds: f64::NAN, ..SimConfig::default() }, "check-mean-seconds"),
        (SimConfig { lambda_per_hour: 1e6, hours: 10.0, ..SimConfig::default() }, "hours"),
    ];
    for (config, field) in bad {
        assert_eq!(compare(&config, &Strategy::ALL).unwrap_err().field(), field);
    }
}

fn any_config() -> impl proptest::strategy::Strategy<Value = SimConfig> {
    (
        (1u64..1_000, 20.0..300.0f64, 0.0..0.4f64, 0.0..0.2f64, 1u32..8),
        (1u32..6, 0u32..3, 1u32..12, 0.0..2.0f64, 1u32..4),
        (0.0..0.3f64, 0.0..0.3f64, 0.0..1.0f64, 0.0..120.0f64),
    )
        .prop_map(
            |(
                (seed, lambda, p, f, budget),
                (batch, retries, artifacts, zipf, footprint),
                (hot, cancel, sigma, wait),
            )| {
                SimConfig {
                    seed,
                    lambda_per_hour: lambda,
                    failure_rate: p,
                    flake_rate: f,
                    budget,
                    max_batch_size: batch,
                    max_flake_retries: retries,
                    artifacts,
                    zipf_exponent: zipf,
                    max_footprint: footprint,
                    hotfix_rate: hot,
                    cancel_rate: cancel,
                    check_sigma: sigma,
                    max_wait_seconds: wait,
                    check_mean_seconds: 600.0,
                    hours: 0.5,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever the workload and the strategy: no landed state was unchecked (the simulator
    /// compares each landing with the exact sequence its check ran on), landings respect queue
    /// order on every artifact within a lane, every transition is legal, and at the end every
    /// request is terminal exactly once (landed, refused or cancelled), none broken landed.
    #[test]
    fn every_strategy_keeps_the_invariants(config in any_config()) {
        let report = compare(&config, &Strategy::ALL).unwrap();
        for r in &report.strategies {
            prop_assert_eq!(r.invariant_violations, 0, "{:?}", r.strategy);
            prop_assert_eq!(r.landed + r.rejected + r.cancelled, r.submitted, "{:?}", r.strategy);
            prop_assert!(r.good_rejected <= r.rejected);
        }
    }
}
