use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use axum::routing::post;

use crate::error::ApiError;
use crate::state::AppState;
use crate::{webhook_inbox, webhooks};

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/livekit", post(livekit))
}

/// LiveKit signs the raw body; its `Authorization` header is the bare JWT.
/// The event is stored, then handled after the answer (`crate::webhook_inbox`).
async fn livekit(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let auth = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized("missing webhook signature"))?;
    let body = std::str::from_utf8(&body).map_err(|_| ApiError::BadRequest {
        code: "malformed_body",
        field: None,
        detail: "the body is not UTF-8".into(),
    })?;
    let event = webhooks::verify(&app, body, auth)?;
    webhook_inbox::ingest(&app, &event, body).await?;
    Ok(StatusCode::NO_CONTENT)
}
