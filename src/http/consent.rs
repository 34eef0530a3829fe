use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::calls::consent::{self, LedgerView, RequestView, VideoView};
use crate::domain::AuthUser;
use crate::http::calls::{CallPath, uuid_in_path};
use crate::http::error::ApiError;
use crate::http::openapi::{Conflict, Forbidden, NotFound};
use crate::http::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(state))
        .routes(routes!(request))
        .routes(routes!(accept))
        .routes(routes!(reject))
        .routes(routes!(revoke))
        .routes(routes!(ledger))
}

/// Video in the call as the caller sees it: the state, a pending request, whether the caller may answer it.
#[utoipa::path(get, path = "/calls/{id}/video", operation_id = "videoState", tag = "video",
    params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The call's video state", body = VideoView),
        (status = 404, response = NotFound),
    ))]
async fn state(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<VideoView>, ApiError> {
    Ok(Json(consent::view(&app, &user, id).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
struct RequestCreated {
    request: RequestView,
}

/// Ask for video. Anyone in the call may ask; who may answer depends on the policy.
///
/// Errors: 409 `video_already_on`, `video_request_pending`, `call_ended`, `not_in_call`;
/// 429 `video_request_cooldown` (after a rejection) or `rate_limited`; 503 `unavailable` when
/// the request limiter (Redis) is down.
#[utoipa::path(post, path = "/calls/{id}/video/requests", operation_id = "requestVideo", tag = "video",
    params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 201, description = "The pending request", body = RequestCreated),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn request(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<(StatusCode, Json<RequestCreated>), ApiError> {
    let request = consent::request(&app, &user, id).await?;
    Ok((StatusCode::CREATED, Json(RequestCreated { request })))
}

/// A video (or recording) request's id from the path.
pub(crate) struct RequestPath(pub(crate) Uuid);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        uuid_in_path(parts, state, "request_id").await.map(RequestPath)
    }
}

/// Consent to a video request. Video comes on once every consenter has agreed.
///
/// Errors: 403 `not_a_consenter`, `own_request`; 404 also for an unknown or expired request;
/// 409 `call_ended`, `not_in_call`.
#[utoipa::path(post, path = "/calls/{id}/video/requests/{request_id}/accept", operation_id = "acceptVideoRequest", tag = "video",
    params(("id" = Uuid, Path, description = "The call's id"), ("request_id" = Uuid, Path, description = "The request's id")),
    responses(
        (status = 200, description = "The call's video state", body = VideoView),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn accept(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    RequestPath(request): RequestPath,
) -> Result<Json<VideoView>, ApiError> {
    Ok(Json(consent::answer(&app, &user, id, request, true).await?))
}

/// Reject a video request; the requester waits out a cooldown before asking again.
///
/// Errors: 403 `not_a_consenter`, `own_request`; 404 also for an unknown or expired request;
/// 409 `call_ended`, `not_in_call`.
#[utoipa::path(post, path = "/calls/{id}/video/requests/{request_id}/reject", operation_id = "rejectVideoRequest", tag = "video",
    params(("id" = Uuid, Path, description = "The call's id"), ("request_id" = Uuid, Path, description = "The request's id")),
    responses(
        (status = 200, description = "The call's video state", body = VideoView),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn reject(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    RequestPath(request): RequestPath,
) -> Result<Json<VideoView>, ApiError> {
    Ok(Json(consent::answer(&app, &user, id, request, false).await?))
}

/// Turn video off (a consenter withdraws consent; a requester withdraws their own pending request).
/// Committed first, then pushed to LiveKit, which unpublishes every camera; `sfuConfirmed` says
/// whether LiveKit confirmed within two seconds (callgate retries either way).
///
/// Errors: 409 `video_off` while video is off, whoever asks; 403 `not_a_consenter`;
/// 409 `call_ended`, `not_in_call`.
#[utoipa::path(post, path = "/calls/{id}/video/revoke", operation_id = "revokeVideo", tag = "video",
    params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The call's video state", body = VideoView),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn revoke(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<VideoView>, ApiError> {
    Ok(Json(consent::revoke(&app, &user, id).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Ledger {
    entries: Vec<LedgerView>,
}

/// The call's consent ledger, oldest first: every request, answer, revocation, outcome, on/off
/// step and violation. A participant reads nobody else's answers (consents, rejects, revokes),
/// and actors only on requests and on their own steps, so that nothing they read tells who said
/// what; the `admin` role reads every row and every actor (each such read is in the audit log).
#[utoipa::path(get, path = "/calls/{id}/consent", operation_id = "consentLedger", tag = "video",
    params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The ledger", body = Ledger),
        (status = 404, response = NotFound),
    ))]
async fn ledger(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<Ledger>, ApiError> {
    Ok(Json(Ledger { entries: consent::ledger(&app, &user, id).await? }))
}
