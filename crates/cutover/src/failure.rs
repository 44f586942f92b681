//! How a failed command ends: one `error:` message on stderr and an exit code that tells
//! scripts what kind of failure it was.

use std::fmt;
use std::process::ExitCode;

use cutover_client::ClientError;
use serde_json::{Value, json};

use crate::output::{self, OutputFormat};

/// The server refused, or something else went wrong.
const EXIT_FAILURE: u8 = 1;
/// The command line cannot work as given (clap uses the same code for its own errors).
const EXIT_USAGE: u8 = 2;
/// No answer from the server.
const EXIT_UNREACHABLE: u8 = 3;
/// A rollout being watched stopped or paused: nothing happens until a person decides.
const EXIT_WAITING: u8 = 4;

/// A mistake in how the command was invoked, found before asking the server.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A watched rollout waits for a person (it is `stopped` or `paused`): not done, not failed.
#[derive(Debug)]
pub struct WaitingError(pub String);

impl fmt::Display for WaitingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WaitingError {}

/// Shorthand for returning a [`UsageError`].
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// `err`, with `hint` put in front of the server's message when the server refused with
/// `status`: what the refusal means for this command. Exit code and details are unchanged.
pub fn explain(err: ClientError, status: u16, hint: impl FnOnce() -> String) -> anyhow::Error {
    let refused = err.status() == Some(status);
    let err = anyhow::Error::new(err);
    if refused { err.context(hint()) } else { err }
}

/// Prints `err` to stderr (as the API's error shape under `--output json`) and picks the exit
/// code.
pub fn report(err: &anyhow::Error, format: OutputFormat) -> ExitCode {
    let (text, code) = describe(err);
    match format {
        OutputFormat::Table => output::note(text.trim_end()),
        OutputFormat::Json => output::note(&error_json(err).to_string()),
    }
    ExitCode::from(code)
}

/// A command line clap refused, under `--output json`: `{"error": {"code": "usage", ...}}` on
/// stderr and exit code 2, like clap's own.
pub fn report_usage_json(message: &str) -> ExitCode {
    output::note(&json!({"error": {"code": "usage", "message": message}}).to_string());
    ExitCode::from(EXIT_USAGE)
}

/// `err` in the API's one error shape, `{"error": {"code", "message", "details"?}}`: the
/// server's own code and details for a refusal, a code of the CLI's otherwise (`unreachable`,
/// `usage`, `waiting`, `unexpected_response`, `failed`). The message is the whole chain, as the
/// text form shows it.
fn error_json(err: &anyhow::Error) -> Value {
    let message = format!("{err:#}");
    let (code, details) = match err.downcast_ref::<ClientError>() {
        Some(ClientError::Api { code, details, .. }) => (code.as_str(), details.clone()),
        Some(ClientError::Transport { url, .. }) => ("unreachable", Some(json!({"server": url}))),
        Some(ClientError::InvalidServerUrl { .. } | ClientError::InvalidPathValue { .. }) => ("usage", None),
        Some(ClientError::Decode { .. }) => ("unexpected_response", None),
        None if err.is::<UsageError>() => ("usage", None),
        None if err.is::<WaitingError>() => ("waiting", None),
        None => ("failed", None),
    };
    let mut error = json!({"code": code, "message": message});
    if let Some(details) = details.filter(|d| !d.is_null()) {
        error["details"] = details;
    }
    json!({ "error": error })
}

/// The message for stderr, and the exit code.
fn describe(err: &anyhow::Error) -> (String, u8) {
    let mut text = format!("error: {err:#}\n");
    let Some(client_error) = err.downcast_ref::<ClientError>() else {
        let code = if err.is::<UsageError>() {
            EXIT_USAGE
        } else if err.is::<WaitingError>() {
            EXIT_WAITING
        } else {
            EXIT_FAILURE
        };
        return (text, code);
    };
    let code = match client_error {
        ClientError::Api { status, code, details, .. } => {
            text.push_str(&format!("  code: {code} (HTTP {status})\n"));
            if let Some(details) = details {
                text.push_str(&describe_details(details));
            }
            if *status == 401 {
                text.push_str(
                    "  a token works only with the server that issued it: check --server / CUTOVER_SERVER and \
                     --token / CUTOVER_TOKEN\n",
                );
            }
            EXIT_FAILURE
        }
        ClientError::Transport { .. } => {
            text.push_str("  is the server running? point --server or CUTOVER_SERVER at it\n");
            EXIT_UNREACHABLE
        }
        ClientError::InvalidServerUrl { .. } | ClientError::InvalidPathValue { .. } => EXIT_USAGE,
        ClientError::Decode { .. } => EXIT_FAILURE,
    };
    (text, code)
}

