use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::calls::reports::{self, EventView, MAX_EVENTS, Stats};
use crate::domain::AuthUser;
use crate::http::bounds;
use crate::http::calls::CallPath;
use crate::http::error::ApiError;
use crate::http::json::ApiQuery;
use crate::http::openapi::{BadRequest, NotFound, Unprocessable};
use crate::http::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(timeline)).routes(routes!(stats))
}

/// Query parameters are read as text so that a bad one is a 422 naming it.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TimelineQuery {
    /// `nextCursor` of the previous page: events after this one.
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<String>,
    /// Events per page, 1 to 1000 (the default).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Timeline {
    events: Vec<EventView>,
    /// Pass as `after` for the next page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// A query parameter that must parse, or a 422 naming it.
fn param<T: std::str::FromStr>(
    name: &str,
    raw: Option<&str>,
    ok: impl Fn(&T) -> bool,
) -> Result<Option<T>, ApiError> {
    match raw {
        None => Ok(None),
        Some(raw) => raw
            .parse::<T>()
            .ok()
            .filter(|v| ok(v))
            .map(Some)
            .ok_or_else(|| ApiError::invalid(name, format!("{name} is not valid here: {raw:?}"))),
    }
}

/// The call's timeline, oldest first: every state change, webhook and consent step.
///
/// Errors: 422 `invalid_field` (`after`, `limit`).
#[utoipa::path(get, path = "/calls/{id}/events", operation_id = "callTimeline", tag = "reports",
    params(("id" = Uuid, Path, description = "The call's id"), TimelineQuery),
    responses(
        (status = 200, description = "A page of the timeline", body = Timeline),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
    ))]
async fn timeline(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    ApiQuery(q): ApiQuery<TimelineQuery>,
) -> Result<Json<Timeline>, ApiError> {
    let after = param::<i64>("after", q.after.as_deref(), |n| *n >= 0)?;
    let limit =
        param::<i64>("limit", q.limit.as_deref(), |n| (1..=MAX_EVENTS).contains(n))?.unwrap_or(MAX_EVENTS);
    let events = reports::timeline(&app, &user, id, after, limit + 1).await?;
    let more = events.len() as i64 > limit;
    let events: Vec<_> = events.into_iter().take(limit as usize).collect();
    let next_cursor = if more { events.last().map(|last| last.id.to_string()) } else { None };
    Ok(Json(Timeline { events, next_cursor }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StatsQuery {
    /// Start of the window (RFC 3339, 1970 to 9999); default a day before `to`.
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// End of the window (RFC 3339, 1970 to 9999); default now.
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
}

/// Aggregate statistics over a window: calls by outcome, success rate, durations, ring-to-answer
/// time, video requests, quality. For tokens with the `admin` role only.
///
/// Errors: 403 `admin_only`; 422 `invalid_field` (`from`, `to`: not RFC 3339, or outside 1970 to
/// 9999; `from` not before `to`).
#[utoipa::path(get, path = "/stats", operation_id = "stats", tag = "reports", params(StatsQuery),
    responses(
        (status = 200, description = "The statistics", body = Stats),
        (status = 400, response = BadRequest),
        (status = 403, response = crate::http::openapi::Forbidden),
        (status = 422, response = Unprocessable),
    ))]
async fn stats(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<Stats>, ApiError> {
    let time = |name: &str, raw: Option<&str>| {
        let sane = |t: &DateTime<chrono::FixedOffset>| bounds::is_sane(t.with_timezone(&Utc));
        param::<DateTime<chrono::FixedOffset>>(name, raw, sane)
            .map(|t| t.map(|t| t.with_timezone(&Utc)))
            .map_err(|_| {
                ApiError::invalid(name, format!("{name} must be an RFC 3339 time, {}", bounds::RANGE))
            })
    };
    let to = time("to", q.to.as_deref())?.unwrap_or_else(|| app.clock.now());
    let a_day_before = to.checked_sub_signed(chrono::Duration::days(1)).unwrap_or(to);
    let from = time("from", q.from.as_deref())?.unwrap_or(a_day_before);
    if from >= to {
        return Err(ApiError::invalid("from", "from must be before to"));
    }
    Ok(Json(reports::stats(&app, &user, from, to).await?))
}
