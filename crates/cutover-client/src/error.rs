//! [`ClientError`]: everything a call can fail with, each with a message fit for a person.

use std::error::Error as _;
use std::io;

use cutover_api::ErrorBody;
use reqwest::StatusCode;
use serde_json::Value;

/// How much of a body that is not the error shape goes into a message.
const SNIPPET_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the request and said why, in its error shape. Also used, with code
    /// `unexpected_response`, when a failure status came without that shape (e.g. from a proxy).
    #[error("{message}")]
    Api {
        status: u16,
        /// Machine-readable: `invalid_field`, `not_found`, `conflict`, `unauthorized`, ...
        code: String,
        message: String,
        details: Option<Value>,
    },
    /// No answer: the server is down, unreachable, or the connection broke.
    #[error("could not reach {url}: {reason}")]
    Transport { url: String, reason: String },
    /// The server answered with success, but not with the JSON the route promises.
    #[error("unexpected answer from {url}: {reason}")]
    Decode { url: String, reason: String },
    /// A name, key or id that no route can address (empty, `.` or `..`).
    #[error("{value:?} cannot be used as a name, key or id")]
    InvalidPathValue { value: String },
    /// The URL given to [`Client::new`](crate::Client::new) cannot address a server.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidServerUrl { url: String, reason: String },
}

impl ClientError {
    /// The HTTP status of a refusal; `None` when no answer came.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn transport(server: &str, err: &reqwest::Error) -> Self {
        Self::Transport { url: server.to_owned(), reason: transport_reason(err) }
    }

    pub(crate) fn from_response(status: StatusCode, body: &[u8]) -> Self {
        if let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) {
            return Self::Api {
                status: status.as_u16(),
                code: error.code,
                message: error.message,
                details: error.details,
            };
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let message = if text.is_empty() {
            format!("the server answered {status}")
        } else {
            let snippet: String = text.chars().take(SNIPPET_CHARS).collect();
            format!("the server answered {status}: {snippet}")
        };
        Self::Api { status: status.as_u16(), code: "unexpected_response".to_owned(), message, details: None }
    }
}

/// reqwest's own message ("error sending request for url ...") says nothing a person can act
/// on; the cause is at the bottom of the source chain.
fn transport_reason(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".to_owned();
    }
    let mut innermost = None;
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return "connection refused".to_owned(),
                io::ErrorKind::ConnectionReset => return "connection reset".to_owned(),
                io::ErrorKind::TimedOut => return "timed out".to_owned(),
                _ => {}
            }
        }
        innermost = Some(cause);
        source = cause.source();
    }
    innermost.map_or_else(|| err.to_string(), ToString::to_string)
}
