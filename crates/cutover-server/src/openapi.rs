//! The OpenAPI document: its frame (title, tags, security schemes) here; every operation comes
//! from the routes registered with it in [`crate::router`], so the document cannot drift from
//! the router. `GET /api/v1/openapi.json` serves it; a snapshot test locks it.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cutover",
        description = "Release control plane: which version of each artifact is live in each environment.",
        license(name = "Apache-2.0")
    ),
    modifiers(&TokenAuth),
    components(schemas(cutover_api::ErrorBody, cutover_api::ErrorDetail, cutover_api::AuditObjectTypeName)),
    tags(
        (name = "health", description = "Liveness, readiness, metrics"),
        (name = "workspaces", description = "Tenants"),
        (name = "environments", description = "Named stages and their deployment targets"),
        (name = "artifacts", description = "Versioned things"),
        (name = "versions", description = "Immutable content of an artifact"),
        (name = "tokens", description = "API credentials"),
        (name = "audit", description = "Who changed what"),
        (name = "pins", description = "Which version is live in each environment"),
        (name = "experiments", description = "Splitting an environment between versions"),
        (name = "rollouts", description = "Applying a version to every deployment target of an environment"),
        (name = "pools", description = "Warm pools: ready instances of a version, claimed at once"),
        (name = "queue", description = "Submit queue: changes land in an environment in order, after checks"),
        (name = "resolve", description = "What is live, read fast, and the change stream"),
        (name = "ofrep", description = "OpenFeature Remote Evaluation Protocol")
    )
)]
pub(crate) struct ApiDoc;

struct TokenAuth;

impl Modify for TokenAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme("token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
            components.add_security_scheme(
                "api_key",
                SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                    utoipa::openapi::security::ApiKeyValue::new("X-API-Key"),
                )),
            );
        }
    }
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    crate::router::router().into_openapi()
}

#[cfg(test)]
mod tests {
    fn references(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(reference) = map.get("$ref").and_then(|r| r.as_str()) {
                    found.push(reference.to_owned());
                }
                map.values().for_each(|v| references(v, found));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_in_the_document_points_at_a_component() {
        let document = serde_json::to_value(super::openapi()).unwrap();
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(!found.is_empty());
        let dangling: Vec<&String> = found
            .iter()
            .filter(|reference| {
                let path: Vec<&str> = reference.trim_start_matches("#/").split('/').collect();
                path.iter().try_fold(&document, |node, part| node.get(*part)).is_none()
            })
            .collect();
        assert!(dangling.is_empty(), "references to nothing: {dangling:?}");
    }
}
