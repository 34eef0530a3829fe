//! Who is in a call, decided in one place. Every way someone moves in or
//! out of a call — the API (start, invite, answer, decline, late join,
//! leave), LiveKit's webhooks (in the room, dropped, left), the reconciler
//! (found in the room, missing from it), the deadlines (ring over, rejoin
//! grace over), an appointment (arrive, admit, turn away), a removal for a
//! violation or by a moderator — is a `domain::membership::Step` applied
//! here, in the call's locked transaction: the pure machine says where it
//! leads (or refuses it), this module writes the participant, tells the
//! consent policy of an arrival or a departure, tells the others, and says
//! what LiveKit must do after the commit (`Effects`). Nothing else writes a
//! participant's status.
//!
//! What happens when Bob leaves (`depart`): his row goes `left` (not live:
//! free for other calls), the timeline says why, the consent policy hears a
//! leave (video turns off if he was the last consenter's missing consent,
//! never on), the others hear `participant.left`, he is put out of the room
//! (after the room's metadata drops him from `live`), and a call with fewer
//! than two people left ends. A drop is not a leave: he is `reconnecting`
//! until he is back or `REJOIN_GRACE` is over.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;

use crate::calls::app_webhooks::{self, Offence};
use crate::calls::consent;
use crate::calls::ending::{Ended, finish};
use crate::calls::enforce::Effects;
use crate::calls::meeting;
use crate::calls::views::CallView;
use crate::calls::{CallError, Core};
use crate::domain::membership::{self, Member, Refusal, Step};

use crate::domain::{
    self, AuthUser, ClientEvent, Code, EventSource, ParticipantStatus, UserId, Violation, call::Ending,
};
use crate::livekit::DisconnectReason;
use crate::store::{self, CallRow, DeadlineKind, Outgoing, ParticipantRow};

/// Where a stored participant stands, as the machine sees it.
pub fn member(row: &ParticipantRow) -> Member {
    row.member()
}

/// A refusal of the machine, as the API answers it.
pub fn refused(refusal: Refusal) -> CallError {
    let detail = refusal.to_string();
    let code = match refusal {
        Refusal::NotInCall | Refusal::Removed | Refusal::NotPresent => Code::NotInCall,
        Refusal::AlreadyIn => Code::AlreadyAnswered,
        Refusal::NotRinging => Code::AlreadyAnswered,
        Refusal::CannotJoinLate => Code::NotInCall,
        Refusal::NotWaiting => Code::NotWaiting,
    };
    CallError::conflict(code, detail)
}

/// Those who are told what happens in the call: everyone who took part
/// but `but` (someone written busy or blocked never did).
pub fn told(view: &CallView, participants: &[ParticipantRow], but: &str) -> Vec<String> {
    let took_part = |id: &str| participants.iter().any(|p| p.user_id == id && member(p).took_part());
    view.participants
        .iter()
        .filter(|p| p.user_id != but && took_part(&p.user_id))
        .map(|p| p.user_id.clone())
        .collect()
}

// ------------------------------------------------------------------ arriving

/// Someone is in the call's room (LiveKit says so, or the reconciler saw
/// them), in the LiveKit session that began at `session`. One who is not
/// present in the call is put out of the room; a new session of one who is
/// gets the rights of now. Returns whether it changed anything.
pub async fn in_room(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    identity: &str,
    session: Option<DateTime<Utc>>,
    effects: &mut Effects,
) -> Result<bool, CallError> {
    let id = call.call_id();
    let participants = store::participants(tx, id).await?;
    let me = participants.iter().find(|p| p.user_id == identity);
    let moved = membership::step(me.map(member), Step::Join).map_err(refused)?;
    if moved.out_of_room {
        tracing::info!(identity, "someone not in the call joined its room; removing them");
        effects.remove.push(identity.to_owned());
        if let Some(me) = me.filter(|me| me.status == ParticipantStatus::Removed) {
            back_after_removal(tx, call, &participants, me, session).await?;
        }
        return Ok(true);
    }
    let Some(me) = me else { return Ok(false) };
    let known = me.lk_session_at;
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
    if let Some(session) = session {
        store::participants::remember_session(tx, id, identity, session).await?;
    }
    // Whatever their token said, a new session gets the rights of now.
    effects.rights_for.push(identity.to_owned());
    if !moved.changed {
        return Ok(true);
    }
    store::mark_joined(tx, id, identity).await?;
    let present = participants
        .iter()
        .filter(|p| p.user_id == identity || p.status == ParticipantStatus::Joined)
        .count();
    if call.appointment_id.is_some() {
        // Active once a host and an admitted guest are here, not any two.
        meeting::on_presence(tx, call, app.clock.now(), app.config.timeouts.max_call_duration).await?;
    } else if let Some(next) = domain::call::connected(call.state, present) {
        store::set_state(tx, id, next).await?;
        store::cancel(tx, id, DeadlineKind::Connect).await?;
        let due = app.clock.now()
            + chrono::Duration::from_std(app.config.timeouts.max_call_duration)
                .unwrap_or(chrono::Duration::MAX);
        store::schedule(tx, id, DeadlineKind::MaxDuration, due, None).await?;
    }
    let participants = store::participants(tx, id).await?;
    let view = CallView::new(call, &participants);
    let others = told(&view, &participants, identity);
    store::notify(
        tx,
        &others,
        ClientEvent::ParticipantJoined,
        id,
        &json!({"call": view, "userId": identity}),
    )
    .await?;
    Ok(true)
}

