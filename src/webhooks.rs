//! What LiveKit's webhooks mean for a call. They are verified and stored
//! by `crate::webhook_inbox`, which hands them here one at a time, per call
//! in arrival order, in a transaction holding the call's row lock; every
//! event goes into the call's timeline, whatever it changed.
//!
//! Events still come late, out of order or never (the reconciler repairs
//! what never comes). A participant's LiveKit session (`joined_at_ms`)
//! orders their joins and departures: a `participant_left` of an older
//! session does not undo a newer join, and a departure because the same
//! identity joined again (a reconnect) is no departure. Nothing revives an
//! ended call or a participant who is gone.

use chrono::{DateTime, Utc};
use livekit_protocol as proto;
use serde_json::json;
use sqlx::PgConnection;

use crate::calls::{Ended, finish};
use crate::domain::{CallId, CallState, EndReason, EventSource, Outcome, ParticipantStatus, UserId};
use crate::error::ApiError;
use crate::metrics::WebhookResult;
use crate::state::AppState;
use crate::store::{self, CallRow, DeadlineKind};
use crate::video;
use crate::views::CallView;

pub fn verify(app: &AppState, body: &str, authorization: &str) -> Result<proto::WebhookEvent, ApiError> {
    app.webhooks.receive(body, authorization).map_err(|err| {
        tracing::warn!(error = %err, "LiveKit webhook refused");
        app.metrics.livekit_webhook(None, WebhookResult::Rejected);
        ApiError::Unauthorized("invalid webhook signature")
    })
}

/// When the participant's LiveKit session began: it orders their joins and departures.
pub fn session_of(info: &proto::ParticipantInfo) -> Option<DateTime<Utc>> {
    if info.joined_at_ms > 0 {
        DateTime::from_timestamp_millis(info.joined_at_ms)
    } else if info.joined_at > 0 {
        DateTime::from_timestamp(info.joined_at, 0)
    } else {
        None
    }
}

/// What one event changes, in the call's locked transaction. Returns the
/// call if it ended (for `calls::after_end` after the commit).
pub async fn handle(
    app: &AppState,
    tx: &mut PgConnection,
    call: &CallRow,
    event: &proto::WebhookEvent,
) -> Result<Option<Ended>, ApiError> {
    let participant = event.participant.as_ref();
    let identity = participant.map(|p| p.identity.clone()).unwrap_or_default();
    let session = participant.and_then(session_of);
    let mut ended = None;
    let mut applied = false;
    if call.state.is_live() {
        match event.event.as_str() {
            "participant_joined" => {
                applied = joined(app, tx, call, &identity, session).await?;
            }
            "participant_left" | "participant_connection_aborted" => {
                let reason = participant
                    .and_then(|p| proto::DisconnectReason::try_from(p.disconnect_reason).ok())
                    .unwrap_or(proto::DisconnectReason::UnknownReason);
                match left(app, tx, call, &identity, session, Departure::LiveKit(reason)).await? {
                    Left::Ignored => {}
                    Left::Left => applied = true,
                    Left::CallEnded(end) => (applied, ended) = (true, Some(*end)),
                }
            }
            "room_finished" => {
                let outcome =
                    if call.state == CallState::Active { Outcome::Completed } else { Outcome::Failed };
                let end =
                    finish(tx, call, outcome, EndReason::RoomClosed, EventSource::LiveKit, None).await?;
                (applied, ended) = (true, Some(end));
            }
            "track_published" => {
                if let (Some(participant), Some(track)) = (participant, &event.track) {
                    let at = DateTime::from_timestamp(event.created_at, 0);
                    applied = video::on_track_published(app, tx, call, participant, track, at).await?;
                }
            }
            _ => {}
        }
    }
    let mut data = json!({
        "livekitEventId": event.id,
        "identity": identity,
        "createdAt": DateTime::from_timestamp(event.created_at, 0),
        "applied": applied,
    });
    if let Some(track) = &event.track {
        let source = proto::TrackSource::try_from(track.source).unwrap_or(proto::TrackSource::Unknown);
        data["trackSid"] = json!(track.sid);
        data["source"] = json!(source.as_str_name().to_ascii_lowercase());
    }
    let actor = (!identity.is_empty()).then_some(identity.as_str());
    let kind = format!("livekit.{}", event.event);
    store::record_event(tx, call.call_id(), &kind, EventSource::LiveKit, actor, data).await?;
    Ok(ended)
}

async fn known_session(
    tx: &mut PgConnection,
    call: CallId,
    user: &str,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar("select lk_session_at from call_participants where call_id = $1 and user_id = $2")
        .bind(call.0)
        .bind(user)
        .fetch_optional(tx)
        .await
        .map(Option::flatten)
}

