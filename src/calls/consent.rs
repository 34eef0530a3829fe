//! The video consent policy, applied to a call: loads the members, asks the
//! pure policy (`crate::domain::consent`) what follows, and stores the new state, the
//! ledger and the events in the caller's transaction.
//!
//! LiveKit hears of a change only after it has committed (`crate::calls::enforce`):
//! nothing here talks to LiveKit, and an off that fails to commit is never
//! enforced.

use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use sqlx::{Acquire, PgConnection};
use uuid::Uuid;

use crate::calls::CallError;
use crate::calls::Core;
use crate::calls::Unit;
use crate::calls::app_webhooks::{self, Offence};
use crate::calls::enforce::Effects;
use crate::calls::views::CallView;
use crate::domain::AuthUser;
use crate::domain::ClientEvent;
use crate::domain::Code;
use crate::domain::consent::{
    self as rules, Action, Decision, LedgerKind, Member, Notice, PendingRequest, Subject, Timing,
    TrackVerdict, VideoPolicy, VideoSession, VideoState,
};
use crate::domain::{CallId, CallState, ParticipantStatus, UserId, Violation};
use crate::livekit::TrackSeen;
use crate::store::{self, CallRow, DeadlineKind, Outgoing, ParticipantRow};

pub(crate) fn members(participants: &[ParticipantRow]) -> Vec<Member> {
    participants
        .iter()
        .filter(|p| p.is_present())
        .map(|p| Member {
            user_id: p.user_id.to_string(),
            gender: p.gender.0,
            may_share_screen: p.may_share_screen,
        })
        .collect()
}

/// The invitees still being rung: a pending request waits for their answer.
fn ringing(participants: &[ParticipantRow]) -> Vec<String> {
    participants
        .iter()
        .filter(|p| p.live && p.status == ParticipantStatus::Invited)
        .map(|p| p.user_id.to_string())
        .collect()
}

fn timing(app: &Core) -> Timing {
    let t = &app.config.timeouts;
    Timing {
        request_timeout: chrono::Duration::from_std(t.video_request).unwrap_or(chrono::Duration::MAX),
        cooldown: chrono::Duration::from_std(t.video_request_cooldown).unwrap_or(chrono::Duration::MAX),
    }
}

/// Someone's answers as they come into the call: to a pending video
/// request (`video` in the body), and to a recording running or requested
/// (`recording`: without `true` a running recording stops).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Consents {
    pub video: Option<bool>,
    pub recording: Option<bool>,
}

impl From<Option<bool>> for Consents {
    /// An answer about video alone.
    fn from(video: Option<bool>) -> Self {
        Consents { video, recording: None }
    }
}

/// The rules `subject` follows here; `None`: recording is off.
fn rules_of(app: &Core, subject: Subject) -> Option<VideoPolicy> {
    match subject {
        Subject::Video => Some(app.config.video_policy),
        Subject::Recording => app.config.recording_policy.rules(),
    }
}

fn session_of(call: &CallRow, subject: Subject) -> &VideoSession {
    match subject {
        Subject::Video => &call.video_session.0,
        Subject::Recording => &call.recording_session.0,
    }
}

fn request_deadline(subject: Subject) -> DeadlineKind {
    match subject {
        Subject::Video => DeadlineKind::VideoRequest,
        Subject::Recording => DeadlineKind::RecordingRequest,
    }
}

/// Decides `action` about video, then stores what follows.
async fn apply(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    action: Action,
    actor: Option<&str>,
) -> Result<Decision, CallError> {
    apply_answering(app, tx, call, Subject::Video, action, actor, None).await
}

