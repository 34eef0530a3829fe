//! The `call_participants` table: who is in which call, and how.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::domain::consent::Gender;
use crate::domain::membership::Member;
use crate::domain::{CallId, ParticipantStatus, Role, UserId};

#[derive(Clone, Debug)]
pub struct ParticipantRow {
    pub user_id: UserId,
    pub name: Option<String>,
    pub gender: StoredGender,
    pub role: Role,
    pub status: ParticipantStatus,
    pub live: bool,
    pub may_share_screen: bool,
    pub answered_at: Option<DateTime<Utc>>,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
    pub audio_enabled: bool,
    pub video_enabled: bool,
    pub screen_share_enabled: bool,
    /// Out of an appointment's waiting room (everyone but a waiting guest).
    pub admitted: bool,
    /// The start of their LiveKit session we know the latest of.
    pub lk_session_at: Option<DateTime<Utc>>,
    /// Who rang them last (the initiator or an inviter), if anyone did.
    pub rung_by: Option<String>,
}

impl ParticipantRow {
    /// Where they stand, as `domain::membership` sees it.
    pub fn member(&self) -> Member {
        Member { status: self.status, role: self.role, live: self.live, admitted: self.admitted }
    }

    /// Present in the call (`Member::is_present`): answered, not gone, past
    /// any waiting room. Counts for consent, is told what happens, may
    /// answer and revoke, gets rights and tokens.
    pub fn is_present(&self) -> bool {
        self.member().is_present()
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

/// `query_as!($record, ...)` of the statement that reads `$head` (a column
/// or nothing), the columns of a `ParticipantRow` with their types, `from
/// call_participants` and goes on with `$tail` (literals, appended with the
/// macros' `+`, so the whole is still checked).
macro_rules! select_participants {
    ($record:path, $head:literal, $tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $record,
            $head + r#"user_id as "user_id: UserId", name, gender as "gender: StoredGender",
               role as "role: Role", status as "status: ParticipantStatus", live, may_share_screen,
               answered_at, joined_at, left_at, audio_enabled, video_enabled, screen_share_enabled,
               admitted, lk_session_at, rung_by from call_participants "# + $tail
            $(, $arg)*
        )
    };
}

pub async fn participants(conn: &mut PgConnection, id: CallId) -> sqlx::Result<Vec<ParticipantRow>> {
    select_participants!(
        ParticipantRow,
        "select ",
        "where call_id = $1 order by role = 'invitee', invited_at, user_id",
        id.0,
    )
    .fetch_all(conn)
    .await
}

pub struct NewParticipant<'a> {
    pub user: &'a UserId,
    pub name: Option<&'a str>,
    pub gender: Gender,
    pub role: Role,
    pub status: ParticipantStatus,
    pub may_share_screen: bool,
    /// Who rang them, and until when they ring: `None` for one not rung
    /// (the initiator, an appointment's people, one busy).
    pub rung: Option<(&'a UserId, DateTime<Utc>)>,
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
    let inserted = sqlx::query!(
        "insert into call_participants (call_id, user_id, name, gender, role, status, live, \
         may_share_screen, answered_at, rung_by, ring_until) \
         values ($1, $2, $3, $4, $5, $6, $8, $7, case when $6 = 'accepted' then now() end, $9, $10) \
         on conflict (user_id) where live do nothing",
        call.0,
        p.user.as_str(),
        p.name,
        gender_word(p.gender),
        p.role.as_str(),
        p.status.as_str(),
        p.may_share_screen,
        live,
        p.rung.map(|(by, _)| by.as_str()),
        p.rung.map(|(_, at)| at),
    )
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
    sqlx::query!(
        "update call_participants set status = 'accepted', answered_at = now(), \
         name = coalesce($3, name), gender = $4, may_share_screen = $5 \
         where call_id = $1 and user_id = $2",
        call.0,
        user.as_str(),
        name,
        gender_word(gender),
        may_share_screen,
    )
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
    sqlx::query!(
        "update call_participants set status = $3, live = false, \
         left_at = case when status = 'joined' then now() else left_at end \
         where call_id = $1 and user_id = $2",
        call.0,
        user,
        status.as_str(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_joined(conn: &mut PgConnection, call: CallId, user: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "update call_participants set status = 'joined', joined_at = coalesce(joined_at, now()), \
         left_at = null where call_id = $1 and user_id = $2",
        call.0,
        user,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A joined participant's connection dropped: `reconnecting` since `at`
/// (`left_at`, the Clock's, as the grace's deadline is), still in the call.
/// False if they were not `joined`.
pub async fn mark_reconnecting(
    conn: &mut PgConnection,
    call: CallId,
    user: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let marked = sqlx::query!(
        "update call_participants set status = 'reconnecting', left_at = $3 \
         where call_id = $1 and user_id = $2 and live and status = 'joined'",
        call.0,
        user,
        at,
    )
    .execute(conn)
    .await?;
    Ok(marked.rows_affected() == 1)
}

/// Who has been `reconnecting` for at least `grace` at `now` (the Clock's).
pub async fn reconnecting_past(
    conn: &mut PgConnection,
    call: CallId,
    grace: std::time::Duration,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        "select user_id from call_participants where call_id = $1 and live and status = 'reconnecting' \
         and left_at <= $3::timestamptz - make_interval(secs => $2) order by left_at",
        call.0,
        grace.as_secs_f64(),
        now,
    )
    .fetch_all(conn)
    .await
}

/// When the oldest drop still `reconnecting` began, if any.
pub async fn first_reconnecting_since(
    conn: &mut PgConnection,
    call: CallId,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar!(
        "select min(left_at) from call_participants where call_id = $1 and live and status = 'reconnecting'",
        call.0,
    )
    .fetch_one(conn)
    .await
}

/// Makes a written participant live (busy with this call): false, changing
/// nothing, when the user is in another live call, as the unique index
/// decides between concurrent transactions too.
pub async fn make_live(conn: &mut PgConnection, call: CallId, user: &UserId) -> sqlx::Result<bool> {
    use sqlx::Connection;
    let mut savepoint = conn.begin().await?;
    let result = sqlx::query!(
        "update call_participants set live = true where call_id = $1 and user_id = $2",
        call.0,
        user.as_str(),
    )
    .execute(&mut *savepoint)
    .await;
    match result {
        Ok(_) => {
            savepoint.commit().await?;
            Ok(true)
        }
        Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
            savepoint.rollback().await?;
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

/// Rings again someone who had declined, missed the ring, left or been busy
/// (never one removed): invited and live, in one statement. False, changing
/// nothing, when the user is in another live call (the unique index
/// decides between concurrent transactions too) or may not be rung.
pub async fn ring_again(
    conn: &mut PgConnection,
    call: CallId,
    user: &UserId,
    by: &UserId,
    until: DateTime<Utc>,
) -> sqlx::Result<bool> {
    use sqlx::Connection;
    let mut savepoint = conn.begin().await?;
    let result = sqlx::query!(
        "update call_participants set status = 'invited', live = true, rung_by = $3, ring_until = $4 \
         where call_id = $1 and user_id = $2 and status in ('declined', 'missed', 'left', 'busy')",
        call.0,
        user.as_str(),
        by.as_str(),
        until,
    )
    .execute(&mut *savepoint)
    .await;
    match result {
        Ok(done) => {
            savepoint.commit().await?;
            Ok(done.rows_affected() == 1)
        }
        Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
            savepoint.rollback().await?;
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

/// Who is still ringing and whose ringing is over at `now` (the Clock's,
/// as `ring_until` is and as deadlines fall due), oldest first.
pub async fn ringing_over(
    conn: &mut PgConnection,
    call: CallId,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        "select user_id from call_participants where call_id = $1 and live and status = 'invited' \
         and (ring_until is null or ring_until <= $2) order by ring_until nulls first",
        call.0,
        now,
    )
    .fetch_all(conn)
    .await
}

/// When the first ringing still going on ends, if any.
pub async fn next_ring_end(conn: &mut PgConnection, call: CallId) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar!(
        "select min(ring_until) from call_participants where call_id = $1 and live and status = 'invited'",
        call.0,
    )
    .fetch_one(conn)
    .await
}

/// Whether the participant is out of the waiting room.
pub async fn set_admitted(
    conn: &mut PgConnection,
    call: CallId,
    user: &str,
    admitted: bool,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update call_participants set admitted = $3 where call_id = $1 and user_id = $2",
        call.0,
        user,
        admitted,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Which of these users are in a live call right now (a plain read).
pub async fn live_users(pool: &PgPool, users: &[UserId]) -> sqlx::Result<Vec<UserId>> {
    let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
    let live = sqlx::query_scalar!(
        "select user_id from call_participants where live and user_id = any($1)",
        &ids as &[&str],
    )
    .fetch_all(pool)
    .await?;
    Ok(users.iter().filter(|u| live.iter().any(|l| l == u.as_str())).cloned().collect())
}

/// A participant's media flags.
#[derive(Clone, Debug)]
pub struct MediaFlags {
    pub user_id: String,
    pub audio_enabled: bool,
    pub video_enabled: bool,
    pub screen_share_enabled: bool,
}

/// Sets the flags given (`None` leaves one as it is); returns them all.
pub async fn update_media(
    conn: &mut PgConnection,
    call: CallId,
    user: &UserId,
    audio: Option<bool>,
    video: Option<bool>,
    screen_share: Option<bool>,
) -> sqlx::Result<MediaFlags> {
    sqlx::query_as!(
        MediaFlags,
        "update call_participants set audio_enabled = coalesce($3, audio_enabled), \
         video_enabled = coalesce($4, video_enabled), \
         screen_share_enabled = coalesce($5, screen_share_enabled) \
         where call_id = $1 and user_id = $2 \
         returning user_id, audio_enabled, video_enabled, screen_share_enabled",
        call.0,
        user.as_str(),
        audio,
        video,
        screen_share,
    )
    .fetch_one(conn)
    .await
}

/// A participant's media flags, read without a lock.
pub async fn media_of(db: &PgPool, call: CallId, user: &UserId) -> sqlx::Result<Option<MediaFlags>> {
    sqlx::query_as!(
        MediaFlags,
        "select user_id, audio_enabled, video_enabled, screen_share_enabled from call_participants \
         where call_id = $1 and user_id = $2",
        call.0,
        user.as_str(),
    )
    .fetch_optional(db)
    .await
}

/// Remembers a LiveKit session's start, unless it or a newer one is known
/// (then no row is written).
pub async fn remember_session(
    conn: &mut PgConnection,
    call: CallId,
    user: &str,
    session: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update call_participants set lk_session_at = $3 \
         where call_id = $1 and user_id = $2 and (lk_session_at is null or lk_session_at < $3)",
        call.0,
        user,
        session,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The participants of each of these calls, in one query, each call's in
/// the order of `participants`.
pub async fn of_calls(
    conn: &mut PgConnection,
    calls: &[CallId],
) -> sqlx::Result<std::collections::HashMap<CallId, Vec<ParticipantRow>>> {
    struct Row {
        call_id: CallId,
        user_id: UserId,
        name: Option<String>,
        gender: StoredGender,
        role: Role,
        status: ParticipantStatus,
        live: bool,
        may_share_screen: bool,
        answered_at: Option<DateTime<Utc>>,
        joined_at: Option<DateTime<Utc>>,
        left_at: Option<DateTime<Utc>>,
        audio_enabled: bool,
        video_enabled: bool,
        screen_share_enabled: bool,
        admitted: bool,
        lk_session_at: Option<DateTime<Utc>>,
        rung_by: Option<String>,
    }
    let ids: Vec<uuid::Uuid> = calls.iter().map(|c| c.0).collect();
    let rows = select_participants!(
        Row,
        r#"select call_id as "call_id: CallId", "#,
        "where call_id = any($1) order by call_id, role = 'invitee', invited_at, user_id",
        &ids,
    )
    .fetch_all(conn)
    .await?;
    let mut by_call: std::collections::HashMap<CallId, Vec<ParticipantRow>> =
        std::collections::HashMap::new();
    for row in rows {
        by_call.entry(row.call_id).or_default().push(ParticipantRow {
            user_id: row.user_id,
            name: row.name,
            gender: row.gender,
            role: row.role,
            status: row.status,
            live: row.live,
            may_share_screen: row.may_share_screen,
            answered_at: row.answered_at,
            joined_at: row.joined_at,
            left_at: row.left_at,
            audio_enabled: row.audio_enabled,
            video_enabled: row.video_enabled,
            screen_share_enabled: row.screen_share_enabled,
            admitted: row.admitted,
            lk_session_at: row.lk_session_at,
            rung_by: row.rung_by,
        });
    }
    Ok(by_call)
}