/// Someone removed from the call is in its room again, in a LiveKit
/// session begun after their removal: an old token (one refreshed before
/// it), since callgate gives them no new one. The host hears it as
/// `consent.violation` (`back_after_removal`), once per session; a join
/// heard late, of the session they were removed in, is none.
async fn back_after_removal(
    tx: &mut PgConnection,
    call: &CallRow,
    participants: &[ParticipantRow],
    me: &ParticipantRow,
    session: Option<DateTime<Utc>>,
) -> Result<(), CallError> {
    let Some(session) = session else { return Ok(()) };
    // To the microsecond, as PostgreSQL keeps them.
    let after =
        |t: Option<DateTime<Utc>>| t.is_none_or(|t| session.timestamp_micros() > t.timestamp_micros());
    if !after(me.left_at) || !after(me.lk_session_at) {
        return Ok(());
    }
    store::participants::remember_session(tx, call.call_id(), me.user_id.as_str(), session).await?;
    let offence = Offence {
        user: me.user_id.as_str(),
        violation: Violation::BackAfterRemoval,
        removed: true,
        track: None,
        moderator: None,
    };
    let mut out = Outgoing::default();
    app_webhooks::consent_violation(&mut out, &CallView::new(call, participants), &offence);
    out.write(tx).await?;
    Ok(())
}

// ----------------------------------------------------------------- departing

/// Why someone is no longer in the call or its room.
#[derive(Clone, Copy, Debug)]
pub enum Departure {
    /// LiveKit says they left the room, and why.
    LiveKit(DisconnectReason),
    /// They hung up through the API.
    Leave,
    /// The reconciler found them missing from the room.
    Missing,
    /// Put out for breaking the video rule.
    Removed,
    /// Put out by a moderator (`calls::moderation`).
    RemovedByModerator,
    /// `reconnecting` for all of `REJOIN_GRACE` and not back.
    GraceOver,
}

pub enum Left {
    Ignored,
    /// They left, or (a dropped connection) are `reconnecting`.
    Left,
    CallEnded(Box<Ended>),
}

