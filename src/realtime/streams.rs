//! Per-user bounds on event streams, across instances:
//! - at most `EVENTS_MAX_STREAMS_PER_USER` open at once; opening one more
//!   closes the oldest (close code [`TOO_MANY`]), on whichever instance it is;
//! - none outlives the user token that opened it (close code [`EXPIRED`];
//!   for a ticket, the token that bought the ticket).
//!
//! Each user has a sorted set in Redis of their open streams
//! (`<instance>:<connection>`, as in presence), scored with the time each
//! opened. Opening a stream adds it, forgets the streams of instances that
//! no longer vouch for them in presence (a crashed instance's), and removes
//! the oldest beyond the limit, announcing each on the user's event channel
//! (`bus`), to which the instance that holds it is subscribed. A close
//! announced while that instance's subscription is down is missed; the
//! stream still ends with its token.

use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};

use crate::infra::redis_link::{RedisLink, user_key};
use crate::realtime::Events;
use crate::realtime::bus;
use crate::realtime::hub::Reason;
use crate::realtime::presence::{self, Presence};

/// WebSocket close code: the token that opened the stream has expired.
pub const EXPIRED: u16 = 4001;
/// WebSocket close code: the user opened a newer stream beyond the limit.
pub const TOO_MANY: u16 = 4008;

const TIMEOUT: Duration = Duration::from_millis(500);
/// A user's set outlives their last opened stream by this much.
const KEY_TTL: Duration = Duration::from_secs(86_400);

/// In the user's slot, beside their presence and their event channel.
fn key(user: &str) -> String {
    user_key("callgate:streams", user)
}

/// KEYS[1] the user's streams, KEYS[2] their presence, KEYS[3] their event
/// channel; ARGV the new member, the limit, the set's lifetime (ms), the
/// publish command (`PUBLISH`, or `SPUBLISH` on a cluster), the close
/// notice's prefix. Returns how many streams were closed.
static ADMIT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local alive = redis.call('ZSCORE', KEYS[2], member)
  if member ~= ARGV[1] and (not alive or tonumber(alive) < now) then
    redis.call('ZREM', KEYS[1], member)
  end
end
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if over <= 0 then return 0 end
local oldest = redis.call('ZRANGE', KEYS[1], 0, over - 1)
for _, member in ipairs(oldest) do
  redis.call('ZREM', KEYS[1], member)
  redis.call(ARGV[4], KEYS[3], ARGV[5] .. member)
end
return #oldest
",
    )
});

/// Counts a new stream of `user`; the oldest beyond the limit are closed.
/// Best effort: if Redis does not answer, the stream opens uncounted.
pub async fn admit(redis: &RedisLink, presence: &Presence, limit: u32, user: &str, conn: u64) {
    if limit == 0 {
        return;
    }
    let mut invocation = ADMIT.key(key(user));
    invocation.key(presence::key(user)).key(bus::channel(user));
    invocation.arg(presence.member(conn)).arg(limit).arg(KEY_TTL.as_millis() as u64);
    invocation.arg(redis.publish_command()).arg(bus::CLOSE);
    let admitted = async {
        let mut redis = tokio::time::timeout(TIMEOUT, redis.conn()).await??;
        let closed: u64 = tokio::time::timeout(TIMEOUT, invocation.invoke_async(&mut redis)).await??;
        anyhow::Ok(closed)
    };
    match admitted.await {
        Ok(0) => {}
        Ok(closed) => {
            tracing::info!(user_id = user, closed, "closing the oldest event streams: too many open")
        }
        Err(err) => tracing::warn!(error = format!("{err:#}"), "could not count the event stream"),
    }
}

pub async fn closed(redis: &RedisLink, presence: &Presence, user: &str, conn: u64) {
    let forget = async {
        let mut redis = tokio::time::timeout(TIMEOUT, redis.conn()).await??;
        let member = presence.member(conn);
        tokio::time::timeout(
            TIMEOUT,
            redis::cmd("ZREM").arg(key(user)).arg(member).query_async::<()>(&mut redis),
        )
        .await??;
        anyhow::Ok(())
    };
    if let Err(err) = forget.await {
        tracing::debug!(error = format!("{err:#}"), "could not forget the event stream; a later one will");
    }
}

/// Handles a close notice: ends the stream if it is here.
pub fn dispatch_close(events: &Events, user: &str, instance: &str, conn: u64) {
    if instance == events.instance {
        events.hub.end(user, conn, Reason::TooMany);
    }
}

/// The `exp` of a user token **that has been verified already** (the
/// signature is not checked here).
pub fn expiry_of(token: &str) -> Option<DateTime<Utc>> {
    let payload = token.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    DateTime::from_timestamp(exp.clamp(0.0, 1e11) as i64, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_is_read_from_the_token_payload() {
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"sub":"u","exp":1900000000}"#);
        let token = format!("e30.{payload}.sig");
        assert_eq!(expiry_of(&token), DateTime::from_timestamp(1_900_000_000, 0));
        assert_eq!(expiry_of("not-a-jwt"), None);
        let no_exp = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"sub":"u"}"#);
        assert_eq!(expiry_of(&format!("e30.{no_exp}.sig")), None);
    }
}
