//! OpenAPI schemas of the list fields whose items carry a rule (utoipa's field attributes
//! describe the list, not its items). The rules are the domain's (`cutover-domain`): the
//! patterns here are the ones its parsers state in their error messages.

use utoipa::openapi::Ref;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};

/// An environment's name.
pub const ENVIRONMENT_NAME: &str = r"^[a-z0-9][a-z0-9_-]{0,62}$";
/// A metric's name.
pub const METRIC_NAME: &str = r"^[a-z0-9][a-z0-9._-]{0,62}$";
/// A short label (a token's or an experiment's name, a step): 1 to 100 characters, not only
/// spaces, no control characters but tabs and line breaks.
pub const LABEL: &str =
    r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$";
/// Most environment names in one request.
const MAX_ENVIRONMENTS: usize = 100;

fn string(pattern: &str, max_length: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .min_length(Some(1))
        .max_length(Some(max_length))
}

fn nullable(array: ArrayBuilder) -> ArrayBuilder {
    array.schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
}

/// Environments a version owns (an empty list clears them).
pub fn environment_names() -> ArrayBuilder {
    ArrayBuilder::new().items(string(ENVIRONMENT_NAME, 63)).max_items(Some(MAX_ENVIRONMENTS))
}

/// Environments of a token's scope or a new version's pins; absent or null means none.
pub fn optional_environment_names() -> ArrayBuilder {
    nullable(environment_names())
}

/// The environments a promotion pins: at least one.
pub fn promote_targets() -> ArrayBuilder {
    environment_names().min_items(Some(1))
}

/// An experiment's treatments: distinct version numbers, 1 to 19 (with the control, 2 to 20).
pub fn treatments() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
        .min_items(Some(1))
        .max_items(Some(19))
        .unique_items(true)
}

/// Relative weights of the control then each treatment: one per variant, each positive.
pub fn weights() -> ArrayBuilder {
    let weight = ObjectBuilder::new().schema_type(Type::Number).exclusive_minimum(Some(0)).maximum(Some(1e300));
    nullable(ArrayBuilder::new().items(weight).min_items(Some(2)).max_items(Some(20)))
}

/// Metrics watched besides the primary one: at most 10.
pub fn guardrail_metrics() -> ArrayBuilder {
    ArrayBuilder::new().items(string(METRIC_NAME, 63)).max_items(Some(10))
}

/// The steps of each target of a rollout: distinct labels, 1 to 20.
pub fn steps() -> ArrayBuilder {
    nullable(ArrayBuilder::new().items(string(LABEL, 100)).min_items(Some(1)).max_items(Some(20)).unique_items(true))
}

/// An environment's deployment targets: at most 1,000, names unique (absent or null: none, or
/// unchanged in an update).
pub fn targets() -> ArrayBuilder {
    nullable(ArrayBuilder::new().items(Ref::from_schema_name("Target")).max_items(Some(1_000)).unique_items(true))
}
