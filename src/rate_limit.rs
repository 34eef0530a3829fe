//! Rate limits shared by every instance, kept in Redis and timed by Redis's
//! clock (so instances' clocks do not matter).
//!
//! - Call starts per user: at most N in any 60 s (a sliding log).
//! - Video requests per call: at most N in any window (a sliding log).
//! - Requests per user: a bucket of N that refills at N per minute (GCRA).
//!
//! When Redis does not answer (in 300 ms):
//! - call starts and requests **fail open**: calling is the product, and
//!   the database already bounds a caller to one live call at a time;
//! - video requests **fail closed** (503): the limit protects the person
//!   being asked, and the call itself goes on without video.

use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use crate::auth::{AuthUser, bearer_in};
use crate::domain::{CallId, UserId};
use crate::error::{ApiError, Code};
use crate::state::AppState;

const TIMEOUT: Duration = Duration::from_millis(300);
const MINUTE: Duration = Duration::from_secs(60);

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
    app: &AppState,
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
    let mut redis = tokio::time::timeout(TIMEOUT, app.redis.conn()).await??;
    let wait_ms: u64 = tokio::time::timeout(TIMEOUT, invocation.invoke_async(&mut redis)).await??;
    Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
}

fn limited(what: &str, wait: Duration) -> ApiError {
    ApiError::TooManyRequests {
        code: Code::RateLimited,
        detail: format!("too many {what}; try again in {} s", wait.as_secs().max(1)),
        retry_after: wait.max(Duration::from_secs(1)),
    }
}

fn rounded_up(wait: Duration) -> Duration {
    Duration::from_secs(wait.as_millis().div_ceil(1000) as u64)
}

pub async fn call_start(app: &AppState, user: &UserId) -> Result<(), ApiError> {
    let limit = app.config.rate_limits.call_starts_per_minute;
    if limit == 0 {
        return Ok(());
    }
    match check(app, Algorithm::SlidingLog, format!("callgate:rl:calls:{user}"), limit, MINUTE).await {
        Ok(None) => Ok(()),
        Ok(Some(wait)) => Err(limited("calls started", rounded_up(wait))),
        Err(err) => {
            tracing::warn!(error = format!("{err:#}"), "call start limit unavailable; allowing");
            Ok(())
        }
    }
}

pub async fn video_request(app: &AppState, call: CallId) -> Result<(), ApiError> {
    let limits = &app.config.rate_limits;
    if limits.video_requests_per_call == 0 {
        return Ok(());
    }
    let key = format!("callgate:rl:video:{call}");
    match check(app, Algorithm::SlidingLog, key, limits.video_requests_per_call, limits.video_requests_window)
        .await
    {
        Ok(None) => Ok(()),
        Ok(Some(wait)) => Err(limited("video requests in this call", rounded_up(wait))),
        Err(err) => {
            tracing::warn!(error = format!("{err:#}"), "video request limit unavailable; refusing");
            Err(ApiError::Unavailable("rate limiter"))
        }
    }
}

async fn request(app: &AppState, user: &UserId) -> Result<(), ApiError> {
    let limit = app.config.rate_limits.requests_per_minute;
    if limit == 0 {
        return Ok(());
    }
    match check(app, Algorithm::Bucket, format!("callgate:rl:req:{user}"), limit, MINUTE).await {
        Ok(None) => Ok(()),
        Ok(Some(wait)) => Err(limited("requests", rounded_up(wait))),
        Err(err) => {
            tracing::warn!(error = format!("{err:#}"), "request limit unavailable; allowing");
            Ok(())
        }
    }
}

/// Counts every API request of an authenticated user. The verified user
/// is kept in the request, so handlers do not verify the token again;
/// requests without a valid token pass through, to be refused by their
/// handler.
pub async fn limit_requests(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let user = bearer_in(req.headers()).and_then(|token| app.auth.verify(token).ok());
    if let Some(user) = user {
        if let Err(err) = request(&app, &user.id).await {
            return err.into_response();
        }
        req.extensions_mut().insert::<AuthUser>(user);
    }
    next.run(req).await
}
