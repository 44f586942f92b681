//! A queue's name and settings as a client gives them, checked, and the policy they make.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::model::{BatchSizing, Conflicts, Grouping, QueuePolicy, Split};
use crate::{DomainError, EnvironmentName};

/// Most checks a queue runs at once.
pub const MAX_BUDGET: u32 = 64;
/// Most requests in one batch.
pub const MAX_BATCH_SIZE: u32 = 100;
/// Longest a request waits for its batch to fill.
pub const MAX_WAIT_SECONDS: u32 = 3_600;
/// Most times a single request's failed check is run again before it is refused.
pub const MAX_FLAKE_RETRIES: u32 = 5;
/// Most artifacts one change request changes.
pub const MAX_CHANGES: usize = 50;
/// Longest message of a change request, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4_096;

/// A queue's name: the pattern of environment names, unique in its workspace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct QueueName(String);

impl QueueName {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        EnvironmentName::parse(input)
            .map(|name| Self(name.into_string()))
            .map_err(|e| DomainError::invalid("name", e.to_string().trim_start_matches("name: ").to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a queue schedules, as its owner set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueSettings {
    /// W: checks running at once.
    pub budget: u32,
    pub max_batch_size: u32,
    pub max_wait_seconds: u32,
    pub max_flake_retries: u32,
}

impl QueueSettings {
    /// Defaults: 4 checks at once, batches of up to 8, 60 s wait, one retry of a flaky check.
    pub const DEFAULT: QueueSettings =
        QueueSettings { budget: 4, max_batch_size: 8, max_wait_seconds: 60, max_flake_retries: 1 };

    /// Checks each setting's range (`None`: the default).
    pub fn parse(
        budget: Option<u32>,
        max_batch_size: Option<u32>,
        max_wait_seconds: Option<u32>,
        max_flake_retries: Option<u32>,
    ) -> Result<Self, DomainError> {
        let d = Self::DEFAULT;
        let within = |field: &'static str, value: Option<u32>, default: u32, min: u32, max: u32| {
            let value = value.unwrap_or(default);
            if (min..=max).contains(&value) {
                Ok(value)
            } else {
                Err(DomainError::invalid(field, format!("must be between {min} and {max}")))
            }
        };
        Ok(Self {
            budget: within("budget", budget, d.budget, 1, MAX_BUDGET)?,
            max_batch_size: within("max_batch_size", max_batch_size, d.max_batch_size, 1, MAX_BATCH_SIZE)?,
            max_wait_seconds: within("max_wait_seconds", max_wait_seconds, d.max_wait_seconds, 0, MAX_WAIT_SECONDS)?,
            max_flake_retries: within(
                "max_flake_retries",
                max_flake_retries,
                d.max_flake_retries,
                0,
                MAX_FLAKE_RETRIES,
            )?,
        })
    }

    /// The policy the server plans with (the simulator's `speculative` strategy; docs/queue.md):
    /// conflict-aware speculation; batches of related requests, sized for the failure rate the
    /// queue's recent changes show (at most `max_batch_size`); a failed batch split into its
    /// single requests at once.
    pub fn policy(&self) -> QueuePolicy {
        QueuePolicy {
            budget: self.budget,
            max_batch_size: self.max_batch_size,
            max_wait: Duration::from_secs(u64::from(self.max_wait_seconds)),
            conflicts: Conflicts::Footprint,
            split: Split::Singles,
            max_flake_retries: self.max_flake_retries,
            hedge: false,
            batch_sizing: BatchSizing::FollowFailures,
            grouping: Grouping::Related,
        }
    }
}

/// Checks a change request's message: at most [`MAX_MESSAGE_CHARS`], no control characters but
/// newlines and tabs.
pub fn check_message(message: &str) -> Result<(), DomainError> {
    if message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(DomainError::invalid("message", format!("must be at most {MAX_MESSAGE_CHARS} characters")));
    }
    if message.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
        return Err(DomainError::invalid("message", "must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_when_absent_and_refuse_out_of_range_values_naming_the_field() {
        assert_eq!(QueueSettings::parse(None, None, None, None).unwrap(), QueueSettings::DEFAULT);
        let set = QueueSettings::parse(Some(16), Some(1), Some(0), Some(0)).unwrap();
        assert_eq!((set.budget, set.max_batch_size, set.max_wait_seconds, set.max_flake_retries), (16, 1, 0, 0));
        for (args, field) in [
            ((Some(0), None, None, None), "budget"),
            ((Some(65), None, None, None), "budget"),
            ((None, Some(0), None, None), "max_batch_size"),
            ((None, Some(101), None, None), "max_batch_size"),
            ((None, None, Some(3_601), None), "max_wait_seconds"),
            ((None, None, None, Some(6)), "max_flake_retries"),
        ] {
            let err = QueueSettings::parse(args.0, args.1, args.2, args.3).unwrap_err();
            assert!(err.to_string().starts_with(field), "{err}");
        }
    }

    #[test]
    fn names_follow_the_environment_pattern_and_messages_refuse_control_characters() {
        assert_eq!(QueueName::parse("prod-configs").unwrap().as_str(), "prod-configs");
        assert!(QueueName::parse("Prod").is_err());
        assert!(QueueName::parse("").is_err());
        assert!(check_message("fix: greeting\n\nlonger text\twith tab").is_ok());
        assert!(check_message("bell\u{7}").is_err());
        assert!(check_message(&"x".repeat(MAX_MESSAGE_CHARS + 1)).is_err());
    }
}
