//! The statistics against values computed independently with scipy (`tests/fixtures/stats.json`,
//! written by `tests/fixtures/make_stats_fixtures.py`), to within 1e-6 relative.

use cutover_domain::experiments::stats::{
    Comparison, ConversionCounts, MeanSummary, sample_ratio_mismatch, two_proportion_z_test, welch_t_test,
};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stats.json");
const RELATIVE: f64 = 1e-6;
/// Below this, lifts and interval bounds count as zero (they are differences of rates or means).
const NEAR_ZERO: f64 = 1e-12;

fn cases(section: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(FIXTURES).unwrap_or_else(|e| panic!("reading {FIXTURES}: {e}"));
    let fixtures: Value = serde_json::from_str(&text).unwrap();
    let cases = fixtures[section].as_array().unwrap_or_else(|| panic!("no {section} section")).clone();
    assert!(cases.len() >= 12, "{section} has only {} cases", cases.len());
    cases
}

/// `got` agrees with `expected` to [`RELATIVE`], or both are within `floor` of each other (p-values
/// use a floor of the smallest normal float, so a tiny p-value must be right, not merely tiny).
fn assert_close(case: &str, what: &str, got: f64, expected: f64, floor: f64) {
    let diff = (got - expected).abs();
    assert!(
        diff <= RELATIVE * expected.abs() || diff <= floor,
        "{case}: {what} is {got:e}, scipy says {expected:e} (relative error {:e})",
        diff / expected.abs()
    );
}

fn assert_comparison(case: &Value, got: Comparison) {
    let name = case["name"].as_str().unwrap();
    let expected = &case["expected"];
    let number = |field: &str| expected[field].as_f64().unwrap_or_else(|| panic!("{name}: no {field}"));
    assert_close(name, "control", got.control, number("control"), NEAR_ZERO);
    assert_close(name, "treatment", got.treatment, number("treatment"), NEAR_ZERO);
    assert_close(name, "absolute lift", got.absolute_lift, number("absolute_lift"), NEAR_ZERO);
    match expected["relative_lift"].as_f64() {
        Some(relative) => assert_close(name, "relative lift", got.relative_lift.unwrap(), relative, NEAR_ZERO),
        None => assert_eq!(got.relative_lift, None, "{name}: relative lift"),
    }
    match expected["interval"].as_array() {
        Some(bounds) => {
            let interval = got.interval.unwrap_or_else(|| panic!("{name}: no interval"));
            assert_close(name, "interval low", interval.low, bounds[0].as_f64().unwrap(), NEAR_ZERO);
            assert_close(name, "interval high", interval.high, bounds[1].as_f64().unwrap(), NEAR_ZERO);
        }
        None => assert_eq!(got.interval, None, "{name}: interval"),
    }
    assert_close(name, "statistic", got.statistic.unwrap(), number("statistic"), NEAR_ZERO);
    assert_close(name, "p-value", got.p_value.unwrap(), number("p_value"), f64::MIN_POSITIVE);
    match expected["degrees_of_freedom"].as_f64() {
        Some(df) => assert_close(name, "degrees of freedom", got.degrees_of_freedom.unwrap(), df, 0.0),
        None => assert_eq!(got.degrees_of_freedom, None, "{name}: degrees of freedom"),
    }
}

#[test]
fn two_proportion_z_tests_agree_with_scipy() {
    for case in cases("two_proportion_z_test") {
        let counts = |arm: &Value| ConversionCounts {
            exposures: arm["exposures"].as_u64().unwrap(),
            conversions: arm["conversions"].as_u64().unwrap(),
        };
        let got = two_proportion_z_test(counts(&case["control"]), counts(&case["treatment"]));
        assert_comparison(&case, got.unwrap_or_else(|| panic!("{}: no comparison", case["name"])));
    }
}

#[test]
fn welch_t_tests_agree_with_scipy() {
    for case in cases("welch_t_test") {
        let summary = |arm: &Value| MeanSummary {
            n: arm["n"].as_u64().unwrap(),
            mean: arm["mean"].as_f64().unwrap(),
            variance: arm["variance"].as_f64().unwrap(),
        };
        let got = welch_t_test(summary(&case["control"]), summary(&case["treatment"]));
        assert_comparison(&case, got.unwrap_or_else(|| panic!("{}: no comparison", case["name"])));
    }
}

#[test]
fn sample_ratio_checks_agree_with_scipy() {
    for case in cases("sample_ratio_mismatch") {
        let name = case["name"].as_str().unwrap();
        let exposures: Vec<u64> = case["exposures"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let weights: Vec<f64> = case["weights"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let got = sample_ratio_mismatch(&exposures, &weights).unwrap_or_else(|| panic!("{name}: no check"));
        let expected = &case["expected"];
        assert_close(name, "chi-squared", got.chi_squared, expected["chi_squared"].as_f64().unwrap(), NEAR_ZERO);
        assert_close(name, "p-value", got.p_value, expected["p_value"].as_f64().unwrap(), f64::MIN_POSITIVE);
        assert_eq!(got.degrees_of_freedom as u64, expected["degrees_of_freedom"].as_u64().unwrap(), "{name}");
        assert_eq!(got.mismatch, expected["mismatch"].as_bool().unwrap(), "{name}");
    }
}
