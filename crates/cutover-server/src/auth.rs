//! Who is calling: the token from `Authorization: Bearer …` (or `X-API-Key`), and what its role
//! and environment scope allow.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use cutover_domain::{Access, Role, TokenDigest};
use cutover_store::{Actor, Principal};

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// An authenticated request. Extracting it answers 401 for a missing, malformed, unknown or
/// revoked token; handlers then state the access they need.
pub struct Auth(pub std::sync::Arc<Principal>);

/// The token a request presents, if any. (Tokens never travel in URLs: browsers' EventSource
/// gets a stream ticket instead, see `resolve::ticket`.)
pub fn presented_token(parts: &Parts) -> Option<&str> {
    if let Some(value) = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
    }
    parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Both `Authorization` and `X-API-Key`, naming different tokens: which one speaks is
/// ambiguous, so neither does (a proxy adding one must not let a client's other one through).
fn ambiguous(parts: &Parts) -> bool {
    let Some(key) = parts.headers.get("x-api-key") else { return false };
    parts.headers.contains_key(AUTHORIZATION) && key.to_str().map(str::trim).ok() != presented_token(parts)
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if ambiguous(parts) {
            return Err(ApiError::unauthorized("Authorization and X-API-Key name different tokens: send one"));
        }
        let presented = presented_token(parts)
            .ok_or_else(|| ApiError::unauthorized("missing token: send Authorization: Bearer <token>"))?;
        let invalid = || ApiError::unauthorized("invalid or revoked token");
        // Hashed once, without copying the token: the cache is keyed by the digest.
        let digest = TokenDigest::of_presented(presented).ok_or_else(invalid)?;
        let principal = state.tokens.authenticate_digest(digest).await?.ok_or_else(invalid)?;
        Ok(Self(principal))
    }
}

impl Auth {
    pub fn workspace_id(&self) -> &str {
        &self.0.workspace.id
    }

    pub fn actor(&self) -> Actor {
        self.0.actor()
    }

    /// 403 unless the token's role grants `access`.
    pub fn require(&self, access: Access) -> ApiResult<&Self> {
        let role = self.0.token.role;
        if role.allows(access) {
            return Ok(self);
        }
        Err(ApiError::forbidden(match (role, access) {
            (Role::Sdk, _) => "an sdk token can only resolve what is live".to_owned(),
            (_, Access::Administer) => format!("only owners can do this; this token's role is {role}"),
            _ => format!("a {role} token cannot change anything"),
        }))
    }

    /// 403 unless the token's role grants `access` and its scope includes `environment`.
    pub fn require_environment(&self, access: Access, environment: impl AsRef<str>) -> ApiResult<&Self> {
        self.require(access)?;
        self.authority().may_see(environment.as_ref()).map_err(|refusal| ApiError::forbidden(refusal.to_string()))?;
        Ok(self)
    }

    /// The caller of a store write: workspace, actor and authority, from the token.
    pub fn caller(&self) -> cutover_store::Caller {
        cutover_store::Caller::of(&self.0)
    }

    /// What the token may do to environments, for the store's checks.
    pub fn authority(&self) -> cutover_store::PinAuthority {
        cutover_store::authority_of(&self.0)
    }

    /// 403 unless the token can act on every environment (an unscoped token).
    pub fn require_unscoped(&self, access: Access) -> ApiResult<&Self> {
        self.require(access)?;
        if self.0.token.environments.is_empty() {
            Ok(self)
        } else {
            Err(ApiError::forbidden("this token is limited to some environments and cannot do this"))
        }
    }

    /// Whether every environment in `names` is within this token's scope; an empty list means
    /// "all environments", which only an unscoped token covers.
    pub fn covers(&self, names: &[cutover_domain::EnvironmentName]) -> bool {
        self.authority().covers(names)
    }
}
