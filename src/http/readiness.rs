//! Whether this instance can serve: PostgreSQL, Redis and LiveKit answer,
//! and user tokens can be verified (an identity provider's keys are held).
//! Asked by load balancers, possibly by anyone: the dependencies are probed
//! at most once per `FRESH_FOR` per instance however often it is asked
//! (concurrent askers wait for the one probe), so a flood of `/ready`
//! costs them nothing.

use std::time::{Duration, Instant};

use crate::calls::Core;

/// What each dependency answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checks {
    pub postgres: bool,
    pub redis: bool,
    pub livekit: bool,
    /// With `JWT_JWKS_URL` or `JWT_OIDC_DISCOVERY`: the provider's keys were
    /// fetched (`None` without a provider). Once held they go on verifying
    /// while the provider is down, so a later outage does not count here.
    pub identity_keys: Option<bool>,
}

impl Checks {
    pub fn all_ok(&self) -> bool {
        self.postgres && self.redis && self.livekit && self.identity_keys != Some(false)
    }
}

/// The last probe and when it was made.
#[derive(Default)]
pub struct Cache(tokio::sync::Mutex<Option<(Instant, Checks)>>);

/// How long one probe's answer is reused.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// A dependency that does not answer within this long counts as down.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The dependencies' state, probed at most once per `FRESH_FOR`;
/// `identity_keys` is read from memory each time.
pub async fn check(app: &Core, cache: &Cache, identity_keys: Option<bool>) -> Checks {
    let mut cached = cache.0.lock().await;
    if let Some((at, checks)) = *cached
        && at.elapsed() < FRESH_FOR
    {
        return Checks { identity_keys, ..checks };
    }
    let checks = Checks { identity_keys, ..probe(app).await };
    *cached = Some((Instant::now(), checks));
    checks
}

async fn probe(app: &Core) -> Checks {
    let (db, redis, livekit) = tokio::join!(
        tokio::time::timeout(TIMEOUT, crate::store::ping(&app.db)),
        tokio::time::timeout(TIMEOUT, app.redis.ping()),
        tokio::time::timeout(TIMEOUT, app.livekit.ping()),
    );
    Checks {
        postgres: matches!(db, Ok(Ok(()))),
        redis: matches!(redis, Ok(Ok(()))),
        livekit: matches!(livekit, Ok(Ok(()))),
        identity_keys: None,
    }
}
