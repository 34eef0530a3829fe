use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::calls::CallPath;
use crate::reports::{self, MAX_EVENTS, Stats};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/calls/{id}/events", get(timeline)).route("/stats", get(stats))
}

#[derive(Deserialize)]
struct TimelineQuery {
    after: Option<String>,
    limit: Option<String>,
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

async fn timeline(
    State(app): State<AppState>,
    user: AuthUser,
    CallPath(id): CallPath,
    Query(q): Query<TimelineQuery>,
) -> Result<Json<Value>, ApiError> {
    let after = param::<i64>("after", q.after.as_deref(), |n| *n >= 0)?;
    let limit =
        param::<i64>("limit", q.limit.as_deref(), |n| (1..=MAX_EVENTS).contains(n))?.unwrap_or(MAX_EVENTS);
    let events = reports::timeline(&app, &user, id, after, limit + 1).await?;
    let more = events.len() as i64 > limit;
    let events: Vec<_> = events.into_iter().take(limit as usize).collect();
    let mut body = json!({"events": events});
    if more && let Some(last) = events.last() {
        body["nextCursor"] = json!(last.id.to_string());
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
}

async fn stats(
    State(app): State<AppState>,
    user: AuthUser,
    Query(q): Query<StatsQuery>,
) -> Result<Json<Stats>, ApiError> {
    let time = |name: &str, raw: Option<&str>| {
        param::<DateTime<chrono::FixedOffset>>(name, raw, |_| true).map(|t| t.map(|t| t.with_timezone(&Utc)))
    };
    let to = time("to", q.to.as_deref())?.unwrap_or_else(Utc::now);
    let from = time("from", q.from.as_deref())?.unwrap_or(to - chrono::Duration::days(1));
    if from >= to {
        return Err(ApiError::invalid("from", "from must be before to"));
    }
    Ok(Json(reports::stats(&app, &user, from, to).await?))
}
