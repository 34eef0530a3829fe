//! The `suspensions` table: who may neither call nor be called, and until
//! when. Read at every way into a call, on every instance: the database is
//! the only place a suspension is kept.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::domain::UserId;

#[derive(Clone, Debug)]
pub struct SuspensionRow {
    pub user_id: String,
    pub suspended_by: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
}

/// Which of `users` are suspended at `now`.
pub async fn in_force_among(db: &PgPool, users: &[&str], now: DateTime<Utc>) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        "select user_id from suspensions where user_id = any($1) and (ends_at is null or ends_at > $2)",
        users as &[&str],
        now,
    )
    .fetch_all(db)
    .await
}

/// The user's suspension in force at `now`, if any.
pub async fn in_force(
    conn: &mut PgConnection,
    user: &UserId,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<SuspensionRow>> {
    sqlx::query_as!(
        SuspensionRow,
        "select user_id, suspended_by, reason, created_at, ends_at from suspensions \
         where user_id = $1 and (ends_at is null or ends_at > $2)",
        user.as_str(),
        now,
    )
    .fetch_optional(conn)
    .await
}

/// Suspends `user` from `at` until `ends_at` (`None`: until lifted),
/// replacing any suspension they had.
pub async fn suspend(
    conn: &mut PgConnection,
    user: &UserId,
    by: &UserId,
    reason: &str,
    at: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
) -> sqlx::Result<SuspensionRow> {
    sqlx::query_as!(
        SuspensionRow,
        "insert into suspensions (user_id, suspended_by, reason, created_at, ends_at) \
         values ($1, $2, $3, $4, $5) on conflict (user_id) do update set \
         suspended_by = excluded.suspended_by, reason = excluded.reason, \
         created_at = excluded.created_at, ends_at = excluded.ends_at \
         returning user_id, suspended_by, reason, created_at, ends_at",
        user.as_str(),
        by.as_str(),
        reason,
        at,
        ends_at,
    )
    .fetch_one(conn)
    .await
}

/// Lifts the user's suspension; the one that was in force at `now`, if any.
pub async fn lift(
    conn: &mut PgConnection,
    user: &UserId,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<SuspensionRow>> {
    let gone = sqlx::query_as!(
        SuspensionRow,
        "delete from suspensions where user_id = $1 \
         returning user_id, suspended_by, reason, created_at, ends_at",
        user.as_str(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(gone.filter(|s| s.ends_at.is_none_or(|ends| ends > now)))
}
