//! Appointments: booked ahead by the host application's backend (a token
//! with the `service` role) or by a user with a role of `SCHEDULER_ROLES`;
//! found by id or by the host's own `externalRef`; opened (a call and its
//! LiveKit room) at `opensAt` by a durable deadline or at the first join;
//! joined through a waiting room that hosts admit from; ended by its call,
//! a host, a cancel or the no-show deadline.
//!
//! A booking makes nobody busy: the call an appointment opens has its
//! hosts and guests written but not live, and each becomes busy only by
//! joining it. Lock order: the call's row, then the appointment's.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::calls::enforce::{self, Effects};
use crate::calls::lifecycle::{self, Ended};
use crate::calls::meeting::{self, Audience};
use crate::calls::participants as members;
use crate::calls::views::{CallView, JoinView};
use crate::calls::{CallError, Core};
use crate::domain::appointment::{self, Happening, Joinable, Rules, Window};
use crate::domain::consent::{VideoSession, VideoState};
use crate::domain::membership::Step as MemberStep;
use crate::domain::{
    AppointmentRole, AppointmentState, AuthUser, CallId, CallState, CallType, ClientEvent, Code, EventSource,
    Role, UserId, call::Ending,
};
use crate::infra::turn::IceServer;
use crate::livekit::RoomSpec;
use crate::store::appointments::{self as rows, AppointmentRow, NewAppointment, PersonRow};
use crate::store::{self, CallRow, NewCall};

pub use crate::calls::meeting::AppointmentView;

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

/// What a participant joining gets: the appointment, its call, and how to
/// enter the room (in the waiting room, a token with no rights).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinedAppointment {
    pub appointment: AppointmentView,
    pub call: CallView,
    /// How to join its room; none while in the waiting room, which is
    /// outside the meeting (no room, no media, no data, nobody's presence):
    /// `appointment.admitted` says when to join again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<JoinView>,
    /// In the waiting room until a host admits them.
    pub waiting: bool,
    pub ice_servers: Vec<IceServer>,
}

/// The appointment after an admit, and whether LiveKit confirmed the
/// guest's rights before the answer.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Admitted {
    pub appointment: AppointmentView,
    pub sfu_confirmed: bool,
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

/// Whose `externalRef`s a booking by `user` is among: the host
/// application's (every token with the `service` role books as one booker),
/// or the scheduler's own. A ref is unique per booker: nobody takes, probes,
/// moves or cancels another booker's by booking the same ref.
fn ref_scope(user: &AuthUser) -> String {
    if user.roles.contains(SERVICE_ROLE) { SERVICE_ROLE.to_owned() } else { format!("user:{}", user.id) }
}

