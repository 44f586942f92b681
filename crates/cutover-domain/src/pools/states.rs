//! The words builds and agents are stored and shown with.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DomainError;

macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in the order of the documentation.
            pub const ALL: &'static [$name] = &[$(Self::$variant),+];

            /// The name stored in the database and shown by the API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = DomainError;

            fn from_str(text: &str) -> Result<Self, DomainError> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    DomainError::invalid($what, format!("{text:?} is not one of {}", names.join(", ")))
                })
            }
        }
    };
}

vocabulary!(
    /// What a build does to an instance.
    BuildTransition, "transition" {
        /// Creates (or starts again) the instance with a preset.
        Start => "start",
        /// Stops it, keeping what it has.
        Stop => "stop",
        /// Deletes it; a succeeded delete soft-deletes the instance row.
        Delete => "delete",
    }
);

vocabulary!(
    /// Where a build's job is.
    JobStatus, "status" {
        /// Waiting for the provisioner.
        Pending => "pending",
        /// The provisioner runs it.
        Running => "running",
        /// Done.
        Succeeded => "succeeded",
        /// The provisioner failed (or timed out).
        Failed => "failed",
        /// Cancelled before it ran (a pending create of a superseded version).
        Canceled => "canceled",
    }
);

impl JobStatus {
    /// Whether the job is over: `succeeded`, `failed` or `canceled`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }
}

vocabulary!(
    /// The lifecycle state an instance's agent reports.
    AgentLifecycle, "state" {
        /// Registered by the build; not started yet.
        Created => "created",
        /// Starting up (scripts running).
        Starting => "starting",
        /// Ready for a user.
        Ready => "ready",
        /// Start-up failed.
        Error => "error",
        /// Shutting down.
        ShuttingDown => "shutting_down",
        /// Stopped.
        Off => "off",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_round_trips_and_unknown_ones_name_the_choices() {
        for t in BuildTransition::ALL {
            assert_eq!(t.as_str().parse::<BuildTransition>(), Ok(*t));
        }
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for a in AgentLifecycle::ALL {
            assert_eq!(a.as_str().parse::<AgentLifecycle>(), Ok(*a));
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
        let err = "on".parse::<AgentLifecycle>().unwrap_err();
        assert_eq!(err.field(), "state");
        assert!(err.to_string().contains("shutting_down"), "{err}");
    }

    #[test]
    fn only_finished_jobs_are_terminal() {
        let terminal: Vec<_> = JobStatus::ALL.iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, [&JobStatus::Succeeded, &JobStatus::Failed, &JobStatus::Canceled]);
    }
}
