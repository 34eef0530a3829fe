//! LiveKit's webhooks as received (`livekit_webhook_events`), handled in
//! order per call by `crate::ingest::inbox`. Their times (`received_at`,
//! `processed_at`) are the database's: its clock writes them, and ages
//! them here and in `store::housekeeping`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::CallId;

/// A webhook to store.
pub struct NewDelivery<'a> {
    pub id: &'a str,
    pub event: &'a str,
    pub room: &'a str,
    pub created_at: Option<DateTime<Utc>>,
    pub call: CallId,
    pub payload: &'a Value,
}

/// Stores a batch; returns the ids of those not stored before.
pub async fn insert_batch(db: &PgPool, batch: &[NewDelivery<'_>]) -> sqlx::Result<Vec<String>> {
    let ids: Vec<&str> = batch.iter().map(|d| d.id).collect();
    let events: Vec<&str> = batch.iter().map(|d| d.event).collect();
    let rooms: Vec<&str> = batch.iter().map(|d| d.room).collect();
    let created: Vec<Option<DateTime<Utc>>> = batch.iter().map(|d| d.created_at).collect();
    let calls: Vec<Uuid> = batch.iter().map(|d| d.call.0).collect();
    let payloads: Vec<&Value> = batch.iter().map(|d| d.payload).collect();
    sqlx::query_scalar!(
        "insert into livekit_webhook_events (id, event, room_name, created_at, call_id, payload) \
         select * from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::uuid[], $6::jsonb[]) \
         on conflict (id) do nothing returning id",
        &ids as &[&str],
        &events as &[&str],
        &rooms as &[&str],
        &created as &[Option<DateTime<Utc>>],
        &calls[..],
        &payloads as &[&Value],
    )
    .fetch_all(db)
    .await
}

#[derive(Debug)]
pub struct Pending {
    pub id: String,
    pub payload: Option<Value>,
    pub received_at: DateTime<Utc>,
}

/// The call's first unhandled event, locked for this transaction.
pub async fn lock_next_pending(conn: &mut PgConnection, call: CallId) -> sqlx::Result<Option<Pending>> {
    sqlx::query_as!(
        Pending,
        "select id, payload, received_at from livekit_webhook_events \
         where call_id = $1 and processed_at is null order by seq limit 1 for update",
        call.0,
    )
    .fetch_optional(conn)
    .await
}

/// Takes up to `limit` of the call's first unhandled events, in arrival
/// order, and marks them handled, in one statement: the transaction that
/// handles them commits the mark with what they did, or rolls both back.
pub async fn claim_pending(conn: &mut PgConnection, call: CallId, limit: i64) -> sqlx::Result<Vec<Pending>> {
    let mut claimed = sqlx::query!(
        "update livekit_webhook_events set processed_at = now() \
          where id in (select id from livekit_webhook_events \
                        where call_id = $1 and processed_at is null order by seq limit $2 for update) \
         returning id, payload, received_at, seq",
        call.0,
        limit,
    )
    .fetch_all(conn)
    .await?;
    // RETURNING keeps no order.
    claimed.sort_by_key(|row| row.seq);
    Ok(claimed
        .into_iter()
        .map(|row| Pending { id: row.id, payload: row.payload, received_at: row.received_at })
        .collect())
}

/// Puts back events a transaction claimed but did not handle.
pub async fn unclaim(conn: &mut PgConnection, ids: &[String]) -> sqlx::Result<()> {
    sqlx::query!("update livekit_webhook_events set processed_at = null where id = any($1)", ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Events not handled yet, across all instances (the partial index
/// `livekit_webhook_events_pending` counts them).
pub async fn backlog(db: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"select count(*) as "count!" from livekit_webhook_events where processed_at is null"#
    )
    .fetch_one(db)
    .await
}

/// Sets aside all of the call's unhandled events.
pub async fn mark_all_processed(conn: &mut PgConnection, call: CallId) -> sqlx::Result<()> {
    sqlx::query!(
        "update livekit_webhook_events set processed_at = now() \
         where call_id = $1 and processed_at is null",
        call.0,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_processed(conn: &mut PgConnection, id: &str) -> sqlx::Result<()> {
    sqlx::query!("update livekit_webhook_events set processed_at = now() where id = $1", id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Counts a failed handling; at `max_attempts` the event is set aside.
/// Returns the attempts so far (`None`: no such event).
pub async fn count_failure(db: &PgPool, id: &str, max_attempts: i32) -> sqlx::Result<Option<i32>> {
    sqlx::query_scalar!(
        "update livekit_webhook_events set attempts = attempts + 1, \
         processed_at = case when attempts + 1 >= $2 then now() end \
         where id = $1 returning attempts",
        id,
        max_attempts,
    )
    .fetch_optional(db)
    .await
}

/// Up to `limit` calls with events left unhandled for a while, those
/// waiting longest first.
pub async fn stranded_calls(db: &PgPool, limit: i64) -> sqlx::Result<Vec<CallId>> {
    let calls = sqlx::query_scalar!(
        r#"select call_id as "call_id!" from livekit_webhook_events where processed_at is null
           and received_at < now() - interval '2 seconds' and call_id is not null
           group by call_id order by min(seq) limit $1"#,
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(calls.into_iter().map(CallId).collect())
}
