//! The `calls` table: the call's row, locked first by every state change.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::consent::{VideoSession, VideoState};
use crate::domain::{CallId, CallState, CallType, EndReason, Outcome, UserId};
use crate::store::Word;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CallRow {
    #[sqlx(try_from = "Uuid")]
    pub id: CallId,
    pub room_name: String,
    #[sqlx(rename = "type", try_from = "String")]
    pub call_type: CallType,
    #[sqlx(try_from = "String")]
    pub state: CallState,
    pub outcome: Option<Word<Outcome>>,
    pub end_reason: Option<Word<EndReason>>,
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
    /// The appointment this call is the meeting of.
    pub appointment_id: Option<uuid::Uuid>,
    /// Consent to record, decided by the video machine under
    /// `RecordingPolicy::rules` (`calls::recording`).
    pub recording_session: Json<VideoSession>,
}

impl CallRow {
    pub fn call_id(&self) -> CallId {
        self.id
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

/// The call as it now stands, for a step handed a connection that holds
/// its lock (a `calls::Unit`'s, or a job's): its row read again under that
/// lock (`call` if it is gone).
pub async fn reread(conn: &mut PgConnection, call: &CallRow) -> sqlx::Result<CallRow> {
    Ok(lock_call(conn, call.call_id()).await?.unwrap_or_else(|| call.clone()))
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

/// A call and where one user stands in it: what a join token needs, in one
/// indexed read (the primary keys of `calls` and `call_participants`).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CallFor {
    #[sqlx(flatten)]
    pub call: CallRow,
    #[sqlx(rename = "my_status", try_from = "String")]
    pub status: crate::domain::ParticipantStatus,
    #[sqlx(rename = "my_live")]
    pub live: bool,
    #[sqlx(rename = "my_share")]
    pub may_share_screen: bool,
    #[sqlx(rename = "my_admitted")]
    pub admitted: bool,
}

impl CallFor {
    /// Where they stand (the role does not matter to presence).
    pub fn member(&self) -> crate::domain::membership::Member {
        crate::domain::membership::Member {
            status: self.status,
            role: crate::domain::Role::Invitee,
            live: self.live,
            admitted: self.admitted,
        }
    }

    /// As `ParticipantRow::is_present`.
    pub fn is_present(&self) -> bool {
        self.member().is_present()
    }
}

/// The call, without locking it, if `user` takes part in it.
pub async fn find_call_for<'e>(
    db: impl sqlx::PgExecutor<'e>,
    id: CallId,
    user: &UserId,
) -> sqlx::Result<Option<CallFor>> {
    sqlx::query_as(concat!(
        "select ",
        call_columns!(),
        ", my_status, my_live, my_share, my_admitted from calls, lateral \
         (select status as my_status, live as my_live, may_share_screen as my_share, \
                 admitted as my_admitted from call_participants \
           where call_id = calls.id and user_id = $2) me \
         where id = $1"
    ))
    .bind(id.0)
    .bind(user.as_str())
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
    /// The grace a dropped participant has to come back, fixed at the start
    /// (with the room's departure timeout); `None`: `REJOIN_GRACE` as it is
    /// when asked.
    pub rejoin_grace: Option<std::time::Duration>,
    /// The metadata its room is created with (`crate::livekit::room_metadata`).
    pub room_metadata: &'a str,
}

/// Writes a call; returns its row, which this transaction holds as its
/// writer until it commits.
pub async fn insert_call(conn: &mut PgConnection, call: &NewCall<'_>) -> sqlx::Result<CallRow> {
    let grace = call.rejoin_grace.map(|g| i32::try_from(g.as_secs()).unwrap_or(i32::MAX));
    sqlx::query_as(concat!(
        "insert into calls (id, room_name, type, state, initiator_id, conversation_id, \
         external_ref, scheduled, video_state, video_session, video_requested_at_start, rejoin_grace_secs, \
         room_metadata) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) returning ",
        call_columns!()
    ))
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
    .bind(grace)
    .bind(call.room_metadata)
    .fetch_one(conn)
    .await
}

/// The call's own rejoin grace, if it was given one.
pub async fn rejoin_grace(
    conn: &mut PgConnection,
    call: CallId,
) -> sqlx::Result<Option<std::time::Duration>> {
    let secs: Option<i32> = sqlx::query_scalar("select rejoin_grace_secs from calls where id = $1")
        .bind(call.0)
        .fetch_optional(conn)
        .await?
        .flatten();
    Ok(secs.and_then(|s| u64::try_from(s).ok()).map(std::time::Duration::from_secs))
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
/// One statement; the call's row as it is now, if it exists (the
/// participants' change shows in the transaction's next statement).
pub async fn end_call(
    conn: &mut PgConnection,
    call: CallId,
    outcome: Outcome,
    reason: EndReason,
) -> sqlx::Result<Option<CallRow>> {
    sqlx::query_as(concat!(
        "with freed as (update call_participants set live = false, \
         status = case status when 'invited' then 'missed' \
                              when 'accepted' then 'left' \
                              when 'joined' then 'left' \
                              when 'reconnecting' then 'left' else status end, \
         left_at = case when status = 'joined' then coalesce(left_at, now()) else left_at end \
         where call_id = $1), \
         dropped as (delete from jobs where lane = 'call:' || $1::text and kind = 'deadline') \
         update calls set state = 'ended', outcome = $2, end_reason = $3, ended_at = now() \
         where id = $1 returning ",
        call_columns!()
    ))
    .bind(call.0)
    .bind(outcome.as_str())
    .bind(reason.as_str())
    .fetch_optional(conn)
    .await
}

/// Stores the video session. `video_version` moves only when video turns on
/// or off: that is all LiveKit holds of it (the rights, and the room
/// metadata's `video`); a request put or withdrawn changes neither, so it
/// sends nobody's rights again.
pub async fn save_video_session(
    conn: &mut PgConnection,
    call: CallId,
    session: &VideoSession,
) -> sqlx::Result<()> {
    sqlx::query(
        "update calls set video_session = $2, video_state = $3, \
         video_version = video_version + ((video_state = 'on') <> ($3 = 'on'))::int, \
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
/// Which of a user's calls a history page shows.
#[derive(Debug, Default)]
pub struct HistoryFilter<'a> {
    /// Only the calls of this conversation.
    pub conversation: Option<&'a str>,
    /// Only the calls this other user was in too.
    pub with: Option<&'a UserId>,
}

pub async fn history(
    pool: &PgPool,
    user: &UserId,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
    filter: &HistoryFilter<'_>,
) -> sqlx::Result<Vec<CallRow>> {
    let (at, id) = before.map_or((None, None), |(at, id)| (Some(at), Some(id)));
    sqlx::query_as(concat!(
        "select ",
        call_columns!(),
        " from calls c where exists \
         (select 1 from call_participants p where p.call_id = c.id and p.user_id = $1 and p.status <> 'busy') \
         and ($2::timestamptz is null or (c.created_at, c.id) < ($2, $3)) \
         and ($5::text is null or c.conversation_id = $5) \
         and ($6::text is null or exists \
              (select 1 from call_participants w where w.call_id = c.id and w.user_id = $6)) \
         order by c.created_at desc, c.id desc limit $4"
    ))
    .bind(user.as_str())
    .bind(at)
    .bind(id)
    .bind(limit)
    .bind(filter.conversation)
    .bind(filter.with.map(UserId::as_str))
    .fetch_all(pool)
    .await
}

// issue 16 A
/// The live call `user` is present in (answered, or its initiator, and not
/// gone): TURN credentials are for them alone, as long as it may last.
pub async fn present_call_of(pool: &PgPool, user: &UserId) -> sqlx::Result<Option<CallRow>> {
    sqlx::query_as(concat!(
        "select ",
        call_columns!(),
        " from calls where id = (select c.id from calls c join call_participants p on p.call_id = c.id \
         where p.user_id = $1 and p.live and p.status in ('accepted', 'joined', 'reconnecting') \
         and c.state <> 'ended' limit 1)"
    ))
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

/// Takes the initiator's start-of-call video request, if it is still to be
/// put: true once per call.
pub async fn take_start_video_request(conn: &mut PgConnection, call: CallId) -> sqlx::Result<bool> {
    let pending: Option<(bool,)> = sqlx::query_as(
        "update calls set video_requested_at_start = false where id = $1 and video_requested_at_start returning true",
    )
    .bind(call.0)
    .fetch_optional(conn)
    .await?;
    Ok(pending.is_some())
}

/// Records that LiveKit enforces the video state up to `version`; returns
/// the call's newest version (`None` if there is no such call).
pub async fn confirm_rights_version(db: &PgPool, call: CallId, version: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "update calls set rights_version = greatest(rights_version, $2) where id = $1 returning video_version",
    )
    .bind(call.0)
    .bind(version)
    .fetch_optional(db)
    .await
}

/// A call as `crate::calls::enforce` settles it: its row, who is live in
/// it (present and admitted, by user id), and the room metadata LiveKit was
/// last confirmed to hold.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Settling {
    #[sqlx(flatten)]
    pub call: CallRow,
    pub live: Vec<String>,
    pub announced: Option<String>,
}

/// The call as `Settling` has it, in one read.
pub async fn settling<'e>(db: impl sqlx::PgExecutor<'e>, id: CallId) -> sqlx::Result<Option<Settling>> {
    sqlx::query_as(concat!(
        "select ",
        call_columns!(),
        ", room_metadata as announced, \
         array(select user_id from call_participants p where p.call_id = calls.id and p.live \
                  and p.admitted and p.status in ('accepted', 'joined', 'reconnecting') \
                order by user_id) as live \
         from calls where id = $1"
    ))
    .bind(id.0)
    .fetch_optional(db)
    .await
}

/// Records that LiveKit holds `metadata` for the call's room, if the record
/// is still `read` (what the caller read before writing to LiveKit). False:
/// someone else wrote meanwhile, and LiveKit may hold either.
pub async fn announced(db: &PgPool, id: CallId, read: Option<&str>, metadata: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "update calls set room_metadata = $3 where id = $1 and room_metadata is not distinct from $2",
    )
    .bind(id.0)
    .bind(read)
    .bind(metadata)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The call's newest committed video version, read without a lock.
pub async fn video_version(db: &PgPool, call: CallId) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("select video_version from calls where id = $1").bind(call.0).fetch_optional(db).await
}

