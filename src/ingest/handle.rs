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
use crate::calls::meeting;
use crate::calls::views::CallView;
use crate::domain::ClientEvent;
use crate::domain::{self, call::Ending};
use crate::domain::{EventSource, ParticipantStatus, UserId};
use crate::livekit::{DisconnectReason, Event, EventKind, TrackSeen};
use crate::store::{self, CallRow, DeadlineKind};

/// What handling an event leaves for after the commit.
#[must_use]
pub struct Handled {
    /// The call, if it ended (for `lifecycle::after_end`).
    pub ended: Option<Ended>,
    pub effects: Effects,
    /// The event's own row in the call's timeline, for the caller to write
    /// (a batch of events writes theirs in one statement).
    pub timeline: store::NewEvent,
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
    let mut effects = Effects::for_call(call.call_id());
    let person = participant.is_some_and(|p| p.is_person);
    if !call.state.is_live() && person && event.kind == EventKind::ParticipantJoined {
        // Someone in the room of an ended call (an old token): out.
        effects.remove.push(identity.clone());
    }
    if call.state.is_live() {
        match &event.kind {
            EventKind::ParticipantJoined if person => {
                applied = joined(app, tx, call, &identity, session, &mut effects).await?;
            }
            EventKind::ParticipantLeft | EventKind::ParticipantConnectionAborted => {
                let reason = participant.map(|p| p.disconnect_reason).unwrap_or_default();
                match left(app, tx, call, &identity, session, Departure::LiveKit(reason)).await? {
                    Left::Ignored => {}
                    Left::Left => applied = true,
                    Left::CallEnded(end) => (applied, ended) = (true, Some(*end)),
                }
            }
            EventKind::RoomFinished => {
                let (outcome, reason) = domain::call::end(call.state, Ending::RoomClosed);
                let end = finish(tx, call, outcome, reason, EventSource::LiveKit, None).await?;
                (applied, ended) = (true, Some(end));
            }
            EventKind::TrackPublished if person => {
                if let Some(track) = &event.track {
                    let at = event.created_at;
                    let (violation, end) =
                        on_track(app, tx, call, &identity, track, at, &mut effects).await?;
                    applied = violation;
                    ended = end;
                }
            }
            _ => {}
        }
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
    let timeline = store::NewEvent {
        kind: format!("livekit.{}", event.kind.as_str()),
        source: EventSource::LiveKit,
        actor: (!identity.is_empty()).then_some(identity),
        data,
    };
    Ok(Handled { ended, effects, timeline })
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
            let ended = match left(app, tx, call, identity, None, Departure::Removed).await? {
                Left::CallEnded(end) => Some(*end),
                Left::Ignored | Left::Left => None,
            };
            Ok((true, ended))
        }
    }
}

/// A person is in the room (a webhook says so, or the reconciler saw them).
/// One who is not present in the call is put out of the room. Returns
/// whether it changed anything.
pub async fn joined(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    identity: &str,
    session: Option<DateTime<Utc>>,
    effects: &mut Effects,
) -> Result<bool, CallError> {
    let id = call.call_id();
    let participants = store::participants(tx, id).await?;
    let me = participants.iter().find(|p| p.user_id == identity);
    let Some(me) = me.filter(|p| p.is_present()) else {
        tracing::info!(identity, "someone not in the call joined its room; removing them");
        effects.remove.push(identity.to_owned());
        return Ok(true);
    };
    let known = me.lk_session_at;
    // A join of the session we know (a second report) or of an older one
    // (late) changes nothing.
    let newer = match (session, known) {
        (Some(session), Some(known)) => session > known,
        (_, None) => true,
        (None, Some(_)) => false,
    };
    if !newer {
        return Ok(false);
    }
    if let Some(session) = session {
        store::participants::remember_session(tx, id, identity, session).await?;
    }
    // Whatever their token said, a new session gets the rights of now.
    effects.rights_for.push(identity.to_owned());
    if me.status == ParticipantStatus::Joined {
        return Ok(true);
    }
    store::mark_joined(tx, id, identity).await?;
    let present = participants
        .iter()
        .filter(|p| p.user_id == identity || p.status == ParticipantStatus::Joined)
        .count();
    if call.appointment_id.is_some() {
        // Active once a host and an admitted guest are here, not any two.
        meeting::on_presence(tx, call, app.clock.now(), app.config.timeouts.max_call_duration).await?;
    } else if let Some(next) = domain::call::connected(call.state, present) {
        store::set_state(tx, id, next).await?;
        store::cancel(tx, id, DeadlineKind::Connect).await?;
        let due = app.clock.now()
            + chrono::Duration::from_std(app.config.timeouts.max_call_duration)
                .unwrap_or(chrono::Duration::MAX);
        store::schedule(tx, id, DeadlineKind::MaxDuration, due, None).await?;
    }
    let view = CallView::load(tx, call).await?;
    let others: Vec<String> =
        view.participants.iter().filter(|p| p.user_id != identity).map(|p| p.user_id.clone()).collect();
    store::notify(
        tx,
        &others,
        ClientEvent::ParticipantJoined,
        id,
        &json!({"call": view, "userId": identity}),
    )
    .await?;
    Ok(true)
}

/// Why a participant is no longer in the room.
#[derive(Clone, Copy, Debug)]
pub enum Departure {
    LiveKit(DisconnectReason),
    /// The reconciler found them missing from the room.
    Missing,
    /// Put out for breaking the video rule.
    Removed,
    /// `reconnecting` for all of `REJOIN_GRACE` and not back.
    GraceOver,
}

