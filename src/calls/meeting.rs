//! What an appointment's call does to its appointment: it becomes active
//! when a host and an admitted guest are in the room together, and it ends
//! when its call ends. Used by the call lifecycle and the LiveKit webhooks
//! (so it imports neither); the appointment use cases are
//! `crate::calls::appointments`.
//!
//! Lock order, everywhere: the call's row, then the appointment's.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::calls::CallError;
use crate::domain::appointment::{self, Happening};
use crate::domain::{
    AppointmentOutcome, AppointmentRole, AppointmentState, CallState, CallType, ClientEvent, EndReason,
    ParticipantStatus, Role, UserId,
};
use crate::store::appointments::{self as rows, AppointmentRow, PersonRow};
use crate::store::{self, CallRow, DeadlineKind};

/// An appointment as its people and the host application see it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppointmentView {
    pub id: Uuid,
    pub external_ref: String,
    #[serde(rename = "type")]
    pub call_type: CallType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// When it may be joined from (`APPOINTMENT_EARLY_JOIN` before `startsAt`).
    pub opens_at: DateTime<Utc>,
    pub state: AppointmentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AppointmentOutcome>,
    #[schema(value_type = Vec<String>)]
    pub hosts: Vec<UserId>,
    #[schema(value_type = Vec<String>)]
    pub guests: Vec<UserId>,
    /// When a host and an admitted guest were first in it together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub fn view(row: &AppointmentRow, people: &[PersonRow]) -> AppointmentView {
    let of = |role| people.iter().filter(|p| p.role == role).map(|p| p.user_id.clone()).collect();
    AppointmentView {
        id: row.id,
        external_ref: row.external_ref.clone(),
        call_type: row.call_type,
        title: row.title.clone(),
        starts_at: row.starts_at,
        ends_at: row.ends_at,
        opens_at: row.opens_at,
        state: row.state,
        outcome: row.outcome,
        hosts: of(AppointmentRole::Host),
        guests: of(AppointmentRole::Guest),
        started_at: row.started_at,
        ended_at: row.ended_at,
        created_at: row.created_at,
    }
}

/// Whom an event goes to.
#[derive(Clone, Copy, Debug)]
pub enum Audience {
    Everyone,
    Hosts,
}

/// Tells the appointment's people (a client event, with `extra` merged
/// into `{appointment}`) and the host application (the app webhook of the
/// same name), in this transaction.
pub async fn tell(
    conn: &mut PgConnection,
    kind: ClientEvent,
    row: &AppointmentRow,
    people: &[PersonRow],
    audience: Audience,
    call: Option<crate::domain::CallId>,
    extra: Value,
) -> sqlx::Result<()> {
    let shown = view(row, people);
    let mut data = json!({"appointment": shown});
    if let (Value::Object(data), Value::Object(extra)) = (&mut data, extra) {
        data.extend(extra);
    }
    let recipients: Vec<String> = people
        .iter()
        .filter(|p| matches!(audience, Audience::Everyone) || p.role == AppointmentRole::Host)
        .map(|p| p.user_id.to_string())
        .collect();
    match call {
        Some(call) => store::notify(conn, &recipients, kind, call, &data).await?,
        None => store::events::notify_without_call(conn, &recipients, kind, &data).await?,
    }
    rows::enqueue_webhook(conn, kind.as_str(), row.id, data).await
}

/// Whether the call's appointment has not met yet: then people leaving (or
/// never coming) do not end it; its no-show deadline does.
pub async fn holds_open(conn: &mut PgConnection, call: &CallRow) -> sqlx::Result<bool> {
    let Some(id) = call.appointment_id else { return Ok(false) };
    let row = rows::find(conn, id).await?;
    Ok(row.is_some_and(|row| row.started_at.is_none() && row.state != AppointmentState::Ended))
}

/// Someone came into the room or was admitted: once a host and an admitted
/// guest are in it together, the appointment is active (and so is its
/// call, for as long as a call may last). Returns whether it became active.
pub async fn on_presence(
    conn: &mut PgConnection,
    call: &CallRow,
    now: DateTime<Utc>,
    max_duration: std::time::Duration,
) -> Result<bool, CallError> {
    let Some(id) = call.appointment_id else { return Ok(false) };
    let Some(row) = rows::lock(conn, id).await? else { return Ok(false) };
    let participants = store::participants(conn, call.call_id()).await?;
    let here = |p: &&store::ParticipantRow| p.live && p.status == ParticipantStatus::Joined;
    let hosts = participants.iter().filter(here).filter(|p| p.role == Role::Initiator).count();
    let admitted_guests =
        participants.iter().filter(here).filter(|p| p.role == Role::Invitee && p.admitted).count();
    let step = appointment::step(row.state, false, Happening::Present { hosts, admitted_guests });
    if step.state != AppointmentState::Active || row.state == AppointmentState::Active {
        return Ok(false);
    }
    rows::mark_started(conn, id, now).await?;
    let call_id = call.call_id();
    store::set_state(conn, call_id, CallState::Active).await?;
    store::cancel(conn, call_id, DeadlineKind::Connect).await?;
    let due = now + Duration::from_std(max_duration).unwrap_or(Duration::MAX);
    store::schedule(conn, call_id, DeadlineKind::MaxDuration, due, None).await?;
    let row = rows::find(conn, id).await?.unwrap_or(row);
    let people = rows::people(conn, id).await?;
    tell(conn, ClientEvent::AppointmentStarted, &row, &people, Audience::Everyone, Some(call_id), json!({}))
        .await?;
    Ok(true)
}