/// Locks the call's row unless another transaction holds it (then `None`,
/// as for a call that does not exist).
pub async fn lock_call_nowait(conn: &mut PgConnection, id: CallId) -> sqlx::Result<Option<CallRow>> {
    let locked: Option<(Uuid,)> = sqlx::query_as("select id from calls where id = $1 for update skip locked")
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?;
    match locked {
        Some(_) => lock_call(conn, id).await,
        None => Ok(None),
    }
}

/// The call's state, read without a lock.
pub async fn state_of(db: &PgPool, call: CallId) -> sqlx::Result<Option<CallState>> {
    let state: Option<String> =
        sqlx::query_scalar("select state from calls where id = $1").bind(call.0).fetch_optional(db).await?;
    state.map(|s| s.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))).transpose()
}

/// The rooms of the calls not ended.
pub async fn live_rooms(db: &PgPool) -> sqlx::Result<Vec<(CallId, String)>> {
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("select id, room_name from calls where state <> 'ended'").fetch_all(db).await?;
    Ok(rows.into_iter().map(|(id, room)| (CallId(id), room)).collect())
}

/// A connecting or active call as far as comparing it with LiveKit's room
/// list goes.
#[derive(Debug, sqlx::FromRow)]
pub struct LiveSummary {
    #[sqlx(try_from = "Uuid")]
    pub id: CallId,
    pub room_name: String,
    #[sqlx(rename = "type", try_from = "String")]
    pub call_type: CallType,
    pub video_session: Json<VideoSession>,
    pub recording_session: Json<VideoSession>,
    /// Rights LiveKit has not confirmed yet.
    pub behind: bool,
    /// Participants the database shows in the room.
    pub joined: i64,
    /// Who is live in the call, as the room's metadata lists them.
    pub live: Vec<String>,
}

