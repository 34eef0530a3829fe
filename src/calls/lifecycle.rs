//! The call lifecycle: start, answer, hang up, and what LiveKit and the
//! clock tell us. Each operation is one transaction that locks the call row;
//! LiveKit rooms are created inside it (so a failure leaves nothing live)
//! and deleted after it commits.

use secrecy::ExposeSecret;
use serde_json::json;
use sqlx::PgConnection;

use crate::calls::CallError;
use crate::calls::Core;
use crate::calls::Unit;
use crate::calls::consent;
pub use crate::calls::ending::{Ended, after_end, delete_room, finish};
use crate::calls::enforce::Effects;
use crate::calls::ringing;
use crate::calls::views::{CallOnly, CallView, CallWithJoin, JoinOnly, JoinView};
use crate::domain::AuthUser;
use crate::domain::ClientEvent;
use crate::domain::Code;
use crate::domain::consent::{self as rules, VideoSession};
use crate::domain::membership::Step;
use crate::domain::{self, call::Ending};
use crate::domain::{
    CallId, CallState, CallType, EndReason, EventSource, Outcome, ParticipantStatus, RingStop, Role, UserId,
};
use crate::livekit::RoomSpec;
use crate::store::{self, CallRow, DeadlineKind, NewCall, Outgoing, ParticipantRow};

/// A validated request to start a call.
#[derive(Debug)]
pub struct StartCall {
    pub invitees: Vec<UserId>,
    pub call_type: CallType,
    pub conversation_id: Option<String>,
    pub external_ref: Option<String>,
}

