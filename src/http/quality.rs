use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::calls::CallPath;
use crate::http::json::ApiJson;
use crate::quality::{self, QualityView, RatingBody, SampleBody, SampleView};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/calls/{id}/quality", get(summary).post(sample))
        .route("/calls/{id}/rating", put(rate))
}

async fn sample(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    ApiJson(body): ApiJson<SampleBody>,
) -> Result<(StatusCode, Json<SampleView>), ApiError> {
    Ok((StatusCode::CREATED, Json(quality::record_sample(&app, &user, id, body).await?)))
}

async fn summary(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<QualityView>, ApiError> {
    Ok(Json(quality::summary(&app, &user, id).await?))
}

async fn rate(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    ApiJson(body): ApiJson<RatingBody>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"rating": quality::rate(&app, &user, id, body).await?})))
}
