//! The `calls` table: the call's row, locked first by every state change.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::consent::{VideoSession, VideoState};
use crate::domain::{CallId, CallState, CallType, EndReason, Outcome, UserId};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CallRow {
    pub id: Uuid,
    pub room_name: String,
    #[sqlx(rename = "type", try_from = "String")]
    pub call_type: CallType,
    #[sqlx(try_from = "String")]
    pub state: CallState,
    pub outcome: Option<String>,
    pub end_reason: Option<String>,
    pub initiator_id: String,
    pub conversation_id: Option<String>,
    pub external_ref: Option<String>,
    pub scheduled: bool,
    pub video_session: Json<VideoSession>,
    pub video_used: bool,
    pub created_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub connected_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Committed changes of the video state, and the newest one LiveKit has
    /// confirmed (see `crate::calls::enforce`).
    pub video_version: i64,
    pub rights_version: i64,
}

impl CallRow {
    pub fn call_id(&self) -> CallId {
        CallId(self.id)
    }

    pub fn video_state(&self) -> VideoState {
        self.video_session.0.state
    }
}

/// Locks the call's row for the rest of the transaction.
pub async fn lock_call(conn: &mut PgConnection, id: CallId) -> sqlx::Result<Option<CallRow>> {
    sqlx::query_as(concat!("select ", call_columns!(), " from calls where id = $1 for update"))
        .bind(id.0)
        .fetch_optional(conn)
        .await
}

/// Reads a call without locking it. Pass the connection the caller already
/// holds, if any: taking a second one from the pool while holding one
/// deadlocks a busy pool.
pub async fn find_call<'e>(db: impl sqlx::PgExecutor<'e>, id: CallId) -> sqlx::Result<Option<CallRow>> {
    sqlx::query_as(concat!("select ", call_columns!(), " from calls where id = $1"))
        .bind(id.0)
        .fetch_optional(db)
        .await
}

pub struct NewCall<'a> {
    pub id: CallId,
    pub room_name: &'a str,
    pub call_type: CallType,
    pub state: CallState,
    pub initiator: &'a UserId,
    pub conversation_id: Option<&'a str>,
    pub external_ref: Option<&'a str>,
    pub scheduled: bool,
    pub video_session: &'a VideoSession,
    /// A `video` call is the initiator's request for video, put to the
    /// policy when the call is first answered.
    pub video_requested_at_start: bool,
}

pub async fn insert_call(conn: &mut PgConnection, call: &NewCall<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "insert into calls (id, room_name, type, state, initiator_id, conversation_id, \
         external_ref, scheduled, video_state, video_session, video_requested_at_start) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(call.id.0)
    .bind(call.room_name)
    .bind(call.call_type.as_str())
    .bind(call.state.as_str())
    .bind(call.initiator.as_str())
    .bind(call.conversation_id)
    .bind(call.external_ref)
    .bind(call.scheduled)
    .bind(call.video_session.state.as_str())
    .bind(Json(call.video_session))
    .bind(call.video_requested_at_start)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_state(conn: &mut PgConnection, call: CallId, state: CallState) -> sqlx::Result<()> {
    let sql = match state {
        CallState::Connecting => {
            "update calls set state = $2, answered_at = coalesce(answered_at, now()) where id = $1"
        }
        CallState::Active => {
            "update calls set state = $2, connected_at = coalesce(connected_at, now()) where id = $1"
        }
        CallState::Ringing | CallState::Ended => "update calls set state = $2 where id = $1",
    };
    sqlx::query(sql).bind(call.0).bind(state.as_str()).execute(conn).await?;
    Ok(())
}

/// Ends the call: every participant is freed, pending deadlines are dropped.
pub async fn end_call(
    conn: &mut PgConnection,
    call: CallId,
    outcome: Outcome,
    reason: EndReason,
) -> sqlx::Result<()> {
    sqlx::query(
        "update calls set state = 'ended', outcome = $2, end_reason = $3, ended_at = now() \
         where id = $1",
    )
    .bind(call.0)
    .bind(outcome.as_str())
    .bind(reason.as_str())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "update call_participants set live = false, \
         status = case status when 'invited' then 'missed' \
                              when 'accepted' then 'left' \
                              when 'joined' then 'left' else status end, \
         left_at = case when status = 'joined' then coalesce(left_at, now()) else left_at end \
         where call_id = $1",
    )
    .bind(call.0)
    .execute(&mut *conn)
    .await?;
    sqlx::query("delete from deadlines where call_id = $1").bind(call.0).execute(conn).await?;
    Ok(())
}

pub async fn save_video_session(
    conn: &mut PgConnection,
    call: CallId,
    session: &VideoSession,
) -> sqlx::Result<()> {
    sqlx::query(
        "update calls set video_session = $2, video_state = $3, \
         video_version = video_version + (video_state <> $3)::int, \
         video_used = video_used or $3 = 'on' where id = $1",
    )
    .bind(call.0)
    .bind(Json(session))
    .bind(session.state.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn live_calls_of(pool: &PgPool, user: &UserId) -> sqlx::Result<Vec<CallRow>> {
    sqlx::query_as(concat!(
        "select ",
        call_columns!(),
        " from calls where id in \
         (select call_id from call_participants where user_id = $1 and live) \
         order by created_at desc"
    ))
    .bind(user.as_str())
    .fetch_all(pool)
    .await
}

/// The user's calls, newest first, strictly older than the cursor.
pub async fn history(
    pool: &PgPool,
    user: &UserId,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<CallRow>> {
    let (at, id) = before.map_or((None, None), |(at, id)| (Some(at), Some(id)));
    sqlx::query_as(concat!(
        "select ",
        call_columns!(),
        " from calls c where exists \
         (select 1 from call_participants p where p.call_id = c.id and p.user_id = $1) \
         and ($2::timestamptz is null or (c.created_at, c.id) < ($2, $3)) \
         order by c.created_at desc, c.id desc limit $4"
    ))
    .bind(user.as_str())
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

// issue 16 A
/// The live call `user` is present in (answered, or its initiator, and not
/// gone), with when it became active: TURN credentials are for them alone.
pub async fn present_call_of(
    pool: &PgPool,
    user: &UserId,
) -> sqlx::Result<Option<(Uuid, Option<DateTime<Utc>>)>> {
    sqlx::query_as(
        "select c.id, c.connected_at from calls c join call_participants p on p.call_id = c.id \
         where p.user_id = $1 and p.live and p.status in ('accepted', 'joined') and c.state <> 'ended' \
         limit 1",
    )
    .bind(user.as_str())
    .fetch_optional(pool)
    .await
}


/// Live calls by state, across all instances.
pub async fn live_call_counts(db: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as("select state, count(*) from calls where state <> 'ended' group by state")
        .fetch_all(db)
        .await
}