/// Like [`apply`], about `subject`; `answering`: one who is accepting the
/// call in this very transaction, counted as still being rung (the
/// start-of-call request is put before their answer, which then answers it
/// whoever they are).
pub(crate) async fn apply_answering(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    subject: Subject,
    action: Action,
    actor: Option<&str>,
    answering: Option<&str>,
) -> Result<Decision, CallError> {
    let Some(policy) = rules_of(app, subject) else {
        let detail = "calls are not recorded here (RECORDING_POLICY is off)".to_owned();
        return Err(CallError::Forbidden { code: Code::RecordingDisabled, detail });
    };
    let id = call.call_id();
    let participants = store::participants(tx, id).await?;
    let mut members = members(&participants);
    let mut ringing = ringing(&participants);
    if let Some(user) = answering {
        members.retain(|m| m.user_id != user);
        ringing.push(user.to_owned());
    }
    // Someone who leaves without ever having been present (they declined
    // or missed the ring) ends a ring, not a presence.
    let action = match action {
        Action::Leave { user } if never_present(&participants, &user) => Action::RingEnded { user },
        action => action,
    };
    // The call as the steps before in this transaction left it.
    let before = session_of(&store::calls::reread(tx, call).await?, subject).clone();
    let now = app.clock.now();
    let decision =
        rules::decide(policy, &before, &members, &ringing, action, now, &timing(app)).map_err(|err| {
            match subject {
                Subject::Video => CallError::of_policy(err, now),
                Subject::Recording => CallError::of_recording_policy(err, now),
            }
        })?;
    match subject {
        Subject::Video => store::save_video_session(tx, id, &decision.session).await?,
        Subject::Recording => {
            store::recordings::save_session(tx, id, &decision.session).await?;
            if (before.state == VideoState::On) != (decision.session.state == VideoState::On) {
                // Egress started or stopped once this commits (a job of the
                // call's lane, after any earlier start or stop).
                store::recordings::sync_after_commit(tx, id, now).await?;
            }
        }
    }
    for entry in &decision.ledger {
        let actor = entry.actor.as_deref().or(actor);
        store::consent_ledger::append(tx, id, subject, entry.kind, actor, entry.request_id).await?;
    }
    let deadline = request_deadline(subject);
    match (&before.request, &decision.session.request) {
        (_, Some(new)) if before.request.as_ref().map(|r| r.id) != Some(new.id) => {
            store::schedule(tx, id, deadline, new.expires_at, Some(new.id)).await?;
        }
        (Some(_), None) => store::cancel(tx, id, deadline).await?,
        _ => {}
    }
    for notice in &decision.notices {
        let (kind, to, data) = event_of(notice, subject);
        store::notify(tx, to, kind, id, &data).await?;
    }
    // Counted here rather than after the caller's commit, which comes in
    // many places: a commit that then fails (the database going away) has
    // counted a step that did not happen.
    if subject == Subject::Video {
        app.metrics.video_decided(&decision);
    }
    Ok(decision)
}

/// Whether the call's recording consent has anything going on (a
/// recording, or a request for one) that a join or a leave may change.
fn recording_in_play(app: &Core, call: &CallRow) -> bool {
    let session = &call.recording_session.0;
    app.config.recording_policy.rules().is_some()
        && (session.state != VideoState::Off || session.request.is_some())
}

fn never_present(participants: &[ParticipantRow], user: &str) -> bool {
    participants
        .iter()
        .find(|p| p.user_id == user)
        .is_some_and(|p| matches!(p.status, ParticipantStatus::Declined | ParticipantStatus::Missed))
}

fn event_of(notice: &Notice, subject: Subject) -> (ClientEvent, &[String], serde_json::Value) {
    let data = match notice {
        Notice::Requested { request, .. } => json!({"request": RequestView::from(request)}),
        Notice::On { .. } => json!({subject.as_str(): VideoState::On}),
        Notice::Off { .. } => json!({subject.as_str(): VideoState::Off}),
        Notice::Declined { request_id, .. } | Notice::Expired { request_id, .. } => {
            json!({"requestId": request_id})
        }
    };
    (notice.event_of(subject), notice.recipients(), data)
}

