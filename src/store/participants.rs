//! The `call_participants` table: who is in which call, and how.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::domain::consent::Gender;
use crate::domain::membership::Member;
use crate::domain::{CallId, ParticipantStatus, Role, UserId};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ParticipantRow {
    #[sqlx(try_from = "String")]
    pub user_id: UserId,
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
    let inserted = sqlx::query(
        "insert into call_participants (call_id, user_id, name, gender, role, status, live, \
         may_share_screen, answered_at, rung_by, ring_until) \
         values ($1, $2, $3, $4, $5, $6, $8, $7, case when $6 = 'accepted' then now() end, $9, $10) \
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
    .bind(p.rung.map(|(by, _)| by.as_str()))
    .bind(p.rung.map(|(_, at)| at))
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

/// A joined participant's connection dropped: `reconnecting` since now
/// (`left_at`), still in the call. False if they were not `joined`.
pub async fn mark_reconnecting(conn: &mut PgConnection, call: CallId, user: &str) -> sqlx::Result<bool> {
    let marked = sqlx::query(
        "update call_participants set status = 'reconnecting', left_at = now() \
         where call_id = $1 and user_id = $2 and live and status = 'joined'",
    )
    .bind(call.0)
    .bind(user)
    .execute(conn)
    .await?;
    Ok(marked.rows_affected() == 1)
}

/// Who has been `reconnecting` for at least `grace`, by the database's clock.
pub async fn reconnecting_past(
    conn: &mut PgConnection,
    call: CallId,
    grace: std::time::Duration,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "select user_id from call_participants where call_id = $1 and live and status = 'reconnecting' \
         and left_at <= now() - make_interval(secs => $2) order by left_at",
    )
    .bind(call.0)
    .bind(grace.as_secs_f64())
    .fetch_all(conn)
    .await
}

/// When the oldest drop still `reconnecting` began, if any.
pub async fn first_reconnecting_since(
    conn: &mut PgConnection,
    call: CallId,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        "select min(left_at) from call_participants where call_id = $1 and live and status = 'reconnecting'",
    )
    .bind(call.0)
    .fetch_one(conn)
    .await
}

/// Makes a written participant live (busy with this call): false, changing
/// nothing, when the user is in another live call, as the unique index
/// decides between concurrent transactions too.
pub async fn make_live(conn: &mut PgConnection, call: CallId, user: &UserId) -> sqlx::Result<bool> {
    use sqlx::Connection;
    let mut savepoint = conn.begin().await?;
    let result = sqlx::query("update call_participants set live = true where call_id = $1 and user_id = $2")
        .bind(call.0)
        .bind(user.as_str())
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
    let result = sqlx::query(
        "update call_participants set status = 'invited', live = true, rung_by = $3, ring_until = $4 \
         where call_id = $1 and user_id = $2 and status in ('declined', 'missed', 'left', 'busy')",
    )
    .bind(call.0)
    .bind(user.as_str())
    .bind(by.as_str())
    .bind(until)
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

/// Who is still ringing and whose ringing is over (by the database's
/// clock, as deadlines fall due), oldest first.
pub async fn ringing_over(conn: &mut PgConnection, call: CallId) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "select user_id from call_participants where call_id = $1 and live and status = 'invited' \
         and (ring_until is null or ring_until <= now()) order by ring_until nulls first",
    )
    .bind(call.0)
    .fetch_all(conn)
    .await
}

/// When the first ringing still going on ends, if any.
pub async fn next_ring_end(conn: &mut PgConnection, call: CallId) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        "select min(ring_until) from call_participants where call_id = $1 and live and status = 'invited'",
    )
    .bind(call.0)
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
    sqlx::query("update call_participants set admitted = $3 where call_id = $1 and user_id = $2")
        .bind(call.0)
        .bind(user)
        .bind(admitted)
        .execute(conn)
        .await?;
    Ok(())
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

/// A participant's media flags.
#[derive(Clone, Debug, sqlx::FromRow)]
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
    sqlx::query_as(
        "update call_participants set audio_enabled = coalesce($3, audio_enabled), \
         video_enabled = coalesce($4, video_enabled), \
         screen_share_enabled = coalesce($5, screen_share_enabled) \
         where call_id = $1 and user_id = $2 \
         returning user_id, audio_enabled, video_enabled, screen_share_enabled",
    )
    .bind(call.0)
    .bind(user.as_str())
    .bind(audio)
    .bind(video)
    .bind(screen_share)
    .fetch_one(conn)
    .await
}

/// A participant's media flags, read without a lock.
pub async fn media_of(db: &PgPool, call: CallId, user: &UserId) -> sqlx::Result<Option<MediaFlags>> {
    sqlx::query_as(
        "select user_id, audio_enabled, video_enabled, screen_share_enabled from call_participants \
         where call_id = $1 and user_id = $2",
    )
    .bind(call.0)
    .bind(user.as_str())
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
    sqlx::query(
        "update call_participants set lk_session_at = $3 \
         where call_id = $1 and user_id = $2 and (lk_session_at is null or lk_session_at < $3)",
    )
    .bind(call.0)
    .bind(user)
    .bind(session)
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
    #[derive(sqlx::FromRow)]
    struct Row {
        call_id: uuid::Uuid,
        #[sqlx(flatten)]
        participant: ParticipantRow,
    }
    let ids: Vec<uuid::Uuid> = calls.iter().map(|c| c.0).collect();
    let rows: Vec<Row> = sqlx::query_as(concat!(
        "select call_id, ",
        participant_columns!(),
        " from call_participants where call_id = any($1) \
         order by call_id, role = 'invitee', invited_at, user_id"
    ))
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    let mut by_call: std::collections::HashMap<CallId, Vec<ParticipantRow>> =
        std::collections::HashMap::new();
    for row in rows {
        by_call.entry(CallId(row.call_id)).or_default().push(row.participant);
    }
    Ok(by_call)
}
