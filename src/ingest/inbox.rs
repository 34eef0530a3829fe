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
//! order (`seq`) under the call's row lock, one event per transaction that
//! also marks it processed (`crate::ingest::handle::handle`). An event whose
//! handling fails stays in the inbox and the reconciler retries it; after a
//! few failures it is set aside.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::calls::CallError;
use crate::calls::Core;
use crate::calls::enforce;
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
/// How many calls' events one instance handles at once: the rest of the
/// database pool stays free for the API.
const CONCURRENT_DRAINS: usize = 4;
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
}

impl Inbox {
    pub fn new(core: Core) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        Inbox {
            core,
            sender,
            receiver: Mutex::new(Some(receiver)),
            draining: Mutex::default(),
            drain_permits: Semaphore::new(CONCURRENT_DRAINS),
        }
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
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => None,
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
    let inbox = inbox.clone();
    let span = tracing::info_span!("webhook_events", call_id = %call);
    tokio::spawn(
        async move {
        loop {
            let permit = inbox.drain_permits.acquire().await;
            if let Err(err) = drain(&inbox.core, call).await {
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

/// Handles the call's pending events in arrival order; returns how many.
pub async fn drain(app: &Core, call_id: CallId) -> Result<usize, CallError> {
    let mut count = 0;
    loop {
        let mut tx = app.db.begin().await?;
        let call = store::lock_call(&mut tx, call_id).await?;
        let next = store::livekit_inbox::lock_next_pending(&mut tx, call_id).await?;
        let Some(next) = next else { return Ok(count) };
        let Some(call) = call else {
            // The call's start may not have committed yet; wait for it, but
            // not for ever.
            if next.received_at < app.clock.now() - ORPHAN_EVENT_AGE {
                store::livekit_inbox::mark_all_processed(&mut tx, call_id).await?;
                tx.commit().await?;
            }
            return Ok(count);
        };
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
        store::livekit_inbox::mark_processed(&mut tx, &next.id).await?;
        tx.commit().await?;
        if let Some(handle::Handled { ended, effects }) = handled {
            // LiveKit is told in the background: a slow LiveKit holds up
            // neither this call's next event nor other calls' events.
            enforce::settle_later(app, effects);
            if let Some(ended) = ended {
                let app = app.clone();
                tokio::spawn(async move { lifecycle::after_end(&app, &ended).await });
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