fn chrono_secs(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Whether this user's role lets them share their screen.
pub fn may_share_screen(app: &Core, user: &AuthUser) -> bool {
    match &app.config.screen_share_roles {
        None => true,
        Some(roles) => roles.iter().any(|r| user.roles.contains(r)),
    }
}

/// Starts a call: checks who may start it, writes the call and its roster,
/// rings the invitees (or ends it `busy` if none is free), creates its
/// LiveKit room and commits, in that order: a room that fails to be created
/// leaves no call, a call that fails to commit leaves no room.
#[tracing::instrument(skip_all, fields(user_id = %user.id, call_id))]
pub async fn start(app: &Core, user: &AuthUser, req: StartCall) -> Result<CallWithJoin, CallError> {
    let knock = crate::calls::gate::Knock {
        by: &user.id,
        inside: &[],
        newcomers: &req.invitees,
        call_type: req.call_type,
        conversation: req.conversation_id.as_deref(),
        live: 1,
        late: false,
    };
    let passed = crate::calls::gate::pass(app, knock).await?;
    if app.config.events.require_callee_online {
        require_callee_online(app, &req.invitees).await?;
    }
    let call_id = CallId::new();
    tracing::Span::current().record("call_id", tracing::field::display(call_id));
    let room_name = app.livekit.room_name(call_id);
    let session = VideoSession::new(app.config.video_policy);
    let share = may_share_screen(app, user);
    // A cheap look first, so that a crowd calling one busy user is answered
    // without queueing on the index entry of a call being started; the
    // unique index below still decides every race.
    let mut everyone = vec![user.id.clone()];
    everyone.extend(req.invitees.iter().cloned());
    let busy_now = store::live_users(&app.db, &everyone).await?;
    if busy_now.contains(&user.id) {
        return Err(CallError::conflict(Code::CallerBusy, "you are already in a live call"));
    }
    // A blocked callee is answered as a busy one, so that a block is not revealed.
    let free: Vec<UserId> = passed.free.into_iter().filter(|u| !busy_now.contains(u)).collect();
    // Live in it from the start: the initiator alone.
    let spec = room_spec(app, call_id, req.call_type, session.state, &[user.id.to_string()]);
    let mut tx = app.db.begin().await?;
    let new_call = NewCall {
        id: call_id,
        room_name: &room_name,
        call_type: req.call_type,
        state: CallState::Ringing,
        initiator: &user.id,
        conversation_id: req.conversation_id.as_deref(),
        external_ref: req.external_ref.as_deref(),
        scheduled: false,
        video_session: &session,
        video_requested_at_start: req.call_type == CallType::Video && !rules::camera_allowed(session.state),
        rejoin_grace: Some(app.config.timeouts.rejoin_grace),
        room_metadata: &spec.metadata,
    };
    let row = store::insert_call(&mut tx, &new_call).await?;
    let roster = write_roster(app, &mut tx, call_id, user, share, &req.invitees, &free).await?;
    if roster.rung.is_empty() {
        return Err(end_busy(app, tx, call_id, user, &roster.busy).await?);
    }
    let due = app.clock.now() + chrono_secs(app.config.timeouts.ringing);
    store::schedule(&mut tx, call_id, DeadlineKind::Ringing, due, None).await?;
    let data = json!({"type": req.call_type, "invitees": roster.rung, "busy": roster.busy});
    store::record_event(&mut tx, call_id, "call.started", EventSource::Api, Some(user.id.as_str()), data)
        .await?;
    // Nothing since the insert changed the row.
    let view = CallView::new(&row, &store::participants(&mut tx, call_id).await?);
    let mut out = Outgoing::default();
    crate::calls::app_webhooks::call_started(&mut out, &view);
    ringing::rang(&mut out, &view, &roster.rung);
    let recipients: Vec<String> = roster.rung.iter().map(|u| u.to_string()).collect();
    out.notify(&recipients, ClientEvent::CallIncoming, Some(call_id.0), &json!({"call": view}));
    out.write(&mut tx).await?;
    app.livekit.create_room(&room_name, spec).await.map_err(|e| CallError::LiveKitUnavailable(e.into()))?;
    if let Err(err) = tx.commit().await {
        delete_room(app, &room_name).await;
        return Err(err.into());
    }
    let join = join_for(app, &row, &user.id, user.name.as_deref(), share)?;
    Ok(CallWithJoin { call: view, join, ice_servers: app.ice_servers_in(&row, &user.id) })
}

/// Who a new call rings, and who was busy.
struct Roster {
    rung: Vec<UserId>,
    busy: Vec<UserId>,
}

/// Writes the initiator and rings the invitees (`participants::ring`): one
/// the gate let through (`free`) rings unless the unique index finds them in
/// another live call; anyone else is written as never having taken part.
async fn write_roster(
    app: &Core,
    tx: &mut PgConnection,
    call_id: CallId,
    user: &AuthUser,
    share: bool,
    invitees: &[UserId],
    free: &[UserId],
) -> Result<Roster, CallError> {
    if !crate::calls::participants::start_with(tx, call_id, user, share).await? {
        return Err(CallError::conflict(Code::CallerBusy, "you are already in a live call"));
    }
    // Invitees are not present until they answer with their own verified token: only then are their gender,
    // name and screen-share right known.
    let (mut rung, mut busy) = (Vec::new(), Vec::new());
    let until = app.clock.now() + chrono_secs(app.config.timeouts.ringing);
    // A new call: nobody named is written yet (the request names each once).
    for invitee in invitees {
        let is_free = free.contains(invitee);
        match crate::calls::participants::ring(tx, call_id, &[], invitee, is_free, &user.id, until).await? {
            crate::calls::participants::Rung::Rung => rung.push(invitee.clone()),
            crate::calls::participants::Rung::Busy => busy.push(invitee.clone()),
        }
    }
    Ok(Roster { rung, busy })
}

/// Nobody could be rung: the call is recorded as one that ended busy, and
/// the caller is told the callee is busy.
async fn end_busy(
    app: &Core,
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    call_id: CallId,
    user: &AuthUser,
    busy: &[UserId],
) -> Result<CallError, CallError> {
    let row = store::end_call(&mut tx, call_id, Outcome::Busy, EndReason::Busy)
        .await?
        .ok_or(CallError::NotFound)?;
    let data = json!({"outcome": Outcome::Busy, "busy": busy});
    store::record_event(&mut tx, call_id, "call.ended", EventSource::Api, Some(user.id.as_str()), data)
        .await?;
    let view = CallView::load(&mut tx, &row).await?;
    let mut out = Outgoing::default();
    crate::calls::app_webhooks::call_ended(&mut out, &row, &view);
    out.write(&mut tx).await?;
    tx.commit().await?;
    let ended = Ended { call: row, outcome: Outcome::Busy, reason: EndReason::Busy, view };
    app.metrics.call_ended(&ended.figures());
    Ok(CallError::conflict(Code::CalleeBusy, "the callee is in another call"))
}

fn room_spec(
    app: &Core,
    call_id: CallId,
    call_type: CallType,
    video: rules::VideoState,
    live: &[String],
) -> RoomSpec {
    let timeouts = &app.config.timeouts;
    RoomSpec {
        // LiveKit closes a room nobody joined after this long; the call's own
        // deadlines end it first.
        empty_timeout: timeouts.ringing + timeouts.connect + std::time::Duration::from_secs(60),
        departure_timeout: timeouts.rejoin_grace,
        max_participants: app.config.max_call_participants as u32,
        metadata: crate::livekit::room_metadata(call_id, call_type, video, rules::VideoState::Off, live),
    }
}

/// Mints a join token. It never carries `camera` or `screen_share`, whatever
/// the video state: those are granted in LiveKit once the participant has
/// joined (`crate::calls::enforce`), so an old token can never bring a camera back.
pub fn join_for(
    app: &Core,
    call: &CallRow,
    user: &UserId,
    name: Option<&str>,
    may_share_screen: bool,
) -> Result<JoinView, CallError> {
    join_with(app, call, user, name, may_share_screen, false)
}

/// Like [`join_for`]; `waiting` (an appointment's waiting room) grants
/// joining the room only: no publish, no subscribe, no data.
pub fn join_with(
    app: &Core,
    call: &CallRow,
    user: &UserId,
    name: Option<&str>,
    may_share_screen: bool,
    waiting: bool,
) -> Result<JoinView, CallError> {
    let sources = rules::publish_sources(rules::VideoState::Off, may_share_screen);
    let grant = crate::livekit::tokens::JoinGrant {
        identity: user.as_str(),
        name,
        room: &call.room_name,
        sources: &sources,
        waiting,
        ttl: app.config.token_ttl,
    };
    let lk = &app.config.livekit;
    let (token, expires_at) =
        crate::livekit::tokens::mint(&lk.api_key, lk.api_secret.expose_secret(), &grant, app.clock.now())
            .map_err(|e| CallError::Internal(anyhow::Error::new(e).context("minting a LiveKit token")))?;
    Ok(JoinView {
        url: lk.url.clone(),
        token,
        room_name: call.room_name.clone(),
        identity: user.to_string(),
        expires_at,
    })
}

/// The call's unit, if `user` takes part in it; 404 otherwise (never
/// reveal that another user's call exists).
async fn open_for<'a>(
    app: &'a Core,
    id: CallId,
    user: &UserId,
) -> Result<(Unit<'a>, Vec<ParticipantRow>, ParticipantRow), CallError> {
    let mut unit = Unit::open(app, id).await?;
    let participants = store::participants(unit.conn(), id).await?;
    // Someone written busy or blocked never took part: the call is not theirs to see.
    let me = participants
        .iter()
        .find(|p| p.user_id == user.as_str() && p.member().took_part())
        .cloned()
        .ok_or(CallError::NotFound)?;
    Ok((unit, participants, me))
}

