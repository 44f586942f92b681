//! `GET /api/v1/stream`: Server-Sent Events, one per revision of the workspace. The event id is
//! the revision; `Last-Event-ID` replays what a client missed. Ends when the server shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use cutover_domain::Access;
use cutover_store::ChangeRecord;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::BroadcastStream;
use utoipa::IntoParams;

use crate::AppState;
use crate::api::responses::ListErrors;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Replay revisions after this one (as the `Last-Event-ID` header does).
    pub last_event_id: Option<i64>,
    /// `ofrep`: OFREP's event format (`event: message`, data `{"type": "refetchEvaluation",
    /// "etag", "lastModified"}`), as advertised in bulk evaluations' `eventStreams`.
    #[param(pattern = r"^(cutover|ofrep)$")]
    pub format: Option<String>,
    /// The token, for clients that cannot send headers (browsers' EventSource).
    pub access_token: Option<String>,
}

/// One event of the stream, as the document describes it: `id` the revision, `event` `change`
/// (or `message` in the OFREP format), `data` its JSON.
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "describes the stream's events for the OpenAPI document")]
pub struct StreamEvent {
    id: String,
    event: String,
    data: String,
}

#[derive(Clone, Copy)]
enum Format {
    Cutover,
    Ofrep,
}

const REPLAY_PAGE: i64 = 500;

fn event(change: &ChangeRecord, format: Format, visible: &dyn Fn(&str) -> bool) -> Event {
    if let Format::Ofrep = format {
        let data = serde_json::json!({
            "type": "refetchEvaluation",
            "etag": format!("\"{}\"", change.revision),
            "lastModified": change.at.as_micros() / 1_000_000,
        });
        return Event::default().id(change.revision.to_string()).event("message").data(data.to_string());
    }
    let pins: Vec<_> = change
        .pins
        .iter()
        .filter(|p| visible(&p.environment))
        .map(|p| serde_json::json!({"artifact": p.artifact, "environment": p.environment, "from": p.from, "to": p.to}))
        .collect();
    let data = serde_json::json!({"revision": change.revision, "at": change.at, "pins": pins});
    Event::default().id(change.revision.to_string()).event("change").data(data.to_string())
}

/// Change events of the workspace: `event: change`, `id: <revision>`, data
/// `{"revision", "at", "pins": [{"artifact", "environment", "from", "to"}]}` (limited to the
/// environments the token may see). Keep-alive comments every 15 s.
#[utoipa::path(
    get, path = "/api/v1/stream", tag = "resolve", security(("token" = [])),
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, nullable = false, description = "Replay revisions after this one", pattern = r"^\s*[+-]?[0-9]{1,18}\s*$")
    ),
    responses(
        (status = 200, description = "text/event-stream of change events", content_type = "text/event-stream", body = StreamEvent),
        ListErrors
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    auth.require(Access::Resolve)?;
    let format = match query.format.as_deref() {
        None | Some("cutover") => Format::Cutover,
        Some("ofrep") => Format::Ofrep,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("format {other:?} is not one of cutover, ofrep"),
            ));
        }
    };
    let header = headers.get("last-event-id").map(|v| {
        v.to_str().ok().and_then(|s| s.trim().parse::<i64>().ok()).ok_or_else(|| {
            ApiError::bad_request("invalid_header", "Last-Event-ID must be a revision number from this stream")
        })
    });
    let last = match header.transpose()? {
        Some(id) => Some(id),
        None => query.last_event_id,
    };
    let workspace_id = auth.workspace_id().to_owned();
    // Subscribe before replaying, so that nothing falls between the two.
    let live = BroadcastStream::new(state.resolver.subscribe(&workspace_id));
    let mut replay = Vec::new();
    // The revision the client has seen: what it says, or (new client) the current one.
    let seen = match last {
        Some(seen) => {
            let mut cursor = seen;
            loop {
                let page = state.store.changes_since(&workspace_id, cursor, REPLAY_PAGE).await?;
                let full = page.len() as i64 == REPLAY_PAGE;
                cursor = page.last().map_or(cursor, |c| c.revision);
                replay.extend(page.into_iter().map(Arc::new));
                if !full {
                    break;
                }
            }
            seen
        }
        None => state.resolver.view(&workspace_id).await?.revision,
    };
    let principal = auth.0.clone();
    let visible = move |environment: &str| principal.may_touch(environment);
    let mut sent = seen;
    let changes = stream::iter(replay).chain(live.filter_map(|r| async move { r.ok() })).filter_map(move |change| {
        let fresh = change.revision > sent;
        sent = sent.max(change.revision);
        async move { fresh.then_some(change) }
    });
    let mut shutdown = state.shutdown.subscribe();
    let ended = async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    let events = changes.map(move |change| Ok(event(&change, format, &visible))).take_until(ended);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
