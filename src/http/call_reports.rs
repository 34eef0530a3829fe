//! Reports of one participant by another: `POST`/`GET /calls/{id}/reports`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::calls::call_reports::{self, Report, ReportView};
use crate::domain::moderation::{self, MAX_REPORT_TEXT, TextError};
use crate::domain::{AuthUser, ReportReason, UserId};
use crate::http::calls::CallPath;
use crate::http::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::openapi::{BadRequest, Conflict, NotFound, Unprocessable};
use crate::http::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(file, list))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ReportBody {
    /// The participant reported: someone else who took part in the call.
    user_id: UserId,
    reason: ReportReason,
    /// What happened, in the reporter's words: up to 1000 characters (trimmed; blank is no text).
    #[schema(max_length = 1000)]
    text: Option<String>,
}

/// Reports another participant of a call the caller took part in, while it lasts or for
/// `REPORT_WINDOW` after it ended. The report goes to the host application (`call.reported`
/// app webhook) and is never shown to the reported user. One report per reporter, reported
/// user and call: filing it again answers the first (200) unchanged. At most `REPORTS_PER_DAY`.
///
/// Errors: 404 (a call the caller took no part in); 409 `report_window_closed`; 422
/// `invalid_field` (`userId`: yourself, or someone who took no part in the call; `reason`;
/// `text`); 429 `rate_limited`.
#[utoipa::path(post, path = "/calls/{id}/reports", operation_id = "reportParticipant", tag = "safety",
    params(("id" = Uuid, Path, description = "The call's id")),
    request_body = ReportBody,
    responses(
        (status = 201, description = "Filed", body = ReportView),
        (status = 200, description = "Filed before; the first report, unchanged", body = ReportView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
async fn file(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    ApiJson(body): ApiJson<ReportBody>,
) -> Result<(StatusCode, Json<ReportView>), ApiError> {
    let text = match body.text.as_deref().map(|t| moderation::text(t, MAX_REPORT_TEXT)) {
        None | Some(Err(TextError::Empty)) => None,
        Some(Ok(text)) => Some(text),
        Some(Err(e)) => return Err(ApiError::invalid("text", format!("text {e}"))),
    };
    let report = Report { reported: body.user_id, reason: body.reason, text };
    let filed = call_reports::file(&app, &user, id, report).await?;
    let status = if filed.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(filed.report)))
}

#[derive(Serialize, utoipa::ToSchema)]
struct CallReports {
    /// Oldest first.
    reports: Vec<ReportView>,
}

/// The call's reports: every one for `admin` but those about themself (each such read is in
/// the audit log); for a participant, only those they filed (never any about them).
#[utoipa::path(get, path = "/calls/{id}/reports", operation_id = "callReports", tag = "safety",
    params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The reports", body = CallReports),
        (status = 404, response = NotFound),
    ))]
async fn list(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
) -> Result<Json<CallReports>, ApiError> {
    Ok(Json(CallReports { reports: call_reports::list(&app, &user, id).await? }))
}
