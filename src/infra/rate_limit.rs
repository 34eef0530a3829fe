//! Rate limits shared by every instance, kept in Redis and timed by Redis's
//! clock (so instances' clocks do not matter).
//!
//! - Call starts per user: at most N in any 60 s (a sliding log).
//! - Video requests per call: at most N in any window (a sliding log).
//! - Requests per user: a bucket of N that refills at N per minute (GCRA).
//! - Requests without valid credentials per client address: the same, with
//!   `RATE_LIMIT_UNAUTHENTICATED_PER_MINUTE` (an IPv6 address counts by its
//!   /64, what one subscriber usually holds); tickets that open no event
//!   stream in a bucket of their own of the same size.
//! - LiveKit webhooks refused for their signature, per client address, in
//!   this instance's memory (`LocalBuckets`).
//!
//! Requests per user go through a lease (`Leases`): an instance takes a few
//! of the user's tokens from the shared bucket in one round trip and spends
//! them locally; a lease lasts at most `LEASE_TTL`, its size doubles while
//! the user uses it up in time, and what is left of an expired lease is
//! given back with the next one. Every token spent is taken from the shared
//! bucket first, so the limit is as strict as without leases (stricter by
//! the tokens of a lease not given back: at most `max_lease` per user and
//! instance, and only until the bucket refills); a busy user costs one Redis
//! round trip per lease instead of one per request.
//!
//! When Redis does not answer (in `RATE_LIMIT_REDIS_TIMEOUT_MS`, 300 ms by
//! default):
//! - call starts and requests **fail open**: calling is the product, and
//!   the database already bounds a caller to one live call at a time;
//! - video requests **fail closed** (503): the limit protects the person
//!   being asked, and the call itself goes on without video.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::infra::redis_link::RedisLink;

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

/// GCRA leases: KEYS[1] the theoretical arrival time; ARGV limit, period
/// (ms), tokens wanted, tokens given back. Returns {granted, wait}: granted
/// tokens (at most the wanted ones), or 0 and the milliseconds until one
/// would be. With 1 wanted and none given back it is `BUCKET`.
static LEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[2])
local interval = period / tonumber(ARGV[1])
local want = tonumber(ARGV[3])
local refund = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) - refund * interval
if tat < now then tat = now end
local grant = math.min(want, math.floor((now + period - tat) / interval))
if grant < 1 then
  if refund > 0 then
    redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.max(1, math.ceil(tat - now)))
  end
  return {0, math.max(1, math.ceil(tat + interval - period - now))}
end
local next_tat = tat + grant * interval
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.max(1, math.ceil(next_tat - now)))
return {grant, 0}
",
    )
});

/// How long an instance may keep tokens of a lease before giving back what
/// is left.
pub const LEASE_TTL: Duration = Duration::from_secs(1);
/// Above this many users holding a lease, expired leases are dropped.
const MAX_HELD: usize = 100_000;

/// This instance's leases of per-user buckets (see the module's comment).
#[derive(Default)]
pub struct Leases {
    held: Mutex<HashMap<String, Lease>>,
}

#[derive(Clone, Copy, Debug)]
struct Lease {
    left: u32,
    size: u32,
    until: Instant,
}

/// The largest lease of a limit: a twentieth of it, 1 to 64 tokens.
pub fn max_lease(limit: u32) -> u32 {
    (limit / 20).clamp(1, 64)
}

impl Leases {
    /// Spends a token of a held lease; otherwise what to ask Redis for:
    /// (tokens wanted, tokens given back).
    fn spend_local(&self, key: &str, limit: u32, now: Instant) -> Result<(), (u32, u32)> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.get_mut(key) {
            Some(lease) if lease.until > now && lease.left > 0 => {
                lease.left -= 1;
                Ok(())
            }
            Some(lease) => {
                // Used up in time: twice as many; expired: start small again.
                let want = if lease.left == 0 && lease.until > now {
                    (lease.size * 2).min(max_lease(limit))
                } else {
                    1
                };
                let refund = lease.left;
                lease.left = 0;
                Err((want, refund))
            }
            None => Err((1, 0)),
        }
    }

    fn hold(&self, key: &str, granted: u32, now: Instant) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.len() >= MAX_HELD {
            // Dropping an expired lease loses only its leftovers, which the
            // bucket refills.
            held.retain(|_, lease| lease.until > now);
        }
        // One of the granted tokens is this request's.
        let lease = Lease { left: granted.saturating_sub(1), size: granted.max(1), until: now + LEASE_TTL };
        held.insert(key.to_owned(), lease);
    }

    /// Gives back tokens that could not be held (Redis answered, but the
    /// request failed after).
    fn put_back(&self, key: &str, refund: u32) {
        if refund == 0 {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lease) = held.get_mut(key) {
            lease.left += refund;
        }
    }
}

