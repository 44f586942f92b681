//! Parameters described once for every route that takes them.

use utoipa::IntoParams;

/// `If-Match`: the revision of the pin a write expects.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(dead_code, reason = "describes the header for the OpenAPI document; handlers read it from the headers")]
pub struct IfMatchHeader {
    /// Revision of the pin this write expects (`GET …/pins/{env}` returns it; 0: nothing pinned);
    /// quotes and `W/` allowed.
    #[param(rename = "If-Match", nullable = false, pattern = r#"^\s*(W/)*"*[+-]?[0-9]{1,18}"*\s*$"#)]
    if_match: Option<String>,
}
