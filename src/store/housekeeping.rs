//! What belongs to no call: the reconciler's lease, and deleting rows that
//! are only history.

use std::collections::BTreeMap;

use sqlx::PgPool;

/// Takes the reconciler's lease unless some instance took it within `gap`
/// seconds; returns whether this one did. By the database's clock: the one
/// clock all instances share.
pub async fn take_reconciler_lease(db: &PgPool, gap_secs: f64) -> sqlx::Result<bool> {
    let taken = sqlx::query!(
        "update reconciler_lease set ran_at = now() where ran_at <= now() - make_interval(secs => $1)",
        gap_secs,
    )
    .execute(db)
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// Rows one statement deletes at most: short enough to hold no lock for
/// long, big enough that a backlog goes at tens of thousands a second.
pub const PURGE_BATCH: i64 = 5000;

/// What is only history, by table (see migrations/0005_retention.sql and
/// 0014_small_doors.sql): handled LiveKit events and published client
/// events after a day, settled app webhooks after a week, quality samples
/// after 30 days, the timelines of calls after 90 days (a call lasts a day
/// at most, so its timeline goes whole), ring declines after a day. Its
/// statements are in [`purge_batch`].
#[derive(Clone, Copy)]
enum History {
    LiveKitEvents,
    UserEvents,
    AppWebhooks,
    QualitySamples,
    CallEvents,
    RingDeclines,
}

impl History {
    const ALL: [History; 6] = [
        History::LiveKitEvents,
        History::UserEvents,
        History::AppWebhooks,
        History::QualitySamples,
        History::CallEvents,
        History::RingDeclines,
    ];

    fn table(self) -> &'static str {
        match self {
            History::LiveKitEvents => "livekit_webhook_events",
            History::UserEvents => "user_events",
            History::AppWebhooks => "app_webhook_outbox",
            History::QualitySamples => "quality_samples",
            History::CallEvents => "call_events",
            History::RingDeclines => "ring_declines",
        }
    }
}

/// Deletes a batch of `table`'s history; returns how many rows. Each
/// statement takes its batch with FOR UPDATE SKIP LOCKED, once (an init
/// plan), and deletes those rows by their place: instances purging at once
/// split the rows and never wait on, nor re-check, one another's (as
/// `delete ... where id in (select ... skip locked)` did, re-running its
/// subquery for every row the other had taken, for minutes). The ages are
/// by the database's clock, which wrote the times of those rows.
async fn purge_batch(db: &PgPool, history: History) -> sqlx::Result<u64> {
    let done = match history {
        History::LiveKitEvents => sqlx::query!(
            "delete from livekit_webhook_events where ctid = any(array(select ctid from livekit_webhook_events \
             where processed_at is not null and received_at < now() - interval '1 day' \
             limit $1 for update skip locked))",
            PURGE_BATCH,
        )
        .execute(db)
        .await?,
        History::UserEvents => sqlx::query!(
            "delete from user_events where ctid = any(array(select ctid from user_events \
             where published_at is not null and created_at < now() - interval '1 day' \
             limit $1 for update skip locked))",
            PURGE_BATCH,
        )
        .execute(db)
        .await?,
        History::AppWebhooks => sqlx::query!(
            "delete from app_webhook_outbox where ctid = any(array(select ctid from app_webhook_outbox \
             where (delivered_at is not null or failed_at is not null) \
             and created_at < now() - interval '7 days' limit $1 for update skip locked))",
            PURGE_BATCH,
        )
        .execute(db)
        .await?,
        History::QualitySamples => sqlx::query!(
            "delete from quality_samples where ctid = any(array(select ctid from quality_samples \
             where at < now() - interval '30 days' limit $1 for update skip locked))",
            PURGE_BATCH,
        )
        .execute(db)
        .await?,
        History::CallEvents => sqlx::query!(
            "delete from call_events where ctid = any(array(select ctid from call_events \
             where at < now() - interval '90 days' limit $1 for update skip locked))",
            PURGE_BATCH,
        )
        .execute(db)
        .await?,
        // The ring cooldown looks back RING_DECLINES_WINDOW, a day at most.
        History::RingDeclines => sqlx::query!(
            "delete from ring_declines where ctid = any(array(select ctid from ring_declines \
             where at < now() - interval '1 day' limit $1 for update skip locked))",
            PURGE_BATCH,
        )
        .execute(db)
        .await?,
    };
    Ok(done.rows_affected())
}

/// Rows deleted, by table.
pub type Purged = BTreeMap<&'static str, u64>;

/// Deletes rows that are only history until none is left: a batch from
/// each table that still has some, round after round, so that one table
/// flooded faster than it empties keeps none of the others waiting.
pub async fn purge_old_rows(db: &PgPool) -> sqlx::Result<Purged> {
    let mut purged = Purged::new();
    let mut left: Vec<History> = History::ALL.to_vec();
    while !left.is_empty() {
        let mut again = Vec::new();
        for history in left {
            let deleted = purge_batch(db, history).await?;
            *purged.entry(history.table()).or_default() += deleted;
            if deleted >= PURGE_BATCH as u64 {
                again.push(history);
            }
        }
        left = again;
    }
    Ok(purged)
}
