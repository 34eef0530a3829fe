//! Rate limits shared by every instance, kept in Redis and timed by Redis's
//! clock (so instances' clocks do not matter).
//!
//! - Call starts per user: at most N in any 60 s (a sliding log).
//! - Video requests per call: at most N in any window (a sliding log).
//! - Requests per user: a bucket of N that refills at N per minute (GCRA).
//! - Requests without valid credentials per client address: the same, with
//!   `RATE_LIMIT_UNAUTHENTICATED_PER_MINUTE` (an IPv6 address counts by its
//!   /64, what one subscriber usually holds).
//!
//! When Redis does not answer (in 300 ms):
//! - call starts and requests **fail open**: calling is the product, and
//!   the database already bounds a caller to one live call at a time;
//! - video requests **fail closed** (503): the limit protects the person
//!   being asked, and the call itself goes on without video.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::LazyLock;
use std::time::Duration;

use uuid::Uuid;

use crate::infra::redis_link::RedisLink;

const TIMEOUT: Duration = Duration::from_millis(300);

/// KEYS[1] the log; ARGV limit, window (ms), a unique member. Returns 0
/// when allowed (and counted), else the milliseconds until it would be.
static SLIDING_LOG: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
",
    )
});

/// GCRA: KEYS[1] the theoretical arrival time; ARGV limit, period (ms).
/// Returns 0 when allowed, else the milliseconds until it would be.
static BUCKET: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[2])
local interval = period / tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
local allowed_at = next_tat - period
if allowed_at > now then
  return math.max(1, math.ceil(allowed_at - now))
end
-- At limits so high that the interval is below a double's precision at
-- this magnitude, next_tat - now rounds to 0, which PX refuses.
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.max(1, math.ceil(next_tat - now)))
return 0
",
    )
});

#[derive(Clone, Copy, Debug)]
pub enum Algorithm {
    SlidingLog,
    Bucket,
}

/// `Ok(None)`: allowed; `Ok(Some(wait))`: over the limit; `Err`: Redis did
/// not answer (or refused the script).
pub async fn check(
    redis: &RedisLink,
    algorithm: Algorithm,
    key: String,
    limit: u32,
    window: Duration,
) -> anyhow::Result<Option<Duration>> {
    let script = match algorithm {
        Algorithm::SlidingLog => &*SLIDING_LOG,
        Algorithm::Bucket => &*BUCKET,
    };
    let mut invocation = script.key(key);
    invocation.arg(limit).arg(window.as_millis() as u64);
    if let Algorithm::SlidingLog = algorithm {
        invocation.arg(Uuid::new_v4().simple().to_string());
    }
    let mut redis = tokio::time::timeout(TIMEOUT, redis.conn()).await??;
    let wait_ms: u64 = tokio::time::timeout(TIMEOUT, invocation.invoke_async(&mut redis)).await??;
    Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
}

/// What a client is counted by: its address, an IPv6 client by its /64.
pub fn counted_as(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

/// The client's address: with `TRUSTED_PROXY_HEADER`, the right-most entry
/// of its last occurrence (the address the trusted proxy saw: entries to
/// its left are whatever the client sent, and may be forged); without it,
/// or if the header is missing or unreadable, the connection's peer.
/// An address as a proxy header may write it, with or without a port.
pub fn parse_address(value: &str) -> Option<IpAddr> {
    value
        .parse::<IpAddr>()
        .ok()
        .or_else(|| value.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| value.trim_start_matches('[').trim_end_matches(']').parse().ok())
}

/// Counts every API request: of an authenticated user against their limit
/// (the verified user is kept in the request, so handlers do not verify
/// the token again), and any other (no token, an invalid one, a ticket)
/// against its client address's, before its handler refuses it or
/// redeems the ticket.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_with_or_without_a_port() {
        let v4: IpAddr = "192.0.2.1".parse().expect("ip");
        let v6: IpAddr = "2001:db8::1".parse().expect("ip");
        assert_eq!(parse_address("192.0.2.1"), Some(v4));
        assert_eq!(parse_address("192.0.2.1:4711"), Some(v4));
        assert_eq!(parse_address("2001:db8::1"), Some(v6));
        assert_eq!(parse_address("[2001:db8::1]:4711"), Some(v6));
        assert_eq!(parse_address("[2001:db8::1]"), Some(v6));
        assert_eq!(parse_address("unknown"), None);
    }

    #[test]
    fn ipv6_clients_count_by_their_slash_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let same_subnet: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(counted_as(one), counted_as(same_subnet));
        assert_ne!(counted_as(one), counted_as(other));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(counted_as(mapped), "192.0.2.1".parse::<IpAddr>().expect("ip"));
    }
}
