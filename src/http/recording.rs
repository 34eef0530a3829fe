//! Recording a call everyone present agreed to (`calls::recording`).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::calls::consent::RequestView;
use crate::calls::recording::{self, RecordingConsentView, RecordingView};
use crate::domain::AuthUser;
use crate::http::calls::{CallPath, uuid_in_path};
use crate::http::consent::RequestPath;
use crate::http::error::ApiError;
use crate::http::openapi::{API_PREFIX, Conflict, Forbidden, NotFound, TooManyRequests};
use crate::http::state::AppState;
use crate::storage::Download;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(state))
        .routes(routes!(request))
        .routes(routes!(accept))
        .routes(routes!(reject))
        .routes(routes!(stop))
        .routes(routes!(list))
        .routes(routes!(file, delete))
        .routes(routes!(link))
}

/// A recording's id from the path.
struct RecordingPath(Uuid);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RecordingPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        uuid_in_path(parts, state, "id").await.map(RecordingPath)
    }
}

/// Recording in the call as the caller sees it: whether it records, a pending request, whether
/// the caller may answer it, the recording being made.
///
/// Errors: 404 for anyone who did not take part.
#[utoipa::path(get, path = "/calls/{id}/recording", operation_id = "recordingState", tag = "recording",
    params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The call's consent to record", body = RecordingConsentView),
        (status = 404, response = NotFound),
    ))]
async fn state(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<RecordingConsentView>, ApiError> {
    Ok(Json(recording::view(&app, &user, id).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
struct RecordingRequestCreated {
    request: RequestView,
}

/// Ask to record the call. Everyone present is asked (the requester consents by asking); it
/// records once all have said yes, and one no declines it. In an appointment's meeting only the
/// host asks.
///
/// Errors: 403 `recording_disabled` (`RECORDING_POLICY` is off), `not_a_host`; 409
/// `recording_already_on`, `recording_request_pending`, `call_not_connected`, `call_ended`,
/// `not_in_call`; 429 `recording_request_cooldown` (after a decline).
#[utoipa::path(post, path = "/calls/{id}/recording/requests", operation_id = "requestRecording", tag = "recording",
    params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 201, description = "The pending request", body = RecordingRequestCreated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 429, response = TooManyRequests),
    ))]
