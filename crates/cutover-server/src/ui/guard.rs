//! What every UI request passes: a state-changing request must come from our own pages (its
//! `Origin` is this host) and carry the session's CSRF token (a form field `csrf` or the
//! `X-CSRF-Token` header). Every answer gets a strict Content-Security-Policy.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::page::UiError;
use super::session;

/// Larger than any form of ours; the body limit of the whole app applies too.
const MAX_FORM_BYTES: usize = 1024 * 1024;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub async fn guard(request: Request, next: Next) -> Response {
    let request = if matches!(*request.method(), Method::GET | Method::HEAD) {
        request
    } else {
        match check(request).await {
            Ok(request) => request,
            Err(refusal) => return refusal.into_response(),
        }
    };
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

fn forbidden(message: &str) -> UiError {
    UiError::Api(crate::error::ApiError::new(StatusCode::FORBIDDEN, "csrf", message.to_owned()))
}

/// The request, body restored, if its origin and CSRF token are right.
async fn check(request: Request) -> Result<Request, UiError> {
    let (parts, body) = request.into_parts();
    if !same_origin(&parts.headers) {
        return Err(forbidden("this request did not come from a Cutover page (its Origin is not this server)"));
    }
    // Signing in is the one form without a session; its Origin check is its protection.
    if parts.uri.path() == "/sign-in" {
        return Ok(Request::from_parts(parts, body));
    }
    let expected = session::cookie(&parts.headers)
        .map(session::csrf_token)
        .ok_or_else(|| UiError::SignIn { htmx: parts.headers.contains_key("hx-request") })?;
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| UiError::Api(crate::error::ApiError::bad_request("invalid_body", "the form is too large")))?;
    let from_header = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let presented = from_header.or_else(|| {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .ok()?
            .into_iter()
            .find_map(|(name, value)| (name == "csrf").then_some(value))
    });
    let valid = presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_bytes())));
    if !valid {
        return Err(forbidden("this form's CSRF token is missing or wrong: reload the page and try again"));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Whether `Origin` names this server (the host the browser addressed).
fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let (Some(origin), Some(host)) = (origin, host) else { return false };
    let authority = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    use super::same_origin;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("host", host.parse().unwrap());
        if let Some(origin) = origin {
            headers.insert("origin", origin.parse().unwrap());
        }
        headers
    }

    #[test]
    fn only_this_host_is_the_same_origin() {
        assert!(same_origin(&headers(Some("http://127.0.0.1:7300"), "127.0.0.1:7300")));
        assert!(same_origin(&headers(Some("https://cutover.example"), "cutover.example")));
        assert!(!same_origin(&headers(Some("http://evil.example"), "127.0.0.1:7300")));
        assert!(!same_origin(&headers(Some("http://127.0.0.1:7301"), "127.0.0.1:7300")));
        assert!(!same_origin(&headers(Some("null"), "127.0.0.1:7300")));
        assert!(!same_origin(&headers(None, "127.0.0.1:7300")));
    }
}
