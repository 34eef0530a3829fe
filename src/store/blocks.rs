//! The `blocks` table: who stopped whom from calling them.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::domain::UserId;

/// Blocks `blocked` for `blocker`, unless they hold `max` blocks already;
/// false then (blocking someone blocked already is no new block).
pub async fn block(
    conn: &mut PgConnection,
    blocker: &UserId,
    blocked: &UserId,
    max: i64,
) -> sqlx::Result<bool> {
    // One blocker's blocks are counted under a lock on the blocker, so two
    // requests at once cannot pass the bound together.
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended('callgate:blocks:' || $1, 0))",
        blocker.as_str(),
    )
    .execute(&mut *conn)
    .await?;
    let held =
        sqlx::query_scalar!(r#"select count(*) as "held!" from blocks where blocker = $1"#, blocker.as_str())
            .fetch_one(&mut *conn)
            .await?;
    let exists = sqlx::query_scalar!(
        r#"select exists (select 1 from blocks where blocker = $1 and blocked = $2) as "exists!""#,
        blocker.as_str(),
        blocked.as_str(),
    )
    .fetch_one(&mut *conn)
    .await?;
    if exists {
        return Ok(true);
    }
    if held >= max {
        return Ok(false);
    }
    sqlx::query!(
        "insert into blocks (blocker, blocked) values ($1, $2) on conflict do nothing",
        blocker.as_str(),
        blocked.as_str(),
    )
    .execute(conn)
    .await?;
    Ok(true)
}

pub async fn unblock(db: &PgPool, blocker: &UserId, blocked: &UserId) -> sqlx::Result<()> {
    sqlx::query!(
        "delete from blocks where blocker = $1 and blocked = $2",
        blocker.as_str(),
        blocked.as_str()
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Whom `blocker` blocks, newest first.
pub async fn of(db: &PgPool, blocker: &UserId) -> sqlx::Result<Vec<(String, DateTime<Utc>)>> {
    let rows = sqlx::query!(
        "select blocked, created_at from blocks where blocker = $1 order by created_at desc, blocked",
        blocker.as_str(),
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.blocked, r.created_at)).collect())
}

/// Which of `others` block `user` or are blocked by them.
pub async fn between(db: &PgPool, user: &UserId, others: &[UserId]) -> sqlx::Result<Vec<UserId>> {
    let ids: Vec<&str> = others.iter().map(UserId::as_str).collect();
    let hits = sqlx::query_scalar!(
        "select blocked from blocks where blocker = $1 and blocked = any($2) \
         union select blocker from blocks where blocked = $1 and blocker = any($2)",
        user.as_str(),
        &ids as &[&str],
    )
    .fetch_all(db)
    .await?;
    Ok(others.iter().filter(|o| hits.iter().any(|h| h.as_deref() == Some(o.as_str()))).cloned().collect())
}

/// Every block between any two of `users`, as (blocker, blocked).
pub async fn among<'c>(db: impl sqlx::PgExecutor<'c>, users: &[&str]) -> sqlx::Result<Vec<(String, String)>> {
    let rows = sqlx::query!(
        "select blocker, blocked from blocks where blocker = any($1) and blocked = any($1)",
        users as &[&str],
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.blocker, r.blocked)).collect())
}

/// `callee` declined a ring by `caller` at `at` (the ring cooldown's log).
pub async fn record_decline(
    conn: &mut sqlx::PgConnection,
    caller: &str,
    callee: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!("insert into ring_declines (caller, callee, at) values ($1, $2, $3)", caller, callee, at)
        .execute(conn)
        .await?;
    Ok(())
}

/// When `callee` declined rings by `caller`, the newest `limit` within the
/// `window` before `now`, newest first.
pub async fn recent_declines(
    db: &PgPool,
    caller: &UserId,
    callee: &UserId,
    now: DateTime<Utc>,
    window: std::time::Duration,
    limit: i64,
) -> sqlx::Result<Vec<DateTime<Utc>>> {
    sqlx::query_scalar!(
        "select at from ring_declines where caller = $1 and callee = $2 \
         and at > $3::timestamptz - make_interval(secs => $4) order by at desc limit $5",
        caller.as_str(),
        callee.as_str(),
        now,
        window.as_secs_f64(),
        limit,
    )
    .fetch_all(db)
    .await
}
