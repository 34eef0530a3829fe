//! What LiveKit's webhooks mean for a call. They are verified and stored
//! by `crate::ingest::inbox`, which hands them here one at a time, per call
//! in arrival order, in a transaction holding the call's row lock; every
//! event goes into the call's timeline, whatever it changed. What LiveKit
//! must be told in return (rights, removals) is returned as
//! `enforce::Effects`, for after the commit: no LiveKit request is made
//! while the lock is held.
//!
//! Whoever joins a call's room without being present in the call (gone
//! from it, never in it, removed) is put out of the room at once, and a
//! video track under another label puts its publisher out of the call.
//!
//! Only people count: a participant LiveKit reports of another kind (a
//! recorder of LiveKit Egress, kind `EGRESS`, identity `EG_...`; an agent)
//! is judged by that kind, never by its identity (a user's id may look like
//! anything), and its joins, departures and tracks change nothing; they go
//! into the timeline without an actor. Egress's own events
//! (`egress_started`, `egress_updated`, `egress_ended`) are the call's by
//! their recording's room and, for now, only go into the timeline.
//!
//! Events still come late, out of order or never (the reconciler repairs
//! what never comes). A participant's LiveKit session (`joined_at_ms`)
//! orders their joins and departures: a `participant_left` of an older
//! session does not undo a newer join, and a departure because the same
//! identity joined again (a reconnect) is no departure. Nothing revives an
//! ended call or a participant who is gone.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;

use crate::calls::CallError;
use crate::calls::Core;
use crate::calls::consent::{self, Judgement};
use crate::calls::enforce::Effects;
use crate::calls::lifecycle::{Ended, finish};
use crate::calls::participants::{self, Departure, Left};
use crate::domain::{self, call::Ending};
use crate::domain::{CallState, EventSource};
use crate::livekit::{Event, EventKind, TrackSeen};
use crate::store::{self, CallRow};

/// What handling an event leaves for after the commit.
#[must_use]
pub struct Handled {
    /// The call, if it ended (for `lifecycle::after_end`).
    pub ended: Option<Ended>,
    pub effects: Effects,
    /// The event's own row in the call's timeline, for the caller to write
    /// (a batch of events writes theirs in one statement).
    pub timeline: store::NewEvent,
    /// Whether the call's own row may have changed: the next event of a
    /// batch must then read it again. A join to a call already active (not
    /// an appointment's) changes only its participants' rows, and an event
    /// nothing is done for changes nothing: a burst of joins reads the call
    /// once.
    pub call_changed: bool,
}

/// What one event changes, in the call's locked transaction. The rows its
/// handling adds to the timeline are written here; the event's own row is
/// returned (`Handled::timeline`).
pub async fn handle(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    event: &Event,
) -> Result<Handled, CallError> {
    let participant = event.participant.as_ref();
    let identity = participant.map(|p| p.identity.clone()).unwrap_or_default();
    let session = participant.and_then(|p| p.session);
    let mut ended = None;
    let mut applied = false;
    let mut call_changed = false;
    let mut effects = Effects::for_call(call.call_id());
    let person = participant.is_some_and(|p| p.is_person);
    if !call.state.is_live() && person && event.kind == EventKind::ParticipantJoined {
        // Someone in the room of an ended call (an old token): out.
        effects.remove.push(identity.clone());
    }
    if call.state.is_live() {
        match &event.kind {
            EventKind::ParticipantJoined if person => {
                applied = participants::in_room(app, tx, call, &identity, session, &mut effects).await?;
                // It connects the call (`set_state`) or an appointment's
                // meeting (`meeting::on_presence`); else only participants.
                call_changed =
                    applied && (call.state == CallState::Connecting || call.appointment_id.is_some());
            }
            EventKind::ParticipantLeft | EventKind::ParticipantConnectionAborted if person => {
                let reason = participant.map(|p| p.disconnect_reason).unwrap_or_default();
                let why = Departure::LiveKit(reason);
                match participants::depart(app, tx, call, &identity, session, why, &mut effects).await? {
                    Left::Ignored => {}
                    Left::Left => (applied, call_changed) = (true, true),
                    Left::CallEnded(end) => (applied, call_changed, ended) = (true, true, Some(*end)),
                }
            }
            // An appointment that has not met is not ended by its room
            // closing (a guest who came and went): its no-show deadline
            // ends it, and the next join opens the room again.
            EventKind::RoomFinished if crate::calls::meeting::holds_open(tx, call).await? => {}
            EventKind::RoomFinished => {
                let (outcome, reason) = domain::call::end(call.state, Ending::RoomClosed);
                let end = finish(tx, call, outcome, reason, EventSource::LiveKit, None).await?;
                (applied, call_changed, ended) = (true, true, Some(end));
            }
            EventKind::TrackPublished if person => {
                if let Some(track) = &event.track {
                    let at = event.created_at;
                    let (violation, end) =
                        on_track(app, tx, call, &identity, track, at, &mut effects).await?;
                    applied = violation;
                    ended = end;
                    // Whatever it decided (a camera may mark the call's
                    // video used), read again.
                    call_changed = true;
                }
            }
            _ => {}
        }
    }
    // A recording's news matters after the call too (its file is done once
    // the room is gone).
    if let Some(egress) = &event.egress {
        crate::calls::recording::on_egress(app, tx, call, egress).await?;
        call_changed = true;
    }
    let mut data = json!({
        "livekitEventId": event.id,
        "identity": identity,
        "createdAt": event.created_at,
        "applied": applied,
    });
    if let Some(track) = &event.track {
        data["trackSid"] = json!(track.sid);
        data["source"] = json!(track.source_name());
    }
    if participant.is_some() && !person {
        data["person"] = json!(false);
    }
    let timeline = store::NewEvent {
        kind: format!("livekit.{}", event.kind.as_str()),
        source: EventSource::LiveKit,
        actor: (person && !identity.is_empty()).then_some(identity),
        data,
    };
    Ok(Handled { ended, effects, timeline, call_changed })
}

/// A track was published (a webhook says so, or the reconciler saw it):
/// returns whether it broke the rule, and the call if that ended it.
pub async fn on_track(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    identity: &str,
    track: &TrackSeen,
    published_at: Option<DateTime<Utc>>,
    effects: &mut Effects,
) -> Result<(bool, Option<Ended>), CallError> {
    match consent::judge_track(tx, call, identity, track, published_at).await? {
        Judgement::Allowed => Ok((false, None)),
        Judgement::Withdraw { violation } => {
            effects.withdraw.push(identity.to_owned());
            Ok((violation, None))
        }
        Judgement::PutOut(why) => {
            // Out of the room at once (every track of theirs stops reaching
            // anyone), out of the call, and refused new tokens for it.
            effects.remove.push(identity.to_owned());
            let data = json!({"reason": why.reason(), "trackSid": track.sid});
            store::record_event(
                tx,
                call.call_id(),
                "participant.removed",
                EventSource::System,
                Some(identity),
                data,
            )
            .await?;
            let ended = match participants::depart(app, tx, call, identity, None, Departure::Removed, effects)
                .await?
            {
                Left::CallEnded(end) => Some(*end),
                Left::Ignored | Left::Left => None,
            };
            Ok((true, ended))
        }
    }
}
