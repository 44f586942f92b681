//! What an experiment is made of, validated once when it is created.

use std::collections::HashSet;
use std::fmt;

use rand::RngCore;
use serde::{Serialize, Serializer};

use super::bucketing;
use crate::{DomainError, FieldError, MetricName, check_label, check_text};

/// Fewest and most variants an experiment may split traffic between (the control included).
pub const MIN_VARIANTS: usize = 2;
pub const MAX_VARIANTS: usize = 20;
/// Most guardrail metrics an experiment may watch besides its primary metric.
pub const MAX_GUARDRAIL_METRICS: usize = 10;

/// An experiment's name: a label of 1 to 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ExperimentName(String);

impl ExperimentName {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        check_label("name", input)?;
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the experiment is expected to show: free text, possibly empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Hypothesis(String);

impl Hypothesis {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        check_text("hypothesis", input)?;
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The share of the environment's traffic that takes part, `0..=1`. The rest gets the control
/// (the pinned version) and is not exposed.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Coverage(f64);

impl Coverage {
    pub const FULL: Coverage = Coverage(1.0);

    pub fn parse(coverage: f64) -> Result<Self, DomainError> {
        if !(0.0..=1.0).contains(&coverage) {
            return Err(DomainError::invalid("coverage", "must be a number between 0 and 1"));
        }
        Ok(Self(coverage))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// The random string users are hashed with, fixed when the experiment is created: 128 bits, hex.
/// A fresh seed per experiment keeps one experiment's split independent of another's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ExperimentSeed(String);

impl ExperimentSeed {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        Self(hex::encode(bytes))
    }

    /// Reads a seed back from the store. Any string hashes; nothing to check.
    pub fn from_stored(seed: String) -> Self {
        Self(seed)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExperimentSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One arm of an experiment: a version of the artifact and the share of covered traffic it gets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Variant {
    pub version: i64,
    pub weight: f64,
}

/// An experiment's arms, the first being the control: 2 to 20 distinct versions, weights positive
/// and normalised to sum to 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Variants {
    versions: Vec<i64>,
    weights: Vec<f64>,
}

impl Variants {
    /// `weights` are relative (`[1, 1]` is 50/50) and normalised here; `None` splits equally.
    pub fn parse(versions: &[i64], weights: Option<&[f64]>) -> Result<Self, DomainError> {
        let invalid = |message: String| DomainError::invalid("variants", message);
        if !(MIN_VARIANTS..=MAX_VARIANTS).contains(&versions.len()) {
            return Err(invalid(format!("must list between {MIN_VARIANTS} and {MAX_VARIANTS} variants")));
        }
        if let Some(bad) = versions.iter().find(|&&v| v < 1) {
            return Err(invalid(format!("{bad} is not a version number (they start at 1)")));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = versions.iter().find(|v| !seen.insert(**v)) {
            return Err(invalid(format!("version {dup} is listed twice; variants must be distinct versions")));
        }
        let weights = match weights {
            None => bucketing::equal_weights(versions.len()),
            Some(w) if w.len() != versions.len() => {
                return Err(invalid(format!("{} weights given for {} variants", w.len(), versions.len())));
            }
            Some(w) => {
                if let Some(bad) = w.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
                    return Err(invalid(format!("weight {bad} is not a positive number")));
                }
                let total: f64 = w.iter().sum();
                if !total.is_finite() {
                    return Err(invalid("weights are too large to add up".to_owned()));
                }
                w.iter().map(|w| w / total).collect()
            }
        };
        Ok(Self { versions: versions.to_vec(), weights })
    }

    /// Reads variants back from the store exactly as they were stored (weights are not
    /// normalised again, so assignment stays bit-for-bit what it was).
    pub fn from_stored(variants: impl IntoIterator<Item = Variant>) -> Self {
        let (versions, weights) = variants.into_iter().map(|v| (v.version, v.weight)).unzip();
        Self { versions, weights }
    }

    pub fn len(&self) -> usize {
        self.versions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<Variant> {
        Some(Variant { version: *self.versions.get(index)?, weight: self.weights[index] })
    }

    pub fn iter(&self) -> impl Iterator<Item = Variant> + '_ {
        self.versions.iter().zip(&self.weights).map(|(&version, &weight)| Variant { version, weight })
    }

    pub fn control(&self) -> Option<Variant> {
        self.get(0)
    }

    pub fn versions(&self) -> &[i64] {
        &self.versions
    }

    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The index of the variant for `version`: how a `complete` action's winner is checked.
    pub fn position(&self, version: i64) -> Option<usize> {
        self.versions.iter().position(|&v| v == version)
    }

    /// The variant index `targeting_key` is assigned to, or `None` outside coverage.
    pub fn assign(&self, seed: &ExperimentSeed, targeting_key: &str, coverage: Coverage) -> Option<usize> {
        bucketing::assign(seed.as_str(), targeting_key, &self.weights, coverage.get())
    }
}

impl Serialize for Variants {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// A new experiment as the caller describes it, before any rule is checked. The control (the first
/// variant) is filled in by the caller (from the pinned version) before parsing.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentDraft {
    pub name: String,
    pub hypothesis: String,
    pub versions: Vec<i64>,
    pub weights: Option<Vec<f64>>,
    pub coverage: Option<f64>,
    pub primary_metric: String,
    pub guardrail_metrics: Vec<String>,
}

/// A new experiment that satisfies every rule, with its seed drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct NewExperiment {
    pub name: ExperimentName,
    pub hypothesis: Hypothesis,
    pub variants: Variants,
    pub coverage: Coverage,
    pub seed: ExperimentSeed,
    pub primary_metric: MetricName,
    pub guardrail_metrics: Vec<MetricName>,
}

impl NewExperiment {
    pub fn parse(draft: ExperimentDraft) -> Result<Self, DomainError> {
        let primary_metric = metric("primary_metric", &draft.primary_metric)?;
        if draft.guardrail_metrics.len() > MAX_GUARDRAIL_METRICS {
            return Err(DomainError::invalid(
                "guardrail_metrics",
                format!("must list at most {MAX_GUARDRAIL_METRICS} metrics"),
            ));
        }
        let mut seen = HashSet::from([primary_metric.as_str()]);
        if let Some(dup) = draft.guardrail_metrics.iter().find(|m| !seen.insert(m.as_str())) {
            return Err(DomainError::invalid(
                "guardrail_metrics",
                format!("{dup:?} is listed twice or is the primary metric"),
            ));
        }
        let guardrail_metrics =
            draft.guardrail_metrics.iter().map(|m| metric("guardrail_metrics", m)).collect::<Result<_, _>>()?;
        Ok(Self {
            name: ExperimentName::parse(&draft.name)?,
            hypothesis: Hypothesis::parse(&draft.hypothesis)?,
            variants: Variants::parse(&draft.versions, draft.weights.as_deref())?,
            coverage: draft.coverage.map_or(Ok(Coverage::FULL), Coverage::parse)?,
            seed: ExperimentSeed::generate(),
            primary_metric,
            guardrail_metrics,
        })
    }
}

/// A metric name, with errors reported under the field the caller used.
fn metric(field: &'static str, name: &str) -> Result<MetricName, DomainError> {
    MetricName::parse(name).map_err(|e| match e {
        DomainError::Invalid(FieldError { message, .. }) => DomainError::invalid(field, message),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn draft() -> ExperimentDraft {
        ExperimentDraft {
            name: "Shorter system prompt".into(),
            hypothesis: "A shorter prompt answers as well, faster.".into(),
            versions: vec![3, 4],
            weights: None,
            coverage: Some(0.5),
            primary_metric: "ticket.resolved".into(),
            guardrail_metrics: vec!["latency_ms".into()],
        }
    }

    fn refused(draft: ExperimentDraft) -> DomainError {
        NewExperiment::parse(draft).unwrap_err()
    }

    #[test]
    fn a_valid_draft_becomes_an_experiment_with_equal_weights_and_a_fresh_seed() {
        let a = NewExperiment::parse(draft()).unwrap();
        let b = NewExperiment::parse(draft()).unwrap();
        assert_eq!(a.variants.weights(), [0.5, 0.5]);
        assert_eq!(a.variants.control(), Some(Variant { version: 3, weight: 0.5 }));
        assert_eq!(a.coverage.get(), 0.5);
        assert_eq!(a.seed.as_str().len(), 32);
        assert_ne!(a.seed, b.seed);
    }

    #[test]
    fn coverage_defaults_to_everyone() {
        let experiment = NewExperiment::parse(ExperimentDraft { coverage: None, ..draft() }).unwrap();
        assert_eq!(experiment.coverage, Coverage::FULL);
    }

    #[test]
    fn weights_are_normalised_to_sum_to_one() {
        let variants = Variants::parse(&[1, 2, 3], Some(&[1.0, 1.0, 2.0])).unwrap();
        assert_eq!(variants.weights(), [0.25, 0.25, 0.5]);
    }

    #[test]
    fn between_two_and_twenty_variants_are_accepted() {
        let versions: Vec<i64> = (1..=21).collect();
        assert!(Variants::parse(&versions[..1], None).is_err());
        assert!(Variants::parse(&versions[..2], None).is_ok());
        assert!(Variants::parse(&versions[..20], None).is_ok());
        let err = Variants::parse(&versions, None).unwrap_err();
        assert_eq!(err.field(), "variants");
        assert!(err.to_string().contains("between 2 and 20"), "{err}");
    }

    #[test]
    fn variants_must_be_distinct_versions() {
        let err = Variants::parse(&[4, 5, 4], None).unwrap_err();
        assert!(err.to_string().contains("version 4 is listed twice"), "{err}");
        assert!(Variants::parse(&[0, 1], None).is_err());
    }

    #[test]
    fn weights_must_be_positive_numbers_one_per_variant() {
        for weights in [&[0.5, 0.0][..], &[1.0, -1.0], &[f64::NAN, 1.0], &[f64::INFINITY, 1.0], &[0.5]] {
            assert!(Variants::parse(&[1, 2], Some(weights)).is_err(), "{weights:?}");
        }
        assert!(Variants::parse(&[1, 2], Some(&[f64::MAX, f64::MAX])).is_err());
    }

    #[test]
    fn coverage_must_be_between_zero_and_one() {
        for ok in [0.0, 0.25, 1.0] {
            assert!(Coverage::parse(ok).is_ok(), "{ok}");
        }
        for bad in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
            assert_eq!(Coverage::parse(bad).unwrap_err().field(), "coverage", "{bad}");
        }
    }

    #[test]
    fn name_and_hypothesis_follow_the_text_rules() {
        assert_eq!(refused(ExperimentDraft { name: " ".into(), ..draft() }).field(), "name");
        assert_eq!(refused(ExperimentDraft { name: "x".repeat(101), ..draft() }).field(), "name");
        assert_eq!(refused(ExperimentDraft { hypothesis: "a\u{0}b".into(), ..draft() }).field(), "hypothesis");
        assert!(NewExperiment::parse(ExperimentDraft { hypothesis: String::new(), ..draft() }).is_ok());
    }

    #[test]
    fn metric_errors_name_the_field_they_came_from() {
        assert_eq!(refused(ExperimentDraft { primary_metric: "Bad Name".into(), ..draft() }).field(), "primary_metric");
        let bad_guardrail = ExperimentDraft { guardrail_metrics: vec!["ok".into(), "no way".into()], ..draft() };
        assert_eq!(refused(bad_guardrail).field(), "guardrail_metrics");
    }

    #[test]
    fn guardrails_are_distinct_few_and_not_the_primary_metric() {
        let repeats_primary = ExperimentDraft { guardrail_metrics: vec!["ticket.resolved".into()], ..draft() };
        assert_eq!(refused(repeats_primary).field(), "guardrail_metrics");
        let twice = ExperimentDraft { guardrail_metrics: vec!["a".into(), "a".into()], ..draft() };
        assert_eq!(refused(twice).field(), "guardrail_metrics");
        let many = ExperimentDraft { guardrail_metrics: (0..11).map(|i| format!("m{i}")).collect(), ..draft() };
        assert_eq!(refused(many).field(), "guardrail_metrics");
    }

    #[test]
    fn stored_variants_come_back_unchanged() {
        let parsed = Variants::parse(&[7, 8, 9], Some(&[0.1, 0.2, 0.3])).unwrap();
        assert_eq!(Variants::from_stored(parsed.iter()), parsed);
        assert_eq!(parsed.position(9), Some(2));
        assert_eq!(parsed.position(1), None);
    }

    #[test]
    fn variants_serialise_as_a_list_of_versions_and_weights() {
        let variants = Variants::parse(&[1, 2], None).unwrap();
        let json = serde_json::to_value(&variants).unwrap();
        assert_eq!(json, serde_json::json!([{"version": 1, "weight": 0.5}, {"version": 2, "weight": 0.5}]));
    }

    proptest! {
        #[test]
        fn parsed_weights_are_positive_and_sum_to_one(weights in prop::collection::vec(1e-6f64..1e6, 2..=20)) {
            let versions: Vec<i64> = (1..=weights.len() as i64).collect();
            let variants = Variants::parse(&versions, Some(&weights)).unwrap();
            prop_assert!(variants.weights().iter().all(|w| *w > 0.0));
            prop_assert!((variants.weights().iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }
}
