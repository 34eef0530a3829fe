use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::calls::lifecycle::{self, StartCall};
use crate::calls::views::{CallOnly, CallView, CallWithJoin, JoinOnly};
use crate::domain::AuthUser;
use crate::domain::Code;
use crate::domain::{CallId, CallType, UserId};
use crate::http::bounds;
use crate::http::error::ApiError;
use crate::http::json::{ApiJson, ApiQuery};
use crate::http::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unprocessable};
use crate::http::state::AppState;
use crate::store;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(active))
        .routes(routes!(history))
        .routes(routes!(get_call))
        .routes(routes!(accept))
        .routes(routes!(decline))
        .routes(routes!(end))
        .routes(routes!(leave))
        .routes(routes!(token))
        .routes(routes!(invite))
        .routes(routes!(join_late))
}

/// The UUID named `name` in the path; anything that is not a UUID is
/// simply not found. (The request's log span names the call already: see
/// `crate::http::router`.)
pub async fn uuid_in_path<S: Send + Sync>(
    parts: &mut axum::http::request::Parts,
    state: &S,
    name: &str,
) -> Result<Uuid, ApiError> {
    let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::NotFound)?;
    let raw = params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default();
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound)
}

/// A call id from the path.
pub struct CallPath(pub CallId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for CallPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        uuid_in_path(parts, state, "id").await.map(|id| CallPath(CallId(id)))
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct StartBody {
    /// Whom to call (not the caller, each once).
    #[schema(min_items = 1)]
    participant_ids: Vec<UserId>,
    #[serde(rename = "type")]
    call_type: CallType,
    /// The host application's conversation, 1 to 256 printable characters.
    #[schema(min_length = 1, max_length = 256)]
    conversation_id: Option<String>,
    /// Any reference of the host application's, 1 to 256 printable characters.
    #[schema(min_length = 1, max_length = 256)]
    external_ref: Option<String>,
    /// Removed: a call booked ahead is an appointment (`POST /appointments`); `true` is refused.
    #[schema(value_type = Option<bool>)]
    scheduled: Option<bool>,
}

const MAX_REF_LEN: usize = 256;

fn validate(body: StartBody, caller: &UserId, max_participants: usize) -> Result<StartCall, ApiError> {
    if body.scheduled == Some(true) {
        return Err(ApiError::invalid(
            "scheduled",
            "a call booked ahead is an appointment: POST /appointments",
        ));
    }
    if body.participant_ids.is_empty() {
        return Err(ApiError::invalid("participantIds", "name at least one participant to call"));
    }
    if body.participant_ids.contains(caller) {
        return Err(ApiError::Invalid {
            code: Code::CannotCallYourself,
            field: Some("participantIds".into()),
            detail: "you cannot call yourself".into(),
        });
    }
    let unique: BTreeSet<&UserId> = body.participant_ids.iter().collect();
    if unique.len() != body.participant_ids.len() {
        return Err(ApiError::Invalid {
            code: Code::DuplicateParticipants,
            field: Some("participantIds".into()),
            detail: "a participant is named twice".into(),
        });
    }
    if body.participant_ids.len() + 1 > max_participants {
        return Err(ApiError::Invalid {
            code: Code::TooManyParticipants,
            field: Some("participantIds".into()),
            detail: format!("a call has at most {max_participants} participants, you included"),
        });
    }
    for (field, value) in [("conversationId", &body.conversation_id), ("externalRef", &body.external_ref)] {
        if let Some(v) = value
            && (v.is_empty() || v.chars().count() > MAX_REF_LEN || v.chars().any(char::is_control))
        {
            return Err(ApiError::invalid(field, format!("must be 1 to {MAX_REF_LEN} printable characters")));
        }
    }
    Ok(StartCall {
        invitees: body.participant_ids,
        call_type: body.call_type,
        conversation_id: body.conversation_id,
        external_ref: body.external_ref,
    })
}

/// Start a call: creates its LiveKit room and rings the invitees. The caller's ICE servers are STUN
/// alone while it rings (no relay for a call nobody answers): join the room once it is answered
/// (`call.accepted`) with a fresh token, `POST /calls/{id}/token`, which carries TURN.
///
/// Errors: 422 `invalid_field`, `cannot_call_yourself`, `duplicate_participants`,
/// `too_many_participants` (a call booked ahead is an appointment: `POST /appointments`);
/// 409 `caller_busy`, `callee_busy` (the call is recorded as ended,
/// `busy`), `callee_offline` (when `REQUIRE_CALLEE_ONLINE`); 429 `rate_limited`.
#[utoipa::path(post, path = "/calls", operation_id = "startCall", tag = "calls", request_body = StartBody,
    responses(
        (status = 201, description = "The call, ringing; the caller's LiveKit join details", body = CallWithJoin),
        (status = 400, response = BadRequest),
        (status = 403, response = crate::http::openapi::Forbidden),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
async fn start(
    State(app): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<(StatusCode, Json<CallWithJoin>), ApiError> {
    let req = validate(body, &user.id, app.config.max_call_participants)?;
    let created = lifecycle::start(&app, &user, req).await?;
    tracing::Span::current().record("call_id", tracing::field::display(created.call.id));
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AcceptBody {
    /// For a `video` call: answers the caller's video request (true consents, false rejects).
    video: Option<bool>,
    /// Consents (true) or not to a recording running or requested: joining a call being recorded
    /// without `true` stops the recording.
    recording: Option<bool>,
}

impl AcceptBody {
    fn consents(&self) -> crate::calls::participants::Consents {
        crate::calls::participants::Consents { video: self.video, recording: self.recording }
    }
}

/// Answer a ringing call (an invitee); the body is optional.
///
/// Errors: 409 `already_answered`, `not_an_invitee`, `call_ended`, `caller_busy`, `join_through_appointment`
/// (an appointment's call is joined through `POST /appointments/{id}/join`).
#[utoipa::path(post, path = "/calls/{id}/accept", operation_id = "acceptCall", tag = "calls", params(("id" = Uuid, Path, description = "The call's id")),
    request_body(content = Option<AcceptBody>, description = "Optional; may be empty"),
    responses(
        (status = 200, description = "The call and the answerer's join details", body = CallWithJoin),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
async fn accept(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    ApiJson(body): ApiJson<AcceptBody>,
) -> Result<Json<CallWithJoin>, ApiError> {
    Ok(Json(lifecycle::accept(&app, &user, id, body.consents()).await?))
}

/// Decline a ringing call (an invitee).
///
/// Errors: 409 `not_an_invitee`, `already_answered`, `call_ended`, `join_through_appointment`.
#[utoipa::path(post, path = "/calls/{id}/decline", operation_id = "declineCall", tag = "calls", params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The call as it now stands", body = CallOnly),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn decline(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<CallOnly>, ApiError> {
    Ok(Json(lifecycle::decline(&app, &user, id).await?))
}

/// End the call for everyone; the initiator may also cancel it while it rings. An invitee who has
/// not answered may only decline.
///
/// Errors: 403 `not_initiator` (an invitee ending a ringing call); 409 `call_ended`, `not_in_call`,
/// `not_answered` (an invitee still being rung).
#[utoipa::path(post, path = "/calls/{id}/end", operation_id = "endCall", tag = "calls", params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The call as it now stands", body = CallOnly),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn end(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<CallOnly>, ApiError> {
    Ok(Json(lifecycle::end(&app, &user, id).await?))
}

/// Leave the call; it ends when fewer than two remain (an appointment's call that has not met
/// stays open until its no-show deadline).
///
/// Errors: 409 `call_ended`, `not_in_call`.
#[utoipa::path(post, path = "/calls/{id}/leave", operation_id = "leaveCall", tag = "calls", params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The call as it now stands", body = CallOnly),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn leave(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<CallOnly>, ApiError> {
    Ok(Json(lifecycle::leave(&app, &user, id).await?))
}

/// A fresh LiveKit token for the call's room, with the publish rights the consent policy gives now,
/// and the ICE servers: TURN with credentials once someone has answered the call, STUN alone while
/// it rings.
///
/// Errors: 409 `call_ended`, `not_in_call`, `join_through_appointment`, `not_answered`.
#[utoipa::path(post, path = "/calls/{id}/token", operation_id = "callToken", tag = "calls", params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 200, description = "Join details", body = JoinOnly),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
async fn token(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<JoinOnly>, ApiError> {
    Ok(Json(lifecycle::token(&app, &user, id).await?))
}

/// One call the caller takes part in.
#[utoipa::path(get, path = "/calls/{id}", operation_id = "getCall", tag = "calls", params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The call", body = CallView),
        (status = 404, response = NotFound),
    ))]
