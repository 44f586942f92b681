//! What every page shares: the layout's header, rendering, errors as pages.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use cutover_store::StoreError;

use super::session::Session;
use crate::error::ApiError;

/// The header of every signed-in page: who is signed in, and the CSRF token of its forms.
pub struct Layout {
    pub title: String,
    pub section: &'static str,
    pub who: String,
    pub role: String,
    pub scope: String,
    pub csrf: String,
    pub can_write: bool,
    /// Whether the page listens to the change stream (pages of the past do not).
    pub live: bool,
}

impl Layout {
    pub fn new(session: &Session, section: &'static str, title: impl Into<String>) -> Self {
        let token = &session.auth.0.token;
        let scope = if token.environments.is_empty() {
            "all environments".to_owned()
        } else {
            token.environments.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
        };
        Self {
            title: title.into(),
            section,
            who: token.name.clone(),
            role: token.role.to_string(),
            scope,
            csrf: session.csrf.clone(),
            can_write: session.can_write(),
            live: true,
        }
    }
}

/// A failed UI request: sign in first, or an API error shown as a page with its status.
#[derive(Debug)]
pub enum UiError {
    SignIn { htmx: bool },
    Api(ApiError),
}

impl From<ApiError> for UiError {
    fn from(err: ApiError) -> Self {
        Self::Api(err)
    }
}

impl From<StoreError> for UiError {
    fn from(err: StoreError) -> Self {
        Self::Api(err.into())
    }
}

impl From<cutover_domain::DomainError> for UiError {
    fn from(err: cutover_domain::DomainError) -> Self {
        Self::Api(err.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    reason: String,
    message: String,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            // htmx follows HX-Redirect; a plain navigation follows the 303.
            Self::SignIn { htmx: true } => {
                let mut response = StatusCode::UNAUTHORIZED.into_response();
                response.headers_mut().insert("hx-redirect", HeaderValue::from_static("/sign-in"));
                response
            }
            Self::SignIn { htmx: false } => Redirect::to("/sign-in").into_response(),
            Self::Api(err) => {
                let page = ErrorPage {
                    status: err.status.as_u16(),
                    reason: err.status.canonical_reason().unwrap_or("Error").to_owned(),
                    message: err.message,
                };
                match page.render() {
                    Ok(html) => (err.status, Html(html)).into_response(),
                    Err(_) => err.status.into_response(),
                }
            }
        }
    }
}

/// Renders a template as an HTML answer.
pub fn render(status: StatusCode, template: &impl Template) -> Result<Response, UiError> {
    let html = template.render().map_err(|e| {
        tracing::error!(error = %e, "a UI template failed to render");
        UiError::Api(ApiError::internal())
    })?;
    let mut response = (status, Html(html)).into_response();
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Cookie"));
    Ok(response)
}

pub fn ok(template: &impl Template) -> Result<Response, UiError> {
    render(StatusCode::OK, template)
}

/// An artifact key as one URL path segment (keys may hold `/`).
pub fn key_path(key: &str) -> String {
    key.replace('/', "%2F")
}

/// A timestamp as people read it, in UTC to the second.
pub fn when(at: impl std::borrow::Borrow<cutover_domain::Timestamp>) -> String {
    let text = at.borrow().to_rfc3339();
    let text = text.split('.').next().unwrap_or(&text).trim_end_matches('Z');
    format!("{} UTC", text.replace('T', " "))
}