/// Every connecting and active call, in one read.
pub async fn live_summaries(db: &PgPool) -> sqlx::Result<Vec<LiveSummary>> {
    sqlx::query_as(
        "select c.id, c.room_name, c.type, c.video_session, c.recording_session, c.rights_version < c.video_version as behind, \
                (select count(*) from call_participants p \
                  where p.call_id = c.id and p.live and p.status = 'joined') as joined, \
                array(select user_id from call_participants p where p.call_id = c.id and p.live \
                         and p.admitted and p.status in ('accepted', 'joined', 'reconnecting') \
                       order by user_id) as live \
           from calls c where c.state in ('connecting', 'active')",
    )
    .fetch_all(db)
    .await
}

/// Up to `limit` connecting and active calls, those whose rights lag first,
/// then the least recently checked, marked checked now (a call busy in
/// another transaction waits for the next pass).
pub async fn take_due_for_check(db: &PgPool, limit: i64) -> sqlx::Result<Vec<CallId>> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "update calls set reconciled_at = now() where id in \
         (select id from calls where state in ('connecting', 'active') \
          order by rights_version < video_version desc, reconciled_at nulls first \
          limit $1 for update skip locked) returning id",
    )
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(ids.into_iter().map(CallId).collect())
}

/// Calls created in `[from, to)` by outcome (`None`: not ended).
pub async fn outcome_counts(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<(Option<String>, i64)>> {
    sqlx::query_as(
        "select outcome, count(*) from calls where created_at >= $1 and created_at < $2 group by outcome",
    )
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await
}

pub async fn active_count(db: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("select count(*) from calls where state = 'active'").fetch_one(db).await
}

/// Average and p95 of the seconds `seconds_sql` selects (as `s`, with the
/// window as `$1` and `$2`).
async fn seconds_spread(
    db: &PgPool,
    seconds_sql: &'static str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<(Option<f64>, Option<f64>)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select avg(s), percentile_cont(0.95) within group (order by s) from \
         (select {seconds_sql}) as q"
    )))
    .bind(from)
    .bind(to)
    .fetch_one(db)
    .await
}

