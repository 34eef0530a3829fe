//! The `deadlines` table: what happens to a call if nothing else does first.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::CallId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadlineKind {
    Ringing,
    Connect,
    MaxDuration,
    VideoRequest,
    /// The end of `REJOIN_GRACE` for the call's oldest drop.
    Rejoin,
}

impl DeadlineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineKind::Ringing => "ringing",
            DeadlineKind::Connect => "connect",
            DeadlineKind::MaxDuration => "max_duration",
            DeadlineKind::VideoRequest => "video_request",
            DeadlineKind::Rejoin => "rejoin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Ringing, Self::Connect, Self::MaxDuration, Self::VideoRequest, Self::Rejoin]
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

/// Schedules the deadline, or brings an existing one forward to `due_at`
/// (never later).
pub async fn schedule_earliest(
    conn: &mut PgConnection,
    call: CallId,
    kind: DeadlineKind,
    due_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into deadlines (call_id, kind, due_at) values ($1, $2, $3) \
         on conflict (call_id, kind) do update set due_at = least(deadlines.due_at, excluded.due_at)",
    )
    .bind(call.0)
    .bind(kind.as_str())
    .bind(due_at)
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

/// Up to `limit` due deadlines, the most overdue first (a plain read: firing
/// one locks its call first).
pub async fn due(db: &sqlx::PgPool, limit: i64) -> sqlx::Result<Vec<(CallId, String)>> {
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("select call_id, kind from deadlines where due_at <= now() order by due_at limit $1")
            .bind(limit)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|(call, kind)| (CallId(call), kind)).collect())
}

/// Moves a due deadline `by` later.
pub async fn postpone(
    db: &sqlx::PgPool,
    call: CallId,
    kind: DeadlineKind,
    by: std::time::Duration,
) -> sqlx::Result<()> {
    sqlx::query(
        "update deadlines set due_at = now() + make_interval(secs => $3) \
         where call_id = $1 and kind = $2 and due_at <= now()",
    )
    .bind(call.0)
    .bind(kind.as_str())
    .bind(by.as_secs_f64())
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes the deadline if it is due, so that it fires once: `Some(ref_id)`
/// if it was, `None` if it is not due (or gone).
pub async fn take_if_due(
    conn: &mut PgConnection,
    call: CallId,
    kind: DeadlineKind,
) -> sqlx::Result<Option<Option<Uuid>>> {
    let taken: Option<(Option<Uuid>,)> = sqlx::query_as(
        "delete from deadlines where call_id = $1 and kind = $2 and due_at <= now() returning ref_id",
    )
    .bind(call.0)
    .bind(kind.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(taken.map(|(ref_id,)| ref_id))
}
