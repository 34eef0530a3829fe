//! The webhooks to the host application that a call's changes write, in
//! the transaction of the change (`app_webhook_outbox`, gathered in the
//! transaction's `store::Outgoing`); delivered by `crate::workers::app_webhooks`.

use serde_json::{Value, json};

use crate::calls::views::CallView;
use crate::domain::{Outcome, ParticipantStatus, UserId};
use crate::store::{CallRow, Outgoing};

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

pub(crate) fn enqueue(out: &mut Outgoing, kind: &str, view: &CallView, data: Value) {
    out.hook(kind, view.id, data);
}

/// The call started ringing.
pub fn call_started(out: &mut Outgoing, view: &CallView) {
    enqueue(out, "call.started", view, call_data(view));
}

/// The first callee answered: the call went from ringing to connecting.
pub fn call_answered(out: &mut Outgoing, view: &CallView, by: &UserId) {
    let mut data = call_data(view);
    data["answeredBy"] = json!(by);
    data["answeredAt"] = json!(view.answered_at);
    enqueue(out, "call.answered", view, data);
}

/// The call ended; for a call nobody answered, also `call.missed`.
pub fn call_ended(out: &mut Outgoing, call: &CallRow, view: &CallView) {
    let mut data = call_data(view);
    data["outcome"] = json!(view.outcome);
    data["endReason"] = json!(view.end_reason);
    // Counted from the moment the call became active; 0 if it never did.
    data["durationSeconds"] = json!(view.duration_seconds.unwrap_or(0));
    data["videoUsed"] = json!(call.video_used);
    data["answeredAt"] = json!(view.answered_at);
    data["connectedAt"] = json!(view.connected_at);
    data["endedAt"] = json!(view.ended_at);
    enqueue(out, "call.ended", view, data);
    if view.outcome == Some(Outcome::Missed) {
        call_missed(out, view);
    }
}

/// Callees who were rung and never answered (`missedBy`): a whole call
/// nobody answered, or the callees of a group call that went on without
/// them.
pub fn call_missed(out: &mut Outgoing, view: &CallView) {
    let missed: Vec<&str> = view
        .participants
        .iter()
        .filter(|p| p.status == ParticipantStatus::Missed)
        .map(|p| p.user_id.as_str())
        .collect();
    if missed.is_empty() {
        return;
    }
    let mut data = call_data(view);
    data["missedBy"] = json!(missed);
    enqueue(out, "call.missed", view, data);
}
