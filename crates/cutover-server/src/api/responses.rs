//! The error answers routes share, as OpenAPI response sets: a route lists its successes and
//! what is particular to it (a 409 and why), then one set for the rest, e.g.
//! `responses((status = 200, body = Artifact), ReadErrors)`. Every error answer is the one
//! [`ErrorBody`](cutover_api::ErrorBody) shape; where a route lists a status a set also holds,
//! the route's own description wins because it is listed later.

use std::collections::BTreeMap;

use utoipa::IntoResponses;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder, Type};

/// One error answer of the shared sets.
#[derive(Clone, Copy)]
struct Failure {
    status: u16,
    description: &'static str,
}

const BAD_REQUEST: Failure = Failure {
    status: 400,
    description: "a path segment, query parameter, header or body field breaks a rule: `invalid_path`, \
                  `invalid_query`, `invalid_header`, `invalid_field` (with `details.field`), `invalid_body` or \
                  `malformed_json`",
};
const UNAUTHORIZED: Failure = Failure {
    status: 401,
    description: "missing, malformed, unknown or revoked token (`unauthorized`, with `WWW-Authenticate: Bearer`)",
};
const FORBIDDEN: Failure =
    Failure { status: 403, description: "the token's role or environment scope does not allow this (`forbidden`)" };
const NOT_FOUND: Failure = Failure { status: 404, description: "no such object in this workspace (`not_found`)" };
const PAYLOAD_TOO_LARGE: Failure =
    Failure { status: 413, description: "the body is larger than the server's `max_body_bytes` (`payload_too_large`)" };
const UNSUPPORTED_MEDIA_TYPE: Failure = Failure {
    status: 415,
    description: "the body was not sent with `Content-Type: application/json` (`unsupported_media_type`)",
};
const UNAVAILABLE: Failure = Failure {
    status: 503,
    description: "the database cannot be reached (`unavailable`); retry after `Retry-After` seconds",
};

fn error_body() -> RefOr<utoipa::openapi::schema::Schema> {
    RefOr::Ref(Ref::from_schema_name("ErrorBody"))
}

fn response(failure: Failure) -> RefOr<Response> {
    let mut response = ResponseBuilder::new()
        .description(failure.description)
        .content("application/json", ContentBuilder::new().schema(Some(error_body())).build());
    if failure.status == 503 {
        let seconds = utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
        response = response.header(
            "Retry-After",
            HeaderBuilder::new().schema(seconds).description(Some("seconds to wait before retrying")).build(),
        );
    }
    response.build().into()
}

fn set(failures: &[Failure]) -> BTreeMap<String, RefOr<Response>> {
    failures.iter().map(|f| (f.status.to_string(), response(*f))).collect()
}

macro_rules! response_set {
    ($(#[$doc:meta])* $name:ident: $($failure:ident),+) => {
        $(#[$doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                set(&[$($failure),+])
            }
        }
    };
}

response_set!(
    /// A route any valid token may call, with nothing to parse.
    Authenticated: UNAUTHORIZED, UNAVAILABLE
);
response_set!(
    /// An authenticated route whose role or scope is checked, with nothing to parse.
    AuthErrors: UNAUTHORIZED, FORBIDDEN, UNAVAILABLE
);
response_set!(
    /// An authenticated list with query parameters.
    ListErrors: BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, UNAVAILABLE
);
response_set!(
    /// An authenticated route about one object named in the path (and maybe a query).
    ReadErrors: BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, UNAVAILABLE
);
response_set!(
    /// An authenticated route that takes a JSON body and names no existing object.
    CreateErrors: BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, UNAVAILABLE
);
response_set!(
    /// An authenticated route that takes a JSON body about objects that may not exist.
    WriteErrors: BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, UNAVAILABLE
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_errors_are_read_errors_plus_the_body_statuses() {
        let read: Vec<_> = ReadErrors::responses().into_keys().collect();
        let write: Vec<_> = WriteErrors::responses().into_keys().collect();
        assert_eq!(read, ["400", "401", "403", "404", "503"]);
        assert_eq!(write, ["400", "401", "403", "404", "413", "415", "503"]);
    }
}
