//! What runs a rollout's tasks, and the steps each operation is made of.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secrets::SealedSecret;
use crate::{DomainError, TokenHash, check_label};

/// Longest time a task may run before it is stopped and failed.
pub const MAX_TASK_TIMEOUT_SECONDS: u32 = 24 * 60 * 60;
/// Default time a `command` or `webhook` task may take.
pub const DEFAULT_TASK_TIMEOUT_SECONDS: u32 = 600;
/// Most steps in a rollout plan.
pub const MAX_STEPS: usize = 20;

/// The executor of a rollout's tasks as a client asks for it. A `command` executor is one the
/// operator declared in the server's configuration, named here: no request can choose a
/// program, its arguments or any path on the host (DESIGN rule 8). The server turns a request
/// into an [`ExecutorSpec`] once it has checked the name, the timeout and the webhook's address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExecutorRequest {
    /// Runs the operator's program declared under `[executors.<name>]`.
    Command {
        /// The name under `[executors.<name>]`.
        name: String,
        /// Seconds before the program is killed and the task failed; at most the executor's
        /// ceiling, which is also the default (600 when the ceiling is larger).
        #[serde(default)]
        timeout_seconds: Option<u32>,
    },
    /// POSTs a signed JSON payload per task; the receiver reports the result to the task's
    /// callback endpoint.
    Webhook {
        /// `http://` or `https://` URL receiving the payload.
        url: String,
        /// Signs every delivery (HMAC-SHA256); never shown back, encrypted at rest.
        secret: WebhookSecret,
        /// Seconds the receiver has to report a result before the task fails.
        #[serde(default = "default_timeout")]
        timeout_seconds: u32,
    },
    /// Waits for a person: `POST …/tasks/{id}/complete` or `…/fail`.
    Manual {},
}

impl ExecutorRequest {
    /// Checks what can be checked without the server's configuration: a name, an http(s) URL,
    /// a secret of 8 to 256 characters without control characters, a timeout between 1 second
    /// and a day.
    pub fn validate(&self) -> Result<(), DomainError> {
        match self {
            Self::Command { name, timeout_seconds } => {
                check_executor_name("executor.name", name)?;
                timeout_seconds.map_or(Ok(()), check_timeout)
            }
            Self::Webhook { url, secret, timeout_seconds } => {
                let length = secret.0.chars().count();
                if !(WebhookSecret::MIN_CHARS..=WebhookSecret::MAX_CHARS).contains(&length) {
                    return Err(DomainError::invalid(
                        "executor.secret",
                        format!("must be {} to {} characters", WebhookSecret::MIN_CHARS, WebhookSecret::MAX_CHARS),
                    ));
                }
                if secret.0.chars().any(char::is_control) {
                    return Err(DomainError::invalid("executor.secret", "must not contain control characters"));
                }
                if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2_048 {
                    return Err(DomainError::invalid("executor.url", "must be an http:// or https:// URL"));
                }
                if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(DomainError::invalid("executor.url", "must not contain whitespace"));
                }
                check_timeout(*timeout_seconds)
            }
            Self::Manual {} => Ok(()),
        }
    }
}

fn check_timeout(seconds: u32) -> Result<(), DomainError> {
    if seconds == 0 || seconds > MAX_TASK_TIMEOUT_SECONDS {
        return Err(DomainError::invalid(
            "executor.timeout_seconds",
            format!("must be between 1 and {MAX_TASK_TIMEOUT_SECONDS}"),
        ));
    }
    Ok(())
}

/// Checks the name of a declared executor: `^[a-z0-9][a-z0-9_-]{0,62}$`.
pub fn check_executor_name(field: &'static str, name: &str) -> Result<(), DomainError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid { Ok(()) } else { Err(DomainError::invalid(field, "must match ^[a-z0-9][a-z0-9_-]{0,62}$")) }
}

/// The executor of a rollout's tasks as stored with each operation, fixed when the rollout is
/// created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExecutorSpec {
    /// Runs the operator's declared executor of this name once per task, with the task
    /// described in its environment and the content in a file. The name is looked up again in
    /// the configuration at every run: an executor the operator removed runs nothing.
    Command {
        /// The declared executor's name.
        executor: String,
        /// Seconds before the program is killed and the task failed.
        timeout_seconds: u32,
    },
    /// POSTs a signed payload per task to an address the server's policy allows.
    Webhook {
        /// Where deliveries go.
        url: String,
        /// The signing key, encrypted with the server's secret key.
        secret: SealedSecret,
        /// Seconds the receiver has to report a result.
        timeout_seconds: u32,
    },
    /// Waits for a person.
    Manual {},
}

fn default_timeout() -> u32 {
    DEFAULT_TASK_TIMEOUT_SECONDS
}

impl ExecutorSpec {
    /// The executor's kind, as stored on each operation.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Command { .. } => "command",
            Self::Webhook { .. } => "webhook",
            Self::Manual {} => "manual",
        }
    }

    /// Seconds a run may take, `None` for a manual task (it waits for a person).
    pub fn timeout_seconds(&self) -> Option<u32> {
        match self {
            Self::Command { timeout_seconds, .. } | Self::Webhook { timeout_seconds, .. } => Some(*timeout_seconds),
            Self::Manual {} => None,
        }
    }
}

/// The key a webhook's deliveries are signed with. Stored with the operation, never returned by
/// the API; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// Shortest secret accepted.
    pub const MIN_CHARS: usize = 8;
    /// Longest secret accepted.
    pub const MAX_CHARS: usize = 256;

    /// A secret as given; [`ExecutorRequest::validate`] checks it.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, to sign with.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// What a webhook receiver presents to report on one run of a task: 256 random bits, new for
/// every run, so that a run's token stops working once another run has started. Only its hash
/// is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackToken(String);