/// The outcome of an appointment whose call ended for `reason`.
fn outcome_of(row: &AppointmentRow, reason: EndReason) -> Option<AppointmentOutcome> {
    let met = row.started_at.is_some();
    let what = match reason {
        EndReason::Timeout => Happening::NoShowDeadline,
        EndReason::RoomClosed | EndReason::Error => Happening::RoomLost,
        EndReason::Cancelled => Happening::Cancelled,
        _ => Happening::EndedByHost,
    };
    let step = appointment::step(row.state, met, what);
    // A no-show deadline of an appointment that met is no end of it; its
    // call ending is.
    step.outcome.or(met.then_some(AppointmentOutcome::Completed))
}

/// The call ended: so does its appointment (unless it ended first), with
/// `appointment.ended` (and `appointment.no_show` or `.cancelled`).
pub async fn on_call_end(conn: &mut PgConnection, call: &CallRow, reason: EndReason) -> sqlx::Result<()> {
    let Some(id) = call.appointment_id else { return Ok(()) };
    let Some(row) = rows::lock(conn, id).await? else { return Ok(()) };
    if row.state == AppointmentState::Ended {
        return Ok(());
    }
    let Some(outcome) = outcome_of(&row, reason) else { return Ok(()) };
    rows::end(conn, id, outcome).await?;
    let row = rows::find(conn, id).await?.unwrap_or(row);
    let people = rows::people(conn, id).await?;
    ended(conn, &row, &people, Some(call.call_id())).await
}

/// Tells everyone an appointment ended (`row` as it ended).
pub async fn ended(
    conn: &mut PgConnection,
    row: &AppointmentRow,
    people: &[PersonRow],
    call: Option<crate::domain::CallId>,
) -> sqlx::Result<()> {
    let duration = match (row.started_at, row.ended_at) {
        (Some(from), Some(to)) => (to - from).num_seconds().max(0),
        _ => 0,
    };
    let outcome = row.outcome;
    let extra = json!({"outcome": outcome, "durationSeconds": duration});
    let specific = match outcome {
        Some(AppointmentOutcome::NoShow) => Some(ClientEvent::AppointmentNoShow),
        Some(AppointmentOutcome::Cancelled) => Some(ClientEvent::AppointmentCancelled),
        _ => None,
    };
    if let Some(kind) = specific {
        tell(conn, kind, row, people, Audience::Everyone, call, extra.clone()).await?;
    }
    tell(conn, ClientEvent::AppointmentEnded, row, people, Audience::Everyone, call, extra).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: AppointmentState, started: bool) -> AppointmentRow {
        let at = DateTime::from_timestamp(1_900_000_000, 0).unwrap_or_default();
        AppointmentRow {
            id: Uuid::nil(),
            external_ref: "x".into(),
            call_type: CallType::Audio,
            title: None,
            starts_at: at,
            ends_at: at,
            state,
            outcome: None,
            booked_by: "svc".into(),
            created_at: at,
            ended_at: None,
            opens_at: at,
            started_at: started.then_some(at),
        }
    }

    #[test]
    fn a_call_that_met_ends_its_appointment_completed_whatever_ended_it() {
        for reason in [EndReason::Hangup, EndReason::Timeout, EndReason::RoomClosed, EndReason::MaxDuration] {
            assert_eq!(
                outcome_of(&row(AppointmentState::Active, true), reason),
                Some(AppointmentOutcome::Completed)
            );
        }
    }

    #[test]
    fn a_call_that_never_met_ends_as_no_show_cancelled_or_failed() {
        let open = row(AppointmentState::Open, false);
        assert_eq!(outcome_of(&open, EndReason::Timeout), Some(AppointmentOutcome::NoShow));
        assert_eq!(outcome_of(&open, EndReason::Hangup), Some(AppointmentOutcome::Cancelled));
        assert_eq!(outcome_of(&open, EndReason::RoomClosed), Some(AppointmentOutcome::Failed));
    }
}
