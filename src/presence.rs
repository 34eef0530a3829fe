//! Presence: a user is online while they have an open event stream on any
//! instance.
//!
//! Each user has a sorted set in Redis: one member per connection
//! (`<instance>:<connection>`), scored with the time it stops counting.
//! Every instance re-scores its own connections every third of
//! `PRESENCE_TTL`, so the connections of a crashed instance stop counting
//! after at most `PRESENCE_TTL`, and the key itself expires once nobody
//! refreshes it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::UserId;
use crate::error::{ApiError, Code};
use crate::state::AppState;

const TIMEOUT: Duration = Duration::from_millis(500);

pub(crate) fn key(user: &str) -> String {
    format!("callgate:presence:{user}")
}

pub(crate) fn member(app: &AppState, conn: u64) -> String {
    format!("{}:{conn}", app.events.instance)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ttl_ms(app: &AppState) -> i64 {
    app.config.events.presence_ttl.as_millis() as i64
}

async fn run(app: &AppState, pipe: redis::Pipeline) -> anyhow::Result<()> {
    let mut redis = tokio::time::timeout(TIMEOUT, app.redis.conn()).await??;
    tokio::time::timeout(TIMEOUT, pipe.query_async::<()>(&mut redis)).await??;
    Ok(())
}

fn add_to(pipe: &mut redis::Pipeline, app: &AppState, user: &str, conn: u64) {
    let (now, ttl) = (now_ms(), ttl_ms(app));
    let key = key(user);
    pipe.zadd(&key, member(app, conn), now + ttl).ignore();
    pipe.zrembyscore(&key, "-inf", now).ignore();
    pipe.pexpire(&key, ttl).ignore();
}

/// Marks a new connection of `user` online; best effort (presence is an
/// optimisation of who gets rung, never a reason to refuse a stream).
pub async fn connected(app: &AppState, user: &str, conn: u64) {
    let mut pipe = redis::pipe();
    add_to(&mut pipe, app, user, conn);
    if let Err(err) = run(app, pipe).await {
        tracing::warn!(error = format!("{err:#}"), "could not record presence");
    }
}

pub async fn disconnected(app: &AppState, user: &str, conn: u64) {
    let mut pipe = redis::pipe();
    pipe.zrem(key(user), member(app, conn)).ignore();
    if let Err(err) = run(app, pipe).await {
        tracing::debug!(error = format!("{err:#}"), "could not clear presence; it expires");
    }
}

/// Keeps this instance's connections online while they are open.
pub async fn refresh(app: AppState, stop: CancellationToken) {
    let every = app.config.events.presence_ttl / 3;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let conns = app.events.hub.connections();
        for chunk in conns.chunks(1000) {
            let mut pipe = redis::pipe();
            for (user, conn) in chunk {
                add_to(&mut pipe, &app, user, *conn);
            }
            if let Err(err) = run(&app, pipe).await {
                tracing::warn!(error = format!("{err:#}"), "could not refresh presence");
                break;
            }
        }
    }
}

pub async fn is_online(app: &AppState, user: &str) -> anyhow::Result<bool> {
    let mut redis = tokio::time::timeout(TIMEOUT, app.redis.conn()).await??;
    let count: i64 = tokio::time::timeout(
        TIMEOUT,
        redis::cmd("ZCOUNT").arg(key(user)).arg(now_ms()).arg("+inf").query_async(&mut redis),
    )
    .await??;
    Ok(count > 0)
}

/// With `REQUIRE_CALLEE_ONLINE`, a call rings only if at least one callee
/// has an open event stream (the others are rung too: they may come online
/// while it rings). If Redis cannot say, the call goes ahead.
pub async fn require_callee_online(app: &AppState, callees: &[UserId]) -> Result<(), ApiError> {
    for callee in callees {
        match is_online(app, callee.as_str()).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(error = format!("{err:#}"), "presence unknown; ringing anyway");
                return Ok(());
            }
        }
    }
    Err(ApiError::conflict(Code::CalleeOffline, "the callee is not online"))
}
