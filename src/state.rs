//! What every request handler and background job shares.

use std::ops::Deref;
use std::sync::Arc;

use livekit_api::access_token::TokenVerifier;
use livekit_api::webhooks::WebhookReceiver;
use sqlx::PgPool;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::domain::UserId;
use crate::events::Events;
use crate::livekit::LiveKit;
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;
use crate::turn::{self, IceServer};

pub struct Inner {
    pub config: Config,
    pub db: PgPool,
    pub redis: RedisLink,
    pub livekit: LiveKit,
    pub auth: Authenticator,
    pub webhooks: WebhookReceiver,
    pub webhook_inbox: crate::webhook_inbox::Inbox,
    pub events: Events,
    /// This application's figures (not the process's: tests run many apps).
    pub metrics: Metrics,
    // issue 16 A
    pub readiness: crate::readiness::Cache,
    /// Which dependencies are down (issue 16 B).
    pub outages: crate::outage::Outages,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config, db: PgPool, redis: RedisLink, auth: Authenticator) -> Self {
        let metrics = Metrics::default();
        let livekit = LiveKit::new(&config.livekit, &config.room_prefix, metrics.livekit());
        let verifier =
            TokenVerifier::with_api_key(&config.livekit.api_key, config.livekit.api_secret.expose());
        AppState(Arc::new(Inner {
            webhooks: WebhookReceiver::new(verifier),
            webhook_inbox: Default::default(),
            events: Events::default(),
            metrics,
            readiness: Default::default(),
            outages: Default::default(),
            livekit,
            config,
            db,
            redis,
            auth,
        }))
    }

    pub fn ice_servers(&self, user: &UserId) -> Vec<IceServer> {
        turn::ice_servers(&self.config.turn, user.as_str(), chrono::Utc::now())
    }
}