/// A participant answered the call. If the call was started as `video`, the
/// initiator's request is put now, as if the one answering were still being
/// rung; their `video` then answers it (or, without one, they are asked),
/// whoever they are. A recording running or requested hears them join with
/// their `recording` answer.
pub async fn on_answer(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    user: &UserId,
    consents: Consents,
) -> Result<(), CallError> {
    if store::calls::take_start_video_request(tx, call.call_id()).await? {
        // The initiator's request may be refused (they left meanwhile, say);
        // a savepoint keeps whatever it wrote from committing with the answer.
        let request = Action::Request { by: call.initiator_id.clone(), id: Uuid::new_v4() };
        let mut savepoint = tx.begin().await?;
        let answering = Some(user.as_str());
        let initiator = Some(call.initiator_id.as_str());
        match apply_answering(app, &mut savepoint, call, Subject::Video, request, initiator, answering).await
        {
            Ok(_) => savepoint.commit().await?,
            Err(CallError::Internal(err)) => return Err(CallError::Internal(err)),
            Err(err) => {
                tracing::debug!(error = %err, "the start-of-call video request did not apply");
                savepoint.rollback().await?;
            }
        }
    }
    let join = Action::Join { user: user.to_string(), consent: consents.video };
    apply(app, tx, call, join, Some(user.as_str())).await?;
    if recording_in_play(app, call) {
        let join = Action::Join { user: user.to_string(), consent: consents.recording };
        apply_answering(app, tx, call, Subject::Recording, join, Some(user.as_str()), None).await?;
    }
    Ok(())
}

pub async fn on_leave(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    user: &UserId,
) -> Result<(), CallError> {
    apply(app, tx, call, Action::Leave { user: user.to_string() }, Some(user.as_str())).await?;
    if recording_in_play(app, call) {
        let leave = Action::Leave { user: user.to_string() };
        apply_answering(app, tx, call, Subject::Recording, leave, Some(user.as_str()), None).await?;
    }
    Ok(())
}

/// Invitees' rings ended unanswered (they missed it): a pending request may
/// now have every answer it waits for.
pub async fn on_rings_ended(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    users: &[String],
) -> Result<(), CallError> {
    let Some(user) = users.first() else { return Ok(()) };
    // `ringing` is read afresh: one step covers them all.
    if call.video_session.0.request.is_some() {
        apply(app, tx, call, Action::RingEnded { user: user.clone() }, None).await?;
    }
    if recording_in_play(app, call) && call.recording_session.0.request.is_some() {
        let ended = Action::RingEnded { user: user.clone() };
        apply_answering(app, tx, call, Subject::Recording, ended, None, None).await?;
    }
    Ok(())
}

/// What the policy makes of a track LiveKit reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    Allowed,
    /// A camera or screen track while video is off: rights still being
    /// withdrawn when it was published, or drift. Put the rights back (LiveKit
    /// then removes it); a violation only if it came after video turned off.
    Withdraw {
        violation: bool,
    },
    /// The caller puts the publisher out of the call, for good.
    PutOut(PutOut),
}

/// Why a publisher is put out of the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOut {
    /// A track whose label lies: video under another label or declared as
    /// audio.
    Mislabelled,
    /// A camera while video is off, again: once may be a race with the
    /// withdrawal, twice is a client publishing with a token LiveKit
    /// refreshed while video was on.
    RepeatedCameraWhileOff,
}

impl PutOut {
    /// The violation, as the timeline and the host's webhook name it.
    pub fn violation(self) -> Violation {
        match self {
            PutOut::Mislabelled => Violation::VideoUnderAnotherLabel,
            PutOut::RepeatedCameraWhileOff => Violation::CameraWhileVideoOffAgain,
        }
    }

    /// The reason the timeline gives.
    pub fn reason(self) -> &'static str {
        self.violation().as_str()
    }
}

/// Violations of one participant that put them out: the second.
const VIOLATIONS_BEFORE_OUT: i64 = 1;