fn may_book(core: &Core, user: &AuthUser) -> bool {
    user.roles.contains(SERVICE_ROLE) || core.config.scheduler_roles.iter().any(|r| user.roles.contains(r))
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

fn window(row: &AppointmentRow) -> Window {
    Window { starts_at: row.starts_at, ends_at: row.ends_at }
}

fn role_of(people: &[PersonRow], user: &UserId) -> Option<AppointmentRole> {
    people.iter().find(|p| p.user_id == *user).map(|p| p.role)
}

fn ended_conflict() -> CallError {
    CallError::conflict(Code::AppointmentEnded, "the appointment has ended")
}

/// Books an appointment; the same `externalRef` again from the same booker
/// gives back the one booked (`created: false`), or 409
/// `appointment_differs` if it says something else. Another booker's ref of
/// the same name is another appointment.
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
    let scope = ref_scope(user);
    let mut tx = core.db.begin().await?;
    let new = NewAppointment {
        id: Uuid::new_v4(),
        ref_scope: &scope,
        external_ref: &booking.external_ref,
        call_type: booking.call_type,
        title: booking.title.as_deref(),
        starts_at: booking.starts_at,
        ends_at: booking.ends_at,
        booked_by: &user.id,
        people: &people,
        opens_at: appointment::opens_at(window, &rules),
    };
    let created = rows::insert(&mut tx, &new).await?;
    let row = rows::find_by_ref(&mut tx, &scope, &booking.external_ref).await?.ok_or(CallError::NotFound)?;
    let people = rows::people(&mut tx, row.id).await?;
    tx.commit().await?;
    let shown = meeting::view(&row, &people);
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

/// Whether `user` may move or cancel it: the host application, whoever
/// booked it, or a host.
fn may_manage(user: &AuthUser, row: &AppointmentRow, people: &[PersonRow]) -> bool {
    user.roles.contains(SERVICE_ROLE)
        || row.booked_by == user.id.as_str()
        || role_of(people, &user.id) == Some(AppointmentRole::Host)
}

pub async fn get(core: &Core, user: &AuthUser, id: Uuid) -> Result<AppointmentView, CallError> {
    let mut conn = core.db.acquire().await?;
    let row = rows::find(&mut conn, id).await?.ok_or(CallError::NotFound)?;
    let people = rows::people(&mut conn, id).await?;
    if !may_see(user, &row, &people) {
        return Err(CallError::NotFound);
    }
    Ok(meeting::view(&row, &people))
}

/// The appointment of `external_ref` among the caller's own bookings, else
/// among the host application's that the caller may see (its hosts and
/// guests find it by the host's ref). Another scheduler's refs are never
/// looked at: what is not found and what may not be seen are the same 404.
pub async fn get_by_ref(
    core: &Core,
    user: &AuthUser,
    external_ref: &str,
) -> Result<AppointmentView, CallError> {
    let mut conn = core.db.acquire().await?;
    let mut scopes = vec![ref_scope(user)];
    if scopes[0] != SERVICE_ROLE {
        scopes.push(SERVICE_ROLE.to_owned());
    }
    for scope in scopes {
        let Some(row) = rows::find_by_ref(&mut conn, &scope, external_ref).await? else { continue };
        let people = rows::people(&mut conn, row.id).await?;
        if may_see(user, &row, &people) {
            return Ok(meeting::view(&row, &people));
        }
    }
    Err(CallError::NotFound)
}

/// A page of the caller's appointments starting in `[from, to)`, soonest
/// first, after `cursor`; and the cursor of the next page.
pub async fn list(
    core: &Core,
    user: &AuthUser,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<(Vec<AppointmentView>, Option<(DateTime<Utc>, Uuid)>), CallError> {
    let mut conn = core.db.acquire().await?;
    let mut found = rows::of_user(&mut conn, &user.id, from, to, after, limit + 1).await?;
    let next = if found.len() as i64 > limit {
        found.truncate(limit as usize);
        found.last().map(|r| (r.starts_at, r.id))
    } else {
        None
    };
    let ids: Vec<Uuid> = found.iter().map(|r| r.id).collect();
    let mut people = rows::people_of(&mut conn, &ids).await?;
    let views = found.iter().map(|r| meeting::view(r, &people.remove(&r.id).unwrap_or_default())).collect();
    Ok((views, next))
}

/// The appointment and its call (if it opened), both locked, call first.
async fn lock_both(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<(Option<CallRow>, AppointmentRow, Vec<PersonRow>), CallError> {
    let mut call = store::calls::lock_call_of_appointment(conn, id).await?;
    let row = rows::lock(conn, id).await?.ok_or(CallError::NotFound)?;
    if call.is_none() && row.state != AppointmentState::Scheduled {
        // Opened between the two locks.
        call = store::calls::lock_call_of_appointment(conn, id).await?;
    }
    let people = rows::people(conn, id).await?;
    Ok((call, row, people))
}

/// Cancels it: the host application, whoever booked it, or a host. An
/// appointment that met ends `completed`; one that did not, `cancelled`.
pub async fn cancel(core: &Core, user: &AuthUser, id: Uuid) -> Result<AppointmentView, CallError> {
    let mut tx = core.db.begin().await?;
    let (call, row, people) = lock_both(&mut tx, id).await?;
    if !may_see(user, &row, &people) {
        return Err(CallError::NotFound);
    }
    if !may_manage(user, &row, &people) {
        return Err(CallError::forbidden(
            Code::NotInitiator,
            "only its hosts or whoever booked it cancel it",
        ));
    }
    if row.state == AppointmentState::Ended {
        return Err(ended_conflict());
    }
    let ended = end_now(&mut tx, call.as_ref(), &row, &people, Happening::Cancelled, Some(&user.id)).await?;
    let row = rows::find(&mut tx, id).await?.ok_or(CallError::NotFound)?;
    tx.commit().await?;
    if let Some(ended) = ended {
        lifecycle::after_end(core, &ended).await;
    }
    Ok(meeting::view(&row, &people))
}

/// Ends the appointment for `what` and its call if it has one; returns the
/// call for `after_end`.
async fn end_now(
    tx: &mut PgConnection,
    call: Option<&CallRow>,
    row: &AppointmentRow,
    people: &[PersonRow],
    what: Happening,
    by: Option<&UserId>,
) -> Result<Option<Ended>, CallError> {
    let step = appointment::step(row.state, row.started_at.is_some(), what);
    let Some(outcome) = step.outcome else { return Ok(None) };
    rows::end(tx, row.id, outcome).await?;
    let ended = match call.filter(|c| c.state.is_live()) {
        Some(call) => {
            let ending = match what {
                Happening::NoShowDeadline => Ending::ConnectTimeout,
                _ => Ending::Hangup,
            };
            let (outcome, reason) = crate::domain::call::end(call.state, ending);
            let source = if by.is_some() { EventSource::Api } else { EventSource::System };
            Some(lifecycle::finish(tx, call, outcome, reason, source, by).await?)
        }
        None => None,
    };
    let row = rows::find(tx, row.id).await?.ok_or(CallError::NotFound)?;
    meeting::ended(tx, &row, people, call.map(CallRow::call_id)).await?;
    Ok(ended)
}

/// Moves it (before it opens): the same people as may cancel it.
pub async fn reschedule(
    core: &Core,
    user: &AuthUser,
    id: Uuid,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
) -> Result<AppointmentView, CallError> {
    let mut tx = core.db.begin().await?;
    let row = rows::lock(&mut tx, id).await?.ok_or(CallError::NotFound)?;
    let people = rows::people(&mut tx, id).await?;
    if !may_see(user, &row, &people) {
        return Err(CallError::NotFound);
    }
    if !may_manage(user, &row, &people) {
        return Err(CallError::forbidden(Code::NotInitiator, "only its hosts or whoever booked it move it"));
    }
    match row.state {
        AppointmentState::Scheduled => {}
        AppointmentState::Ended => return Err(ended_conflict()),
        AppointmentState::Open | AppointmentState::Active => {
            return Err(CallError::conflict(
                Code::AppointmentOpened,
                "it has opened; it can no longer be moved",
            ));
        }
    }
    let rules = rules(core);
    let moved =
        Window { starts_at: starts_at.unwrap_or(row.starts_at), ends_at: ends_at.unwrap_or(row.ends_at) };
    appointment::check_window(moved, core.clock.now(), &rules).map_err(invalid)?;
    let opens_at = appointment::opens_at(moved, &rules);
    rows::reschedule(&mut tx, id, moved.starts_at, moved.ends_at, opens_at).await?;
    let row = rows::find(&mut tx, id).await?.ok_or(CallError::NotFound)?;
    tx.commit().await?;
    Ok(meeting::view(&row, &people))
}

/// Whether a guest may share their screen: only a role of
/// `SCREEN_SHARE_ROLES` (hosts follow the rule of every call).
fn guest_may_share(core: &Core, user: &AuthUser) -> bool {
    core.config.screen_share_roles.as_ref().is_some_and(|roles| roles.iter().any(|r| user.roles.contains(r)))
}

/// Opens it: its call (everyone written, nobody live, guests waiting) and
/// its LiveKit room, in `tx`; `appointment.opened` to everyone. The room is
/// created before the commit: a room that fails leaves the appointment
/// scheduled, a commit that fails deletes the room.
async fn open(
    core: &Core,
    tx: &mut PgConnection,
    row: &AppointmentRow,
    people: &[PersonRow],
) -> Result<(CallRow, String), CallError> {
    let call_id = CallId::new();
    let room_name = core.livekit.room_name(call_id);
    let session = VideoSession::new(core.config.video_policy);
    let first_host = people.iter().find(|p| p.role == AppointmentRole::Host).ok_or(CallError::NotFound)?;
    let new_call = NewCall {
        id: call_id,
        room_name: &room_name,
        call_type: row.call_type,
        state: CallState::Connecting,
        initiator: &first_host.user_id,
        conversation_id: None,
        external_ref: Some(&row.external_ref),
        scheduled: true,
        video_session: &session,
        video_requested_at_start: false,
        rejoin_grace: None,
        // Nobody is live in it until they join.
        room_metadata: &crate::livekit::room_metadata(
            call_id,
            row.call_type,
            session.state,
            VideoState::Off,
            &[],
        ),
    };
    store::insert_call(tx, &new_call).await?;
    store::calls::link_appointment(tx, call_id, row.id).await?;
    for person in people {
        members::book(tx, call_id, &person.user_id, person.role == AppointmentRole::Host).await?;
    }
    let no_show = appointment::no_show_at(window(row), &rules(core));
    rows::set_state(tx, row.id, AppointmentState::Open, Some(no_show)).await?;
    let data = json!({"appointmentId": row.id, "externalRef": row.external_ref});
    store::record_event(tx, call_id, "appointment.opened", EventSource::System, None, data).await?;
    let opened = rows::find(tx, row.id).await?.ok_or(CallError::NotFound)?;
    meeting::tell(
        tx,
        ClientEvent::AppointmentOpened,
        &opened,
        people,
        Audience::Everyone,
        Some(call_id),
        json!({}),
    )
    .await?;
    let call = store::lock_call(tx, call_id).await?.ok_or(CallError::NotFound)?;
    let spec = room_spec(core, &call, row);
    core.livekit.create_room(&room_name, spec).await.map_err(|e| CallError::LiveKitUnavailable(e.into()))?;
    Ok((call, room_name))
}

/// Its room: kept open, whoever comes and goes, until its no-show deadline
/// (a guest who joins and drops before the host comes does not close it).
fn room_spec(core: &Core, call: &CallRow, row: &AppointmentRow) -> RoomSpec {
    let no_show = appointment::no_show_at(window(row), &rules(core));
    let until_no_show = (no_show - core.clock.now()).to_std().unwrap_or_default();
    let hold = until_no_show + std::time::Duration::from_secs(120);
    RoomSpec {
        empty_timeout: hold,
        departure_timeout: hold,
        max_participants: core.config.max_call_participants as u32,
        metadata: crate::livekit::room_metadata(
            call.call_id(),
            call.call_type,
            call.video_state(),
            call.recording_session.0.state,
            &[],
        ),
    }
}

/// Joins it, inside its window: the first join opens it; a host is in at
/// once, a guest waits (no publish, no subscribe) until a host admits them
/// (`APPOINTMENT_AUTO_ADMIT`: as soon as a host is there). From now on the
/// joiner is busy, as in any call.
pub async fn join(core: &Core, user: &AuthUser, id: Uuid) -> Result<JoinedAppointment, CallError> {
    // A way into a call: refused while suspended, as a busy joiner (whatever the appointment).
    crate::calls::gate::refuse_suspended(core, &user.id).await?;
    let mut tx = core.db.begin().await?;
    let (call, row, people) = lock_both(&mut tx, id).await?;
    let Some(role) = role_of(&people, &user.id) else { return Err(CallError::NotFound) };
    match appointment::joinable(row.state, window(&row), core.clock.now(), &rules(core)) {
        Joinable::Yes => {}
        Joinable::NotYet { opens_at } => {
            return Err(CallError::NotYet {
                code: Code::AppointmentNotOpen,
                detail: format!(
                    "it opens at {}",
                    opens_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                opens_at,
            });
        }
        Joinable::Over => return Err(ended_conflict()),
    }
    let (call, created_room) = match call {
        // Its room may have closed while nobody was in it (the appointment
        // had not met): open it again; LiveKit answers an existing one as it is.
        Some(call) if call.connected_at.is_none() => {
            let spec = room_spec(core, &call, &row);
            core.livekit
                .create_room(&call.room_name, spec)
                .await
                .map_err(|e| CallError::LiveKitUnavailable(e.into()))?;
            (call, None)
        }
        Some(call) => (call, None),
        None => {
            let (call, room) = open(core, &mut tx, &row, &people).await?;
            (call, Some(room))
        }
    };
    match enter(core, &mut tx, &call, user, role).await {
        Ok(entered) => {
            let row = rows::find(&mut tx, id).await?.ok_or(CallError::NotFound)?;
            let participants = store::participants(&mut tx, call.call_id()).await?;
            if let Err(err) = tx.commit().await {
                if let Some(room) = created_room {
                    lifecycle::delete_room(core, &room).await;
                }
                return Err(err.into());
            }
            let mut effects = Effects::for_call(call.call_id());
            effects.rights_for = entered.admitted_now.iter().map(|u| u.to_string()).collect();
            enforce::settle_later(core, effects);
            let join = if entered.waiting {
                None
            } else {
                Some(lifecycle::join_for(core, &call, &user.id, user.name.as_deref(), entered.share)?)
            };
            Ok(JoinedAppointment {
                appointment: meeting::view(&row, &people),
                call: CallView::new(&call, &participants),
                ice_servers: if join.is_some() { core.ice_servers_in(&call, &user.id) } else { Vec::new() },
                join,
                waiting: entered.waiting,
            })
        }
        Err(err) => {
            drop(tx);
            if let Some(room) = created_room {
                lifecycle::delete_room(core, &room).await;
            }
            Err(err)
        }
    }
}

struct Entered {
    waiting: bool,
    share: bool,
    /// Guests admitted by this join (a host arriving with auto-admit).
    admitted_now: Vec<UserId>,
}

/// The joiner's part of `join`, in its transaction.
async fn enter(
    core: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    user: &AuthUser,
    role: AppointmentRole,
) -> Result<Entered, CallError> {
    let call_id = call.call_id();
    let participants = store::participants(tx, call_id).await?;
    let me = participants.iter().find(|p| p.user_id == user.id).ok_or(CallError::NotFound)?;
    let host = role == AppointmentRole::Host;
    let share = if host { lifecycle::may_share_screen(core, user) } else { guest_may_share(core, user) };
    let auto = core.config.appointments.auto_admit;
    let host_here = participants.iter().any(|p| p.role == Role::Initiator && p.is_present());
    // A host is in at once; a guest waits unless admitted before they came
    // or let in by auto-admit with a host here.
    let admitted = host || (auto && host_here);
    let how = members::Answer {
        user,
        share,
        consents: members::Consents::default(),
        step: MemberStep::Arrive { admitted },
        timeline: ("appointment.joined", json!({"role": role, "waiting": !(admitted || me.admitted)})),
    };
    let moved = members::answer(core, tx, call, me, how).await.map_err(|err| match err {
        CallError::Conflict { code: Code::NotInCall, .. } => {
            CallError::conflict(Code::NotInCall, "you were removed from this appointment")
        }
        other => other,
    })?;
    let waiting = moved.to.is_some_and(|m| m.is_waiting());
    let mut admitted_now = Vec::new();
    if host && auto {
        for p in participants.iter().filter(|p| p.role == Role::Invitee && p.member().is_waiting()) {
            members::admit(core, tx, call, p).await?;
            admitted_now.push(p.user_id.clone());
        }
    }
    let appointment_id = call.appointment_id.ok_or(CallError::NotFound)?;
    let row = rows::find(tx, appointment_id).await?.ok_or(CallError::NotFound)?;
    let people = rows::people(tx, appointment_id).await?;
    if waiting {
        let now_waiting = waiting_guests(tx, call_id).await?;
        let extra = json!({"waiting": now_waiting, "userId": user.id});
        meeting::tell(
            tx,
            ClientEvent::AppointmentWaiting,
            &row,
            &people,
            Audience::Hosts,
            Some(call_id),
            extra,
        )
        .await?;
    }
    for guest in &admitted_now {
        tell_admitted(tx, call_id, &row, &people, guest).await?;
    }
    if !admitted_now.is_empty() {
        meeting::on_presence(tx, call, core.clock.now(), core.config.timeouts.max_call_duration).await?;
    }
    Ok(Entered { waiting, share, admitted_now })
}

/// Guests in the waiting room now.
async fn waiting_guests(tx: &mut PgConnection, call: CallId) -> sqlx::Result<Vec<UserId>> {
    let participants = store::participants(tx, call).await?;
    Ok(participants
        .into_iter()
        .filter(|p| p.role == Role::Invitee && p.member().is_waiting())
        .map(|p| p.user_id)
        .collect())
}

async fn tell_admitted(
    tx: &mut PgConnection,
    call: CallId,
    row: &AppointmentRow,
    people: &[PersonRow],
    guest: &UserId,
) -> sqlx::Result<()> {
    let shown = meeting::view(row, people);
    let data = json!({"appointment": shown, "userId": guest});
    store::notify(tx, &[guest.to_string()], ClientEvent::AppointmentAdmitted, call, &data).await?;
    store::record_event(tx, call, "appointment.admitted", EventSource::Api, Some(guest.as_str()), json!({}))
        .await
}

/// What a host does to a guest starts alike: the appointment and its call
/// locked, `user` a host of it (404 to whoever may not see it), `guest` one
/// of its guests, the appointment open and its call there; the guest's row.
async fn host_on_guest(
    tx: &mut PgConnection,
    user: &AuthUser,
    id: Uuid,
    guest: &UserId,
    verb: &str,
) -> Result<(CallRow, AppointmentRow, Vec<PersonRow>, store::ParticipantRow), CallError> {
    let (call, row, people) = lock_both(tx, id).await?;
    match role_of(&people, &user.id) {
        None if !may_see(user, &row, &people) => return Err(CallError::NotFound),
        Some(AppointmentRole::Host) => {}
        _ => return Err(CallError::forbidden(Code::NotAHost, format!("only a host {verb}"))),
    }
    if role_of(&people, guest) != Some(AppointmentRole::Guest) {
        return Err(CallError::invalid("userId", "is not a guest of this appointment"));
    }
    if row.state == AppointmentState::Ended {
        return Err(ended_conflict());
    }
    let Some(call) = call else {
        return Err(CallError::conflict(
            Code::NotWaiting,
            "nobody is waiting: the appointment has not opened",
        ));
    };
    let participants = store::participants(tx, call.call_id()).await?;
    let target = participants.into_iter().find(|p| p.user_id == *guest).ok_or(CallError::NotFound)?;
    Ok((call, row, people, target))
}

/// A host admits a guest: their rights in LiveKit at once (as the video
/// policy says), answered once LiveKit confirmed (`sfuConfirmed`). A guest
/// not yet arrived is let straight in when they come. Admitting one
/// admitted is no change.
pub async fn admit(core: &Core, user: &AuthUser, id: Uuid, guest: &UserId) -> Result<Admitted, CallError> {
    let mut tx = core.db.begin().await?;
    let (call, row, people, target) = host_on_guest(&mut tx, user, id, guest, "admits guests").await?;
    let target = &target;
    let changed = members::admit(core, &mut tx, &call, target).await?.changed;
    if changed {
        tell_admitted(&mut tx, call.call_id(), &row, &people, guest).await?;
        meeting::on_presence(&mut tx, &call, core.clock.now(), core.config.timeouts.max_call_duration)
            .await?;
    }
    let row = rows::find(&mut tx, id).await?.ok_or(CallError::NotFound)?;
    tx.commit().await?;
    let mut effects = Effects::for_call(call.call_id());
    effects.rights_for.push(guest.to_string());
    let sfu_confirmed = !changed || enforce::settle_soon(core, effects).await;
    Ok(Admitted { appointment: meeting::view(&row, &people), sfu_confirmed })
}

/// A host turns a waiting guest away: out of this appointment for good.
pub async fn turn_away(
    core: &Core,
    user: &AuthUser,
    id: Uuid,
    guest: &UserId,
) -> Result<AppointmentView, CallError> {
    let mut tx = core.db.begin().await?;
    let (call, row, people, target) = host_on_guest(&mut tx, user, id, guest, "turns guests away").await?;
    let target = &target;
    members::turn_away(&mut tx, &call, target).await?;
    let shown = meeting::view(&row, &people);
    let data = json!({"appointment": shown, "userId": guest});
    store::notify(&mut tx, &[guest.to_string()], ClientEvent::AppointmentTurnedAway, call.call_id(), &data)
        .await?;
    let now_waiting = waiting_guests(&mut tx, call.call_id()).await?;
    let extra = json!({"waiting": now_waiting, "userId": guest});
    meeting::tell(
        &mut tx,
        ClientEvent::AppointmentWaiting,
        &row,
        &people,
        Audience::Hosts,
        Some(call.call_id()),
        extra,
    )
    .await?;
    tx.commit().await?;
    Ok(shown)
}

/// A host ends it for everyone (`completed` if it met, `cancelled` if not);
/// a guest leaves it (and may come back while its window lasts).
pub async fn end(core: &Core, user: &AuthUser, id: Uuid) -> Result<AppointmentView, CallError> {
    let mut tx = core.db.begin().await?;
    let (call, row, people) = lock_both(&mut tx, id).await?;
    let Some(role) = role_of(&people, &user.id) else { return Err(CallError::NotFound) };
    if row.state == AppointmentState::Ended {
        return Err(ended_conflict());
    }
    if role == AppointmentRole::Guest {
        drop(tx);
        let call = call.ok_or_else(|| CallError::conflict(Code::NotInCall, "you have not joined it"))?;
        lifecycle::leave(core, user, call.call_id()).await?;
        return get(core, user, id).await;
    }
    let ended =
        end_now(&mut tx, call.as_ref(), &row, &people, Happening::EndedByHost, Some(&user.id)).await?;
    let row = rows::find(&mut tx, id).await?.ok_or(CallError::NotFound)?;
    tx.commit().await?;
    if let Some(ended) = ended {
        lifecycle::after_end(core, &ended).await;
    }
    Ok(meeting::view(&row, &people))
}

/// The appointment's next check is due (its job, `store::jobs`): acted on
/// in the job's transaction, so it happens once across instances, and after
/// a restart. `Err(Busy)`: its row is held elsewhere; try again later.
pub async fn fire_due(core: &Core, tx: &mut PgConnection, id: Uuid) -> Result<Option<Ended>, Fire> {
    let now = core.clock.now();
    // Skipped, not waited for, if held: whoever holds it may be waiting for
    // this job's row (rescheduling it).
    let Some(due) = rows::lock_nowait(tx, id).await? else {
        return match rows::find(tx, id).await? {
            Some(_) => Err(Fire::Busy),
            None => Ok(None),
        };
    };
    Ok(fire(core, tx, &due, now).await?)
}

/// Why an appointment's check did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Fire {
    #[error("the appointment is busy elsewhere")]
    Busy,
    #[error(transparent)]
    Failed(#[from] CallError),
}

impl From<sqlx::Error> for Fire {
    fn from(err: sqlx::Error) -> Self {
        Fire::Failed(err.into())
    }
}

async fn fire(
    core: &Core,
    tx: &mut PgConnection,
    due: &AppointmentRow,
    now: DateTime<Utc>,
) -> Result<Option<Ended>, CallError> {
    let people = rows::people(tx, due.id).await?;
    match due.state {
        AppointmentState::Scheduled if now < due.opens_at => {
            rows::set_state(tx, due.id, due.state, Some(due.opens_at)).await?;
            Ok(None)
        }
        AppointmentState::Scheduled => {
            let (_, room) = open(core, tx, due, &people).await?;
            tracing::info!(appointment_id = %due.id, room, "appointment opened");
            Ok(None)
        }
        AppointmentState::Open => {
            let no_show = appointment::no_show_at(window(due), &rules(core));
            if now < no_show {
                rows::set_state(tx, due.id, due.state, Some(no_show)).await?;
                return Ok(None);
            }
            // The call's row first; nowait: one busy elsewhere is left for
            // the next poll.
            let call = store::calls::call_of_appointment(tx, due.id).await?;
            let call = match call {
                Some(id) => match store::calls::lock_call_nowait(tx, id).await? {
                    Some(call) => Some(call),
                    None => {
                        rows::set_state(tx, due.id, due.state, Some(now + Duration::seconds(1))).await?;
                        return Ok(None);
                    }
                },
                None => None,
            };
            tracing::info!(appointment_id = %due.id, "nobody came in time: a no-show");
            end_now(tx, call.as_ref(), due, &people, Happening::NoShowDeadline, None).await
        }
        AppointmentState::Active | AppointmentState::Ended => {
            rows::set_state(tx, due.id, due.state, None).await?;
            Ok(None)
        }
    }
}
