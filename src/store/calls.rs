//! The `calls` table: the call's row, locked first by every state change.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::consent::{VideoSession, VideoState};
use crate::domain::{CallId, CallState, CallType, EndReason, Outcome, UserId};
use crate::store::Word;

#[derive(Clone, Debug)]
pub struct CallRow {
    pub id: CallId,
    pub room_name: String,
    pub call_type: CallType,
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

/// `query_as!($record, ...)` (or `query!` with `query`) of a statement that
/// reads the columns of a `CallRow`, with their types, after `$head` and
/// goes on with `$tail` (literals, appended with the macros' `+`, so the
/// whole is still checked). Each column says whether it may be null: a
/// statement's `returning` is not always inferred.
macro_rules! with_call_columns {
    (query, $head:literal, $tail:literal $(, $arg:expr)* $(,)?) => {
        with_call_columns!(@ query [] $head, $tail $(, $arg)*)
    };
    ($record:path, $head:literal, $tail:literal $(, $arg:expr)* $(,)?) => {
        with_call_columns!(@ query_as [$record,] $head, $tail $(, $arg)*)
    };
    (@ $macro:ident [$($record:tt)*] $head:literal, $tail:literal $(, $arg:expr)*) => {
        sqlx::$macro!(
            $($record)*
            $head + r#"id as "id!: CallId", room_name as "room_name!", type as "call_type!: CallType",
               state as "state!: CallState", outcome as "outcome?: Word<Outcome>",
               end_reason as "end_reason?: Word<EndReason>", initiator_id as "initiator_id!",
               conversation_id as "conversation_id?", external_ref as "external_ref?",
               scheduled as "scheduled!", video_session as "video_session!: Json<VideoSession>",
               video_used as "video_used!", created_at as "created_at!", answered_at as "answered_at?",
               connected_at as "connected_at?", ended_at as "ended_at?", video_version as "video_version!",
               rights_version as "rights_version!", appointment_id as "appointment_id?",
               recording_session as "recording_session!: Json<VideoSession>""# + $tail
            $(, $arg)*
        )
    };
}

/// The `CallRow` of a `query!` record that has its columns.
macro_rules! call_row {
    ($r:ident) => {
        CallRow {
            id: $r.id,
            room_name: $r.room_name,
            call_type: $r.call_type,
            state: $r.state,
            outcome: $r.outcome,
            end_reason: $r.end_reason,
            initiator_id: $r.initiator_id,
            conversation_id: $r.conversation_id,
            external_ref: $r.external_ref,
            scheduled: $r.scheduled,
            video_session: $r.video_session,
            video_used: $r.video_used,
            created_at: $r.created_at,
            answered_at: $r.answered_at,
            connected_at: $r.connected_at,
            ended_at: $r.ended_at,
            video_version: $r.video_version,
            rights_version: $r.rights_version,
            appointment_id: $r.appointment_id,
            recording_session: $r.recording_session,
        }
    };
}

/// Locks the call's row for the rest of the transaction.
pub async fn lock_call(conn: &mut PgConnection, id: CallId) -> sqlx::Result<Option<CallRow>> {
    with_call_columns!(CallRow, "select ", " from calls where id = $1 for update", id.0)
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
    with_call_columns!(CallRow, "select ", " from calls where id = $1", id.0).fetch_optional(db).await
}

/// A call and where one user stands in it: what a join token needs, in one
/// indexed read (the primary keys of `calls` and `call_participants`).
#[derive(Clone, Debug)]
pub struct CallFor {
    pub call: CallRow,
    pub status: crate::domain::ParticipantStatus,
    pub live: bool,
    pub may_share_screen: bool,
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
    use crate::domain::ParticipantStatus;
    let row = with_call_columns!(
        query,
        "select ",
        r#", my_status as "my_status!: ParticipantStatus", my_live as "my_live!", my_share as "my_share!",
           my_admitted as "my_admitted!" from calls, lateral
         (select status as my_status, live as my_live, may_share_screen as my_share,
                 admitted as my_admitted from call_participants
           where call_id = calls.id and user_id = $2) me
         where id = $1"#,
        id.0,
        user.as_str(),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| CallFor {
        status: r.my_status,
        live: r.my_live,
        may_share_screen: r.my_share,
        admitted: r.my_admitted,
        call: call_row!(r),
    }))
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
    with_call_columns!(
        CallRow,
        "insert into calls (id, room_name, type, state, initiator_id, conversation_id, \
         external_ref, scheduled, video_state, video_session, video_requested_at_start, rejoin_grace_secs, \
         room_metadata) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) returning ",
        "",
        call.id.0,
        call.room_name,
        call.call_type.as_str(),
        call.state.as_str(),
        call.initiator.as_str(),
        call.conversation_id,
        call.external_ref,
        call.scheduled,
        call.video_session.state.as_str(),
        Json(call.video_session) as _,
        call.video_requested_at_start,
        grace,
        call.room_metadata,
    )
    .fetch_one(conn)
    .await
}