async fn request(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<(StatusCode, Json<RecordingRequestCreated>), ApiError> {
    let request = recording::request(&app, &user, id).await?;
    Ok((StatusCode::CREATED, Json(RecordingRequestCreated { request })))
}

/// Consent to a recording request.
///
/// Errors: 403 `recording_disabled`, `own_request`, `not_a_consenter`; 404 also for an unknown
/// or expired request; 409 `call_ended`, `not_in_call`.
#[utoipa::path(post, path = "/calls/{id}/recording/requests/{request_id}/accept", operation_id = "acceptRecordingRequest", tag = "recording",
    params(("id" = Uuid, Path, description = "The call's id"), ("request_id" = Uuid, Path, description = "The request's id")),
    responses(
        (status = 200, description = "The call's consent to record", body = RecordingConsentView),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn accept(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    RequestPath(request): RequestPath,
) -> Result<Json<RecordingConsentView>, ApiError> {
    Ok(Json(recording::answer(&app, &user, id, request, true).await?))
}

/// Say no to a recording request. Nobody learns who said no.
///
/// Errors: 403 `recording_disabled`, `own_request`, `not_a_consenter`; 404 also for an unknown
/// or expired request; 409 `call_ended`, `not_in_call`.
#[utoipa::path(post, path = "/calls/{id}/recording/requests/{request_id}/reject", operation_id = "rejectRecordingRequest", tag = "recording",
    params(("id" = Uuid, Path, description = "The call's id"), ("request_id" = Uuid, Path, description = "The request's id")),
    responses(
        (status = 200, description = "The call's consent to record", body = RecordingConsentView),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn reject(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    RequestPath(request): RequestPath,
) -> Result<Json<RecordingConsentView>, ApiError> {
    Ok(Json(recording::answer(&app, &user, id, request, false).await?))
}

/// Stop the recording: anyone present, at any time (or, while it is requested, say no; the
/// requester withdraws). Egress finishes the file.
///
/// Errors: 403 `recording_disabled`; 409 `not_recording`, `call_ended`, `not_in_call`.
#[utoipa::path(post, path = "/calls/{id}/recording/stop", operation_id = "stopRecording", tag = "recording",
    params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The call's consent to record", body = RecordingConsentView),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn stop(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<RecordingConsentView>, ApiError> {
    Ok(Json(recording::stop(&app, &user, id).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Recordings {
    recordings: Vec<RecordingView>,
}

/// The call's recordings, oldest first, for those who were in the call and `admin` (audited).
///
/// Errors: 404 for anyone else.
#[utoipa::path(get, path = "/calls/{id}/recordings", operation_id = "listRecordings", tag = "recording",
    params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The call's recordings", body = Recordings),
        (status = 404, response = NotFound),
    ))]
async fn list(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<Recordings>, ApiError> {
    Ok(Json(Recordings { recordings: recording::list(&app, &user, id).await? }))
}

/// A ready recording's file (OGG audio, or MP4), for those who were in the call and `admin`.
///
/// `admin`'s reads are audited. Kept on callgate's disk, the file is the answer; kept in
/// S3-compatible storage, the answer is 303 See Other to a presigned link that works for
/// `RECORDING_LINK_TTL` (the user's token is not sent there).
///
/// Errors: 404 for anyone else, or when the file is gone; 409 `recording_not_ready`.
#[utoipa::path(get, path = "/recordings/{id}/file", operation_id = "recordingFile", tag = "recording",
    params(("id" = Uuid, Path, description = "The recording's id")),
    responses(
        (status = 200, description = "The file", content(
            (Vec<u8> = "audio/ogg"),
            (Vec<u8> = "video/mp4"),
        )),
        (status = 303, description = "The file is in S3-compatible storage: fetch it from the short-lived link in `Location`",
            headers(("Location" = String, description = "A presigned link to the file"))),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn file(
    State(app): State<AppState>,
    user: AuthUser,
    RecordingPath(id): RecordingPath,
) -> Result<Response, ApiError> {
    let (found, how) = recording::download(&app, &user, id).await?;
    let path = match how {
        Download::File(path) => path,
        Download::Link { url, .. } => {
            let headers = [(header::LOCATION, url), (header::CACHE_CONTROL, "private, no-store".to_owned())];
            return Ok((StatusCode::SEE_OTHER, headers).into_response());
        }
    };
    let opened = tokio::fs::File::open(&path).await.map_err(|_| ApiError::NotFound)?;
    let size = opened.metadata().await.map(|m| m.len()).map_err(|_| ApiError::NotFound)?;
    let content_type = recording::content_type(&found.file_type);
    let name = format!("attachment; filename=\"{}\"", recording::filename(&found));
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(opened));
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_DISPOSITION, name),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}

/// Where a recording's file is fetched, and until when.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RecordingLink {
    /// A presigned link to the file in S3-compatible storage (no credentials needed); with
    /// local storage, this API's own `GET /recordings/{id}/file` path (fetched with the user's
    /// token, as any request).
    url: String,
    /// The link stops working then (`RECORDING_LINK_TTL` after it was asked for); ask again
    /// for a new one.
    expires_at: DateTime<Utc>,
}

/// A short-lived link to a ready recording's file, for those who were in the call and `admin`.
///
/// `admin`'s reads are audited. With S3-compatible storage, what `GET /recordings/{id}/file`
/// redirects to, for clients that fetch the file themselves (a media player, a download, a plain
/// link); with local storage, that route's path.
///
/// Errors: 404 for anyone else; 409 `recording_not_ready`.
#[utoipa::path(get, path = "/recordings/{id}/link", operation_id = "recordingLink", tag = "recording",
    params(("id" = Uuid, Path, description = "The recording's id")),
    responses(
        (status = 200, description = "The link", body = RecordingLink),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn link(
    State(app): State<AppState>,
    user: AuthUser,
    RecordingPath(id): RecordingPath,
) -> Result<(HeaderMap, Json<RecordingLink>), ApiError> {
    let (found, how) = recording::download(&app, &user, id).await?;
    let link = match how {
        Download::Link { url, expires_at } => RecordingLink { url, expires_at },
        Download::File(_) => RecordingLink {
            url: format!("{API_PREFIX}/recordings/{}/file", found.id),
            expires_at: app.clock.now() + app.config.recording.link_ttl,
        },
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok((headers, Json(link)))
}

/// Delete a recording's file (one who was in the call, or `admin`); its row stays, `deleted`.
///
/// The row stays until `RECORDING_RETENTION` removes it.
///
/// Errors: 404 for anyone else; 409 `recording_not_ready` while it is still being made.
#[utoipa::path(delete, path = "/recordings/{id}/file", operation_id = "deleteRecording", tag = "recording",
    params(("id" = Uuid, Path, description = "The recording's id")),
    responses(
        (status = 200, description = "The recording, deleted", body = RecordingView),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn delete(
    State(app): State<AppState>,
    user: AuthUser,
    RecordingPath(id): RecordingPath,
) -> Result<Json<RecordingView>, ApiError> {
    Ok(Json(recording::delete(&app, &user, id).await?))
}