pub enum Left {
    Ignored,
    /// They left, or (a dropped connection) are `reconnecting`.
    Left,
    CallEnded(Box<Ended>),
}

/// A participant left the room. A departure of an older session than the
/// one we know is stale, and one because the same identity joined again is
/// a reconnect: both change nothing.
pub async fn left(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    identity: &str,
    session: Option<DateTime<Utc>>,
    why: Departure,
) -> Result<Left, CallError> {
    let id = call.call_id();
    let participants = store::participants(tx, id).await?;
    let Some(me) = participants.iter().find(|p| p.user_id == identity) else {
        return Ok(Left::Ignored);
    };
    if !me.live || me.status == ParticipantStatus::Invited {
        return Ok(Left::Ignored);
    }
    if let Departure::LiveKit(DisconnectReason::DuplicateIdentity | DisconnectReason::Migration) = why {
        return Ok(Left::Ignored);
    }
    if let (Some(session), Some(known)) = (session, me.lk_session_at)
        && session < known
    {
        return Ok(Left::Ignored);
    }
    if let Some(session) = session {
        store::participants::remember_session(tx, id, identity, session).await?;
    }
    if let Departure::LiveKit(DisconnectReason::Other) = why {
        // A blip is not a hang-up: only a leave or a removal is a departure at once.
        if me.status == ParticipantStatus::Reconnecting || dropped(app, tx, call, identity).await? {
            return Ok(Left::Left);
        }
    }
    let status =
        if matches!(why, Departure::Removed) { ParticipantStatus::Removed } else { ParticipantStatus::Left };
    store::mark_gone(tx, id, identity, status).await?;
    let source = match why {
        Departure::LiveKit(_) => EventSource::LiveKit,
        Departure::Removed => EventSource::System,
        Departure::Missing | Departure::GraceOver => {
            let reason =
                if matches!(why, Departure::Missing) { "missing_from_room" } else { "rejoin_grace_over" };
            let data = json!({"reason": reason});
            store::record_event(tx, id, "participant.left", EventSource::System, Some(identity), data)
                .await?;
            EventSource::System
        }
    };
    let remaining = participants.iter().filter(|p| p.live && p.user_id != identity).count();
    let user = UserId::parse(identity).ok();
    if remaining < 2 && !meeting::holds_open(tx, call).await? {
        let ending = if matches!(why, Departure::Removed) { Ending::Removed } else { Ending::LastLeft };
        let (outcome, reason) = domain::call::end(call.state, ending);
        let ended = finish(tx, call, outcome, reason, source, user.as_ref()).await?;
        return Ok(Left::CallEnded(Box::new(ended)));
    }
    if let Some(user) = &user {
        consent::on_leave(app, tx, call, user).await?;
    }
    let view = CallView::load(tx, call).await?;
    let others: Vec<String> =
        view.participants.iter().filter(|p| p.user_id != identity).map(|p| p.user_id.clone()).collect();
    store::notify(tx, &others, ClientEvent::ParticipantLeft, id, &json!({"call": view, "userId": identity}))
        .await?;
    Ok(Left::Left)
}

/// A joined participant's connection dropped: `reconnecting` until they are
/// back or `REJOIN_GRACE` is over (a durable deadline); the others hear
/// `participant.reconnecting`. False if they were not `joined`.
async fn dropped(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    identity: &str,
) -> Result<bool, CallError> {
    let id = call.call_id();
    if !store::participants::mark_reconnecting(tx, id, identity).await? {
        return Ok(false);
    }
    let grace = rejoin_grace(app, tx, call).await?;
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    store::deadlines::schedule_earliest(tx, id, DeadlineKind::Rejoin, app.clock.now() + grace).await?;
    store::record_event(tx, id, "participant.reconnecting", EventSource::LiveKit, Some(identity), json!({}))
        .await?;
    let view = CallView::load(tx, call).await?;
    let others: Vec<String> =
        view.participants.iter().filter(|p| p.user_id != identity).map(|p| p.user_id.clone()).collect();
    let data = json!({"call": view, "userId": identity});
    store::notify(tx, &others, ClientEvent::ParticipantReconnecting, id, &data).await?;
    Ok(true)
}

/// `REJOIN_GRACE` is over for the call's oldest drop: whoever has been
/// `reconnecting` that long is `left` (a 1:1 call ends); the deadline moves
/// on to the next drop, if any. Returns the call if it ended.
pub async fn rejoin_grace_over(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
) -> Result<Option<Ended>, CallError> {
    let id = call.call_id();
    let grace = rejoin_grace(app, tx, call).await?;
    for user in store::participants::reconnecting_past(tx, id, grace).await? {
        let call = store::lock_call(tx, id).await?.unwrap_or_else(|| call.clone());
        if let Left::CallEnded(ended) = left(app, tx, &call, &user, None, Departure::GraceOver).await? {
            return Ok(Some(*ended));
        }
    }
    if let Some(since) = store::participants::first_reconnecting_since(tx, id).await? {
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        store::deadlines::schedule_earliest(tx, id, DeadlineKind::Rejoin, since + grace).await?;
    }
    Ok(None)
}

/// The call's rejoin grace (fixed at its start), else `REJOIN_GRACE`.
async fn rejoin_grace(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
) -> sqlx::Result<std::time::Duration> {
    let own = store::calls::rejoin_grace(tx, call.call_id()).await?;
    Ok(own.unwrap_or(app.config.timeouts.rejoin_grace))
}
