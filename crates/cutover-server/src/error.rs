//! The one error type of the HTTP API and its one JSON shape.
//!
//! Every failure a handler can meet converts into [`ApiError`] through `?`. The caller's mistakes
//! become 4xx with a stable machine-readable `code`; a database that cannot be reached is a 503
//! `unavailable` with `Retry-After`; anything else is logged here, once, and answered with a 500
//! that says nothing about internals.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cutover_api::{ErrorBody, ErrorDetail};
use cutover_domain::DomainError;
use cutover_store::StoreError;
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// What a 503 asks the client to wait, in seconds: the store probes an unreachable database
/// twice a second, so a retry after this is the first that can work.
pub const RETRY_AFTER_SECONDS: u32 = 1;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: None }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503 `unavailable`: the database cannot be reached.
    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database is not reachable; retry later")
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; the server log has details")
    }
}

impl From<DomainError> for ApiError {
    fn from(err: DomainError) -> Self {
        let field = err.field().to_owned();
        Self::bad_request("invalid_field", err.to_string()).with_details(json!({ "field": field }))
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => Self::not_found(format!("{what} not found")),
            StoreError::NotFoundMany { what, names } => {
                Self::not_found(format!("{what} not found: {}", names.join(", ")))
                    .with_details(json!({ "missing": names }))
            }
            StoreError::Invalid(domain) => domain.into(),
            StoreError::Conflict { message, details } => {
                Self { status: StatusCode::CONFLICT, code: "conflict", message, details }
            }
            StoreError::IllegalTransition(illegal) => {
                Self::new(StatusCode::CONFLICT, "illegal_transition", illegal.to_string())
                    .with_details(json!({ "status": illegal.status.as_str(), "action": illegal.action.as_str() }))
            }
            StoreError::IllegalControl(illegal) => {
                Self::new(StatusCode::CONFLICT, "illegal_transition", illegal.to_string())
                    .with_details(json!({ "state": illegal.state.as_str(), "control": illegal.control.as_str() }))
            }
            StoreError::LimitReached(message) => Self::new(StatusCode::CONFLICT, "limit_reached", message),
            StoreError::Archived(message) => Self::new(StatusCode::CONFLICT, "artifact_archived", message),
            StoreError::InUse { message, details } => {
                Self::new(StatusCode::CONFLICT, "artifact_in_use", message).with_details(details)
            }
            StoreError::Forbidden(message) => Self::forbidden(message),
            e @ StoreError::PreconditionFailed { current, .. } => {
                Self::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", e.to_string())
                    .with_details(json!({ "revision": current }))
            }
            StoreError::Unavailable(cause) => {
                // The store logs the outage once, when it starts.
                tracing::debug!(cause, "answering 503: the database is not reachable");
                Self::unavailable()
            }
            other => {
                tracing::error!(error = %other, "store error");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail { code: self.code.to_owned(), message: self.message, details: self.details },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_database_is_a_503_with_retry_after_in_the_one_shape() {
        let response = ApiError::from(StoreError::Unavailable("connection refused".into())).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "1");
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({"error": {"code": "unavailable", "message": "the database is not reachable; retry later"}})
        );
    }
}
