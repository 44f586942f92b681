//! Our own extractors: the same as axum's, but every rejection answers in the one error shape.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use cutover_domain::{DomainError, FieldError};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body: `Content-Type: application/json`, within the body limit, well formed, and
/// matching the request type exactly (unknown fields are refused).
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let text = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => ApiError::bad_request("invalid_body", text),
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request("malformed_json", text),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than the server accepts",
        ),
        other => ApiError::bad_request("invalid_body", other.body_text()),
    }
}

/// Path parameters, percent-decoded (an artifact key's `/` travels as `%2F`).
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection: PathRejection| ApiError::bad_request("invalid_path", rejection.body_text()))
    }
}

/// Query parameters; unknown ones are refused so that a typo does not pass silently.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| ApiError::bad_request("invalid_query", rejection.body_text()))
    }
}

/// A body or query value parsed by a domain rule, blamed on the field it came from: a bad value
/// answers `invalid_field` with `details.field` naming that field, whatever the rule calls it
/// (an artifact key's rule says `key`; in a rollout the field is `artifact`).
pub fn field<T>(field: &'static str, parsed: Result<T, DomainError>) -> Result<T, DomainError> {
    parsed.map_err(|error| match error {
        DomainError::Invalid(FieldError { message, .. }) => DomainError::invalid(field, message),
    })
}
