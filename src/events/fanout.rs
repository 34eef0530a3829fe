//! PostgreSQL → Redis → this instance's sockets.

use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::WireEvent;
use crate::state::AppState;

/// The one Redis channel; each message is `<user id>\n<event JSON>`, so an
/// instance skips events for users it does not hold without parsing them.
pub const CHANNEL: &str = "callgate:events";
/// PostgreSQL NOTIFY channels, raised at commit by triggers (migration 0003).
pub const USER_EVENTS_NOTIFY: &str = "callgate_user_events";
pub const APP_WEBHOOKS_NOTIFY: &str = "callgate_app_webhooks";

const BATCH: usize = 256;
/// Unpublished rows (a missed wake-up, a crash between commit and publish,
/// Redis down) are looked for this often.
const SWEEP: Duration = Duration::from_secs(1);
const REDIS_PING: Duration = Duration::from_secs(5);
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);
/// Replayed to local connections after the subscription was lost: events
/// may have been published while it was down (or before we noticed).
const REPLAY_MARGIN: Duration = Duration::from_secs(15);
const REPLAY_LIMIT: i64 = 10_000;

#[derive(sqlx::FromRow)]
struct EventRow {
    id: Uuid,
    user_id: String,
    call_id: Option<Uuid>,
    #[sqlx(rename = "type")]
    kind: String,
    data: Value,
    created_at: DateTime<Utc>,
}

impl EventRow {
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string(&WireEvent {
            id: self.id,
            kind: &self.kind,
            call_id: self.call_id,
            at: self.created_at,
            data: &self.data,
        })
    }
}

/// Turns PostgreSQL notifications into nudges for the publisher and the
/// app webhook workers. After every (re)connection both are nudged, since
/// notifications may have been missed meanwhile.
pub async fn listen(app: AppState, stop: CancellationToken) {
    loop {
        match PgListener::connect_with(&app.db).await {
            Ok(mut listener) => {
                if let Err(err) = listener.listen_all([USER_EVENTS_NOTIFY, APP_WEBHOOKS_NOTIFY]).await {
                    tracing::warn!(error = %err, "could not LISTEN for new events");
                } else {
                    wake_all(&app);
                    loop {
                        let received = tokio::select! {
                            _ = stop.cancelled() => return,
                            received = listener.try_recv() => received,
                        };
                        match received {
                            Ok(Some(n)) if n.channel() == USER_EVENTS_NOTIFY => {
                                app.events.publish_wake.notify_one();
                            }
                            Ok(Some(_)) => app.events.outbox_wake.notify_waiters(),
                            // The connection was lost; the next call reconnects.
                            Ok(None) => wake_all(&app),
                            Err(err) => {
                                tracing::warn!(error = %err, "the LISTEN connection failed");
                                break;
                            }
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not connect to LISTEN for new events"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SWEEP) => {}
        }
    }
}

fn wake_all(app: &AppState) {
    app.events.publish_wake.notify_one();
    app.events.outbox_wake.notify_waiters();
}

/// Publishes committed user events to Redis, promptly after each commit
/// and in a periodic sweep.
pub async fn publish(app: AppState, stop: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let wake = app.events.publish_wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        match publish_batch(&app).await {
            Ok(n) => {
                failures = 0;
                if n == BATCH {
                    continue;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = &mut wake => {}
                    _ = tokio::time::sleep(SWEEP) => {}
                }
            }
            Err(err) => {
                // Nudges are ignored while failing: retry at sweep pace.
                failures += 1;
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(error = format!("{err:#}"), failures, "could not publish events");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(SWEEP) => {}
                }
            }
        }
    }
}

/// One batch: lock unpublished rows (other instances skip them), publish,
/// mark. If Redis fails the transaction rolls back and the rows wait for
/// the next try; if the commit fails after publishing they go out twice.
async fn publish_batch(app: &AppState) -> anyhow::Result<usize> {
    let mut tx = app.db.begin().await?;
    let rows: Vec<EventRow> = sqlx::query_as(
        "select id, user_id, call_id, type, data, created_at from user_events \
         where published_at is null order by created_at, seq limit $1 for update skip locked",
    )
    .bind(BATCH as i64)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    for row in &rows {
        pipe.publish(CHANNEL, format!("{}\n{}", row.user_id, row.json()?)).ignore();
    }
    let mut redis = tokio::time::timeout(REDIS_TIMEOUT, app.redis.conn()).await??;
    tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<()>(&mut redis)).await??;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    sqlx::query("update user_events set published_at = now() where id = any($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows.len())
}

/// Subscribes to the Redis channel and hands each event to the local
/// connections of its user; re-subscribes after failures and then replays
/// what local users may have missed.
pub async fn subscribe(app: AppState, stop: CancellationToken) {
    let mut lost_at: Option<DateTime<Utc>> = None;
    let mut failures = 0u32;
    loop {
        match tokio::time::timeout(REDIS_TIMEOUT, connect(&app)).await {
            Ok(Ok(pubsub)) => {
                failures = 0;
                app.events.set_subscribed(true);
                if let Some(since) = lost_at.take() {
                    replay(&app, since).await;
                }
                pump(&app, pubsub, &stop).await;
                app.events.set_subscribed(false);
                if stop.is_cancelled() {
                    return;
                }
                tracing::warn!("lost the Redis event subscription; re-subscribing");
                lost_at = Some(Utc::now());
            }
            Ok(Err(err)) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(error = %err, "could not subscribe to events in Redis");
                }
            }
            Err(_) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!("timed out subscribing to events in Redis");
                }
            }
        }
        if failures > 0 && lost_at.is_none() && !app.events.hub.is_empty() {
            lost_at = Some(Utc::now());
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SWEEP) => {}
        }
    }
}