/// Judges a track `identity` published (`published_at`: LiveKit's event
/// time, whole seconds) and writes a violation to the ledger when it is one,
/// and the host's `consent.violation` webhook with it (`removed` when it
/// puts the publisher out: the caller does).
pub async fn judge_track(
    tx: &mut PgConnection,
    call: &CallRow,
    identity: &str,
    track: &TrackSeen,
    published_at: Option<chrono::DateTime<Utc>>,
) -> Result<Judgement, CallError> {
    let id = call.call_id();
    let now = store::calls::reread(tx, call).await?;
    let state = now.video_state();
    let participants = store::participants(tx, id).await?;
    let Some(me) = participants.iter().find(|p| p.user_id == identity && p.is_present()) else {
        // Not in the call: whoever handles their join removes them.
        return Ok(Judgement::Allowed);
    };
    let judgement = match rules::judge_track(track.label(), state, me.may_share_screen) {
        TrackVerdict::Allowed => return Ok(Judgement::Allowed),
        TrackVerdict::Mislabelled => Judgement::PutOut(PutOut::Mislabelled),
        TrackVerdict::NotNow => {
            let switched = last_video_switch(tx, id).await?;
            let violation = match (switched, published_at) {
                (None, _) => true,
                (Some(switched), Some(published)) => switched < published,
                (Some(_), None) => false,
            };
            Judgement::Withdraw { violation }
        }
    };
    let view = CallView::new(&now, &participants);
    let offence = |violation, removed| Offence {
        user: identity,
        violation,
        removed,
        track: Some(track_json(track)),
        moderator: None,
    };
    match judgement {
        Judgement::PutOut(why) => {
            tracing::warn!(identity, track = %track.sid, ?judgement, "video track against the policy");
            if record_violation(tx, id, identity, track).await? {
                tell_host(tx, &view, &offence(why.violation(), true)).await?;
            }
            Ok(judgement)
        }
        Judgement::Withdraw { violation: true } => {
            let before = store::consent_ledger::violations_by(tx, id, identity).await?;
            if !record_violation(tx, id, identity, track).await? {
                // Seen before (the webhook and the reconciler both report it).
                return Ok(Judgement::Withdraw { violation: false });
            }
            tracing::warn!(identity, track = %track.sid, before, "a camera while video is off");
            if before >= VIOLATIONS_BEFORE_OUT {
                tell_host(tx, &view, &offence(Violation::CameraWhileVideoOffAgain, true)).await?;
                return Ok(Judgement::PutOut(PutOut::RepeatedCameraWhileOff));
            }
            tell_host(tx, &view, &offence(Violation::CameraWhileVideoOff, false)).await?;
            Ok(judgement)
        }
        _ => Ok(judgement),
    }
}

/// The host's `consent.violation` webhook, in this transaction.
async fn tell_host(tx: &mut PgConnection, view: &CallView, offence: &Offence<'_>) -> sqlx::Result<()> {
    let mut out = Outgoing::default();
    app_webhooks::consent_violation(&mut out, view, offence);
    out.write(tx).await
}

/// When video last turned on or off in the call; `None` if it never did.
pub async fn last_video_switch(
    tx: &mut PgConnection,
    call: CallId,
) -> sqlx::Result<Option<chrono::DateTime<Utc>>> {
    store::consent_ledger::last_video_switch(tx, call).await
}

/// Writes a `violation` to the consent ledger, once per track (the webhook
/// and the reconciler may both see it). Returns whether it was written.
pub async fn record_violation(
    tx: &mut PgConnection,
    call: CallId,
    identity: &str,
    track: &TrackSeen,
) -> sqlx::Result<bool> {
    store::consent_ledger::append_violation_once(tx, call, identity, &violating(track)).await
}

fn violating(track: &TrackSeen) -> store::consent_ledger::ViolatingTrack<'_> {
    store::consent_ledger::ViolatingTrack {
        sid: &track.sid,
        source: track.source.map_or("unknown", |s| s.as_str()),
        kind: track.kind_name(),
        declared: track.kind.as_str(),
    }
}

/// A violating track as the ledger's `detail` and the host's webhook say it.
fn track_json(track: &TrackSeen) -> serde_json::Value {
    let t = violating(track);
    json!({"trackSid": t.sid, "source": t.source, "kind": t.kind, "declared": t.declared})
}

