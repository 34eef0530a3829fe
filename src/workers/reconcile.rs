//! The reconciler: LiveKit's webhooks come twice, late, out of order or
//! never, so at start and then every `RECONCILE_INTERVAL` the live calls are
//! compared with what LiveKit has, and repaired:
//! - a live call whose room is gone ends (`room_closed`);
//! - a room that no live call owns is deleted (one without any call only
//!   once older than `ORPHAN_ROOM_GRACE`: a call being started creates its
//!   room before its row commits);
//! - for connecting and active calls, oldest-checked first: a participant in
//!   the room whom the database does not show there has joined, one the
//!   database shows there who is not has left, one who is not present in the
//!   call (gone, never in it, removed) is removed from the room, a video
//!   track under another label puts its publisher out of the call, and
//!   rights that drifted from the policy are put back (a camera or screen
//!   track published while video is off is a violation). Calls whose rights
//!   LiveKit has not confirmed (`crate::calls::enforce`) are checked first.
//!
//! Every pass compares every connecting and active call with what ListRooms
//! says of its room: as many participants as the database shows joined, the
//! room metadata of the call's video state, and rights LiveKit confirmed. A
//! call that disagrees is checked in full (its participants listed) in the
//! same pass (at most `DRIFT_BATCH`, `CONCURRENT_CHECKS` at a time); besides,
//! `BATCH` calls, the least recently checked first, are checked in full
//! whatever ListRooms says (what it cannot show: who exactly is in the room,
//! their tracks and rights).
//!
//! Cost per pass: one ListRooms, one read of the live calls, at most
//! `DRIFT_BATCH + BATCH` ListParticipants, and one request per repair (at
//! most `BATCH` calls ended and rooms deleted).
//!
//! Several instances: a pass starts only by moving the `reconciler_lease`
//! row forward with a conditional update, so about one pass happens per
//! interval however many instances run. Correctness does not rest on it:
//! every repair is decided again in a transaction holding the call's row
//! lock, against the database as it is then.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::calls::consent;
use crate::calls::enforce::Effects;
use crate::calls::lifecycle::finish;
use crate::calls::participants::{self, Departure, Left};
use crate::calls::{Core, Unit};
use crate::domain::consent::{self as rules, TrackVerdict, VideoState};
use crate::domain::{self, call::Ending};
use crate::domain::{CallId, CallState, EventSource, ParticipantStatus};
use crate::ingest::handle;
use crate::ingest::inbox;
use crate::livekit::{LiveKitError, Participant, Room, room_metadata};
use crate::store::{self, CallRow};

/// The most calls ended, rooms deleted and calls checked in full whatever
/// ListRooms says, in one pass.
pub const BATCH: usize = 20;
/// The most calls that disagree with ListRooms checked in full in one pass.
pub const DRIFT_BATCH: usize = 200;
/// Full checks made at once.
const CONCURRENT_CHECKS: usize = 8;
/// LiveKit removes a disallowed track a moment after the rights change: a
/// track seen this soon after video turned off is not a violation.
const TRACK_REMOVAL_SLACK: chrono::Duration = chrono::Duration::seconds(2);

