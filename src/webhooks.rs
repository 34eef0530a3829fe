//! LiveKit's webhooks: verified over the raw body, deduplicated on the
//! event id (in the same transaction that acts on them, so a failed
//! handling is retried on redelivery), and turned into call transitions.

use chrono::DateTime;
use livekit_protocol as proto;
use serde_json::json;
use sqlx::PgConnection;

use crate::calls::{self, finish};
use crate::domain::{CallState, EndReason, EventSource, Outcome, ParticipantStatus, UserId};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{self, CallRow, DeadlineKind};
use crate::video;
use crate::views::CallView;

pub fn verify(app: &AppState, body: &str, authorization: &str) -> Result<proto::WebhookEvent, ApiError> {
    app.webhooks.receive(body, authorization).map_err(|err| {
        tracing::warn!(error = %err, "LiveKit webhook refused");
        ApiError::Unauthorized("invalid webhook signature")
    })
}

#[tracing::instrument(skip_all, fields(event = %event.event, id = %event.id, call_id))]
pub async fn handle(app: &AppState, event: proto::WebhookEvent) -> Result<(), ApiError> {
    let Some(room) = event.room.as_ref().map(|r| r.name.clone()) else {
        return Ok(());
    };
    // Rooms of other deployments sharing the LiveKit server are not ours.
    let Some(call_id) = app.livekit.call_of_room(&room) else {
        return Ok(());
    };
    tracing::Span::current().record("call_id", tracing::field::display(call_id));
    let mut tx = app.db.begin().await?;
    let created_at = DateTime::from_timestamp(event.created_at, 0);
    if !event.id.is_empty()
        && !store::first_delivery(&mut tx, &event.id, &event.event, Some(&room), created_at).await?
    {
        tracing::debug!("duplicate delivery ignored");
        return Ok(());
    }
    let Some(call) = store::lock_call(&mut tx, call_id).await? else {
        tx.commit().await?;
        return Ok(());
    };
    let identity = event.participant.as_ref().map(|p| p.identity.clone()).unwrap_or_default();
    let mut ended = false;
    if call.state.is_live() {
        match event.event.as_str() {
            "participant_joined" => participant_joined(app, &mut tx, &call, &identity).await?,
            "participant_left" | "participant_connection_aborted" => {
                ended = participant_left(app, &mut tx, &call, &identity).await?;
            }
            "room_finished" => {
                let outcome =
                    if call.state == CallState::Active { Outcome::Completed } else { Outcome::Failed };
                finish(&mut tx, &call, outcome, EndReason::RoomClosed, EventSource::LiveKit, None).await?;
                ended = true;
            }
            "track_published" => {
                if let (Some(participant), Some(track)) = (&event.participant, &event.track) {
                    video::on_track_published(app, &mut tx, &call, participant, track).await?;
                }
            }
            _ => {}
        }
    }
    let data = json!({"livekitEventId": event.id, "identity": identity});
    let actor = (!identity.is_empty()).then_some(identity.as_str());
    store::record_event(
        &mut tx,
        call_id,
        &format!("livekit.{}", event.event),
        EventSource::LiveKit,
        actor,
        data,
    )
    .await?;
    tx.commit().await?;
    if ended {
        calls::delete_room(app, &call.room_name).await;
    }
    Ok(())
}

async fn participant_joined(
    app: &AppState,
    tx: &mut PgConnection,
    call: &CallRow,
    identity: &str,
) -> Result<(), ApiError> {
    let id = call.call_id();
    let participants = store::participants(tx, id).await?;
    let Some(me) = participants.iter().find(|p| p.user_id == identity) else {
        return Ok(());
    };
    if !me.live {
        return Ok(());
    }
    store::mark_joined(tx, id, identity).await?;
    let present = participants
        .iter()
        .filter(|p| p.user_id == identity || p.status == ParticipantStatus::Joined)
        .count();
    if present >= 2 && call.state == CallState::Connecting {
        store::set_state(tx, id, CallState::Active).await?;
        store::cancel(tx, id, DeadlineKind::Connect).await?;
        let due = chrono::Utc::now()
            + chrono::Duration::from_std(app.config.timeouts.max_call_duration)
                .unwrap_or(chrono::Duration::MAX);
        store::schedule(tx, id, DeadlineKind::MaxDuration, due, None).await?;
    }
    video::on_room_join(app, tx, call, identity).await?;
    let fresh = store::lock_call(tx, id).await?.unwrap_or_else(|| call.clone());
    let view = CallView::load(tx, &fresh).await?;
    let others: Vec<String> =
        view.participants.iter().filter(|p| p.user_id != identity).map(|p| p.user_id.clone()).collect();
    store::notify(tx, &others, "participant.joined", id, &json!({"call": view, "userId": identity})).await?;
    Ok(())
}

/// Returns whether the call ended because too few people remain.
async fn participant_left(
    app: &AppState,
    tx: &mut PgConnection,
    call: &CallRow,
    identity: &str,
) -> Result<bool, ApiError> {
    let id = call.call_id();
    let participants = store::participants(tx, id).await?;
    let Some(me) = participants.iter().find(|p| p.user_id == identity) else {
        return Ok(false);
    };
    if !me.live || me.status == ParticipantStatus::Invited {
        return Ok(false);
    }
    store::mark_gone(tx, id, identity, ParticipantStatus::Left).await?;
    let remaining = participants.iter().filter(|p| p.live && p.user_id != identity).count();
    let user = UserId::parse(identity).ok();
    if remaining < 2 {
        let outcome = if call.state == CallState::Active { Outcome::Completed } else { Outcome::Cancelled };
        finish(tx, call, outcome, EndReason::Hangup, EventSource::LiveKit, user.as_ref()).await?;
        return Ok(true);
    }
    if let Some(user) = &user {
        video::on_leave(app, tx, call, user).await?;
    }
    let view = CallView::load(tx, call).await?;
    let others: Vec<String> =
        view.participants.iter().filter(|p| p.user_id != identity).map(|p| p.user_id.clone()).collect();
    store::notify(tx, &others, "participant.left", id, &json!({"call": view, "userId": identity})).await?;
    Ok(false)
}
