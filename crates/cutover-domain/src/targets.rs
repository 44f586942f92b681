use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{DomainError, TargetName, limits};

/// Where an environment is deployed: a region, a cluster, a shard. Rollouts run one operation
/// per target; `config` is handed to the executors untouched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentTarget {
    pub name: TargetName,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
}

/// An environment's deployment targets: unique names, at most [`limits::MAX_TARGETS`], in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct DeploymentTargets(Vec<DeploymentTarget>);

impl DeploymentTargets {
    pub fn parse(targets: Vec<DeploymentTarget>) -> Result<Self, DomainError> {
        if targets.len() > limits::MAX_TARGETS {
            return Err(DomainError::invalid("targets", format!("must list at most {} targets", limits::MAX_TARGETS)));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = targets.iter().find(|t| !seen.insert(t.name.as_str())) {
            return Err(DomainError::invalid("targets", format!("{:?} is listed twice", dup.name.as_str())));
        }
        Ok(Self(targets))
    }

    pub fn as_slice(&self) -> &[DeploymentTarget] {
        &self.0
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "[]".to_owned())
    }

    /// Reads targets back from the store, where they were validated on the way in.
    pub fn from_stored(json: &str) -> Result<Self, serde_json::Error> {
        Ok(Self(serde_json::from_str(json)?))
    }
}

impl<'de> Deserialize<'de> for DeploymentTargets {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let targets = Vec::<DeploymentTarget>::deserialize(deserializer)?;
        Self::parse(targets).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn duplicate_target_names_are_refused() {
        let result: Result<DeploymentTargets, _> = serde_json::from_value(json!([{"name": "eu-1"}, {"name": "eu-1"}]));
        assert!(result.unwrap_err().to_string().contains("\"eu-1\" is listed twice"));
    }

    #[test]
    fn targets_keep_their_order_and_config() {
        let targets: DeploymentTargets =
            serde_json::from_value(json!([{"name": "us-1"}, {"name": "eu-1", "config": {"cluster": "c1"}}])).unwrap();
        let round: DeploymentTargets = serde_json::from_str(&targets.to_json()).unwrap();
        assert_eq!(round, targets);
        assert_eq!(targets.as_slice()[0].name.as_str(), "us-1");
    }

    #[test]
    fn unknown_fields_and_bad_names_are_refused() {
        assert!(serde_json::from_value::<DeploymentTargets>(json!([{"name": "eu", "zone": 1}])).is_err());
        assert!(serde_json::from_value::<DeploymentTargets>(json!([{"name": "EU"}])).is_err());
    }
}
