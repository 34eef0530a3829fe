//! The inbox of LiveKit's webhooks (`livekit_webhook_events`).
//!
//! Acknowledging: LiveKit queues a room's events behind a slow answer and
//! drops them when the queue is full or an event has waited 30 s, so the
//! handler only verifies the signature and waits for the event's row to
//! commit. Rows that arrive together are written together, by one task, in
//! one statement: a burst costs a few commits and never starves the
//! database pool. The primary key on the event id drops a second delivery.
//!
//! Handling: right after, by a task of this process, per call in arrival
//! order (`seq`) under the call's row lock, a batch of the call's pending
//! events per transaction (up to `BATCH_PER_CALL`), which also marks them
//! processed (`crate::ingest::handle::handle`) and writes their rows in the
//! call's timeline in one statement, after the rows their handling wrote
//! (so within a batch the effects come first); LiveKit is told what they
//! decided once, after the commit. If one event of a batch fails, the batch
//! rolls back and its events are handled one per transaction, so that only
//! the failing one waits. An event whose handling fails stays in the inbox
//! and the reconciler retries it; after a few failures it is set aside.
//!
//! Bounded: beyond `MAX_BACKLOG` unhandled events in the table (read from it
//! every second, counted here in between) or `QUEUE` waiting for their row,
//! LiveKit is answered 503 and sends again later; the backlog is in
//! `/metrics` (`callgate_livekit_webhook_backlog`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::calls::CallError;
use crate::calls::Core;
use crate::calls::enforce::{self, Effects};
use crate::calls::lifecycle;
use crate::domain::CallId;
use crate::ingest::handle;
use crate::livekit::{self, Event};
use crate::metrics::WebhookResult;
use crate::store;

/// Events waiting for their row; beyond this, LiveKit is asked to retry.
const QUEUE: usize = 8192;
/// The most rows written by one statement.
const MAX_BATCH: usize = 512;
/// How many calls' events one instance handles at once: a quarter of the
/// database pool (at least 4), the rest stays free for the API.
fn concurrent_drains(pool_size: u32) -> usize {
    (pool_size as usize / 4).clamp(4, 64)
}
/// The most events of one call handled in one transaction.
const BATCH_PER_CALL: i64 = 64;
/// Unhandled events in the table beyond which LiveKit is asked to retry.
pub const MAX_BACKLOG: i64 = 20_000;
/// How often the backlog is read from the table.
const BACKLOG_REFRESH: Duration = Duration::from_secs(1);
/// Handlings of one event that may fail before it is set aside.
const MAX_ATTEMPTS: i32 = 5;
/// An event for a call that never appeared (its start rolled back) is
/// dropped after this long; a call's row commits within seconds of its room.
const ORPHAN_EVENT_AGE: chrono::Duration = chrono::Duration::seconds(120);

struct Delivery {
    id: String,
    event: String,
    room: String,
    created_at: Option<DateTime<Utc>>,
    call: CallId,
    payload: Value,
    /// Whether the row is new (false: a second delivery).
    stored: oneshot::Sender<bool>,
}

pub struct Inbox {
    core: Core,
    sender: mpsc::Sender<Delivery>,
    receiver: Mutex<Option<mpsc::Receiver<Delivery>>>,
    /// Calls whose events a task of this process is handling; `true` when
    /// more arrived meanwhile (a burst for one call is one task).
    draining: Mutex<HashMap<CallId, bool>>,
    drain_permits: Semaphore,
    /// Unhandled events in the table: as last read, plus those stored here
    /// since, minus those handled here since.
    backlog: AtomicI64,
    max_backlog: i64,
}

impl Inbox {
    pub fn new(core: Core) -> Self {
        Self::with_max_backlog(core, MAX_BACKLOG)
    }

    /// An inbox that refuses events beyond `max_backlog` unhandled ones.
    pub fn with_max_backlog(core: Core, max_backlog: i64) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let drains = concurrent_drains(core.config.database_pool_size);
        Inbox {
            core,
            sender,
            receiver: Mutex::new(Some(receiver)),
            draining: Mutex::default(),
            drain_permits: Semaphore::new(drains),
            backlog: AtomicI64::new(0),
            max_backlog,
        }
    }

    /// Unhandled events, as far as this instance knows (see `backlog`).
    pub fn backlog(&self) -> i64 {
        self.backlog.load(Ordering::Relaxed).max(0)
    }

    fn handled(&self, count: usize) {
        self.backlog.fetch_sub(count as i64, Ordering::Relaxed);
    }
}

