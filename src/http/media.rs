use axum::extract::State;
use axum::routing::patch;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::calls::CallPath;
use crate::http::json::ApiJson;
use crate::media::{self, MediaChange};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/calls/{id}/participants/me", patch(update))
}

async fn update(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    ApiJson(change): ApiJson<MediaChange>,
) -> Result<Json<Value>, ApiError> {
    let media = media::update(&app, &user, id, change).await?;
    Ok(Json(json!({"participant": media})))
}
