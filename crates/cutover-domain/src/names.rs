use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::DomainError;

/// The characters a name may contain after its first one (the first is always `[a-z0-9]`).
struct NameRule {
    field: &'static str,
    max_len: usize,
    extra: &'static [char],
    pattern: &'static str,
}

impl NameRule {
    fn check(&self, input: &str) -> Result<(), DomainError> {
        let invalid = |why: String| DomainError::invalid(self.field, format!("{why} (must match {})", self.pattern));
        let mut chars = input.chars();
        let Some(first) = chars.next() else {
            return Err(invalid("must not be empty".into()));
        };
        if input.len() > self.max_len {
            return Err(invalid(format!("must be at most {} characters", self.max_len)));
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(invalid(format!("{input:?} must start with a lowercase letter or digit")));
        }
        if let Some(bad) = chars.find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || self.extra.contains(c))) {
            return Err(invalid(format!("{input:?} contains {bad:?}")));
        }
        Ok(())
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $rule:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        /// Debug-formats as the quoted string it is, so `{:?}` in a message reads `"prod"`.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl $name {
            const RULE: NameRule = $rule;

            pub fn parse(input: &str) -> Result<Self, DomainError> {
                Self::RULE.check(input)?;
                Ok(Self(input.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// An environment's name: `^[a-z0-9][a-z0-9_-]{0,62}$`.
    EnvironmentName,
    NameRule { field: "name", max_len: 63, extra: &['_', '-'], pattern: "^[a-z0-9][a-z0-9_-]{0,62}$" }
);

name_type!(
    /// A workspace's name; same rule as environments.
    WorkspaceName,
    NameRule { field: "name", max_len: 63, extra: &['_', '-'], pattern: "^[a-z0-9][a-z0-9_-]{0,62}$" }
);

name_type!(
    /// A deployment target's name (a region, cluster, shard): `^[a-z0-9][a-z0-9._-]{0,62}$`.
    TargetName,
    NameRule { field: "targets.name", max_len: 63, extra: &['_', '-', '.'], pattern: "^[a-z0-9][a-z0-9._-]{0,62}$" }
);

name_type!(
    /// What an artifact is, for people and tools (`prompt`, `config`, `template`, `schema`):
    /// `^[a-z0-9][a-z0-9_-]{0,62}$`.
    ArtifactKind,
    NameRule { field: "kind", max_len: 63, extra: &['_', '-'], pattern: "^[a-z0-9][a-z0-9_-]{0,62}$" }
);

name_type!(
    /// An artifact's key: `^[a-z0-9][a-z0-9._/-]{0,127}$`.
    ArtifactKey,
    NameRule { field: "key", max_len: 128, extra: &['.', '_', '/', '-'], pattern: "^[a-z0-9][a-z0-9._/-]{0,127}$" }
);

name_type!(
    /// The name of a metric an experiment measures (`checkout.completed`, `revenue_usd`):
    /// `^[a-z0-9][a-z0-9._-]{0,62}$`.
    MetricName,
    NameRule { field: "metric", max_len: 63, extra: &['.', '_', '-'], pattern: "^[a-z0-9][a-z0-9._-]{0,62}$" }
);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn environment_names_follow_the_documented_pattern() {
        for ok in ["production", "dev-eu", "a", "0", "stage_2", &"a".repeat(63)] {
            assert!(EnvironmentName::parse(ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["", "Production", "-dev", "_dev", "dev eu", "dev.eu", "dév", &"a".repeat(64)] {
            assert!(EnvironmentName::parse(bad).is_err(), "{bad} should be invalid");
        }
    }

    #[test]
    fn artifact_keys_allow_dots_and_slashes_after_the_first_character() {
        for ok in ["prompts/support.system", "a", "checkout-v2_config", &"k".repeat(128)] {
            assert!(ArtifactKey::parse(ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["", "/abs", ".hidden", "Upper", "sp ace", &"k".repeat(129)] {
            assert!(ArtifactKey::parse(bad).is_err(), "{bad} should be invalid");
        }
    }

    #[test]
    fn metric_names_allow_dots_underscores_and_dashes() {
        for ok in ["checkout.completed", "revenue_usd", "p95-latency", "1"] {
            assert!(MetricName::parse(ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["", "Checkout", ".hidden", "a/b", "a b", &"m".repeat(64)] {
            assert!(MetricName::parse(bad).is_err(), "{bad} should be invalid");
        }
    }

    #[test]
    fn the_error_names_the_field_and_the_offending_character() {
        let err = EnvironmentName::parse("dev eu").unwrap_err();
        assert_eq!(err.field(), "name");
        assert!(err.to_string().contains("' '"), "{err}");
    }

    #[test]
    fn deserialising_an_invalid_name_fails() {
        let result: Result<ArtifactKey, _> = serde_json::from_str("\"Nope\"");
        assert!(result.is_err());
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_the_documented_regex(input in "\\PC{0,70}") {
            let matches = {
                let mut chars = input.chars();
                match chars.next() {
                    None => false,
                    Some(f) => (f.is_ascii_lowercase() || f.is_ascii_digit())
                        && input.len() <= 63
                        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'),
                }
            };
            prop_assert_eq!(EnvironmentName::parse(&input).is_ok(), matches);
        }

        #[test]
        fn valid_names_round_trip(input in "[a-z0-9][a-z0-9_-]{0,62}") {
            let name = EnvironmentName::parse(&input).unwrap();
            prop_assert_eq!(name.as_str(), input.as_str());
        }
    }
}