/// Stores a verified event; returns once its row has committed. Events of
/// rooms that are not this deployment's are not kept.
#[tracing::instrument(skip_all, fields(event = %event.kind.as_str(), event_id = %event.id, call_id))]
pub async fn ingest(inbox: &Arc<Inbox>, event: &Event, body: &str) -> Result<(), CallError> {
    let app = &inbox.core;
    let result = store_event(inbox, event, body).await;
    let counted = match &result {
        Ok(None) => WebhookResult::Ignored,
        Ok(Some(true)) => WebhookResult::Accepted,
        Ok(Some(false)) => WebhookResult::Duplicate,
        Err(_) => WebhookResult::Unavailable,
    };
    app.metrics.livekit_webhook(Some(event.kind.as_str()), counted);
    result.map(|_| ())
}

/// Whether the event was new; `None` if it is not this deployment's.
async fn store_event(inbox: &Arc<Inbox>, event: &Event, body: &str) -> Result<Option<bool>, CallError> {
    let app = &inbox.core;
    let Some(room) = event.room.as_deref() else { return Ok(None) };
    let Some(call) = app.livekit.call_of_room(room) else { return Ok(None) };
    tracing::Span::current().record("call_id", tracing::field::display(call));
    let created_at = event.created_at;
    if let Some(created_at) = created_at {
        app.metrics.livekit_webhook_lag(created_at, app.clock.now());
    }
    let (stored, is_new) = oneshot::channel();
    let delivery = Delivery {
        // LiveKit always sets an id; without one there is nothing to dedupe on.
        id: if event.id.is_empty() { format!("unnamed-{}", Uuid::new_v4()) } else { event.id.clone() },
        event: event.kind.as_str().to_owned(),
        room: room.to_owned(),
        created_at,
        call,
        payload: serde_json::from_str(body).unwrap_or_default(),
        stored,
    };
    let busy = || CallError::Unavailable("the webhook inbox");
    if inbox.backlog() >= inbox.max_backlog {
        tracing::warn!(backlog = inbox.backlog(), "the webhook backlog is full; LiveKit is asked to retry");
        return Err(busy());
    }
    inbox.sender.try_send(delivery).map_err(|_| busy())?;
    let new = is_new.await.map_err(|_| busy())?;
    if !new {
        tracing::debug!("duplicate delivery ignored");
    }
    Ok(Some(new))
}

/// Writes the rows of arriving events, many per statement, until `stop`.
pub async fn run(inbox: Arc<Inbox>, stop: CancellationToken) {
    let taken = inbox.receiver.lock().unwrap_or_else(PoisonError::into_inner).take();
    let Some(mut receiver) = taken else { return };
    let mut refresh = tokio::time::interval(BACKLOG_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => None,
            _ = refresh.tick() => {
                refresh_backlog(&inbox).await;
                continue;
            }
            delivery = receiver.recv() => delivery,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(delivery) => batch.push(delivery),
                Err(_) => break,
            }
        }
        write(&inbox, batch).await;
    }
    // What was already accepted is still written.
    let mut rest = Vec::new();
    while let Ok(delivery) = receiver.try_recv() {
        rest.push(delivery);
    }
    if !rest.is_empty() {
        write(&inbox, rest).await;
    }
}

/// Reads the backlog from the table (events other instances stored or
/// handled count too).
async fn refresh_backlog(inbox: &Inbox) {
    match store::livekit_inbox::backlog(&inbox.core.db).await {
        Ok(count) => inbox.backlog.store(count, Ordering::Relaxed),
        Err(err) => tracing::debug!(error = %err, "could not read the webhook backlog"),
    }
}

