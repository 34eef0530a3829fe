//! What the request handlers share: the core of the use cases, plus what
//! only the edge needs (user token verification, LiveKit webhook
//! verification, the webhook inbox, the readiness cache).

use std::ops::Deref;
use std::sync::Arc;

use crate::calls::Core;
use crate::infra::auth::Authenticator;
use crate::ingest::inbox::Inbox;
use crate::livekit::webhooks::Verifier;

pub struct Inner {
    pub core: Core,
    pub auth: Authenticator,
    pub webhooks: Verifier,
    pub webhook_inbox: Arc<Inbox>,
    pub readiness: crate::http::readiness::Cache,
    /// Per-user request limit leases (`crate::infra::rate_limit::Leases`).
    pub request_leases: crate::infra::rate_limit::Leases,
    /// LiveKit webhooks refused for their signature, per client address.
    pub webhook_refusals: crate::infra::rate_limit::LocalBuckets,
}

/// The state of every handler; it derefs to the [`Core`] (`app.db`, `app.config`, ...).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Deref for Inner {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

impl AppState {
    pub fn new(core: Core, auth: Authenticator, webhook_inbox: Arc<Inbox>) -> Self {
        let webhooks = Verifier::new(&core.config.livekit);
        AppState(Arc::new(Inner {
            core,
            auth,
            webhooks,
            webhook_inbox,
            readiness: Default::default(),
            request_leases: Default::default(),
            webhook_refusals: Default::default(),
        }))
    }
}
