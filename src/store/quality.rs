//! Quality samples (`quality_samples`) and ratings (`call_ratings`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::domain::{CallId, UserId};

pub struct NewSample<'a> {
    pub jitter_ms: f64,
    pub packet_loss_pct: f64,
    pub rtt_ms: f64,
    pub bitrate_kbps: Option<f64>,
    pub fps: Option<f64>,
    pub resolution: Option<&'a str>,
    pub codec: Option<&'a str>,
    pub network_type: Option<&'a str>,
}

/// Stores a sample unless the call has `max` already (0: no limit);
/// returns its id, or `None` if the call is full.
pub async fn insert_sample(
    conn: &mut PgConnection,
    call: CallId,
    user: &UserId,
    sample: &NewSample<'_>,
    max: i64,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        "insert into quality_samples (call_id, user_id, jitter_ms, packet_loss_pct, rtt_ms, \
         bitrate_kbps, fps, resolution, codec, network_type) \
         select $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
         where $11::bigint = 0 or (select count(*) from quality_samples where call_id = $1) < $11 \
         returning id",
        call.0,
        user.as_str(),
        sample.jitter_ms,
        sample.packet_loss_pct,
        sample.rtt_ms,
        sample.bitrate_kbps,
        sample.fps,
        sample.resolution,
        sample.codec,
        sample.network_type,
        max,
    )
    .fetch_optional(conn)
    .await
}

/// The medians and p95s of a call's samples, for one participant or (with
/// `whole`) the call.
pub struct SummaryRow {
    pub user_id: Option<String>,
    pub whole: bool,
    pub samples: i64,
    pub jitter_p50: Option<f64>,
    pub jitter_p95: Option<f64>,
    pub loss_p50: Option<f64>,
    pub loss_p95: Option<f64>,
    pub rtt_p50: Option<f64>,
    pub rtt_p95: Option<f64>,
    pub bitrate_p50: Option<f64>,
    pub bitrate_p95: Option<f64>,
}

/// The call's summary first (if it has samples), then each participant's.
pub async fn summary(conn: &mut PgConnection, call: CallId) -> sqlx::Result<Vec<SummaryRow>> {
    sqlx::query_as!(
        SummaryRow,
        r#"select user_id as "user_id?", grouping(user_id) = 1 as "whole!", count(*) as "samples!",
         percentile_cont(0.5) within group (order by jitter_ms) as jitter_p50,
         percentile_cont(0.95) within group (order by jitter_ms) as jitter_p95,
         percentile_cont(0.5) within group (order by packet_loss_pct) as loss_p50,
         percentile_cont(0.95) within group (order by packet_loss_pct) as loss_p95,
         percentile_cont(0.5) within group (order by rtt_ms) as rtt_p50,
         percentile_cont(0.95) within group (order by rtt_ms) as rtt_p95,
         percentile_cont(0.5) within group (order by bitrate_kbps) as bitrate_p50,
         percentile_cont(0.95) within group (order by bitrate_kbps) as bitrate_p95
         from quality_samples where call_id = $1
         group by grouping sets ((user_id), ()) order by grouping(user_id) desc, user_id"#,
        call.0,
    )
    .fetch_all(conn)
    .await
}

/// The p50 jitter, loss and RTT of each call created in `[from, to)` that
/// has samples.
pub async fn call_medians(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<(f64, f64, f64)>> {
    let rows = sqlx::query!(
        r#"select percentile_cont(0.5) within group (order by q.jitter_ms) as "jitter!",
           percentile_cont(0.5) within group (order by q.packet_loss_pct) as "loss!",
           percentile_cont(0.5) within group (order by q.rtt_ms) as "rtt!"
           from quality_samples q join calls c on c.id = q.call_id
           where c.created_at >= $1 and c.created_at < $2 group by q.call_id"#,
        from,
        to,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.jitter, r.loss, r.rtt)).collect())
}

#[derive(Debug)]
pub struct Rating {
    pub score: i16,
    pub comment: Option<String>,
    pub rated_at: DateTime<Utc>,
}

/// The user's rating of the call at `at`, replacing any earlier one.
pub async fn upsert_rating(
    conn: &mut PgConnection,
    call: CallId,
    user: &UserId,
    score: i16,
    comment: Option<&str>,
    at: DateTime<Utc>,
) -> sqlx::Result<Rating> {
    sqlx::query_as!(
        Rating,
        "insert into call_ratings (call_id, user_id, score, comment, rated_at) values ($1, $2, $3, $4, $5) \
         on conflict (call_id, user_id) do update set score = excluded.score, \
         comment = excluded.comment, rated_at = excluded.rated_at returning score, comment, rated_at",
        call.0,
        user.as_str(),
        score,
        comment,
        at,
    )
    .fetch_one(conn)
    .await
}
