//! `GET /ui/events`: the change stream of the API (`resolve::stream`) for a signed-in page. A
//! reconnect resumes after `Last-Event-ID` (or `?last_event_id=`), replaying what it missed.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use cutover_domain::Access;
use futures_util::Stream;

use super::page::UiError;
use super::session::Session;
use crate::AppState;
use crate::resolve::stream::{Format, changes};

#[derive(Debug, Default, serde::Deserialize)]
pub struct EventsQuery {
    last_event_id: Option<i64>,
}

pub async fn stream(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, UiError> {
    session.auth.require(Access::Read)?;
    let header = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    Ok(changes(&state, session.auth, None, header.or(query.last_event_id), Format::Cutover).await?)
}