async fn get_call(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<CallView>, ApiError> {
    Ok(Json(lifecycle::get(&app, &user, id).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct CallList {
    calls: Vec<CallView>,
    /// Where the next page starts, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// The caller's live calls (ringing, connecting or active).
#[utoipa::path(get, path = "/calls/active", operation_id = "activeCalls", tag = "calls",
    responses((status = 200, description = "Live calls", body = CallList)))]
async fn active(State(app): State<AppState>, user: AuthUser) -> Result<Json<CallList>, ApiError> {
    let rows = store::live_calls_of(&app.db, &user.id).await?;
    Ok(Json(CallList { calls: lifecycle::views(&app, rows).await?, next_cursor: None }))
}

/// Query parameters are read as text so that a bad one is a 422 naming it.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
    /// Calls per page, 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Only the calls of this conversation (1 to 256 printable characters).
    #[serde(rename = "conversationId")]
    #[param(rename = "conversationId")]
    conversation_id: Option<String>,
    /// Only the calls this user was in too.
    with: Option<String>,
}

/// A page cursor: where the next page starts (a time and an id).
pub(crate) fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    let raw = format!("{}|{}", at.timestamp_micros(), id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// A cursor this service issued, or `None`.
pub(crate) fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (micros, id) = raw.split_once('|')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?).filter(|at| bounds::is_sane(*at))?;
    Some((at, Uuid::parse_str(id).ok()?))
}

/// The caller's calls, newest first; of one conversation
/// (`conversationId`) or with one person (`with`) if asked.
///
/// Errors: 400 `invalid_cursor`; 422 `invalid_field` (`limit`, `conversationId`, `with`).
#[utoipa::path(get, path = "/calls/history", operation_id = "callHistory", tag = "calls", params(HistoryQuery),
    responses(
        (status = 200, description = "A page of calls", body = CallList),
        (status = 400, response = BadRequest),
        (status = 422, response = Unprocessable),
    ))]
