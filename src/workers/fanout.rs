//! PostgreSQL → Redis → this instance's sockets.

use std::time::Duration;

use crate::realtime::hub::Frame as Utf8Bytes;
use chrono::{DateTime, Utc};
use redis::{PushInfo, PushKind};
use sqlx::postgres::PgListener;
use std::convert::Infallible;
use tokio_util::sync::CancellationToken;

use crate::calls::Core;
use crate::infra::redis_link::user_tag;
use crate::realtime::WireEvent;
use crate::realtime::bus::{self, Message, Subscriber};
use crate::store::events::UserEvent as EventRow;
use crate::store::{self, job_pool};

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

/// One batch: unpublished rows taken and marked (one statement), published,
/// committed. If Redis fails the transaction rolls back and the rows wait
/// for the next try; if the commit fails after publishing they go out twice.
///
/// Every instance publishes, but a user's events only ever by one at a time:
/// a row is taken only with a transaction-scoped advisory lock on its user
/// (two publishers splitting one user's rows would let them overtake each
/// other). Rows of a user locked elsewhere are left to the holder, which
/// heard the same NOTIFY and looks again once done. Whoever gets there first
/// publishes, so a busy or stalled instance delays nobody else's events.
///
/// A session in a transaction hears of commits only once it ends, so what
/// was heard by the time `begin` has answered came from commits before this
/// batch's read: the batch covers them, and they need no batch of their own.
async fn publish_batch(app: &Core, conn: &mut PgListener) -> anyhow::Result<usize> {
    // The listener's connection has no transaction API of its own.
    store::events::begin_on(conn).await?;
    while let Some(heard) = conn.next_buffered() {
        if heard.channel() == APP_WEBHOOKS_NOTIFY {
            app.events.outbox_wake.notify_waiters();
        }
    }
    let published = publish_in_transaction(app, conn).await;
    let commit = matches!(published, Ok(n) if n > 0);
    let ended = store::events::end_on(conn, commit).await;
    let published = published?;
    ended?;
    Ok(published)
}

async fn publish_in_transaction(app: &Core, conn: &mut PgListener) -> anyhow::Result<usize> {
    let rows = store::events::claim_unpublished(conn, USER_LOCKS, BATCH as i64).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let publish = app.redis.publish_command();
    let mut commands = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut cmd = redis::cmd(publish);
        cmd.arg(bus::channel(&row.user_id)).arg(row.json()?);
        commands.push((user_tag(&row.user_id), cmd));
    }
    let mut redis = tokio::time::timeout(REDIS_TIMEOUT, app.redis.conn()).await??;
    tokio::time::timeout(REDIS_TIMEOUT, redis.run_all(commands)).await??;
    Ok(rows.len())
}

/// Follows the channels of the users with a stream here (and no others)
/// and hands each message to their connections; after a lost subscription,
/// connects again, follows them all again and replays what they may have
/// missed.
pub async fn subscribe(app: Core, stop: CancellationToken) {
    let mut lost_at: Option<DateTime<Utc>> = None;
    let mut failures = 0u32;
    loop {
        let lost = CancellationToken::new();
        let connected = async {
            let mut subscriber =
                Subscriber::connect(app.redis.target(), on_push(app.clone(), lost.clone())).await?;
            follow_everyone(&app, &mut subscriber).await?;
            redis::RedisResult::Ok(subscriber)
        };
        match tokio::time::timeout(REDIS_TIMEOUT * 2, connected).await {
            Ok(Ok(mut subscriber)) => {
                failures = 0;
                app.events.set_subscribed(true);
                if let Some(since) = lost_at.take() {
                    replay(&app, since).await;
                }
                serve_channels(&app, &mut subscriber, &lost, &stop).await;
                app.events.lost_all();
                if stop.is_cancelled() {
                    return;
                }
                tracing::warn!("lost the Redis event subscription; re-subscribing");
                lost_at = Some(app.clock.now());
            }
            failed => {
                app.events.lost_all();
                failures += 1;
                if failures == 1 || failures.is_multiple_of(60) {
                    match failed {
                        Ok(Err(err)) => {
                            tracing::warn!(error = %err, "could not subscribe to events in Redis")
                        }
                        _ => tracing::warn!("timed out subscribing to events in Redis"),
                    }
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

/// What the subscription connection does with each push, on its own task:
/// a message goes to the local connections of its user (never waiting: see
/// `hub`); the news that the connection is gone ends [`serve_channels`].
fn on_push(app: Core, lost: CancellationToken) -> impl Fn(PushInfo) -> Result<(), Infallible> + Send + Sync {
    move |push| {
        if push.kind == PushKind::Disconnection {
            lost.cancel();
        } else if let Some((channel, payload)) = bus::message_of(&push) {
            app.events.count_received();
            match bus::decode(channel, payload) {
                Some(Message::Event { user, body }) => deliver(&app, user, body),
                Some(Message::Close { user, instance, conn }) => {
                    crate::realtime::streams::dispatch_close(&app.events, user, instance, conn)
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// A fresh connection's first round: every user with a stream here.
async fn follow_everyone(app: &Core, subscriber: &mut Subscriber) -> redis::RedisResult<()> {
    let (round, _) = app.events.hub.take_interest();
    let users = app.events.hub.users();
    subscriber.follow(&users).await?;
    for user in &users {
        app.events.set_following(user, true);
    }
    app.events.round_done(round);
    Ok(())
}

/// Follows and leaves users' channels as their streams here come and go,
/// until the connection is lost (or stops answering pings) or `stop`.
async fn serve_channels(
    app: &Core,
    subscriber: &mut Subscriber,
    lost: &CancellationToken,
    stop: &CancellationToken,
) {
    let mut ping = tokio::time::interval(REDIS_PING);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = lost.cancelled() => return,
            _ = app.events.hub.interest_wake.notified() => {
                if let Err(err) = round(app, subscriber).await {
                    tracing::warn!(error = %err, "could not follow or leave event channels");
                    return;
                }
            }
            _ = ping.tick() => {
                if !matches!(tokio::time::timeout(PING_PATIENCE, subscriber.ping()).await, Ok(Ok(()))) {
                    return;
                }
            }
        }
    }
}

async fn round(app: &Core, subscriber: &mut Subscriber) -> redis::RedisResult<()> {
    let (round, users) = app.events.hub.take_interest();
    let (mut follow, mut leave) = (Vec::new(), Vec::new());
    for user in users {
        match (app.events.hub.has(&user), app.events.is_following(&user)) {
            (true, false) => follow.push(user),
            (false, true) => leave.push(user),
            _ => {}
        }
    }
    if !follow.is_empty() {
        subscriber.follow(&follow).await?;
        for user in &follow {
            app.events.set_following(user, true);
        }
    }
    if !leave.is_empty() {
        // Not following from here on even if the answer never comes.
        for user in &leave {
            app.events.set_following(user, false);
        }
        subscriber.unfollow(&leave).await?;
    }
    app.events.round_done(round);
    Ok(())
}

fn deliver(app: &Core, user: &str, body: &[u8]) {
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
