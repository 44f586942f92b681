//! Static files, compiled into the binary. Vendored files carry their version in their name and
//! are cached for a year; our own CSS and JS are revalidated on every load.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// htmx and its SSE extension, as published on the npm registry (see static/vendor/README.md).
pub const HTMX: &str = "vendor/htmx-2.0.11.min.js";
pub const HTMX_SSE: &str = "vendor/htmx-ext-sse-2.2.4.min.js";

/// `(name, content type, bytes, immutable)`.
pub const FILES: &[(&str, &str, &[u8], bool)] = &[
    (HTMX, "text/javascript; charset=utf-8", include_bytes!("../../static/vendor/htmx-2.0.11.min.js"), true),
    (HTMX_SSE, "text/javascript; charset=utf-8", include_bytes!("../../static/vendor/htmx-ext-sse-2.2.4.min.js"), true),
    ("ui.css", "text/css; charset=utf-8", include_bytes!("../../static/ui.css"), false),
    ("ui.js", "text/javascript; charset=utf-8", include_bytes!("../../static/ui.js"), false),
];

pub async fn serve(Path(file): Path<String>) -> Response {
    let Some((_, content_type, bytes, immutable)) = FILES.iter().find(|(name, ..)| *name == file) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let cache = if *immutable { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut response = (*bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn sha256(name: &str) -> String {
        let (_, _, bytes, _) = FILES.iter().find(|(n, ..)| *n == name).unwrap();
        hex::encode(Sha256::digest(bytes))
    }

    /// The vendored files are exactly the published ones (npm `htmx.org@2.0.11` `dist/htmx.min.js`,
    /// `htmx-ext-sse@2.2.4` `dist/sse.min.js`): a change to them is a deliberate upgrade.
    #[test]
    fn vendored_files_are_the_published_ones() {
        assert_eq!(sha256(HTMX), "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717");
        assert_eq!(sha256(HTMX_SSE), "98a46496de0c3605fbffdce9167ba427bdd9553184f83f149c261891a92c0136");
    }
}
