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
use crate::infra::redis_link::{RedisLink, user_key, user_tag};

const TIMEOUT: Duration = Duration::from_millis(500);

/// KEYS[1] the user's presence; ARGV the member, now (ms), the lifetime (ms).
const ADD: &str = "redis.call('ZADD', KEYS[1], ARGV[2] + ARGV[3], ARGV[1]) \
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2]) \
redis.call('PEXPIRE', KEYS[1], ARGV[3])";

/// This instance's view of presence in Redis.
#[derive(Clone)]
pub struct Presence {
    redis: RedisLink,
    /// Names this instance's connections in shared state.
    instance: String,
    ttl: Duration,
    clock: SharedClock,
}

/// In the user's slot, beside their stream set (`streams`).
pub fn key(user: &str) -> String {
    user_key("callgate:presence", user)
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

    /// Counts the connection for another `PRESENCE_TTL` (one command, so a
    /// batch of many users' connections can go to many cluster slots).
    fn add(&self, user: &str, conn: u64) -> redis::Cmd {
        let (now, ttl) = (self.now_ms(), self.ttl.as_millis() as i64);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ADD).arg(1).arg(key(user)).arg(self.member(conn)).arg(now).arg(ttl);
        cmd
    }

    /// Marks a new connection of `user` online; best effort (presence is an
    /// optimisation of who gets rung, never a reason to refuse a stream).
    pub async fn connected(&self, user: &str, conn: u64) {
        let mut pipe = redis::pipe();
        pipe.add_command(self.add(user, conn)).ignore();
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

    /// Re-scores these connections of this instance (a thousand at a time).
    pub async fn refresh(&self, conns: &[(String, u64)]) -> anyhow::Result<()> {
        for chunk in conns.chunks(1000) {
            let commands = chunk.iter().map(|(user, conn)| (user_tag(user), self.add(user, *conn))).collect();
            let mut redis = tokio::time::timeout(TIMEOUT, self.redis.conn()).await??;
            tokio::time::timeout(TIMEOUT * 4, redis.run_all(commands)).await??;
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
