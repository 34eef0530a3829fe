//! This instance's open event streams: user → connections, each with a
//! bounded queue. Delivery never waits: a connection whose queue is full is
//! dropped, so one slow client cannot hold back anybody else.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// One message as the WebSocket sends it: serialized once, shared by every
/// connection it goes to.
pub use axum::extract::ws::Utf8Bytes as Frame;
use axum::extract::ws::Utf8Bytes;
use std::collections::VecDeque;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Messages waiting for one connection; beyond this it counts as too slow.
pub const QUEUE: usize = 256;

struct Conn {
    id: u64,
    queue: Arc<Queue>,
    drop: Dropper,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// Messages waiting for one connection. Unlike a tokio channel, which
/// allocates a block of slots up front, it holds no buffer while empty:
/// most streams are idle most of the time.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Notify,
}

#[derive(Default)]
struct QueueState {
    messages: VecDeque<Utf8Bytes>,
    /// The hub let go of the connection: nothing more will come.
    closed: bool,
}

enum Refused {
    Full,
    Closed,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn try_send(&self, message: Utf8Bytes) -> Result<(), Refused> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(Refused::Closed);
            }
            if state.messages.len() >= QUEUE {
                return Err(Refused::Full);
            }
            state.messages.push_back(message);
        }
        self.ready.notify_one();
        Ok(())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    fn try_recv(&self) -> Option<Utf8Bytes> {
        let mut state = self.lock();
        let message = state.messages.pop_front();
        if state.messages.is_empty() && state.messages.capacity() > 0 {
            state.messages = VecDeque::new();
        }
        message
    }
}

/// The receiving end of one connection's queue.
pub struct Receiver {
    queue: Arc<Queue>,
}

impl Receiver {
    /// The next message; `None` once the hub let go of the connection and
    /// everything queued was taken.
    pub async fn recv(&mut self) -> Option<Utf8Bytes> {
        loop {
            // A notification that comes between the look and the wait is
            // kept as a permit by `notify_one`: none is lost.
            if let Some(message) = self.queue.try_recv() {
                return Some(message);
            }
            if self.queue.lock().closed {
                return self.queue.try_recv();
            }
            self.queue.ready.notified().await;
        }
    }

    pub fn try_recv(&mut self) -> Option<Utf8Bytes> {
        self.queue.try_recv()
    }
}

/// Why a connection was ended by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The instance is shutting down (or nothing else was said).
    Shutdown = 0,
    /// Its queue filled up: the client does not read.
    TooSlow = 1,
    /// The user opened more streams than allowed; this was the oldest.
    TooMany = 2,
}

/// Ends one connection, saying why.
#[derive(Clone)]
pub struct Dropper {
    token: CancellationToken,
    reason: Arc<AtomicU8>,
}

impl Dropper {
    fn end(&self, reason: Reason) {
        self.reason.store(reason as u8, Ordering::Relaxed);
        self.token.cancel();
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    pub fn reason(&self) -> Reason {
        match self.reason.load(Ordering::Relaxed) {
            1 => Reason::TooSlow,
            2 => Reason::TooMany,
            _ => Reason::Shutdown,
        }
    }
}

pub struct Hub {
    users: Mutex<HashMap<String, Vec<Conn>>>,
    next_id: AtomicU64,
    /// Users whose Redis channel to follow or leave (`bus`), as their
    /// connections here say, in the next round of `fanout::subscribe`.
    interest: Mutex<Interest>,
    /// Wakes that round.
    pub interest_wake: Notify,
}

struct Interest {
    users: HashSet<String>,
    /// The round that will take them; rounds count from 1.
    next_round: u64,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            users: Mutex::default(),
            next_id: AtomicU64::new(0),
            interest: Mutex::new(Interest { users: HashSet::new(), next_round: 1 }),
            interest_wake: Notify::new(),
        }
    }
}

/// A connection's place in the hub; leaving it (or dropping it) removes it.
pub struct Registration {
    hub: Arc<Hub>,
    pub user: String,
    pub id: u64,
    pub drop: Dropper,
    removed: bool,
}