/// Someone is no longer in the room, or leaves the call (see the module's
/// "what happens when Bob leaves"). A departure of an older LiveKit session
/// than the one we know is stale, and one because the same identity joined
/// again (a reconnect) or moved node is none: both change nothing.
pub async fn depart(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    identity: &str,
    session: Option<DateTime<Utc>>,
    why: Departure,
    effects: &mut Effects,
) -> Result<Left, CallError> {
    let id = call.call_id();
    let participants = store::participants(tx, id).await?;
    let Some(me) = participants.iter().find(|p| p.user_id == identity) else {
        return Ok(Left::Ignored);
    };
    if let Departure::LiveKit(DisconnectReason::DuplicateIdentity | DisconnectReason::Migration) = why {
        return Ok(Left::Ignored);
    }
    if let (Some(session), Some(known)) = (session, me.lk_session_at)
        && session < known
    {
        return Ok(Left::Ignored);
    }
    let step = match why {
        // A blip is not a hang-up: only a leave or a removal is a departure at once.
        Departure::LiveKit(DisconnectReason::Other) if me.status == ParticipantStatus::Joined => Step::Drop,
        Departure::LiveKit(DisconnectReason::Other) if me.status == ParticipantStatus::Reconnecting => {
            return Ok(Left::Left);
        }
        Departure::Removed | Departure::RemovedByModerator => Step::Remove,
        Departure::GraceOver => Step::GraceOver,
        Departure::LiveKit(_) | Departure::Leave | Departure::Missing => Step::Leave,
    };
    let moved = membership::step(Some(member(me)), step).map_err(refused)?;
    if !moved.changed {
        return Ok(Left::Ignored);
    }
    if let Some(session) = session {
        store::participants::remember_session(tx, id, identity, session).await?;
    }
    let to = moved.to.map(|m| m.status).unwrap_or(me.status);
    if to == ParticipantStatus::Reconnecting {
        dropped(app, tx, call, identity).await?;
        return Ok(Left::Left);
    }
    store::mark_gone(tx, id, identity, to).await?;
    if moved.out_of_room {
        effects.remove.push(identity.to_owned());
    }
    let (source, recorded) = match why {
        Departure::LiveKit(_) => (EventSource::LiveKit, None),
        Departure::Leave => (EventSource::Api, Some(json!({}))),
        Departure::Removed | Departure::RemovedByModerator => (EventSource::System, None),
        Departure::Missing => (EventSource::System, Some(json!({"reason": "missing_from_room"}))),
        Departure::GraceOver => (EventSource::System, Some(json!({"reason": "rejoin_grace_over"}))),
    };
    if let Some(data) = recorded {
        store::record_event(tx, id, "participant.left", source, Some(identity), data).await?;
    }
    let remaining = participants.iter().filter(|p| p.live && p.user_id != identity).count();
    let user = UserId::parse(identity).ok();
    if remaining < 2 && !meeting::holds_open(tx, call).await? {
        let ending = match why {
            Departure::Removed => Ending::Removed,
            Departure::RemovedByModerator => Ending::Moderator,
            _ => Ending::LastLeft,
        };
        let (outcome, reason) = domain::call::end(call.state, ending);
        let ended = finish(tx, call, outcome, reason, source, user.as_ref()).await?;
        return Ok(Left::CallEnded(Box::new(ended)));
    }
    if moved.departed
        && let Some(user) = &user
    {
        consent::on_leave(app, tx, call, user).await?;
    }
    let participants = store::participants(tx, id).await?;
    let view = CallView::new(call, &participants);
    let others = told(&view, &participants, identity);
    store::notify(tx, &others, ClientEvent::ParticipantLeft, id, &json!({"call": view, "userId": identity}))
        .await?;
    Ok(Left::Left)
}

/// A joined participant's connection dropped: `reconnecting` until they are
/// back or `REJOIN_GRACE` is over (a durable deadline); the others hear
/// `participant.reconnecting`.
async fn dropped(app: &Core, tx: &mut PgConnection, call: &CallRow, identity: &str) -> Result<(), CallError> {
    let id = call.call_id();
    if !store::participants::mark_reconnecting(tx, id, identity, app.clock.now()).await? {
        return Ok(());
    }
    let grace = rejoin_grace(app, tx, call).await?;
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    store::deadlines::schedule_earliest(tx, id, DeadlineKind::Rejoin, app.clock.now() + grace).await?;
    store::record_event(tx, id, "participant.reconnecting", EventSource::LiveKit, Some(identity), json!({}))
        .await?;
    let participants = store::participants(tx, id).await?;
    let view = CallView::new(call, &participants);
    let others = told(&view, &participants, identity);
    let data = json!({"call": view, "userId": identity});
    store::notify(tx, &others, ClientEvent::ParticipantReconnecting, id, &data).await?;
    Ok(())
}

/// `REJOIN_GRACE` is over for the call's oldest drop: whoever has been
/// `reconnecting` that long is `left` (a 1:1 call ends); the deadline moves
/// on to the next drop, if any. Returns the call if it ended.
pub async fn rejoin_grace_over(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    effects: &mut Effects,
) -> Result<Option<Ended>, CallError> {
    let id = call.call_id();
    let grace = rejoin_grace(app, tx, call).await?;
    for user in store::participants::reconnecting_past(tx, id, grace, app.clock.now()).await? {
        let call = store::calls::reread(tx, call).await?;
        if let Left::CallEnded(ended) =
            depart(app, tx, &call, &user, None, Departure::GraceOver, effects).await?
        {
            return Ok(Some(*ended));
        }
    }
    if let Some(since) = store::participants::first_reconnecting_since(tx, id).await? {
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        store::deadlines::schedule_earliest(tx, id, DeadlineKind::Rejoin, since + grace).await?;
    }
    Ok(None)
}

