//! The reference web app (`web/`, built into `web/dist/` by `deploy/local.sh`)
//! and a dev sign-in, served at `/app` only with the development switch
//! (`CALLGATE_DEV`): it mints user tokens for any user id, which only a host
//! application may do in production. Not part of the public document.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::JwtKey;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::infra::auth::{DevToken, mint_dev_token};

const WEB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/web");

/// The files the app is made of, and their content types; nothing else is read.
const FILES: [(&str, &str); 3] = [
    ("app.js", "text/javascript; charset=utf-8"),
    ("app.js.map", "application/json"),
    ("app.css", "text/css; charset=utf-8"),
];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(index)).routes(routes!(file)).routes(routes!(dev_token))
}

/// The web app's page, with a Content-Security-Policy that lets it load its own files and dial
/// `LIVEKIT_URL`.
#[utoipa::path(get, path = "/app", operation_id = "webApp", tag = "development",
    responses((status = 200, description = "An HTML page", content_type = "text/html", body = String)))]
async fn index(State(state): State<AppState>) -> Result<Response, ApiError> {
    let page =
        tokio::fs::read_to_string(format!("{WEB_DIR}/index.html")).await.map_err(|_| ApiError::NotFound)?;
    let mut response = Html(page).into_response();
    let policy = crate::http::security::app_policy(&state.config.livekit.url);
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, policy);
    Ok(response)
}

/// One of the web app's files (`app.js`, `app.js.map`, `app.css`).
#[utoipa::path(get, path = "/app/{file}", operation_id = "webAppFile", tag = "development",
    params(("file" = String, Path)),
    responses((status = 200, description = "The file"), (status = 404, description = "No such file")))]
async fn file(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (name, content_type) = FILES.iter().find(|(n, _)| *n == name).ok_or(ApiError::NotFound)?;
    let dir = if *name == "app.css" { WEB_DIR.to_owned() } else { format!("{WEB_DIR}/dist") };
    let bytes = tokio::fs::read(format!("{dir}/{name}")).await.map_err(|_| ApiError::NotFound)?;
    let mut response = bytes.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct DevSignIn {
    user_id: String,
    name: Option<String>,
    /// `female`, `male`, or absent (unknown: a consenter, like a woman).
    gender: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DevTokenView {
    token: String,
}

/// A user token for anyone, signed with `JWT_SECRET` (development only).
#[utoipa::path(post, path = "/app/dev-token", operation_id = "devToken", tag = "development",
    request_body = DevSignIn,
    responses((status = 200, description = "A user token valid for 12 hours", body = DevTokenView),
        (status = 422, description = "Not a user id")))]
async fn dev_token(
    State(state): State<AppState>,
    Json(body): Json<DevSignIn>,
) -> Result<Json<DevTokenView>, ApiError> {
    crate::domain::UserId::parse(&body.user_id).map_err(|e| ApiError::invalid("userId", e.to_string()))?;
    let JwtKey::Hmac(secret) = &state.config.jwt.key else {
        return Err(ApiError::NotFound);
    };
    let token = DevToken {
        user: &body.user_id,
        name: body.name.as_deref().filter(|n| !n.is_empty()),
        gender: body.gender.as_deref().filter(|g| !g.is_empty()),
        roles: &[],
        ttl: std::time::Duration::from_secs(12 * 3600),
    };
    let token =
        mint_dev_token(secret.expose_secret(), &state.config.jwt, &token).map_err(|e| anyhow::anyhow!(e))?;
    Ok(Json(DevTokenView { token }))
}