/// How long the completed calls created in `[from, to)` lasted once
/// connected: average and p95, in seconds.
pub async fn duration_spread(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<(Option<f64>, Option<f64>)> {
    seconds_spread(
        db,
        "extract(epoch from ended_at - connected_at)::float8 as s from calls \
         where created_at >= $1 and created_at < $2 and outcome = 'completed' and connected_at is not null",
        from,
        to,
    )
    .await
}

/// How long the unscheduled calls created in `[from, to)` rang before an
/// answer: average and p95, in seconds.
pub async fn ring_to_answer_spread(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<(Option<f64>, Option<f64>)> {
    seconds_spread(
        db,
        "extract(epoch from answered_at - created_at)::float8 as s from calls \
         where created_at >= $1 and created_at < $2 and not scheduled and answered_at is not null",
        from,
        to,
    )
    .await
}

/// Makes the call the meeting of an appointment.
pub async fn link_appointment(
    conn: &mut PgConnection,
    call: CallId,
    appointment: uuid::Uuid,
) -> sqlx::Result<()> {
    sqlx::query("update calls set appointment_id = $2 where id = $1")
        .bind(call.0)
        .bind(appointment)
        .execute(conn)
        .await?;
    Ok(())
}

/// The call of an appointment, locked for the rest of the transaction.
pub async fn lock_call_of_appointment(
    conn: &mut PgConnection,
    appointment: uuid::Uuid,
) -> sqlx::Result<Option<CallRow>> {
    sqlx::query_as(concat!("select ", call_columns!(), " from calls where appointment_id = $1 for update"))
        .bind(appointment)
        .fetch_optional(conn)
        .await
}

/// The call of an appointment, if it opened (a plain read).
pub async fn call_of_appointment(
    conn: &mut PgConnection,
    appointment: uuid::Uuid,
) -> sqlx::Result<Option<CallId>> {
    let id: Option<Uuid> = sqlx::query_scalar("select id from calls where appointment_id = $1")
        .bind(appointment)
        .fetch_optional(conn)
        .await?;
    Ok(id.map(CallId))
}