/// The call's rejoin grace (fixed at its start), else `REJOIN_GRACE`.
async fn rejoin_grace(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
) -> sqlx::Result<std::time::Duration> {
    let own = store::calls::rejoin_grace(tx, call.call_id()).await?;
    Ok(own.unwrap_or(app.config.timeouts.rejoin_grace))
}

// ------------------------------------------------------- answering, declining

pub use crate::calls::consent::Consents;

/// How someone answers or arrives.
pub struct Answer<'a> {
    pub user: &'a AuthUser,
    /// May share their screen (their role's, or a guest's).
    pub share: bool,
    /// Their answers to a pending video request and to a recording.
    pub consents: Consents,
    /// `Answer`, `LateJoin` or `Arrive`.
    pub step: Step,
    /// The timeline's entry for it, written before the consent policy's.
    pub timeline: (&'static str, serde_json::Value),
}

/// `user` answers (rung), joins late (declined or missed) or arrives (an
/// appointment's): in the call, live; once present (past any waiting room)
/// the consent policy hears them join with their `video` answer.
pub async fn answer(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    me: &ParticipantRow,
    how: Answer<'_>,
) -> Result<membership::Moved, CallError> {
    let (user, step) = (how.user, how.step);
    let id = call.call_id();
    let moved = membership::step(Some(member(me)), step).map_err(refused)?;
    if !moved.changed {
        return Ok(moved);
    }
    if !me.live && !store::participants::make_live(tx, id, &user.id).await? {
        return Err(CallError::conflict(Code::CallerBusy, "you are already in a live call"));
    }
    store::mark_answered(tx, id, &user.id, user.name.as_deref(), user.gender, how.share).await?;
    if let Some(to) = moved.to
        && to.admitted != me.admitted
    {
        store::participants::set_admitted(tx, id, user.id.as_str(), to.admitted).await?;
    }
    let (kind, data) = how.timeline;
    store::record_event(tx, id, kind, EventSource::Api, Some(user.id.as_str()), data).await?;
    if moved.arrived {
        consent::on_answer(app, tx, call, &user.id, how.consents).await?;
    }
    Ok(moved)
}

/// `user`, rung, declines (or lets the ring run out: `RingTimeout`): no
/// longer live, free for other calls.
pub async fn decline(
    tx: &mut PgConnection,
    call: &CallRow,
    me: &ParticipantRow,
    step: Step,
) -> Result<(), CallError> {
    let moved = membership::step(Some(member(me)), step).map_err(refused)?;
    if let Some(to) = moved.to.filter(|_| moved.changed) {
        store::mark_gone(tx, call.call_id(), me.user_id.as_str(), to.status).await?;
    }
    Ok(())
}

/// A host admits a waiting guest (or one not arrived yet: let straight in
/// when they come). Returns what changed.
pub async fn admit(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    guest: &ParticipantRow,
) -> Result<membership::Moved, CallError> {
    let moved = membership::step(Some(member(guest)), Step::Admit).map_err(refused)?;
    if !moved.changed {
        return Ok(moved);
    }
    store::participants::set_admitted(tx, call.call_id(), guest.user_id.as_str(), true).await?;
    if moved.arrived {
        consent::on_answer(app, tx, call, &guest.user_id, Consents::default()).await?;
    }
    Ok(moved)
}

/// A host turns a guest away from the waiting room: removed for good (they
/// were never present, so the consent policy hears nothing).
pub async fn turn_away(
    tx: &mut PgConnection,
    call: &CallRow,
    guest: &ParticipantRow,
) -> Result<(), CallError> {
    if !member(guest).is_waiting() {
        return Err(refused(Refusal::NotWaiting));
    }
    let moved = membership::step(Some(member(guest)), Step::Remove).map_err(refused)?;
    if let Some(to) = moved.to.filter(|_| moved.changed) {
        store::mark_gone(tx, call.call_id(), guest.user_id.as_str(), to.status).await?;
        let data = json!({"reason": "turned_away"});
        store::record_event(
            tx,
            call.call_id(),
            "participant.removed",
            EventSource::Api,
            Some(guest.user_id.as_str()),
            data,
        )
        .await?;
    }
    Ok(())
}