async fn connect(app: &AppState) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = app.redis.client().get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    Ok(pubsub)
}

/// Runs until the subscription fails (a ping goes unanswered) or `stop`.
async fn pump(app: &AppState, pubsub: redis::aio::PubSub, stop: &CancellationToken) {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(REDIS_PING);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            message = stream.next() => match message {
                Some(message) => dispatch(app, message.get_payload_bytes()),
                None => return,
            },
            _ = ping.tick() => {
                let pong = tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

fn dispatch(app: &AppState, payload: &[u8]) {
    let Some(split) = payload.iter().position(|b| *b == b'\n') else { return };
    let (user, body) = (&payload[..split], &payload[split + 1..]);
    let Ok(user) = std::str::from_utf8(user) else { return };
    if !app.events.hub.has(user) {
        return;
    }
    match Utf8Bytes::try_from(body.to_vec()) {
        Ok(message) => {
            app.events.hub.deliver(user, &message);
        }
        Err(_) => tracing::warn!("an event in Redis is not UTF-8"),
    }
}

async fn replay(app: &AppState, since: DateTime<Utc>) {
    let users = app.events.hub.users();
    if users.is_empty() {
        return;
    }
    let since = since - chrono::Duration::from_std(REPLAY_MARGIN).unwrap_or_default();
    let rows: sqlx::Result<Vec<EventRow>> = sqlx::query_as(
        "select id, user_id, call_id, type, data, created_at from user_events \
         where user_id = any($1) and created_at >= $2 and published_at is not null \
         order by created_at, seq limit $3",
    )
    .bind(&users)
    .bind(since)
    .bind(REPLAY_LIMIT)
    .fetch_all(&app.db)
    .await;
    match rows {
        Ok(rows) => {
            tracing::info!(events = rows.len(), "replaying events after a lost subscription");
            for row in rows {
                if let Ok(json) = row.json() {
                    app.events.hub.deliver(&row.user_id, &Utf8Bytes::from(json));
                }
            }
        }
        Err(err) => tracing::warn!(error = %err, "could not replay events"),
    }
}
