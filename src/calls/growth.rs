//! A call grows: someone present invites more users into a live call (they
//! ring in the same room, through the same authorization, block, cooldown
//! and busy rules as a new call), and a group invitee who declined or missed
//! the ring joins while the call goes on. A 1:1 call becomes a group call
//! without a new room. The consent policy treats every newcomer as its rules
//! say: a consenter who joins while video is on keeps it on only by
//! consenting as she joins (`video: true`).

use serde_json::json;

use crate::calls::enforce::{self, Effects};
use crate::calls::lifecycle::{ended_conflict, join_for, may_share_screen, refuse_appointment_call};
use crate::calls::views::{CallView, CallWithJoin};
use crate::calls::{CallError, Core, consent, ringing};
use crate::domain::consent::Gender;
use crate::domain::{AuthUser, CallId, ClientEvent, Code, EventSource, ParticipantStatus, Role, UserId};
use crate::store::{self, DeadlineKind, NewParticipant, Outgoing};

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

/// `user`, present in a live call, invites `invitees` into it.
#[tracing::instrument(skip_all, fields(user_id = %user.id, call_id = %id))]
pub async fn invite(
    app: &Core,
    user: &AuthUser,
    id: CallId,
    invitees: Vec<UserId>,
) -> Result<Invited, CallError> {
    // Cheap refusals first, without a lock: who it is and what they may do.
    {
        let mut conn = app.db.acquire().await?;
        let call = store::find_call(&mut *conn, id).await?.ok_or(CallError::NotFound)?;
        let participants = store::participants(&mut conn, id).await?;
        may_invite(&call, &participants, &user.id)?;
        crate::calls::limits::call_start(app, &user.id).await?;
        crate::calls::blocks::ring_cooldown(app, &user.id, &invitees).await?;
        let conversation = call.conversation_id.as_deref();
        crate::calls::authz::may_call(app, &user.id, &invitees, conversation, call.call_type).await?;
    }
    let blocked = crate::calls::blocks::blocked_among(app, &user.id, &invitees).await?;
    let mut tx = app.db.begin().await?;
    let call = store::lock_call(&mut tx, id).await?.ok_or(CallError::NotFound)?;
    let participants = store::participants(&mut tx, id).await?;
    may_invite(&call, &participants, &user.id)?;
    let in_it = |u: &UserId| {
        participants.iter().any(|p| {
            p.user_id == *u
                && p.live
                && matches!(
                    p.status,
                    ParticipantStatus::Invited | ParticipantStatus::Accepted | ParticipantStatus::Joined
                )
        })
    };
    if invitees.iter().any(in_it) {
        return Err(CallError::Invalid {
            code: Code::DuplicateParticipants,
            field: Some("participantIds".into()),
            detail: "someone named is in the call or being rung already".into(),
        });
    }
    let live = participants.iter().filter(|p| p.live).count();
    let max = app.config.max_call_participants;
    if live + invitees.len() > max {
        return Err(CallError::Invalid {
            code: Code::TooManyParticipants,
            field: Some("participantIds".into()),
            detail: format!("a call has at most {max} participants"),
        });
    }
    let (mut rung, mut busy) = (Vec::new(), Vec::new());
    for invitee in &invitees {
        let known = participants.iter().any(|p| p.user_id == *invitee);
        let free = !blocked.contains(invitee)
            && if known {
                let rung_again = store::participants::reinvite(&mut tx, id, invitee).await?
                    && store::participants::make_live(&mut tx, id, invitee).await?;
                if !rung_again {
                    store::mark_gone(&mut tx, id, invitee.as_str(), ParticipantStatus::Busy).await?;
                }
                rung_again
            } else {
                let row = NewParticipant {
                    user: invitee,
                    name: None,
                    gender: Gender::Other,
                    role: Role::Invitee,
                    status: ParticipantStatus::Invited,
                    may_share_screen: true,
                };
                store::insert_participant(&mut tx, id, &row, true).await?
            };
        if free {
            rung.push(invitee.clone());
        } else {
            if !known {
                let row = NewParticipant {
                    user: invitee,
                    name: None,
                    gender: Gender::Other,
                    role: Role::Invitee,
                    status: ParticipantStatus::Busy,
                    may_share_screen: true,
                };
                store::insert_participant(&mut tx, id, &row, false).await?;
            }
            busy.push(invitee.clone());
        }
    }
    if !rung.is_empty() {
        let due = app.clock.now()
            + chrono::Duration::from_std(app.config.timeouts.ringing).unwrap_or(chrono::Duration::MAX);
        store::schedule(&mut tx, id, DeadlineKind::Ringing, due, None).await?;
    }
    let data = json!({"invitees": rung, "busy": busy});
    store::record_event(&mut tx, id, "call.invited", EventSource::Api, Some(user.id.as_str()), data).await?;
    let view = CallView::load(&mut tx, &call).await?;
    let mut out = Outgoing::default();
    ringing::rang(&mut out, &view, &rung);
    let recipients: Vec<String> = rung.iter().map(|u| u.to_string()).collect();
    out.notify(&recipients, ClientEvent::CallIncoming, Some(id.0), &json!({"call": view}));
    let others: Vec<String> = view
        .participants
        .iter()
        .filter(|p| p.user_id != user.id.as_str() && !recipients.contains(&p.user_id))
        .map(|p| p.user_id.clone())
        .collect();
    if !rung.is_empty() {
        let event = json!({"call": view, "by": user.id, "invitees": rung});
        out.notify(&others, ClientEvent::ParticipantInvited, Some(id.0), &event);
    }
    out.write(&mut tx).await?;
    tx.commit().await?;
    Ok(Invited { call: view, rung, busy })
}

