//! Who is calling: the bearer token of a request, verified
//! (`crate::infra::auth::Authenticator`) into a `crate::domain::AuthUser`.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::domain::AuthUser;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::infra::auth::AuthError;

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Refused(why) => ApiError::Unauthorized(why),
            AuthError::KeysUnavailable => {
                ApiError::Unavailable("the identity provider's keys cannot be fetched")
            }
        }
    }
}

/// The bearer token of a request, if it has one of the right shape.
pub fn bearer(parts: &Parts) -> Option<&str> {
    bearer_in(&parts.headers)
}

pub fn bearer_in(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Verified already by the request limiter (crate::http::limits): a
        // token whose key had to be fetched is not fetched for twice.
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            tracing::Span::current().record("user_id", user.id.as_str());
            return Ok(user.clone());
        }
        if let Some(refused) = parts.extensions.get::<AuthError>() {
            return Err((*refused).into());
        }
        let token = bearer(parts).ok_or(ApiError::Unauthorized("missing bearer token"))?;
        let user = state.auth.verify(token, state.clock.now()).await?;
        tracing::Span::current().record("user_id", user.id.as_str());
        Ok(user)
    }
}
