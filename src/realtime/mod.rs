//! Real-time events for clients, on whichever instance they are connected.
//!
//! The call service writes each client event into `user_events` in the
//! transaction of the change it announces. Then:
//! 1. `fanout::publish` (on every instance, woken by a PostgreSQL NOTIFY at
//!    commit and by a periodic sweep; a user's events by one instance at a
//!    time, so they keep their order) takes unpublished rows, publishes each
//!    on its user's Redis channel (`bus`) and marks them published — at least
//!    once; clients dedupe on the event `id`.
//! 2. `fanout::subscribe` (every instance) follows the channels of the users
//!    with a stream here, and only those, and hands each message to the
//!    local connections of its user, through the `hub`.
//! 3. `socket` runs one WebSocket: queue → client, heartbeats, close.

pub mod bus;
pub mod hub;
pub mod presence;
pub mod streams;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// Whether this instance's subscription connection to Redis is up.
    subscribed: watch::Sender<bool>,
    /// The last round of (un)subscribing that has finished (see
    /// [`hub::Hub::take_interest`]).
    round: watch::Sender<u64>,
    /// Users whose channel this instance is subscribed to.
    following: Mutex<HashSet<String>>,
    /// Messages received from Redis (events and close notices).
    pub received: AtomicU64,
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
            round: watch::Sender::new(0),
            following: Mutex::new(HashSet::new()),
            received: AtomicU64::new(0),
            outbox_wake: Notify::new(),
            sockets_stop: CancellationToken::new(),
            sockets: TaskTracker::new(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each update is a single insert, remove or swap: never left half done.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Events {
    /// Waits (up to `within`) until events for the user of `round` (from
    /// [`hub::Hub::register`]), raised on any instance, reach this one;
    /// false if they do not (Redis is unreachable).
    pub async fn follow(&self, user: &str, wanted: u64, within: Duration) -> bool {
        let mut rounds = self.round.subscribe();
        let mut subscribed = self.subscribed.subscribe();
        let done = async {
            loop {
                // `None` once the sender is gone (never while the app runs).
                if *subscribed.borrow_and_update() && *rounds.borrow_and_update() >= wanted {
                    return Some(self.is_following(user));
                }
                tokio::select! {
                    changed = rounds.changed() => changed.ok()?,
                    changed = subscribed.changed() => changed.ok()?,
                }
            }
        };
        matches!(tokio::time::timeout(within, done).await, Ok(Some(true)))
    }

    pub fn round_done(&self, round: u64) {
        self.round.send_replace(round);
    }

    pub fn is_following(&self, user: &str) -> bool {
        lock(&self.following).contains(user)
    }

    pub fn following(&self) -> usize {
        lock(&self.following).len()
    }

    pub fn set_following(&self, user: &str, follows: bool) {
        let mut following = lock(&self.following);
        if follows {
            following.insert(user.to_owned());
        } else {
            following.remove(user);
        }
    }

    /// The subscription connection is gone, and every subscription with it.
    pub fn lost_all(&self) {
        self.set_subscribed(false);
        lock(&self.following).clear();
    }

    pub fn count_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
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