/// Like `open_for`, for someone still in a live call.
async fn open_as_member<'a>(
    app: &'a Core,
    id: CallId,
    user: &UserId,
) -> Result<(Unit<'a>, ParticipantRow), CallError> {
    let (unit, _, me) = open_for(app, id, user).await?;
    if !unit.call().state.is_live() {
        return Err(ended_conflict());
    }
    if !me.live {
        return Err(CallError::conflict(Code::NotInCall, "you are no longer in this call"));
    }
    Ok((unit, me))
}

/// An appointment's call is entered through the appointment (its window,
/// its waiting room), never answered like a rung call.
pub(crate) fn refuse_appointment_call(call: &CallRow) -> Result<(), CallError> {
    match call.appointment_id {
        Some(_) => Err(CallError::conflict(
            Code::JoinThroughAppointment,
            "this is an appointment's call: join or leave it through /appointments/{id}",
        )),
        None => Ok(()),
    }
}

pub(crate) fn ended_conflict() -> CallError {
    CallError::conflict(Code::CallEnded, "the call has ended")
}

#[tracing::instrument(skip_all, fields(user_id = %user.id, call_id = %id))]
pub async fn accept(
    app: &Core,
    user: &AuthUser,
    id: CallId,
    consents: impl Into<crate::calls::participants::Consents>,
) -> Result<CallWithJoin, CallError> {
    let consents = consents.into();
    // Suspended after it began to ring: answered as if in another call.
    crate::calls::gate::refuse_suspended(app, &user.id).await?;
    let (mut unit, _, me) = open_for(app, id, &user.id).await?;
    let call = unit.call().clone();
    if !call.state.is_live() {
        return Err(ended_conflict());
    }
    refuse_appointment_call(&call)?;
    // The initiator who left and was rung again answers like anyone.
    if me.role == Role::Initiator && me.status != ParticipantStatus::Invited {
        return Err(CallError::conflict(Code::NotAnInvitee, "the initiator does not answer their own call"));
    }
    let share = may_share_screen(app, user);
    match me.status {
        ParticipantStatus::Invited => {}
        // A second device answering again gets a fresh token; nothing changes.
        ParticipantStatus::Accepted | ParticipantStatus::Joined | ParticipantStatus::Reconnecting
            if me.is_present() =>
        {
            unit.commit().await?;
            return token_response(app, &call, user, share).await;
        }
        _ => return Err(CallError::conflict(Code::NotInCall, "you are no longer in this call")),
    }
    let answers_the_call = domain::call::answered(call.state);
    if let Some(next) = answers_the_call {
        store::set_state(unit.conn(), id, next).await?;
        let due = app.clock.now() + chrono_secs(app.config.timeouts.connect);
        store::schedule(unit.conn(), id, DeadlineKind::Connect, due, None).await?;
    }
    // No word of the video answer: in a group it would tell who declined.
    let how = crate::calls::participants::Answer {
        user,
        share,
        consents,
        step: Step::Answer,
        timeline: ("call.accepted", json!({})),
    };
    crate::calls::participants::answer(app, unit.conn(), &call, &me, how).await?;
    let call = unit.refresh().await?.clone();
    let participants = store::participants(unit.conn(), id).await?;
    let view = CallView::new(&call, &participants);
    let others = crate::calls::participants::told(&view, &participants, user.id.as_str());
    let out = unit.out();
    out.notify(&others, ClientEvent::CallAccepted, Some(id.0), &json!({"call": view, "by": user.id}));
    ringing::stopped(out, &view, user.id.as_str(), RingStop::Answered);
    if answers_the_call.is_some() {
        crate::calls::app_webhooks::call_answered(out, &view, &user.id);
    }
    unit.settle(Effects::for_call(id));
    unit.commit().await?;
    if answers_the_call.is_some() {
        app.metrics.call_answered(call.created_at, call.answered_at);
    }
    let join = join_for(app, &call, &user.id, user.name.as_deref(), share)?;
    Ok(CallWithJoin { call: view, join, ice_servers: app.ice_servers_in(&call, &user.id) })
}

