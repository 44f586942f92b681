//! The HTTP API under `/api/v1`, one module per resource. Routes and their OpenAPI description
//! are registered together, so the document cannot drift from the router.

pub mod artifacts;
pub mod audit;
pub mod environments;
pub mod events;
pub mod experiments;
pub mod health;
pub mod params;
pub mod pins;
pub mod responses;
pub mod results;
pub mod rollouts;
pub mod tokens;
pub mod versions;
pub mod workspaces;

use serde::Deserialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cutover",
        description = "Release control plane: which version of each artifact is live in each environment.",
        license(name = "Apache-2.0")
    ),
    modifiers(&TokenAuth),
    components(schemas(cutover_api::ErrorBody, cutover_api::ErrorDetail)),
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
        (name = "resolve", description = "What is live, read fast, and the change stream"),
        (name = "ofrep", description = "OpenFeature Remote Evaluation Protocol")
    )
)]
struct ApiDoc;

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

/// Every route with its OpenAPI description.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi_json))
        .routes(routes!(workspaces::whoami))
        .routes(routes!(workspaces::list, workspaces::create))
        .routes(routes!(environments::list, environments::create))
        .routes(routes!(environments::show, environments::update, environments::delete))
        .routes(routes!(artifacts::list, artifacts::create))
        .routes(routes!(artifacts::show, artifacts::update))
        .routes(routes!(versions::list, versions::create))
        .routes(routes!(versions::show))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(audit::list))
        .routes(routes!(pins::set_environments))
        .routes(routes!(pins::list))
        .routes(routes!(pins::show, pins::set, pins::unpin))
        .routes(routes!(pins::history))
        .routes(routes!(pins::environment))
        .routes(routes!(pins::promote))
        .routes(routes!(experiments::list, experiments::create))
        .routes(routes!(experiments::show, experiments::update, experiments::delete))
        .routes(routes!(experiments::start))
        .routes(routes!(experiments::pause))
        .routes(routes!(experiments::resume))
        .routes(routes!(experiments::complete))
        .routes(routes!(results::results))
        .routes(routes!(events::post))
        .routes(routes!(rollouts::create, rollouts::list))
        .routes(routes!(rollouts::show))
        .routes(routes!(rollouts::stop))
        .routes(routes!(rollouts::resume))
        .routes(routes!(rollouts::cancel))
        .routes(routes!(rollouts::release))
        .routes(routes!(rollouts::retry))
        .routes(routes!(rollouts::complete_task))
        .routes(routes!(rollouts::fail_task))
        .routes(routes!(rollouts::task_log))
        .routes(routes!(rollouts::task_callback))
        .routes(routes!(crate::resolve::native::resolve))
        .routes(routes!(crate::resolve::stream::stream))
        .merge(crate::resolve::ofrep::flag_route())
        .routes(routes!(crate::resolve::ofrep::evaluate_flags))
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

/// `?limit=&cursor=` of a list ordered by key (artifacts).
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
pub fn environment_names(field: &'static str, names: Vec<String>) -> Result<Vec<String>, cutover_domain::DomainError> {
    use cutover_domain::limits::MAX_ENVIRONMENTS_PER_REQUEST;
    if names.len() > MAX_ENVIRONMENTS_PER_REQUEST {
        return Err(cutover_domain::DomainError::invalid(
            field,
            format!("must list at most {MAX_ENVIRONMENTS_PER_REQUEST} environments"),
        ));
    }
    let invalid: Vec<_> =
        names.iter().filter(|n| cutover_domain::EnvironmentName::parse(n).is_err()).map(|n| format!("{n:?}")).collect();
    if !invalid.is_empty() {
        return Err(cutover_domain::DomainError::invalid(
            field,
            format!("invalid environment names: {}", invalid.join(", ")),
        ));
    }
    let mut unique = Vec::with_capacity(names.len());
    for name in names {
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    Ok(unique)
}