/// A group invitee who declined or missed the ring joins the call while it
/// goes on; `video` answers as when answering (a consenter joining while
/// video is on keeps it on only with `true`).
#[tracing::instrument(skip_all, fields(user_id = %user.id, call_id = %id))]
pub async fn join(
    app: &Core,
    user: &AuthUser,
    id: CallId,
    video: Option<bool>,
) -> Result<CallWithJoin, CallError> {
    let mut tx = app.db.begin().await?;
    let call = store::lock_call(&mut tx, id).await?.ok_or(CallError::NotFound)?;
    let participants = store::participants(&mut tx, id).await?;
    let me = participants.iter().find(|p| p.user_id == user.id).ok_or(CallError::NotFound)?;
    if !call.state.is_live() {
        return Err(ended_conflict());
    }
    refuse_appointment_call(&call)?;
    match me.status {
        ParticipantStatus::Declined | ParticipantStatus::Missed => {}
        ParticipantStatus::Invited => {
            return Err(CallError::conflict(Code::NotAnswered, "it is ringing you: answer it instead"));
        }
        ParticipantStatus::Accepted | ParticipantStatus::Joined if me.live => {
            return Err(CallError::conflict(
                Code::AlreadyAnswered,
                "you are in the call: ask for a token instead",
            ));
        }
        _ => return Err(CallError::conflict(Code::NotInCall, "you are no longer in this call")),
    }
    if me.role != Role::Invitee {
        return Err(CallError::conflict(Code::NotAnInvitee, "only an invitee joins a call they missed"));
    }
    if !store::participants::make_live(&mut tx, id, &user.id).await? {
        return Err(CallError::conflict(Code::CallerBusy, "you are already in a live call"));
    }
    let share = may_share_screen(app, user);
    store::mark_answered(&mut tx, id, &user.id, user.name.as_deref(), user.gender, share).await?;
    store::record_event(
        &mut tx,
        id,
        "call.accepted",
        EventSource::Api,
        Some(user.id.as_str()),
        json!({"late": true}),
    )
    .await?;
    consent::on_answer(app, &mut tx, &call, &user.id, video).await?;
    let call = store::lock_call(&mut tx, id).await?.ok_or(CallError::NotFound)?;
    let view = CallView::load(&mut tx, &call).await?;
    let others: Vec<String> = view
        .participants
        .iter()
        .filter(|p| p.user_id != user.id.as_str())
        .map(|p| p.user_id.clone())
        .collect();
    store::notify(&mut tx, &others, ClientEvent::CallAccepted, id, &json!({"call": view, "by": user.id}))
        .await?;
    tx.commit().await?;
    enforce::settle_later(app, Effects::for_call(id));
    let join = join_for(app, &call, &user.id, user.name.as_deref(), share)?;
    Ok(CallWithJoin { call: view, join, ice_servers: app.ice_servers_in(&call, &user.id) })
}