async fn write(inbox: &Arc<Inbox>, batch: Vec<Delivery>) {
    let app = &inbox.core;
    let rows: Vec<store::livekit_inbox::NewDelivery> = batch
        .iter()
        .map(|d| store::livekit_inbox::NewDelivery {
            id: &d.id,
            event: &d.event,
            room: &d.room,
            created_at: d.created_at,
            call: d.call,
            payload: &d.payload,
        })
        .collect();
    let inserted = store::livekit_inbox::insert_batch(&app.db, &rows).await;
    drop(rows);
    let mut inserted: HashSet<String> = match inserted {
        Ok(ids) => ids.into_iter().collect(),
        Err(err) => {
            // Dropping the senders answers 503: LiveKit sends them again.
            tracing::warn!(error = %err, events = batch.len(), "could not store LiveKit events");
            return;
        }
    };
    inbox.backlog.fetch_add(inserted.len() as i64, Ordering::Relaxed);
    let mut calls = HashSet::new();
    for delivery in batch {
        let new = inserted.remove(&delivery.id);
        if new {
            calls.insert(delivery.call);
        }
        let _ = delivery.stored.send(new);
    }
    for call in calls {
        kick(inbox, call);
    }
}

/// Makes sure a task of this process handles the call's pending events.
pub fn kick(inbox: &Arc<Inbox>, call: CallId) {
    {
        let mut draining = inbox.draining.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(again) = draining.get_mut(&call) {
            *again = true;
            return;
        }
        draining.insert(call, false);
    }
    let (core, inbox) = (inbox.core.clone(), inbox.clone());
    let span = tracing::info_span!("webhook_events", call_id = %call);
    core.after_commit(
        async move {
        loop {
            let permit = inbox.drain_permits.acquire().await;
            let drained = drain(&inbox.core, call).await;
            if let Ok(count) = drained {
                inbox.handled(count);
            }
            if let Err(err) = drained {
                tracing::warn!(error = ?err, call_id = %call, "handling LiveKit events failed; will retry");
            }
            drop(permit);
            let mut draining = inbox.draining.lock().unwrap_or_else(PoisonError::into_inner);
            match draining.get_mut(&call) {
                Some(again) if *again => *again = false,
                _ => {
                    draining.remove(&call);
                    return;
                }
            }
        }
        }
        .instrument(span),
    );
}

/// Handles the call's pending events in arrival order, a batch per
/// transaction; returns how many. A batch shorter than `BATCH_PER_CALL`
/// took every event committed before it: one stored since was kicked by
/// whoever stored it (here, that sets `again` and `kick` drains once more),
/// so no transaction is spent finding nothing.
pub async fn drain(app: &Core, call_id: CallId) -> Result<usize, CallError> {
    let mut count = 0;
    loop {
        match drain_batch(app, call_id).await {
            Ok(Batch::Handled(n)) if (n as i64) < BATCH_PER_CALL => return Ok(count + n),
            Ok(Batch::Handled(n)) => count += n,
            Ok(Batch::Done) => return Ok(count),
            // One of them failed: one per transaction, until the failing one.
            Ok(Batch::Failed) => return drain_one_by_one(app, call_id).await.map(|n| count + n),
            Err(err) => return Err(err),
        }
    }
}

enum Batch {
    Handled(usize),
    Done,
    Failed,
}