async fn remember_session(
    tx: &mut PgConnection,
    call: CallId,
    user: &str,
    session: Option<DateTime<Utc>>,
) -> sqlx::Result<()> {
    sqlx::query(
        "update call_participants set lk_session_at = greatest(lk_session_at, $3) \
         where call_id = $1 and user_id = $2",
    )
    .bind(call.0)
    .bind(user)
    .bind(session)
    .execute(tx)
    .await?;
    Ok(())
}

/// A participant is in the room (a webhook says so, or the reconciler saw
/// them). Returns whether it changed anything.
pub async fn joined(
    app: &AppState,
    tx: &mut PgConnection,
    call: &CallRow,
    identity: &str,
    session: Option<DateTime<Utc>>,
) -> Result<bool, ApiError> {
    let id = call.call_id();
    let participants = store::participants(tx, id).await?;
    let Some(me) = participants.iter().find(|p| p.user_id == identity) else {
        return Ok(false);
    };
    if !me.live {
        return Ok(false);
    }
    let known = known_session(tx, id, identity).await?;
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
    remember_session(tx, id, identity, session).await?;
    // Whatever their token said, a new session gets the rights of now.
    video::on_room_join(app, tx, call, identity).await?;
    if me.status == ParticipantStatus::Joined {
        return Ok(true);
    }
    store::mark_joined(tx, id, identity).await?;
    let present = participants
        .iter()
        .filter(|p| p.user_id == identity || p.status == ParticipantStatus::Joined)
        .count();
    if present >= 2 && call.state == CallState::Connecting {
        store::set_state(tx, id, CallState::Active).await?;
        store::cancel(tx, id, DeadlineKind::Connect).await?;
        let due = Utc::now()
            + chrono::Duration::from_std(app.config.timeouts.max_call_duration)
                .unwrap_or(chrono::Duration::MAX);
        store::schedule(tx, id, DeadlineKind::MaxDuration, due, None).await?;
    }
    let view = CallView::load(tx, call).await?;
    let others: Vec<String> =
        view.participants.iter().filter(|p| p.user_id != identity).map(|p| p.user_id.clone()).collect();
    store::notify(tx, &others, "participant.joined", id, &json!({"call": view, "userId": identity})).await?;
    Ok(true)
}

/// Why a participant is no longer in the room.
#[derive(Clone, Copy, Debug)]
pub enum Departure {
    LiveKit(proto::DisconnectReason),
    /// The reconciler found them missing from the room.
    Missing,
}

pub enum Left {
    Ignored,
    Left,
    CallEnded(Box<Ended>),
}

/// A participant left the room. A departure of an older session than the
/// one we know is stale, and one because the same identity joined again is
/// a reconnect: both change nothing.
pub async fn left(
    app: &AppState,
    tx: &mut PgConnection,
    call: &CallRow,
    identity: &str,
    session: Option<DateTime<Utc>>,
    why: Departure,
) -> Result<Left, ApiError> {
    let id = call.call_id();
    let participants = store::participants(tx, id).await?;
    let Some(me) = participants.iter().find(|p| p.user_id == identity) else {
        return Ok(Left::Ignored);
    };
    if !me.live || me.status == ParticipantStatus::Invited {
        return Ok(Left::Ignored);
    }
    if let Departure::LiveKit(
        proto::DisconnectReason::DuplicateIdentity | proto::DisconnectReason::Migration,
    ) = why
    {
        return Ok(Left::Ignored);
    }
    let known = known_session(tx, id, identity).await?;
    if let (Some(session), Some(known)) = (session, known)
        && session < known
    {
        return Ok(Left::Ignored);
    }
    remember_session(tx, id, identity, session).await?;
    store::mark_gone(tx, id, identity, ParticipantStatus::Left).await?;
    let source = match why {
        Departure::LiveKit(_) => EventSource::LiveKit,
        Departure::Missing => {
            let data = json!({"reason": "missing_from_room"});
            store::record_event(tx, id, "participant.left", EventSource::System, Some(identity), data)
                .await?;
            EventSource::System
        }
    };
    let remaining = participants.iter().filter(|p| p.live && p.user_id != identity).count();
    let user = UserId::parse(identity).ok();
    if remaining < 2 {
        let outcome = if call.state == CallState::Active { Outcome::Completed } else { Outcome::Cancelled };
        let ended = finish(tx, call, outcome, EndReason::Hangup, source, user.as_ref()).await?;
        return Ok(Left::CallEnded(Box::new(ended)));
    }
    if let Some(user) = &user {
        video::on_leave(app, tx, call, user).await?;
    }
    let view = CallView::load(tx, call).await?;
    let others: Vec<String> =
        view.participants.iter().filter(|p| p.user_id != identity).map(|p| p.user_id.clone()).collect();
    store::notify(tx, &others, "participant.left", id, &json!({"call": view, "userId": identity})).await?;
    Ok(Left::Left)
}
