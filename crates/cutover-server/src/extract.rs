//! Our own extractors: the same as axum's, but every rejection answers in the one error shape.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use cutover_domain::{DomainError, FieldError};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use crate::error::ApiError;

/// A JSON body: `Content-Type: application/json`, within the body limit, well formed, an object
/// (serde would otherwise read a struct from an array of its fields), and matching the request
/// type exactly (unknown fields are refused).
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(ApiError::bad_request("invalid_body", "the body must be a JSON object"));
        }
        axum::Json::<T>::from_bytes(&bytes).map(|axum::Json(value)| Self(value)).map_err(json_rejection)
    }
}

/// A JSON body of any shape (an object or a bare array), with the same checks as [`Json`].
pub struct JsonValue(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for JsonValue {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        axum::Json::from_bytes(&bytes).map(|axum::Json(value)| Self(value)).map_err(json_rejection)
    }
}

/// The body of a request that says it is JSON.
async fn json_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let is_json = essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ));
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::bad_request("invalid_body", rejection.body_text())
        }
    })
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is larger than the server accepts",
    )
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
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
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

/// `?limit=&cursor=` of a paged list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^b[+-]?[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// `?limit=&cursor=&archived=` of a list ordered by key (artifacts).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyPageQuery {
    /// Items per page, 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^a[\s\S]+$")]
    pub cursor: Option<String>,
    /// `true`: the archived artifacts only; absent or `false`: those not archived.
    pub archived: Option<bool>,
}

impl KeyPageQuery {
    pub fn parse(
        &self,
    ) -> Result<(cutover_domain::PageLimit, Option<cutover_domain::Cursor>), cutover_domain::DomainError> {
        PageQuery { limit: self.limit, cursor: self.cursor.clone() }.parse()
    }
}

impl PageQuery {
    pub fn parse(
        &self,
    ) -> Result<(cutover_domain::PageLimit, Option<cutover_domain::Cursor>), cutover_domain::DomainError> {
        let limit = cutover_domain::PageLimit::parse(self.limit)?;
        let cursor = self.cursor.as_deref().map(cutover_domain::Cursor::parse).transpose()?;
        Ok((limit, cursor))
    }
}

/// A free-text field, checked, or empty when absent.
pub fn text(field: &'static str, value: Option<String>) -> Result<String, cutover_domain::DomainError> {
    let value = value.unwrap_or_default();
    cutover_domain::check_text(field, &value)?;
    Ok(value)
}

/// An environment name from the path; one that breaks the naming rule cannot exist.
pub fn environment_path(name: &str) -> Result<cutover_domain::EnvironmentName, crate::error::ApiError> {
    cutover_domain::EnvironmentName::parse(name)
        .map_err(|e| crate::error::ApiError::bad_request("invalid_path", format!("environment {e}")))
}

/// An artifact key from the (percent-decoded) path.
pub fn artifact_path(key: &str) -> Result<cutover_domain::ArtifactKey, crate::error::ApiError> {
    cutover_domain::ArtifactKey::parse(key)
        .map_err(|e| crate::error::ApiError::bad_request("invalid_path", format!("artifact {e}")))
}

/// A list of environment names from a request: at most
/// [`limits::MAX_ENVIRONMENTS_PER_REQUEST`](cutover_domain::limits::MAX_ENVIRONMENTS_PER_REQUEST),
/// each valid (400 naming every bad one), duplicates dropped, order kept.
pub fn environment_names(
    field: &'static str,
    names: Vec<String>,
) -> Result<Vec<cutover_domain::EnvironmentName>, cutover_domain::DomainError> {
    use cutover_domain::EnvironmentName;
    use cutover_domain::limits::MAX_ENVIRONMENTS_PER_REQUEST;
    if names.len() > MAX_ENVIRONMENTS_PER_REQUEST {
        return Err(cutover_domain::DomainError::invalid(
            field,
            format!("must list at most {MAX_ENVIRONMENTS_PER_REQUEST} environments"),
        ));
    }
    let mut unique: Vec<EnvironmentName> = Vec::with_capacity(names.len());
    let mut invalid = Vec::new();
    for name in names {
        match EnvironmentName::parse(&name) {
            Ok(parsed) if !unique.contains(&parsed) => unique.push(parsed),
            Ok(_) => {}
            Err(_) => invalid.push(format!("{name:?}")),
        }
    }
    if !invalid.is_empty() {
        return Err(cutover_domain::DomainError::invalid(
            field,
            format!("invalid environment names: {}", invalid.join(", ")),
        ));
    }
    Ok(unique)
}

/// The callback token a webhook receiver presents (`Authorization: Bearer <callback_token>`),
/// for the routes it reports on (rollout tasks, queue checks); 401 when there is none.
pub fn callback_token(headers: &axum::http::HeaderMap) -> Result<cutover_domain::rollouts::CallbackToken, ApiError> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| cutover_domain::rollouts::CallbackToken::presented(token.trim()))
        .ok_or_else(|| ApiError::unauthorized("missing callback token: send Authorization: Bearer <callback_token>"))
}
