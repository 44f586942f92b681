//! Who may touch which environment: the one rule behind every route and store write.
//!
//! - A token limited to some environments acts only on those (reads included).
//! - A protected environment's live state changes only by an owner, or by a token limited to it
//!   (the on-call engineer's scoped token).

use std::fmt;

/// Why a token may not touch an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvironmentRefusal {
    /// The token is limited to other environments.
    OutOfScope(String),
    /// The environment is protected, and the token is neither an owner's nor limited to it.
    Protected(String),
}

impl fmt::Display for EnvironmentRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfScope(name) => write!(f, "this token is not allowed to act on environment {name:?}"),
            Self::Protected(name) => write!(
                f,
                "environment {name:?} is protected: only owners or tokens limited to it can change what is live there"
            ),
        }
    }
}

/// Whether a token limited to `limited_to` (none: all) may act on `environment`.
pub fn in_scope<'a>(limited_to: impl ExactSizeIterator<Item = &'a str>, environment: &str) -> bool {
    let mut limited_to = limited_to;
    limited_to.len() == 0 || limited_to.any(|name| name == environment)
}

/// What a token may do to environments: its owner status and the environments it is limited
/// to (empty: all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentScope {
    pub owner: bool,
    pub limited_to: Vec<String>,
}

impl EnvironmentScope {
    /// May the token act on `environment` at all (read it, resolve in it)?
    pub fn may_see(&self, environment: impl AsRef<str>) -> Result<(), EnvironmentRefusal> {
        let environment = environment.as_ref();
        if in_scope(self.limited_to.iter().map(String::as_str), environment) {
            Ok(())
        } else {
            Err(EnvironmentRefusal::OutOfScope(environment.to_owned()))
        }
    }

    /// May the token change what is live in `environment` (given whether it is protected)?
    pub fn may_change(&self, environment: &str, protected: bool) -> Result<(), EnvironmentRefusal> {
        self.may_see(environment)?;
        let limited_here = self.limited_to.iter().any(|name| name == environment);
        if protected && !self.owner && !limited_here {
            return Err(EnvironmentRefusal::Protected(environment.to_owned()));
        }
        Ok(())
    }

    /// Whether every environment in `names` is within scope; an empty list means "all
    /// environments", which only an unlimited token covers.
    pub fn covers(&self, names: &[crate::EnvironmentName]) -> bool {
        self.limited_to.is_empty()
            || (!names.is_empty() && names.iter().all(|name| self.may_see(name.as_str()).is_ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_touch_which_environment() {
        let scope = |owner: bool, limited: &[&str]| EnvironmentScope {
            owner,
            limited_to: limited.iter().map(|name| name.to_string()).collect(),
        };
        let out = |name: &str| Err(EnvironmentRefusal::OutOfScope(name.into()));
        let protected = |name: &str| Err(EnvironmentRefusal::Protected(name.into()));
        // (token, environment, protected) → may see, may change.
        let cases = [
            (scope(true, &[]), "prod", false, Ok(()), Ok(())),
            (scope(true, &[]), "prod", true, Ok(()), Ok(())),
            (scope(false, &[]), "dev", false, Ok(()), Ok(())),
            (scope(false, &[]), "prod", true, Ok(()), protected("prod")),
            (scope(false, &["prod"]), "prod", true, Ok(()), Ok(())),
            (scope(false, &["prod"]), "dev", false, out("dev"), out("dev")),
            (scope(true, &["dev"]), "prod", true, out("prod"), out("prod")),
            (scope(true, &["dev"]), "dev", true, Ok(()), Ok(())),
            (scope(false, &["dev", "prod"]), "prod", true, Ok(()), Ok(())),
        ];
        for (token, environment, is_protected, see, change) in cases {
            assert_eq!(token.may_see(environment), see, "{token:?} sees {environment}");
            assert_eq!(token.may_change(environment, is_protected), change, "{token:?} changes {environment}");
        }
    }

    #[test]
    fn refusals_say_why_in_one_wording() {
        assert_eq!(
            EnvironmentRefusal::OutOfScope("prod".into()).to_string(),
            "this token is not allowed to act on environment \"prod\""
        );
        assert_eq!(
            EnvironmentRefusal::Protected("prod".into()).to_string(),
            "environment \"prod\" is protected: only owners or tokens limited to it can change what is live there"
        );
    }

    #[test]
    fn only_an_unlimited_token_covers_all_environments() {
        let limited = EnvironmentScope { owner: true, limited_to: vec!["dev".into(), "prod".into()] };
        let name = |raw| crate::EnvironmentName::parse(raw).unwrap();
        assert!(limited.covers(&[name("dev")]));
        assert!(!limited.covers(&[name("dev"), name("qa")]));
        assert!(!limited.covers(&[]), "an empty list means every environment");
        assert!(EnvironmentScope::default().covers(&[]));
    }
}