async fn history(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<CallList>, ApiError> {
    let limit = match q.limit.as_deref() {
        None => 20,
        Some(raw) => {
            raw.parse::<i64>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| ApiError::Invalid {
                code: Code::InvalidField,
                field: Some("limit".into()),
                detail: "limit must be 1 to 100".into(),
            })?
        }
    };
    let before = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(decode_cursor(c).ok_or_else(|| ApiError::BadRequest {
            code: Code::InvalidCursor,
            field: Some("cursor".into()),
            detail: "the cursor is not one this service issued".into(),
        })?),
    };
    if let Some(v) = q.conversation_id.as_deref()
        && (v.is_empty() || v.chars().count() > MAX_REF_LEN || v.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "conversationId",
            format!("must be 1 to {MAX_REF_LEN} printable characters"),
        ));
    }
    let with = match q.with.as_deref() {
        None => None,
        Some(raw) => Some(UserId::parse(raw).map_err(|e| ApiError::invalid("with", e.to_string()))?),
    };
    let filter =
        store::calls::HistoryFilter { conversation: q.conversation_id.as_deref(), with: with.as_ref() };
    let mut rows = store::history(&app.db, &user.id, before, limit + 1, &filter).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|c| encode_cursor(c.created_at, c.id.0))
    } else {
        None
    };
    Ok(Json(CallList { calls: lifecycle::views(&app, rows).await?, next_cursor: next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("valid");
        let id = Uuid::new_v4();
        assert_eq!(decode_cursor(&encode_cursor(at, id)), Some((at, id)));
        assert_eq!(decode_cursor("garbage"), None);
    }

    #[test]
    fn a_cursor_with_an_extreme_time_is_not_one_this_service_issued() {
        let forged = |micros: i64| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{micros}|{}", Uuid::new_v4()))
        };
        assert_eq!(decode_cursor(&forged(i64::MIN)), None);
        assert_eq!(decode_cursor(&forged(-8_210_298_412_800_000_000)), None, "year -258000");
        assert_eq!(decode_cursor(&forged(i64::MAX)), None);
        assert!(decode_cursor(&forged(1_700_000_000_000_000)).is_some());
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InviteBody {
    /// Whom to ring into the call (not yourself, each once, nobody already in it).
    #[schema(min_items = 1)]
    participant_ids: Vec<UserId>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct InvitedView {
    call: CallView,
    /// Rung now, in the same room.
    #[schema(value_type = Vec<String>)]
    rung: Vec<UserId>,
    /// In another call (or otherwise unavailable): not rung.
    #[schema(value_type = Vec<String>)]
    busy: Vec<UserId>,
}

/// Invite more users into a live call (someone in it): they ring in the same room, through the
/// same authorization, block, cooldown and busy rules as a new call; a 1:1 call becomes a group
/// call.
///
/// Errors: 403 `call_not_allowed`; 409 `call_ended`, `not_answered` (you are not in it),
/// `join_through_appointment`; 422 `invalid_field`, `cannot_call_yourself`,
/// `duplicate_participants` (named twice, or already in the call), `too_many_participants`;
/// 429 `rate_limited`, `ring_cooldown`.
#[utoipa::path(post, path = "/calls/{id}/invitations", operation_id = "inviteToCall", tag = "calls",
    params(("id" = Uuid, Path, description = "The call's id")),
    request_body = InviteBody,
    responses(
        (status = 200, description = "Who rings now, and who was busy", body = InvitedView),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 429, response = crate::http::openapi::TooManyRequests),
        (status = 503, response = crate::http::openapi::Unavailable),
    ))]
