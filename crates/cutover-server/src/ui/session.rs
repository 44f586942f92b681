//! Signing in with an API token, the session cookie, and the [`Session`] every page extracts.
//!
//! The cookie holds 256 random bits; the database keeps only their sha256, with an expiry. A
//! session acts exactly as its token (same role, same environment scope, through [`Auth`]), and
//! ends when its token is revoked. The CSRF token of a session is derived from the cookie (a
//! one-way hash, so pages can carry it without carrying the cookie).

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cutover_domain::{Access, Timestamp, TokenSecret};
use sha2::{Digest, Sha256};

use super::page::{UiError, render};
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

pub const COOKIE: &str = "cutover_session";
/// How long a session lasts; signing in again starts a new one.
const SESSION_HOURS: i64 = 12;

/// A signed-in browser: the token's [`Auth`], and the CSRF token its forms carry.
pub struct Session {
    pub auth: Auth,
    pub csrf: String,
}

/// The session cookie's value, if the request has one.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .filter(|value| !value.is_empty())
}

/// The CSRF token of the session whose cookie is `cookie`.
pub fn csrf_token(cookie: &str) -> String {
    hex::encode(Sha256::digest(format!("cutover-ui-csrf:{cookie}").as_bytes()))
}

impl FromRequestParts<AppState> for Session {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let sign_in = || UiError::SignIn { htmx: parts.headers.contains_key("hx-request") };
        let secret = cookie(&parts.headers).and_then(TokenSecret::parse).ok_or_else(sign_in)?;
        let token = state.store.ui_session_token(&secret.hash()).await.map_err(ApiError::from)?.ok_or_else(sign_in)?;
        let principal = state.tokens.authenticate(&token).await.map_err(ApiError::from)?.ok_or_else(sign_in)?;
        Ok(Self { auth: Auth(principal), csrf: csrf_token(secret.expose()) })
    }
}

impl Session {
    /// Whether this session's token may write (its role; the environment scope is checked by
    /// the store on each write). Pages show write controls only then.
    pub fn can_write(&self) -> bool {
        self.auth.0.token.role.allows(Access::Write)
    }

    /// Whether the token may change what is live in `environment` (role, scope, protection aside).
    pub fn can_change(&self, environment: impl AsRef<str>) -> bool {
        self.can_write() && self.auth.0.may_touch(environment.as_ref())
    }
}

#[derive(askama::Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    error: Option<String>,
}

pub async fn sign_in_page() -> Result<Response, UiError> {
    render(StatusCode::OK, &SignInPage { error: None })
}

#[derive(serde::Deserialize)]
pub struct SignInForm {
    token: String,
}

/// Checks the token like any API request would, then opens a session for it.
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SignInForm>,
) -> Result<Response, UiError> {
    let refused = |message: &str| render(StatusCode::UNAUTHORIZED, &SignInPage { error: Some(message.to_owned()) });
    let Some(token) = TokenSecret::parse(form.token.trim()) else {
        return refused("that is not a Cutover token (they start with cutover_)");
    };
    let Some(principal) = state.tokens.authenticate(&token.hash()).await? else {
        return refused("unknown or revoked token");
    };
    if !principal.token.role.allows(Access::Read) {
        return refused("an sdk token can only resolve flags; sign in with a viewer, editor or owner token");
    }
    let session = TokenSecret::generate();
    let expires = Timestamp::from_micros(Timestamp::now().as_micros() + SESSION_HOURS * 3_600_000_000);
    state.store.create_ui_session(&session.hash(), &principal.token.id, expires).await.map_err(ApiError::from)?;
    let secure = if https(&state, &headers) { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        session.expose(),
        SESSION_HOURS * 3600
    );
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|_| ApiError::internal())?);
    Ok(response)
}

/// Ends the session (the guard has checked its CSRF token) and forgets the cookie.
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, UiError> {
    if let Some(secret) = cookie(&headers).and_then(TokenSecret::parse) {
        state.store.end_ui_session(&secret.hash()).await.map_err(ApiError::from)?;
    }
    let mut response = Redirect::to("/sign-in").into_response();
    let expired = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&expired).map_err(|_| ApiError::internal())?);
    Ok(response)
}

/// Served over https: the configured public URL says so, or the proxy in front does.
fn https(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.public_url().starts_with("https://")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}