/// The call's own rejoin grace, if it was given one.
pub async fn rejoin_grace(
    conn: &mut PgConnection,
    call: CallId,
) -> sqlx::Result<Option<std::time::Duration>> {
    let secs = sqlx::query_scalar!("select rejoin_grace_secs from calls where id = $1", call.0)
        .fetch_optional(conn)
        .await?
        .flatten();
    Ok(secs.and_then(|s| u64::try_from(s).ok()).map(std::time::Duration::from_secs))
}

pub async fn set_state(conn: &mut PgConnection, call: CallId, state: CallState) -> sqlx::Result<()> {
    let (id, to) = (call.0, state.as_str());
    match state {
        CallState::Connecting => sqlx::query!(
            "update calls set state = $2, answered_at = coalesce(answered_at, now()) where id = $1",
            id,
            to
        ),
        CallState::Active => sqlx::query!(
            "update calls set state = $2, connected_at = coalesce(connected_at, now()) where id = $1",
            id,
            to
        ),
        CallState::Ringing | CallState::Ended => {
            sqlx::query!("update calls set state = $2 where id = $1", id, to)
        }
    }
    .execute(conn)
    .await?;
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
    with_call_columns!(
        CallRow,
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
        "",
        call.0,
        outcome.as_str(),
        reason.as_str(),
    )
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
    sqlx::query!(
        "update calls set video_session = $2, video_state = $3, \
         video_version = video_version + ((video_state = 'on') <> ($3 = 'on'))::int, \
         video_used = video_used or $3 = 'on' where id = $1",
        call.0,
        Json(session) as _,
        session.state.as_str(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn live_calls_of(pool: &PgPool, user: &UserId) -> sqlx::Result<Vec<CallRow>> {
    with_call_columns!(
        CallRow,
        "select ",
        " from calls where id in \
         (select call_id from call_participants where user_id = $1 and live) \
         order by created_at desc",
        user.as_str(),
    )
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
    with_call_columns!(
        CallRow,
        "select ",
        " from calls c where exists \
         (select 1 from call_participants p where p.call_id = c.id and p.user_id = $1 and p.status <> 'busy') \
         and ($2::timestamptz is null or (c.created_at, c.id) < ($2, $3)) \
         and ($5::text is null or c.conversation_id = $5) \
         and ($6::text is null or exists \
              (select 1 from call_participants w where w.call_id = c.id and w.user_id = $6)) \
         order by c.created_at desc, c.id desc limit $4",
        user.as_str(),
        at,
        id,
        limit,
        filter.conversation,
        filter.with.map(UserId::as_str),
    )
    .fetch_all(pool)
    .await
}

// issue 16 A
/// The live call `user` is present in (answered, or its initiator, and not
/// gone): TURN credentials are for them alone, as long as it may last.
pub async fn present_call_of(pool: &PgPool, user: &UserId) -> sqlx::Result<Option<CallRow>> {
    with_call_columns!(
        CallRow,
        "select ",
        " from calls where id = (select c.id from calls c join call_participants p on p.call_id = c.id \
         where p.user_id = $1 and p.live and p.status in ('accepted', 'joined', 'reconnecting') \
         and c.state <> 'ended' limit 1)",
        user.as_str(),
    )
    .fetch_optional(pool)
    .await
}

/// Live calls by state, across all instances.
pub async fn live_call_counts(db: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    let rows = sqlx::query!(
        r#"select state, count(*) as "count!" from calls where state <> 'ended' group by state"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.state, r.count)).collect())
}

/// Takes the initiator's start-of-call video request, if it is still to be
/// put: true once per call.
pub async fn take_start_video_request(conn: &mut PgConnection, call: CallId) -> sqlx::Result<bool> {
    let pending = sqlx::query_scalar!(
        "update calls set video_requested_at_start = false where id = $1 and video_requested_at_start returning true",
        call.0,
    )
    .fetch_optional(conn)
    .await?;
    Ok(pending.is_some())
}

/// Records that LiveKit enforces the video state up to `version`; returns
/// the call's newest version (`None` if there is no such call).
pub async fn confirm_rights_version(db: &PgPool, call: CallId, version: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        "update calls set rights_version = greatest(rights_version, $2) where id = $1 returning video_version",
        call.0,
        version,
    )
    .fetch_optional(db)
    .await
}

/// A call as `crate::calls::enforce` settles it: its row, who is live in
/// it (present and admitted, by user id), and the room metadata LiveKit was
/// last confirmed to hold.
#[derive(Clone, Debug)]
pub struct Settling {
    pub call: CallRow,
    pub live: Vec<String>,
    pub announced: Option<String>,
}

/// The call as `Settling` has it, in one read.
pub async fn settling<'e>(db: impl sqlx::PgExecutor<'e>, id: CallId) -> sqlx::Result<Option<Settling>> {
    let row = with_call_columns!(
        query,
        "select ",
        r#", room_metadata as announced,
         array(select user_id from call_participants p where p.call_id = calls.id and p.live
                  and p.admitted and p.status in ('accepted', 'joined', 'reconnecting')
                order by user_id) as "live!"
         from calls where id = $1"#,
        id.0,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| Settling { live: r.live, announced: r.announced, call: call_row!(r) }))
}

/// Records that LiveKit holds `metadata` for the call's room, if the record
/// is still `read` (what the caller read before writing to LiveKit). False:
/// someone else wrote meanwhile, and LiveKit may hold either.
pub async fn announced(db: &PgPool, id: CallId, read: Option<&str>, metadata: &str) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "update calls set room_metadata = $3 where id = $1 and room_metadata is not distinct from $2",
        id.0,
        read,
        metadata,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The call's newest committed video version, read without a lock.
pub async fn video_version(db: &PgPool, call: CallId) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!("select video_version from calls where id = $1", call.0).fetch_optional(db).await
}

