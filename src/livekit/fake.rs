//! An in-memory RoomService for tests, compiled always (it is small and
//! names nothing outside callgate). It keeps rooms, their participants
//! with their rights and tracks, and a record of what callgate asked:
//! rooms deleted, participants removed, rights pushed, metadata, data
//! messages and mutes, and recordings (egress) started and stopped. Tests
//! put people and tracks in rooms as LiveKit would report them, then read
//! what callgate did.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Egress, EgressStatus, LiveKitError, LiveKitResult, Participant, RecordingSpec, Room, RoomService,
    RoomSpec, TrackSeen,
};
use crate::clock::SharedClock;
use crate::domain::consent::TrackSource;

#[derive(Clone, Debug)]
struct FakeRoom {
    created_at: Option<DateTime<Utc>>,
    metadata: String,
    max_participants: u32,
    participants: Vec<Participant>,
}

#[derive(Default)]
struct State {
    rooms: BTreeMap<String, FakeRoom>,
    deleted: Vec<String>,
    removed: Vec<(String, String)>,
    rights_pushed: Vec<(String, String, Vec<TrackSource>)>,
    data_sent: Vec<(String, String, Vec<u8>)>,
    mutes: Vec<(String, String, bool)>,
    /// Every change asked of LiveKit, in order.
    asked: Vec<Asked>,
    /// Recordings, in the order started, with what each was asked to write.
    recordings: Vec<(Egress, RecordingSpec)>,
    down: bool,
}

/// A change callgate asked of the fake, as `FakeRooms::asked` lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Asked {
    Metadata { room: String, metadata: String },
    Rights { room: String, identity: String, sources: Vec<TrackSource> },
    Removed { room: String, identity: String },
}

/// A fake LiveKit: see the module.
pub struct FakeRooms {
    prefix: String,
    /// Stamps the rooms callgate creates (none without it).
    clock: Option<SharedClock>,
    state: Mutex<State>,
}

impl FakeRooms {
    pub fn new(prefix: &str) -> Arc<Self> {
        Arc::new(FakeRooms { prefix: prefix.to_owned(), clock: None, state: Mutex::default() })
    }

    /// Rooms callgate creates are stamped with `clock`'s time.
    pub fn with_clock(prefix: &str, clock: SharedClock) -> Arc<Self> {
        Arc::new(FakeRooms { prefix: prefix.to_owned(), clock: Some(clock), state: Mutex::default() })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_up(&self) -> LiveKitResult<()> {
        if self.state().down {
            return Err(LiveKitError::Refused { code: "unavailable".into(), msg: "the fake is down".into() });
        }
        Ok(())
    }

    // What tests set up.

    /// Every request fails while `down`.
    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    /// A room that LiveKit has, as if created at `created_at`.
    pub fn add_room(&self, name: &str, created_at: Option<DateTime<Utc>>) {
        let room =
            FakeRoom { created_at, metadata: String::new(), max_participants: 0, participants: Vec::new() };
        self.state().rooms.insert(name.to_owned(), room);
    }

    /// The room closes (LiveKit's empty timeout, or someone deleted it).
    pub fn close_room(&self, name: &str) {
        self.state().rooms.remove(name);
    }

    /// `participant` is in the room (replacing whoever had their identity).
    /// Panics if the room is not there.
    pub fn join(&self, room: &str, participant: Participant) {
        let mut state = self.state();
        let room = state.rooms.get_mut(room).expect("join a room that exists");
        room.participants.retain(|p| p.identity != participant.identity);
        room.participants.push(participant);
    }

    /// The participant left the room of their own accord.
    pub fn leave(&self, room: &str, identity: &str) {
        if let Some(room) = self.state().rooms.get_mut(room) {
            room.participants.retain(|p| p.identity != identity);
        }
    }

    /// The participant publishes `track`. Panics if they are not in the room.
    pub fn publish(&self, room: &str, identity: &str, track: TrackSeen) {
        let mut state = self.state();
        let person = state
            .rooms
            .get_mut(room)
            .and_then(|r| r.participants.iter_mut().find(|p| p.identity == identity))
            .expect("publish as someone in the room");
        person.tracks.push(track);
    }

    /// The participant's rights become `sources` behind callgate's back.
    pub fn set_rights(&self, room: &str, identity: &str, sources: Option<Vec<TrackSource>>) {
        let mut state = self.state();
        let person = state
            .rooms
            .get_mut(room)
            .and_then(|r| r.participants.iter_mut().find(|p| p.identity == identity));
        if let Some(person) = person {
            person.waiting = false;
            person.publish_sources = sources;
        }
    }

    // What tests read.

    pub fn has_room(&self, name: &str) -> bool {
        self.state().rooms.contains_key(name)
    }

    pub fn room_names(&self) -> Vec<String> {
        self.state().rooms.keys().cloned().collect()
    }

    /// The room's metadata as callgate last set it.
    pub fn metadata_of(&self, room: &str) -> Option<String> {
        self.state().rooms.get(room).map(|r| r.metadata.clone())
    }

    pub fn max_participants_of(&self, room: &str) -> Option<u32> {
        self.state().rooms.get(room).map(|r| r.max_participants)
    }

    pub fn participant_in(&self, room: &str, identity: &str) -> Option<Participant> {
        let state = self.state();
        state.rooms.get(room)?.participants.iter().find(|p| p.identity == identity).cloned()
    }

    /// The sources the participant may publish now (`None`: not in the room
    /// or rights of another shape).
    pub fn publish_sources_of(&self, room: &str, identity: &str) -> Option<Vec<TrackSource>> {
        self.participant_in(room, identity).and_then(|p| p.publish_sources)
    }

    /// Rooms callgate deleted, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.state().deleted.clone()
    }

