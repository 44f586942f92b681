//! Deterministic assignment of users to variants, exactly as GrowthBook's SDKs do it, so that
//! GrowthBook's public test vectors apply and any replica assigns a user the same way.
//!
//! The functions mirror `hash`, `getEqualWeights`, `getBucketRanges`, `chooseVariation` and
//! `inNamespace` of GrowthBook's JavaScript SDK (`packages/sdk-js/src/util.ts`), with Rust types
//! where JavaScript uses sentinels: `None` for an unknown hash version and for "no variation"
//! (GrowthBook's `null` and `-1`), `usize` for counts (so a negative count cannot be asked for).
//!
//! Strings are hashed as the JavaScript SDK hashes them: FNV-1a over UTF-16 code units. For ASCII
//! this is the textbook byte-wise FNV-1a; for other characters SDKs disagree (the Go SDK hashes
//! UTF-8 bytes, the Python SDK code points), and we follow the reference SDK.

/// FNV-1a, 32 bits, fed UTF-16 code units. Streaming, so that `seed + value` is never allocated.
#[derive(Clone, Copy)]
struct Fnv1a32(u32);

impl Fnv1a32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;

    fn new() -> Self {
        Self(Self::OFFSET_BASIS)
    }

    fn units(mut self, units: impl IntoIterator<Item = u16>) -> Self {
        for unit in units {
            self.0 ^= u32::from(unit);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
        self
    }

    fn str(self, text: &str) -> Self {
        self.units(text.encode_utf16())
    }

    /// Hashes the decimal representation of `n`, as JavaScript's `n + ""` writes it.
    fn decimal(self, mut n: u32) -> Self {
        let mut digits = [0u8; 10];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.units(digits[start..].iter().map(|&d| u16::from(d)))
    }
}

/// The 32-bit FNV-1a hash of `input`'s UTF-16 code units (GrowthBook's `hashFnv32a`).
pub fn fnv1a32(input: &str) -> u32 {
    Fnv1a32::new().str(input).0
}

/// GrowthBook's `hash(seed, value, version)`: a number in `[0, 1)`, or `None` for a version other
/// than 1 or 2.
///
/// Version 2 (what Cutover uses) is `fnv1a32(decimal(fnv1a32(seed + value))) % 10000 / 10000`: the
/// second round removes the bias version 1 has between similar seeds. Version 1 is
/// `fnv1a32(value + seed) % 1000 / 1000`, kept because namespaces still use it.
pub fn hash(seed: &str, value: &str, version: u32) -> Option<f64> {
    match version {
        2 => {
            let inner = Fnv1a32::new().str(seed).str(value).0;
            Some(f64::from(Fnv1a32::new().decimal(inner).0 % 10_000) / 10_000.0)
        }
        1 => Some(f64::from(Fnv1a32::new().str(value).str(seed).0 % 1_000) / 1_000.0),
        _ => None,
    }
}

/// `n` equal weights of `1 / n` each (GrowthBook's `getEqualWeights`); empty for `n == 0`.
pub fn equal_weights(n: usize) -> Vec<f64> {
    vec![1.0 / n as f64; n]
}

/// The part of `[0, 1)` whose hashes land in one variant: `start <= n < end`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketRange {
    pub start: f64,
    pub end: f64,
}

impl BucketRange {
    pub fn contains(self, n: f64) -> bool {
        n >= self.start && n < self.end
    }
}

/// GrowthBook's tolerance for weights that do not quite add up to 1.
const WEIGHT_SUM_TOLERANCE: f64 = 0.01;

/// GrowthBook's `getBucketRanges`: one range per variation, each starting where the previous
/// variation's full weight ends and covering `coverage` of that weight.
///
/// Coverage is clamped to `0..=1` (NaN counts as 0, where JavaScript would leave ranges that
/// contain nothing). Weights that are missing, of the wrong length, or that do not add up to 1
/// within 0.01 (NaN included) are replaced by equal weights. Weights within the tolerance are used
/// as given, not normalised, exactly as GrowthBook does.
pub fn bucket_ranges(num_variations: usize, coverage: f64, weights: Option<&[f64]>) -> Vec<BucketRange> {
    let coverage = if coverage.is_nan() { 0.0 } else { coverage.clamp(0.0, 1.0) };
    let equal = equal_weights(num_variations);
    let weights = match weights {
        Some(w) if w.len() == num_variations && sums_to_one(w) => w,
        _ => &equal,
    };
    ranges(weights, coverage).collect()
}