/// Locks the call's row unless another transaction holds it (then `None`,
/// as for a call that does not exist).
pub async fn lock_call_nowait(conn: &mut PgConnection, id: CallId) -> sqlx::Result<Option<CallRow>> {
    let locked = sqlx::query_scalar!("select id from calls where id = $1 for update skip locked", id.0)
        .fetch_optional(&mut *conn)
        .await?;
    match locked {
        Some(_) => lock_call(conn, id).await,
        None => Ok(None),
    }
}

/// The call's state, read without a lock.
pub async fn state_of(db: &PgPool, call: CallId) -> sqlx::Result<Option<CallState>> {
    sqlx::query_scalar!(r#"select state as "state: CallState" from calls where id = $1"#, call.0)
        .fetch_optional(db)
        .await
}

/// The rooms of the calls not ended.
pub async fn live_rooms(db: &PgPool) -> sqlx::Result<Vec<(CallId, String)>> {
    let rows = sqlx::query!(r#"select id as "id: CallId", room_name from calls where state <> 'ended'"#)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.room_name)).collect())
}

/// A connecting or active call as far as comparing it with LiveKit's room
/// list goes.
#[derive(Debug)]
pub struct LiveSummary {
    pub id: CallId,
    pub room_name: String,
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
    sqlx::query_as!(
        LiveSummary,
        r#"select c.id as "id: CallId", c.room_name, c.type as "call_type: CallType",
                c.video_session as "video_session: Json<VideoSession>",
                c.recording_session as "recording_session: Json<VideoSession>",
                c.rights_version < c.video_version as "behind!",
                (select count(*) from call_participants p
                  where p.call_id = c.id and p.live and p.status = 'joined') as "joined!",
                array(select user_id from call_participants p where p.call_id = c.id and p.live
                         and p.admitted and p.status in ('accepted', 'joined', 'reconnecting')
                       order by user_id) as "live!"
           from calls c where c.state in ('connecting', 'active')"#
    )
    .fetch_all(db)
    .await
}

/// Up to `limit` connecting and active calls, those whose rights lag first,
/// then the least recently checked, marked checked now (a call busy in
/// another transaction waits for the next pass).
pub async fn take_due_for_check(db: &PgPool, limit: i64) -> sqlx::Result<Vec<CallId>> {
    sqlx::query_scalar!(
        r#"update calls set reconciled_at = now() where id in
         (select id from calls where state in ('connecting', 'active')
          order by rights_version < video_version desc, reconciled_at nulls first
          limit $1 for update skip locked) returning id as "id: CallId""#,
        limit,
    )
    .fetch_all(db)
    .await
}

/// Calls created in `[from, to)` by outcome (`None`: not ended).
pub async fn outcome_counts(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<(Option<String>, i64)>> {
    let rows = sqlx::query!(
        r#"select outcome, count(*) as "count!" from calls where created_at >= $1 and created_at < $2
           group by outcome"#,
        from,
        to,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.outcome, r.count)).collect())
}

pub async fn active_count(db: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"select count(*) as "count!" from calls where state = 'active'"#)
        .fetch_one(db)
        .await
}

/// Average and p95 of `$seconds` (an expression over `calls`) over the calls
/// created in `[$from, $to)` that `$filter` keeps, in seconds.
macro_rules! seconds_spread {
    ($db:expr, $seconds:literal, $filter:literal, $from:expr, $to:expr) => {{
        let spread = sqlx::query!(
            "select avg(s) as avg, percentile_cont(0.95) within group (order by s) as p95 from \
             (select "
                + $seconds
                + "::float8 as s from calls \
              where created_at >= $1 and created_at < $2 and "
                + $filter
                + ") as q",
            $from,
            $to,
        )
        .fetch_one($db)
        .await?;
        Ok((spread.avg, spread.p95))
    }};
}

/// How long the completed calls created in `[from, to)` lasted once
/// connected: average and p95, in seconds.
pub async fn duration_spread(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<(Option<f64>, Option<f64>)> {
    seconds_spread!(
        db,
        "extract(epoch from ended_at - connected_at)",
        "outcome = 'completed' and connected_at is not null",
        from,
        to
    )
}

/// How long the unscheduled calls created in `[from, to)` rang before an
/// answer: average and p95, in seconds.
pub async fn ring_to_answer_spread(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<(Option<f64>, Option<f64>)> {
    seconds_spread!(
        db,
        "extract(epoch from answered_at - created_at)",
        "not scheduled and answered_at is not null",
        from,
        to
    )
}

/// Makes the call the meeting of an appointment.
pub async fn link_appointment(
    conn: &mut PgConnection,
    call: CallId,
    appointment: uuid::Uuid,
) -> sqlx::Result<()> {
    sqlx::query!("update calls set appointment_id = $2 where id = $1", call.0, appointment)
        .execute(conn)
        .await?;
    Ok(())
}

/// The call of an appointment, locked for the rest of the transaction.
pub async fn lock_call_of_appointment(
    conn: &mut PgConnection,
    appointment: uuid::Uuid,
) -> sqlx::Result<Option<CallRow>> {
    with_call_columns!(CallRow, "select ", " from calls where appointment_id = $1 for update", appointment)
        .fetch_optional(conn)
        .await
}

/// The call of an appointment, if it opened (a plain read).
pub async fn call_of_appointment(
    conn: &mut PgConnection,
    appointment: uuid::Uuid,
) -> sqlx::Result<Option<CallId>> {
    sqlx::query_scalar!(r#"select id as "id: CallId" from calls where appointment_id = $1"#, appointment)
        .fetch_optional(conn)
        .await
}
