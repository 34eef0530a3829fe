use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::calls::media::{self, MediaChange, MediaView};
use crate::domain::AuthUser;
use crate::http::calls::CallPath;
use crate::http::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unprocessable};
use crate::http::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(update))
}

#[derive(Serialize, utoipa::ToSchema)]
struct ParticipantMedia {
    participant: MediaView,
}

/// Mute or unmute the caller's own microphone, camera or screen share (fields left out stay as they are).
///
/// Errors: 409 `video_off` (camera or screen share while video is off), `call_ended`, `not_in_call`;
/// 403 `screen_share_not_allowed` (the caller's roles may not share).
#[utoipa::path(patch, path = "/calls/{id}/participants/me", operation_id = "updateMyMedia", tag = "media",
    params(("id" = Uuid, Path, description = "The call's id")),
    request_body = MediaChange,
    responses(
        (status = 200, description = "The caller's media", body = ParticipantMedia),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
async fn update(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    ApiJson(change): ApiJson<MediaChange>,
) -> Result<Json<ParticipantMedia>, ApiError> {
    Ok(Json(ParticipantMedia { participant: media::update(&app, &user, id, change).await? }))
}