impl Registration {
    pub fn remove(&mut self) {
        if !self.removed {
            self.removed = true;
            self.hub.remove(&self.user, self.id);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.remove();
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Conn>>> {
        // The map stays consistent even if a holder panicked: every update
        // is a single push or retain.
        self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a connection of `user`; `stop` ends it (a child token is used).
    /// Also returns the round of `fanout::subscribe` that makes sure the
    /// user's channel is followed.
    pub fn register(self: &Arc<Self>, user: &str, stop: &CancellationToken) -> (Registration, Receiver, u64) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(Queue::default());
        let rx = Receiver { queue: queue.clone() };
        let drop =
            Dropper { token: stop.child_token(), reason: Arc::new(AtomicU8::new(Reason::Shutdown as u8)) };
        self.lock().entry(user.to_owned()).or_default().push(Conn { id, queue, drop: drop.clone() });
        let round = self.look_again(user);
        let registration =
            Registration { hub: self.clone(), user: user.to_owned(), id, drop, removed: false };
        (registration, rx, round)
    }

    fn remove(&self, user: &str, id: u64) {
        let emptied = {
            let mut users = self.lock();
            let Some(conns) = users.get_mut(user) else { return };
            conns.retain(|c| c.id != id);
            let emptied = conns.is_empty();
            if emptied {
                users.remove(user);
            }
            emptied
        };
        if emptied {
            self.look_again(user);
        }
    }

    /// Asks the next round to follow or leave `user`'s channel, as their
    /// connections then say; returns that round.
    fn look_again(&self, user: &str) -> u64 {
        let round = {
            let mut interest = self.interest.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            interest.users.insert(user.to_owned());
            interest.next_round
        };
        self.interest_wake.notify_one();
        round
    }

    /// Starts a round: the users to look at, and the round's number.
    pub fn take_interest(&self) -> (u64, HashSet<String>) {
        let mut interest = self.interest.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let round = interest.next_round;
        interest.next_round += 1;
        (round, std::mem::take(&mut interest.users))
    }

    /// Queues `message` for every connection of `user` here; returns how
    /// many took it. A full queue drops its connection.
    pub fn deliver(&self, user: &str, message: &Utf8Bytes) -> usize {
        let users = self.lock();
        let Some(conns) = users.get(user) else { return 0 };
        let mut delivered = 0;
        for conn in conns {
            match conn.queue.try_send(message.clone()) {
                Ok(()) => delivered += 1,
                Err(Refused::Full) => {
                    tracing::info!(user_id = user, conn = conn.id, "dropping a slow event stream");
                    conn.drop.end(Reason::TooSlow);
                }
                Err(Refused::Closed) => {}
            }
        }
        delivered
    }

    /// Ends one connection of `user` here, if it is still open.
    pub fn end(&self, user: &str, id: u64, reason: Reason) -> bool {
        let users = self.lock();
        let conn = users.get(user).and_then(|conns| conns.iter().find(|c| c.id == id));
        conn.map(|c| c.drop.end(reason)).is_some()
    }

    pub fn has(&self, user: &str) -> bool {
        self.lock().contains_key(user)
    }

    pub fn users(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Every connection here, as (user, connection id).
    pub fn connections(&self) -> Vec<(String, u64)> {
        self.lock().iter().flat_map(|(user, conns)| conns.iter().map(move |c| (user.clone(), c.id))).collect()
    }

    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_of_the_user_gets_the_message_and_nobody_else() {
        let hub = Arc::new(Hub::default());
        let stop = CancellationToken::new();
        let (_a1, mut rx1, _) = hub.register("a", &stop);
        let (_a2, mut rx2, _) = hub.register("a", &stop);
        let (_b, mut rx3, _) = hub.register("b", &stop);
        assert_eq!(hub.deliver("a", &Utf8Bytes::from_static("hi")), 2);
        assert_eq!(rx1.try_recv().as_ref().map(Utf8Bytes::as_str), Some("hi"));
        assert_eq!(rx2.try_recv().as_ref().map(Utf8Bytes::as_str), Some("hi"));
        assert!(rx3.try_recv().is_none());
    }

    #[test]
    fn a_full_queue_drops_only_its_own_connection() {
        let hub = Arc::new(Hub::default());
        let stop = CancellationToken::new();
        let (slow, _never_read, _) = hub.register("a", &stop);
        let (fast, mut rx, _) = hub.register("a", &stop);
        for _ in 0..QUEUE {
            hub.deliver("a", &Utf8Bytes::from_static("x"));
            assert!(rx.try_recv().is_some());
        }
        assert!(!slow.drop.token().is_cancelled());
        assert_eq!(hub.deliver("a", &Utf8Bytes::from_static("one too many")), 1);
        assert!(slow.drop.token().is_cancelled() && slow.drop.reason() == Reason::TooSlow);
        assert!(!fast.drop.token().is_cancelled());
    }

    #[test]
    fn ending_one_connection_leaves_the_others_open() {
        let hub = Arc::new(Hub::default());
        let stop = CancellationToken::new();
        let (old, _rx1, _) = hub.register("a", &stop);
        let (new, _rx2, _) = hub.register("a", &stop);
        assert!(hub.end("a", old.id, Reason::TooMany));
        assert!(old.drop.token().is_cancelled() && old.drop.reason() == Reason::TooMany);
        assert!(!new.drop.token().is_cancelled());
        assert!(!hub.end("b", new.id, Reason::TooMany), "only the user's own connection");
    }

    #[test]
    fn a_users_first_connection_and_their_last_goodbye_each_ask_for_a_round() {
        let hub = Arc::new(Hub::default());
        let stop = CancellationToken::new();
        let (first, _rx1, round) = hub.register("a", &stop);
        assert_eq!(round, 1, "rounds count from 1, past the 0 a fresh watch holds");
        let (taken, users) = hub.take_interest();
        assert_eq!((taken, users.into_iter().collect::<Vec<_>>()), (1, vec!["a".to_owned()]));
        let (second, _rx2, round) = hub.register("a", &stop);
        assert_eq!(round, 2, "a later connection waits for a round that starts after it");
        drop(first);
        assert_eq!(hub.take_interest().1.len(), 1);
        drop(second);
        let (_, users) = hub.take_interest();
        assert!(users.contains("a") && !hub.has("a"), "the last goodbye asks to leave the channel");
        assert!(hub.take_interest().1.is_empty());
    }

    #[tokio::test]
    async fn a_waiting_stream_wakes_for_a_message_and_ends_when_its_connection_is_let_go() {
        let hub = Arc::new(Hub::default());
        let stop = CancellationToken::new();
        let (reg, mut rx, _) = hub.register("a", &stop);
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            (first, second)
        });
        tokio::task::yield_now().await;
        assert_eq!(hub.deliver("a", &Utf8Bytes::from_static("hi")), 1);
        drop(reg);
        let (first, second) = waiting.await.expect("the receiver ran");
        assert_eq!(first.as_ref().map(Utf8Bytes::as_str), Some("hi"));
        assert!(second.is_none(), "nothing more once the hub let go");
    }

    #[test]
    fn dropping_a_registration_removes_it() {
        let hub = Arc::new(Hub::default());
        let stop = CancellationToken::new();
        let (reg, _rx, _) = hub.register("a", &stop);
        assert!(hub.has("a"));
        drop(reg);
        assert!(!hub.has("a") && hub.is_empty());
    }
}
