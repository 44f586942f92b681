//! Values placed in a URL path, such as artifact keys, which may contain `/`.

use std::fmt::Write as _;

use crate::ClientError;

/// Percent-encodes `value` as one path segment: everything but RFC 3986's unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) is encoded, so `/`, `%`, `?` and `#` can neither split the segment nor
/// end the path.
///
/// Empty, `.` and `..` are refused: URL parsing would drop or resolve them (even encoded), and
/// the request would reach another route. No name or key of the API can take these values.
pub(crate) fn segment(value: &str) -> Result<String, ClientError> {
    if matches!(value, "" | "." | "..") {
        return Err(ClientError::InvalidPathValue { value: value.to_owned() });
    }
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    Ok(encoded)
}
