//! A call grows: someone present invites more users into a live call (they
//! ring in the same room, through the same authorization, block, cooldown
//! and busy rules as a new call), and a group invitee who declined or missed
//! the ring joins while the call goes on. A 1:1 call becomes a group call
//! without a new room. The consent policy treats every newcomer as its rules
//! say: a consenter who joins while video is on keeps it on only by
//! consenting as she joins (`video: true`).

use serde_json::json;

use crate::calls::enforce::Effects;
use crate::calls::lifecycle::{ended_conflict, join_for, may_share_screen, refuse_appointment_call};
use crate::calls::views::{CallView, CallWithJoin};
use crate::calls::{CallError, Core, Unit, gate, participants, ringing};
use crate::domain::membership::Step;
use crate::domain::{AuthUser, CallId, ClientEvent, Code, EventSource, ParticipantStatus, Role, UserId};
use crate::store::{self, DeadlineKind};

/// Who an invitation rang, and who was busy (or blocked: told apart from
/// busy by nobody).
#[derive(Debug)]
pub struct Invited {
    pub call: CallView,
    pub rung: Vec<UserId>,
    pub busy: Vec<UserId>,
}

/// Whether `user` may invite into this call: present in it, live, not an
/// appointment's (404 for one not in it).
fn may_invite(
    call: &store::CallRow,
    participants: &[store::ParticipantRow],
    user: &UserId,
) -> Result<(), CallError> {
    let me = participants.iter().find(|p| p.user_id == *user).ok_or(CallError::NotFound)?;
    if !call.state.is_live() {
        return Err(ended_conflict());
    }
    refuse_appointment_call(call)?;
    if !me.is_present() {
        return Err(CallError::conflict(
            Code::NotAnswered,
            "only someone in the call invites others into it",
        ));
    }
    Ok(())
}

/// `user`, present in a live call, invites `invitees` into it. Each
/// passes the gate (`calls::gate`) against everyone in the call; each rings
/// for `RINGING_TIMEOUT` from now, whoever else still rings.
#[tracing::instrument(skip_all, fields(user_id = %user.id, call_id = %id))]
pub async fn invite(
    app: &Core,
    user: &AuthUser,
    id: CallId,
    invitees: Vec<UserId>,
) -> Result<Invited, CallError> {
    // The gate first, without a lock: who it is, what they may do, who is in.
    let passed = {
        let mut conn = app.db.acquire().await?;
        let call = store::find_call(&mut *conn, id).await?.ok_or(CallError::NotFound)?;
        let participants = store::participants(&mut conn, id).await?;
        may_invite(&call, &participants, &user.id)?;
        refuse_those_in(&participants, &invitees)?;
        let inside = inside(&participants, &user.id);
        let knock = gate::Knock {
            by: &user.id,
            inside: &inside,
            newcomers: &invitees,
            call_type: call.call_type,
            conversation: call.conversation_id.as_deref(),
            live: participants.iter().filter(|p| p.live).count(),
            late: false,
        };
        gate::pass(app, knock).await?
    };
    let mut unit = Unit::open(app, id).await?;
    let call = unit.call().clone();
    let participants = store::participants(unit.conn(), id).await?;
    may_invite(&call, &participants, &user.id)?;
    refuse_those_in(&participants, &invitees)?;
    let live = participants.iter().filter(|p| p.live).count();
    let max = app.config.max_call_participants;
    if live + invitees.len() > max {
        return Err(CallError::Invalid {
            code: Code::TooManyParticipants,
            field: Some("participantIds".into()),
            detail: format!("a call has at most {max} participants"),
        });
    }
    // Blocks again, against the call as it is under the lock.
    let mut now_inside = inside(&participants, &user.id);
    now_inside.push(user.id.clone());
    let free: Vec<UserId> = invitees.iter().filter(|u| passed.free.contains(u)).cloned().collect();
    let blocked = gate::blocked_now(unit.conn(), &now_inside, &free).await?;
    let until = app.clock.now()
        + chrono::Duration::from_std(app.config.timeouts.ringing).unwrap_or(chrono::Duration::MAX);
    let (mut rung, mut busy) = (Vec::new(), Vec::new());
    for invitee in &invitees {
        let free = passed.free.contains(invitee) && !blocked.contains(invitee);
        match participants::ring(unit.conn(), id, &participants, invitee, free, &user.id, until).await? {
            participants::Rung::Rung => rung.push(invitee.clone()),
            participants::Rung::Busy => busy.push(invitee.clone()),
        }
    }
    if !rung.is_empty() {
        store::deadlines::schedule_earliest(unit.conn(), id, DeadlineKind::Ringing, until).await?;
    }
    let data = json!({"invitees": rung, "busy": busy});
    let by = Some(user.id.as_str());
    store::record_event(unit.conn(), id, "call.invited", EventSource::Api, by, data).await?;
    let participants = store::participants(unit.conn(), id).await?;
    let view = CallView::new(&call, &participants);
    let out = unit.out();
    ringing::rang(out, &view, &rung);
    let recipients: Vec<String> = rung.iter().map(|u| u.to_string()).collect();
    out.notify(&recipients, ClientEvent::CallIncoming, Some(id.0), &json!({"call": view}));
    let others: Vec<String> = participants::told(&view, &participants, user.id.as_str())
        .into_iter()
        .filter(|p| !recipients.contains(p))
        .collect();
    if !rung.is_empty() {
        let event = json!({"call": view, "by": user.id, "invitees": rung});
        out.notify(&others, ClientEvent::ParticipantInvited, Some(id.0), &event);
    }
    unit.commit().await?;
    Ok(Invited { call: view, rung, busy })
}

