//! Every device rings and every device stops. A callee's event streams all
//! get `call.incoming`; when her ringing ends (she answers or declines on
//! one device, the caller cancels, nobody answers in time, the call goes
//! on or ends without her) all of them get `call.ring_stopped` with the
//! reason and the call as it now is, so every device stops ringing. The host
//! application hears the same per callee (`call.ringing`, `call.ring_stopped`
//! app webhooks) to send and cancel its VoIP/FCM pushes. Both are written in
//! the transaction of the change.

use serde_json::json;
use sqlx::PgConnection;

use crate::calls::app_webhooks::{call_data, enqueue};
use crate::calls::views::CallView;
use crate::domain::{ClientEvent, RingStop, UserId};
use crate::store::{self, Outgoing};

/// The call rings these callees: one `call.ringing` app webhook each.
pub fn rang(out: &mut Outgoing, view: &CallView, callees: &[UserId]) {
    let caller_name =
        view.participants.iter().find(|p| p.user_id == view.initiator_id).and_then(|p| p.name.clone());
    for callee in callees {
        let mut data = call_data(view);
        data["calleeId"] = json!(callee);
        if let Some(name) = &caller_name {
            data["initiatorName"] = json!(name);
        }
        enqueue(out, "call.ringing", view, data);
    }
}

/// The callee's ringing stopped: her devices hear `call.ring_stopped`, the
/// host application a `call.ring_stopped` app webhook.
pub fn stopped(out: &mut Outgoing, view: &CallView, callee: &str, why: RingStop) {
    let event = json!({"call": view, "reason": why});
    out.notify(&[callee.to_owned()], ClientEvent::CallRingStopped, Some(view.id), &event);
    let mut data = call_data(view);
    data["calleeId"] = json!(callee);
    data["reason"] = json!(why);
    enqueue(out, "call.ring_stopped", view, data);
}

/// Who is still being rung in this call (read before a change that may stop it).
pub async fn still_ringing(
    conn: &mut PgConnection,
    call: crate::domain::CallId,
) -> sqlx::Result<Vec<String>> {
    Ok(store::participants(conn, call)
        .await?
        .into_iter()
        .filter(|p| p.live && p.status == crate::domain::ParticipantStatus::Invited)
        .map(|p| p.user_id.to_string())
        .collect())
}