pub async fn run(app: Core, stop: CancellationToken) {
    for number in 1u64.. {
        let span = tracing::info_span!("reconcile", pass = number);
        let outcome = tick(&app).instrument(span.clone()).await;
        span.in_scope(|| match outcome {
            Ok(pass) if pass.skipped => app.metrics.reconcile_pass("skipped"),
            Ok(pass) => {
                app.metrics.reconcile_pass("done");
                if pass.repaired() > 0 {
                    tracing::info!(?pass, "reconciled");
                } else {
                    tracing::debug!(?pass, "reconciled");
                }
            }
            Err(err) => {
                app.metrics.reconcile_pass("failed");
                tracing::warn!(error = ?err, "reconcile pass failed");
            }
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(app.config.reconcile_interval) => {}
        }
    }
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct Pass {
    /// Another instance made the pass of this interval.
    pub skipped: bool,
    pub livekit_requests: usize,
    /// Live calls compared with their rooms (by ListRooms).
    pub calls_checked: usize,
    /// Of those, the ones that disagreed (checked in full).
    pub calls_disagreeing: usize,
    /// Calls whose participants were listed and compared.
    pub calls_full_checks: usize,
    pub events_retried: usize,
    pub calls_ended: usize,
    pub rooms_deleted: usize,
    pub presence_fixed: usize,
    pub rights_fixed: usize,
    pub violations: usize,
    /// Calls whose room has a recorder in it although the call records
    /// nothing: their recording job compares the room with egress, and
    /// stops what nobody consented to (its webhooks may never have come).
    pub recorders_unasked: usize,
}

impl Pass {
    /// Adds the figures of a part of the pass made on its own.
    fn add(&mut self, other: &Pass) {
        self.livekit_requests += other.livekit_requests;
        self.calls_full_checks += other.calls_full_checks;
        self.calls_ended += other.calls_ended;
        self.rooms_deleted += other.rooms_deleted;
        self.presence_fixed += other.presence_fixed;
        self.rights_fixed += other.rights_fixed;
        self.violations += other.violations;
    }

    pub fn repaired(&self) -> usize {
        self.calls_ended + self.rooms_deleted + self.presence_fixed + self.rights_fixed
    }

    /// The repairs by kind, named as `crate::metrics::REPAIR_KINDS` names them.
    pub fn repairs(&self) -> [(&'static str, usize); 6] {
        [
            ("call_ended", self.calls_ended),
            ("room_deleted", self.rooms_deleted),
            ("presence_fixed", self.presence_fixed),
            ("rights_fixed", self.rights_fixed),
            ("violation", self.violations),
            ("event_retried", self.events_retried),
        ]
    }
}

/// Makes a pass unless some instance made one within the interval.
pub async fn tick(app: &Core) -> anyhow::Result<Pass> {
    if !take_lease(app).await? {
        return Ok(Pass { skipped: true, ..Pass::default() });
    }
    pass(app).await
}

async fn take_lease(app: &Core) -> sqlx::Result<bool> {
    // A little under the interval, so that instances' timers drifting
    // against each other do not skip a whole interval.
    let gap = app.config.reconcile_interval.as_secs_f64() * 0.8;
    store::housekeeping::take_reconciler_lease(&app.db, gap).await
}

/// One pass; `tick` is the way in for the background job. What it
/// repaired is counted in the metrics, even if it then fails.
pub async fn pass(app: &Core) -> anyhow::Result<Pass> {
    let mut pass = Pass::default();
    let made = repair(app, &mut pass).await;
    app.metrics.reconciled(&pass.repairs());
    made.map(|()| pass)
}

async fn repair(app: &Core, pass: &mut Pass) -> anyhow::Result<()> {
    pass.events_retried = inbox::retry_stranded(app, BATCH as i64).await?;
    // The calls first, then the rooms: a call whose row was visible before
    // the list was asked for had its room created already.
    let live = store::calls::live_rooms(&app.db).await?;
    let rooms = app.livekit.list_rooms().await?;
    pass.livekit_requests += 1;
    let in_livekit: HashSet<&str> = rooms.iter().map(|r| r.name.as_str()).collect();
    // One repair failing does not stop the others.
    for (id, _) in live.iter().filter(|(_, room)| !in_livekit.contains(room.as_str())).take(BATCH) {
        match end_roomless_call(app, *id).await {
            Ok(ended) => pass.calls_ended += usize::from(ended),
            Err(err) => {
                tracing::warn!(error = ?err, call_id = %id, "could not end a call without a room")
            }
        }
    }
    let owned: HashSet<&str> = live.iter().map(|(_, room)| room.as_str()).collect();
    let unowned = rooms.iter().filter(|r| !owned.contains(r.name.as_str()));
    for room in unowned.take(BATCH) {
        match delete_if_unowned(app, room).await {
            Ok(deleted) => {
                pass.livekit_requests += usize::from(deleted);
                pass.rooms_deleted += usize::from(deleted);
            }
            Err(err) => tracing::warn!(error = ?err, room = %room.name, "could not delete a room"),
        }
    }
    // Every live call with a room compared with what ListRooms says of it.
    let by_name: HashMap<&str, &Room> = rooms.iter().map(|r| (r.name.as_str(), r)).collect();
    // Each with whether its room's metadata drifted.
    let mut full: Vec<(CallId, bool)> = Vec::new();
    let mut unasked = Vec::new();
    for call in store::calls::live_summaries(&app.db).await? {
        let Some(room) = by_name.get(call.room_name.as_str()) else { continue };
        pass.calls_checked += 1;
        if room.active_recording && call.recording_session.0.state != VideoState::On {
            unasked.push(call.id);
        }
        if !agrees(&call, room) && full.len() < DRIFT_BATCH {
            full.push((call.id, !metadata_agrees(&call, room)));
        }
    }
    pass.calls_disagreeing = full.len();
    for id in due_for_check(app).await? {
        if !full.iter().any(|(drifted, _)| *drifted == id) {
            full.push((id, false));
        }
    }
    let checks = futures::stream::iter(full)
        .map(|(id, metadata_drifted)| async move {
            let mut one = Pass::default();
            if let Err(err) = check_call(app, id, metadata_drifted, &mut one).await {
                tracing::warn!(error = ?err, call_id = %id, "could not compare a call with its room");
            }
            one
        })
        .buffer_unordered(CONCURRENT_CHECKS)
        .collect::<Vec<Pass>>()
        .await;
    for one in checks {
        pass.add(&one);
    }
    // Recordings still running to callgate are compared with egress by a
    // job of their call (a webhook lost, an egress that died), and so are
    // rooms recorded behind callgate's back.
    pass.recorders_unasked = unasked.len();
    let recording = store::recordings::calls_recording(&app.db, BATCH as i64).await?;
    for call in recording.into_iter().chain(unasked.into_iter().take(BATCH)) {
        let mut tx = app.db.begin().await?;
        store::recordings::sync_after_commit(&mut tx, call, app.clock.now()).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Whether ListRooms shows the room as the database has the call: as many
/// participants as joined, and LiveKit has confirmed its rights.
fn agrees(call: &store::calls::LiveSummary, room: &Room) -> bool {
    !call.behind && i64::from(room.num_participants) == call.joined && metadata_agrees(call, room)
}

/// Whether the room's metadata is the call's (video state, who is live).
fn metadata_agrees(call: &store::calls::LiveSummary, room: &Room) -> bool {
    let (video, recording) = (call.video_session.0.state, call.recording_session.0.state);
    room.metadata == room_metadata(call.id, call.call_type, video, recording, &call.live)
}

#[tracing::instrument(skip(app), fields(call_id = %id))]
async fn end_roomless_call(app: &Core, id: CallId) -> anyhow::Result<bool> {
    let Some(mut unit) = Unit::open_if_any(app, id).await? else { return Ok(false) };
    let call = unit.call().clone();
    if !call.state.is_live() {
        return Ok(false);
    }
    let (outcome, reason) = domain::call::end(call.state, Ending::RoomClosed);
    let ended = finish(unit.conn(), &call, outcome, reason, EventSource::System, None).await?;
    unit.commit().await?;
    // Its room is gone already: no `after_end`, counted here.
    app.metrics.call_ended(&ended.figures());
    tracing::info!(call_id = %id, "ended a call whose room is gone");
    Ok(true)
}

async fn delete_if_unowned(app: &Core, room: &Room) -> anyhow::Result<bool> {
    let state = match app.livekit.call_of_room(&room.name) {
        Some(call) => store::calls::state_of(&app.db, call).await?,
        None => None,
    };
    let delete = match state {
        Some(CallState::Ended) => true,
        // Started after the calls were read.
        Some(_) => false,
        None => {
            let grace = chrono::Duration::from_std(app.config.orphan_room_grace).unwrap_or_default();
            room.created_at.is_some_and(|at| at < app.clock.now() - grace)
        }
    };
    if delete {
        app.livekit.delete_room(&room.name).await?;
        tracing::info!(room = %room.name, "deleted a room that no live call owns");
    }
    Ok(delete)
}

/// Connecting and active calls, the least recently checked first, marked
/// checked now (a call busy in another transaction waits for the next pass).
async fn due_for_check(app: &Core) -> sqlx::Result<Vec<CallId>> {
    store::calls::take_due_for_check(&app.db, BATCH as i64).await
}

/// Compares one call's room with the database and repairs the difference.
#[tracing::instrument(skip(app, pass), fields(call_id = %id))]
async fn check_call(app: &Core, id: CallId, metadata_drifted: bool, pass: &mut Pass) -> anyhow::Result<()> {
    let Some(room) = store::find_call(&app.db, id).await?.map(|c| c.room_name) else { return Ok(()) };
    // Whoever the database shows joined before this instant and LiveKit
    // does not list afterwards has left.
    let asked_at = app.clock.now();
    let people = match app.livekit.list_participants(&room).await {
        Ok(people) => people,
        // The room went away since the list: the next pass ends the call.
        Err(LiveKitError::NotFound) => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    pass.livekit_requests += 1;
    pass.calls_full_checks += 1;
    let people: Vec<&Participant> = people.iter().filter(|p| p.is_person).collect();

    let Some(mut unit) = Unit::open_if_any(app, id).await? else { return Ok(()) };
    let call = unit.call().clone();
    if !matches!(call.state, CallState::Connecting | CallState::Active) {
        return Ok(());
    }
    let mut effects = Effects::for_call(id);
    // What LiveKit holds is not what it was told: tell it again, rights too.
    effects.resync = metadata_drifted;
    for person in &people {
        let rows = store::participants(unit.conn(), id).await?;
        let present = rows.iter().find(|r| r.user_id == person.identity).filter(|r| r.is_present());
        let Some(row) = present else {
            // Gone from the call, never in it, or removed: out of the room.
            tracing::info!(identity = %person.identity, room, "someone not in the call is in its room; removing them");
            effects.remove.push(person.identity.clone());
            pass.presence_fixed += 1;
            continue;
        };
        if row.status != ParticipantStatus::Joined
            && participants::in_room(app, unit.conn(), &call, &person.identity, person.session, &mut effects)
                .await?
        {
            let data = json!({"reason": "found_in_room"});
            let actor = Some(person.identity.as_str());
            store::record_event(unit.conn(), id, "participant.joined", EventSource::System, actor, data)
                .await?;
            pass.presence_fixed += 1;
        }
    }
    let listed: HashSet<&str> = people.iter().map(|p| p.identity.as_str()).collect();
    let mut ended = None;
    for row in store::participants(unit.conn(), id).await? {
        let missing = row.live
            && row.status == ParticipantStatus::Joined
            && row.joined_at.is_some_and(|at| at < asked_at)
            && !listed.contains(row.user_id.as_str());
        if !missing {
            continue;
        }
        let call = unit.refresh().await?.clone();
        match participants::depart(
            app,
            unit.conn(),
            &call,
            row.user_id.as_str(),
            None,
            Departure::Missing,
            &mut effects,
        )
        .await?
        {
            Left::Ignored => {}
            Left::Left => pass.presence_fixed += 1,
            Left::CallEnded(end) => {
                pass.presence_fixed += 1;
                ended = Some(*end);
                break;
            }
        }
    }
    if ended.is_none() {
        let call = unit.refresh().await?.clone();
        ended =
            check_tracks_and_rights(app, unit.conn(), &call, &people, asked_at, pass, &mut effects).await?;
    }
    // Its room deleted, and what LiveKit was asked.
    let requests = usize::from(ended.is_some())
        + effects.remove.len()
        + effects.rights_for.len()
        + effects.withdraw.len();
    if let Some(ended) = ended {
        unit.ended(ended);
    }
    unit.settle(effects);
    unit.commit_settling_now().await?;
    pass.livekit_requests += requests;
    Ok(())
}

/// Judges every track of present participants (a video track under another
/// label puts its publisher out of the call, as in `handle::on_track`) and
/// marks for a push the rights that drifted from the policy. Returns the
/// call if a removal ended it.
async fn check_tracks_and_rights(
    app: &Core,
    tx: &mut sqlx::PgConnection,
    call: &CallRow,
    people: &[&Participant],
    asked_at: DateTime<Utc>,
    pass: &mut Pass,
    effects: &mut Effects,
) -> anyhow::Result<Option<crate::calls::lifecycle::Ended>> {
    let id = call.call_id();
    let state = call.video_state();
    let rows = store::participants(tx, id).await?;
    let last_switch = consent::last_video_switch(tx, id).await?;
    // Off for long enough that LiveKit would have removed the tracks.
    let settled_off =
        !rules::camera_allowed(state) && last_switch.is_none_or(|at| at < asked_at - TRACK_REMOVAL_SLACK);
    'people: for person in people {
        let Some(row) = rows.iter().find(|r| r.user_id == person.identity && r.is_present()) else {
            continue;
        };
        let mut withdraw = false;
        for track in &person.tracks {
            match rules::judge_track(track.label(), state, row.may_share_screen) {
                TrackVerdict::Allowed => {}
                TrackVerdict::NotNow if !settled_off => withdraw = true,
                // Judged as a webhook would have it: a lie, or a camera while
                // video is settled off (as if published now), which is a
                // violation and, repeated, puts its publisher out.
                TrackVerdict::Mislabelled | TrackVerdict::NotNow => {
                    let published = Some(asked_at);
                    let (violation, ended) =
                        handle::on_track(app, tx, call, &person.identity, track, published, effects).await?;
                    if violation {
                        pass.violations += 1;
                    }
                    if ended.is_some() {
                        return Ok(ended);
                    }
                    if effects.remove.contains(&person.identity) {
                        continue 'people;
                    }
                }
            }
        }
        let expected = rules::publish_sources(state, row.may_share_screen);
        let in_line = match row.admitted {
            true => rights_match(person.publish_sources.as_deref(), &expected),
            // In an appointment's waiting room: no rights at all.
            false => person.waiting,
        };
        if withdraw {
            effects.withdraw.push(person.identity.clone());
            pass.rights_fixed += 1;
        } else if !in_line {
            effects.rights_for.push(person.identity.clone());
            pass.rights_fixed += 1;
            tracing::info!(identity = %person.identity, "putting back publish rights that drifted from the policy");
        }
    }
    Ok(None)
}

/// Whether the rights LiveKit shows (`None`: not of the shape callgate
/// grants, see `Participant::publish_sources`) are the expected ones, in
/// any order.
fn rights_match(actual: Option<&[rules::TrackSource]>, expected: &[rules::TrackSource]) -> bool {
    let Some(actual) = actual else { return false };
    actual.iter().all(|s| expected.contains(s)) && expected.iter().all(|s| actual.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::consent::TrackSource;

    #[test]
    fn rights_match_whatever_the_order_of_sources() {
        let granted = [TrackSource::Camera, TrackSource::Microphone];
        assert!(rights_match(Some(&granted), &[TrackSource::Microphone, TrackSource::Camera]));
    }

    #[test]
    fn a_camera_right_while_video_is_off_is_drift() {
        let granted = [TrackSource::Microphone, TrackSource::Camera];
        assert!(!rights_match(Some(&granted), &[TrackSource::Microphone]));
        assert!(!rights_match(None, &[TrackSource::Microphone]));
    }

    /// Metadata rights read as no rights of callgate's shape (see
    /// `livekit::client`'s tests), and those are drift.
    #[test]
    fn rights_of_another_shape_are_drift() {
        assert!(!rights_match(None, &[]));
    }
}