impl CallbackToken {
    /// What every callback token starts with.
    pub const PREFIX: &'static str = "cutover_callback_";

    /// A fresh token, for one run.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{}{}", Self::PREFIX, URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// What a receiver presented; its shape is not checked (a wrong token simply matches nothing).
    pub fn presented(token: &str) -> Self {
        Self(token.to_owned())
    }

    /// The token itself, to send to the receiver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the store keeps.
    pub fn hash(&self) -> TokenHash {
        TokenHash::from_stored(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

impl fmt::Debug for CallbackToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallbackToken([redacted])")
    }
}

/// The steps of each operation: labels, 1 to [`MAX_STEPS`], unique; `["apply"]` when absent.
pub fn parse_steps(steps: Option<Vec<String>>) -> Result<Vec<String>, DomainError> {
    let steps = steps.unwrap_or_else(|| vec!["apply".to_owned()]);
    if steps.is_empty() || steps.len() > MAX_STEPS {
        return Err(DomainError::invalid("steps", format!("must list 1 to {MAX_STEPS} steps")));
    }
    for (i, step) in steps.iter().enumerate() {
        check_label("steps", step)?;
        if steps[..i].contains(step) {
            return Err(DomainError::invalid("steps", format!("{step:?} is listed twice")));
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_from_tagged_json_with_defaults() {
        let command: ExecutorRequest = serde_json::from_str(r#"{"type": "command", "name": "deploy"}"#).unwrap();
        assert_eq!(command, ExecutorRequest::Command { name: "deploy".into(), timeout_seconds: None });
        assert_eq!(
            serde_json::from_str::<ExecutorRequest>(r#"{"type": "manual"}"#).unwrap(),
            ExecutorRequest::Manual {}
        );
        assert!(serde_json::from_str::<ExecutorRequest>(r#"{"type": "manual", "x": 1}"#).is_err());
        assert!(serde_json::from_str::<ExecutorRequest>(r#"{"type": "ssh"}"#).is_err());
    }

    #[test]
    fn a_request_cannot_name_a_program() {
        let error =
            serde_json::from_str::<ExecutorRequest>(r#"{"type": "command", "program": ["/bin/cat", "/etc/passwd"]}"#)
                .unwrap_err()
                .to_string();
        assert!(error.contains("program"), "{error}");
        let error = serde_json::from_str::<ExecutorRequest>(
            r#"{"type": "command", "name": "deploy", "program": ["/usr/bin/id"]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("unknown field `program`"), "{error}");
    }

    #[test]
    fn settings_are_validated() {
        let command = |name: &str, timeout_seconds| ExecutorRequest::Command { name: name.into(), timeout_seconds };
        assert!(command("deploy", None).validate().is_ok());
        assert!(command("deploy-eu_2", Some(1)).validate().is_ok());
        assert_eq!(command("", None).validate().unwrap_err().field(), "executor.name");
        assert_eq!(command("../bin/sh", None).validate().unwrap_err().field(), "executor.name");
        assert_eq!(command("Deploy", None).validate().unwrap_err().field(), "executor.name");
        assert_eq!(command("deploy", Some(0)).validate().unwrap_err().field(), "executor.timeout_seconds");
        assert_eq!(command("deploy", Some(86_401)).validate().unwrap_err().field(), "executor.timeout_seconds");
        let webhook = |url: &str, secret: &str| ExecutorRequest::Webhook {
            url: url.into(),
            secret: WebhookSecret::new(secret),
            timeout_seconds: 10,
        };
        assert!(webhook("https://deploy.example/hook", "s3cret-key").validate().is_ok());
        assert_eq!(webhook("ftp://x", "s3cret-key").validate().unwrap_err().field(), "executor.url");
        assert_eq!(webhook("http://a b", "s3cret-key").validate().unwrap_err().field(), "executor.url");
        assert_eq!(webhook("https://x", "short").validate().unwrap_err().field(), "executor.secret");
        assert_eq!(webhook("https://x", &"k".repeat(257)).validate().unwrap_err().field(), "executor.secret");
        assert_eq!(webhook("https://x", "s3cret\nkey").validate().unwrap_err().field(), "executor.secret");
        assert_eq!(webhook("https://x", "s3cret\u{0}key").validate().unwrap_err().field(), "executor.secret");
    }

    #[test]
    fn a_webhook_secret_is_never_printed() {
        let webhook: ExecutorRequest =
            serde_json::from_str(r#"{"type": "webhook", "url": "https://x", "secret": "hunter2hunter2"}"#).unwrap();
        assert!(!format!("{webhook:?}").contains("hunter2"), "{webhook:?}");
        assert!(serde_json::from_str::<ExecutorRequest>(r#"{"type": "webhook", "url": "https://x"}"#).is_err());
    }

    #[test]
    fn callback_tokens_are_distinct_and_compared_by_hash() {
        let (a, b) = (CallbackToken::generate(), CallbackToken::generate());
        assert_ne!(a, b);
        assert!(a.hash().matches(&CallbackToken::presented(a.expose()).hash()));
        assert!(!a.hash().matches(&b.hash()));
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn steps_default_to_apply_and_must_be_unique_labels() {
        assert_eq!(parse_steps(None).unwrap(), ["apply"]);
        assert_eq!(parse_steps(Some(vec!["drain".into(), "apply".into()])).unwrap(), ["drain", "apply"]);
        assert!(parse_steps(Some(vec![])).is_err());
        assert!(parse_steps(Some(vec!["a".into(), "a".into()])).is_err());
        assert!(parse_steps(Some(vec!["".into()])).is_err());
        assert!(parse_steps(Some((0..21).map(|i| i.to_string()).collect())).is_err());
    }
}
