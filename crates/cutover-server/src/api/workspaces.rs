use axum::extract::State;
use axum::http::StatusCode;
use cutover_api::{CreateWorkspace, ErrorBody, Page, TokenCreated, WhoAmI, Workspace, WorkspaceCreated};
use cutover_domain::{Access, WorkspaceName, check_label};

use super::responses::{AuthErrors, Authenticated, CreateErrors};
use crate::AppState;
use crate::auth::Auth;
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;

/// The token this request was made with, and its workspace.
#[utoipa::path(
    get, path = "/api/v1/whoami", tag = "workspaces", security(("token" = [])),
    responses((status = 200, body = WhoAmI), Authenticated)
)]
pub async fn whoami(State(state): State<AppState>, auth: Auth) -> ApiResult<axum::Json<WhoAmI>> {
    let workspace = state.store.get_workspace(auth.workspace_id()).await?;
    Ok(axum::Json(WhoAmI { workspace: convert::workspace(workspace), token: convert::token(auth.0.token.clone()) }))
}

fn require_admin(auth: &Auth) -> ApiResult<()> {
    auth.require_unscoped(Access::Administer)?;
    if auth.0.workspace.admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("only owners of the administrative workspace can manage workspaces"))
    }
}

/// Every workspace. Owners of the administrative workspace only.
#[utoipa::path(
    get, path = "/api/v1/workspaces", tag = "workspaces", security(("token" = [])),
    responses((status = 200, body = Page<Workspace>), AuthErrors)
)]
pub async fn list(State(state): State<AppState>, auth: Auth) -> ApiResult<axum::Json<Page<Workspace>>> {
    require_admin(&auth)?;
    let workspaces = state.store.list_workspaces().await?;
    Ok(axum::Json(convert::all(workspaces, convert::workspace)))
}

/// Creates a workspace and its first owner token, whose secret is shown only in this answer.
#[utoipa::path(
    post, path = "/api/v1/workspaces", tag = "workspaces", security(("token" = [])),
    request_body = CreateWorkspace,
    responses(
        (status = 201, body = WorkspaceCreated),
        CreateErrors,
        (status = 409, description = "a workspace of that name exists (`conflict`)", body = ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<CreateWorkspace>,
) -> ApiResult<(StatusCode, axum::Json<WorkspaceCreated>)> {
    require_admin(&auth)?;
    let name = WorkspaceName::parse(&body.name)?;
    let token_name = body.token_name.unwrap_or_else(|| "owner".to_owned());
    check_label("token_name", &token_name)?;
    let (workspace, token, secret) = state.store.create_workspace(&auth.caller(), &name, &token_name).await?;
    let created = WorkspaceCreated {
        workspace: convert::workspace(workspace),
        token: TokenCreated { token: convert::token(token), secret: secret.expose().to_owned() },
    };
    Ok((StatusCode::CREATED, axum::Json(created)))
}
