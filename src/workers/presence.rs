//! Keeps this instance's connections online while they are open
//! (`crate::realtime::presence`).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::realtime::hub::Hub;
use crate::realtime::presence::Presence;

pub async fn run(presence: Presence, hub: Arc<Hub>, stop: CancellationToken) {
    let every = presence.ttl() / 3;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(err) = presence.refresh(&hub.connections()).await {
            tracing::warn!(error = format!("{err:#}"), "could not refresh presence");
        }
    }
}
