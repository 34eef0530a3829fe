//! The call's timeline (`call_events`) and the events queued for users
//! (`user_events`, published by `crate::workers::fanout`).

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{CallId, EventSource};

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

