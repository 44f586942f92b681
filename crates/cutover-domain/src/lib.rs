//! Cutover's domain: the types every other layer speaks, parsed once and valid by construction.
//!
//! Nothing in this crate performs IO. Handlers parse input into these types; stores persist them.
#![forbid(unsafe_code)]

pub mod access;
mod audit;
pub mod diff;
mod error;
pub mod experiments;
mod names;
pub mod net;
mod page;
pub mod pools;
pub mod queue;
mod role;
pub mod rollouts;
pub mod secrets;
mod targets;
mod timestamp;
mod token;
mod value;
mod version;

pub use access::{EnvironmentRefusal, EnvironmentScope};
pub use audit::AuditObject;
pub use error::{DomainError, FieldError};
pub use experiments::{
    Coverage, ExperimentAction, ExperimentDraft, ExperimentName, ExperimentSeed, ExperimentStatus, Hypothesis,
    IllegalTransition, Lifecycle, NewExperiment, Variant, Variants,
};
pub use names::{ArtifactKey, ArtifactKind, EnvironmentName, MetricName, TargetName, WorkspaceName};
pub use page::{Cursor, PageLimit};
pub use role::{Access, Role};
pub use targets::{DeploymentTarget, DeploymentTargets};
pub use timestamp::Timestamp;
pub use token::{TokenDigest, TokenHash, TokenSecret};
pub use value::{Content, ValueType};
pub use version::VersionNumber;

/// Limits that are part of the product's contract; the configurable ones have defaults here.
pub mod limits {
    /// Default maximum number of environments in one workspace (configurable per server).
    pub const DEFAULT_MAX_ENVIRONMENTS: u32 = 100;
    /// Maximum deployment targets per environment.
    pub const MAX_TARGETS: usize = 1_000;
    /// Maximum size of one version's content, serialised.
    pub const MAX_CONTENT_BYTES: usize = 512 * 1024;
    /// Maximum length of free text fields (descriptions, messages, reasons).
    pub const MAX_TEXT_CHARS: usize = 4_096;
    /// Maximum number of environment names in one request: a token's scope, a version's
    /// environment set, a promotion's targets.
    pub const MAX_ENVIRONMENTS_PER_REQUEST: usize = 100;
}

/// Checks a free-text field: at most [`limits::MAX_TEXT_CHARS`] characters, no control
/// characters other than newlines and tabs.
pub fn check_text(field: &'static str, text: &str) -> Result<(), DomainError> {
    if text.chars().count() > limits::MAX_TEXT_CHARS {
        return Err(DomainError::invalid(field, format!("must be at most {} characters", limits::MAX_TEXT_CHARS)));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
        return Err(DomainError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Checks a short label (a token's name): 1 to 100 characters of free text.
pub fn check_label(field: &'static str, text: &str) -> Result<(), DomainError> {
    if text.trim().is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if text.chars().count() > 100 {
        return Err(DomainError::invalid(field, "must be at most 100 characters"));
    }
    check_text(field, text)
}

/// Longest targeting key (who a resolve or an event is about), in characters.
pub const MAX_TARGETING_KEY_CHARS: usize = 256;

/// Checks a targeting key: 1 to [`MAX_TARGETING_KEY_CHARS`] characters, not blank, no control
/// characters (a NUL cannot even be stored by PostgreSQL).
pub fn check_targeting_key(field: &'static str, key: &str) -> Result<(), DomainError> {
    if key.trim().is_empty() || key.chars().count() > MAX_TARGETING_KEY_CHARS || key.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            field,
            format!("must be 1 to {MAX_TARGETING_KEY_CHARS} characters without control characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targeting_keys_are_one_to_256_characters_without_control_characters() {
        for good in ["u", "user-42", "ünïcödé ✓", &"x".repeat(256), &"é".repeat(256)] {
            assert_eq!(check_targeting_key("k", good), Ok(()), "{good:?}");
        }
        for bad in ["", "   ", "a\0b", "tab\there", "new\nline", "\u{7f}", "\u{85}", &"x".repeat(257)] {
            assert!(check_targeting_key("k", bad).is_err(), "{bad:?}");
        }
    }
}
