//! Appointments: booked ahead by the host application's backend (a token
//! with the `service` role) or by a user with a role of `SCHEDULER_ROLES`;
//! found by id or by the host's own `externalRef`; cancelled before anyone
//! met. A booking makes nobody busy.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::calls::{CallError, Core};
use crate::domain::appointment::{self, Happening, Rules, Window};
use crate::domain::{
    AppointmentOutcome, AppointmentRole, AppointmentState, AuthUser, CallType, Code, UserId,
};
use crate::store::appointments::{self as rows, AppointmentRow, NewAppointment, PersonRow};

/// The role of the host application's own backend.
pub const SERVICE_ROLE: &str = "service";

/// A validated booking.
#[derive(Clone, Debug)]
pub struct Booking {
    pub external_ref: String,
    pub call_type: CallType,
    pub title: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub hosts: Vec<UserId>,
    pub guests: Vec<UserId>,
}

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
    pub created_at: DateTime<Utc>,
}

pub fn rules(core: &Core) -> Rules {
    let secs = |d: std::time::Duration| Duration::from_std(d).unwrap_or(Duration::MAX);
    Rules {
        early_join: secs(core.config.appointments.early_join),
        grace: secs(core.config.appointments.grace),
        max_duration: secs(core.config.timeouts.max_call_duration),
        max_participants: core.config.max_call_participants,
    }
}

fn may_book(core: &Core, user: &AuthUser) -> bool {
    user.roles.contains(SERVICE_ROLE) || core.config.scheduler_roles.iter().any(|r| user.roles.contains(r))
}

fn view(core: &Core, row: &AppointmentRow, people: &[PersonRow]) -> AppointmentView {
    let of = |role| people.iter().filter(|p| p.role == role).map(|p| p.user_id.clone()).collect();
    let window = Window { starts_at: row.starts_at, ends_at: row.ends_at };
    AppointmentView {
        id: row.id,
        external_ref: row.external_ref.clone(),
        call_type: row.call_type,
        title: row.title.clone(),
        starts_at: row.starts_at,
        ends_at: row.ends_at,
        opens_at: appointment::opens_at(window, &rules(core)),
        state: row.state,
        outcome: row.outcome.map(|w| w.0),
        hosts: of(AppointmentRole::Host),
        guests: of(AppointmentRole::Guest),
        created_at: row.created_at,
    }
}

fn invalid(err: appointment::BookingError) -> CallError {
    CallError::invalid(err.field, err.rule)
}

/// Whether an existing booking says what `booking` says.
fn same(existing: &AppointmentView, booking: &Booking) -> bool {
    existing.call_type == booking.call_type
        && existing.title == booking.title
        && existing.starts_at == booking.starts_at
        && existing.ends_at == booking.ends_at
        && existing.hosts == booking.hosts
        && existing.guests == booking.guests
}

/// Books an appointment; the same `externalRef` again gives back the one
/// booked (`created: false`), or 409 `appointment_differs` if it says
/// something else.
pub async fn book(
    core: &Core,
    user: &AuthUser,
    booking: Booking,
) -> Result<(AppointmentView, bool), CallError> {
    if !may_book(core, user) {
        return Err(CallError::forbidden(
            Code::SchedulingNotAllowed,
            "only the host application (role `service`) or a role of SCHEDULER_ROLES books appointments",
        ));
    }
    let rules = rules(core);
    let window = Window { starts_at: booking.starts_at, ends_at: booking.ends_at };
    appointment::check_window(window, core.clock.now(), &rules).map_err(invalid)?;
    appointment::check_people(&booking.hosts, &booking.guests, &rules).map_err(invalid)?;
    let people: Vec<(UserId, AppointmentRole)> =
        (booking.hosts.iter().map(|h| (h.clone(), AppointmentRole::Host)))
            .chain(booking.guests.iter().map(|g| (g.clone(), AppointmentRole::Guest)))
            .collect();
    let mut tx = core.db.begin().await?;
    let new = NewAppointment {
        id: Uuid::new_v4(),
        external_ref: &booking.external_ref,
        call_type: booking.call_type,
        title: booking.title.as_deref(),
        starts_at: booking.starts_at,
        ends_at: booking.ends_at,
        booked_by: &user.id,
        people: &people,
    };
    let created = rows::insert(&mut tx, &new).await?;
    let row = rows::find_by_ref(&mut tx, &booking.external_ref).await?.ok_or(CallError::NotFound)?;
    let people = rows::people(&mut tx, row.id).await?;
    tx.commit().await?;
    let shown = view(core, &row, &people);
    if !created && !same(&shown, &booking) {
        return Err(CallError::conflict(
            Code::AppointmentDiffers,
            "an appointment with this externalRef is booked with other details",
        ));
    }
    Ok((shown, created))
}

/// Whether `user` may see it: its hosts and guests, whoever booked it, the
/// host application and `admin`. Anyone else is told it does not exist.
fn may_see(user: &AuthUser, row: &AppointmentRow, people: &[PersonRow]) -> bool {
    user.roles.contains(SERVICE_ROLE)
        || user.is_admin()
        || row.booked_by == user.id.as_str()
        || people.iter().any(|p| p.user_id == user.id)
}

pub async fn get(core: &Core, user: &AuthUser, id: Uuid) -> Result<AppointmentView, CallError> {
    let mut conn = core.db.acquire().await?;
    let row = rows::find(&mut conn, id).await?.ok_or(CallError::NotFound)?;
    let people = rows::people(&mut conn, id).await?;
    if !may_see(user, &row, &people) {
        return Err(CallError::NotFound);
    }
    Ok(view(core, &row, &people))
}

pub async fn get_by_ref(
    core: &Core,
    user: &AuthUser,
    external_ref: &str,
) -> Result<AppointmentView, CallError> {
    let mut conn = core.db.acquire().await?;
    let row = rows::find_by_ref(&mut conn, external_ref).await?.ok_or(CallError::NotFound)?;
    let people = rows::people(&mut conn, row.id).await?;
    if !may_see(user, &row, &people) {
        return Err(CallError::NotFound);
    }
    Ok(view(core, &row, &people))
}

/// Cancels it: the host application, whoever booked it, or a host.
pub async fn cancel(core: &Core, user: &AuthUser, id: Uuid) -> Result<AppointmentView, CallError> {
    let mut tx = core.db.begin().await?;
    let row = rows::lock(&mut tx, id).await?.ok_or(CallError::NotFound)?;
    let people = rows::people(&mut tx, id).await?;
    if !may_see(user, &row, &people) {
        return Err(CallError::NotFound);
    }
    let is_host = people.iter().any(|p| p.user_id == user.id && p.role == AppointmentRole::Host);
    if !(user.roles.contains(SERVICE_ROLE) || row.booked_by == user.id.as_str() || is_host) {
        return Err(CallError::forbidden(
            Code::NotInitiator,
            "only its hosts or whoever booked it cancel it",
        ));
    }
    if row.state == AppointmentState::Ended {
        return Err(CallError::conflict(Code::AppointmentEnded, "the appointment has ended"));
    }
    let step = appointment::step(row.state, row.state == AppointmentState::Active, Happening::Cancelled);
    if let Some(outcome) = step.outcome {
        rows::end(&mut tx, id, outcome).await?;
    }
    let row = rows::find(&mut tx, id).await?.ok_or(CallError::NotFound)?;
    tx.commit().await?;
    Ok(view(core, &row, &people))
}
