//! The webhooks to the host application that a call's changes write, in
//! the transaction of the change (`app_webhook_outbox`); delivered by
//! `crate::workers::app_webhooks`.

use serde_json::{Value, json};
use sqlx::PgConnection;

use crate::calls::views::CallView;
use crate::domain::{Outcome, ParticipantStatus, UserId};
use crate::store::{self, CallRow};

/// What every call webhook says about the call.
pub(crate) fn call_data(view: &CallView) -> Value {
    let participants: Vec<Value> = view
        .participants
        .iter()
        .map(|p| json!({"userId": p.user_id, "role": p.role, "status": p.status}))
        .collect();
    let mut data = json!({
        "callId": view.id,
        "type": view.call_type,
        "initiatorId": view.initiator_id,
        "participants": participants,
        "scheduled": view.scheduled,
        "createdAt": view.created_at,
    });
    for (field, value) in [("conversationId", &view.conversation_id), ("externalRef", &view.external_ref)] {
        if let Some(value) = value {
            data[field] = json!(value);
        }
    }
    data
}

pub(crate) async fn enqueue(
    conn: &mut PgConnection,
    kind: &str,
    view: &CallView,
    data: Value,
) -> sqlx::Result<()> {
    store::enqueue_app_webhook(conn, kind, view.id, data).await
}

/// The call started ringing.
pub async fn call_started(conn: &mut PgConnection, view: &CallView) -> sqlx::Result<()> {
    enqueue(conn, "call.started", view, call_data(view)).await
}

/// The first callee answered: the call went from ringing to connecting.
pub async fn call_answered(conn: &mut PgConnection, view: &CallView, by: &UserId) -> sqlx::Result<()> {
    let mut data = call_data(view);
    data["answeredBy"] = json!(by);
    data["answeredAt"] = json!(view.answered_at);
    enqueue(conn, "call.answered", view, data).await
}

/// The call ended; for a call nobody answered, also `call.missed`.
pub async fn call_ended(conn: &mut PgConnection, call: &CallRow, view: &CallView) -> sqlx::Result<()> {
    let mut data = call_data(view);
    data["outcome"] = json!(view.outcome);
    data["endReason"] = json!(view.end_reason);
    // Counted from the moment the call became active; 0 if it never did.
    data["durationSeconds"] = json!(view.duration_seconds.unwrap_or(0));
    data["videoUsed"] = json!(call.video_used);
    data["answeredAt"] = json!(view.answered_at);
    data["connectedAt"] = json!(view.connected_at);
    data["endedAt"] = json!(view.ended_at);
    enqueue(conn, "call.ended", view, data).await?;
    if view.outcome == Some(Outcome::Missed) {
        call_missed(conn, view).await?;
    }
    Ok(())
}

/// Callees who were rung and never answered (`missedBy`): a whole call
/// nobody answered, or the callees of a group call that went on without
/// them.
pub async fn call_missed(conn: &mut PgConnection, view: &CallView) -> sqlx::Result<()> {
    let missed: Vec<&str> = view
        .participants
        .iter()
        .filter(|p| p.status == ParticipantStatus::Missed)
        .map(|p| p.user_id.as_str())
        .collect();
    if missed.is_empty() {
        return Ok(());
    }
    let mut data = call_data(view);
    data["missedBy"] = json!(missed);
    enqueue(conn, "call.missed", view, data).await
}