async fn invite(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    ApiJson(body): ApiJson<InviteBody>,
) -> Result<Json<InvitedView>, ApiError> {
    let ids = body.participant_ids;
    if ids.is_empty() {
        return Err(ApiError::invalid("participantIds", "name at least one user to invite"));
    }
    if ids.contains(&user.id) {
        return Err(ApiError::Invalid {
            code: Code::CannotCallYourself,
            field: Some("participantIds".into()),
            detail: "you are in the call already".into(),
        });
    }
    let unique: BTreeSet<&UserId> = ids.iter().collect();
    if unique.len() != ids.len() {
        return Err(ApiError::Invalid {
            code: Code::DuplicateParticipants,
            field: Some("participantIds".into()),
            detail: "a participant is named twice".into(),
        });
    }
    if ids.len() > app.config.max_call_participants {
        return Err(ApiError::Invalid {
            code: Code::TooManyParticipants,
            field: Some("participantIds".into()),
            detail: format!("a call has at most {} participants", app.config.max_call_participants),
        });
    }
    let invited = crate::calls::growth::invite(&app, &user, id, ids).await?;
    Ok(Json(InvitedView { call: invited.call, rung: invited.rung, busy: invited.busy }))
}

/// Join a live call you declined or missed the ring of (a group invitee); `video` answers as on
/// `accept` (a consenter joining while video is on keeps it on only with `true`).
///
/// Errors: 409 `call_ended`, `not_answered` (it is ringing you: accept), `already_answered`,
/// `not_in_call`, `not_an_invitee`, `caller_busy`, `join_through_appointment`.
#[utoipa::path(post, path = "/calls/{id}/join", operation_id = "joinCall", tag = "calls",
    params(("id" = Uuid, Path, description = "The call's id")),
    request_body(content = Option<AcceptBody>, description = "Optional; may be empty"),
    responses(
        (status = 200, description = "The call and the joiner's join details", body = CallWithJoin),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
async fn join_late(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    ApiJson(body): ApiJson<AcceptBody>,
) -> Result<Json<CallWithJoin>, ApiError> {
    Ok(Json(crate::calls::growth::join(&app, &user, id, body.consents()).await?))
}