/// Counts one request against a per-user bucket of `limit` per `window`,
/// through this instance's lease (`Leases`): `Ok(None)` allowed,
/// `Ok(Some(wait))` over the limit, `Err` Redis did not answer within
/// `timeout`.
pub async fn check_leased(
    redis: &RedisLink,
    leases: &Leases,
    key: String,
    (limit, window): (u32, Duration),
    timeout: Duration,
) -> anyhow::Result<Option<Duration>> {
    let now = Instant::now();
    let (want, refund) = match leases.spend_local(&key, limit, now) {
        Ok(()) => return Ok(None),
        Err(ask) => ask,
    };
    let mut invocation = LEASE.key(&key);
    invocation.arg(limit).arg(window.as_millis() as u64).arg(want).arg(refund);
    let answer: anyhow::Result<(u32, u64)> = async {
        let mut conn = tokio::time::timeout(timeout, redis.conn()).await??;
        Ok(tokio::time::timeout(timeout, invocation.invoke_async(&mut conn)).await??)
    }
    .await;
    match answer {
        Ok((0, wait_ms)) => Ok(Some(Duration::from_millis(wait_ms.max(1)))),
        Ok((granted, _)) => {
            leases.hold(&key, granted, now);
            Ok(None)
        }
        Err(err) => {
            // Whether Redis took the refund is unknown: keep the tokens
            // (spending them is within what was granted before).
            leases.put_back(&key, refund);
            Err(err)
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Algorithm {
    SlidingLog,
    Bucket,
}

/// `Ok(None)`: allowed; `Ok(Some(wait))`: over the limit; `Err`: Redis did
/// not answer within `timeout` (or refused the script).
pub async fn check(
    redis: &RedisLink,
    algorithm: Algorithm,
    key: String,
    (limit, window): (u32, Duration),
    timeout: Duration,
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
    let mut redis = tokio::time::timeout(timeout, redis.conn()).await??;
    let wait_ms: u64 = tokio::time::timeout(timeout, invocation.invoke_async(&mut redis)).await??;
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

/// This instance's own buckets by client address (GCRA, like `BUCKET`), for
/// a limit that must cost less than what it guards: LiveKit's webhooks
/// refused for their signature are counted here, where a Redis round trip
/// would cost more than checking the signature does.
#[derive(Default)]
pub struct LocalBuckets {
    /// When each address's bucket is next full again (its theoretical arrival time).
    tat: Mutex<HashMap<IpAddr, Instant>>,
}

impl LocalBuckets {
    /// Counts one from `client` against a bucket of `limit` refilling at
    /// `limit` per `period`: `None` if allowed, else how long until one would be.
    pub fn take(&self, client: IpAddr, (limit, period): (u32, Duration), now: Instant) -> Option<Duration> {
        let interval = period / limit.max(1);
        let client = counted_as(client);
        let mut tat = self.tat.lock().unwrap_or_else(PoisonError::into_inner);
        if tat.len() >= MAX_HELD && !tat.contains_key(&client) {
            tat.retain(|_, full_at| *full_at > now);
            if tat.len() >= MAX_HELD {
                tat.clear();
            }
        }
        let from = tat.get(&client).copied().filter(|at| *at > now).unwrap_or(now);
        let next = from + interval;
        if next > now + period {
            return Some(next - period - now);
        }
        tat.insert(client, next);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_spent_locally_until_it_is_used_up_then_it_doubles() {
        let leases = Leases::default();
        let now = Instant::now();
        assert_eq!(leases.spend_local("u", 600, now), Err((1, 0)));
        leases.hold("u", 1, now);
        // The one token was the request's own: the next asks for two.
        assert_eq!(leases.spend_local("u", 600, now), Err((2, 0)));
        leases.hold("u", 2, now);
        assert_eq!(leases.spend_local("u", 600, now), Ok(()));
        assert_eq!(leases.spend_local("u", 600, now), Err((4, 0)));
    }

    #[test]
    fn an_expired_lease_gives_back_its_leftovers_and_starts_small_again() {
        let leases = Leases::default();
        let now = Instant::now();
        leases.hold("u", 8, now);
        assert_eq!(leases.spend_local("u", 600, now), Ok(()));
        assert_eq!(leases.spend_local("u", 600, now + LEASE_TTL), Err((1, 6)));
    }

    #[test]
    fn a_lease_never_exceeds_a_twentieth_of_the_limit() {
        assert_eq!(max_lease(20), 1);
        assert_eq!(max_lease(600), 30);
        assert_eq!(max_lease(1_000_000), 64);
        let leases = Leases::default();
        let now = Instant::now();
        leases.hold("u", 30, now);
        for _ in 0..29 {
            assert_eq!(leases.spend_local("u", 600, now), Ok(()));
        }
        assert_eq!(leases.spend_local("u", 600, now), Err((30, 0)));
    }

    #[test]
    fn a_local_bucket_lets_its_size_through_then_one_per_interval_per_address() {
        let buckets = LocalBuckets::default();
        let (now, minute) = (Instant::now(), Duration::from_secs(60));
        let (one, two): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().expect("ip"), "192.0.2.2".parse().expect("ip"));
        for _ in 0..3 {
            assert_eq!(buckets.take(one, (3, minute), now), None);
        }
        assert_eq!(buckets.take(one, (3, minute), now), Some(Duration::from_secs(20)));
        assert_eq!(buckets.take(two, (3, minute), now), None, "another address has its own");
        assert_eq!(buckets.take(one, (3, minute), now + Duration::from_secs(20)), None, "refilled by one");
        assert!(buckets.take(one, (3, minute), now + Duration::from_secs(20)).is_some());
    }

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
