//! LiveKit's webhooks. What a request may cost before it is known to come
//! from LiveKit is bounded: its signature (a JWT in `Authorization`) is
//! checked before a byte of the body is read; a body longer than
//! [`MAX_BODY`] is refused unread when its `Content-Length` says so, and
//! past [`MAX_BODY`] when it does not; refusals are counted per client
//! address (`RATE_LIMIT_WEBHOOK_REFUSALS_PER_MINUTE`) and, over that, are
//! answered 429 without a log line. Signed webhooks are never limited here:
//! LiveKit sends thousands a second from one address, and a limit on them
//! would drop its events; what junk can do from LiveKit's address is bounded
//! all the same, since it never reaches the body or the database.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header::AUTHORIZATION, header::CONTENT_LENGTH};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::calls::limits::{limited, rounded_up};
use crate::domain::Code;
use crate::http::error::ApiError;
use crate::http::limits::client_address;
use crate::http::openapi::{BadRequest, PayloadTooLarge, TooManyRequests, Unauthorized, Unavailable};
use crate::http::state::AppState;
use crate::ingest::inbox;
use crate::metrics::WebhookResult;

/// The longest body taken: LiveKit limits a room's and a participant's
/// metadata and attributes to 64 KB each, and an event carries one room and
/// one participant at most.
pub const MAX_BODY: usize = 256 * 1024;

const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(livekit))
}

/// LiveKit's webhook (`WebhookEvent` as JSON). LiveKit signs the raw body; its `Authorization`
/// header is the bare JWT (no `Bearer`). The event is stored, answered, then handled in order per
/// call; a repeated event id is accepted and ignored.
///
/// Errors: 401 `unauthorized` (missing or bad signature, checked before the body is read); 413
/// `body_too_large` (over 256 KiB); 400 `malformed_body`, `body_unreadable`; 429 `rate_limited`
/// (too many refused requests from one address); 503 `unavailable` when the inbox is full (LiveKit
/// retries).
#[utoipa::path(post, path = "/webhooks/livekit", operation_id = "livekitWebhook", tag = "livekit",
    request_body(content = Object, content_type = "application/webhook+json", description = "LiveKit's WebhookEvent"),
    params(("Authorization" = String, Header, description = "LiveKit's signature: a JWT whose `sha256` claim is the body's hash")),
    responses(
        (status = 204, description = "Stored (or already seen)"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ))]
async fn livekit(State(app): State<AppState>, req: Request) -> Result<StatusCode, ApiError> {
    let client = client_address(&app, &req);
    let (parts, body) = req.into_parts();
    let auth = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(auth) = auth else { return Err(refuse(&app, client, "missing webhook signature")) };
    if let Err(err) = app.webhooks.signed(auth) {
        return Err(refuse(&app, client, &err.to_string()));
    }
    let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|err| {
        if std::error::Error::source(&err).is_some_and(|e| e.is::<http_body_util::LengthLimitError>()) {
            too_large()
        } else {
            ApiError::BadRequest {
                code: Code::BodyUnreadable,
                field: None,
                detail: "the body could not be read".into(),
            }
        }
    })?;
    let body = std::str::from_utf8(&body).map_err(|_| ApiError::BadRequest {
        code: Code::MalformedBody,
        field: None,
        detail: "the body is not UTF-8".into(),
    })?;
    let event = app.webhooks.verify(body, auth).map_err(|err| refuse(&app, client, &err.to_string()))?;
    inbox::ingest(&app.webhook_inbox, &event, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn too_large() -> ApiError {
    ApiError::TooLarge(format!("a LiveKit webhook is at most {MAX_BODY} bytes"))
}

/// A request that is not LiveKit's: logged and answered 401 while its
/// address is within its budget of refusals, 429 beyond it.
fn refuse(app: &AppState, client: Option<std::net::IpAddr>, why: &str) -> ApiError {
    app.metrics.livekit_webhook(None, WebhookResult::Rejected);
    let limit = app.config.limits.webhook_refusals_per_minute;
    if let Some(client) = client.filter(|_| limit > 0)
        && let Some(wait) = app.webhook_refusals.take(client, (limit, MINUTE), Instant::now())
    {
        return ApiError::from(limited("refused webhooks from your address", rounded_up(wait)));
    }
    tracing::warn!(error = why, "LiveKit webhook refused");
    ApiError::Unauthorized("invalid webhook signature")
}