pub async fn expire(
    app: &Core,
    tx: &mut PgConnection,
    call: &CallRow,
    subject: Subject,
    request: Uuid,
) -> Result<(), CallError> {
    apply_answering(app, tx, call, subject, Action::Expire { id: request }, None, None).await?;
    Ok(())
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestView {
    pub id: Uuid,
    pub requested_by: String,
    pub expires_at: chrono::DateTime<Utc>,
}

impl From<&PendingRequest> for RequestView {
    fn from(r: &PendingRequest) -> Self {
        RequestView { id: r.id, requested_by: r.requested_by.clone(), expires_at: r.expires_at }
    }
}

impl RequestView {
    /// The answer to a request `by` made as `id`: the pending request, or,
    /// when nobody else had to be asked (it turned on at once), one that
    /// expired as it was made.
    pub(crate) fn of_request(decision: &Decision, id: Uuid, by: &UserId, now: chrono::DateTime<Utc>) -> Self {
        let at_once = || RequestView { id, requested_by: by.to_string(), expires_at: now };
        decision.session.request.as_ref().map_or_else(at_once, RequestView::from)
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VideoView {
    pub state: VideoState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestView>,
    pub can_answer: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_until: Option<chrono::DateTime<Utc>>,
    /// Whether LiveKit has confirmed the rights of the current state for
    /// everyone present (in the answer to a change: of the state that change
    /// left). `false` right after a change means callgate is still
    /// retrying; the state itself is committed either way.
    pub sfu_confirmed: bool,
}

/// Opens the unit of a live call `user` is present in; 404 for strangers.
pub(crate) async fn open_present<'a>(
    app: &'a Core,
    id: CallId,
    user: &UserId,
) -> Result<Unit<'a>, CallError> {
    let mut unit = Unit::open(app, id).await?;
    let participants = store::participants(unit.conn(), id).await?;
    let call = unit.call();
    let me = participants
        .iter()
        .find(|p| p.user_id == user.as_str() && p.member().took_part())
        .ok_or(CallError::NotFound)?;
    if !call.state.is_live() {
        return Err(CallError::conflict(Code::CallEnded, "the call has ended"));
    }
    if !me.is_present() {
        return Err(CallError::conflict(Code::NotInCall, "answer the call first"));
    }
    Ok(unit)
}

pub async fn view(app: &Core, user: &AuthUser, id: CallId) -> Result<VideoView, CallError> {
    view_after(app, user, id, false).await
}

/// The view answering a change; `applied`: LiveKit applied the rights of
/// the state it left (the confirmed version is written just after).
async fn view_after(app: &Core, user: &AuthUser, id: CallId, applied: bool) -> Result<VideoView, CallError> {
    let mut conn = app.db.acquire().await?;
    let call = store::find_call(&mut *conn, id).await?.ok_or(CallError::NotFound)?;
    let participants = store::participants(&mut conn, id).await?;
    if !participants.iter().any(|p| p.user_id == user.id.as_str() && p.member().took_part()) {
        return Err(CallError::NotFound);
    }
    let session = &call.video_session.0;
    let members = members(&participants);
    Ok(VideoView {
        state: session.state,
        request: session.request.as_ref().map(RequestView::from),
        can_answer: rules::can_answer(app.config.video_policy, session, &members, user.id.as_str()),
        cooldown_until: session
            .cooldowns
            .get(user.id.as_str())
            .copied()
            .filter(|until| *until > app.clock.now()),
        sfu_confirmed: applied || call.rights_version >= call.video_version,
    })
}

pub async fn request(app: &Core, user: &AuthUser, id: CallId) -> Result<RequestView, CallError> {
    let mut unit = open_present(app, id, &user.id).await?;
    let call = unit.call().clone();
    if !matches!(call.state, CallState::Connecting | CallState::Active) {
        return Err(CallError::conflict(
            Code::CallNotConnected,
            "video can be requested once the call is answered",
        ));
    }
    crate::calls::limits::video_request(app, id, &user.id).await?;
    let request_id = Uuid::new_v4();
    let decision = apply(
        app,
        unit.conn(),
        &call,
        Action::Request { by: user.id.to_string(), id: request_id },
        Some(user.id.as_str()),
    )
    .await?;
    // A request that completed the consents turned video on: wait for it.
    // Otherwise nothing LiveKit holds changed (`store::save_video_session`):
    // nothing to settle.
    if decision.session.state == VideoState::On {
        unit.settle(Effects::for_call(id));
    }
    unit.commit_settling_soon().await?;
    Ok(RequestView::of_request(&decision, request_id, &user.id, app.clock.now()))
}

pub async fn answer(
    app: &Core,
    user: &AuthUser,
    id: CallId,
    request: Uuid,
    accept: bool,
) -> Result<VideoView, CallError> {
    let mut unit = open_present(app, id, &user.id).await?;
    let call = unit.call().clone();
    let by = user.id.to_string();
    let action = if accept { Action::Accept { by, id: request } } else { Action::Reject { by, id: request } };
    apply(app, unit.conn(), &call, action, Some(user.id.as_str())).await?;
    unit.settle(Effects::for_call(id));
    let applied = unit.commit_settling_soon().await?.applied;
    view_after(app, user, id, applied).await
}

pub async fn revoke(app: &Core, user: &AuthUser, id: CallId) -> Result<VideoView, CallError> {
    let mut unit = open_present(app, id, &user.id).await?;
    let call = unit.call().clone();
    let action = Action::Revoke { by: user.id.to_string() };
    let decision = apply(app, unit.conn(), &call, action, Some(user.id.as_str())).await?;
    // A requester withdrawing their own request changes nothing LiveKit
    // holds (`store::save_video_session`): nothing to settle (the view says
    // whether LiveKit is in line).
    let turned = rules::camera_allowed(decision.session.state) != rules::camera_allowed(call.video_state());
    if turned {
        unit.settle(Effects::for_call(id));
    }
    let applied = unit.commit_settling_soon().await?.applied;
    view_after(app, user, id, applied).await
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerView {
    /// The row's id for `admin`; for a participant, its place (from 1) in
    /// what they read.
    pub id: i64,
    /// What the step is about.
    #[schema(value_type = crate::domain::consent::Subject)]
    pub subject: String,
    #[schema(value_type = crate::domain::consent::LedgerKind)]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Uuid>,
    pub at: chrono::DateTime<Utc>,
}

impl From<store::consent_ledger::LedgerEntry> for LedgerView {
    fn from(e: store::consent_ledger::LedgerEntry) -> Self {
        LedgerView {
            id: e.id,
            subject: e.subject,
            kind: e.kind,
            actor: e.actor,
            request_id: e.request_id,
            at: e.at,
        }
    }
}

/// The call's ledger: in full (actors included) for `admin`, the audit
/// role (each such read is in the audit log). A participant reads the rows `rules::readable` lets them (nobody
/// else's answers) with the actors `rules::visible_actor` allows (requesters
/// and the reader's own steps), numbered by their place in what they read:
/// the ledger's own ids would count, by their gaps, the answers left out.
pub async fn ledger(app: &Core, user: &AuthUser, id: CallId) -> Result<Vec<LedgerView>, CallError> {
    let mut conn = app.db.acquire().await?;
    let participants = store::participants(&mut conn, id).await?;
    let takes_part = participants.iter().any(|p| p.user_id == user.id.as_str() && p.member().took_part());
    if !takes_part && !user.is_admin() {
        return Err(CallError::NotFound);
    }
    if user.is_admin() {
        // Every answer with its actor: what no participant reads, so audited.
        let action = crate::domain::ModerationAction::ReadLedger;
        store::audit_log::read(&mut conn, app.clock.now(), &user.id, action, id).await?;
    }
    let rows = store::consent_ledger::of_call(&mut conn, id).await?.into_iter().map(LedgerView::from);
    if user.is_admin() {
        return Ok(rows.collect());
    }
    let reader = user.id.as_str();
    let mut read = Vec::new();
    for mut row in rows {
        let kind: LedgerKind = serde_json::from_value(json!(row.kind)).unwrap_or(LedgerKind::Violation);
        if !rules::readable(kind, row.actor.as_deref(), reader) {
            continue;
        }
        row.actor = rules::visible_actor(kind, row.actor.as_deref(), reader).map(str::to_owned);
        row.id = read.len() as i64 + 1;
        read.push(row);
    }
    Ok(read)
}
