//! What a join token needs (`store::calls::CallFor`: the call and one
//! participant's place in it), kept in memory so that a token costs no
//! database read while nothing about the call changes.
//!
//! Every change to a call or to one of its participants NOTIFYs its id at
//! commit (migration `0011`); each instance LISTENs
//! (`workers::call_changes`) and forgets that call. So an answer from here
//! trails the database by the delivery of a notification (about a
//! millisecond) and never by more:
//! - the cache serves nothing unless the listener is up ([`JoinCache::start`]
//!   after LISTEN is confirmed, [`JoinCache::stop`] the moment the
//!   connection is in doubt), so a lost notification cannot leave it stale;
//! - a read that raced a change is not kept: each forget of a call moves
//!   the epoch of its stripe (one of [`STRIPES`], by call id), and
//!   [`JoinCache::put`] keeps a read only if no forget of a call of that
//!   stripe came since it began;
//! - only an answer that gives a token is kept (a live call, a participant
//!   present in it), for at most [`TTL`].
//!
//! A participant who left or lost a right within that millisecond holds
//! nothing they did not hold already: the token they had is valid for
//! `TOKEN_TTL`, and a session that joins gets the rights of now and is put
//! out if it no longer belongs (`ingest::handle::joined`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::domain::{CallId, UserId};
use crate::store::calls::CallFor;

/// A kept answer is read again after this long, whatever happened.
pub const TTL: Duration = Duration::from_secs(30);
/// Beyond this many calls kept, the cache starts over.
const MAX_CALLS: usize = 50_000;
/// Calls share epochs in this many stripes: a change to one call only
/// spoils the reads of calls in its stripe that were under way.
pub const STRIPES: usize = 1024;

pub struct JoinCache {
    inner: Mutex<Inner>,
}

impl Default for JoinCache {
    fn default() -> Self {
        let inner = Inner { serving: false, generation: 0, epochs: vec![0; STRIPES], calls: HashMap::new() };
        JoinCache { inner: Mutex::new(inner) }
    }
}

struct Inner {
    /// The listener is up: forgets reach this cache.
    serving: bool,
    /// Moves with every start and stop.
    generation: u64,
    /// Move with every forget of a call of their stripe.
    epochs: Vec<u64>,
    calls: HashMap<CallId, HashMap<String, (Arc<CallFor>, Instant)>>,
}

fn stripe(call: CallId) -> usize {
    (call.0.as_u128() % STRIPES as u128) as usize
}

/// Where a database read of one call began, for [`JoinCache::put`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch {
    generation: u64,
    stripe: usize,
    epoch: u64,
}

impl JoinCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is a single insert, remove or clear.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The kept answer for `user` in `call`, if it is still good.
    pub fn get(&self, call: CallId, user: &UserId) -> Option<Arc<CallFor>> {
        let inner = self.lock();
        if !inner.serving {
            return None;
        }
        let (found, at) = inner.calls.get(&call)?.get(user.as_str())?;
        (at.elapsed() < TTL).then(|| found.clone())
    }

    /// Call before reading the database about `call`.
    pub fn epoch(&self, call: CallId) -> Epoch {
        let inner = self.lock();
        let stripe = stripe(call);
        Epoch { generation: inner.generation, stripe, epoch: inner.epochs[stripe] }
    }

    /// Keeps what was read since `since`, if nothing was forgotten since
    /// and it gives a token.
    pub fn put(&self, since: Epoch, user: &UserId, found: &Arc<CallFor>) {
        if !(found.call.state.is_live() && found.is_present()) {
            return;
        }
        let call = found.call.call_id();
        let mut inner = self.lock();
        let now =
            Epoch { generation: inner.generation, stripe: since.stripe, epoch: inner.epochs[since.stripe] };
        if !inner.serving || now != since || since.stripe != stripe(call) {
            return;
        }
        if inner.calls.len() >= MAX_CALLS {
            inner.calls.clear();
        }
        inner.calls.entry(call).or_default().insert(user.to_string(), (found.clone(), Instant::now()));
    }

    /// The call changed (or may have).
    pub fn forget(&self, call: CallId) {
        let mut inner = self.lock();
        inner.epochs[stripe(call)] += 1;
        inner.calls.remove(&call);
    }

    /// Forgets everything and serves from now on: LISTEN is confirmed.
    pub fn start(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.calls.clear();
        inner.serving = true;
    }

    /// Forgets everything and serves nothing until [`start`](Self::start):
    /// notifications may be missed from now on.
    pub fn stop(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.calls.clear();
        inner.serving = false;
    }

    pub fn calls(&self) -> usize {
        self.lock().calls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ParticipantStatus;
    use crate::store::calls::CallRow;

    fn present_in_a_live_call() -> Arc<CallFor> {
        let call = CallRow {
            id: CallId(uuid::Uuid::new_v4()),
            room_name: "room".into(),
            call_type: crate::domain::CallType::Audio,
            state: crate::domain::CallState::Active,
            outcome: None,
            end_reason: None,
            initiator_id: "alice".into(),
            conversation_id: None,
            external_ref: None,
            scheduled: false,
            video_session: sqlx::types::Json(Default::default()),
            video_used: false,
            created_at: chrono::DateTime::UNIX_EPOCH,
            answered_at: None,
            connected_at: None,
            ended_at: None,
            video_version: 0,
            rights_version: 0,
            appointment_id: None,
            recording_session: sqlx::types::Json(Default::default()),
        };
        Arc::new(CallFor {
            call,
            status: ParticipantStatus::Joined,
            live: true,
            may_share_screen: false,
            admitted: true,
        })
    }

    fn user() -> UserId {
        UserId::parse("bob").expect("a user id")
    }

    #[test]
    fn nothing_is_served_until_the_listener_is_up_nor_after_it_went_down() {
        let cache = JoinCache::default();
        let (found, bob) = (present_in_a_live_call(), user());
        let call = found.call.call_id();
        cache.put(cache.epoch(call), &bob, &found);
        assert!(cache.get(call, &bob).is_none(), "not before start");
        cache.start();
        cache.put(cache.epoch(call), &bob, &found);
        assert!(cache.get(call, &bob).is_some());
        cache.stop();
        assert!(cache.get(call, &bob).is_none(), "not after stop");
        cache.start();
        assert!(cache.get(call, &bob).is_none(), "and what was kept before is gone");
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let cache = JoinCache::default();
        cache.start();
        let (found, bob) = (present_in_a_live_call(), user());
        let call = found.call.call_id();
        let before = cache.epoch(call);
        let other = CallId(uuid::Uuid::from_u128(call.0.as_u128() + 1));
        cache.forget(other);
        cache.put(before, &bob, &found);
        assert!(cache.get(call, &bob).is_some(), "a change to a call of another stripe spoils nothing");
        cache.forget(call);
        let before = cache.epoch(call);
        cache.forget(call);
        cache.put(before, &bob, &found);
        assert!(cache.get(call, &bob).is_none(), "read before the change, so maybe stale");
        cache.put(cache.epoch(call), &bob, &found);
        assert!(cache.get(call, &bob).is_some());
        cache.forget(call);
        assert!(cache.get(call, &bob).is_none(), "a change forgets the call");
    }

    #[test]
    fn only_an_answer_that_gives_a_token_is_kept() {
        let cache = JoinCache::default();
        cache.start();
        let bob = user();
        let mut left = CallFor::clone(&present_in_a_live_call());
        left.status = ParticipantStatus::Left;
        let left = Arc::new(left);
        cache.put(cache.epoch(left.call.call_id()), &bob, &left);
        assert!(cache.get(left.call.call_id(), &bob).is_none());
    }
}
