//! The webhooks to the host application that a call's changes write, in
//! the transaction of the change (`app_webhook_outbox`, gathered in the
//! transaction's `store::Outgoing`); delivered by `crate::workers::app_webhooks`.

use serde_json::{Value, json};

use crate::calls::views::CallView;
use crate::domain::{Outcome, ParticipantStatus, UserId, Violation};
use crate::store::call_reports::ReportRow;
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

/// Someone broke the video rule, or a moderator put them out of the call.
pub struct Offence<'a> {
    pub user: &'a str,
    pub violation: Violation,
    /// Put out of the call for it (for good).
    pub removed: bool,
    /// The track that broke the rule: its `trackSid`, `source`, `kind` (what
    /// it is) and `declared` (what its client said it is), as in the ledger.
    pub track: Option<Value>,
    /// The moderator who removed them, and the reason they gave.
    pub moderator: Option<(&'a UserId, &'a str)>,
}

/// `consent.violation`: the host hears of every violation of the video rule
/// and every removal, with the offender and what they did (never anyone's
/// gender), so that it can act.
pub fn consent_violation(out: &mut Outgoing, view: &CallView, offence: &Offence<'_>) {
    let mut data = call_data(view);
    data["userId"] = json!(offence.user);
    data["violation"] = json!(offence.violation);
    data["removed"] = json!(offence.removed);
    if let Some(track) = &offence.track {
        data["track"] = track.clone();
    }
    if let Some((moderator, reason)) = offence.moderator {
        data["moderatorId"] = json!(moderator);
        data["reason"] = json!(reason);
    }
    enqueue(out, "consent.violation", view, data);
}

/// `call.reported`: a participant reported another. What the host needs to
/// judge it: the call (its people, state and times), the two users, the
/// reason and text, when, and the violations of the video rule the ledger
/// holds of the reported user in this call; never anyone's gender.
pub fn call_reported(out: &mut Outgoing, view: &CallView, report: &ReportRow, violations: Vec<Value>) {
    let mut data = call_data(view);
    data["state"] = json!(view.state);
    for (field, value) in [
        ("outcome", json!(view.outcome)),
        ("endReason", json!(view.end_reason)),
        ("answeredAt", json!(view.answered_at)),
        ("connectedAt", json!(view.connected_at)),
        ("endedAt", json!(view.ended_at)),
        ("durationSeconds", json!(view.duration_seconds)),
    ] {
        if !value.is_null() {
            data[field] = value;
        }
    }
    data["reportId"] = json!(report.id);
    data["reporterId"] = json!(report.reporter_id);
    data["reportedId"] = json!(report.reported_id);
    data["reason"] = json!(report.reason);
    data["text"] = json!(report.text);
    data["reportedAt"] = json!(report.created_at);
    data["violations"] = json!(violations);
    enqueue(out, "call.reported", view, data);
}

/// What the recording webhooks say of a recording: never where its file
/// is (only participants reach it, through callgate).
fn recording_data(view: &CallView, recording: &crate::store::recordings::RecordingRow) -> Value {
    let mut data = call_data(view);
    data["recordingId"] = json!(recording.id);
    data["fileType"] = json!(recording.file_type);
    data["startedAt"] = json!(recording.started_at);
    data
}

/// Egress began writing a recording everyone present consented to.
pub fn recording_started(
    out: &mut Outgoing,
    view: &CallView,
    recording: &crate::store::recordings::RecordingRow,
) {
    enqueue(out, "recording.started", view, recording_data(view, recording));
}

/// A recording's file is whole and kept: its size and duration.
pub fn recording_ready(
    out: &mut Outgoing,
    view: &CallView,
    recording: &crate::store::recordings::RecordingRow,
) {
    let mut data = recording_data(view, recording);
    data["endedAt"] = json!(recording.ended_at);
    data["durationMs"] = json!(recording.duration_ms);
    data["sizeBytes"] = json!(recording.size_bytes);
    data["sha256"] = json!(recording.checksum);
    enqueue(out, "recording.ready", view, data);
}

/// A recording failed: egress died, refused it, or its file is not there.
pub fn recording_failed(
    out: &mut Outgoing,
    view: &CallView,
    recording: &crate::store::recordings::RecordingRow,
) {
    let mut data = recording_data(view, recording);
    data["error"] = json!(recording.error);
    enqueue(out, "recording.failed", view, data);
}
