//! Persistence: small functions named for what they do. Every state change
//! of a call happens in a transaction that first locks the call's row, so
//! concurrent requests, webhooks and deadlines on any instance serialize per
//! call in the database.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::consent::{Gender, VideoSession, VideoState};
use crate::domain::{
    CallId, CallState, CallType, EndReason, EventSource, Outcome, ParticipantStatus, Role, UserId,
};

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

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ParticipantRow {
    pub user_id: String,
    pub name: Option<String>,
    #[sqlx(try_from = "String")]
    pub gender: StoredGender,
    #[sqlx(try_from = "String")]
    pub role: Role,
    #[sqlx(try_from = "String")]
    pub status: ParticipantStatus,
    pub live: bool,
    pub may_share_screen: bool,
    pub answered_at: Option<DateTime<Utc>>,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
    pub audio_enabled: bool,
    pub video_enabled: bool,
    pub screen_share_enabled: bool,
}

impl ParticipantRow {
    /// In the call as far as the consent policy is concerned: answered (or
    /// the initiator) and not gone.
    pub fn is_present(&self) -> bool {
        self.live && matches!(self.status, ParticipantStatus::Accepted | ParticipantStatus::Joined)
    }
}

/// Gender as stored; a newtype so it cannot be serialized by accident.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredGender(pub Gender);

impl TryFrom<String> for StoredGender {
    type Error = crate::domain::UnknownWord;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "female" => Ok(StoredGender(Gender::Female)),
            "male" => Ok(StoredGender(Gender::Male)),
            "other" => Ok(StoredGender(Gender::Other)),
            _ => Err(crate::domain::UnknownWord(s)),
        }
    }
}

pub fn gender_word(gender: Gender) -> &'static str {
    match gender {
        Gender::Female => "female",
        Gender::Male => "male",
        Gender::Other => "other",
    }
}

macro_rules! call_columns {
    () => {
        "id, room_name, type, state, outcome, end_reason, initiator_id, \
     conversation_id, external_ref, scheduled, video_session, video_used, created_at, \
     answered_at, connected_at, ended_at, video_version, rights_version"
    };
}

