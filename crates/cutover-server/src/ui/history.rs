//! The pin history of an artifact in one environment: every interval, who and why, and a
//! one-click rollback to an earlier version that holds only if nothing moved since the page
//! was drawn (the write carries the revision it saw, as `If-Match` does in the API).

use axum::extract::{Path, State};
use axum::response::Response;
use cutover_domain::{Access, PageLimit};

use super::page::{Layout, UiError, key_path, ok, when};
use super::session::Session;
use crate::AppState;
use crate::extract::{artifact_path, environment_path};

pub struct Interval {
    pub version: i64,
    pub revision: i64,
    pub from: String,
    pub until: String,
    pub by: String,
    pub reason: String,
    pub ended_by: String,
    pub live: bool,
    /// Whether a rollback to this interval's version would change anything.
    pub other: bool,
}

#[derive(askama::Template)]
#[template(path = "history.html")]
struct HistoryPage {
    layout: Layout,
    path: String,
    env: String,
    intervals: Vec<Interval>,
    /// The revision of the live pin (0: nothing pinned): what a rollback expects.
    current: i64,
    can_change: bool,
}

pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Path((key, env)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let (key, env) = (artifact_path(&key)?, environment_path(&env)?);
    session.auth.require_environment(Access::Read, env.as_str())?;
    let workspace_id = session.auth.workspace_id();
    let page = state.store.pin_history(workspace_id, &key, &env, None, PageLimit::parse(Some(PageLimit::MAX))?).await?;
    let live = state.store.get_pin(workspace_id, &key, &env).await?;
    let intervals = page
        .items
        .into_iter()
        .map(|pin| Interval {
            version: pin.version,
            revision: pin.revision,
            from: when(pin.started_at),
            until: pin.ended_at.map(when).unwrap_or_default(),
            by: pin.started_by.name,
            reason: pin.reason,
            ended_by: pin.ended_by.map(|a| a.name).unwrap_or_default(),
            live: pin.ended_at.is_none(),
            other: live.as_ref().is_none_or(|l| l.version != pin.version),
        })
        .collect();
    ok(&HistoryPage {
        layout: Layout::new(&session, "matrix", format!("{} in {}", key.as_str(), env.as_str())),
        path: key_path(key.as_str()),
        env: env.as_str().to_owned(),
        intervals,
        current: live.map_or(0, |p| p.revision),
        can_change: session.can_change(env.as_str()),
    })
}
