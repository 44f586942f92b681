//! A pool's definition: its name, the parameters of its preset, and how its reconciler treats
//! failures and old instances.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{DomainError, EnvironmentName};

/// Largest preset parameters object, serialised.
pub const MAX_PARAMETERS_BYTES: usize = 16 * 1024;
/// Seconds between retries after one failed build (multiplied by the failures in a row).
pub const DEFAULT_BACKOFF_SECONDS: u32 = 60;
/// Failed starts in a row after which a pool stops creating until resumed or a new version.
pub const DEFAULT_FAILURE_LIMIT: u32 = 3;

/// A pool's name, unique in its workspace: `^[a-z0-9][a-z0-9_-]{0,62}$`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PoolName(String);

impl PoolName {
    /// Checks the pattern (the same as environments').
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        EnvironmentName::parse(input)
            .map(|name| Self(name.into_string()))
            .map_err(|e| DomainError::invalid("name", e.to_string().trim_start_matches("name: ").to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The parameters of a preset (a size, a region): a JSON object of at most
/// [`MAX_PARAMETERS_BYTES`], handed to the provisioner with the version.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PresetParameters(Map<String, Value>);

impl PresetParameters {
    /// Checks that `value` is an object within the size limit.
    pub fn parse(value: Value) -> Result<Self, DomainError> {
        let Value::Object(map) = value else {
            return Err(DomainError::invalid("parameters", "must be a JSON object"));
        };
        if Value::Object(map.clone()).to_string().len() > MAX_PARAMETERS_BYTES {
            return Err(DomainError::invalid("parameters", format!("must be at most {MAX_PARAMETERS_BYTES} bytes")));
        }
        Ok(Self(map))
    }

    /// The object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

/// How a pool's reconciler treats failures and old instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSettings {
    /// Instances older than this are deleted and replaced (`None`: kept until claimed).
    pub ttl_seconds: Option<u32>,
    /// After `n` failed starts in a row, the next create waits `n × backoff_seconds` after the
    /// last build.
    pub backoff_seconds: u32,
    /// After this many failed starts in a row the pool stops creating (until resumed, or a new
    /// version is pinned).
    pub failure_limit: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self { ttl_seconds: None, backoff_seconds: DEFAULT_BACKOFF_SECONDS, failure_limit: DEFAULT_FAILURE_LIMIT }
    }
}

impl PoolSettings {
    /// Checks the bounds: a TTL of 1 minute to 30 days, a backoff of 1 second to 1 hour, a
    /// failure limit of 1 to 100.
    pub fn parse(ttl_seconds: Option<u32>, backoff_seconds: u32, failure_limit: u32) -> Result<Self, DomainError> {
        if ttl_seconds.is_some_and(|ttl| !(60..=30 * 24 * 3600).contains(&ttl)) {
            return Err(DomainError::invalid("ttl_seconds", "must be between 60 and 2592000 (30 days)"));
        }
        if !(1..=3600).contains(&backoff_seconds) {
            return Err(DomainError::invalid("backoff_seconds", "must be between 1 and 3600"));
        }
        if !(1..=100).contains(&failure_limit) {
            return Err(DomainError::invalid("failure_limit", "must be between 1 and 100"));
        }
        Ok(Self { ttl_seconds, backoff_seconds, failure_limit })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pool_names_follow_the_environment_pattern_and_name_the_field() {
        assert_eq!(PoolName::parse("ci-runners_2").unwrap().as_str(), "ci-runners_2");
        for bad in ["", "Runners", "-x", "a b", &"a".repeat(64)] {
            assert_eq!(PoolName::parse(bad).unwrap_err().field(), "name", "{bad}");
        }
    }

    #[test]
    fn parameters_are_a_bounded_object() {
        assert!(PresetParameters::parse(json!({"size": "large", "region": "eu"})).is_ok());
        for bad in [json!([1]), json!("x"), json!(null), json!({"blob": "x".repeat(MAX_PARAMETERS_BYTES)})] {
            assert_eq!(PresetParameters::parse(bad).unwrap_err().field(), "parameters");
        }
    }

    #[test]
    fn settings_are_bounded() {
        assert_eq!(PoolSettings::parse(None, 60, 3).unwrap(), PoolSettings::default());
        assert_eq!(PoolSettings::parse(Some(59), 60, 3).unwrap_err().field(), "ttl_seconds");
        assert_eq!(PoolSettings::parse(None, 0, 3).unwrap_err().field(), "backoff_seconds");
        assert_eq!(PoolSettings::parse(None, 60, 0).unwrap_err().field(), "failure_limit");
        assert_eq!(PoolSettings::parse(Some(3600), 3600, 100).unwrap().ttl_seconds, Some(3600));
    }
}
