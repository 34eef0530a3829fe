//! The app webhook outbox (`app_webhook_outbox`), delivered by
//! `crate::workers::app_webhooks`.

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

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

/// App webhooks neither delivered nor given up on.
pub async fn app_webhook_backlog(db: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "select count(*) from app_webhook_outbox where delivered_at is null and failed_at is null",
    )
    .fetch_one(db)
    .await
}

