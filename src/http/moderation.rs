//! What moderators (the `admin` role) do, under `/admin`: end a call,
//! remove a participant, suspend a user and lift it, read the audit log.
//! A call's full ledger and reports are its own routes
//! (`GET /calls/{id}/consent`, `GET /calls/{id}/reports`), which show
//! `admin` everything.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::calls::moderation::{self, AuditEntryView, SuspensionView};
use crate::calls::views::CallOnly;
use crate::domain::{AuthUser, CallId, UserId};
use crate::http::calls::CallPath;
use crate::http::error::ApiError;
use crate::http::json::{ApiJson, ApiQuery};
use crate::http::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unprocessable};
use crate::http::state::AppState;
use crate::store::audit_log::Filter;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(end_call))
        .routes(routes!(remove))
        .routes(routes!(suspension, suspend))
        .routes(routes!(lift))
        .routes(routes!(audit))
}

fn user_in_path(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|e| ApiError::invalid("userId", e.to_string()))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ModerationReason {
    /// Why, for the audit log: 1 to 1000 characters.
    #[schema(min_length = 1, max_length = 1000)]
    reason: String,
}

/// Ends a live call for everyone (outcome as a hang-up would give it, end reason `moderator`;
/// its participants are not told who ended it or why). Audited.
///
/// Errors: 403 `admin_only`; 409 `call_ended`; 422 `invalid_field` (`reason`).
#[utoipa::path(post, path = "/admin/calls/{id}/end", operation_id = "moderatorEndCall", tag = "safety",
    params(("id" = Uuid, Path, description = "The call's id")),
    request_body = ModerationReason,
    responses(
        (status = 200, description = "The call, ended", body = CallOnly),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
async fn end_call(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    ApiJson(body): ApiJson<ModerationReason>,
) -> Result<Json<CallOnly>, ApiError> {
    let why = moderation::reason(&body.reason)?;
    Ok(Json(moderation::end_call(&app, &user, id, &why).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RemoveBody {
    /// A participant present in the call.
    user_id: UserId,
    /// Why, for the audit log and the host's webhook: 1 to 1000 characters.
    #[schema(min_length = 1, max_length = 1000)]
    reason: String,
}

/// Removes a participant from a live call for good: out of its room at once, never let back
/// in (a 1:1 call ends, end reason `moderator`). The host hears it as a `consent.violation` app
/// webhook (`removed_by_moderator`). Audited.
///
/// Errors: 403 `admin_only`; 409 `call_ended`, `not_in_call` (not present in the call);
/// 422 `invalid_field` (`userId`, `reason`).
#[utoipa::path(post, path = "/admin/calls/{id}/remove", operation_id = "moderatorRemoveParticipant",
    tag = "safety", params(("id" = Uuid, Path, description = "The call's id")),
    request_body = RemoveBody,
    responses(
        (status = 200, description = "The call as it now stands", body = CallOnly),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
async fn remove(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    ApiJson(body): ApiJson<RemoveBody>,
) -> Result<Json<CallOnly>, ApiError> {
    let why = moderation::reason(&body.reason)?;
    Ok(Json(moderation::remove(&app, &user, id, &body.user_id, &why).await?))
}

/// The user's suspension in force, if any.
///
/// Errors: 403 `admin_only`; 404 (none in force); 422 `invalid_field` (`userId`).
#[utoipa::path(get, path = "/admin/suspensions/{userId}", operation_id = "suspension", tag = "safety",
    params(("userId" = String, Path, description = "The user")),
    responses(
        (status = 200, description = "In force", body = SuspensionView),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
    ))]
async fn suspension(
    State(app): State<AppState>,
    user: AuthUser,
    Path(other): Path<String>,
) -> Result<Json<SuspensionView>, ApiError> {
    let other = user_in_path(&other)?;
    moderation::suspension(&app, &user, &other).await?.map(Json).ok_or(ApiError::NotFound)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SuspendBody {
    /// Why, for the audit log: 1 to 1000 characters.
    #[schema(min_length = 1, max_length = 1000)]
    reason: String,
    /// For how long, 60 s to ten years; leave it out to suspend until lifted.
    #[schema(minimum = 60, maximum = 315_360_000)]
    duration_seconds: Option<i64>,
}

/// Suspends a user from calling and being called, for a time or until lifted (replacing any
/// suspension they had). Their calls, and calls to them, are answered as if the other side were
/// busy; nobody is told why. Calls they are in go on. Audited.
///
/// Errors: 403 `admin_only`; 422 `invalid_field` (`userId`, `reason`, `durationSeconds`).
#[utoipa::path(put, path = "/admin/suspensions/{userId}", operation_id = "suspendUser", tag = "safety",
    params(("userId" = String, Path, description = "The user to suspend")),
    request_body = SuspendBody,
    responses(
        (status = 200, description = "In force", body = SuspensionView),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
    ))]
async fn suspend(
    State(app): State<AppState>,
    user: AuthUser,
    Path(other): Path<String>,
    ApiJson(body): ApiJson<SuspendBody>,
) -> Result<Json<SuspensionView>, ApiError> {
    let other = user_in_path(&other)?;
    let why = moderation::reason(&body.reason)?;
    // Out of chrono's range is out of the allowed one too (and would panic).
    let duration =
        body.duration_seconds.map(|s| chrono::Duration::try_seconds(s).unwrap_or(chrono::Duration::MAX));
    Ok(Json(moderation::suspend(&app, &user, &other, duration, &why).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
struct SuspensionLifted {
    /// Whether a suspension was in force.
    lifted: bool,
}

/// Lifts a user's suspension (whether or not one was in force). Audited.
///
/// Errors: 403 `admin_only`; 422 `invalid_field` (`userId`, `reason`).
#[utoipa::path(post, path = "/admin/suspensions/{userId}/lift", operation_id = "liftSuspension",
    tag = "safety", params(("userId" = String, Path, description = "The user")),
    request_body = ModerationReason,
    responses(
        (status = 200, description = "Not suspended", body = SuspensionLifted),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
    ))]
async fn lift(
    State(app): State<AppState>,
    user: AuthUser,
    Path(other): Path<String>,
    ApiJson(body): ApiJson<ModerationReason>,
) -> Result<Json<SuspensionLifted>, ApiError> {
    let other = user_in_path(&other)?;
    let why = moderation::reason(&body.reason)?;
    Ok(Json(SuspensionLifted { lifted: moderation::lift(&app, &user, &other, &why).await? }))
}

const MAX_ENTRIES: i64 = 200;

/// Query parameters are read as text so that a bad one is a 422 naming it.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
struct AuditQuery {
    /// Only the entries about this call.
    #[param(value_type = Option<uuid::Uuid>)]
    call_id: Option<String>,
    /// Only the entries about this user.
    user_id: Option<String>,
    /// `nextCursor` of the previous page: entries older than this one.
    #[param(value_type = Option<i64>, minimum = 1)]
    before: Option<String>,
    /// Entries per page, 1 to 200 (the default).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AuditLog {
    /// Newest first.
    entries: Vec<AuditEntryView>,
    /// Pass as `before` for the next page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// What moderators did: who, when, what, to which call or user, and why.
///
/// Errors: 403 `admin_only`; 422 `invalid_field` (`callId`, `userId`, `before`, `limit`).
#[utoipa::path(get, path = "/admin/audit", operation_id = "auditLog", tag = "safety", params(AuditQuery),
    responses(
        (status = 200, description = "A page of the audit log", body = AuditLog),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
    ))]
async fn audit(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditLog>, ApiError> {
    let bad = |name: &str| ApiError::invalid(name, format!("{name} is not valid here"));
    let call = match q.call_id.as_deref() {
        None => None,
        Some(raw) => Some(CallId(uuid::Uuid::parse_str(raw).map_err(|_| bad("callId"))?)),
    };
    let about = q.user_id.as_deref().map(UserId::parse).transpose().map_err(|_| bad("userId"))?;
    let before = match q.before.as_deref() {
        None => None,
        Some(raw) => Some(raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| bad("before"))?),
    };
    let limit = match q.limit.as_deref() {
        None => MAX_ENTRIES,
        Some(raw) => {
            raw.parse::<i64>().ok().filter(|n| (1..=MAX_ENTRIES).contains(n)).ok_or_else(|| bad("limit"))?
        }
    };
    let filter = Filter { before, call, user: about.as_ref(), limit: limit + 1 };
    let mut entries = moderation::audit(&app, &user, &filter).await?;
    let more = entries.len() as i64 > limit;
    entries.truncate(limit as usize);
    let next_cursor = if more { entries.last().map(|e| e.id.to_string()) } else { None };
    Ok(Json(AuditLog { entries, next_cursor }))
}