/// One transaction: the call locked, up to `BATCH_PER_CALL` of its events
/// taken and marked processed (one statement), handled; after the commit
/// LiveKit is told what they decided, once. A batch that does not commit
/// leaves them unhandled.
async fn drain_batch(app: &Core, call_id: CallId) -> Result<Batch, CallError> {
    let mut tx = app.db.begin().await?;
    let call = store::lock_call(&mut tx, call_id).await?;
    let pending = store::livekit_inbox::claim_pending(&mut tx, call_id, BATCH_PER_CALL).await?;
    let Some(first) = pending.first() else { return Ok(Batch::Done) };
    let Some(mut call) = call else {
        // The call's start may not have committed yet; wait for it, but
        // not for ever.
        if first.received_at < app.clock.now() - ORPHAN_EVENT_AGE {
            store::livekit_inbox::mark_all_processed(&mut tx, call_id).await?;
            tx.commit().await?;
        }
        return Ok(Batch::Done);
    };
    let mut effects = Effects::for_call(call_id);
    let mut ended = None;
    let mut ids = Vec::with_capacity(pending.len());
    let mut timeline = Vec::with_capacity(pending.len());
    let mut changed = false;
    let mut pending = pending.into_iter();
    for next in pending.by_ref() {
        if changed {
            // The event before changed the call: the next sees it as it is now.
            match store::find_call(&mut *tx, call_id).await? {
                Some(row) => call = row,
                None => {
                    // Gone meanwhile: this one and the rest stay unhandled.
                    let rest: Vec<String> =
                        std::iter::once(next.id).chain(pending.by_ref().map(|p| p.id)).collect();
                    store::livekit_inbox::unclaim(&mut tx, &rest).await?;
                    break;
                }
            }
        }
        let Some(event) = next.payload.and_then(livekit::decode_event) else {
            ids.push(next.id);
            changed = false;
            continue;
        };
        let user = event.participant.as_ref().map(|p| p.identity.as_str()).unwrap_or_default();
        let span = tracing::info_span!("webhook_event", event_id = %next.id, event = %event.kind.as_str(), user_id = user);
        match handle::handle(app, &mut tx, &call, &event).instrument(span).await {
            Ok(handled) => {
                effects.merge(handled.effects);
                ended = ended.or(handled.ended);
                timeline.push(handled.timeline);
                changed = handled.call_changed;
            }
            Err(err) => {
                tracing::debug!(error = ?err, event_id = %next.id, "an event of a batch failed; one by one");
                return Ok(Batch::Failed);
            }
        }
        ids.push(next.id);
    }
    store::record_events(&mut tx, call_id, &timeline).await?;
    tx.commit().await?;
    // LiveKit is told in the background: a slow LiveKit holds up neither
    // this call's next events nor other calls' events.
    enforce::settle_later(app, effects);
    if let Some(ended) = ended {
        let core = app.clone();
        app.after_commit(async move { lifecycle::after_end(&core, &ended).await });
    }
    Ok(Batch::Handled(ids.len()))
}

/// Handles the call's pending events one per transaction, in arrival order;
/// returns how many. The way past an event that fails.
async fn drain_one_by_one(app: &Core, call_id: CallId) -> Result<usize, CallError> {
    let mut count = 0;
    loop {
        let mut tx = app.db.begin().await?;
        let call = store::lock_call(&mut tx, call_id).await?;
        let next = store::livekit_inbox::lock_next_pending(&mut tx, call_id).await?;
        let Some(next) = next else { return Ok(count) };
        let Some(call) = call else { return Ok(count) };
        let event = next.payload.and_then(livekit::decode_event);
        let handled = match &event {
            Some(event) => {
                let user = event.participant.as_ref().map(|p| p.identity.as_str()).unwrap_or_default();
                let span = tracing::info_span!("webhook_event", event_id = %next.id, event = %event.kind.as_str(), user_id = user);
                handle::handle(app, &mut tx, &call, event).instrument(span).await.map(Some)
            }
            None => Ok(None),
        };
        let handled = match handled {
            Ok(handled) => handled,
            Err(err) => {
                drop(tx);
                give_up_after_failures(app, &next.id).await?;
                return Err(err);
            }
        };
        if let Some(handled) = &handled {
            store::record_events(&mut tx, call_id, std::slice::from_ref(&handled.timeline)).await?;
        }
        store::livekit_inbox::mark_processed(&mut tx, &next.id).await?;
        tx.commit().await?;
        if let Some(handle::Handled { ended, effects, .. }) = handled {
            enforce::settle_later(app, effects);
            if let Some(ended) = ended {
                let core = app.clone();
                app.after_commit(async move { lifecycle::after_end(&core, &ended).await });
            }
        }
        count += 1;
    }
}

async fn give_up_after_failures(app: &Core, id: &str) -> sqlx::Result<()> {
    let attempts = store::livekit_inbox::count_failure(&app.db, id, MAX_ATTEMPTS).await?;
    if attempts.is_some_and(|n| n >= MAX_ATTEMPTS) {
        tracing::error!(id, "a LiveKit event failed {MAX_ATTEMPTS} times and is set aside");
    }
    Ok(())
}

/// Handles events left behind (a failed handling, or an instance that
/// stopped before handling them); at most `limit` calls' worth.
pub async fn retry_stranded(app: &Core, limit: i64) -> Result<usize, CallError> {
    let calls = store::livekit_inbox::stranded_calls(&app.db, limit).await?;
    let mut handled = 0;
    for call in calls {
        handled += drain(app, call).await?;
    }
    Ok(handled)
}
