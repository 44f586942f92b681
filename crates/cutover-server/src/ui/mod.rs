//! The web UI at `/`: server-rendered pages (askama templates in `templates/`), htmx and its SSE
//! extension vendored under `static/vendor/`, hand-written CSS. Pages call the same store methods
//! as the API's handlers, through the same [`crate::auth::Auth`]: a session acts exactly as the
//! token it was opened with. See docs/ui.md.

mod artifact;
mod assets;
mod audit;
mod diff;
mod events;
mod experiments;
mod guard;
mod history;
mod matrix;
mod page;
mod pools;
mod preview;
mod queues;
mod rollout_new;
mod rollouts;
mod session;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub use page::UiError;
pub use session::{COOKIE, Session};

/// Every page of the UI, behind the CSRF and `Origin` guard.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(matrix::page))
        .route("/ui/matrix", get(matrix::fragment))
        .route("/ui/events", get(events::stream))
        .route("/sign-in", get(session::sign_in_page).post(session::sign_in))
        .route("/sign-out", post(session::sign_out))
        .route("/static/{*file}", get(assets::serve))
        .route("/artifacts/{key}", get(artifact::page))
        .route("/artifacts/{key}/versions", post(artifact::publish))
        .route("/artifacts/{key}/diff", get(diff::page))
        .route("/artifacts/{key}/preview", get(preview::page))
        .route("/artifacts/{key}/pin", post(artifact::pin))
        .route("/artifacts/{key}/promote", post(artifact::promote))
        .route("/artifacts/{key}/history/{env}", get(history::page))
        .route("/experiments", get(experiments::list))
        .route("/experiments/{id}", get(experiments::show))
        .route("/experiments/{id}/preview", get(experiments::preview))
        .route("/experiments/{id}/{action}", post(experiments::action))
        .route("/rollouts", get(rollouts::list).post(rollout_new::create))
        .route("/rollouts/new", get(rollout_new::form))
        .route("/rollouts/preview", get(rollout_new::preview))
        .route("/rollouts/{id}", get(rollouts::show))
        .route("/ui/rollouts/{id}", get(rollouts::fragment))
        .route("/rollouts/{id}/{control}", post(rollouts::control))
        .route("/audit", get(audit::page))
        .route("/queues", get(queues::list))
        .route("/ui/queues", get(queues::list_fragment))
        .route("/queues/{name}", get(queues::show))
        .route("/ui/queues/{name}", get(queues::fragment))
        .route("/queues/{name}/requests", post(queues::submit))
        .route("/queues/{name}/requests/{id}", get(queues::request))
        .route("/ui/queues/{name}/requests/{id}", get(queues::request_fragment))
        .route("/queues/{name}/requests/{id}/cancel", post(queues::cancel))
        .route("/queues/{name}/checks/{check}/{result}", post(queues::report))
        .route("/queues/{name}/{control}", post(queues::control))
        .route("/pools", get(pools::list))
        .route("/ui/pools", get(pools::list_fragment))
        .route("/pools/{name}", get(pools::show))
        .route("/ui/pools/{name}", get(pools::fragment))
        .route("/pools/{name}/{control}", post(pools::control))
        .layer(axum::middleware::from_fn(guard::guard))
}
