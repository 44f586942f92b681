//! The route table: every route with its OpenAPI description, registered together.

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::api::{
    artifacts, audit, environments, events, experiments, health, pins, pools, results, rollouts, tokens, versions,
    workspaces,
};

/// Every route with its OpenAPI description.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi_json))
        .routes(routes!(workspaces::whoami))
        .routes(routes!(workspaces::list, workspaces::create))
        .routes(routes!(environments::list, environments::create))
        .routes(routes!(environments::show, environments::update, environments::delete))
        .routes(routes!(artifacts::list, artifacts::create))
        .routes(routes!(artifacts::show, artifacts::update, artifacts::delete))
        .routes(routes!(artifacts::archive))
        .routes(routes!(artifacts::unarchive))
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
        .routes(routes!(pools::create, pools::list))
        .routes(routes!(pools::show, pools::update, pools::delete))
        .routes(routes!(pools::pause))
        .routes(routes!(pools::resume))
        .routes(routes!(pools::claim))
        .routes(routes!(pools::instances))
        .routes(routes!(pools::show_instance))
        .routes(routes!(pools::report_agent))
        .routes(routes!(crate::resolve::native::resolve))
        .routes(routes!(crate::resolve::stream::stream))
        .merge(crate::resolve::ofrep::flag_route())
        .routes(routes!(crate::resolve::ofrep::evaluate_flags))
}