macro_rules! participant_columns {
    () => {
        "user_id, name, gender, role, status, live, may_share_screen, \
     answered_at, joined_at, left_at, audio_enabled, video_enabled, screen_share_enabled"
    };
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

pub async fn participants(conn: &mut PgConnection, id: CallId) -> sqlx::Result<Vec<ParticipantRow>> {
    sqlx::query_as(concat!(
        "select ",
        participant_columns!(),
        " from call_participants where call_id = $1 \
         order by role = 'invitee', invited_at, user_id"
    ))
    .bind(id.0)
    .fetch_all(conn)
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

pub struct NewParticipant<'a> {
    pub user: &'a UserId,
    pub name: Option<&'a str>,
    pub gender: Gender,
    pub role: Role,
    pub status: ParticipantStatus,
    pub may_share_screen: bool,
}

/// Adds a participant. A `live` one is busy with this call from now on:
/// false is returned, writing nothing, when the user is already in another
/// live call, as the partial unique index decides, even between concurrent
/// transactions.
pub async fn insert_participant(
    conn: &mut PgConnection,
    call: CallId,
    p: &NewParticipant<'_>,
    live: bool,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "insert into call_participants (call_id, user_id, name, gender, role, status, live, \
         may_share_screen, answered_at) \
         values ($1, $2, $3, $4, $5, $6, $8, $7, case when $6 = 'accepted' then now() end) \
         on conflict (user_id) where live do nothing",
    )
    .bind(call.0)
    .bind(p.user.as_str())
    .bind(p.name)
    .bind(gender_word(p.gender))
    .bind(p.role.as_str())
    .bind(p.status.as_str())
    .bind(p.may_share_screen)
    .bind(live)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub async fn mark_answered(
    conn: &mut PgConnection,
    call: CallId,
    user: &UserId,
    name: Option<&str>,
    gender: Gender,
    may_share_screen: bool,
) -> sqlx::Result<()> {
    sqlx::query(
        "update call_participants set status = 'accepted', answered_at = now(), \
         name = coalesce($3, name), gender = $4, may_share_screen = $5 \
         where call_id = $1 and user_id = $2",
    )
    .bind(call.0)
    .bind(user.as_str())
    .bind(name)
    .bind(gender_word(gender))
    .bind(may_share_screen)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves a participant out of the call: they are free for other calls.
pub async fn mark_gone(
    conn: &mut PgConnection,
    call: CallId,
    user: &str,
    status: ParticipantStatus,
) -> sqlx::Result<()> {
    sqlx::query(
        "update call_participants set status = $3, live = false, \
         left_at = case when status = 'joined' then now() else left_at end \
         where call_id = $1 and user_id = $2",
    )
    .bind(call.0)
    .bind(user)
    .bind(status.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_joined(conn: &mut PgConnection, call: CallId, user: &str) -> sqlx::Result<()> {
    sqlx::query(
        "update call_participants set status = 'joined', joined_at = coalesce(joined_at, now()), \
         left_at = null where call_id = $1 and user_id = $2",
    )
    .bind(call.0)
    .bind(user)
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

/// Appends to the call's timeline.
pub async fn record_event(
    conn: &mut PgConnection,
    call: CallId,
    kind: &str,
    source: EventSource,
    actor: Option<&str>,
    data: Value,
) -> sqlx::Result<()> {
    sqlx::query("insert into call_events (call_id, type, source, actor, data) values ($1, $2, $3, $4, $5)")
        .bind(call.0)
        .bind(kind)
        .bind(source.as_str())
        .bind(actor)
        .bind(data)
        .execute(conn)
        .await?;
    Ok(())
}

/// Queues an event for each recipient, in the caller's transaction.
pub async fn notify(
    conn: &mut PgConnection,
    recipients: &[String],
    kind: &str,
    call: CallId,
    data: &Value,
) -> sqlx::Result<()> {
    if recipients.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = recipients.iter().map(|_| Uuid::new_v4()).collect();
    sqlx::query(
        "insert into user_events (id, user_id, call_id, type, data) \
         select id, user_id, $3, $4, $5 from unnest($1::uuid[], $2::text[]) as r(id, user_id)",
    )
    .bind(&ids)
    .bind(recipients)
    .bind(call.0)
    .bind(kind)
    .bind(data)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadlineKind {
    Ringing,
    Connect,
    MaxDuration,
    VideoRequest,
}

impl DeadlineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineKind::Ringing => "ringing",
            DeadlineKind::Connect => "connect",
            DeadlineKind::MaxDuration => "max_duration",
            DeadlineKind::VideoRequest => "video_request",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Ringing, Self::Connect, Self::MaxDuration, Self::VideoRequest]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

pub async fn schedule(
    conn: &mut PgConnection,
    call: CallId,
    kind: DeadlineKind,
    due_at: DateTime<Utc>,
    ref_id: Option<Uuid>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into deadlines (call_id, kind, due_at, ref_id) values ($1, $2, $3, $4) \
         on conflict (call_id, kind) do update set due_at = excluded.due_at, ref_id = excluded.ref_id",
    )
    .bind(call.0)
    .bind(kind.as_str())
    .bind(due_at)
    .bind(ref_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn cancel(conn: &mut PgConnection, call: CallId, kind: DeadlineKind) -> sqlx::Result<()> {
    sqlx::query("delete from deadlines where call_id = $1 and kind = $2")
        .bind(call.0)
        .bind(kind.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct DueDeadline {
    pub call_id: Uuid,
    pub kind: String,
    pub ref_id: Option<Uuid>,
}

/// Takes one due deadline, locked for this transaction and skipped by every
/// other instance; deleted so that it fires once.
pub async fn take_due_deadline(conn: &mut PgConnection) -> sqlx::Result<Option<DueDeadline>> {
    sqlx::query_as(
        "delete from deadlines where ctid = (select ctid from deadlines where due_at <= now() \
         order by due_at limit 1 for update skip locked) returning call_id, kind, ref_id",
    )
    .fetch_optional(conn)
    .await
}

/// Which of these users are in a live call right now (a plain read).
pub async fn live_users(pool: &PgPool, users: &[UserId]) -> sqlx::Result<Vec<UserId>> {
    let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
    let live: Vec<String> =
        sqlx::query_scalar("select user_id from call_participants where live and user_id = any($1)")
            .bind(&ids)
            .fetch_all(pool)
            .await?;
    Ok(users.iter().filter(|u| live.iter().any(|l| l == u.as_str())).cloned().collect())
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

/// A small pool of its own for a background job, so that request traffic
/// cannot starve it (nor it the requests): connections to the same database.
pub fn job_pool(db: &sqlx::PgPool, size: u32) -> sqlx::PgPool {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with((*db.connect_options()).clone())
}

/// Whether the database answers.
pub async fn ping(db: &PgPool) -> sqlx::Result<()> {
    sqlx::query("select 1").execute(db).await.map(|_| ())
}

/// Writes an app webhook into the outbox, stamped with the transaction's time.
pub async fn enqueue_app_webhook(
    conn: &mut PgConnection,
    kind: &str,
    call: Uuid,
    data: Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into app_webhook_outbox (id, type, call_id, payload) \
         values ($1, $2, $3, jsonb_build_object('type', $2::text, 'timestamp', now(), 'data', $4::jsonb))",
    )
    .bind(Uuid::new_v4())
    .bind(kind)
    .bind(call)
    .bind(data)
    .execute(conn)
    .await?;
    Ok(())
}

/// Live calls by state, across all instances.
pub async fn live_call_counts(db: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as("select state, count(*) from calls where state <> 'ended' group by state")
        .fetch_all(db)
        .await
}

/// App webhooks neither delivered nor given up on.
pub async fn app_webhook_backlog(db: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "select count(*) from app_webhook_outbox where delivered_at is null and failed_at is null",
    )
    .fetch_one(db)
    .await
}
