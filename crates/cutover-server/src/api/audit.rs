use axum::extract::State;
use cutover_api::{AuditEvent, Page};
use cutover_domain::{Access, AuditObject, Cursor, PageLimit, Timestamp};
use cutover_store::AuditFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use super::responses::ListErrors;
use crate::AppState;
use crate::auth::Auth;
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// `workspace`, `environment`, `artifact`, `token`, `experiment` or `rollout` (versions and
    /// pins are audited on their artifact); any other value is refused (400 `invalid_query`).
    #[param(value_type = Option<cutover_api::AuditObjectTypeName>)]
    pub object_type: Option<String>,
    /// The object's name, key or id.
    #[param(
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$",
        min_length = 1,
        max_length = 100
    )]
    pub object_id: Option<String>,
    /// Who made the change: the actor's name, as listed, or their token id.
    #[param(
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$",
        min_length = 1,
        max_length = 100
    )]
    pub actor: Option<String>,
    /// Actions starting with this: a whole action (`pin.set`) or a prefix (`pin.`).
    #[param(
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$",
        min_length = 1,
        max_length = 100
    )]
    pub action: Option<String>,
    /// Only entries made at or after this moment (RFC 3339, e.g. `2026-12-01T09:00:00Z`);
    /// anything else is refused (400 `invalid_query`).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Only entries made before this moment (RFC 3339); must be after `since`.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Items per page, 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^b[+-]?[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// The workspace's audit log, newest first: every change with its actor, before and after.
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "audit", security(("token" = [])),
    params(AuditQuery),
    responses((status = 200, body = Page<AuditEvent>), ListErrors)
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<AuditQuery>,
) -> ApiResult<axum::Json<Page<AuditEvent>>> {
    auth.require(Access::Read)?;
    let limit = PageLimit::parse(query.limit)?;
    let before = query.cursor.as_deref().map(|c| Cursor::parse(c)?.before()).transpose()?;
    for (field, value) in [
        ("object_type", &query.object_type),
        ("object_id", &query.object_id),
        ("actor", &query.actor),
        ("action", &query.action),
    ] {
        if let Some(value) = value {
            cutover_domain::check_label(field, value)?;
        }
    }
    let object_type = match query.object_type.as_deref() {
        None => None,
        Some(raw) => Some(raw.parse::<AuditObject>().map_err(|_| {
            let known = AuditObject::names().collect::<Vec<_>>().join(", ");
            ApiError::bad_request("invalid_query", format!("object_type {raw:?} is not one of {known}"))
        })?),
    };
    let (since, until) = time_range(query.since.as_deref(), query.until.as_deref())?;
    let filter =
        AuditFilter { object_type, object_id: query.object_id, actor: query.actor, action: query.action, since, until };
    let page = state.store.list_audit(auth.workspace_id(), &filter, before, limit).await?;
    Ok(axum::Json(convert::page(page, convert::audit_event)))
}

/// `since` and `until` as RFC 3339 moments, `since` before `until`; 400 `invalid_query` else.
pub(crate) fn time_range(
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(Option<Timestamp>, Option<Timestamp>), ApiError> {
    let parse = |name: &'static str, text: Option<&str>| {
        text.map(|t| {
            Timestamp::parse_rfc3339(name, t.trim()).map_err(|_| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("{name} {t:?} is not an RFC 3339 moment (such as 2026-12-01T09:00:00Z)"),
                )
            })
        })
        .transpose()
    };
    // A `since` at or after `until` is an empty range: it matches nothing (200, no items), as
    // any other range with nothing in it.
    Ok((parse("since", since)?, parse("until", until)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_exactly_the_object_types_the_server_accepts() {
        let document = serde_json::to_value(crate::openapi()).unwrap();
        let parameters = document["paths"]["/api/v1/audit"]["get"]["parameters"].as_array().unwrap().clone();
        let object_type = parameters.iter().find(|p| p["name"] == "object_type").unwrap();
        let schema = &object_type["schema"];
        let reference = schema["$ref"]
            .as_str()
            .or_else(|| schema["oneOf"].as_array().and_then(|all| all.iter().find_map(|s| s["$ref"].as_str())));
        let listed = match reference {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap();
                document["components"]["schemas"][name]["enum"].clone()
            }
            None => schema["enum"].clone(),
        };
        assert_eq!(listed, serde_json::json!(AuditObject::names().collect::<Vec<_>>()), "{object_type}");
    }
}
