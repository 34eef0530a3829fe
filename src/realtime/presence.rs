//! Presence: a user is online while they have an open event stream on any
//! instance.
//!
//! Each user has a sorted set in Redis: one member per connection
//! (`<instance>:<connection>`), scored with the time it stops counting.
//! Every instance re-scores its own connections every third of
//! `PRESENCE_TTL` (`crate::workers::presence`), so the connections of a
//! crashed instance stop counting after at most `PRESENCE_TTL`, and the key
//! itself expires once nobody refreshes it.

use std::time::Duration;

use crate::clock::SharedClock;
use crate::infra::redis_link::RedisLink;

const TIMEOUT: Duration = Duration::from_millis(500);

/// This instance's view of presence in Redis.
#[derive(Clone)]
pub struct Presence {
    redis: RedisLink,
    /// Names this instance's connections in shared state.
    instance: String,
    ttl: Duration,
    clock: SharedClock,
}

pub fn key(user: &str) -> String {
    format!("callgate:presence:{user}")
}

impl Presence {
    pub fn new(redis: RedisLink, instance: String, ttl: Duration, clock: SharedClock) -> Self {
        Presence { redis, instance, ttl, clock }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The member that stands for one connection of this instance.
    pub fn member(&self, conn: u64) -> String {
        format!("{}:{conn}", self.instance)
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    async fn run(&self, pipe: redis::Pipeline) -> anyhow::Result<()> {
        let mut redis = tokio::time::timeout(TIMEOUT, self.redis.conn()).await??;
        tokio::time::timeout(TIMEOUT, pipe.query_async::<()>(&mut redis)).await??;
        Ok(())
    }

    fn add_to(&self, pipe: &mut redis::Pipeline, user: &str, conn: u64) {
        let (now, ttl) = (self.now_ms(), self.ttl.as_millis() as i64);
        let key = key(user);
        pipe.zadd(&key, self.member(conn), now + ttl).ignore();
        pipe.zrembyscore(&key, "-inf", now).ignore();
        pipe.pexpire(&key, ttl).ignore();
    }

    /// Marks a new connection of `user` online; best effort (presence is an
    /// optimisation of who gets rung, never a reason to refuse a stream).
    pub async fn connected(&self, user: &str, conn: u64) {
        let mut pipe = redis::pipe();
        self.add_to(&mut pipe, user, conn);
        if let Err(err) = self.run(pipe).await {
            tracing::warn!(error = format!("{err:#}"), "could not record presence");
        }
    }

    pub async fn disconnected(&self, user: &str, conn: u64) {
        let mut pipe = redis::pipe();
        pipe.zrem(key(user), self.member(conn)).ignore();
        if let Err(err) = self.run(pipe).await {
            tracing::debug!(error = format!("{err:#}"), "could not clear presence; it expires");
        }
    }

    /// Re-scores these connections of this instance (a thousand per round trip).
    pub async fn refresh(&self, conns: &[(String, u64)]) -> anyhow::Result<()> {
        for chunk in conns.chunks(1000) {
            let mut pipe = redis::pipe();
            for (user, conn) in chunk {
                self.add_to(&mut pipe, user, *conn);
            }
            self.run(pipe).await?;
        }
        Ok(())
    }

    pub async fn is_online(&self, user: &str) -> anyhow::Result<bool> {
        let mut redis = tokio::time::timeout(TIMEOUT, self.redis.conn()).await??;
        let count: i64 = tokio::time::timeout(
            TIMEOUT,
            redis::cmd("ZCOUNT").arg(key(user)).arg(self.now_ms()).arg("+inf").query_async(&mut redis),
        )
        .await??;
        Ok(count > 0)
    }
}
