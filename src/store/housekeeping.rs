//! What belongs to no call: the reconciler's lease, and deleting rows that
//! are only history.

use std::collections::BTreeMap;

use sqlx::PgPool;

/// Takes the reconciler's lease unless some instance took it within `gap`
/// seconds; returns whether this one did.
pub async fn take_reconciler_lease(db: &PgPool, gap_secs: f64) -> sqlx::Result<bool> {
    let taken = sqlx::query(
        "update reconciler_lease set ran_at = now() where ran_at <= now() - make_interval(secs => $1)",
    )
    .bind(gap_secs)
    .execute(db)
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// Rows one statement deletes at most: short enough to hold no lock for
/// long, big enough that a backlog goes at tens of thousands a second.
pub const PURGE_BATCH: i64 = 5000;

/// What is only history, by table, and the statement that deletes a batch
/// of it (see migrations/0005_retention.sql and 0014_small_doors.sql):
/// handled LiveKit events and published client events after a day, settled
/// app webhooks after a week, quality samples after 30 days, the timelines
/// of calls after 90 days (a call lasts a day at most, so its timeline goes
/// whole). Each takes its batch with FOR UPDATE SKIP LOCKED, once (an
/// init plan), and deletes those rows by their place: instances purging at
/// once split the rows and never wait on, nor re-check, one another's (as
/// `delete ... where id in (select ... skip locked)` did, re-running its
/// subquery for every row the other had taken, for minutes).
const PURGES: [(&str, &str); 6] = [
    (
        "livekit_webhook_events",
        "delete from livekit_webhook_events where ctid = any(array(select ctid from livekit_webhook_events \
         where processed_at is not null and received_at < now() - interval '1 day' limit $1 for update skip locked))",
    ),
    (
        "user_events",
        "delete from user_events where ctid = any(array(select ctid from user_events \
         where published_at is not null and created_at < now() - interval '1 day' limit $1 for update skip locked))",
    ),
    (
        "app_webhook_outbox",
        "delete from app_webhook_outbox where ctid = any(array(select ctid from app_webhook_outbox \
         where (delivered_at is not null or failed_at is not null) \
         and created_at < now() - interval '7 days' limit $1 for update skip locked))",
    ),
    (
        "quality_samples",
        "delete from quality_samples where ctid = any(array(select ctid from quality_samples \
         where at < now() - interval '30 days' limit $1 for update skip locked))",
    ),
    (
        "call_events",
        "delete from call_events where ctid = any(array(select ctid from call_events \
         where at < now() - interval '90 days' limit $1 for update skip locked))",
    ),
    // The ring cooldown looks back RING_DECLINES_WINDOW, a day at most.
    (
        "ring_declines",
        "delete from ring_declines where ctid = any(array(select ctid from ring_declines \
         where at < now() - interval '1 day' limit $1 for update skip locked))",
    ),
];

/// Rows deleted, by table.
pub type Purged = BTreeMap<&'static str, u64>;

/// Deletes rows that are only history until none is left: a batch from
/// each table that still has some, round after round, so that one table
/// flooded faster than it empties keeps none of the others waiting.
pub async fn purge_old_rows(db: &PgPool) -> sqlx::Result<Purged> {
    let mut purged = Purged::new();
    let mut left: Vec<(&'static str, &'static str)> = PURGES.to_vec();
    while !left.is_empty() {
        let mut again = Vec::new();
        for (table, sql) in left {
            let deleted = sqlx::query(sql).bind(PURGE_BATCH).execute(db).await?.rows_affected();
            *purged.entry(table).or_default() += deleted;
            if deleted >= PURGE_BATCH as u64 {
                again.push((table, sql));
            }
        }
        left = again;
    }
    Ok(purged)
}
