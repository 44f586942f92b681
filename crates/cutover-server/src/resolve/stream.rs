//! `GET /api/v1/stream`: Server-Sent Events, one per revision of the workspace. The event id is
//! the revision; `Last-Event-ID` replays what a client missed. Ends when the server shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use cutover_domain::Access;
use cutover_store::{ChangeRecord, Principal, StoreError};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::BroadcastStream;
use utoipa::IntoParams;

use crate::AppState;
use crate::api::responses::ListErrors;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::resolve::ticket::{self, StreamTicket};

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
    /// A stream ticket, as advertised in bulk evaluations' `eventStreams`, for clients that
    /// cannot send headers (browsers' EventSource): it stands for the token that evaluated, in
    /// that evaluation's environment only, for 5 to 10 minutes. Never send the token itself here.
    pub ticket: Option<String>,
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
pub(crate) enum Format {
    Cutover,
    Ofrep,
}

const REPLAY_PAGE: i64 = 500;

/// Who reads the stream: a token in the headers, or a stream ticket in `?ticket=` (then limited
/// to the ticket's environment). Both at once are ambiguous: 401.
pub struct StreamCaller {
    auth: Auth,
    environment: Option<String>,
}

impl FromRequestParts<AppState> for StreamCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ticket = parts.uri.query().and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("ticket=")));
        let Some(ticket) = ticket else {
            return Ok(Self { auth: Auth::from_request_parts(parts, state).await?, environment: None });
        };
        if crate::auth::presented_token(parts).is_some() {
            return Err(ApiError::unauthorized("send either a token or a stream ticket, not both"));
        }
        let granted =
            state.tickets.verify(ticket, ticket::now_seconds()).map_err(|e| ApiError::unauthorized(e.to_string()))?;
        let principal = ticket_principal(state, &granted).await?;
        Ok(Self { auth: Auth(Arc::new(principal)), environment: Some(granted.environment) })
    }
}

/// The token a ticket stands for, as it is now: a ticket of a revoked token, or of a token no
/// longer allowed in the ticket's environment, is refused.
async fn ticket_principal(state: &AppState, granted: &StreamTicket) -> ApiResult<Principal> {
    let refused = || ApiError::unauthorized("the token of this stream ticket was revoked");
    let tokens = state.store.list_tokens(&granted.workspace_id).await?;
    let token = tokens.into_iter().find(|t| t.id == granted.token_id && t.revoked_at.is_none()).ok_or_else(refused)?;
    let workspace = match state.store.get_workspace(&granted.workspace_id).await {
        Ok(workspace) => workspace,
        Err(StoreError::NotFound(_)) => return Err(refused()),
        Err(e) => return Err(e.into()),
    };
    let principal = Principal { token, workspace };
    if !principal.may_touch(&granted.environment) {
        return Err(ApiError::forbidden(format!(
            "this token is not allowed to act on environment {:?}",
            granted.environment
        )));
    }
    Ok(principal)
}

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
        .filter(|p| visible(p.environment.as_str()))
        .map(|p| serde_json::json!({"artifact": p.artifact, "environment": p.environment, "from": p.from, "to": p.to}))
        .collect();
    let data = serde_json::json!({"revision": change.revision, "at": change.at, "pins": pins});
    Event::default().id(change.revision.to_string()).event("change").data(data.to_string())
}

/// Change events of the workspace: `event: change`, `id: <revision>`, data
/// `{"revision", "at", "pins": [{"artifact", "environment", "from", "to"}]}` (limited to the
/// environments the token may see). Keep-alive comments every 15 s. Authenticated by a token,
/// or by the stream ticket of a bulk OFREP answer's `eventStreams` URL.
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
    caller: StreamCaller,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let StreamCaller { auth, environment: ticket_environment } = caller;
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
    changes(&state, auth, ticket_environment, last, format).await
}

/// The change events a caller may see, after revision `last` (replayed first) or from now on;
/// the web UI's pages listen to the same stream.
pub(crate) async fn changes(
    state: &AppState,
    auth: Auth,
    ticket_environment: Option<String>,
    last: Option<i64>,
    format: Format,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>> {
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
    let visible = move |environment: &str| {
        principal.may_touch(environment) && ticket_environment.as_deref().is_none_or(|e| e == environment)
    };
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
