//! PostgreSQL → Redis → this instance's sockets.

use std::time::Duration;

use crate::realtime::hub::Frame as Utf8Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::calls::Core;
use crate::realtime::WireEvent;
use crate::store::events::UserEvent as EventRow;
use crate::store::{self, job_pool};

/// The one Redis channel; each message is `<user id>\n<event JSON>`, so an
/// instance skips events for users it does not hold without parsing them.
pub const CHANNEL: &str = "callgate:events";
/// PostgreSQL NOTIFY channels, raised at commit by triggers (migration 0003).
pub const USER_EVENTS_NOTIFY: &str = "callgate_user_events";
pub const APP_WEBHOOKS_NOTIFY: &str = "callgate_app_webhooks";

const BATCH: usize = 256;
/// The advisory lock space of per-user publishing ("cgev"); the other key
/// is a hash of the user id.
const USER_LOCKS: i32 = 0x6367_6576;
/// Unpublished rows (a missed wake-up, a crash between commit and publish,
/// Redis down) are looked for this often.
const SWEEP: Duration = Duration::from_secs(1);
const REDIS_PING: Duration = Duration::from_secs(5);
const PING_PATIENCE: Duration = Duration::from_secs(10);
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);
/// Replayed to local connections after the subscription was lost: events
/// may have been published while it was down (or before we noticed).
const REPLAY_MARGIN: Duration = Duration::from_secs(15);
const REPLAY_LIMIT: i64 = 10_000;

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

/// Publishes committed user events to Redis: promptly after each commit
/// (a NOTIFY raised by the commit wakes it), and in a periodic sweep for
/// rows a wake-up missed (a crash between commit and publish, Redis down).
///
/// It runs on one connection of its own, which LISTENs and publishes, so a
/// burst of requests cannot delay events; app webhook notifications heard on
/// it are passed to the delivery workers.
pub async fn publish(app: Core, stop: CancellationToken) {
    let db = job_pool(&app.db, 1);
    let mut failures = 0u32;
    loop {
        match PgListener::connect_with(&db).await {
            Ok(mut listener) => match listener.listen_all([USER_EVENTS_NOTIFY, APP_WEBHOOKS_NOTIFY]).await {
                Ok(()) => {
                    // Notifications may have been missed while not listening.
                    app.events.outbox_wake.notify_waiters();
                    if serve(&app, &mut listener, &stop, &mut failures).await {
                        return;
                    }
                }
                Err(err) => tracing::warn!(error = %err, "could not LISTEN for new events"),
            },
            Err(err) => tracing::warn!(error = %err, "could not connect to LISTEN for new events"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SWEEP) => {}
        }
    }
}

/// Publishes and waits, until the connection fails (false) or `stop` (true).
async fn serve(app: &Core, listener: &mut PgListener, stop: &CancellationToken, failures: &mut u32) -> bool {
    loop {
        let failed = loop {
            match publish_batch(app, listener).await {
                Ok(n) if n == BATCH => continue,
                Ok(_) => {
                    *failures = 0;
                    break false;
                }
                Err(err) => {
                    *failures += 1;
                    if *failures == 1 || failures.is_multiple_of(60) {
                        let failures = *failures;
                        tracing::warn!(error = format!("{err:#}"), failures, "could not publish events");
                    }
                    break true;
                }
            }
        };
        if failed {
            // Retry at sweep pace; notifications wait in the listener, whose
            // next receive also notices (and replaces) a dead connection.
            tokio::select! {
                _ = stop.cancelled() => return true,
                _ = tokio::time::sleep(SWEEP) => {}
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return true,
            _ = tokio::time::sleep(SWEEP) => {}
            received = listener.try_recv() => match received {
                Ok(Some(n)) if n.channel() == APP_WEBHOOKS_NOTIFY => app.events.outbox_wake.notify_waiters(),
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "the LISTEN connection failed");
                    return false;
                }
            },
        }
    }
}

/// One batch: lock unpublished rows, publish, mark. If Redis fails the
/// transaction rolls back and the rows wait for the next try; if the
/// commit fails after publishing they go out twice.
///
/// Every instance publishes, but a user's events only ever by one at a time:
/// a row is taken only with a transaction-scoped advisory lock on its user
/// (two publishers splitting one user's rows would let them overtake each
/// other). Rows of a user locked elsewhere are left to the holder, which
/// heard the same NOTIFY and looks again once done. Whoever gets there first
/// publishes, so a busy or stalled instance delays nobody else's events.
async fn publish_batch(app: &Core, conn: &mut PgListener) -> anyhow::Result<usize> {
    // The listener's connection has no transaction API of its own.
    store::events::begin_on(conn).await?;
    let published = publish_in_transaction(app, conn).await;
    let commit = matches!(published, Ok(n) if n > 0);
    let ended = store::events::end_on(conn, commit).await;
    let published = published?;
    ended?;
    Ok(published)
}

async fn publish_in_transaction(app: &Core, conn: &mut PgListener) -> anyhow::Result<usize> {
    let rows = store::events::lock_unpublished(conn, USER_LOCKS, BATCH as i64).await?;
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
    store::events::mark_published(conn, &ids).await?;
    Ok(rows.len())
}

/// Subscribes to the Redis channel and hands each event to the local
/// connections of its user; re-subscribes after failures and then replays
/// what local users may have missed.
pub async fn subscribe(app: Core, stop: CancellationToken) {
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
                lost_at = Some(app.clock.now());
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
            lost_at = Some(app.clock.now());
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SWEEP) => {}
        }
    }
}

async fn connect(app: &Core) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = app.redis.client().get_async_pubsub().await?;
    pubsub.subscribe(&[CHANNEL, crate::realtime::streams::CLOSE_CHANNEL]).await?;
    Ok(pubsub)
}

/// Runs until the subscription fails or `stop`. Pings go out beside the
/// stream (a ping's answer queues behind the messages before it, which keep
/// being handed out meanwhile); one unanswered for `PING_PATIENCE` means a
/// connection that is gone without saying so.
async fn pump(app: &Core, pubsub: redis::aio::PubSub, stop: &CancellationToken) {
    let (mut sink, mut stream) = pubsub.split();
    let dead = CancellationToken::new();
    let pinger = tokio::spawn({
        let dead = dead.clone();
        async move {
            loop {
                tokio::time::sleep(REDIS_PING).await;
                let pong = tokio::time::timeout(PING_PATIENCE, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    dead.cancel();
                    return;
                }
            }
        }
    });
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = dead.cancelled() => break,
            message = stream.next() => match message {
                Some(message) if message.get_channel_name() == crate::realtime::streams::CLOSE_CHANNEL => {
                    crate::realtime::streams::dispatch_close(&app.events, message.get_payload_bytes())
                }
                Some(message) => dispatch(app, message.get_payload_bytes()),
                None => break,
            },
        }
    }
    pinger.abort();
}

fn dispatch(app: &Core, payload: &[u8]) {
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

async fn replay(app: &Core, since: DateTime<Utc>) {
    let users = app.events.hub.users();
    if users.is_empty() {
        return;
    }
    let since = since - chrono::Duration::from_std(REPLAY_MARGIN).unwrap_or_default();
    let rows = store::events::published_since(&app.db, &users, since, REPLAY_LIMIT).await;
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
