use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::calls::{self, StartCall};
use crate::domain::{CallId, CallType, UserId};
use crate::error::ApiError;
use crate::http::json::ApiJson;
use crate::state::AppState;
use crate::store;
use crate::views::{CallOnly, CallView, CallWithJoin, JoinOnly};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/calls", post(start))
        .route("/calls/active", get(active))
        .route("/calls/history", get(history))
        .route("/calls/{id}", get(get_call))
        .route("/calls/{id}/accept", post(accept))
        .route("/calls/{id}/decline", post(decline))
        .route("/calls/{id}/end", post(end))
        .route("/calls/{id}/leave", post(leave))
        .route("/calls/{id}/token", post(token))
}

/// A call id from the path; anything that is not a UUID is simply not found.
pub struct CallPath(pub CallId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for CallPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        let raw = params.iter().find(|(k, _)| k == "id").map(|(_, v)| v.as_str()).unwrap_or_default();
        let id = Uuid::parse_str(raw).map_err(|_| ApiError::NotFound)?;
        tracing::Span::current().record("call_id", tracing::field::display(id));
        Ok(CallPath(CallId(id)))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartBody {
    participant_ids: Vec<UserId>,
    #[serde(rename = "type")]
    call_type: CallType,
    conversation_id: Option<String>,
    external_ref: Option<String>,
    #[serde(default)]
    scheduled: bool,
}

const MAX_REF_LEN: usize = 256;

fn validate(body: StartBody, caller: &UserId, max_participants: usize) -> Result<StartCall, ApiError> {
    if body.participant_ids.is_empty() {
        return Err(ApiError::invalid("participantIds", "name at least one participant to call"));
    }
    if body.participant_ids.contains(caller) {
        return Err(ApiError::Invalid {
            code: "cannot_call_yourself",
            field: Some("participantIds".into()),
            detail: "you cannot call yourself".into(),
        });
    }
    let unique: BTreeSet<&UserId> = body.participant_ids.iter().collect();
    if unique.len() != body.participant_ids.len() {
        return Err(ApiError::Invalid {
            code: "duplicate_participants",
            field: Some("participantIds".into()),
            detail: "a participant is named twice".into(),
        });
    }
    if body.participant_ids.len() + 1 > max_participants {
        return Err(ApiError::Invalid {
            code: "too_many_participants",
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
        scheduled: body.scheduled,
    })
}

async fn start(
    State(app): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<(StatusCode, Json<CallWithJoin>), ApiError> {
    let req = validate(body, &user.id, app.config.max_call_participants)?;
    let created = calls::start(&app, &user, req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AcceptBody {
    video: Option<bool>,
}

async fn accept(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    ApiJson(body): ApiJson<AcceptBody>,
) -> Result<Json<CallWithJoin>, ApiError> {
    Ok(Json(calls::accept(&app, &user, id, body.video).await?))
}

async fn decline(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<CallOnly>, ApiError> {
    Ok(Json(calls::decline(&app, &user, id).await?))
}

async fn end(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<CallOnly>, ApiError> {
    Ok(Json(calls::end(&app, &user, id).await?))
}

async fn leave(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<CallOnly>, ApiError> {
    Ok(Json(calls::leave(&app, &user, id).await?))
}

async fn token(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<JoinOnly>, ApiError> {
    Ok(Json(calls::token(&app, &user, id).await?))
}

async fn get_call(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<CallView>, ApiError> {
    Ok(Json(calls::get(&app, &user, id).await?))
}

async fn active(State(app): State<AppState>, user: AuthUser) -> Result<Json<Value>, ApiError> {
    let rows = store::live_calls_of(&app.db, &user.id).await?;
    Ok(Json(json!({"calls": calls::views(&app, rows).await?})))
}

#[derive(Deserialize)]
struct HistoryQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    let raw = format!("{}|{}", at.timestamp_micros(), id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (micros, id) = raw.split_once('|')?;
    Some((DateTime::from_timestamp_micros(micros.parse().ok()?)?, Uuid::parse_str(id).ok()?))
}

async fn history(
    State(app): State<AppState>,
    user: AuthUser,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = match q.limit.as_deref() {
        None => 20,
        Some(raw) => {
            raw.parse::<i64>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| ApiError::Invalid {
                code: "invalid_field",
                field: Some("limit".into()),
                detail: "limit must be 1 to 100".into(),
            })?
        }
    };
    let before = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(decode_cursor(c).ok_or_else(|| ApiError::BadRequest {
            code: "invalid_cursor",
            field: Some("cursor".into()),
            detail: "the cursor is not one this service issued".into(),
        })?),
    };
    let mut rows = store::history(&app.db, &user.id, before, limit + 1).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|c| encode_cursor(c.created_at, c.id))
    } else {
        None
    };
    let calls = calls::views(&app, rows).await?;
    let mut body = json!({"calls": calls});
    if let Some(next) = next {
        body["nextCursor"] = json!(next);
    }
    Ok(Json(body))
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
}
