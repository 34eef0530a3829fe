use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::calls::CallPath;
use crate::state::AppState;
use crate::video::{self, VideoView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/calls/{id}/video", get(state))
        .route("/calls/{id}/video/requests", post(request))
        .route("/calls/{id}/video/requests/{request_id}/accept", post(accept))
        .route("/calls/{id}/video/requests/{request_id}/reject", post(reject))
        .route("/calls/{id}/video/revoke", post(revoke))
        .route("/calls/{id}/consent", get(ledger))
}

async fn state(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<VideoView>, ApiError> {
    Ok(Json(video::view(&app, &user, id).await?))
}

async fn request(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request = video::request(&app, &user, id).await?;
    Ok((StatusCode::CREATED, Json(json!({"request": request}))))
}

fn request_id(params: &[(String, String)]) -> Result<Uuid, ApiError> {
    params
        .iter()
        .find(|(k, _)| k == "request_id")
        .and_then(|(_, v)| Uuid::parse_str(v).ok())
        .ok_or(ApiError::NotFound)
}

async fn accept(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    Path(params): Path<Vec<(String, String)>>,
) -> Result<Json<VideoView>, ApiError> {
    Ok(Json(video::answer(&app, &user, id, request_id(&params)?, true).await?))
}

async fn reject(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    Path(params): Path<Vec<(String, String)>>,
) -> Result<Json<VideoView>, ApiError> {
    Ok(Json(video::answer(&app, &user, id, request_id(&params)?, false).await?))
}

async fn revoke(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<VideoView>, ApiError> {
    Ok(Json(video::revoke(&app, &user, id).await?))
}

async fn ledger(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"entries": video::ledger(&app, &user, id).await?})))
}
