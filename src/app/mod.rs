//! Builds the application: binds first (so tests can ask for port 0 and
//! learn the real one), connects its dependencies, migrates, and starts the
//! background jobs beside the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::calls::Core;
use crate::calls::core::Parts;
use crate::clock::{self, SharedClock};
use crate::config::Config;
use crate::http::state::AppState;
use crate::infra::auth::Authenticator;
use crate::infra::redis_link::RedisLink;
use crate::ingest::inbox::Inbox;
use crate::livekit::{LiveKit, RoomService};
use crate::metrics::Metrics;
use crate::realtime::Events;
use crate::realtime::presence::Presence;
use crate::storage::Storage;

mod serve;

pub struct Application {
    listener: TcpListener,
    /// The operations listener (`ADMIN_PORT`), if configured.
    admin: Option<TcpListener>,
    state: AppState,
    stop: CancellationToken,
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The use cases' and jobs' shared parts from their dependencies: what
/// `Application::build` does after connecting, and how tests that need no
/// server (a fake LiveKit, a fake clock) make a `Core`. Nothing here
/// connects: Redis is dialled when first used.
pub fn assemble(
    config: Config,
    db: sqlx::PgPool,
    redis: RedisLink,
    livekit: Arc<dyn RoomService>,
    storage: Arc<dyn Storage>,
    clock: SharedClock,
    metrics: Metrics,
) -> Core {
    let events = Events::default();
    let presence =
        Presence::new(redis.clone(), events.instance.clone(), config.events.presence_ttl, clock.clone());
    Core::new(Parts {
        config,
        db,
        redis,
        livekit,
        storage,
        clock,
        metrics,
        presence,
        events,
        joins: Default::default(),
        outages: Default::default(),
        stop: CancellationToken::new(),
        after_commit: Default::default(),
    })
}

/// How long shutdown waits for the work after commits: a settling's one try
/// (its retries are jobs), a call's end, a call's events being drained.
const AFTER_COMMIT_GRACE: Duration = Duration::from_secs(10);

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, clock::system()).await
    }

    /// Like `build`, with the clock the use cases and workers read.
    pub async fn build_with_clock(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        // One TLS provider for every client in the process (LiveKit's uses ring).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], config.port)))
            .await
            .with_context(|| format!("binding port {}", config.port))?;
        let admin = match config.admin_port {
            Some(port) => Some(
                TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
                    .await
                    .with_context(|| format!("binding ADMIN_PORT {port}"))?,
            ),
            None => None,
        };
        if config.dev_mode {
            tracing::warn!(
                "CALLGATE_DEV=true: development secrets and short secrets are accepted; \
                 never run a production service like this"
            );
        }
        let db = crate::store::pool_options()
            .max_connections(config.database_pool_size.max(2))
            .min_connections(config.database_pool_min.min(config.database_pool_size))
            .acquire_timeout(config.database_acquire_timeout)
            .connect(config.database_url.expose_secret())
            .await
            .context("connecting to PostgreSQL (DATABASE_URL)")?;
        MIGRATOR.run(&db).await.context("applying database migrations")?;
        let redis =
            RedisLink::new(config.redis_url.expose_secret(), config.redis_cluster).context("REDIS_URL")?;
        let auth = Authenticator::new(&config.jwt).context("JWT_PUBLIC_KEY")?;
        if let Some(keys) = auth.provider_keys() {
            // Not fatal: readiness says so, and the keys are fetched again
            // (crate::infra::jwks::ProviderKeys::run).
            keys.load().await;
        }
        let metrics = Metrics::default();
        let livekit = Arc::new(LiveKit::new(&config.livekit, &config.room_prefix, metrics.livekit()));
        let storage = crate::storage::from_config(&config.recording).context("RECORDING_STORAGE")?;
        let core = assemble(config, db, redis, livekit, storage, clock, metrics);
        let stop = core.stop.clone();
        let inbox = Arc::new(Inbox::new(core.clone()));
        let state = AppState::new(core, auth, inbox);
        Ok(Self { listener, admin, state, stop })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// The operations listener's port (`/metrics`, detailed `/ready`), if any.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.port())
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Cancelling this token shuts the application down gracefully.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application { listener, admin, state, stop } = self;
        let mut jobs = JoinSet::new();
        let timeouts = serve::ReadTimeouts {
            header: state.config.http.header_timeout,
            body: state.config.http.body_timeout,
        };
        if let Some(admin) = admin {
            let (router, stopped) = (crate::http::admin_router(state.clone()), stop.clone());
            jobs.spawn(serve::serve(admin, router, timeouts, stopped.cancelled_owned()));
        }
        // The background jobs, beside the HTTP server.
        let core = &state.core;
        jobs.spawn(crate::workers::jobs::run(core.clone(), stop.clone()));
        jobs.spawn(crate::workers::reconcile::run(core.clone(), stop.clone()));
        jobs.spawn(crate::ingest::inbox::run(state.webhook_inbox.clone(), stop.clone()));
        jobs.spawn(crate::workers::fanout::publish(core.clone(), stop.clone()));
        jobs.spawn(crate::workers::fanout::subscribe(core.clone(), stop.clone()));
        jobs.spawn(crate::workers::call_changes::run(core.clone(), stop.clone()));
        jobs.spawn(crate::workers::presence::run(
            core.presence.clone(),
            core.events.hub.clone(),
            stop.clone(),
        ));
        jobs.spawn(crate::workers::app_webhooks::run(core.clone(), stop.clone()));
        jobs.spawn(crate::workers::purge::run(core.clone(), stop.clone()));
        if let Some(keys) = state.auth.provider_keys() {
            jobs.spawn(keys.clone().run(stop.clone()));
        }
        let app = crate::http::router(state.clone());
        let serve_stop = stop.clone();
        // Graceful shutdown: stop accepting and finish requests; then close
        // the event streams with a reason; then let the jobs end (an app
        // webhook or a job being run is finished; jobs and outbox rows are
        // only ever held inside a transaction, so nothing is left claimed);
        // then the work after commits (LiveKit told, a call's end carried
        // out, a call's LiveKit events handled) finishes, within a bound.
        // The peer address is what requests without valid credentials are
        // counted by (crate::infra::rate_limit), when no trusted proxy says better.
        serve::serve(listener, app, timeouts, async move { serve_stop.cancelled().await }).await;
        stop.cancel();
        state.events.close_sockets(Duration::from_secs(5)).await;
        while jobs.join_next().await.is_some() {}
        state.core.drain(AFTER_COMMIT_GRACE).await;
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
