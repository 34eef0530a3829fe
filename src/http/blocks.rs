//! A user's blocks: `PUT`/`DELETE /blocks/{userId}`, `GET /blocks`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::calls::blocks::{self, BlockView};
use crate::domain::{AuthUser, UserId};
use crate::http::error::ApiError;
use crate::http::openapi::{Conflict, Unprocessable};
use crate::http::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(block, unblock)).routes(routes!(list))
}

fn user_in_path(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|e| ApiError::invalid("userId", e.to_string()))
}

/// Blocks a user: calls between the two never ring, and they are answered
/// as for a busy callee (a block is never revealed). Idempotent.
///
/// Errors: 409 `too_many_blocks`; 422 `invalid_field` (`userId`, yourself).
#[utoipa::path(put, path = "/blocks/{userId}", operation_id = "blockUser", tag = "blocks",
    params(("userId" = String, Path, description = "The user to block")),
    responses(
        (status = 204, description = "Blocked"),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
async fn block(
    State(app): State<AppState>,
    user: AuthUser,
    Path(other): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocks::block(&app, &user.id, &user_in_path(&other)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unblocks a user (whether or not they were blocked).
///
/// Errors: 422 `invalid_field` (`userId`).
#[utoipa::path(delete, path = "/blocks/{userId}", operation_id = "unblockUser", tag = "blocks",
    params(("userId" = String, Path, description = "The user to unblock")),
    responses(
        (status = 204, description = "Not blocked"),
        (status = 422, response = Unprocessable),
    ))]
async fn unblock(
    State(app): State<AppState>,
    user: AuthUser,
    Path(other): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocks::unblock(&app, &user.id, &user_in_path(&other)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
struct Blocks {
    /// Newest first; at most 1000.
    blocks: Vec<BlockView>,
}

/// Whom the caller blocks.
#[utoipa::path(get, path = "/blocks", operation_id = "listBlocks", tag = "blocks",
    responses((status = 200, description = "The caller's blocks", body = Blocks)))]
async fn list(State(app): State<AppState>, user: AuthUser) -> Result<Json<Blocks>, ApiError> {
    Ok(Json(Blocks { blocks: blocks::list(&app, &user.id).await? }))
}
