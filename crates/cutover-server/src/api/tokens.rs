use axum::extract::State;
use axum::http::StatusCode;
use cutover_api::{CreateToken, ErrorBody, Page, Token, TokenCreated};
use cutover_domain::{Access, DomainError, Role, check_label};

use super::responses::{AuthErrors, ReadErrors, WriteErrors};
use crate::AppState;
use crate::auth::Auth;
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};

/// Every token of the workspace, revoked ones included. Owners only.
#[utoipa::path(
    get, path = "/api/v1/tokens", tag = "tokens", security(("token" = [])),
    responses((status = 200, body = Page<Token>), AuthErrors)
)]
pub async fn list(State(state): State<AppState>, auth: Auth) -> ApiResult<axum::Json<Page<Token>>> {
    auth.require(Access::Administer)?;
    let tokens = state.store.list_tokens(auth.workspace_id()).await?;
    Ok(axum::Json(convert::all(tokens, convert::token)))
}

/// The environments a token is limited to; an sdk token is bound to exactly one.
fn environments(role: Role, names: Vec<String>) -> Result<Vec<cutover_domain::EnvironmentName>, DomainError> {
    let names = crate::extract::environment_names("environments", names)?;
    if role == Role::Sdk && names.len() != 1 {
        return Err(DomainError::invalid("environments", "an sdk token is bound to exactly one environment"));
    }
    Ok(names)
}

/// Creates a token; its secret is shown only in this answer. Owners only, and a token limited to
/// some environments can only create tokens limited to those.
#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "tokens", security(("token" = [])),
    request_body = CreateToken,
    responses(
        (status = 201, body = TokenCreated),
        WriteErrors,
        (status = 404, description = "some environments do not exist; `details.missing` lists them", body = ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<CreateToken>,
) -> ApiResult<(StatusCode, axum::Json<TokenCreated>)> {
    auth.require(Access::Administer)?;
    check_label("name", &body.name)?;
    let role = body.role.parse::<Role>()?;
    let environments = environments(role, body.environments.unwrap_or_default())?;
    if !auth.covers(&environments) {
        return Err(ApiError::forbidden(
            "a token limited to some environments can only create tokens limited to those",
        ));
    }
    let (token, secret) = state.store.create_token(&auth.caller(), &body.name, role, &environments).await?;
    let created = TokenCreated { token: convert::token(token), secret: secret.expose().to_owned() };
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// Revokes a token at once. Revoking a revoked token changes nothing; the workspace's last
/// unscoped owner token cannot be revoked (409).
#[utoipa::path(
    delete, path = "/api/v1/tokens/{id}", tag = "tokens", security(("token" = [])),
    params(("id" = String, Path, description = "Token id")),
    responses(
        (status = 200, body = Token),
        ReadErrors,
        (status = 409, description = "the workspace's last unscoped owner token cannot be revoked", body = ErrorBody)
    )
)]
pub async fn revoke(State(state): State<AppState>, auth: Auth, Path(id): Path<String>) -> ApiResult<axum::Json<Token>> {
    auth.require(Access::Administer)?;
    if check_label("id", &id).is_err() {
        return Err(ApiError::not_found(format!("token {id:?} not found")));
    }
    if !auth.0.token.environments.is_empty() {
        let target = state.store.list_tokens(auth.workspace_id()).await?.into_iter().find(|t| t.id == id);
        let Some(target) = target else { return Err(ApiError::not_found(format!("token {id:?} not found"))) };
        let names: Vec<_> = target.environments.into_iter().map(|e| e.name).collect();
        if !auth.covers(&names) {
            return Err(ApiError::forbidden(
                "a token limited to some environments can only revoke tokens limited to those",
            ));
        }
    }
    let token = state.store.revoke_token(&auth.caller(), &id).await?;
    Ok(axum::Json(convert::token(token)))
}