/// `details` as indented lines: one per field of an object, one per item of a list.
fn describe_details(details: &Value) -> String {
    let mut lines = String::new();
    match details {
        Value::Object(fields) => {
            for (name, value) in fields {
                lines.push_str(&format!("  {name}: {}\n", inline(value)));
            }
        }
        Value::Array(items) => {
            lines.push_str("  details:\n");
            for item in items {
                lines.push_str(&format!("    - {}\n", inline(item)));
            }
        }
        Value::Null => {}
        other => lines.push_str(&format!("  details: {}\n", inline(other))),
    }
    lines
}

/// Strings without their quotes; anything else as compact JSON.
fn inline(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use cutover_client::ClientError;

    use super::{
        EXIT_FAILURE, EXIT_UNREACHABLE, EXIT_USAGE, EXIT_WAITING, WaitingError, describe, describe_details, error_json,
        explain, usage,
    };

    #[test]
    fn a_refusal_shows_the_message_code_and_details_and_exits_1() {
        let err = anyhow::Error::new(ClientError::Api {
            status: 409,
            code: "conflict".into(),
            message: "environment \"production\" already exists".into(),
            details: Some(json!({"name": "production"})),
        });
        let (text, code) = describe(&err);
        assert_eq!(
            text,
            "error: environment \"production\" already exists\n  code: conflict (HTTP 409)\n  name: production\n"
        );
        assert_eq!(code, EXIT_FAILURE);
    }

    #[test]
    fn exit_codes_tell_usage_from_unreachable_from_other_failures() {
        let unreachable = anyhow::Error::new(ClientError::Transport {
            url: "http://127.0.0.1:7300".into(),
            reason: "connection refused".into(),
        });
        assert_eq!(describe(&unreachable).1, EXIT_UNREACHABLE);
        assert_eq!(describe(&usage("no token")).1, EXIT_USAGE);
        assert_eq!(describe(&anyhow::anyhow!("disk full")).1, EXIT_FAILURE);
        assert_eq!(describe(&WaitingError("rollout r1 is paused".into()).into()).1, EXIT_WAITING);
    }

    #[test]
    fn a_hint_goes_in_front_of_the_refusal_it_explains_only() {
        let stale = || ClientError::Api {
            status: 412,
            code: "precondition_failed".into(),
            message: "the pin changed".into(),
            details: None,
        };
        let (text, code) = describe(&explain(stale(), 412, || "nothing was written".into()));
        assert_eq!(text, "error: nothing was written: the pin changed\n  code: precondition_failed (HTTP 412)\n");
        assert_eq!(code, EXIT_FAILURE);
        let (text, _) = describe(&explain(stale(), 409, || "unused".into()));
        assert!(text.starts_with("error: the pin changed\n"), "{text}");
    }

    #[test]
    fn object_details_are_one_line_per_field() {
        let details = json!({"field": "name", "conflicts": ["prod", "staging"]});
        let text = describe_details(&details);
        let mut lines: Vec<_> = text.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, ["  conflicts: [\"prod\",\"staging\"]", "  field: name"]);
    }

    #[test]
    fn list_details_are_one_line_per_item() {
        assert_eq!(describe_details(&json!(["a", 1])), "  details:\n    - a\n    - 1\n");
    }

    #[test]
    fn under_json_a_refusal_keeps_the_servers_code_and_details() {
        let err = explain(
            ClientError::Api {
                status: 409,
                code: "conflict".into(),
                message: "taken".into(),
                details: Some(json!({"environments": ["production"]})),
            },
            409,
            || "nothing was published".into(),
        );
        assert_eq!(
            error_json(&err),
            json!({"error": {"code": "conflict", "message": "nothing was published: taken", "details": {"environments": ["production"]}}})
        );
    }

    #[test]
    fn under_json_the_clis_own_failures_get_codes_of_their_own() {
        let unreachable = anyhow::Error::new(ClientError::Transport {
            url: "http://127.0.0.1:7300".into(),
            reason: "connection refused".into(),
        });
        assert_eq!(
            error_json(&unreachable),
            json!({"error": {
                "code": "unreachable",
                "message": "could not reach http://127.0.0.1:7300: connection refused",
                "details": {"server": "http://127.0.0.1:7300"}
            }})
        );
        assert_eq!(error_json(&usage("no token")), json!({"error": {"code": "usage", "message": "no token"}}));
        assert_eq!(
            error_json(&WaitingError("rollout r1 is paused".into()).into()),
            json!({"error": {"code": "waiting", "message": "rollout r1 is paused"}})
        );
        assert_eq!(
            error_json(&anyhow::anyhow!("disk full")),
            json!({"error": {"code": "failed", "message": "disk full"}})
        );
    }
}
