//! Real-time events for clients, on whichever instance they are connected.
//!
//! The call service writes each client event into `user_events` in the
//! transaction of the change it announces. Then:
//! 1. `fanout::publish` (on every instance, woken by a PostgreSQL NOTIFY at
//!    commit and by a periodic sweep; a user's events by one instance at a
//!    time, so they keep their order) takes unpublished rows, publishes them
//!    on one Redis channel and marks them published — at least once; clients
//!    dedupe on the event `id`.
//! 2. `fanout::subscribe` (every instance) hands each message to the local
//!    connections of its user, through the `hub`.
//! 3. `socket` runs one WebSocket: queue → client, heartbeats, close.

pub mod hub;
pub mod presence;
pub mod streams;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use hub::Hub;

/// What a client receives for each event.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireEvent<'a> {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub call_id: Option<Uuid>,
    pub at: DateTime<Utc>,
    pub data: &'a Value,
}

/// The event machinery of one instance.
pub struct Events {
    pub hub: Arc<Hub>,
    /// Names this instance's connections in shared state (presence).
    pub instance: String,
    /// Whether this instance is subscribed to the Redis channel.
    subscribed: watch::Sender<bool>,
    /// Nudges the app webhook workers.
    pub outbox_wake: Notify,
    /// Ends every socket; cancelled at shutdown.
    sockets_stop: CancellationToken,
    sockets: TaskTracker,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            hub: Arc::new(Hub::default()),
            instance: Uuid::new_v4().simple().to_string(),
            subscribed: watch::Sender::new(false),
            outbox_wake: Notify::new(),
            sockets_stop: CancellationToken::new(),
            sockets: TaskTracker::new(),
        }
    }
}

impl Events {
    /// Waits (up to `within`) until events from other instances reach this
    /// one; false if they do not (Redis is unreachable).
    pub async fn wait_subscribed(&self, within: Duration) -> bool {
        let mut rx = self.subscribed.subscribe();
        matches!(tokio::time::timeout(within, rx.wait_for(|up| *up)).await, Ok(Ok(_)))
    }

    pub fn set_subscribed(&self, up: bool) {
        self.subscribed.send_replace(up);
    }

    pub fn sockets_stop(&self) -> &CancellationToken {
        &self.sockets_stop
    }

    pub fn sockets(&self) -> &TaskTracker {
        &self.sockets
    }

    pub fn shutting_down(&self) -> bool {
        self.sockets_stop.is_cancelled()
    }

    /// Closes every socket with a reason and waits (a bounded time) for the
    /// close frames to go out.
    pub async fn close_sockets(&self, within: Duration) {
        self.sockets_stop.cancel();
        self.sockets.close();
        if tokio::time::timeout(within, self.sockets.wait()).await.is_err() {
            tracing::warn!(open = self.sockets.len(), "some event streams did not close in time");
        }
    }
}