/// Someone named is in the call already, or being rung: nothing is done.
fn refuse_those_in(participants: &[store::ParticipantRow], invitees: &[UserId]) -> Result<(), CallError> {
    let in_it = |u: &UserId| {
        participants.iter().any(|p| p.user_id == *u && (p.member().in_call() || p.member().is_ringing()))
    };
    if invitees.iter().any(in_it) {
        return Err(CallError::Invalid {
            code: Code::DuplicateParticipants,
            field: Some("participantIds".into()),
            detail: "someone named is in the call or being rung already".into(),
        });
    }
    Ok(())
}

/// Everyone in the call or being rung, but `but`.
fn inside(participants: &[store::ParticipantRow], but: &UserId) -> Vec<UserId> {
    participants
        .iter()
        .filter(|p| p.user_id != *but && (p.member().in_call() || p.member().is_ringing()))
        .map(|p| p.user_id.clone())
        .collect()
}

/// A group invitee who declined or missed the ring joins the call while it
/// goes on; `video` answers as when answering (a consenter joining while
/// video is on keeps it on only with `true`).
#[tracing::instrument(skip_all, fields(user_id = %user.id, call_id = %id))]
pub async fn join(
    app: &Core,
    user: &AuthUser,
    id: CallId,
    consents: impl Into<participants::Consents>,
) -> Result<CallWithJoin, CallError> {
    let consents = consents.into();
    // The gate, as for any way in: blocks against those in the call, the
    // host's hook and the size of the call. Refused as one no longer in it.
    {
        let mut conn = app.db.acquire().await?;
        let call = store::find_call(&mut *conn, id).await?.ok_or(CallError::NotFound)?;
        let participants = store::participants(&mut conn, id).await?;
        if !participants.iter().any(|p| p.user_id == user.id && p.member().took_part()) {
            return Err(CallError::NotFound);
        }
        let inside = inside(&participants, &user.id);
        let knock = gate::Knock {
            by: &user.id,
            inside: &inside,
            newcomers: std::slice::from_ref(&user.id),
            call_type: call.call_type,
            conversation: call.conversation_id.as_deref(),
            live: participants.iter().filter(|p| p.live).count(),
            late: true,
        };
        let passed = gate::pass(app, knock).await?;
        if passed.free.is_empty() {
            return Err(CallError::conflict(Code::NotInCall, "you are no longer in this call"));
        }
    }
    let mut unit = Unit::open(app, id).await?;
    let call = unit.call().clone();
    let participants = store::participants(unit.conn(), id).await?;
    let me = participants
        .iter()
        .find(|p| p.user_id == user.id && p.member().took_part())
        .ok_or(CallError::NotFound)?;
    if !call.state.is_live() {
        return Err(ended_conflict());
    }
    refuse_appointment_call(&call)?;
    if me.status == ParticipantStatus::Invited && me.live {
        return Err(CallError::conflict(Code::NotAnswered, "it is ringing you: answer it instead"));
    }
    if me.member().in_call() {
        return Err(CallError::conflict(
            Code::AlreadyAnswered,
            "you are in the call: ask for a token instead",
        ));
    }
    if me.role != Role::Invitee {
        return Err(CallError::conflict(Code::NotAnInvitee, "only an invitee joins a call they missed"));
    }
    let live = participants.iter().filter(|p| p.live).count();
    if live >= app.config.max_call_participants {
        return Err(CallError::conflict(Code::TooManyParticipants, "the call is full"));
    }
    // Blocks again, against the call as it is under the lock.
    let now_inside = inside(&participants, &user.id);
    if !gate::blocked_now(unit.conn(), &now_inside, std::slice::from_ref(&user.id)).await?.is_empty() {
        return Err(CallError::conflict(Code::NotInCall, "you are no longer in this call"));
    }
    let share = may_share_screen(app, user);
    let how = participants::Answer {
        user,
        share,
        consents,
        step: Step::LateJoin,
        timeline: ("call.accepted", json!({"late": true})),
    };
    participants::answer(app, unit.conn(), &call, me, how).await?;
    let call = unit.refresh().await?.clone();
    let participants = store::participants(unit.conn(), id).await?;
    let view = CallView::new(&call, &participants);
    let others = participants::told(&view, &participants, user.id.as_str());
    store::notify(unit.conn(), &others, ClientEvent::CallAccepted, id, &json!({"call": view, "by": user.id}))
        .await?;
    unit.settle(Effects::for_call(id));
    unit.commit().await?;
    let join = join_for(app, &call, &user.id, user.name.as_deref(), share)?;
    Ok(CallWithJoin { call: view, join, ice_servers: app.ice_servers_in(&call, &user.id) })
}