// ------------------------------------------------------------------- ringing

/// The initiator of a new call: in it from the start (`Invite` as the
/// initiator). False when they are in another live call already.
pub async fn start_with(
    tx: &mut PgConnection,
    call: crate::domain::CallId,
    user: &AuthUser,
    share: bool,
) -> Result<bool, CallError> {
    let step = Step::Invite { role: crate::domain::Role::Initiator, admitted: true };
    let to = membership::step(None, step).map_err(refused)?.to.ok_or(CallError::NotFound)?;
    let me = store::NewParticipant {
        user: &user.id,
        name: user.name.as_deref(),
        gender: user.gender,
        role: to.role,
        status: to.status,
        may_share_screen: share,
        rung: None,
    };
    Ok(store::insert_participant(tx, call, &me, to.live).await?)
}

/// An appointment's host or guest, written when it opens: booked, not live
/// (nobody is busy because of an appointment until they join it), a guest
/// not admitted (the waiting room) until a host admits them.
pub async fn book(
    tx: &mut PgConnection,
    call: crate::domain::CallId,
    user: &UserId,
    host: bool,
) -> Result<(), CallError> {
    let role = if host { crate::domain::Role::Initiator } else { crate::domain::Role::Invitee };
    let booked = store::NewParticipant {
        user,
        name: None,
        gender: crate::domain::consent::Gender::Other,
        role,
        status: ParticipantStatus::Invited,
        may_share_screen: host,
        rung: None,
    };
    store::insert_participant(tx, call, &booked, false).await?;
    if !host {
        store::participants::set_admitted(tx, call, user.as_str(), false).await?;
    }
    Ok(())
}

/// What ringing someone came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rung {
    /// They ring.
    Rung,
    /// Busy in another call, or blocked: answered alike.
    Busy,
}

/// Rings `invitee` into the call (at its start or by an invitation) until
/// `until`, once the gate said they may be (`free`: not blocked). The
/// unique index on live participants decides a race with another call.
/// Nobody's status is rewritten for a busy or blocked callee.
pub async fn ring(
    tx: &mut PgConnection,
    call: crate::domain::CallId,
    participants: &[ParticipantRow],
    invitee: &UserId,
    free: bool,
    by: &UserId,
    until: DateTime<Utc>,
) -> Result<Rung, CallError> {
    let me = participants.iter().find(|p| p.user_id == *invitee);
    let step = if free {
        Step::Invite { role: crate::domain::Role::Invitee, admitted: true }
    } else {
        Step::Unavailable
    };
    let moved = match membership::step(me.map(member), step) {
        Ok(moved) => moved,
        // Put out of this call for good: answered as a busy callee.
        Err(Refusal::Removed) => return Ok(Rung::Busy),
        Err(refusal) => return Err(refused(refusal)),
    };
    let Some(to) = moved.to.filter(|_| moved.changed) else { return Ok(Rung::Busy) };
    let new = |status| store::NewParticipant {
        user: invitee,
        name: None,
        gender: crate::domain::consent::Gender::Other,
        role: crate::domain::Role::Invitee,
        status,
        may_share_screen: true,
        rung: (status == ParticipantStatus::Invited).then_some((by, until)),
    };
    match (me, to.status) {
        (None, ParticipantStatus::Invited) => {
            if store::insert_participant(tx, call, &new(ParticipantStatus::Invited), true).await? {
                return Ok(Rung::Rung);
            }
            // Live in another call meanwhile: written as never having taken part.
            store::insert_participant(tx, call, &new(ParticipantStatus::Busy), false).await?;
            Ok(Rung::Busy)
        }
        (None, _) => {
            store::insert_participant(tx, call, &new(to.status), false).await?;
            Ok(Rung::Busy)
        }
        // Rung again; live in another call meanwhile leaves them as they were.
        (Some(_), _) if store::participants::ring_again(tx, call, invitee, by, until).await? => {
            Ok(Rung::Rung)
        }
        (Some(_), _) => Ok(Rung::Busy),
    }
}