async fn token_response(
    app: &Core,
    call: &CallRow,
    user: &AuthUser,
    share: bool,
) -> Result<CallWithJoin, CallError> {
    let mut conn = app.db.acquire().await?;
    let participants = store::participants(&mut conn, call.call_id()).await?;
    let view = CallView::new(call, &participants);
    let join = join_for(app, call, &user.id, user.name.as_deref(), share)?;
    Ok(CallWithJoin { call: view, join, ice_servers: app.ice_servers_in(call, &user.id) })
}

#[tracing::instrument(skip_all, fields(user_id = %user.id, call_id = %id))]
pub async fn decline(app: &Core, user: &AuthUser, id: CallId) -> Result<CallOnly, CallError> {
    let (mut unit, participants, me) = open_for(app, id, &user.id).await?;
    let call = unit.call().clone();
    if !call.state.is_live() {
        return Err(ended_conflict());
    }
    refuse_appointment_call(&call)?;
    // The initiator who left and was rung again may always decline again.
    if me.role == Role::Initiator && me.status != ParticipantStatus::Invited {
        return Err(CallError::conflict(
            Code::NotAnInvitee,
            "the initiator ends or cancels the call instead",
        ));
    }
    if me.status != ParticipantStatus::Invited {
        return Err(CallError::conflict(Code::AlreadyAnswered, "only a ringing call can be declined"));
    }
    crate::calls::participants::decline(unit.conn(), &call, &me, Step::Decline).await?;
    // The ring cooldown counts it against whoever rang them.
    let rang = me.rung_by.as_deref().unwrap_or(call.initiator_id.as_str());
    store::blocks::record_decline(unit.conn(), rang, user.id.as_str(), app.clock.now()).await?;
    let (source, by) = (EventSource::Api, Some(user.id.as_str()));
    store::record_event(unit.conn(), id, "call.declined", source, by, json!({})).await?;
    let still_invited = participants.iter().any(|p| {
        p.user_id != user.id.as_str()
            && p.role == Role::Invitee
            && p.live
            && matches!(
                p.status,
                ParticipantStatus::Invited
                    | ParticipantStatus::Accepted
                    | ParticipantStatus::Joined
                    | ParticipantStatus::Reconnecting
            )
    });
    if still_invited {
        consent::on_leave(app, unit.conn(), &call, &user.id).await?;
        unit.settle(Effects::for_call(id));
    } else {
        let by = Some(&user.id);
        let (outcome, reason) = domain::call::end(call.state, Ending::Declined);
        let ended = finish(unit.conn(), &call, outcome, reason, EventSource::Api, by).await?;
        unit.ended(ended);
    }
    let participants = store::participants(unit.conn(), id).await?;
    let view = CallView::new(unit.refresh().await?, &participants);
    let event = json!({"call": view, "by": user.id});
    let others = crate::calls::participants::told(&view, &participants, user.id.as_str());
    let out = unit.out();
    out.notify(&others, ClientEvent::CallDeclined, Some(id.0), &event);
    ringing::stopped(out, &view, user.id.as_str(), RingStop::Declined);
    unit.commit().await?;
    Ok(CallOnly { call: view })
}

