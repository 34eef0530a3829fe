//! How a call ends, whatever ends it (a hangup, the last one leaving, a
//! deadline, LiveKit closing its room): in the transaction that decides
//! it, everyone is freed and told, then, once it has committed, its room is
//! deleted.

use serde_json::json;
use sqlx::PgConnection;

use crate::calls::Core;
use crate::calls::meeting;
use crate::calls::ringing;
use crate::calls::views::CallView;
use crate::domain::consent::{LedgerKind, Subject, VideoSession, VideoState};
use crate::domain::{CallState, ClientEvent, EndReason, EventSource, Outcome, RingStop, UserId};
use crate::store::{self, CallRow, Outgoing};

/// A call ended in a transaction, for `after_end` once it has committed: a
/// rolled-back end deletes no room and counts for nothing.
#[must_use = "once the transaction has committed, pass it to `after_end`"]
pub struct Ended {
    /// As it ended.
    pub call: CallRow,
    pub outcome: Outcome,
    pub reason: EndReason,
    /// The call as its participants were told it ended.
    pub view: CallView,
}

impl Ended {
    /// What the metrics count of it.
    pub fn figures(&self) -> crate::metrics::CallEnd {
        crate::metrics::CallEnd {
            outcome: self.outcome,
            reason: self.reason,
            connected_at: self.call.connected_at,
            ended_at: self.call.ended_at,
            video_request_pending: self.call.video_session.0.request.is_some(),
        }
    }
}

/// Ends the call in this transaction: frees everyone, drops its deadlines,
/// writes the timeline and tells the participants. The caller hands the
/// result to `after_end` once the transaction has committed.
pub async fn finish(
    conn: &mut PgConnection,
    call: &CallRow,
    outcome: Outcome,
    reason: EndReason,
    source: EventSource,
    actor: Option<&UserId>,
) -> sqlx::Result<Ended> {
    let id = call.call_id();
    let was_ringing = ringing::still_ringing(conn, id).await?;
    let ended = store::end_call(conn, id, outcome, reason).await?.unwrap_or_else(|| call.clone());
    let participants = store::participants(conn, id).await?;
    let view = CallView::new(&ended, &participants);
    let mut out = Outgoing::default();
    crate::calls::app_webhooks::call_ended(&mut out, &ended, &view);
    let actor = actor.map(UserId::as_str);
    let data = json!({"outcome": outcome, "endReason": reason, "durationSeconds": view.duration_seconds});
    store::record_event(conn, id, "call.ended", source, actor, data).await?;
    let everyone = everyone_in(&view);
    let specific = match outcome {
        Outcome::Missed => Some(ClientEvent::CallMissed),
        Outcome::Cancelled if call.state == CallState::Ringing => Some(ClientEvent::CallCancelled),
        _ => None,
    };
    let payload = json!({"call": view});
    let stop = if outcome == Outcome::Cancelled { RingStop::Cancelled } else { RingStop::Missed };
    for callee in &was_ringing {
        ringing::stopped(&mut out, &view, callee, stop);
    }
    if let Some(kind) = specific {
        out.notify(&everyone, kind, Some(id.0), &payload);
    }
    out.notify(&everyone, ClientEvent::CallEnded, Some(id.0), &payload);
    out.write(conn).await?;
    meeting::on_call_end(conn, &ended, reason).await?;
    if call.recording_session.0.state != VideoState::Off || call.recording_session.0.request.is_some() {
        // The recording ends with the call (egress is told after the commit).
        let closed = VideoSession::default();
        store::recordings::save_session(conn, id, &closed).await?;
        if call.recording_session.0.state == VideoState::On {
            store::consent_ledger::append(conn, id, Subject::Recording, LedgerKind::Off, None, None).await?;
        }
    }
    Ok(Ended { call: ended, outcome, reason, view })
}

/// After the end has committed: counts the call, stops its recording and
/// deletes its room (which ends any recording egress still makes of it).
pub async fn after_end(app: &Core, ended: &Ended) {
    app.metrics.call_ended(&ended.figures());
    if ended.call.recording_session.0.state == VideoState::On {
        stop_recording(app, ended.call.call_id()).await;
    }
    delete_room(app, &ended.call.room_name).await;
}

/// Egress is told the call's recording is over (a job, outside the ending
/// transaction, which has committed). Should this fail, deleting the room
/// ends the recording, and the reconciler deletes rooms no live call owns.
async fn stop_recording(app: &Core, id: crate::domain::CallId) {
    let queued = async {
        let mut tx = app.db.begin().await?;
        store::recordings::sync_after_commit(&mut tx, id, app.clock.now()).await?;
        tx.commit().await
    };
    if let Err(err) = queued.await {
        tracing::warn!(call_id = %id, error = %err, "could not queue the end of a recording");
    }
}

pub async fn delete_room(app: &Core, room: &str) {
    if let Err(err) = app.livekit.delete_room(room).await {
        // The reconciler deletes rooms that no live call owns.
        tracing::warn!(error = %err, room, "could not delete the LiveKit room");
    }
}

/// Those the end is told to: everyone the call rang or held, not those
/// written `busy` (blocked, suspended or in another call), who were never
/// told of it and must not learn it ended either.
fn everyone_in(view: &CallView) -> Vec<String> {
    view.participants
        .iter()
        .filter(|p| p.status != crate::domain::ParticipantStatus::Busy)
        .map(|p| p.user_id.clone())
        .collect()
}