    /// `(room, identity)` of everyone callgate removed, in order.
    pub fn removed(&self) -> Vec<(String, String)> {
        self.state().removed.clone()
    }

    /// `(room, identity, sources)` of every rights push, in order.
    pub fn rights_pushed(&self) -> Vec<(String, String, Vec<TrackSource>)> {
        self.state().rights_pushed.clone()
    }

    /// `(room, topic, payload)` of every data message, in order.
    pub fn data_sent(&self) -> Vec<(String, String, Vec<u8>)> {
        self.state().data_sent.clone()
    }

    /// Every change of rights, metadata and presence asked, in order.
    pub fn asked(&self) -> Vec<Asked> {
        self.state().asked.clone()
    }

    /// `(room, track sid, muted)` of every mute request, in order.
    pub fn mutes(&self) -> Vec<(String, String, bool)> {
        self.state().mutes.clone()
    }

    /// Every recording started, in order, with what it was asked to write.
    pub fn recordings(&self) -> Vec<(Egress, RecordingSpec)> {
        self.state().recordings.clone()
    }

    /// A recording ends on its own (egress failed, or its limit was reached).
    pub fn end_recording(&self, egress_id: &str, status: EgressStatus) {
        let mut state = self.state();
        if let Some((egress, _)) = state.recordings.iter_mut().find(|(e, _)| e.egress_id == egress_id) {
            egress.status = status;
            egress.ended_at = self.clock.as_ref().map(|c| c.now());
        }
    }
}

#[async_trait]
impl RoomService for FakeRooms {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn create_room(&self, name: &str, spec: RoomSpec) -> LiveKitResult<()> {
        self.check_up()?;
        let created_at = self.clock.as_ref().map(|c| c.now());
        let mut state = self.state();
        // LiveKit answers an existing room with the room as it is.
        state.rooms.entry(name.to_owned()).or_insert(FakeRoom {
            created_at,
            metadata: spec.metadata,
            max_participants: spec.max_participants,
            participants: Vec::new(),
        });
        Ok(())
    }

    async fn delete_room(&self, name: &str) -> LiveKitResult<()> {
        self.check_up()?;
        let mut state = self.state();
        if state.rooms.remove(name).is_some() {
            state.deleted.push(name.to_owned());
        }
        Ok(())
    }

