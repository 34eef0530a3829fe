use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::Code;
use crate::http::error::ApiError;
use crate::http::openapi::{BadRequest, Unauthorized, Unavailable};
use crate::http::state::AppState;
use crate::ingest::inbox;
use crate::metrics::WebhookResult;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(livekit))
}

/// LiveKit's webhook (`WebhookEvent` as JSON). LiveKit signs the raw body; its `Authorization`
/// header is the bare JWT (no `Bearer`). The event is stored, answered, then handled in order per
/// call; a repeated event id is accepted and ignored.
///
/// Errors: 401 `unauthorized` (missing or bad signature); 400 `malformed_body`; 503 `unavailable`
/// when the inbox is full (LiveKit retries).
#[utoipa::path(post, path = "/webhooks/livekit", operation_id = "livekitWebhook", tag = "livekit",
    request_body(content = Object, content_type = "application/webhook+json", description = "LiveKit's WebhookEvent"),
    params(("Authorization" = String, Header, description = "LiveKit's signature: a JWT whose `sha256` claim is the body's hash")),
    responses(
        (status = 204, description = "Stored (or already seen)"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ))]
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
        code: Code::MalformedBody,
        field: None,
        detail: "the body is not UTF-8".into(),
    })?;
    let event = app.webhooks.verify(body, auth).map_err(|err| {
        tracing::warn!(error = %err, "LiveKit webhook refused");
        app.metrics.livekit_webhook(None, WebhookResult::Rejected);
        ApiError::Unauthorized("invalid webhook signature")
    })?;
    inbox::ingest(&app.webhook_inbox, &event, body).await?;
    Ok(StatusCode::NO_CONTENT)
}
