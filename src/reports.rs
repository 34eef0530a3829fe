//! What happened: a call's timeline for its participants.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::auth::AuthUser;
use crate::domain::CallId;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store;

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct EventView {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub actor: Option<String>,
    pub at: DateTime<Utc>,
    pub data: Value,
}

pub const MAX_EVENTS: i64 = 1000;

/// The call's timeline, oldest first, after the event `after` (a cursor).
pub async fn timeline(
    app: &AppState,
    user: &AuthUser,
    id: CallId,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<EventView>, ApiError> {
    let mut conn = app.db.acquire().await?;
    let participants = store::participants(&mut conn, id).await?;
    if !participants.iter().any(|p| p.user_id == user.id.as_str()) {
        return Err(ApiError::NotFound);
    }
    let events = sqlx::query_as(
        "select id, type as kind, source, actor, at, data from call_events \
         where call_id = $1 and id > $2 order by id limit $3",
    )
    .bind(id.0)
    .bind(after.unwrap_or(0))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(events)
}