    async fn list_rooms(&self) -> LiveKitResult<Vec<Room>> {
        self.check_up()?;
        let state = self.state();
        let rooms = state.rooms.iter().filter(|(name, _)| self.call_of_room(name).is_some());
        Ok(rooms
            .map(|(name, r)| Room {
                name: name.clone(),
                created_at: r.created_at,
                num_participants: r.participants.len() as u32,
                metadata: r.metadata.clone(),
                active_recording: state
                    .recordings
                    .iter()
                    .any(|(e, _)| e.room == *name && e.status.is_running()),
            })
            .collect())
    }

    async fn room_exists(&self, name: &str) -> LiveKitResult<bool> {
        self.check_up()?;
        Ok(self.has_room(name))
    }

    async fn list_participants(&self, room: &str) -> LiveKitResult<Vec<Participant>> {
        self.check_up()?;
        let state = self.state();
        state.rooms.get(room).map(|r| r.participants.clone()).ok_or(LiveKitError::NotFound)
    }

    async fn participant(&self, room: &str, identity: &str) -> LiveKitResult<Option<Participant>> {
        self.check_up()?;
        Ok(self.participant_in(room, identity))
    }

    async fn remove_participant(&self, room: &str, identity: &str) -> LiveKitResult<()> {
        self.check_up()?;
        let mut state = self.state();
        state.removed.push((room.to_owned(), identity.to_owned()));
        state.asked.push(Asked::Removed { room: room.to_owned(), identity: identity.to_owned() });
        if let Some(room) = state.rooms.get_mut(room) {
            room.participants.retain(|p| p.identity != identity);
        }
        Ok(())
    }

    /// As LiveKit does, tracks of a source no longer allowed are unpublished.
    async fn set_publish_sources(
        &self,
        room: &str,
        identity: &str,
        sources: &[TrackSource],
    ) -> LiveKitResult<bool> {
        self.check_up()?;
        let mut state = self.state();
        let person = state
            .rooms
            .get_mut(room)
            .and_then(|r| r.participants.iter_mut().find(|p| p.identity == identity));
        let Some(person) = person else { return Ok(false) };
        person.publish_sources = Some(sources.to_vec());
        person.waiting = false;
        person.tracks.retain(|t| t.source.is_none_or(|s| sources.contains(&s)));
        state.rights_pushed.push((room.to_owned(), identity.to_owned(), sources.to_vec()));
        let asked =
            Asked::Rights { room: room.to_owned(), identity: identity.to_owned(), sources: sources.to_vec() };
        state.asked.push(asked);
        Ok(true)
    }

    async fn withdraw_tracks(
        &self,
        room: &str,
        identity: &str,
        sources: &[TrackSource],
    ) -> LiveKitResult<bool> {
        self.set_publish_sources(room, identity, sources).await
    }

    async fn set_waiting(&self, room: &str, identity: &str) -> LiveKitResult<bool> {
        self.check_up()?;
        let mut state = self.state();
        let person = state
            .rooms
            .get_mut(room)
            .and_then(|r| r.participants.iter_mut().find(|p| p.identity == identity));
        let Some(person) = person else { return Ok(false) };
        person.publish_sources = None;
        person.waiting = true;
        person.tracks.clear();
        state.rights_pushed.push((room.to_owned(), identity.to_owned(), Vec::new()));
        let asked =
            Asked::Rights { room: room.to_owned(), identity: identity.to_owned(), sources: Vec::new() };
        state.asked.push(asked);
        Ok(true)
    }

    async fn update_room_metadata(&self, room: &str, metadata: String) -> LiveKitResult<()> {
        self.check_up()?;
        let mut state = self.state();
        let entry = state.rooms.get_mut(room).ok_or(LiveKitError::NotFound)?;
        entry.metadata = metadata.clone();
        state.asked.push(Asked::Metadata { room: room.to_owned(), metadata });
        Ok(())
    }