/// Hangs up for everybody (or cancels a ringing call, for its initiator).
#[tracing::instrument(skip_all, fields(user_id = %user.id, call_id = %id))]
pub async fn end(app: &Core, user: &AuthUser, id: CallId) -> Result<CallOnly, CallError> {
    let (mut unit, me) = open_as_member(app, id, &user.id).await?;
    let call = unit.call().clone();
    if call.appointment_id.is_some() && me.role == Role::Invitee {
        // A guest ends an appointment for themself only.
        drop(unit);
        return Box::pin(leave(app, user, id)).await;
    }
    let (outcome, reason) = match call.state {
        CallState::Ringing if me.role != Role::Initiator => {
            return Err(CallError::forbidden(
                Code::NotInitiator,
                "only the initiator can cancel a ringing call; decline it instead",
            ));
        }
        CallState::Ringing => domain::call::end(call.state, Ending::Hangup),
        // Only those in the call end it; one still being rung may decline.
        _ if me.status == ParticipantStatus::Invited => {
            return Err(CallError::conflict(
                Code::NotAnswered,
                "you have not answered this call; decline it instead of ending it",
            ));
        }
        _ => domain::call::end(call.state, Ending::Hangup),
    };
    let ended = finish(unit.conn(), &call, outcome, reason, EventSource::Api, Some(&user.id)).await?;
    let view = ended.view.clone();
    unit.ended(ended);
    unit.commit().await?;
    Ok(CallOnly { call: view })
}

