//! The tests' own settings and their shared webhook receiver: apart from
//! the rest of the helpers so that `examples/webhook_receiver.rs` can run
//! the receiver as a process of its own (under cargo-nextest).

use std::time::Duration;

use callgate::app::Application;
use callgate::config::Config;

/// Rooms of apps sharing the test database; the shared webhook receiver
/// handles LiveKit's events for them. `TEST_ROOM_PREFIX` lets two test runs
/// share one LiveKit server.
pub fn shared_prefix() -> String {
    std::env::var("TEST_ROOM_PREFIX").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "cgt-".into())
}

pub fn base_config() -> Config {
    let mut config =
        Config::from_env().expect("the test environment is exported by deploy/local.sh test (.env.example)");
    config.port = 0;
    config.room_prefix = shared_prefix();
    config.deadline_poll = Duration::from_millis(100);
    config.database_pool_size = 16;
    // PostgreSQL logins are slow on a loaded two-core machine.
    config.database_acquire_timeout = Duration::from_secs(30);
    config.admin_port = Some(0);
    // Redis answers late on a saturated two-core machine; a limit that
    // failed open there would let a counted request through.
    config.rate_limits.redis_timeout = Duration::from_secs(3);
    // Every test's refused requests come from 127.0.0.1 (tests/api/limits.rs
    // tests this limit with addresses of its own).
    config.limits.unauthenticated_per_minute = 1_000_000;
    // Recordings go where the stack's egress writes (deploy/local.sh test).
    if let Ok(dir) = std::env::var("CALLGATE_EGRESS_OUTPUT") {
        config.recording.dir = dir.clone().into();
        config.recording.egress_dir = dir;
    }
    config
}

/// Where LiveKit posts its webhooks in the tests (`TEST_WEBHOOK_PORT`).
pub fn webhook_port() -> u16 {
    std::env::var("TEST_WEBHOOK_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8089)
}

/// The shared webhook receiver: an app of the tests' own settings on the
/// shared test database, on `port`, until it stops; `ready` once it listens.
pub async fn webhook_receiver(port: u16, ready: impl FnOnce()) -> anyhow::Result<()> {
    let mut config = base_config();
    config.port = port;
    let app = Application::build(config).await?;
    ready();
    app.run_until_stopped().await?;
    Ok(())
}
