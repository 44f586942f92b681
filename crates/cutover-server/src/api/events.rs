//! `POST /api/v1/events`: metric events (conversions, values) from applications, counted in the
//! experiments that exposed their users.

use axum::extract::State;
use cutover_api::{ErrorBody, EventsAccepted, MetricEventIn, PostEvents};
use cutover_domain::{Access, MetricName, Timestamp};
use cutover_store::MetricEvent;
use serde_json::Value;

use super::responses::CreateErrors;
use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonValue;

/// Most events in one request.
pub const MAX_EVENTS: usize = 1_000;
/// Longest targeting key, in characters.
const MAX_TARGETING_KEY_CHARS: usize = 256;
/// Largest magnitude of a value: sums of squares of millions of them stay exact enough.
const MAX_VALUE: f64 = 1e12;
/// How far in the future an event may be dated (clock skew between client and server).
const MAX_FUTURE_MICROS: i64 = 5 * 60 * 1_000_000;

fn invalid(index: usize, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_body", format!("events[{index}]: {message}"))
}

/// The batch from either body shape: `{"events": [...]}` or the bare array.
fn events_of(body: Value) -> ApiResult<Vec<Value>> {
    match body {
        Value::Array(events) => Ok(events),
        Value::Object(mut object) => {
            if let Some(unknown) = object.keys().find(|k| *k != "events") {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    format!("unknown field `{unknown}`, expected `events`"),
                ));
            }
            match object.remove("events") {
                Some(Value::Array(events)) => Ok(events),
                Some(_) => Err(ApiError::bad_request("invalid_body", "`events` must be an array")),
                None => Err(ApiError::bad_request("invalid_body", "missing field `events`")),
            }
        }
        _ => Err(ApiError::bad_request("invalid_body", "send {\"events\": [...]} or an array of events")),
    }
}

fn parse_event(index: usize, raw: Value, now: Timestamp) -> ApiResult<MetricEvent> {
    let event: MetricEventIn = serde_json::from_value(raw).map_err(|e| invalid(index, e))?;
    let metric = MetricName::parse(&event.metric).map_err(|e| invalid(index, e))?;
    let key = event.targeting_key;
    if key.trim().is_empty() || key.chars().count() > MAX_TARGETING_KEY_CHARS || key.chars().any(char::is_control) {
        return Err(invalid(
            index,
            format!("targeting_key must be 1 to {MAX_TARGETING_KEY_CHARS} characters without control characters"),
        ));
    }
    if let Some(value) = event.value.filter(|v| !(v.is_finite() && v.abs() <= MAX_VALUE)) {
        return Err(invalid(index, format!("value {value} is out of range (at most {MAX_VALUE:e} in magnitude)")));
    }
    let at = match event.timestamp.as_deref() {
        Some(text) => Timestamp::parse_rfc3339("timestamp", text).map_err(|e| invalid(index, e))?,
        None => now,
    };
    if at.as_micros() > now.as_micros().saturating_add(MAX_FUTURE_MICROS) {
        return Err(invalid(index, "timestamp is more than 5 minutes in the future"));
    }
    Ok(MetricEvent { metric, targeting_key: key, value: event.value, at })
}

/// Records a batch of metric events (at most 1,000), as `{"events": [...]}` or a bare array.
/// Each counts in every experiment that tracks its metric (primary or guardrail), exposed its user,
/// and was running at its time; others are accepted and ignored. The whole batch is validated
/// first: one bad event refuses the batch and nothing is recorded. Tokens scoped to environments
/// (sdk tokens) feed only experiments in those environments.
#[utoipa::path(
    post, path = "/api/v1/events", tag = "experiments", security(("token" = [])),
    request_body = PostEvents,
    responses(
        (status = 200, body = EventsAccepted),
        CreateErrors,
        (status = 400, description = "an event is invalid (named by index) or the body is not a batch; nothing recorded", body = ErrorBody)
    )
)]
pub async fn post(
    State(state): State<AppState>,
    auth: Auth,
    JsonValue(body): JsonValue,
) -> ApiResult<axum::Json<EventsAccepted>> {
    auth.require(Access::Resolve)?;
    let raw = events_of(body)?;
    if raw.len() > MAX_EVENTS {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("{} events in one batch; send at most {MAX_EVENTS}", raw.len()),
        ));
    }
    let now = Timestamp::now();
    let events = raw.into_iter().enumerate().map(|(i, e)| parse_event(i, e, now)).collect::<ApiResult<Vec<_>>>()?;
    // This process's buffered exposures first, so that a conversion right after a resolve finds
    // its user (other replicas' buffers reach the database within their flush interval).
    if let Err(e) = state.exposures.flush(&state.store).await {
        tracing::warn!(error = %e, "could not record buffered exposures before events");
    }
    let scope: Vec<String> = auth.0.token.environments.iter().map(|e| e.name.as_str().to_owned()).collect();
    let scope = (!scope.is_empty()).then_some(scope.as_slice());
    let outcome = state.store.record_events(auth.workspace_id(), scope, &events).await?;
    Ok(axum::Json(EventsAccepted { received: outcome.received, attributed: outcome.attributed }))
}