/// Leaves a call; it ends when fewer than two people remain in it.
#[tracing::instrument(skip_all, fields(user_id = %user.id, call_id = %id))]
pub async fn leave(app: &Core, user: &AuthUser, id: CallId) -> Result<CallOnly, CallError> {
    let (mut unit, me) = open_as_member(app, id, &user.id).await?;
    let call = unit.call().clone();
    if me.status == ParticipantStatus::Invited && call.appointment_id.is_none() {
        drop(unit);
        return decline(app, user, id).await;
    }
    if call.state == CallState::Ringing && me.role == Role::Initiator {
        drop(unit);
        return end(app, user, id).await;
    }
    let mut effects = Effects::for_call(id);
    let why = crate::calls::participants::Departure::Leave;
    let left = crate::calls::participants::depart(
        app,
        unit.conn(),
        &call,
        user.id.as_str(),
        None,
        why,
        &mut effects,
    )
    .await?;
    let view = match left {
        crate::calls::participants::Left::CallEnded(ended) => {
            let view = ended.view.clone();
            unit.ended(*ended);
            view
        }
        _ => CallView::load(unit.conn(), &call).await?,
    };
    // Off the room's live list, then out of the room; coming back with an
    // old token puts them out again (`participants::in_room`). Not if the
    // call ended: its room goes.
    unit.settle(effects);
    unit.commit().await?;
    Ok(CallOnly { call: view })
}

/// A fresh join token for a participant who has answered a live call.
#[tracing::instrument(skip_all, fields(user_id = %user.id, call_id = %id))]
pub async fn token(app: &Core, user: &AuthUser, id: CallId) -> Result<JoinOnly, CallError> {
    // The call and this user's place in it: kept, or one indexed read.
    let mine = match app.joins.get(id, &user.id) {
        Some(kept) => kept,
        None => {
            let since = app.joins.epoch(id);
            let read =
                store::calls::find_call_for(&app.db, id, &user.id).await?.ok_or(CallError::NotFound)?;
            let read = std::sync::Arc::new(read);
            app.joins.put(since, &user.id, &read);
            read
        }
    };
    if !mine.call.state.is_live() {
        return Err(ended_conflict());
    }
    if !mine.member().took_part() {
        return Err(CallError::NotFound);
    }
    if mine.member().is_waiting() {
        // No room at all until a host admits them: the waiting room is outside the meeting.
        return Err(CallError::conflict(Code::InWaitingRoom, "a host has not admitted you yet"));
    }
    if mine.call.appointment_id.is_some() && !mine.is_present() {
        refuse_appointment_call(&mine.call)?;
    }
    if !mine.is_present() {
        let (code, detail) = if mine.status == ParticipantStatus::Invited {
            (Code::NotAnswered, "answer the call before joining it")
        } else {
            (Code::NotInCall, "you are no longer in this call")
        };
        return Err(CallError::conflict(code, detail));
    }
    // A guest keeps the right to share their screen they joined with.
    let share =
        if mine.call.appointment_id.is_some() { mine.may_share_screen } else { may_share_screen(app, user) };
    let join = join_for(app, &mine.call, &user.id, user.name.as_deref(), share)?;
    Ok(JoinOnly { join, ice_servers: app.ice_servers_in(&mine.call, &user.id) })
}

pub async fn get(app: &Core, user: &AuthUser, id: CallId) -> Result<CallView, CallError> {
    let mut conn = app.db.acquire().await?;
    let call = store::find_call(&mut *conn, id).await?.ok_or(CallError::NotFound)?;
    let participants = store::participants(&mut conn, id).await?;
    if !participants.iter().any(|p| p.user_id == user.id.as_str() && p.member().took_part()) {
        return Err(CallError::NotFound);
    }
    Ok(CallView::new(&call, &participants))
}

pub async fn views(app: &Core, calls: Vec<CallRow>) -> Result<Vec<CallView>, CallError> {
    let mut conn = app.db.acquire().await?;
    let ids: Vec<CallId> = calls.iter().map(CallRow::call_id).collect();
    let mut participants = store::participants::of_calls(&mut conn, &ids).await?;
    Ok(calls
        .iter()
        .map(|call| CallView::new(call, &participants.remove(&call.call_id()).unwrap_or_default()))
        .collect())
}

/// With `REQUIRE_CALLEE_ONLINE`, a call rings only if at least one callee
/// has an open event stream (the others are rung too: they may come online
/// while it rings). If Redis cannot say, the call goes ahead.
async fn require_callee_online(app: &Core, callees: &[UserId]) -> Result<(), CallError> {
    for callee in callees {
        match app.presence.is_online(callee.as_str()).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(error = format!("{err:#}"), "presence unknown; ringing anyway");
                return Ok(());
            }
        }
    }
    Err(CallError::conflict(Code::CalleeOffline, "the callee is not online"))
}