fn sums_to_one(weights: &[f64]) -> bool {
    let total: f64 = weights.iter().sum();
    (1.0 - WEIGHT_SUM_TOLERANCE..=1.0 + WEIGHT_SUM_TOLERANCE).contains(&total)
}

/// Ranges from weights that are already checked, without allocating (the resolve path).
fn ranges(weights: &[f64], coverage: f64) -> impl Iterator<Item = BucketRange> + '_ {
    weights.iter().scan(0.0, move |cumulative: &mut f64, &w| {
        let start = *cumulative;
        *cumulative += w;
        Some(BucketRange { start, end: start + coverage * w })
    })
}

/// GrowthBook's `chooseVariation`: the index of the first range holding `n`, or `None` (GrowthBook's
/// `-1`) when `n` is outside every range.
pub fn choose_variation(n: f64, ranges: &[BucketRange]) -> Option<usize> {
    ranges.iter().position(|r| r.contains(n))
}

/// GrowthBook's `inNamespace`: whether `user_id` falls in `[start, end)` of `namespace`, hashed
/// with version 1 and the seed `"__" + namespace`.
pub fn in_namespace(user_id: &str, namespace: &str, start: f64, end: f64) -> bool {
    let n = f64::from(Fnv1a32::new().str(user_id).str("__").str(namespace).0 % 1_000) / 1_000.0;
    n >= start && n < end
}

