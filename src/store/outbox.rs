//! The app webhook outbox (`app_webhook_outbox`), delivered by
//! `crate::workers::app_webhooks`. A webhook's own times (`created_at`,
//! `next_attempt_at`, `delivered_at`) are the database's: `store::Outgoing`
//! writes it with the transaction's time, and its attempts are timed by the
//! same clock.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Writes an app webhook into the outbox, stamped with the transaction's
/// time: one on its own, written the way a step's are (`store::Outgoing`).
pub async fn enqueue_app_webhook(
    conn: &mut PgConnection,
    kind: &str,
    call: Uuid,
    data: Value,
) -> sqlx::Result<()> {
    let mut out = crate::store::Outgoing::default();
    out.hook(kind, call, data);
    out.write(conn).await
}

/// App webhooks neither delivered nor given up on.
pub async fn app_webhook_backlog(db: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"select count(*) as "count!" from app_webhook_outbox where delivered_at is null and failed_at is null"#,
    )
    .fetch_one(db)
    .await
}

/// A webhook due for an attempt.
#[derive(Debug)]
pub struct DueWebhook {
    pub id: Uuid,
    pub kind: String,
    pub call_id: Option<Uuid>,
    pub payload: Value,
    pub attempts: i32,
}

/// Takes the webhook due first, locked for this transaction and skipped by
/// every other; one waits while an earlier one of its call is undelivered
/// (being sent, or waiting for a retry), so a call's webhooks arrive in order.
pub async fn lock_next_due(conn: &mut PgConnection) -> sqlx::Result<Option<DueWebhook>> {
    sqlx::query_as!(
        DueWebhook,
        "select id, type as kind, call_id, payload, attempts from app_webhook_outbox o \
         where delivered_at is null and failed_at is null and next_attempt_at <= now() \
         and not exists (select 1 from app_webhook_outbox e where e.call_id = o.call_id \
                         and e.seq < o.seq and e.delivered_at is null and e.failed_at is null) \
         order by next_attempt_at limit 1 for update skip locked",
    )
    .fetch_optional(conn)
    .await
}

pub async fn mark_delivered(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "update app_webhook_outbox set delivered_at = now(), attempts = attempts + 1, \
         last_error = null where id = $1",
        id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a failed attempt; the next is due after `wait`.
pub async fn mark_attempt_failed(
    conn: &mut PgConnection,
    id: Uuid,
    attempts: i32,
    error: &str,
    wait: std::time::Duration,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update app_webhook_outbox set attempts = $2, last_error = $3, \
         next_attempt_at = now() + $4 * interval '1 millisecond' where id = $1",
        id,
        attempts,
        error,
        wait.as_millis() as f64,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives up, as of `now`, on the webhooks undelivered that were written
/// before `created_before`; returns how many.
pub async fn abandon_undelivered(
    db: &PgPool,
    now: DateTime<Utc>,
    created_before: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let abandoned = sqlx::query!(
        "update app_webhook_outbox set failed_at = $1 \
         where delivered_at is null and failed_at is null and created_at < $2",
        now,
        created_before,
    )
    .execute(db)
    .await?;
    Ok(abandoned.rows_affected())
}

/// Deletes the webhooks written before `created_before`, whatever became of them.
pub async fn delete_older_than(db: &PgPool, created_before: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query!("delete from app_webhook_outbox where created_at < $1", created_before).execute(db).await?;
    Ok(())
}
