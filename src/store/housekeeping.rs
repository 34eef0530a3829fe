//! What belongs to no call: the reconciler's lease, and deleting rows that
//! are only history.

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

/// Deletes rows that are only history, a batch of each (see
/// migrations/0005_retention.sql): handled LiveKit events and published
/// client events after a day, settled app webhooks after a week, quality
/// samples after 30 days.
pub async fn purge_old_rows(db: &PgPool) -> sqlx::Result<()> {
    for sql in [
        "delete from livekit_webhook_events where id in (select id from livekit_webhook_events \
         where processed_at is not null and received_at < now() - interval '1 day' limit 1000)",
        "delete from user_events where id in (select id from user_events \
         where published_at is not null and created_at < now() - interval '1 day' limit 1000)",
        "delete from app_webhook_outbox where id in (select id from app_webhook_outbox \
         where (delivered_at is not null or failed_at is not null) \
         and created_at < now() - interval '7 days' limit 1000)",
        "delete from quality_samples where id in (select id from quality_samples \
         where at < now() - interval '30 days' limit 1000)",
    ] {
        sqlx::query(sql).execute(db).await?;
    }
    // The ring cooldown looks back RING_DECLINES_WINDOW, a day at most.
    sqlx::query(
        "delete from ring_declines where ctid in (select ctid from ring_declines \
         where at < now() - interval '1 day' limit 1000)",
    )
    .execute(db)
    .await?;
    Ok(())
}
