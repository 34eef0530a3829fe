use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::calls::quality::{self, QualityView, RatingBody, RatingView, SampleBody, SampleView};
use crate::domain::AuthUser;
use crate::http::calls::CallPath;
use crate::http::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unprocessable};
use crate::http::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(summary, sample)).routes(routes!(rate))
}

/// Report one network quality sample (a participant who answered, until shortly after the end).
///
/// Errors: 422 `invalid_field` naming the field; 409 `not_in_call`, `call_ended` (ended over
/// five minutes ago).
#[utoipa::path(post, path = "/calls/{id}/quality", operation_id = "recordQualitySample", tag = "quality",
    params(("id" = Uuid, Path, description = "The call's id")),
    request_body = SampleBody,
    responses(
        (status = 201, description = "The sample's id and its estimated score", body = SampleView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
async fn sample(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    ApiJson(body): ApiJson<SampleBody>,
) -> Result<(StatusCode, Json<SampleView>), ApiError> {
    Ok((StatusCode::CREATED, Json(quality::record_sample(&app, &user, id, body).await?)))
}

/// The call's quality: medians and 95th percentiles for the call and for each participant.
#[utoipa::path(get, path = "/calls/{id}/quality", operation_id = "qualitySummary", tag = "quality",
    params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The summary", body = QualityView),
        (status = 404, response = NotFound),
    ))]
async fn summary(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<QualityView>, ApiError> {
    Ok(Json(quality::summary(&app, &user, id).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Rated {
    rating: RatingView,
}

/// Rate an ended call from 1 to 5; rating again replaces the rating.
///
/// Errors: 422 `invalid_field` (`score`, `comment`); 409 `call_not_ended`; 403 `did_not_take_part`.
#[utoipa::path(put, path = "/calls/{id}/rating", operation_id = "rateCall", tag = "quality",
    params(("id" = Uuid, Path, description = "The call's id")),
    request_body = RatingBody,
    responses(
        (status = 200, description = "The rating", body = Rated),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
async fn rate(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    ApiJson(body): ApiJson<RatingBody>,
) -> Result<Json<Rated>, ApiError> {
    Ok(Json(Rated { rating: quality::rate(&app, &user, id, body).await? }))
}