/// Cutover's assignment: the variant `targeting_key` gets in the experiment with `seed`, or `None`
/// when the key falls outside `coverage` (that user gets the control, the pinned version, and is
/// not exposed).
///
/// It is GrowthBook's v2 hash, bucket ranges and `chooseVariation`, with `variant_weights`
/// normalised to sum to 1 first (so `[1, 1]` means 50/50). For weights that already sum to 1 the
/// answer is GrowthBook's to the last bit. Stateless and allocation-free: the same key always lands
/// in the same variant, on every replica, and raising coverage only adds users (nobody moves).
///
/// `None` also when the weights cannot split traffic: empty, negative, non-finite, or all zero.
pub fn assign(seed: &str, targeting_key: &str, variant_weights: &[f64], coverage: f64) -> Option<usize> {
    if variant_weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
        return None;
    }
    let total: f64 = variant_weights.iter().sum();
    if !(total.is_finite() && total > 0.0) {
        return None;
    }
    let coverage = if coverage.is_nan() { 0.0 } else { coverage.clamp(0.0, 1.0) };
    let n = hash(seed, targeting_key, 2)?;
    let mut cumulative = 0.0;
    for (index, weight) in variant_weights.iter().enumerate() {
        let w = weight / total;
        let range = BucketRange { start: cumulative, end: cumulative + coverage * w };
        if range.contains(n) {
            return Some(index);
        }
        cumulative += w;
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn fnv1a32_matches_the_published_fnv_vectors_for_ascii() {
        assert_eq!(fnv1a32(""), 0x811c_9dc5);
        assert_eq!(fnv1a32("a"), 0xe40c_292c);
        assert_eq!(fnv1a32("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn non_ascii_keys_hash_as_the_javascript_sdk_hashes_them() {
        // Computed by running GrowthBook's `hashFnv32a` and `hash` (sdk-js util.ts) under Node.
        assert_eq!(fnv1a32("é"), 0x6c0b_6c44);
        assert_eq!(fnv1a32("😀"), 0xcb31_c4b8);
        assert_eq!(hash("seed", "user-é", 2), Some(0.6674));
        assert_eq!(hash("exp", "😀👍", 2), Some(0.37));
        assert_eq!(hash("seed", "日本語", 1), Some(0.215));
    }

    #[test]
    fn the_decimal_form_of_the_inner_hash_is_what_javascript_prints() {
        for n in [0, 7, 10, 4_294_967_295, 1_000_000_000, 123_456_789] {
            assert_eq!(Fnv1a32::new().decimal(n).0, fnv1a32(&n.to_string()), "{n}");
        }
    }

    #[test]
    fn assign_is_growthbook_for_weights_that_sum_to_one() {
        let weights = [0.2, 0.3, 0.5];
        for key in (0..2_000).map(|i| format!("user-{i}")) {
            let n = hash("exp-seed", &key, 2).unwrap();
            let expected = choose_variation(n, &bucket_ranges(3, 0.6, Some(&weights)));
            assert_eq!(assign("exp-seed", &key, &weights, 0.6), expected, "{key}");
        }
    }

    #[test]
    fn weights_that_cannot_split_traffic_assign_nobody() {
        for weights in [&[][..], &[0.0, 0.0], &[1.0, -1.0, 1.0], &[f64::NAN, 1.0], &[f64::INFINITY, 1.0]] {
            assert_eq!(assign("s", "k", weights, 1.0), None, "{weights:?}");
        }
    }

    #[test]
    fn a_variant_with_zero_weight_gets_nobody() {
        assert!((0..1_000).all(|i| assign("s", &i.to_string(), &[1.0, 0.0, 1.0], 1.0) != Some(1)));
    }

    fn weights() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(0.05f64..1.0, 2..=6)
    }

    proptest! {
        #[test]
        fn assignment_is_deterministic_and_within_the_variants(
            seed in "[a-z0-9-]{1,40}", key in "\\PC{0,40}", weights in weights(), coverage in 0.0f64..=1.0,
        ) {
            let first = assign(&seed, &key, &weights, coverage);
            prop_assert_eq!(first, assign(&seed, &key, &weights, coverage));
            prop_assert!(first.is_none_or(|v| v < weights.len()));
        }

        #[test]
        fn full_coverage_assigns_everyone_and_zero_coverage_nobody(key in "\\PC{0,40}", weights in weights()) {
            prop_assert!(assign("seed", &key, &weights, 1.0).is_some());
            prop_assert!(assign("seed", &key, &weights, 0.0).is_none());
        }

        #[test]
        fn raising_coverage_never_moves_an_exposed_user(
            key in "[a-z0-9]{1,20}", weights in weights(), low in 0.0f64..=1.0, high in 0.0f64..=1.0,
        ) {
            let (low, high) = if low <= high { (low, high) } else { (high, low) };
            if let Some(variant) = assign("seed", &key, &weights, low) {
                prop_assert_eq!(assign("seed", &key, &weights, high), Some(variant));
            }
        }

        #[test]
        fn scaling_the_weights_changes_nothing(key in "\\PC{0,20}", weights in weights(), scale in 0.1f64..100.0) {
            let scaled: Vec<f64> = weights.iter().map(|w| w * scale).collect();
            // Scaling may move a range boundary by an ulp; hashes sit on a grid of 1e-4, so the
            // only keys that could differ are exactly on a boundary, which the grid makes rare.
            let n = hash("seed", &key, 2).unwrap();
            let total: f64 = weights.iter().sum();
            let on_boundary = weights.iter().scan(0.0, |c, w| { *c += w / total; Some(*c) }).any(|b| (b - n).abs() < 1e-9);
            if !on_boundary {
                prop_assert_eq!(assign("seed", &key, &weights, 1.0), assign("seed", &key, &scaled, 1.0));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn shares_follow_the_weights_over_many_keys(
            seed in "[a-z0-9]{8}", weights in weights(), coverage in 0.2f64..=1.0,
        ) {
            const KEYS: usize = 20_000;
            let mut counts = vec![0usize; weights.len()];
            let mut unexposed = 0usize;
            for i in 0..KEYS {
                match assign(&seed, &format!("user-{i}"), &weights, coverage) {
                    Some(v) => counts[v] += 1,
                    None => unexposed += 1,
                }
            }
            let total: f64 = weights.iter().sum();
            // Each share has a standard deviation of at most 0.0036 over 20,000 keys; 0.02 is over
            // five of them, so a failure means a biased hash, not bad luck.
            let exposed_share = 1.0 - unexposed as f64 / KEYS as f64;
            prop_assert!((exposed_share - coverage).abs() < 0.02, "exposed {exposed_share} for coverage {coverage}");
            for (count, weight) in counts.iter().zip(&weights) {
                let share = *count as f64 / KEYS as f64;
                let expected = coverage * weight / total;
                prop_assert!((share - expected).abs() < 0.02, "share {share}, expected {expected}");
            }
        }
    }
}