    async fn send_data(&self, room: &str, topic: &str, payload: Vec<u8>) -> LiveKitResult<()> {
        self.check_up()?;
        let mut state = self.state();
        if !state.rooms.contains_key(room) {
            return Err(LiveKitError::NotFound);
        }
        state.data_sent.push((room.to_owned(), topic.to_owned(), payload));
        Ok(())
    }

    async fn mute_track(
        &self,
        room: &str,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> LiveKitResult<bool> {
        self.check_up()?;
        let mut state = self.state();
        let track = state
            .rooms
            .get_mut(room)
            .and_then(|r| r.participants.iter_mut().find(|p| p.identity == identity))
            .and_then(|p| p.tracks.iter_mut().find(|t| t.sid == track_sid));
        let Some(track) = track else { return Ok(false) };
        track.muted = muted;
        state.mutes.push((room.to_owned(), track_sid.to_owned(), muted));
        Ok(true)
    }

    async fn ping(&self) -> LiveKitResult<()> {
        self.check_up()
    }

    /// As LiveKit does, a room that is not there cannot be recorded; the
    /// recorder is not put in the room's participants (LiveKit lists it,
    /// as a participant of kind egress: tests that need it add it).
    async fn start_recording(&self, room: &str, spec: &RecordingSpec) -> LiveKitResult<Egress> {
        self.check_up()?;
        let now = self.clock.as_ref().map(|c| c.now());
        let mut state = self.state();
        if !state.rooms.contains_key(room) {
            return Err(LiveKitError::NotFound);
        }
        let egress = Egress {
            egress_id: format!("EG_fake{}", state.recordings.len() + 1),
            room: room.to_owned(),
            status: EgressStatus::Starting,
            started_at: now,
            ended_at: None,
            error: String::new(),
            files: Vec::new(),
        };
        state.recordings.push((egress.clone(), spec.clone()));
        Ok(egress)
    }

    async fn stop_recording(&self, egress_id: &str) -> LiveKitResult<bool> {
        self.check_up()?;
        let now = self.clock.as_ref().map(|c| c.now());
        let mut state = self.state();
        let found = state.recordings.iter_mut().find(|(e, _)| e.egress_id == egress_id);
        let Some((egress, _)) = found.filter(|(e, _)| e.status.is_running()) else { return Ok(false) };
        egress.status = EgressStatus::Complete;
        egress.ended_at = now;
        Ok(true)
    }

    async fn list_recordings(&self, room: &str, running_only: bool) -> LiveKitResult<Vec<Egress>> {
        self.check_up()?;
        let state = self.state();
        let all = state.recordings.iter().map(|(e, _)| e);
        Ok(all.filter(|e| e.room == room && (!running_only || e.status.is_running())).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::livekit::{RecordingFile, RecordingLayout};

    #[tokio::test]
    async fn a_recording_runs_until_stopped_and_lists_by_room() {
        let lk = FakeRooms::new("cg-");
        lk.add_room("cg-a", None);
        let spec = RecordingSpec {
            layout: RecordingLayout::AudioOnly,
            file: RecordingFile::Ogg,
            filepath: "/r/a".into(),
        };
        assert!(matches!(lk.start_recording("cg-b", &spec).await, Err(LiveKitError::NotFound)));
        let egress = lk.start_recording("cg-a", &spec).await.expect("started");
        assert!(egress.status.is_running());
        assert_eq!(lk.list_recordings("cg-a", true).await.expect("list").len(), 1);
        assert!(lk.list_recordings("cg-b", false).await.expect("list").is_empty());
        assert!(lk.stop_recording(&egress.egress_id).await.expect("stop"));
        assert!(!lk.stop_recording(&egress.egress_id).await.expect("stop again"));
        assert!(!lk.stop_recording("EG_unknown").await.expect("stop unknown"));
        assert!(lk.list_recordings("cg-a", true).await.expect("list").is_empty());
        let done = lk.list_recordings("cg-a", false).await.expect("list");
        assert_eq!(done[0].status, EgressStatus::Complete);
        assert_eq!(lk.recordings()[0].1, spec);
    }
}
