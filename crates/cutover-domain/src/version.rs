//! Version numbers: 1, 2, 3… per artifact, with no gaps.

use std::fmt;

use serde::Serialize;

use crate::DomainError;

/// The number of one version of an artifact: at least 1. Parsed at the edge, so the store
/// never sees a zero or negative number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct VersionNumber(i64);

impl VersionNumber {
    pub const FIRST: VersionNumber = VersionNumber(1);

    /// `field` names the input in the error (`n`, `version`, …).
    pub fn parse(field: &'static str, number: i64) -> Result<Self, DomainError> {
        if number < 1 {
            return Err(DomainError::invalid(field, "version numbers start at 1"));
        }
        Ok(Self(number))
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for VersionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq<i64> for VersionNumber {
    fn eq(&self, other: &i64) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_start_at_one() {
        assert_eq!(VersionNumber::parse("n", 1).unwrap(), VersionNumber::FIRST);
        assert_eq!(VersionNumber::parse("n", 42).unwrap().get(), 42);
        for bad in [0, -1, i64::MIN] {
            let err = VersionNumber::parse("n", bad).unwrap_err();
            assert_eq!(err.to_string(), DomainError::invalid("n", "version numbers start at 1").to_string());
        }
    }
}
