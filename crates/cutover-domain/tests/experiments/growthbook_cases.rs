//! Every case of GrowthBook's bucketing test vectors (`shared/testdata`, taken from the SDK's
//! `cases.json`). Floats are compared with a tolerance, as GrowthBook's own runners round them.

use cutover_domain::experiments::bucketing::{
    BucketRange, bucket_ranges, choose_variation, equal_weights, hash, in_namespace,
};
use serde_json::Value;

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata/growthbook-bucketing-cases.json");
const TOLERANCE: f64 = 1e-6;

fn section(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(CASES).unwrap_or_else(|e| panic!("reading {CASES}: {e}"));
    let cases: Value = serde_json::from_str(&text).unwrap();
    let section = cases[name].as_array().unwrap_or_else(|| panic!("no {name} section")).clone();
    assert!(!section.is_empty(), "the {name} section is empty");
    section
}

fn f64s(value: &Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

fn ranges(value: &Value) -> Vec<BucketRange> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|r| BucketRange { start: r[0].as_f64().unwrap(), end: r[1].as_f64().unwrap() })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOLERANCE
}

#[test]
fn every_hash_case_matches() {
    for case in section("hash") {
        let (seed, value, version) = (case[0].as_str().unwrap(), case[1].as_str().unwrap(), case[2].as_u64().unwrap());
        let got = hash(seed, value, u32::try_from(version).unwrap());
        match case[3].as_f64() {
            // Hashes are integers divided by 1000 or 10000: they match to the last bit.
            Some(expected) => assert_eq!(got, Some(expected), "{case}"),
            None => assert_eq!(got, None, "{case}"),
        }
    }
}

#[test]
fn every_bucket_range_case_matches() {
    for case in section("getBucketRange") {
        let args = &case[1];
        let n = usize::try_from(args[0].as_u64().unwrap()).unwrap();
        let weights = args[2].as_array().map(|_| f64s(&args[2]));
        let got = bucket_ranges(n, args[1].as_f64().unwrap(), weights.as_deref());
        let expected = ranges(&case[2]);
        assert_eq!(got.len(), expected.len(), "{case}");
        for (g, e) in got.iter().zip(&expected) {
            assert!(close(g.start, e.start) && close(g.end, e.end), "{}: got {got:?}", case[0]);
        }
    }
}

#[test]
fn every_choose_variation_case_matches() {
    for case in section("chooseVariation") {
        let got = choose_variation(case[1].as_f64().unwrap(), &ranges(&case[2]));
        let expected = case[3].as_i64().unwrap();
        assert_eq!(got.map_or(-1, |v| i64::try_from(v).unwrap()), expected, "{}", case[0]);
    }
}

#[test]
fn every_namespace_case_matches() {
    for case in section("inNamespace") {
        let namespace = &case[2];
        let got = in_namespace(
            case[1].as_str().unwrap(),
            namespace[0].as_str().unwrap(),
            namespace[1].as_f64().unwrap(),
            namespace[2].as_f64().unwrap(),
        );
        assert_eq!(got, case[3].as_bool().unwrap(), "{}", case[0]);
    }
}

#[test]
fn every_equal_weights_case_matches() {
    for case in section("getEqualWeights") {
        // A negative count cannot be asked for in Rust (`usize`); GrowthBook answers it like 0.
        let n = usize::try_from(case[0].as_i64().unwrap()).unwrap_or(0);
        let (got, expected) = (equal_weights(n), f64s(&case[1]));
        assert_eq!(got.len(), expected.len(), "{case}");
        assert!(got.iter().zip(&expected).all(|(g, e)| close(*g, *e)), "{case}: got {got:?}");
    }
}
