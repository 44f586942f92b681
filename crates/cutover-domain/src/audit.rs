//! What the audit log records events about: one list, used by the store when it writes, by the
//! API when it checks a filter, and by the CLI for `--object-type`.

use std::fmt;
use std::str::FromStr;

use crate::DomainError;

/// The type of object an audit event is about. Versions and pins are audited on their
/// artifact, so that one filter shows an artifact's whole story.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditObject {
    Workspace,
    Environment,
    Artifact,
    Token,
    Experiment,
    Rollout,
    Pool,
    Queue,
}

impl AuditObject {
    /// Every type, in the order documents list them.
    pub const ALL: [AuditObject; 8] = [
        Self::Workspace,
        Self::Environment,
        Self::Artifact,
        Self::Token,
        Self::Experiment,
        Self::Rollout,
        Self::Pool,
        Self::Queue,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Workspace => "workspace",
            Self::Environment => "environment",
            Self::Artifact => "artifact",
            Self::Token => "token",
            Self::Experiment => "experiment",
            Self::Rollout => "rollout",
            Self::Pool => "pool",
            Self::Queue => "queue",
        }
    }

    /// Every type's name, in the order of [`AuditObject::ALL`].
    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.into_iter().map(Self::as_str)
    }
}

impl fmt::Display for AuditObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditObject {
    type Err = DomainError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw).ok_or_else(|| {
            DomainError::invalid(
                "object_type",
                format!("{raw:?} is not one of {}", Self::names().collect::<Vec<_>>().join(", ")),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_back_from_its_name_and_nothing_else_does() {
        for object in AuditObject::ALL {
            assert_eq!(object.as_str().parse::<AuditObject>().unwrap(), object);
        }
        for bad in ["", "version", "pin", "Artifact", "artifact "] {
            let err = bad.parse::<AuditObject>().unwrap_err();
            assert!(
                err.to_string().contains("workspace, environment, artifact, token, experiment, rollout, pool, queue"),
                "{err}"
            );
        }
    }
}
