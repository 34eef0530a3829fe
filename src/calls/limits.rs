//! The limits a use case applies before it changes anything: calls started
//! per user, video requests per call and per participant, media changes and
//! quality samples per participant.
//! Counted in Redis (`crate::infra::rate_limit`); what a Redis outage means
//! is decided per limit.

use std::time::Duration;

use crate::calls::{CallError, Core};
use crate::domain::{CallId, Code, UserId};
use crate::infra::outage::Dependency;
use crate::infra::rate_limit::{Algorithm, check};

const MINUTE: Duration = Duration::from_secs(60);

/// The refusal of a request over a limit, telling when to try again.
pub fn limited(what: &str, wait: Duration) -> CallError {
    CallError::TooManyRequests {
        code: Code::RateLimited,
        detail: format!("too many {what}; try again in {} s", wait.as_secs().max(1)),
        retry_after: wait.max(Duration::from_secs(1)),
    }
}

pub fn rounded_up(wait: Duration) -> Duration {
    Duration::from_secs(wait.as_millis().div_ceil(1000) as u64)
}

pub async fn call_start(core: &Core, user: &UserId) -> Result<(), CallError> {
    let limit = core.config.rate_limits.call_starts_per_minute;
    if limit == 0 {
        return Ok(());
    }
    let key = format!("callgate:rl:calls:{user}");
    match check(
        &core.redis,
        Algorithm::SlidingLog,
        key,
        (limit, MINUTE),
        core.config.rate_limits.redis_timeout,
    )
    .await
    {
        Ok(None) => Ok(()),
        Ok(Some(wait)) => Err(limited("calls started", rounded_up(wait))),
        Err(err) => {
            tracing::warn!(error = format!("{err:#}"), "call start limit unavailable; allowing");
            Ok(())
        }
    }
}

/// A participant's quality samples: one per `QUALITY_SAMPLE_INTERVAL`.
/// Fails open: the per-call maximum still bounds them.
pub async fn quality_sample(core: &Core, call: CallId, user: &UserId) -> Result<(), CallError> {
    let interval = core.config.limits.quality_sample_interval;
    if interval.is_zero() {
        return Ok(());
    }
    let key = format!("callgate:rl:quality:{call}:{user}");
    match check(&core.redis, Algorithm::SlidingLog, key, (1, interval), core.config.rate_limits.redis_timeout)
        .await
    {
        Ok(None) => Ok(()),
        Ok(Some(wait)) => Err(limited("quality samples from you in this call", rounded_up(wait))),
        Err(err) => {
            core.report_outage(Dependency::Redis, &format!("{err:#}"));
            Ok(())
        }
    }
}

/// A participant's media changes: a bucket of
/// `RATE_LIMIT_MEDIA_CHANGES_PER_MINUTE` refilling at that rate. Each change
/// is a client event to everyone live in the call, so this bounds what one
/// participant writes to `user_events`. Fails open: the per-user request
/// limit still bounds them.
pub async fn media_change(core: &Core, call: CallId, user: &UserId) -> Result<(), CallError> {
    let limit = core.config.limits.media_changes_per_minute;
    if limit == 0 {
        return Ok(());
    }
    let key = format!("callgate:rl:media:{call}:{user}");
    match check(&core.redis, Algorithm::Bucket, key, (limit, MINUTE), core.config.rate_limits.redis_timeout)
        .await
    {
        Ok(None) => Ok(()),
        Ok(Some(wait)) => Err(limited("media changes from you in this call", rounded_up(wait))),
        Err(err) => {
            core.report_outage(Dependency::Redis, &format!("{err:#}"));
            Ok(())
        }
    }
}

/// A video request by `user` in `call`: within the participant's own budget
/// (`RATE_LIMIT_VIDEO_REQUESTS_PER_PARTICIPANT`), then the call's
/// (`RATE_LIMIT_VIDEO_REQUESTS_PER_CALL`), both per
/// `RATE_LIMIT_VIDEO_REQUESTS_WINDOW`. The participant's comes first, so
/// that one participant requesting and withdrawing over and over spends
/// their own budget and not the others' share of the call's.
pub async fn video_request(core: &Core, call: CallId, user: &UserId) -> Result<(), CallError> {
    let limits = &core.config.rate_limits;
    let mine = format!("callgate:rl:video:{call}:{user}");
    video_budget(core, mine, limits.video_requests_per_participant, "video requests from you in this call")
        .await?;
    let call = format!("callgate:rl:video:{call}");
    video_budget(core, call, limits.video_requests_per_call, "video requests in this call").await
}

/// A recording request: the same budgets as video's (`VIDEO_REQUESTS_*`),
/// counted apart, so that nobody floods a call with prompts to record.
pub async fn recording_request(core: &Core, call: CallId, user: &UserId) -> Result<(), CallError> {
    let limits = &core.config.rate_limits;
    let mine = format!("callgate:rl:recording:{call}:{user}");
    let what = "recording requests from you in this call";
    video_budget(core, mine, limits.video_requests_per_participant, what).await?;
    let call = format!("callgate:rl:recording:{call}");
    video_budget(core, call, limits.video_requests_per_call, "recording requests in this call").await
}

async fn video_budget(core: &Core, key: String, limit: u32, what: &str) -> Result<(), CallError> {
    let limits = &core.config.rate_limits;
    if limit == 0 {
        return Ok(());
    }
    match check(
        &core.redis,
        Algorithm::SlidingLog,
        key,
        (limit, limits.video_requests_window),
        limits.redis_timeout,
    )
    .await
    {
        Ok(None) => Ok(()),
        Ok(Some(wait)) => Err(limited(what, rounded_up(wait))),
        Err(err) => {
            tracing::warn!(error = format!("{err:#}"), "video request limit unavailable; refusing");
            Err(CallError::Unavailable("rate limiter"))
        }
    }
}
